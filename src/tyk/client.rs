//! The HTTP client: one pooled `reqwest::Client`, a per-request timeout, a
//! semaphore bounding requests in flight, one rate limiter pacing every
//! request (reads, searches, listing pages and writes alike), and
//! envelope/error decoding. Dashboard calls live here, Admin calls on
//! [`AdminClient`] (admin.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use reqwest::Method;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use super::admin::AdminClient;
use super::config::TykConfig;
use super::error::{TykError, parse_retry_after};
use super::model::{
    Envelope, GroupsList, NewUser, NewUserGroup, Page, User, UserGroup, UsersList, page_count,
};
use super::transport::{build_http, collect_pages, decode, error_message, meta_id};
use crate::problem::{require_secret, resolve_secret};

/// Which credential header a request carries.
#[derive(Clone, Copy)]
pub(super) enum Auth {
    Dashboard,
    Admin,
}

/// The one limiter every request to Tyk waits for (GCRA, see [`limiter`]).
type Limiter = governor::DefaultDirectRateLimiter;

/// How hard the client may press on the Dashboard (`sync.requests_per_second`
/// and `sync.max_concurrency` in the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Requests per second over every kind of request; 0 = unlimited.
    pub requests_per_second: u32,
    /// Requests in flight at once.
    pub max_concurrency: usize,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
    admin_secret: Option<SecretString>,
    in_flight: Semaphore,
    limiter: Option<Limiter>,
    timeout: Duration,
}

/// A limiter that spaces requests evenly, slightly under `rate`: a
/// request's slot is 1/rate plus 1 % after the previous one, so network
/// jitter between us and the Dashboard cannot make any one-second window
/// there count more than `rate` requests.
///
/// That 1 % is `rate / 100` requests of slack per second. Half of it (when
/// that is one request or more: from 200 requests/s up) is a burst
/// allowance: a request whose waiter woke a little late (timers and
/// scheduling, ~0.1 ms a slot, 5 % of the rate at 400/s) may follow the
/// next one closer, instead of its slot being lost. Any one-second window
/// then holds at most `0.99 × rate + burst − 1` requests, the other half of
/// the slack still there for jitter.
fn limiter(rate: u32) -> Option<Limiter> {
    let rate = std::num::NonZeroU32::new(rate)?;
    let period = Duration::from_secs(1).mul_f64(1.01) / rate.get();
    let quota = governor::Quota::with_period(period.max(Duration::from_nanos(1)))?
        .allow_burst(burst(rate.get()));
    Some(governor::RateLimiter::direct(quota))
}

/// The burst allowance of [`limiter`]: one request, plus half the 1 % slack.
fn burst(rate: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(1 + rate / 200).unwrap_or(std::num::NonZeroU32::MIN)
}

/// What a request is, for the `kind` label of `tyk_idsync_tyk_requests_total`.
pub(super) fn request_kind(method: &Method, path: &[&str], paged: bool) -> &'static str {
    if path.last() == Some(&"search") {
        "search"
    } else if *method == Method::GET && paged {
        "list"
    } else if *method == Method::GET {
        "read"
    } else {
        "write"
    }
}

/// Asked right before a write leaves (after the concurrency and rate
/// waits); an `Err` stops it unsent, with the reason.
pub type WriteGate = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Client of the Dashboard API. Cheap to clone; clones share the pool and
/// the concurrency limit.
#[derive(Clone)]
pub struct TykClient {
    inner: Arc<Inner>,
    write_gate: Option<WriteGate>,
}

