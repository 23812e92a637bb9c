//! `/ui/audit`: the audit log searched by e-mail, run, step, source and time,
//! newest first, paged by id (the admin API's `sync_audit::list`).

use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page};
use super::people::audit_table;
use super::session::Operator;
use crate::domain::Timestamp;
use crate::store::sync_audit::{self, AuditFilter};

/// Rows per page.
const PAGE: i64 = 50;

/// The search form's fields (all optional; empty means "any").
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    email: String,
    #[serde(default)]
    run: String,
    #[serde(default)]
    step: String,
    /// An identity source name, e.g. `okta`.
    #[serde(default)]
    source: String,
    /// `YYYY-MM-DD` (from that day, UTC).
    #[serde(default)]
    since: String,
    #[serde(default)]
    before_id: Option<i64>,
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, UiError> {
        let run_id = some(&self.run)
            .map(|r| {
                Uuid::parse_str(&r)
                    .map_err(|_| UiError::BadRequest(format!("{r:?} is not a run id")))
            })
            .transpose()?;
        let since = some(&self.since)
            .map(|d| {
                chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| Timestamp(t.and_utc().timestamp_millis()))
                    .ok_or_else(|| UiError::BadRequest(format!("{d:?} is not a date (YYYY-MM-DD)")))
            })
            .transpose()?;
        Ok(AuditFilter {
            run_id,
            email: some(&self.email),
            org_id: None,
            step_kind: some(&self.step),
            source: some(&self.source),
            since,
            before_id: self.before_id,
            limit: PAGE,
        })
    }

    fn next_page(&self, before_id: i64) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("email", self.email.trim())
            .append_pair("run", self.run.trim())
            .append_pair("step", self.step.trim())
            .append_pair("source", self.source.trim())
            .append_pair("since", self.since.trim())
            .append_pair("before_id", &before_id.to_string())
            .finish();
        format!("/ui/audit?{query}")
    }
}

/// Step kinds an operator can pick (`PlanStep::kind`).
const STEPS: [&str; 16] = [
    "create_group",
    "adopt_group",
    "update_group_permissions",
    "create_user",
    "adopt_user",
    "reactivate",
    "revert_email",
    "update_user_profile",
    "move_to_group",
    "update_user_permissions",
    "deactivate",
    "record_deactivation",
    "delete",
    "reset_access_key",
    "forget_user",
    "delete_group",
];

pub async fn search(
    State(state): State<UiState>,
    operator: Operator,
    Query(query): Query<AuditQuery>,
) -> Result<Page, UiError> {
    let filter = query.filter()?;
    let mut conn = state.app.store.pool().acquire().await?;
    let entries = sync_audit::list(&mut conn, &filter).await?;
    drop(conn);
    let next = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let body = html! {
        h1 { "Audit" }
        form method="get" action="/ui/audit" role="search" {
            div class="cards" {
                div { label for="email" { "E-mail" } input type="text" id="email" name="email" value=(query.email); }
                div { label for="run" { "Run id" } input type="text" id="run" name="run" value=(query.run); }
                div {
                    label for="step" { "Step" }
                    select id="step" name="step" {
                        option value="" { "any" }
                        @for step in STEPS { option value=(step) selected[query.step == step] { (step) } }
                    }
                }
                div { label for="source" { "Source" } input type="text" id="source" name="source" value=(query.source); }
                div { label for="since" { "From (UTC day)" } input type="date" id="since" name="since" value=(query.since); }
            }
            p { button type="submit" { "Search" } }
        }
        h2 { (entries.len()) " row(s)" @if query.before_id.is_some() { " (older page)" } }
        (audit_table(&entries))
        @if let Some(before) = next { p { a href=(query.next_page(before)) rel="next" { "Older rows" } } }
    };
    Ok(layout::page("Audit", "/ui/audit", &operator.csrf, body))
}
