//! `/ui/people`: search by e-mail or name; `/ui/people/{email}`: the
//! explain view ([`crate::mapping::explain`]) with what Tyk holds now, the
//! steps a sync would take and any quarantine (the admin explain's Tyk side,
//! [`crate::mapping::explain::tyk_side_of`]), and the person's recent audit
//! rows; `POST /ui/people/{email}/sync`: provision on demand
//! ([`crate::sync::on_demand`]).

use axum::Form;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page, csrf_field};
use super::login::CsrfForm;
use super::session::Operator;
use crate::mapping::Explanation;
use crate::store::people_search;
use crate::store::sync_audit::{self, AuditEntry, AuditFilter};
use crate::sync::person::PersonInTyk;

/// How many identities a search lists.
const SEARCH_LIMIT: i64 = 50;
/// How many audit rows the person page shows.
const RECENT_AUDIT: i64 = 20;
/// How long the person page waits for what Tyk holds.
const TYK_SIDE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub fn person_href(email: &str) -> String {
    format!(
        "/ui/people/{}",
        url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>()
    )
}

pub async fn search(
    State(state): State<UiState>,
    operator: Operator,
    Query(query): Query<SearchQuery>,
) -> Result<Page, UiError> {
    let text = query.q.trim();
    let hits = if text.is_empty() {
        Vec::new()
    } else {
        let mut conn = state.app.store.pool().acquire().await?;
        people_search::search(&mut conn, text, SEARCH_LIMIT).await?
    };
    let body = html! {
        h1 { "People" }
        form method="get" action="/ui/people" role="search" {
            label for="q" { "E-mail or name" }
            div class="row" {
                input type="search" id="q" name="q" value=(text);
                button type="submit" { "Search" }
            }
        }
        @if !text.is_empty() {
            h2 { (hits.len()) " identit" @if hits.len() == 1 { "y" } @else { "ies" } " matching “" (text) "”" }
            @if hits.is_empty() {
                p class="muted" { "Nobody matches." }
            } @else {
                div class="scroll" { table {
                    thead { tr {
                        th scope="col" { "E-mail" } th scope="col" { "Name" }
                        th scope="col" { "Source" } th scope="col" { "User name" } th scope="col" { "Active" }
                    } }
                    tbody { @for hit in &hits { tr {
                        td { @if let Some(email) = &hit.email { a href=(person_href(email)) { (email) } } @else { span class="muted" { "(no usable e-mail)" } } }
                        td { (hit.name.as_deref().unwrap_or("")) }
                        td { (hit.source) }
                        td { (hit.user_name) }
                        td { @if hit.active { "yes" } @else { "no" } }
                    } } }
                } }
            }
        }
    };
    Ok(layout::page("People", "/ui/people", &operator.csrf, body))
}

fn mapping_config(state: &UiState) -> crate::mapping::MappingConfig {
    state
        .app
        .mapping
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

async fn explanation(state: &UiState, email: &str) -> Result<Explanation, UiError> {
    let config = mapping_config(state);
    let mut explanation = crate::mapping::explain::explain_email(&state.app.store, &config, email)
        .await
        .map_err(|e| UiError::Internal(format!("explain: {e}")))?;
    let logins = crate::tib::config::logins(state.app.config.tib.as_ref());
    crate::mapping::explain::add_tib_notes(&mut explanation, &logins);
    Ok(explanation)
}

async fn recent_audit(state: &UiState, email: &str) -> Result<Vec<AuditEntry>, UiError> {
    let mut conn = state.app.store.pool().acquire().await?;
    let filter = AuditFilter {
        email: Some(crate::domain::fold_key(email.trim())),
        limit: RECENT_AUDIT,
        ..AuditFilter::default()
    };
    Ok(sync_audit::list(&mut conn, &filter).await?)
}

pub async fn detail(
    State(state): State<UiState>,
    operator: Operator,
    Path(email): Path<String>,
) -> Result<Page, UiError> {
    let explanation = explanation(&state, &email).await?;
    let audit = recent_audit(&state, &email).await?;
    // The same lookup the admin explain route makes (one Tyk client, its
    // limiter); without a Tyk Dashboard there is no Tyk side to show.
    let tyk = match &state.app.sync {
        Some(worker) => {
            let lookup = crate::mapping::explain::tyk_side_of(worker.clone())(email.clone());
            // A slow Tyk must not hold the page: the rest of it is ours.
            Some(
                tokio::time::timeout(TYK_SIDE_TIMEOUT, lookup)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "cannot read Tyk: no answer within {TYK_SIDE_TIMEOUT:?}"
                        ))
                    }),
            )
        }
        None => None,
    };
    let body = html! {
        (render_explanation(&explanation, state.app.sync.is_some(), &operator.csrf))
        @if let Some(tyk) = &tyk {
            (render_tyk_side(&explanation.email, tyk, &operator.csrf))
        }
        h2 { "Recent audit" }
        (audit_table(&audit))
    };
    Ok(layout::page(
        &explanation.email,
        "/ui/people",
        &operator.csrf,
        body,
    ))
}

