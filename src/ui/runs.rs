//! `/ui/runs`: run history with counts and per-person errors;
//! `/ui/runs/{id}`: one run, a held run's plan grouped by step kind, and
//! the Approve form (the worker's `approve_run`, as behind
//! `/admin/v1/sync/runs/{id}/approve`), which records who and why.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page, csrf_field, when};
use super::people::{audit_table, person_href};
use super::session::Operator;
use crate::store::sync_audit::{self, AuditEntry, AuditFilter};
use crate::store::sync_runs::{self, RunStatus, SyncRun};
use crate::sync::step::{Plan, PlanStep};
use crate::sync::worker::SyncError;

/// How many runs the history lists.
const HISTORY: i64 = 50;
/// Failed audit rows shown per run in the history.
const ERRORS_PER_RUN: i64 = 10;

async fn failed_steps(state: &UiState, run: &SyncRun) -> Result<Vec<AuditEntry>, UiError> {
    if run.steps_failed == 0 {
        return Ok(Vec::new());
    }
    let mut conn = state.app.store.pool().acquire().await?;
    let filter = AuditFilter {
        run_id: Some(run.id),
        limit: 500,
        ..AuditFilter::default()
    };
    let mut failed: Vec<AuditEntry> = sync_audit::list(&mut conn, &filter)
        .await?
        .into_iter()
        .filter(|e| !e.entry.ok)
        .collect();
    failed.truncate(usize::try_from(ERRORS_PER_RUN).unwrap_or(10));
    Ok(failed)
}

fn counts(run: &SyncRun) -> Markup {
    html! { (run.steps_planned) " planned, " (run.steps_applied) " applied, " (run.steps_failed) " failed" }
}

pub async fn list(State(state): State<UiState>, operator: Operator) -> Result<Page, UiError> {
    let mut conn = state.app.store.pool().acquire().await?;
    let runs = sync_runs::list_runs(&mut conn, None, HISTORY).await?;
    drop(conn);
    let held: Vec<&SyncRun> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Held)
        .collect();
    let mut errors = BTreeMap::new();
    for run in &runs {
        errors.insert(run.id, failed_steps(&state, run).await?);
    }
    let mut held_polls = Vec::new();
    for poller in state.ldap.values() {
        let poll = poller
            .state()
            .await
            .map_err(|e| UiError::Internal(format!("ldap: {e}")))?;
        if let Some(held) = poll.held {
            let reason = held
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("held by the mass-removal guard")
                .to_string();
            held_polls.push((poller.source.as_str().to_string(), reason));
        }
    }
    let body = html! {
        h1 { "Runs" }
        h2 { "Held runs" }
        @if held.is_empty() {
            p class="muted" { "No run is waiting for approval." }
        } @else {
            ul { @for run in &held { li {
                a href={ "/ui/runs/" (run.id) } { "Held " (run.kind.as_str()) " run " (run.id) }
                " — " (run.people_removed) " of " (run.managed_users) " managed people would lose access. "
                (run.message.as_deref().unwrap_or(""))
            } } }
        }
        h2 { "Held LDAP polls" }
        @if held_polls.is_empty() {
            p class="muted" { "No LDAP poll is held." }
        } @else {
            ul { @for (source, reason) in &held_polls { li {
                a href="/ui/ldap" { (source) } ": " (reason) " — apply or poll again under LDAP sources."
            } } }
        }
        h2 { "History" }
        @if runs.is_empty() {
            p class="muted" { "No run yet." }
        } @else {
            div class="scroll" { table {
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Kind" } th scope="col" { "Status" }
                    th scope="col" { "Steps" } th scope="col" { "Errors" }
                } }
                tbody { @for run in &runs { tr {
                    td { a href={ "/ui/runs/" (run.id) } { (when(Some(&run.created_at.to_rfc3339()))) } }
                    td { (run.kind.as_str()) }
                    td { (run.status.as_str()) }
                    td { (counts(run)) }
                    td {
                        @for e in errors.get(&run.id).into_iter().flatten() {
                            @if let Some(email) = &e.entry.email { a href=(person_href(email)) { (email) } } @else { "group" }
                            ": " (e.entry.step_kind) " — " (e.entry.message.as_deref().unwrap_or("failed")) br;
                        }
                    }
                } } }
            } }
        }
    };
    Ok(layout::page("Runs", "/ui/runs", &operator.csrf, body))
}

fn plan_by_kind(plan: &Plan) -> BTreeMap<&'static str, Vec<&PlanStep>> {
    let mut by_kind: BTreeMap<&'static str, Vec<&PlanStep>> = BTreeMap::new();
    for step in &plan.steps {
        by_kind.entry(step.kind()).or_default().push(step);
    }
    by_kind
}

