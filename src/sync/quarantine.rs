//! Quarantine: a person Tyk refuses with an error no retry can fix (a 4xx
//! other than 401/403/404/408/409/429, e.g. 400 `User object validation
//! failed.`) is not tried again until their plan changes — their identity
//! or the mapping changed, so the steps a sync would take differ from the
//! refused ones — or an operator lifts it (`tyk-idsync sync retry`,
//! `POST /admin/v1/sync/failures/{email}/retry`). Their outbox events are
//! settled (nothing spins), and `sync failures` lists them with Tyk's reason.
//!
//! 401 and 403 are left out on purpose: they say the bridge's credential
//! lacks a right, which is true of everyone; quarantining would stop the
//! whole sync one person at a time. 404 means the user vanished from Tyk,
//! which the next reconcile repairs.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::actual::ActualState;
use super::apply::ApplyReport;
use super::step::{Plan, PlanStep};
use super::worker::{StateSource, SyncError, SyncWorker, Trigger};
use super::writer::{TykWriter, WriteError};
use crate::domain::{Timestamp, fold_key};
use crate::store::sync_quarantine::{self, FailedPerson, NewQuarantine};
use crate::store::{StoreError, identities};

/// Up to this many people, a run looks their quarantine up one by one;
/// beyond, it reads the whole (small) table once.
const LOOKUP_ONE_BY_ONE: usize = 64;

/// Kind of a quarantine for a person Tyk refused.
pub const KIND_TYK_REFUSED: &str = "tyk_refused";

/// Why Tyk refused a person, when retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Option<u16>,
    pub reason: String,
}

/// The refusal behind a write error, if it is permanent for the person.
pub fn refusal(error: &WriteError) -> Option<Refusal> {
    match error {
        WriteError::Refused { status, message } => Some(Refusal {
            status: Some(*status),
            reason: message.clone(),
        }),
        _ => None,
    }
}

/// (org, folded e-mail) → the person's steps, in plan order.
fn steps_by_person(plan: &Plan) -> BTreeMap<(String, String), Vec<&PlanStep>> {
    let mut people: BTreeMap<(String, String), Vec<&PlanStep>> = BTreeMap::new();
    for step in &plan.steps {
        if let Some(email) = step.email() {
            people
                .entry((step.org_id().to_string(), fold_key(email)))
                .or_default()
                .push(step);
        }
    }
    people
}

