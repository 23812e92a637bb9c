//! `/metrics` in Prometheus text format, and per-request counters and
//! latency histograms labelled by route template (never the raw path, which
//! would carry ids) and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn render(State(state): State<super::SharedState>) -> Response {
    match crate::telemetry::metrics_handle() {
        Some(handle) => {
            record_outbox(&state).await;
            let mut text = handle.render();
            if let Some(worker) = &state.sync {
                text.push_str(&worker.metrics().prometheus());
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("tyk_idsync_http_requests_total", &labels).increment(1);
    metrics::histogram!("tyk_idsync_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Outbox depth and the age of the oldest pending event, read at scrape
/// time so they are always current.
async fn record_outbox(state: &super::SharedState) {
    let Ok(mut conn) = state.store.pool().acquire().await else {
        return;
    };
    if let Ok((depth, oldest)) = crate::store::events::depth(&mut conn).await {
        metrics::gauge!("tyk_idsync_outbox_depth").set(depth as f64);
        let age = oldest.map_or(0.0, |t| {
            (crate::domain::Timestamp::now().0 - t.0).max(0) as f64 / 1000.0
        });
        metrics::gauge!("tyk_idsync_outbox_oldest_age_seconds").set(age);
    }
}
