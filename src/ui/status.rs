//! `GET /ui/`: the status page, from the same service that answers
//! `/admin/v1/status`, plus a live check that Tyk answers. The summary at
//! the top is "OK" only when nothing below reports a failure.

use std::time::Duration;

use axum::extract::State;
use maud::{Markup, html};

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page, badge, when};
use super::session::Operator;
use crate::admin::StatusResponse;
use crate::domain::Timestamp;
use crate::store::sync_runs::{self, RunKind, RunStatus};

/// How long the Tyk check waits for an answer.
const TYK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// An outbox event older than this means the sync is not keeping up.
const OUTBOX_STALE_SECONDS: f64 = 300.0;

/// Whether Tyk answered a one-page group listing.
pub enum TykReach {
    NotConfigured,
    Reachable,
    Unreachable(String),
}

async fn check_tyk(state: &UiState) -> TykReach {
    let Some(client) = &state.tyk else {
        return TykReach::NotConfigured;
    };
    match tokio::time::timeout(TYK_CHECK_TIMEOUT, client.list_groups_page(1)).await {
        Ok(Ok(_)) => TykReach::Reachable,
        Ok(Err(e)) => TykReach::Unreachable(e.to_string()),
        Err(_) => TykReach::Unreachable(format!("no answer within {TYK_CHECK_TIMEOUT:?}")),
    }
}

/// What the page knows beyond the status service.
struct Extra {
    tyk: TykReach,
    last_run: Option<sync_runs::SyncRun>,
    next_full: Option<Timestamp>,
}

/// Everything the status reports as failed or needing an operator, one
/// sentence each; empty means OK.
fn problems(status: &StatusResponse, extra: &Extra) -> Vec<String> {
    let mut out = Vec::new();
    for (name, source) in &status.sources {
        if let Some(error) = &source.last_poll_error {
            out.push(format!("Source {name}: the last poll failed: {error}"));
        }
        if source.poll_held {
            out.push(format!(
                "Source {name}: the last poll was held by the mass-removal guard"
            ));
        }
    }
    if let TykReach::Unreachable(why) = &extra.tyk {
        out.push(format!("Tyk is not reachable: {why}"));
    }
    if status.sync.held_runs > 0 {
        out.push(format!(
            "{} sync run(s) held by the mass-change guard, waiting for approval",
            status.sync.held_runs
        ));
    }
    if let Some(run) = extra
        .last_run
        .as_ref()
        .filter(|r| r.status == RunStatus::Failed)
    {
        out.push(format!(
            "The last sync run ({}) failed {} step(s)",
            run.id, run.steps_failed
        ));
    }
    if let Some(age) = status
        .outbox
        .oldest_age_seconds
        .filter(|a| *a > OUTBOX_STALE_SECONDS)
    {
        out.push(format!(
            "The oldest pending change is {age:.0} s old ({} pending)",
            status.outbox.depth
        ));
    }
    if status.failures.quarantined > 0 {
        out.push(format!(
            "{} person(s) quarantined: Tyk refused them and they are not tried again \
             until they change or an operator retries (see Failures)",
            status.failures.quarantined
        ));
    }
    if status.invalid_email.count > 0 {
        out.push(format!(
            "{} person(s) cannot be provisioned: their e-mail is not an address",
            status.invalid_email.count
        ));
    }
    // Skipped people with an invalid e-mail are named just above; the
    // rest have none at all.
    let without_email = status.failures.skipped - status.invalid_email.count;
    if without_email > 0 {
        out.push(format!(
            "{without_email} person(s) skipped: they have no e-mail, so they are never sent to Tyk"
        ));
    }
    if !status.fold_collisions.is_empty() {
        out.push(format!(
            "{} name collision(s) after case folding",
            status.fold_collisions.len()
        ));
    }
    out
}