impl std::fmt::Debug for TykClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TykClient")
            .field("base", &self.inner.base.as_str())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl TykClient {
    /// Builds the client from a validated config section, with no rate
    /// limit and `tyk.max_concurrency` requests in flight.
    pub fn new(config: &TykConfig) -> Result<Self, TykError> {
        Self::with_limits(
            config,
            RequestLimits {
                requests_per_second: 0,
                max_concurrency: config.max_concurrency,
            },
        )
    }

    /// Builds the client with these limits on every request it sends.
    pub fn with_limits(config: &TykConfig, limits: RequestLimits) -> Result<Self, TykError> {
        let cfg_err = |e: crate::problem::ConfigProblem| TykError::Config(e.to_string());
        let api_key = require_secret(
            "tyk.api_key",
            config.api_key.as_ref(),
            config.api_key_file.as_deref(),
        )
        .map_err(cfg_err)?;
        let admin_secret = resolve_secret(
            "tyk.admin_secret",
            config.admin_secret.as_ref(),
            config.admin_secret_file.as_deref(),
        )
        .map_err(cfg_err)?;
        let base = Url::parse(&config.dashboard_url)
            .map_err(|e| TykError::Config(format!("tyk.dashboard_url: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http: build_http(config)?,
                base,
                api_key,
                admin_secret,
                in_flight: Semaphore::new(limits.max_concurrency.max(1)),
                limiter: limiter(limits.requests_per_second),
                timeout: config.timeout,
            }),
            write_gate: None,
        })
    }

    /// Checks `gate` right before each write (any request but a read, a
    /// listing or a search) leaves: the sync worker's leader lease, so the
    /// time a request waits for its slot cannot carry it past the lease.
    pub fn with_write_gate(mut self, gate: WriteGate) -> Self {
        self.write_gate = Some(gate);
        self
    }

    /// The Admin API half; fails when no admin secret is configured.
    pub fn admin(&self) -> Result<AdminClient<'_>, TykError> {
        if self.inner.admin_secret.is_none() {
            return Err(TykError::Config(
                "tyk.admin_secret is needed for Admin API calls".into(),
            ));
        }
        Ok(AdminClient { client: self })
    }

    // ---- users -------------------------------------------------------

    /// One page of users (`p` ≥ 1; `p` < 0 asks for all).
    pub async fn list_users_page(&self, p: i64) -> Result<Page<User>, TykError> {
        let list: UsersList = self
            .get_json(Auth::Dashboard, &["api", "users"], Some(p))
            .await?;
        Ok(Page {
            items: list.users.unwrap_or_default(),
            pages: page_count(list.pages),
        })
    }

    /// Every user the key can see, page by page.
    pub async fn list_users(&self) -> Result<Vec<User>, TykError> {
        collect_pages(|p| self.list_users_page(p)).await
    }

    pub async fn get_user(&self, id: &str) -> Result<User, TykError> {
        self.get_json(Auth::Dashboard, &["api", "users", id], None)
            .await
    }

    /// Creates a user (email lower-cased, as Tyk stores it); returns its id.
    pub async fn create_user(&self, user: &NewUser) -> Result<String, TykError> {
        let mut body = user.clone();
        body.email_address = body.email_address.to_lowercase();
        let env = self
            .send_envelope(
                Method::POST,
                Auth::Dashboard,
                &["api", "users"],
                Some(&body),
            )
            .await?;
        meta_id(env)
    }

    /// Replaces a user with `user` (GET-modify-PUT; `group_id` included).
    pub async fn update_user(&self, user: &User) -> Result<(), TykError> {
        self.send_envelope(
            Method::PUT,
            Auth::Dashboard,
            &["api", "users", &user.id],
            Some(user),
        )
        .await
        .map(drop)
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), TykError> {
        self.send_envelope(
            Method::DELETE,
            Auth::Dashboard,
            &["api", "users", id],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Deactivates the user, disables its API access and logs it out.
    pub async fn revoke_user(&self, id: &str) -> Result<(), TykError> {
        let path = ["api", "users", id, "actions", "revoke"];
        self.send_envelope(Method::PUT, Auth::Dashboard, &path, None::<&()>)
            .await
            .map(drop)
    }

    /// Gives the user a new Dashboard API access key, so the old one stops
    /// working (`PUT /api/users/{id}/actions/key/reset`).
    pub async fn reset_user_key(&self, id: &str) -> Result<(), TykError> {
        let path = ["api", "users", id, "actions", "key", "reset"];
        self.send_envelope(Method::PUT, Auth::Dashboard, &path, None::<&()>)
            .await
            .map(drop)
    }

    /// Users whose email contains `query` (the Dashboard's substring search).
    pub async fn search_users(&self, query: &str) -> Result<Vec<User>, TykError> {
        let body = serde_json::json!({ "filters": { "query": query } });
        let body = &body;
        collect_pages(|p| async move {
            let bytes = self
                .send(
                    Method::POST,
                    Auth::Dashboard,
                    &["api", "users", "search"],
                    Some(p),
                    Some(body),
                )
                .await?;
            let list: UsersList = decode(&bytes)?;
            Ok(Page {
                items: list.users.unwrap_or_default(),
                pages: page_count(list.pages),
            })
        })
        .await
    }

    /// The user with exactly this email (case-insensitive), if any.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, TykError> {
        let wanted = crate::domain::fold_key(email);
        let users = self.search_users(&email.to_lowercase()).await?;
        Ok(users
            .into_iter()
            .find(|u| crate::domain::fold_key(&u.email_address) == wanted))
    }

    // ---- user groups -------------------------------------------------

    pub async fn list_groups_page(&self, p: i64) -> Result<Page<UserGroup>, TykError> {
        let list: GroupsList = self
            .get_json(Auth::Dashboard, &["api", "usergroups"], Some(p))
            .await?;
        Ok(Page {
            items: list.groups.unwrap_or_default(),
            pages: page_count(list.pages),
        })
    }

    pub async fn list_groups(&self) -> Result<Vec<UserGroup>, TykError> {
        collect_pages(|p| self.list_groups_page(p)).await
    }

    pub async fn get_group(&self, id: &str) -> Result<UserGroup, TykError> {
        self.get_json(Auth::Dashboard, &["api", "usergroups", id], None)
            .await
    }

    pub async fn create_group(&self, group: &NewUserGroup) -> Result<String, TykError> {
        let env = self
            .send_envelope(
                Method::POST,
                Auth::Dashboard,
                &["api", "usergroups"],
                Some(group),
            )
            .await?;
        meta_id(env)
    }

    pub async fn update_group(&self, group: &UserGroup) -> Result<(), TykError> {
        let path = ["api", "usergroups", group.id.as_str()];
        self.send_envelope(Method::PUT, Auth::Dashboard, &path, Some(group))
            .await
            .map(drop)
    }

    pub async fn delete_group(&self, id: &str) -> Result<(), TykError> {
        self.send_envelope(
            Method::DELETE,
            Auth::Dashboard,
            &["api", "usergroups", id],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    // ---- plumbing ----------------------------------------------------

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        auth: Auth,
        path: &[&str],
        p: Option<i64>,
    ) -> Result<T, TykError> {
        let bytes = self.send(Method::GET, auth, path, p, None::<&()>).await?;
        decode(&bytes)
    }

    pub(super) async fn send_envelope<B: Serialize>(
        &self,
        method: Method,
        auth: Auth,
        path: &[&str],
        body: Option<&B>,
    ) -> Result<Envelope, TykError> {
        let bytes = self.send(method, auth, path, None, body).await?;
        decode(&bytes)
    }

    /// Sends one request under the concurrency limit and returns the body of
    /// a 2xx answer; anything else becomes a typed error.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        auth: Auth,
        path: &[&str],
        p: Option<i64>,
        body: Option<&B>,
    ) -> Result<Bytes, TykError> {
        let url = self.url(path, p)?;
        let _permit = self
            .inner
            .in_flight
            .acquire()
            .await
            .map_err(|_| TykError::Transport("client is shutting down".into()))?;
        // The slot is taken while holding the permit, so requests leave at
        // the paced times and not in a burst when permits free up.
        if let Some(limiter) = &self.inner.limiter {
            limiter.until_ready().await;
        }
        let kind = request_kind(&method, path, p.is_some());
        if let (Some(gate), "write") = (&self.write_gate, kind) {
            gate().map_err(|why| TykError::Transport(format!("not sent: {why}")))?;
        }
        metrics::counter!("tyk_idsync_tyk_requests_total", "kind" => kind).increment(1);
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .header(self.header_name(auth), self.credential(auth)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let timeout = self.inner.timeout;
        let started = Instant::now();
        let answer = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, bytes))
        }
        .await;
        let class = match &answer {
            Ok((status, ..)) => status_class(*status),
            Err(e) if e.is_timeout() => "timeout",
            Err(_) => "transport",
        };
        observe(&method, path, class, started.elapsed());
        let transient = match &answer {
            Ok((status, ..))
                if *status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error() =>
            {
                Some(status.as_u16().to_string())
            }
            Ok(_) => None,
            Err(_) => Some(class.to_string()),
        };
        if let Some(status) = transient {
            super::failure_log::transient(method.as_str(), &endpoint_template(path), &status);
        }
        let (status, retry_after, bytes) =
            answer.map_err(|e| TykError::from_reqwest(e, timeout))?;
        tracing::debug!(%method, path = %path.join("/"), status = status.as_u16(), "tyk request");
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(TykError::from_status(
                status,
                error_message(status, &bytes),
                retry_after,
            ))
        }
    }

    fn url(&self, path: &[&str], p: Option<i64>) -> Result<Url, TykError> {
        if path.iter().any(|s| s.is_empty()) {
            return Err(TykError::InvalidArgument("empty id in request path".into()));
        }
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|_| TykError::Config("tyk.dashboard_url cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(path);
        if let Some(p) = p {
            url.query_pairs_mut().append_pair("p", &p.to_string());
        }
        Ok(url)
    }

    fn header_name(&self, auth: Auth) -> &'static str {
        match auth {
            Auth::Dashboard => "authorization",
            Auth::Admin => "admin-auth",
        }
    }

    fn credential(&self, auth: Auth) -> Result<HeaderValue, TykError> {
        let secret = match auth {
            Auth::Dashboard => Some(&self.inner.api_key),
            Auth::Admin => self.inner.admin_secret.as_ref(),
        }
        .ok_or_else(|| TykError::Config("tyk.admin_secret is not set".into()))?;
        let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
            TykError::Config("credential has characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// `/api/users/{id}`: a request path with its ids replaced, as the
/// `endpoint` label of the Tyk request metrics (raw ids would make a series
/// per user). Every fixed segment the client sends is listed here.
pub(super) fn endpoint_template(path: &[&str]) -> String {
    const FIXED: &[&str] = &[
        "api",
        "admin",
        "users",
        "usergroups",
        "organisations",
        "search",
        "actions",
        "revoke",
    ];
    let mut template = String::new();
    for segment in path {
        template.push('/');
        template.push_str(if FIXED.contains(segment) {
            segment
        } else {
            "{id}"
        });
    }
    template
}

fn status_class(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Records one request to Tyk: its duration, and an error unless Tyk
/// answered 2xx. `class` is the status class, `timeout` or `transport`.
fn observe(method: &Method, path: &[&str], class: &'static str, elapsed: Duration) {
    let labels = [
        ("endpoint", endpoint_template(path)),
        ("method", method.as_str().to_string()),
        ("status", class.to_string()),
    ];
    metrics::histogram!("tyk_idsync_tyk_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    if class != "2xx" {
        metrics::counter!("tyk_idsync_tyk_request_errors_total", &labels).increment(1);
    }
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn endpoints_are_templates_without_ids() {
        assert_eq!(endpoint_template(&["api", "users"]), "/api/users");
        assert_eq!(
            endpoint_template(&["api", "users", "5f1e0c0ffee"]),
            "/api/users/{id}"
        );
        assert_eq!(
            endpoint_template(&["api", "users", "abc", "actions", "revoke"]),
            "/api/users/{id}/actions/revoke"
        );
        assert_eq!(
            endpoint_template(&["api", "users", "search"]),
            "/api/users/search"
        );
        assert_eq!(
            endpoint_template(&["admin", "organisations", "org-1"]),
            "/admin/organisations/{id}"
        );
        assert_eq!(
            endpoint_template(&["api", "usergroups", "g1"]),
            "/api/usergroups/{id}"
        );
    }

    #[test]
    fn statuses_are_grouped_by_class() {
        assert_eq!(status_class(reqwest::StatusCode::OK), "2xx");
        assert_eq!(status_class(reqwest::StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(reqwest::StatusCode::BAD_GATEWAY), "5xx");
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn requests_are_told_apart_by_kind() {
        let users = ["api", "users"];
        assert_eq!(request_kind(&Method::GET, &users, true), "list");
        assert_eq!(
            request_kind(&Method::GET, &["api", "users", "u1"], false),
            "read"
        );
        let search = ["api", "users", "search"];
        assert_eq!(request_kind(&Method::POST, &search, true), "search");
        assert_eq!(request_kind(&Method::POST, &users, false), "write");
        assert_eq!(
            request_kind(&Method::PUT, &["api", "users", "u1"], false),
            "write"
        );
    }

    #[tokio::test]
    async fn the_limiter_spaces_requests_under_the_rate() {
        let limiter = limiter(100).expect("limiter");
        let started = std::time::Instant::now();
        for _ in 0..21 {
            limiter.until_ready().await;
        }
        // 20 intervals of 10.1 ms: no burst at the start below 200/s.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert!(super::limiter(0).is_none());
    }

    #[test]
    fn the_burst_is_half_the_slack_and_one_below_200_per_second() {
        for (rate, burst) in [(1, 1), (50, 1), (199, 1), (200, 2), (400, 3), (1000, 6)] {
            assert_eq!(super::burst(rate).get(), burst, "rate {rate}");
        }
    }

    /// Waiters that come late, as under load, never make a one-second
    /// window hold more than the rate: the burst only gives back slots
    /// that lateness lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_waiters_never_make_a_second_hold_more_than_the_rate() {
        const RATE: u32 = 400;
        let limiter = std::sync::Arc::new(limiter(RATE).expect("limiter"));
        let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for waiter in 0..8u64 {
            let (limiter, times) = (limiter.clone(), times.clone());
            waiters.push(tokio::spawn(async move {
                for n in 0..130u64 {
                    limiter.until_ready().await;
                    times.lock().expect("times").push(std::time::Instant::now());
                    // Some waiters dawdle before asking again, and now and
                    // then all pause, so the limiter idles and the next
                    // requests come as a burst.
                    if n % 40 == 39 {
                        tokio::time::sleep(Duration::from_millis(40)).await;
                    } else if (n + waiter) % 3 == 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
            }));
        }
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        let mut times = times.lock().expect("times").clone();
        times.sort();
        let mut busiest = 0;
        let mut end = 0;
        for start in 0..times.len() {
            while end < times.len() && times[end] < times[start] + Duration::from_secs(1) {
                end += 1;
            }
            busiest = busiest.max(end - start);
        }
        assert!(times.len() > RATE as usize * 2, "{} requests", times.len());
        assert!(
            busiest <= RATE as usize,
            "{busiest} requests in one second against {RATE}"
        );
    }
}
