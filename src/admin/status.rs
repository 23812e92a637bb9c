//! `GET /admin/v1/status`: what an operator checks first.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::domain::{SourceName, Timestamp};
use crate::http::{ApiError, ApiRouter, SharedState};
use crate::store::{events, identities, rekey, stats, sync_quarantine};

pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(status))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// `leader` or `follower`.
    pub role: String,
    pub outbox: OutboxStatus,
    /// Each configured identity source (SCIM and LDAP), by name.
    pub sources: BTreeMap<String, SourceStatus>,
    pub sync: SyncInfo,
    /// People whose primary e-mail is not an address: stored, never sent
    /// to Tyk.
    pub invalid_email: InvalidEmailStatus,
    /// People the sync stopped trying or never tries (`GET
    /// /admin/v1/sync/failures` lists them).
    pub failures: FailuresStatus,
    /// Existing names that fold to the same key in one scope (found once,
    /// when the keys were re-folded; see `store::rekey`): both rows kept.
    pub fold_collisions: Vec<String>,
    /// TIB profile pushes; absent without a `[tib]` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tib: Option<crate::tib::TibStatus>,
}

/// How many people cannot be provisioned for their e-mail, and who.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidEmailStatus {
    pub count: i64,
    /// The first few (by source, then userName).
    pub sample: Vec<InvalidEmailPerson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidEmailPerson {
    pub source: String,
    pub id: String,
    pub user_name: String,
    /// `empty`, `control_character` or `syntax`.
    pub problem: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailuresStatus {
    /// Tyk refused them for good; not retried until they change or an
    /// operator runs `tyk-idsync sync retry`.
    pub quarantined: i64,
    /// No or an invalid e-mail: never sent to Tyk.
    pub skipped: i64,
}

/// How many people with an invalid e-mail the status lists by name.
const INVALID_EMAIL_SAMPLE: i64 = 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxStatus {
    /// Identity-change events not yet applied to Tyk.
    pub depth: i64,
    /// Age of the oldest pending event, in seconds.
    pub oldest_age_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceStatus {
    /// `scim` (pushed to us) or `ldap` (polled).
    pub kind: String,
    /// LDAP: the last successful poll (RFC 3339).
    pub last_poll: Option<String>,
    /// LDAP: the error of the last poll, if it failed.
    pub last_poll_error: Option<String>,
    /// LDAP: the last poll was held by the mass-removal guard.
    pub poll_held: bool,
    /// Users the source has pushed (and not deleted).
    pub users: i64,
    pub groups: i64,
    /// When the source's latest identity-change event was recorded (RFC 3339).
    pub last_event: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncInfo {
    /// Whether a Tyk Dashboard is configured (the sync worker runs).
    pub enabled: bool,
    /// The newest run that applied changes cleanly.
    pub last_applied_run: Option<AppliedRunInfo>,
    /// When a run last succeeded (RFC 3339): the last applied run, or a
    /// later run on this replica that found Tyk already in step.
    pub last_success: Option<String>,
    /// Runs held by the mass-change guard, waiting for approval.
    pub held_runs: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedRunInfo {
    pub id: String,
    /// `full` or `events`.
    pub kind: String,
    pub steps_applied: i64,
    /// RFC 3339.
    pub finished: String,
}

/// Service status: database, role, outbox depth, identity sources, sync.
#[utoipa::path(
    get,
    path = "/status",
    tag = "admin",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Status", body = StatusResponse),
        (status = 401, description = "Missing or wrong admin token"),
    )
)]
async fn status(State(state): State<SharedState>) -> Result<Json<StatusResponse>, ApiError> {
    collect(&state).await.map(Json)
}

/// The status as `/admin/v1/status` answers it (the console renders it too).
pub async fn collect(state: &crate::http::AppState) -> Result<StatusResponse, ApiError> {
    let mut conn = state
        .store
        .pool()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (depth, oldest) = events::depth(&mut conn).await.map_err(ApiError::internal)?;
    let oldest_age_seconds = oldest.map(|t| (Timestamp::now().0 - t.0).max(0) as f64 / 1000.0);
    let mut sources = BTreeMap::new();
    let names = state
        .config
        .scim
        .sources
        .keys()
        .map(|n| (n, "scim"))
        .chain(state.config.ldap.sources.keys().map(|n| (n, "ldap")));
    for (name, kind) in names {
        let source = SourceName::new(name);
        let summary = stats::source_summary(&mut conn, &source)
            .await
            .map_err(ApiError::internal)?;
        let poll = match kind {
            "ldap" => crate::store::ldap_state::get(&mut conn, &source)
                .await
                .map_err(ApiError::internal)?
                .unwrap_or_default(),
            _ => Default::default(),
        };
        sources.insert(
            name.clone(),
            SourceStatus {
                kind: kind.to_string(),
                last_poll: poll.last_success_at.map(Timestamp::to_rfc3339),
                last_poll_error: poll.last_error,
                poll_held: poll.held.is_some(),
                users: summary.users,
                groups: summary.groups,
                last_event: summary.last_event_at.map(Timestamp::to_rfc3339),
            },
        );
    }
    let last_applied = stats::last_applied_run(&mut conn)
        .await
        .map_err(ApiError::internal)?;
    let held_runs = stats::held_runs(&mut conn)
        .await
        .map_err(ApiError::internal)?;
    let (invalid_count, invalid_sample) =
        identities::users_with_email_problem(&mut conn, INVALID_EMAIL_SAMPLE)
            .await
            .map_err(ApiError::internal)?;
    let failures = FailuresStatus {
        quarantined: sync_quarantine::count(&mut conn)
            .await
            .map_err(ApiError::internal)?,
        skipped: sync_quarantine::count_skipped(&mut conn)
            .await
            .map_err(ApiError::internal)?,
    };
    let fold_collisions = rekey::fold_collisions(&mut conn)
        .await
        .map_err(ApiError::internal)?;
    let here = state.sync.as_ref().and_then(|w| w.metrics().last_success());
    let last_success = last_applied.as_ref().map(|r| r.finished_at).max(here);
    let tib = crate::tib::service::status(&state.store, state.config.tib.as_ref())
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        database: state.store.backend().as_str().to_string(),
        role: format!("{:?}", state.leadership.role()).to_lowercase(),
        outbox: OutboxStatus {
            depth,
            oldest_age_seconds,
        },
        sources,
        sync: SyncInfo {
            enabled: state.sync.is_some(),
            last_applied_run: last_applied.map(|run| AppliedRunInfo {
                id: run.id,
                kind: run.kind,
                steps_applied: run.steps_applied,
                finished: run.finished_at.to_rfc3339(),
            }),
            last_success: last_success.map(Timestamp::to_rfc3339),
            held_runs,
        },
        invalid_email: InvalidEmailStatus {
            count: invalid_count,
            sample: invalid_sample
                .into_iter()
                .map(|p| InvalidEmailPerson {
                    source: p.source.0,
                    id: p.id.to_string(),
                    user_name: p.user_name,
                    problem: p.problem.as_str().to_string(),
                })
                .collect(),
        },
        failures,
        fold_collisions,
        tib,
    })
}