pub async fn page(State(state): State<UiState>, operator: Operator) -> Result<Page, UiError> {
    let status = crate::admin::collect_status(&state.app)
        .await
        .map_err(|e| UiError::Internal(e.message))?;
    let mut conn = state.app.store.pool().acquire().await?;
    let runs = sync_runs::list_runs(&mut conn, None, 50).await?;
    drop(conn);
    let interval = i64::try_from(state.app.config.sync.interval.as_millis()).unwrap_or(i64::MAX);
    let next_full = runs.iter().find(|r| r.kind == RunKind::Full).map(|r| {
        Timestamp(
            r.finished_at
                .unwrap_or(r.created_at)
                .0
                .saturating_add(interval),
        )
    });
    let extra = Extra {
        tyk: check_tyk(&state).await,
        last_run: runs.into_iter().next(),
        next_full,
    };
    let problems = problems(&status, &extra);
    Ok(layout::page(
        "Status",
        "/ui/",
        &operator.csrf,
        render(&status, &extra, &problems),
    ))
}

fn render(status: &StatusResponse, extra: &Extra, problems: &[String]) -> Markup {
    html! {
        h1 { "Status" }
        @if problems.is_empty() {
            div class="summary ok" role="status" {
                p { strong { "OK" } " — every check below is in order." }
            }
        } @else {
            div class="summary bad" role="alert" {
                p { strong { "Attention needed" } " — " (problems.len()) " problem(s):" }
                ul { @for p in problems { li { (p) } } }
            }
        }
        h2 { "Sources" }
        div class="scroll" {
            table {
                thead { tr {
                    th scope="col" { "Source" } th scope="col" { "Kind" }
                    th scope="col" { "Users" } th scope="col" { "Groups" }
                    th scope="col" { "Last event" } th scope="col" { "Last poll" }
                    th scope="col" { "State" }
                } }
                tbody {
                    @if status.sources.is_empty() {
                        tr { td colspan="7" class="muted" { "No source is configured." } }
                    }
                    @for (name, s) in &status.sources {
                        tr {
                            th scope="row" { (name) }
                            td { (s.kind) }
                            td { (s.users) }
                            td { (s.groups) }
                            td { (when(s.last_event.as_deref())) }
                            td { @if s.kind == "ldap" { (when(s.last_poll.as_deref())) } @else { "n/a (pushed)" } }
                            td {
                                @if let Some(e) = &s.last_poll_error {
                                    span class="badge bad" { "poll failed" } " " (e)
                                } @else if s.poll_held {
                                    span class="badge bad" { "poll held" }
                                } @else {
                                    (badge(true, ""))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Sync" }
        dl class="facts" {
            dt { "Tyk Dashboard" }
            dd {
                @match &extra.tyk {
                    TykReach::NotConfigured => span class="badge bad" { "not configured: no sync" },
                    TykReach::Reachable => span class="badge ok" { "reachable" },
                    TykReach::Unreachable(why) => { span class="badge bad" { "unreachable" } " " (why) },
                }
            }
            dt { "Last run" }
            dd {
                @if let Some(run) = &extra.last_run {
                    a href={ "/ui/runs/" (run.id) } { (run.kind.as_str()) " run" } " — "
                    (run.status.as_str()) ", " (run.steps_applied) " applied, "
                    (run.steps_failed) " failed, "
                    (when(Some(&run.finished_at.unwrap_or(run.created_at).to_rfc3339())))
                } @else { "none yet" }
            }
            dt { "Last success" }
            dd { (when(status.sync.last_success.as_deref())) }
            dt { "Next full reconcile" }
            dd {
                @if let Some(next) = extra.next_full {
                    "due about " (when(Some(&next.to_rfc3339())))
                } @else { "at the next interval (none has run yet)" }
            }
            dt { "Held runs" }
            dd {
                @if status.sync.held_runs > 0 {
                    a href="/ui/runs" { (status.sync.held_runs) " waiting for approval" }
                } @else { "none" }
            }
            dt { "Quarantined people" }
            dd {
                @if status.failures.quarantined > 0 {
                    a href="/ui/failures" { (status.failures.quarantined) " quarantined" }
                } @else { "none" }
            }
            dt { "Skipped people" }
            dd {
                @if status.failures.skipped > 0 {
                    a href="/ui/failures" { (status.failures.skipped) " skipped (no usable e-mail)" }
                } @else { "none" }
            }
            dt { "Outbox depth" }
            dd { (status.outbox.depth) " pending change(s)" }
            dt { "Oldest pending" }
            dd {
                @if let Some(age) = status.outbox.oldest_age_seconds { (format!("{age:.1}")) " s" }
                @else { "—" }
            }
            dt { "Replica" }
            dd { (status.role) ", " (status.database) ", version " (status.version) }
        }
        @if status.invalid_email.count > 0 {
            h2 { "People who cannot be provisioned" }
            div class="scroll" { table {
                thead { tr { th scope="col" { "Source" } th scope="col" { "User name" } th scope="col" { "Problem" } } }
                tbody { @for p in &status.invalid_email.sample {
                    tr { td { (p.source) } td { (p.user_name) } td { (p.problem) } }
                } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::admin::status::{
        FailuresStatus, InvalidEmailStatus, OutboxStatus, SourceStatus, StatusResponse, SyncInfo,
    };

    fn status(poll_error: Option<&str>, held_runs: i64) -> StatusResponse {
        let source = |kind: &str, error: Option<&str>| SourceStatus {
            kind: kind.into(),
            last_poll: (kind == "ldap").then(|| "2026-12-01T10:00:00Z".into()),
            last_poll_error: error.map(str::to_string),
            poll_held: false,
            users: 12,
            groups: 3,
            last_event: Some("2026-12-01T09:59:00Z".into()),
        };
        StatusResponse {
            version: "0.1.0".into(),
            database: "sqlite".into(),
            role: "leader".into(),
            outbox: OutboxStatus {
                depth: 0,
                oldest_age_seconds: None,
            },
            sources: BTreeMap::from([
                ("corp".to_string(), source("ldap", poll_error)),
                ("okta".to_string(), source("scim", None)),
            ]),
            sync: SyncInfo {
                enabled: true,
                last_applied_run: None,
                last_success: Some("2026-12-01T10:00:01Z".into()),
                held_runs,
            },
            invalid_email: InvalidEmailStatus {
                count: 0,
                sample: vec![],
            },
            failures: FailuresStatus {
                quarantined: 0,
                skipped: 0,
            },
            fold_collisions: vec![],
            tib: None,
        }
    }

    fn extra(tyk: TykReach) -> Extra {
        Extra {
            tyk,
            last_run: None,
            next_full: Some(Timestamp(1_764_583_200_000)),
        }
    }

    #[test]
    fn everything_in_order_is_ok() {
        let (s, e) = (status(None, 0), extra(TykReach::Reachable));
        assert!(problems(&s, &e).is_empty());
        let html = render(&s, &e, &[]).into_string().replace("><", ">\n<");
        insta::assert_snapshot!(html);
    }

    #[test]
    fn every_failure_is_named_and_the_page_is_never_ok() {
        let s = status(Some("cannot reach ldap://corp: connection refused"), 2);
        let e = extra(TykReach::Unreachable("connection refused".into()));
        let found = problems(&s, &e);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("Source corp: the last poll failed"));
        assert!(found.iter().any(|p| p.starts_with("Tyk is not reachable")));
        assert!(found.iter().any(|p| p.starts_with("2 sync run(s) held")));
        let html = render(&s, &e, &found).into_string();
        assert!(!html.contains("<strong>OK</strong>"), "{html}");
        assert!(html.contains("Attention needed"), "{html}");
    }

    #[test]
    fn a_quarantined_or_skipped_person_is_never_ok_and_links_to_failures() {
        let mut s = status(None, 0);
        s.failures = FailuresStatus {
            quarantined: 2,
            skipped: 1,
        };
        let e = extra(TykReach::Reachable);
        let found = problems(&s, &e);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("2 person(s) quarantined"), "{found:?}");
        assert!(found[1].starts_with("1 person(s) skipped"), "{found:?}");
        let html = render(&s, &e, &found).into_string();
        assert!(!html.contains("<strong>OK</strong>"), "{html}");
        assert!(
            html.contains("<a href=\"/ui/failures\">2 quarantined</a>"),
            "{html}"
        );
        assert!(html.contains("1 skipped (no usable e-mail)"), "{html}");
    }
}