pub async fn sync_now(
    State(state): State<UiState>,
    operator: Operator,
    Path(email): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Page, UiError> {
    operator.check_csrf(&form.csrf)?;
    let Some(worker) = &state.app.sync else {
        return Err(UiError::BadRequest(
            "no Tyk Dashboard is configured: there is nothing to sync to".into(),
        ));
    };
    if !state.app.leadership.is_leader() {
        return Err(UiError::BadRequest(
            "this replica is not the leader; open the console on the leader to sync now".into(),
        ));
    }
    let result = crate::sync::on_demand::sync_person(worker, &email, &operator.actor())
        .await
        .map_err(|e| match e {
            crate::sync::SyncError::Load(e) => UiError::Upstream(e.to_string()),
            e => UiError::Internal(format!("sync now: {e}")),
        })?;
    let explanation = explanation(&state, &email).await?;
    let held = result
        .runs
        .iter()
        .any(|r| r.outcome == crate::sync::Outcome::Held);
    let errors: Vec<&String> = result.runs.iter().flat_map(|r| &r.errors).collect();
    let body = html! {
        h1 { "Synced " (explanation.email) }
        @if !result.settled {
            p role="alert" class="error" { "The change is still waiting in the outbox (it may be retried with a backoff); the steps so far are below." }
        } @else if held {
            p role="alert" class="error" { "The run was held by the mass-change guard; approve it under " a href="/ui/runs" { "Runs" } "." }
        } @else if !errors.is_empty() {
            div class="summary bad" role="alert" { p { "Some steps failed:" } ul { @for e in &errors { li { (e) } } } }
        } @else if result.steps.is_empty() {
            p class="summary ok" role="status" { "Nothing to do: Tyk already holds what the mapping asks for." }
        } @else {
            p class="summary ok" role="status" { (result.steps.len()) " step(s) applied." }
        }
        h2 { "Steps" }
        (audit_table(&result.steps))
        p { a href=(person_href(&explanation.email)) { "Back to " (explanation.email) } }
    };
    Ok(layout::page("Sync now", "/ui/people", &operator.csrf, body))
}

fn render_explanation(e: &Explanation, can_sync: bool, csrf: &str) -> Markup {
    html! {
        h1 { (e.email) }
        @if can_sync {
            form method="post" action={ (person_href(&e.email)) "/sync" } {
                (csrf_field(csrf))
                button type="submit" { "Sync this person now" }
            }
        }
        h2 { "Identities" }
        @if e.identities.is_empty() {
            p class="muted" { "No source knows this e-mail." }
        } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Source" } th scope="col" { "User name" } th scope="col" { "Active" } th scope="col" { "Groups" } } }
                tbody { @for i in &e.identities { tr {
                    td { (i.source.as_str()) } td { (i.user_name) }
                    td { @if i.active { "yes" } @else { "no" } }
                    td { (i.groups.join(", ")) }
                } } }
            } }
        }
        h2 { "Matching rules" }
        @if e.matches.is_empty() {
            p class="muted" { "No mapping rule matches." }
        } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Organisation" } th scope="col" { "Tyk group" } th scope="col" { "Priority" } th scope="col" { "Matched by" } th scope="col" { "Winner" } } }
                tbody { @for m in &e.matches { tr {
                    td { (m.org_id) } td { (m.group) } td { (m.priority) }
                    td { @for (entry, group) in &m.matched_by { code { (entry) } " matched " (group) br; } }
                    td { @if m.won { strong { "wins" } } }
                } } }
            } }
        }
        h2 { "Decision" }
        ul { @for reason in &e.reasons { li { (reason) } } }
        h2 { "Desired in Tyk" }
        @if e.users.is_empty() {
            p class="muted" { "Not provisioned." }
        } @else {
            div class="scroll" { table {
                thead { tr { th scope="col" { "Organisation" } th scope="col" { "Name" } th scope="col" { "Group" } th scope="col" { "Active" } th scope="col" { "Sources" } } }
                tbody { @for u in &e.users { tr {
                    td { (u.org_id) } td { (u.first_name) " " (u.last_name) }
                    td { (u.group.as_deref().unwrap_or("(none)")) }
                    td { @if u.active { "yes" } @else { "no" } }
                    td { (u.sources.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) }
                } } }
            } }
        }
        @if !e.notes.is_empty() {
            h2 { "Notes" }
            ul { @for note in &e.notes { li { (note) } } }
        }
    }
}

