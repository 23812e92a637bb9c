//! Plans, runs and audit entries for people: aligned text tables for the
//! CLI (`tyk-idsync plan`, `runs list`, `audit`) and JSON for `--json`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::guard::GuardVerdict;
use super::step::{GroupRef, Permissions, Plan, PlanStep};
use crate::store::sync_audit::AuditEntry;
use crate::store::sync_runs::SyncRun;

/// Left-aligned columns separated by two spaces, header first.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn permissions(perms: &Permissions) -> String {
    perms
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn group(group: &GroupRef) -> String {
    match group {
        GroupRef::Id(id) => id.clone(),
        GroupRef::New(name) => format!("{name} (new)"),
    }
}

fn with_rule(text: String, rule: &Option<String>) -> String {
    match rule {
        Some(rule) => format!("{text}; rule {rule}"),
        None => text,
    }
}

/// The subject (person or group) and a one-line description of a step.
fn describe(step: &PlanStep) -> (String, String) {
    match step {
        PlanStep::CreateGroup {
            name,
            permissions: p,
            ..
        } => (name.clone(), permissions(p)),
        PlanStep::AdoptGroup { name, group_id, .. } => {
            (name.clone(), format!("take over {group_id}"))
        }
        PlanStep::UpdateGroupPermissions {
            name,
            before,
            after,
            ..
        } => (
            name.clone(),
            format!("{} -> {}", permissions(before), permissions(after)),
        ),
        PlanStep::DeleteGroup { name, group_id, .. } => {
            (name.clone(), format!("delete {group_id}"))
        }
        PlanStep::CreateUser {
            email,
            group: g,
            rule,
            ..
        } => (
            email.clone(),
            with_rule(format!("in group {}", group(g)), rule),
        ),
        PlanStep::AdoptUser {
            email,
            user_id,
            resumed_creation,
            rule,
            ..
        } => {
            let what = if *resumed_creation {
                "resume interrupted creation of"
            } else {
                "take over"
            };
            (email.clone(), with_rule(format!("{what} {user_id}"), rule))
        }
        PlanStep::Reactivate { email, user_id, .. } => {
            (email.clone(), format!("{user_id} active=true"))
        }
        PlanStep::RevertEmail {
            email,
            user_id,
            found,
            ..
        } => (
            email.clone(),
            format!("{user_id} e-mail {found} -> {email} (changed in Tyk by hand)"),
        ),
        PlanStep::UpdateUserProfile {
            email,
            before,
            after,
            ..
        } => (
            email.clone(),
            format!(
                "{} {} -> {} {}",
                before.first_name, before.last_name, after.first_name, after.last_name
            ),
        ),
        PlanStep::MoveToGroup {
            email,
            from,
            to,
            rule,
            ..
        } => (
            email.clone(),
            with_rule(
                format!("{} -> {}", from.as_deref().unwrap_or("(none)"), group(to)),
                rule,
            ),
        ),
        PlanStep::UpdateUserPermissions {
            email,
            before,
            after,
            ..
        } => (
            email.clone(),
            format!("{} -> {}", permissions(before), permissions(after)),
        ),
        PlanStep::Deactivate {
            email,
            user_id,
            reason,
            ..
        } => (
            email.clone(),
            format!(
                "{user_id} active=false ({})",
                json!(reason).as_str().unwrap_or("")
            ),
        ),
        PlanStep::RecordDeactivation { email, user_id, .. } => (
            email.clone(),
            format!("{user_id} already inactive; grace period starts"),
        ),
        PlanStep::Delete { email, user_id, .. } => (email.clone(), format!("delete {user_id}")),
        PlanStep::ResetAccessKey { email, user_id, .. } => (
            email.clone(),
            format!("{user_id} new Dashboard API access key (the old one stops working)"),
        ),
        PlanStep::ForgetUser { email, user_id, .. } => (
            email.clone(),
            format!("{user_id} is gone from Tyk; forget it"),
        ),
    }
}

fn verdict_line(verdict: &GuardVerdict) -> String {
    match verdict {
        GuardVerdict::Proceed => "guard: proceed".to_string(),
        held @ GuardVerdict::Hold { .. } => {
            format!("guard: HOLD - {}; needs approval", held.reason())
        }
    }
}