fn render_plan(plan: &Plan) -> Markup {
    html! {
        @for (kind, steps) in plan_by_kind(plan) {
            h3 { (kind) " (" (steps.len()) ")" }
            ul { @for step in steps { li {
                @if let Some(email) = step.email() { a href=(person_href(email)) { (email) } } @else { "group" }
                " in org " (step.org_id())
                @if let Some(rule) = step.rule() { " (rule " (rule) ")" }
            } } }
        }
        @if !plan.skipped.is_empty() {
            p class="muted" { (plan.skipped.len()) " person(s) left alone." }
        }
    }
}

pub async fn detail(
    State(state): State<UiState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Page, UiError> {
    let id = Uuid::parse_str(&id).map_err(|_| UiError::NotFound(format!("no run {id:?}")))?;
    let mut conn = state.app.store.pool().acquire().await?;
    let run = sync_runs::get_run(&mut conn, id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no run {id}")))?;
    let filter = AuditFilter {
        run_id: Some(id),
        limit: 200,
        ..AuditFilter::default()
    };
    let mut audit = sync_audit::list(&mut conn, &filter).await?;
    audit.reverse();
    drop(conn);
    let plan: Option<Plan> = run
        .plan
        .as_ref()
        .and_then(|p| serde_json::from_value(p.clone()).ok());
    let body = html! {
        h1 { (run.kind.as_str()) " run " (run.status.as_str()) }
        dl class="facts" {
            dt { "Id" } dd { code { (run.id) } }
            dt { "Started" } dd { (when(Some(&run.created_at.to_rfc3339()))) }
            dt { "Finished" } dd { (when(run.finished_at.map(|t| t.to_rfc3339()).as_deref())) }
            dt { "Steps" } dd { (counts(&run)) }
            dt { "Removals" } dd { (run.people_removed) " of " (run.managed_users) " managed" }
            @if let Some(m) = &run.message { dt { "Message" } dd { (m) } }
            @if let Some(by) = &run.approved_by { dt { "Approved by" } dd { (by) " " (when(run.approved_at.map(|t| t.to_rfc3339()).as_deref())) } }
        }
        @if run.status == RunStatus::Held {
            h2 { "Approve" }
            form method="post" action={ "/ui/runs/" (run.id) "/approve" } {
                (csrf_field(&operator.csrf))
                label for="reason" { "Why (recorded in the audit log)" }
                input type="text" id="reason" name="reason" required maxlength="200";
                p { button type="submit" { "Approve and apply" } }
            }
            h2 { "Reject" }
            form method="post" action={ "/ui/runs/" (run.id) "/reject" } {
                (csrf_field(&operator.csrf))
                label for="reject-reason" { "Why not (recorded in the audit log)" }
                input type="text" id="reject-reason" name="reason" required maxlength="200";
                p { button type="submit" class="danger" { "Reject" } }
            }
        }
        @if let Some(plan) = &plan {
            h2 { "Plan" }
            (render_plan(plan))
        }
        h2 { "Audit" }
        (audit_table(&audit))
    };
    Ok(layout::page("Run", "/ui/runs", &operator.csrf, body))
}

#[derive(Debug, Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// The form's reason: trimmed, no control characters, at most 200 characters.
fn reason_of(form: &ApproveForm) -> Result<String, UiError> {
    let reason: String = form
        .reason
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if reason.is_empty() {
        return Err(UiError::BadRequest("say why".into()));
    }
    Ok(reason)
}

fn decision_error(id: Uuid, e: SyncError) -> UiError {
    match e {
        SyncError::RunNotFound(_) => UiError::NotFound(format!("no run {id}")),
        SyncError::NotApprovable(why) => UiError::BadRequest(why),
        SyncError::Load(e) => UiError::Upstream(e.to_string()),
        e => UiError::Internal(format!("run {id}: {e}")),
    }
}

pub async fn reject(
    State(state): State<UiState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<ApproveForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    let id = Uuid::parse_str(&id).map_err(|_| UiError::NotFound(format!("no run {id:?}")))?;
    let reason = reason_of(&form)?;
    crate::sync::reject::reject_held_run(&state.app.store, id, &operator.actor(), &reason)
        .await
        .map_err(|e| decision_error(id, e))?;
    if let Some(worker) = &state.app.sync {
        // Only one run is ever held (a newer one supersedes it).
        worker.metrics().held_rejected();
    }
    Ok(Redirect::to(&format!("/ui/runs/{id}")).into_response())
}

pub async fn approve(
    State(state): State<UiState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<ApproveForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    let id = Uuid::parse_str(&id).map_err(|_| UiError::NotFound(format!("no run {id:?}")))?;
    let reason = reason_of(&form)?;
    let Some(worker) = &state.app.sync else {
        return Err(UiError::BadRequest("no Tyk Dashboard is configured".into()));
    };
    if !state.app.leadership.is_leader() {
        // Only the leader writes to Tyk.
        return Err(UiError::BadRequest(
            "this replica is not the leader; approve on the leader".into(),
        ));
    }
    let actor = format!("{}: {reason}", operator.actor());
    worker
        .approve_run(id, &actor)
        .await
        .map_err(|e| decision_error(id, e))?;
    Ok(Redirect::to(&format!("/ui/runs/{id}")).into_response())
}