/// What Tyk holds for the person, the steps a sync would take for them, and
/// any quarantine with its Retry button.
fn render_tyk_side(email: &str, tyk: &Result<PersonInTyk, String>, csrf: &str) -> Markup {
    let person = match tyk {
        Ok(person) => person,
        Err(why) => {
            return html! {
                h2 { "In Tyk now" }
                p role="alert" class="error" { (why) }
            };
        }
    };
    let no_steps = person.plan["steps"].as_array().is_none_or(|s| s.is_empty());
    let left_alone = person.plan["skipped"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    // The headline below says it when there is nothing to do; the rest of
    // the text (who is left alone and why, the counts) still shows.
    let text = person
        .plan_text
        .strip_prefix("nothing to do: Tyk matches the desired state\n")
        .unwrap_or(&person.plan_text);
    html! {
        h2 { "In Tyk now" }
        @if person.tyk_users.is_empty() {
            p class="muted" { "Tyk has no user with this e-mail." }
        } @else {
            div class="scroll" { table {
                thead { tr {
                    th scope="col" { "Organisation" } th scope="col" { "Tyk id" } th scope="col" { "Name" }
                    th scope="col" { "Group" } th scope="col" { "State" } th scope="col" { "Managed" }
                } }
                tbody { @for u in &person.tyk_users { tr {
                    td { (u.org_id) } td { code { (u.id) } } td { (u.first_name) " " (u.last_name) }
                    td {
                        @match (&u.group_id, &u.group_name) {
                            (Some(_), Some(name)) => (name),
                            (Some(id), None) => { code { (id) } " (not a group Tyk lists)" },
                            (None, _) => span class="muted" { "no group" },
                        }
                    }
                    td { @if u.active { span class="badge ok" { "active" } } @else { span class="badge bad" { "deactivated" } } }
                    td { @if u.managed { "managed" } @else { strong { "not managed" } } " — " (u.why) }
                } } }
            } }
        }
        h2 { "A sync would" }
        @if no_steps && left_alone {
            p { "Take no step: the person is left alone." }
        } @else if no_steps {
            p { "Take no step: Tyk matches the desired state." }
        }
        @if !text.trim().is_empty() {
            pre class="plan" { (text) }
        }
        @if !person.quarantine.is_empty() {
            h2 { "Quarantined" }
            p role="alert" class="error" {
                "Tyk refused this person; they are not tried again until their identity or the mapping changes, or you retry."
            }
            (super::failures::failures_table(&person.quarantine, csrf, super::failures::RetryFrom::Person))
            p class="muted" { "Retry lifts the quarantine for " (email) " in every organisation; the next sync tries them at once." }
        }
    }
}

/// Audit rows as a table (oldest first as given).
pub fn audit_table(entries: &[AuditEntry]) -> Markup {
    html! {
        @if entries.is_empty() {
            p class="muted" { "No audit rows." }
        } @else {
            div class="scroll" { table {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Step" } th scope="col" { "E-mail" } th scope="col" { "Source" }
                    th scope="col" { "Result" } th scope="col" { "By" } th scope="col" { "Run" }
                } }
                tbody { @for a in entries { tr {
                    td { (layout::when(Some(&a.entry.at.to_rfc3339()))) }
                    td { (a.entry.step_kind) }
                    td { (a.entry.email.as_deref().unwrap_or("")) }
                    td { (a.source.as_deref().unwrap_or("")) }
                    td {
                        @if a.entry.ok { span class="badge ok" { "ok" } } @else { span class="badge bad" { "failed" } }
                        @if let Some(m) = &a.entry.message { " " (m) }
                    }
                    td { (a.entry.actor) }
                    td { @if let Some(run) = a.entry.run_id { a href={ "/ui/runs/" (run) } { (run.to_string()[..8]) } } }
                } } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::person::TykUserView;

    fn hand_made() -> TykUserView {
        TykUserView {
            id: "u-hand".into(),
            org_id: "org1".into(),
            first_name: "Hand".into(),
            last_name: "Made".into(),
            active: false,
            group_id: None,
            group_name: None,
            managed: false,
            why: "not created by tyk-idsync (no ownership record)".into(),
        }
    }

    #[test]
    fn the_tyk_side_names_each_user_the_plan_and_an_unreadable_tyk() {
        let person = PersonInTyk {
            tyk_users: vec![hand_made()],
            plan: serde_json::json!({"steps": [], "skipped": [{"reason": "unmanaged_user"}]}),
            plan_text: "nothing to do: Tyk matches the desired state\n\
                        left alone: hand@example.org (unmanaged_user)\n"
                .into(),
            quarantine: vec![],
        };
        let html = render_tyk_side("hand@example.org", &Ok(person), "tok")
            .into_string()
            .replace("><", ">\n<");
        assert!(html.contains("<strong>not managed</strong>"), "{html}");
        assert!(html.contains("deactivated"), "{html}");
        assert!(!html.contains("Quarantined"), "{html}");
        insta::assert_snapshot!(html);

        let html = render_tyk_side("a@example.org", &Err("cannot read Tyk: 503".into()), "tok")
            .into_string();
        assert!(html.contains("cannot read Tyk: 503"), "{html}");
    }
}
