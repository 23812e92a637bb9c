//! Fault injection and the request log, as one axum middleware. Faults are
//! either standing rates (a share of requests get 429/500/reset, plus added
//! latency) or one-shot scripted faults, optionally limited to requests
//! carrying one credential so tests sharing a stand-in do not disturb each
//! other.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::Shared;
use crate::tyk::Envelope;

/// Standing fault rates, applied to every request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRates {
    /// Added before every answer.
    pub latency: Duration,
    /// Up to this much more, drawn uniformly for each request (random latency).
    pub latency_jitter: Duration,
    /// Share (0..=1) of requests answered 429 with `Retry-After`.
    pub rate_429: f64,
    /// Share of requests answered 500.
    pub rate_500: f64,
    /// Share of requests whose connection is cut mid-answer.
    pub rate_reset: f64,
    /// The `Retry-After` seconds sent with 429s.
    pub retry_after_secs: u64,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 500 with an Error envelope.
    ServerError,
    /// Headers are sent, then the connection is aborted.
    ConnectionReset,
    /// The request is served normally after a delay.
    Delay(Duration),
}

/// A one-shot fault, for any request or only those with one credential.
#[derive(Debug, Clone)]
struct Scripted {
    fault: Fault,
    only_credential: Option<String>,
}

#[derive(Debug, Default)]
pub struct Faults {
    rates: FaultRates,
    scripted: VecDeque<Scripted>,
}

impl Faults {
    pub fn set_rates(&mut self, rates: FaultRates) {
        self.rates = rates;
    }

    pub fn push(&mut self, fault: Fault, only_credential: Option<String>) {
        self.scripted.push_back(Scripted {
            fault,
            only_credential,
        });
    }

    /// The fault for a request with this credential, if any (consumed).
    fn pick(&mut self, credential: Option<&str>) -> (Duration, Option<Fault>) {
        let latency = self.rates.latency + jitter(self.rates.latency_jitter);
        let pos = self.scripted.iter().position(|s| {
            s.only_credential.is_none() || s.only_credential.as_deref() == credential
        });
        if let Some(scripted) = pos.and_then(|i| self.scripted.remove(i)) {
            return (latency, Some(scripted.fault));
        }
        let roll: f64 = rand::thread_rng().r#gen();
        let r = &self.rates;
        let fault = if roll < r.rate_429 {
            Some(Fault::TooManyRequests {
                retry_after_secs: r.retry_after_secs,
            })
        } else if roll < r.rate_429 + r.rate_500 {
            Some(Fault::ServerError)
        } else if roll < r.rate_429 + r.rate_500 + r.rate_reset {
            Some(Fault::ConnectionReset)
        } else {
            None
        };
        (latency, fault)
    }
}

/// A uniformly drawn duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The answer's status; 499 when the client hung up first.
    pub status: u16,
    /// The injected fault, if the request got one.
    pub fault: Option<Fault>,
    /// The request's JSON body, when it had one (e.g. a created user's
    /// `email_address`, to find duplicate creations).
    pub body: Option<serde_json::Value>,
    /// When the request arrived (to check a client's request rate).
    pub received_at: std::time::Instant,
}

/// Middleware: applies faults, then records the request.
pub async fn faults_and_log(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let received_at = std::time::Instant::now();
    let credential = ["authorization", "admin-auth"]
        .iter()
        .find_map(|h| request.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _in_flight = InFlight::enter(&shared);
    // Buffer the body so the log can keep it (the stand-in's bodies are small).
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let logged_body = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
    let request = Request::from_parts(parts, Body::from(bytes));
    let (latency, fault) = shared
        .faults
        .lock()
        .map(|mut f| f.pick(credential.as_deref()))
        .unwrap_or_default();
    let mut entry = LogOnDrop {
        shared: shared.clone(),
        entry: LoggedRequest {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            query: request.uri().query().map(str::to_string),
            status: CLIENT_CLOSED_REQUEST,
            fault: fault.clone(),
            body: logged_body,
            received_at,
        },
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = match &fault {
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(*d).await;
            next.run(request).await
        }
        Some(f) => fault_response(f),
        None => next.run(request).await,
    };
    entry.entry.status = response.status().as_u16();
    response
}

/// Status logged for a request the client gave up on before the answer
/// (nginx's convention).
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Writes the log entry when the request ends — answered or abandoned (a
/// client timeout drops the handler future mid-way).
struct LogOnDrop {
    shared: Arc<Shared>,
    entry: LoggedRequest,
}

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        if let Ok(mut log) = self.shared.log.lock() {
            log.push(self.entry.clone());
        }
    }
}

/// Counts requests being served, and the most seen at once (lets tests
/// check a client's concurrency limit without timing anything).
#[derive(Debug, Default)]
pub struct Gauge {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

impl Gauge {
    pub fn max(&self) -> usize {
        self.max.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.max.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = shared.in_flight.now.fetch_add(1, SeqCst) + 1;
        shared.in_flight.max.fetch_max(now, SeqCst);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .now
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::TooManyRequests { retry_after_secs } => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(Envelope::error("Too many requests")),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            r
        }
        Fault::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(Envelope::error("Internal server error")),
        )
            .into_response(),
        Fault::ConnectionReset => {
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection reset",
                ))
            });
            let mut r = Response::new(Body::from_stream(broken));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Fault::Delay(_) => StatusCode::OK.into_response(),
    }
}