/// A digest of a person's planned steps: the same identity under the same
/// mapping against the same Tyk plans the same steps, so an equal digest
/// means a retry would send what Tyk refused. Groups count by name (a
/// group created in the refused run has an id by the next one); `groups`
/// names Tyk's groups by id.
pub fn fingerprint(steps: &[&PlanStep], groups: &BTreeMap<&str, &str>) -> String {
    let mut hash = Sha256::new();
    for step in steps {
        let mut value = serde_json::to_value(step).unwrap_or_default();
        name_groups(&mut value, groups);
        hash.update(value.to_string().as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

/// Replaces `{"id": "<tyk id>"}` / `{"new": "<name>"}` group references
/// (and `from` ids) by `{"group": "<name>"}`.
fn name_groups(value: &mut serde_json::Value, groups: &BTreeMap<&str, &str>) {
    let serde_json::Value::Object(step) = value else {
        return;
    };
    for key in ["group", "to", "from"] {
        let Some(field) = step.get_mut(key) else {
            continue;
        };
        let name = match &*field {
            serde_json::Value::Object(r) => r
                .get("id")
                .and_then(|id| id.as_str())
                .map(|id| groups.get(id).copied().unwrap_or(id).to_string())
                .or_else(|| r.get("new").and_then(|n| n.as_str()).map(str::to_string)),
            serde_json::Value::String(id) => {
                Some(groups.get(id.as_str()).copied().unwrap_or(id).to_string())
            }
            _ => None,
        };
        if let Some(name) = name {
            *field = serde_json::json!({ "group": name });
        }
    }
}

fn group_names(actual: &ActualState) -> BTreeMap<&str, &str> {
    actual
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect()
}

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    /// Drops from `plan` the steps of quarantined people whose steps are
    /// still those Tyk refused; lifts the quarantine of people whose steps
    /// changed (and, on a full reconcile, of those with nothing left to do
    /// — unless an event run planned them after `planned_since`, when the
    /// reconcile's view began: the reconcile left them to that run, which
    /// may just have quarantined them). Returns the people left out.
    pub(super) async fn leave_quarantined(
        &self,
        plan: &mut Plan,
        actual: &ActualState,
        trigger: Trigger,
        planned_since: Option<std::time::Instant>,
    ) -> Result<BTreeSet<(String, String)>, SyncError> {
        let mut conn = self.store.acquire().await?;
        let people = steps_by_person(plan);
        // Cost follows the work: an event run looks up only its people.
        let quarantined = if trigger == Trigger::Full || people.len() > LOOKUP_ONE_BY_ONE {
            sync_quarantine::list(&mut conn).await?
        } else {
            let emails: BTreeSet<&str> = people.keys().map(|(_, e)| e.as_str()).collect();
            let mut found = Vec::new();
            for email in emails {
                found.extend(sync_quarantine::find(&mut conn, email).await?);
            }
            found
        };
        let mut left_out = BTreeSet::new();
        if quarantined.is_empty() {
            if trigger == Trigger::Full {
                self.metrics.set_quarantined(0);
            }
            return Ok(left_out);
        }
        let groups = group_names(actual);
        let mut lifted = 0;
        for person in &quarantined {
            let org = person.org_id.clone().unwrap_or_default();
            let key = (org.clone(), fold_key(&person.person));
            match people.get(&key) {
                Some(steps) if fingerprint(steps, &groups) == person.fingerprint => {
                    left_out.insert(key);
                }
                Some(_) => {
                    tracing::info!(org = %org, email = %person.person, "the person's plan changed; quarantine lifted, trying again");
                    sync_quarantine::lift(&mut conn, Some(&org), &person.person).await?;
                    lifted += 1;
                }
                None if trigger == Trigger::Full
                    && !planned_since
                        .is_some_and(|since| self.planned_by_events_since(&key.1, since)) =>
                {
                    tracing::info!(org = %org, email = %person.person, "nothing left to do for a quarantined person; quarantine lifted");
                    sync_quarantine::lift(&mut conn, Some(&org), &person.person).await?;
                    lifted += 1;
                }
                None => {}
            }
        }
        if !left_out.is_empty() {
            plan.steps.retain(|s| {
                s.email()
                    .is_none_or(|e| !left_out.contains(&(s.org_id().to_string(), fold_key(e))))
            });
            let emails: Vec<&str> = left_out.iter().map(|(_, e)| e.as_str()).collect();
            tracing::info!(
                ?trigger,
                people = left_out.len(),
                emails = %emails.join(", "),
                "skipping quarantined people (Tyk refused them; see `tyk-idsync sync failures`)"
            );
        }
        if trigger == Trigger::Full || lifted > 0 {
            self.metrics
                .set_quarantined(sync_quarantine::count(&mut conn).await?);
        }
        Ok(left_out)
    }

    /// Quarantines the people Tyk refused in this run.
    pub(super) async fn quarantine_refused(
        &self,
        plan: &Plan,
        actual: &ActualState,
        report: &ApplyReport,
    ) -> Result<(), SyncError> {
        if report.refused.is_empty() {
            return Ok(());
        }
        let people = steps_by_person(plan);
        let groups = group_names(actual);
        let mut conn = self.store.acquire().await?;
        for ((org, email), why) in &report.refused {
            let key = (org.clone(), fold_key(email));
            let steps = people.get(&key).cloned().unwrap_or_default();
            let mut sources: Vec<String> = identities::users_by_email(&mut conn, &fold_key(email))
                .await?
                .into_iter()
                .map(|u| u.source.0)
                .collect();
            sources.sort();
            sources.dedup();
            tracing::warn!(
                org = %org,
                email = %email,
                status = why.status,
                reason = %why.reason,
                "Tyk refused a person; quarantined until their identity or the mapping changes \
                 (or `tyk-idsync sync retry`)"
            );
            sync_quarantine::record(
                &mut conn,
                &NewQuarantine {
                    org_id: org.clone(),
                    email: email.clone(),
                    source: sources.join(","),
                    kind: KIND_TYK_REFUSED.into(),
                    status: why.status,
                    reason: why.reason.clone(),
                    fingerprint: fingerprint(&steps, &groups),
                    at: Timestamp::now(),
                },
            )
            .await?;
        }
        let count = sync_quarantine::count(&mut conn).await?;
        self.metrics.set_quarantined(count);
        Ok(())
    }

    /// Lifts one person's quarantine (or everyone's with `None`) and wakes
    /// the worker: the next event run tries them again. Returns the
    /// e-mails lifted.
    pub async fn retry_quarantined(&self, email: Option<&str>) -> Result<Vec<String>, SyncError> {
        let lifted = retry(&self.store, email).await?;
        if !lifted.is_empty() {
            self.waker().notify_one();
        }
        let mut conn = self.store.acquire().await?;
        self.metrics
            .set_quarantined(sync_quarantine::count(&mut conn).await?);
        Ok(lifted)
    }
}

/// Lifts quarantines and queues one outbox event per person lifted, so the
/// worker (this process or a running service) tries them at once.
pub async fn retry(
    store: &crate::store::Store,
    email: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut tx = store.begin_write().await?;
    let lifted = match email {
        Some(email) => {
            if sync_quarantine::lift(&mut tx, None, email).await? > 0 {
                vec![fold_key(email)]
            } else {
                vec![]
            }
        }
        None => sync_quarantine::lift_all(&mut tx).await?,
    };
    for email in &lifted {
        let source = identities::users_by_email(&mut tx, email)
            .await?
            .into_iter()
            .map(|u| u.source)
            .next();
        if let Some(source) = source {
            crate::store::events::append(
                &mut tx,
                &crate::domain::NewIdentityEvent {
                    source,
                    kind: crate::domain::EventKind::UserUpdated,
                    subject_id: None,
                    email: Some(email.clone()),
                    detail: serde_json::json!({ "reason": "sync retry" }),
                },
            )
            .await?;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(lifted)
}

/// Every quarantined and skipped person (`sync failures`).
pub async fn failures(store: &crate::store::Store) -> Result<Vec<FailedPerson>, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let mut people = sync_quarantine::list(&mut conn).await?;
    people.extend(sync_quarantine::skipped(&mut conn).await?);
    Ok(people)
}

/// `sync failures` as a table.
pub fn failures_table(people: &[FailedPerson]) -> String {
    if people.is_empty() {
        return "no quarantined or skipped people\n".to_string();
    }
    let mut out =
        String::from("PERSON\tSOURCE\tKIND\tSTATE\tATTEMPTS\tFIRST SEEN\tLAST SEEN\tREASON\n");
    for p in people {
        let reason = match p.status {
            Some(status) => format!("{status} {}", p.reason),
            None => p.reason.clone(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            p.person,
            p.source,
            p.kind,
            p.state,
            p.attempts,
            p.first_seen,
            p.last_seen,
            reason.replace(['\n', '\t'], " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creation(group: super::super::step::GroupRef, first_name: &str) -> PlanStep {
        PlanStep::CreateUser {
            org_id: "org1".into(),
            email: "ada@example.org".into(),
            profile: super::super::step::Profile {
                first_name: first_name.into(),
                last_name: "Lovelace".into(),
            },
            group,
            permissions: BTreeMap::from([("apis".into(), "read".into())]),
            rule: Some("r1".into()),
        }
    }

    #[test]
    fn the_fingerprint_names_groups_and_follows_the_person() {
        use super::super::step::GroupRef;
        let groups = BTreeMap::from([("g1", "Developers")]);
        let new = creation(GroupRef::New("Developers".into()), "Ada");
        let created = creation(GroupRef::Id("g1".into()), "Ada");
        // The group created in the refused run has an id by the next one.
        assert_eq!(
            fingerprint(&[&new], &BTreeMap::new()),
            fingerprint(&[&created], &groups)
        );
        // A changed person, or another group, is another fingerprint.
        let renamed = creation(GroupRef::Id("g1".into()), "Augusta");
        assert_ne!(
            fingerprint(&[&created], &groups),
            fingerprint(&[&renamed], &groups)
        );
        let other = creation(GroupRef::New("Readers".into()), "Ada");
        assert_ne!(
            fingerprint(&[&created], &groups),
            fingerprint(&[&other], &groups)
        );
    }

    #[test]
    fn only_refusals_of_the_data_quarantine() {
        let refused = WriteError::Refused {
            status: 400,
            message: "User object validation failed.".into(),
        };
        assert_eq!(
            refusal(&refused),
            Some(Refusal {
                status: Some(400),
                reason: "User object validation failed.".into()
            })
        );
        for transient_or_global in [
            WriteError::Retryable {
                message: "500".into(),
                retry_after: None,
            },
            WriteError::Permanent {
                status: Some(401),
                message: "Not authorised".into(),
            },
            WriteError::Permanent {
                status: Some(403),
                message: "access denied".into(),
            },
            WriteError::EmailAlreadyExists,
        ] {
            assert_eq!(
                refusal(&transient_or_global),
                None,
                "{transient_or_global:?}"
            );
        }
    }
}
