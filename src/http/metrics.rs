//! `/metrics` in Prometheus text format, and per-request counters and
//! latency histograms labelled by route template (never the raw path, which
//! would carry ids) and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::domain::Timestamp;
use crate::store::{ldap_state, stats};

pub async fn render(State(state): State<super::SharedState>) -> Response {
    match crate::telemetry::metrics_handle() {
        Some(handle) => {
            let from_database = database_metrics(&state).await;
            let mut text = handle.render();
            if let Some(worker) = &state.sync {
                text.push_str(&worker.metrics().prometheus());
            }
            text.push_str(&from_database);
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

/// Figures read from the database at scrape time, so they are current and
/// every replica reports the same: the outbox (as recorder gauges), and,
/// rendered here as text, the identity-change events by source and kind and
/// the last successful sync and polls.
async fn database_metrics(state: &super::SharedState) -> String {
    let mut out = String::new();
    let Ok(mut conn) = state.store.pool().acquire().await else {
        return out;
    };
    if let Ok((depth, oldest)) = crate::store::events::depth(&mut conn).await {
        metrics::gauge!("tyk_idsync_outbox_depth").set(depth as f64);
        let age = oldest.map_or(0.0, |t| (Timestamp::now().0 - t.0).max(0) as f64 / 1000.0);
        metrics::gauge!("tyk_idsync_outbox_oldest_age_seconds").set(age);
    }
    if let Ok(counts) = stats::event_counts(&mut conn).await {
        out.push_str(
            "# HELP tyk_idsync_identity_events_total Identity-change events recorded, by source \
             and kind (counted in the database: every replica reports the same total).\n\
             # TYPE tyk_idsync_identity_events_total counter\n",
        );
        for (source, kind, n) in counts {
            out.push_str(&format!(
                "tyk_idsync_identity_events_total{{source=\"{}\",kind=\"{}\"}} {n}\n",
                escape(&source),
                escape(&kind)
            ));
        }
    }
    // The last applied run on record, or (on the replica that ran it) a
    // run that found nothing to change, which leaves no record.
    let recorded = stats::last_applied_run(&mut conn)
        .await
        .ok()
        .flatten()
        .map(|run| run.finished_at);
    let here = state.sync.as_ref().and_then(|w| w.metrics().last_success());
    // Polls are recorded in the store, so every replica reports them.
    let mut series: Vec<(String, &str, Timestamp)> = ldap_state::last_successes(&mut conn)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(source, at)| (source, "poll", at))
        .collect();
    if let Some(at) = recorded.max(here) {
        series.push(("all".to_string(), "sync", at));
    }
    if !series.is_empty() {
        out.push_str(
            "# HELP tyk_idsync_last_success_timestamp_seconds When a source's poll (kind=\"poll\") \
             or a sync run (kind=\"sync\", source=\"all\") last succeeded, in Unix seconds.\n\
             # TYPE tyk_idsync_last_success_timestamp_seconds gauge\n",
        );
        for (source, kind, at) in series {
            out.push_str(&format!(
                "tyk_idsync_last_success_timestamp_seconds{{source=\"{}\",kind=\"{kind}\"}} {}\n",
                escape(&source),
                at.0 as f64 / 1000.0
            ));
        }
    }
    out
}

/// A Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(super::escape("okta"), "okta");
    }
}