/// `tyk-idsync plan`: the steps, what is left alone, a summary line and the guard.
pub fn plan_table(plan: &Plan, verdict: &GuardVerdict) -> String {
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (subject, detail) = describe(step);
            vec![
                (i + 1).to_string(),
                step.kind().to_string(),
                step.org_id().to_string(),
                subject,
                detail,
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "nothing to do: Tyk matches the desired state\n".to_string()
    } else {
        table(&["#", "STEP", "ORG", "SUBJECT", "DETAIL"], &rows)
    };
    if !plan.skipped.is_empty() {
        out.push_str("\nleft alone:\n");
        let rows: Vec<Vec<String>> = plan
            .skipped
            .iter()
            .map(|s| {
                vec![
                    s.org_id.clone(),
                    s.subject.clone(),
                    json!(s.reason).as_str().unwrap_or("").to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["ORG", "SUBJECT", "REASON"], &rows));
    }
    let summary = plan.summary();
    out.push_str(&format!(
        "\n{} steps, {} Tyk writes, {} people changed, {} losing access, {} left alone\n{}\n",
        plan.steps.len(),
        summary.tyk_writes,
        summary.people_changed,
        summary.people_removed,
        summary.skipped,
        verdict_line(verdict)
    ));
    out
}

/// `tyk-idsync plan --json`.
pub fn plan_json(plan: &Plan, verdict: &GuardVerdict) -> Value {
    json!({
        "steps": plan.steps,
        "skipped": plan.skipped,
        "summary": plan.summary(),
        "guard": verdict,
    })
}

/// `tyk-idsync runs list`.
pub fn runs_table(runs: &[SyncRun]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.created_at.to_rfc3339(),
                json!(r.kind).as_str().unwrap_or("").to_string(),
                r.status.as_str().to_string(),
                format!("{}/{}/{}", r.steps_planned, r.steps_applied, r.steps_failed),
                r.people_removed.to_string(),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "CREATED",
            "KIND",
            "STATUS",
            "PLANNED/APPLIED/FAILED",
            "REMOVALS",
            "MESSAGE",
        ],
        &rows,
    )
}

