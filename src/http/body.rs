//! A request body the handler left unread is read to its end (within
//! bounds) before the answer goes out. Otherwise a server that answers — a
//! 413 for a body over the limit, a 401 before the body — and closes while
//! the client is still sending makes the client's kernel see a reset: the
//! client reports a broken pipe instead of the answer that says what was
//! wrong.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

/// At most this much of an unread body is read and thrown away; a client
/// sending more gets the connection closed.
pub const DRAIN_LIMIT_BYTES: usize = 32 * 1024 * 1024;
/// …and for at most this long.
pub const DRAIN_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Reads and discards what is left of `body`, within the drain bounds.
/// True when the body was read to its end.
async fn drain(body: Body) -> bool {
    let drain = async {
        let mut stream = body.into_data_stream();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    seen = seen.saturating_add(chunk.len());
                    if seen > DRAIN_LIMIT_BYTES {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME_LIMIT, drain)
        .await
        .unwrap_or(false)
}

/// The request body, shared between the handler (which reads it through
/// this) and the middleware (which reads what is left once the handler
/// has answered).
struct SharedBody(Arc<Mutex<Option<Body>>>);

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

/// Runs the request, then drains what the handler did not read. A body
/// too long to drain gets `Connection: close` on the answer.
pub async fn drain_unread_bodies(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let shared = Arc::new(Mutex::new(Some(body)));
    let request = Request::from_parts(parts, Body::new(SharedBody(shared.clone())));
    let mut response = next.run(request).await;
    let rest = shared.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(rest) = rest
        && !http_body::Body::is_end_stream(&rest)
        && !drain(rest).await
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tower::ServiceExt;

    async fn collect(body: Body) -> Bytes {
        axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("readable body")
    }

    #[tokio::test]
    async fn a_handler_reads_through_the_shared_body() {
        let app = Router::new()
            .route(
                "/echo",
                post(|body: Body| async move { collect(body).await }),
            )
            .layer(axum::middleware::from_fn(drain_unread_bodies));
        let response = app
            .oneshot(
                Request::post("/echo")
                    .body(Body::from("hello"))
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(collect(response.into_body()).await, "hello");
    }
}
