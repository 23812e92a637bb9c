//! The sync part of the admin API (the lead nests it behind the admin
//! authentication layer): preview the plan, list runs, approve a held run,
//! read the audit log, start a full reconcile.
//!
//! `GET  /sync/plan`                 plan + guard verdict (JSON, as `plan --json`)
//! `POST /sync/run`                  one full reconcile now → `SyncStatus`
//! `GET  /sync/runs?status=&limit=`  newest first
//! `POST /sync/runs/{id}/approve`    apply a held run → `SyncStatus` (404, 409)
//! `POST /sync/runs/{id}/reject`     `{"reason": "..."}` (required): reject a
//!                                   held run, nothing applied → the run (400, 404, 409)
//! `GET  /sync/audit?email=&org_id=&run_id=&step=&source=&since=&before_id=&limit=`
//!                                   `{entries, next_before_id}`
//! `GET  /sync/failures`             quarantined and skipped people
//!                                   `{failures, quarantined, skipped}`
//! `POST /sync/failures/{email}/retry` lift a quarantine → `{lifted}` (404)

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::render::plan_json;
use super::worker::{StateSource, SyncError, SyncStatus, SyncWorker, Trigger};
use super::writer::TykWriter;
use crate::domain::Timestamp;
use crate::store::StoreError;
use crate::store::sync_audit::{self, AuditFilter};
use crate::store::sync_runs::{self, RunStatus};

/// A sync error as an HTTP answer; 5xx bodies stay opaque.
pub struct ApiError(SyncError);

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self(SyncError::Store(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self.0 {
            SyncError::RunNotFound(_) => (StatusCode::NOT_FOUND, self.0.to_string()),
            SyncError::NotApprovable(_) => (StatusCode::CONFLICT, self.0.to_string()),
            SyncError::Load(_) => (StatusCode::BAD_GATEWAY, "cannot load state".to_string()),
            SyncError::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_string(),
            ),
        };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "sync admin request failed");
        }
        (status, Json(json!({ "error": message }))).into_response()
    }
}

type Shared<W, S> = Arc<SyncWorker<W, S>>;

pub fn router<W, S>(worker: Shared<W, S>) -> Router
where
    W: TykWriter + 'static,
    S: StateSource + 'static,
{
    Router::new()
        .route("/sync/plan", get(plan::<W, S>))
        .route("/sync/run", post(run::<W, S>))
        .route("/sync/runs", get(runs::<W, S>))
        .route("/sync/runs/{id}/approve", post(approve::<W, S>))
        .route("/sync/runs/{id}/reject", post(reject::<W, S>))
        .route("/sync/audit", get(audit::<W, S>))
        .route("/sync/failures", get(failures::<W, S>))
        .route("/sync/failures/{email}/retry", post(retry::<W, S>))
        .with_state(worker)
}

async fn plan<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
) -> Result<Json<Value>, ApiError> {
    let (plan, verdict) = worker.preview().await?;
    Ok(Json(plan_json(&plan, &verdict)))
}

async fn run<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
) -> Result<Json<SyncStatus>, ApiError> {
    Ok(Json(worker.run_once(Trigger::Full).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn runs<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
    Query(query): Query<RunsQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => match RunStatus::parse(text) {
            Some(status) => Some(status),
            None => {
                let body = json!({ "error": format!("unknown status {text:?}") });
                return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
            }
        },
    };
    let mut conn = worker.store().acquire().await?;
    let runs =
        sync_runs::list_runs(&mut conn, status, query.limit.unwrap_or(50).clamp(1, 500)).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

async fn approve<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
    Path(id): Path<Uuid>,
) -> Result<Json<SyncStatus>, ApiError> {
    Ok(Json(worker.approve_run(id, "api:approve").await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

/// The longest reason a rejection records (characters).
const REJECT_REASON_MAX: usize = 500;

async fn reject<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
    Path(id): Path<Uuid>,
    body: Result<Json<RejectBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let bad = |message: String| {
        Ok((StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response())
    };
    let reason = match body {
        Ok(Json(body)) => body.reason,
        Err(rejection) => {
            return bad(format!(
                "the body must be {{\"reason\": \"...\"}}: {}",
                rejection.body_text()
            ));
        }
    };
    let reason: String = reason.trim().chars().filter(|c| !c.is_control()).collect();
    if reason.is_empty() {
        return bad("reason: say why the run is rejected".into());
    }
    if reason.chars().count() > REJECT_REASON_MAX {
        return bad(format!("reason: at most {REJECT_REASON_MAX} characters"));
    }
    let run = super::reject::reject_held_run(worker.store(), id, "api:reject", &reason).await?;
    worker.metrics().held_rejected();
    Ok(Json(run).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    email: Option<String>,
    org_id: Option<String>,
    run_id: Option<Uuid>,
    step: Option<String>,
    /// Identity source, e.g. `okta`.
    source: Option<String>,
    /// Epoch milliseconds.
    since: Option<i64>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

async fn audit<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = AuditFilter {
        run_id: query.run_id,
        email: query.email,
        org_id: query.org_id,
        step_kind: query.step,
        source: query.source,
        since: query.since.map(Timestamp),
        before_id: query.before_id,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let mut conn = worker.store().acquire().await?;
    let entries = sync_audit::list(&mut conn, &filter).await?;
    let next = (entries.len() as i64 == filter.limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({ "entries": entries, "next_before_id": next })))
}

async fn failures<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
) -> Result<Json<Value>, ApiError> {
    let people = super::quarantine::failures(worker.store()).await?;
    let quarantined = people.iter().filter(|p| p.state == "quarantined").count();
    Ok(Json(json!({
        "failures": people,
        "quarantined": quarantined,
        "skipped": people.len() - quarantined,
    })))
}

async fn retry<W: TykWriter, S: StateSource>(
    State(worker): State<Shared<W, S>>,
    Path(email): Path<String>,
) -> Result<Response, ApiError> {
    let lifted = worker.retry_quarantined(Some(&email)).await?;
    if lifted.is_empty() {
        let body = json!({ "error": format!("{email} is not quarantined") });
        return Ok((StatusCode::NOT_FOUND, Json(body)).into_response());
    }
    Ok(Json(json!({ "lifted": lifted })).into_response())
}