/// `tyk-idsync audit`. `rule_names` maps rule ids to rule names (the
/// mapping table as it is now): a rule is shown as `name (id)`, or by its id
/// alone once deleted. A group step shows the group's name (from the entry's
/// before/after detail) beside its Tyk id; REASON is why a person was
/// deprovisioned (the detail's `reason`), or that a user vanished from Tyk.
pub fn audit_table(entries: &[AuditEntry], rule_names: &BTreeMap<String, String>) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|a| {
            let e = &a.entry;
            let detail = |key: &str| {
                [&e.after, &e.before]
                    .into_iter()
                    .flatten()
                    .find_map(|v| v.get(key).and_then(Value::as_str))
                    .map(str::to_string)
            };
            let who = match (&e.email, detail("name"), &e.tyk_id) {
                (Some(email), _, _) => email.clone(),
                (None, Some(name), Some(id)) => format!("{name} ({id})"),
                (None, Some(name), None) => name,
                (None, None, id) => id.clone().unwrap_or_default(),
            };
            let reason = detail("reason")
                .map(|r| r.replace('_', " "))
                .or_else(|| (e.step_kind == "forget_user").then(|| "gone from Tyk".to_string()))
                .unwrap_or_default();
            let rule = e.rule.as_ref().map_or_else(String::new, |id| {
                rule_names
                    .get(id)
                    .map_or_else(|| id.clone(), |name| format!("{name} ({id})"))
            });
            vec![
                a.id.to_string(),
                e.at.to_rfc3339(),
                e.actor.clone(),
                e.step_kind.clone(),
                e.org_id.clone(),
                who,
                if e.ok {
                    "ok".to_string()
                } else {
                    format!("error: {}", e.message.clone().unwrap_or_default())
                },
                reason,
                rule,
            ]
        })
        .collect();
    table(
        &[
            "ID", "AT", "ACTOR", "STEP", "ORG", "WHO", "RESULT", "REASON", "RULE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::store::sync_audit::NewAuditEntry;
    use crate::sync::step::{DeprovisionReason, Profile, SkipReason, Skipped};

    fn perms(level: &str) -> Permissions {
        BTreeMap::from([
            ("apis".to_string(), level.to_string()),
            ("keys".to_string(), "deny".to_string()),
        ])
    }

    fn sample_plan() -> Plan {
        let org = "5e9d9544a1dcd60001d0ed20".to_string();
        Plan {
            steps: vec![
                PlanStep::CreateGroup {
                    org_id: org.clone(),
                    name: "engineers".into(),
                    description: None,
                    permissions: perms("read"),
                },
                PlanStep::UpdateGroupPermissions {
                    org_id: org.clone(),
                    group_id: "6649986d6f2a9a0001f1a111".into(),
                    name: "ops".into(),
                    before: perms("read"),
                    after: perms("write"),
                    description_before: None,
                    description_after: None,
                },
                PlanStep::CreateUser {
                    org_id: org.clone(),
                    email: "ada@example.com".into(),
                    profile: Profile {
                        first_name: "Ada".into(),
                        last_name: "Lovelace".into(),
                    },
                    group: GroupRef::New("engineers".into()),
                    permissions: perms("read"),
                    rule: Some("okta:engineering".into()),
                },
                PlanStep::MoveToGroup {
                    org_id: org.clone(),
                    email: "bob@example.com".into(),
                    user_id: "6649986d6f2a9a0001f1a222".into(),
                    from: Some("6649986d6f2a9a0001f1a111".into()),
                    to: GroupRef::New("engineers".into()),
                    permissions: perms("read"),
                    rule: Some("okta:engineering".into()),
                },
                PlanStep::Deactivate {
                    org_id: org.clone(),
                    email: "eve@example.com".into(),
                    user_id: "6649986d6f2a9a0001f1a333".into(),
                    reason: DeprovisionReason::NotDesired,
                },
            ],
            skipped: vec![Skipped {
                org_id: org,
                subject: "root@example.com".into(),
                reason: SkipReason::Admin,
            }],
        }
    }

    #[test]
    fn a_plan_renders_as_a_table() {
        insta::assert_snapshot!(plan_table(&sample_plan(), &GuardVerdict::Proceed));
    }

    #[test]
    fn a_held_plan_says_so() {
        let verdict = GuardVerdict::Hold {
            would_remove: 50,
            managed: 100,
            threshold: 10,
            would_recreate: 0,
            recreate_threshold: 0,
        };
        let text = plan_table(&Plan::default(), &verdict);
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_plan_renders_as_json() {
        insta::assert_json_snapshot!(plan_json(&sample_plan(), &GuardVerdict::Proceed));
    }

    #[test]
    fn audit_entries_render_as_a_table() {
        let entry = |id, ok| AuditEntry {
            id,
            source: None,
            entry: NewAuditEntry {
                run_id: None,
                at: Timestamp(1_764_000_000_000),
                actor: "sync".into(),
                step_kind: "move_to_group".into(),
                org_id: "org1".into(),
                email: Some("ada@example.com".into()),
                tyk_id: Some("u1".into()),
                before: None,
                after: None,
                event_seqs: vec![1],
                rule: Some("0b6c6f2e-rule-engineers".into()),
                ok,
                message: (!ok).then(|| "temporary Tyk failure: HTTP 503".to_string()),
            },
        };
        let mut group_created = entry(3, true);
        group_created.entry.step_kind = "create_group".into();
        group_created.entry.email = None;
        group_created.entry.tyk_id = Some("6649986d6f2a9a0001f1a111".into());
        group_created.entry.rule = None;
        group_created.entry.after = Some(serde_json::json!({"name": "engineers"}));
        let mut deactivated = entry(4, true);
        deactivated.entry.step_kind = "deactivate".into();
        deactivated.entry.rule = None;
        deactivated.entry.after =
            Some(serde_json::json!({"active": false, "reason": "inactive_in_source"}));
        let mut deleted_rule = entry(5, true);
        deleted_rule.entry.rule = Some("a-deleted-rule-id".into());
        let rule_names = BTreeMap::from([(
            "0b6c6f2e-rule-engineers".to_string(),
            "engineers".to_string(),
        )]);
        insta::assert_snapshot!(audit_table(
            &[
                deleted_rule,
                deactivated,
                group_created,
                entry(2, false),
                entry(1, true)
            ],
            &rule_names
        ));
    }
}
