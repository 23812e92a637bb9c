//! `/ui/ldap`: each LDAP source's poll state and last report, and "poll
//! now" (incremental or full) through the source's poller, as
//! `POST /admin/v1/ldap/sources/{source}/poll` does.

use axum::Form;
use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page, csrf_field, when};
use super::session::Operator;
use crate::domain::SourceName;
use crate::ldap::schedule::PollRequest;
use crate::store::ldap_state::PollState;

fn ts(t: Option<crate::domain::Timestamp>) -> Markup {
    when(t.map(|t| t.to_rfc3339()).as_deref())
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn render_state(state: &PollState) -> Markup {
    html! {
        dl class="facts" {
            dt { "Last success" } dd { (ts(state.last_success_at)) }
            dt { "Last full poll" } dd { (ts(state.last_full_at)) }
            dt { "Polls since full" } dd { (state.polls_since_full) }
            dt { "Last error" } dd {
                @if let Some(e) = &state.last_error { span class="badge bad" { "failed" } " " (e) " " (ts(state.last_error_at)) }
                @else { "none" }
            }
            dt { "Held" } dd {
                @if let Some(held) = &state.held { span class="badge bad" { "held" } " " code { (pretty(held)) } }
                @else { "no" }
            }
            @if state.full_pending { dt { "Next poll" } dd { "full (the last full poll failed)" } }
        }
        @if let Some(report) = &state.last_report {
            details { summary { "Last report" } pre { code { (pretty(report)) } } }
        }
    }
}

fn poll_forms(source: &str, csrf: &str, held: bool) -> Markup {
    html! {
        div class="row" {
            @for (full, label) in [(false, "Poll now (incremental)"), (true, "Poll now (full)")] {
                form method="post" action={ "/ui/ldap/" (source) "/poll" } {
                    (csrf_field(csrf))
                    input type="hidden" name="kind" value=(if full { "full" } else { "incremental" });
                    button type="submit" class=[(!full).then_some("secondary")] { (label) }
                }
            }
            @if held {
                form method="post" action={ "/ui/ldap/" (source) "/poll" } {
                    (csrf_field(csrf))
                    input type="hidden" name="kind" value="force";
                    button type="submit" class="danger" { "Apply the held poll" }
                }
            }
        }
    }
}

pub async fn list(State(state): State<UiState>, operator: Operator) -> Result<Page, UiError> {
    let mut sources = Vec::new();
    for poller in state.ldap.values() {
        let poll = poller
            .state()
            .await
            .map_err(|e| UiError::Internal(format!("ldap: {e}")))?;
        sources.push((poller.clone(), poll));
    }
    let body = html! {
        h1 { "LDAP sources" }
        @if sources.is_empty() { p class="muted" { "No LDAP source is configured." } }
        @for (poller, poll) in &sources {
            section class="card" aria-labelledby={ "src-" (poller.source.as_str()) } {
                h2 id={ "src-" (poller.source.as_str()) } { (poller.source.as_str()) }
                p class="muted" { code { (poller.cfg.url) } " — users under " code { (poller.cfg.user_base) } }
                (render_state(poll))
                (poll_forms(poller.source.as_str(), &operator.csrf, poll.held.is_some()))
            }
        }
    };
    Ok(layout::page(
        "LDAP sources",
        "/ui/ldap",
        &operator.csrf,
        body,
    ))
}

#[derive(Debug, Deserialize)]
pub struct PollForm {
    #[serde(default)]
    csrf: String,
    /// `incremental`, `full` or `force`.
    #[serde(default)]
    kind: String,
}

pub async fn poll(
    State(state): State<UiState>,
    operator: Operator,
    Path(source): Path<String>,
    Form(form): Form<PollForm>,
) -> Result<Page, UiError> {
    operator.check_csrf(&form.csrf)?;
    let poller = state
        .ldap
        .get(&SourceName::new(&source))
        .ok_or_else(|| UiError::NotFound(format!("no LDAP source {source:?}")))?;
    let request = PollRequest {
        full: form.kind == "full",
        force: form.kind == "force",
    };
    let result = poller.poll(request).await;
    let poll = poller
        .state()
        .await
        .map_err(|e| UiError::Internal(format!("ldap: {e}")))?;
    let body = html! {
        h1 { "Polled " (source) }
        @match &result {
            Ok(report) => {
                @if report.held.is_some() {
                    p class="summary bad" role="alert" { "The poll was held; nothing was applied." }
                } @else {
                    p class="summary ok" role="status" {
                        (report.users_read) " users and " (report.groups_read) " groups read; "
                        (report.changes) " user change(s), " (report.groups.changes()) " group change(s)."
                    }
                }
            }
            Err(e) => p class="summary bad" role="alert" { "The poll failed; nothing was changed: " (e) },
        }
        (render_state(&poll))
        p { a href="/ui/ldap" { "Back to LDAP sources" } }
    };
    Ok(layout::page("LDAP poll", "/ui/ldap", &operator.csrf, body))
}
