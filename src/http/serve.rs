//! The accept loop. `axum::serve` has no header read timeout, no idle
//! timeout and no connection cap, so one slow or idle client per socket
//! could hold the service's file descriptors and tasks forever (slowloris).
//! Here every connection is HTTP/1.1 (SCIM clients and the admin API need
//! nothing else, and hyper's header timer does not run during HTTP/2
//! protocol detection), with:
//!
//! - `header_read_timeout`: the whole request head must arrive within it
//!   (hyper's own timer; it also bounds the wait for the next request on a
//!   keep-alive connection);
//! - `idle_timeout`: a connection with no request in flight and no byte read
//!   or written for this long is closed;
//! - `max_connections`: at most this many connections are served at once;
//!   further clients wait in the listen backlog until one ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for the open connections to finish their requests
/// (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(TrackedStream {
            inner: stream,
            activity: activity.clone(),
        });
        let service = {
            let activity = activity.clone();
            let router = router.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let in_flight = activity.begin_request();
                let router = router.clone();
                async move {
                    let mut request = request.map(Body::new);
                    // The console's login rate limit is per client address.
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let response = router.oneshot(request).await;
                    drop(in_flight);
                    response
                }
            })
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        let connection = graceful.watch(connection);
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = activity.idle(idle_timeout) => {
                    tracing::debug!(?idle_timeout, "Closing an idle HTTP connection");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed `accept` is about one connection (reset before it was taken)
/// or about the process (out of file descriptors): the latter is retried
/// after a pause instead of spinning.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %error, "Accepting a connection failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// When a connection last moved a byte, and how many requests it is
/// answering now (a handler may think for a while without any I/O).
struct Activity {
    started: Instant,
    last_io_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Resolves once the connection has been idle for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let idle_for = self.idle_for();
            if self.in_flight.load(Ordering::SeqCst) == 0 && idle_for >= timeout {
                return;
            }
            let wait = timeout.saturating_sub(idle_for);
            tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
        }
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP stream that records when it last read or wrote a byte.
struct TrackedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight() {
        let activity = Arc::new(Activity::new());
        let request = activity.begin_request();
        let idle = activity.idle(Duration::from_secs(5));
        tokio::pin!(idle);
        // A request thinking for longer than the idle timeout keeps it open.
        assert!(
            tokio::time::timeout(Duration::from_secs(20), &mut idle)
                .await
                .is_err()
        );
        drop(request);
        // Once answered, the idle clock starts from the answer.
        let start = tokio::time::Instant::now();
        idle.await;
        assert!(start.elapsed() >= Duration::from_secs(4));
    }
}
