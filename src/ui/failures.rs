//! `/ui/failures`: every quarantined or skipped person, as
//! `GET /admin/v1/sync/failures` lists them ([`crate::sync::quarantine::failures`]),
//! with a CSRF-protected Retry per quarantined person and "Retry all".
//! Retrying lifts the quarantine through the service the admin retry route
//! calls ([`crate::sync::SyncWorker::retry_quarantined`]), so the worker is
//! woken and tries them at once.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page, csrf_field, when};
use super::login::CsrfForm;
use super::people::person_href;
use super::session::Operator;
use crate::store::sync_quarantine::FailedPerson;

pub async fn list(State(state): State<UiState>, operator: Operator) -> Result<Page, UiError> {
    let people = crate::sync::quarantine::failures(&state.app.store).await?;
    let quarantined = people.iter().filter(|p| is_quarantined(p)).count();
    let skipped = people.len() - quarantined;
    let body = html! {
        h1 { "Failures" }
        @if people.is_empty() {
            p class="summary ok" role="status" { "Nobody is quarantined or skipped." }
        } @else {
            div class="summary bad" role="alert" {
                p {
                    strong { (quarantined) " quarantined" } " (Tyk refused them; not tried again until they change or you retry), "
                    strong { (skipped) " skipped" } " (no usable e-mail; never sent to Tyk until the identity is fixed)."
                }
            }
            @if quarantined > 0 {
                form method="post" action="/ui/failures/retry" {
                    (csrf_field(&operator.csrf))
                    button type="submit" { "Retry all (" (quarantined) ")" }
                }
            }
            (failures_table(&people, &operator.csrf, RetryFrom::Failures))
        }
    };
    Ok(layout::page(
        "Failures",
        "/ui/failures",
        &operator.csrf,
        body,
    ))
}

fn is_quarantined(person: &FailedPerson) -> bool {
    person.state == "quarantined"
}

/// Where a Retry button posts (and the page it returns to).
#[derive(Clone, Copy)]
pub enum RetryFrom {
    Failures,
    Person,
}

fn retry_action(from: RetryFrom, email: &str) -> String {
    match from {
        RetryFrom::Failures => format!(
            "/ui/failures/{}/retry",
            url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>()
        ),
        RetryFrom::Person => format!("{}/retry", person_href(email)),
    }
}

/// Quarantined and skipped people as a table, with a Retry button for each
/// quarantined one.
pub fn failures_table(people: &[FailedPerson], csrf: &str, from: RetryFrom) -> Markup {
    html! {
        div class="scroll" { table {
            thead { tr {
                th scope="col" { "Person" } th scope="col" { "Source" } th scope="col" { "Organisation" }
                th scope="col" { "Kind" } th scope="col" { "Reason" } th scope="col" { "Attempts" }
                th scope="col" { "Seen" } th scope="col" { "Action" }
            } }
            tbody { @for p in people { tr {
                td {
                    @if is_quarantined(p) { a href=(person_href(&p.person)) { (p.person) } }
                    @else { (p.person) }
                }
                td { (p.source) }
                td { (p.org_id.as_deref().unwrap_or("—")) }
                td { span class="badge bad" { (p.kind) } " " (p.state) }
                td { @if let Some(status) = p.status { (status) " " } (p.reason) }
                td { (p.attempts) }
                td { "first " (when(Some(&p.first_seen))) br; "last " (when(Some(&p.last_seen))) }
                td {
                    @if is_quarantined(p) {
                        form method="post" action=(retry_action(from, &p.person)) {
                            (csrf_field(csrf))
                            button type="submit" aria-label={ "Retry " (p.person) } { "Retry" }
                        }
                    } @else {
                        span class="muted" { "fix the identity" }
                    }
                }
            } } }
        } }
    }
}

/// Lifts `email`'s quarantine (everyone's with `None`) through the sync
/// worker when this process has one, else through the same store service
/// the CLI uses. Returns the e-mails lifted.
async fn lift(state: &UiState, email: Option<&str>) -> Result<Vec<String>, UiError> {
    match &state.app.sync {
        Some(worker) => worker
            .retry_quarantined(email)
            .await
            .map_err(|e| UiError::Internal(format!("retry: {e}"))),
        None => Ok(crate::sync::quarantine::retry(&state.app.store, email).await?),
    }
}

async fn retry_one(state: &UiState, operator: &Operator, email: &str) -> Result<(), UiError> {
    let lifted = lift(state, Some(email)).await?;
    if lifted.is_empty() {
        return Err(UiError::NotFound(format!("{email} is not quarantined")));
    }
    tracing::info!(actor = %operator.actor(), email, "quarantine lifted from the console");
    Ok(())
}

/// `POST /ui/failures/{email}/retry` → back to the failures page.
pub async fn retry_from_failures(
    State(state): State<UiState>,
    operator: Operator,
    Path(email): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    retry_one(&state, &operator, &email).await?;
    Ok(Redirect::to("/ui/failures").into_response())
}

/// `POST /ui/people/{email}/retry` → back to the person.
pub async fn retry_from_person(
    State(state): State<UiState>,
    operator: Operator,
    Path(email): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    retry_one(&state, &operator, &email).await?;
    Ok(Redirect::to(&person_href(&email)).into_response())
}

/// `POST /ui/failures/retry`: lifts every quarantine.
pub async fn retry_all(
    State(state): State<UiState>,
    operator: Operator,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    let lifted = lift(&state, None).await?;
    tracing::info!(actor = %operator.actor(), lifted = lifted.len(), "every quarantine lifted from the console");
    Ok(Redirect::to("/ui/failures").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> FailedPerson {
        FailedPerson {
            person: "dana@example.org".into(),
            org_id: Some("org1".into()),
            source: "okta".into(),
            kind: "tyk_refused".into(),
            status: Some(400),
            reason: "User object validation failed.".into(),
            attempts: 3,
            first_seen: "2026-12-01T10:00:00Z".into(),
            last_seen: "2026-12-01T10:05:00Z".into(),
            state: "quarantined".into(),
            fingerprint: String::new(),
        }
    }

    fn skipped() -> FailedPerson {
        FailedPerson {
            person: "no-address".into(),
            org_id: None,
            source: "corp".into(),
            kind: "no_email".into(),
            status: None,
            reason: "the identity has no primary e-mail; it is never sent to Tyk".into(),
            attempts: 0,
            first_seen: "2026-12-01T09:00:00Z".into(),
            last_seen: "2026-12-01T09:00:00Z".into(),
            state: "skipped".into(),
            fingerprint: String::new(),
        }
    }

    #[test]
    fn quarantined_people_get_a_retry_button_and_skipped_ones_do_not() {
        let html = failures_table(&[refused(), skipped()], "tok", RetryFrom::Failures)
            .into_string()
            .replace("><", ">\n<");
        assert_eq!(html.matches("<button").count(), 1, "{html}");
        assert!(
            html.contains("action=\"/ui/failures/dana%40example.org/retry\""),
            "{html}"
        );
        insta::assert_snapshot!(html);
    }

    #[test]
    fn the_person_page_retries_to_the_person() {
        let html = failures_table(&[refused()], "tok", RetryFrom::Person).into_string();
        assert!(
            html.contains("action=\"/ui/people/dana%40example.org/retry\""),
            "{html}"
        );
    }
}
