//! One person seen from both sides, for `explain`: what Tyk holds now for
//! their e-mail (read by the recorded Tyk id, else found with Tyk's user
//! search, through the one Tyk client and its limiter), whether each such
//! user is ours and why, the steps a sync would take for them alone, and
//! any quarantine. Costs a handful of requests, never a listing of Tyk.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::actual::ActualUser;
use super::guard::GuardVerdict;
use super::render::{plan_json, plan_table};
use super::scope::plan_for_people;
use super::worker::{ActualScope, StateSource, SyncError, SyncWorker};
use super::writer::TykWriter;
use crate::domain::{Timestamp, fold_key};
use crate::store::sync_quarantine::{self, FailedPerson};

/// A Tyk user with the person's e-mail, as Tyk holds it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TykUserView {
    pub id: String,
    pub org_id: String,
    pub first_name: String,
    pub last_name: String,
    pub active: bool,
    pub group_id: Option<String>,
    /// The group's name, when Tyk has that group.
    pub group_name: Option<String>,
    /// Whether tyk-idsync manages this user.
    pub managed: bool,
    /// Why it is managed or not.
    pub why: String,
}

/// The Tyk side of `explain`.
#[derive(Debug, Clone, Serialize)]
pub struct PersonInTyk {
    /// What Tyk holds now (empty: no user with this e-mail).
    pub tyk_users: Vec<TykUserView>,
    /// The plan a sync would apply for this person alone (as `plan --json`).
    pub plan: serde_json::Value,
    #[serde(skip)]
    pub plan_text: String,
    /// Quarantined (Tyk refused them): not tried until they change.
    pub quarantine: Vec<FailedPerson>,
}

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    /// What Tyk holds for `email` and what a sync would do for them.
    pub async fn person_in_tyk(&self, email: &str) -> Result<PersonInTyk, SyncError> {
        let key = fold_key(email);
        let people = BTreeSet::from([key.clone()]);
        let mut desired = self.source.desired_for(&people).await?;
        desired.users.retain(|u| fold_key(&u.email) == key);
        let mut actual = self
            .source
            .actual(&ActualScope::People(people.clone()))
            .await?;
        let (ownership, _) = self.ownership_of(&people).await?;
        // Users we do not manage are not in the scoped listing: look the
        // e-mail up in each org the person is desired in or recorded in.
        let mut orgs: BTreeSet<String> = desired.users.iter().map(|u| u.org_id.clone()).collect();
        orgs.extend(ownership.users.values().map(|m| m.org_id.clone()));
        for org in &orgs {
            let known = actual
                .users
                .iter()
                .any(|u| &u.org_id == org && fold_key(&u.email) == key);
            if known {
                continue;
            }
            match self.writer.find_user_by_email(org, &key).await {
                Ok(Some(user)) => actual.users.push(user),
                Ok(None) => {}
                Err(e) => {
                    return Err(SyncError::Load(super::worker::LoadError(format!(
                        "Tyk user search: {e}"
                    ))));
                }
            }
        }
        let plan = plan_for_people(
            &desired,
            &actual,
            &ownership,
            &self.config.policy(),
            Timestamp::now(),
            &people,
        );
        let group_names: BTreeMap<&str, &str> = actual
            .groups
            .iter()
            .map(|g| (g.id.as_str(), g.name.as_str()))
            .collect();
        let tyk_users = actual
            .users
            .iter()
            .filter(|u| fold_key(&u.email) == key)
            .map(|u| view(u, &ownership, &group_names))
            .collect();
        let mut conn = self.store.acquire().await?;
        let quarantine = sync_quarantine::find(&mut conn, &key).await?;
        Ok(PersonInTyk {
            tyk_users,
            plan: plan_json(&plan, &GuardVerdict::Proceed),
            plan_text: plan_table(&plan, &GuardVerdict::Proceed),
            quarantine,
        })
    }
}

fn view(
    user: &ActualUser,
    ownership: &super::ownership::Ownership,
    groups: &BTreeMap<&str, &str>,
) -> TykUserView {
    let record = ownership.users.get(&user.id);
    let pending = ownership
        .pending_creates
        .contains(&(user.org_id.clone(), fold_key(&user.email)));
    let (managed, why) = match (record, user.is_admin) {
        (_, true) => (
            false,
            "a Tyk administrator: never changed by tyk-idsync".to_string(),
        ),
        (Some(m), false) if m.adopted => (
            true,
            format!("adopted by tyk-idsync on {}", m.managed_since.to_rfc3339()),
        ),
        (Some(m), false) => (
            true,
            format!("created by tyk-idsync on {}", m.managed_since.to_rfc3339()),
        ),
        (None, false) if pending => (
            true,
            "created by an interrupted tyk-idsync creation (recorded at the next sync)".into(),
        ),
        (None, false) => (
            false,
            "not created by tyk-idsync (no ownership record): left alone unless \
             sync.adopt_existing = true"
                .to_string(),
        ),
    };
    TykUserView {
        id: user.id.clone(),
        org_id: user.org_id.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        active: user.active,
        group_id: user.group_id.clone(),
        group_name: user
            .group_id
            .as_deref()
            .and_then(|id| groups.get(id))
            .map(|n| n.to_string()),
        managed,
        why,
    }
}

/// The Tyk side as text, appended to `explain`'s.
pub fn render_text(person: &PersonInTyk) -> String {
    let mut out = String::from("\nIn Tyk now:\n");
    if person.tyk_users.is_empty() {
        out.push_str("  (no Tyk user with this e-mail)\n");
    }
    for u in &person.tyk_users {
        let group = match (&u.group_id, &u.group_name) {
            (Some(id), Some(name)) => format!("group {name:?} ({id})"),
            (Some(id), None) => format!("group {id} (not a group Tyk lists)"),
            (None, _) => "no group".to_string(),
        };
        out.push_str(&format!(
            "  org {}: user {} {} {} {group} {} — {}: {}\n",
            u.org_id,
            u.id,
            u.first_name,
            u.last_name,
            if u.active { "active" } else { "DEACTIVATED" },
            if u.managed { "managed" } else { "NOT managed" },
            u.why
        ));
    }
    out.push_str("\nA sync would, for this person:\n");
    let left_alone = person.plan["skipped"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    let text = match person
        .plan_text
        .strip_prefix("nothing to do: Tyk matches the desired state\n")
    {
        Some(rest) if left_alone => format!("take no step: the person is left alone\n{rest}"),
        _ => person.plan_text.clone(),
    };
    for line in text.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if !person.quarantine.is_empty() {
        out.push_str("\nQuarantined (not tried until they change; `tyk-idsync sync retry`):\n");
        for q in &person.quarantine {
            out.push_str(&format!(
                "  org {}: {} {}{} — {} attempts, first {}, last {}\n",
                q.org_id.as_deref().unwrap_or(""),
                q.kind,
                q.status.map(|s| format!("{s} ")).unwrap_or_default(),
                q.reason,
                q.attempts,
                q.first_seen,
                q.last_seen
            ));
        }
    }
    out
}
