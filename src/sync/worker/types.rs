//! The worker's public vocabulary: loaders, triggers, outcomes, errors.

use std::collections::BTreeSet;
use std::future::Future;

use serde::Serialize;
use uuid::Uuid;

use crate::domain::DesiredState;
use crate::store::StoreError;
use crate::sync::actual::{ActualGroup, ActualState, ActualUser};
use crate::sync::apply::ApplyReport;
use crate::sync::guard::GuardVerdict;
use crate::sync::step::PlanSummary;

/// A loader failed (mapping, Tyk listing…); the run is not attempted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Who the actual state is needed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActualScope {
    Everyone,
    /// Lower-cased e-mails: the loader returns the Tyk users we manage
    /// with these e-mails (by their recorded ids) and every group; it may
    /// leave out Tyk users we do not manage.
    People(BTreeSet<String>),
}

/// Where desired and actual state come from; the lead implements it over
/// the mapping and the Tyk Dashboard client (paged listing).
pub trait StateSource: Send + Sync {
    fn desired(&self) -> impl Future<Output = Result<DesiredState, LoadError>> + Send;
    /// The desired state of these people (lower-cased e-mails) only, with
    /// every desired group; by default everyone's, which the planner
    /// narrows.
    fn desired_for(
        &self,
        emails: &BTreeSet<String>,
    ) -> impl Future<Output = Result<DesiredState, LoadError>> + Send {
        let _ = emails;
        self.desired()
    }
    fn actual(
        &self,
        scope: &ActualScope,
    ) -> impl Future<Output = Result<ActualState, LoadError>> + Send;
    /// Every user group, then every user handed to `each` (with the
    /// groups) a window at a time; returns the groups (the full reconcile).
    /// By default one window: the whole listing.
    fn actual_in_windows(
        &self,
        each: &mut (dyn FnMut(&[ActualGroup], Vec<ActualUser>) + Send),
    ) -> impl Future<Output = Result<Vec<ActualGroup>, LoadError>> + Send {
        async move {
            let state = self.actual(&ActualScope::Everyone).await?;
            each(&state.groups, state.users);
            Ok(state.groups)
        }
    }
    /// Tyk's groups changed (we wrote one), or a write met a group that
    /// no longer exists: forget any cached copy.
    fn groups_changed(&self) {}
    /// Whether people no rule matches are placed in this rule's group
    /// (`unmapped_policy = "default"`), so that a change of the rule can
    /// affect anyone. By default, conservatively, yes.
    fn takes_unmapped_people(&self, org_id: &str, group: &str) -> bool {
        let _ = (org_id, group);
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load state: {0}")]
    Load(#[from] LoadError),
    #[error("run {0} not found")]
    RunNotFound(Uuid),
    #[error("{0}")]
    NotApprovable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Full,
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No events waiting (event trigger only).
    Idle,
    Applied,
    /// Some steps failed; the people concerned are retried.
    PartlyFailed,
    Held,
}

/// What a run did (for logs, metrics, `/status` and the CLI exit code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    pub run_id: Option<Uuid>,
    pub trigger: Trigger,
    pub outcome: Outcome,
    pub summary: PlanSummary,
    pub applied: usize,
    pub failed: usize,
    pub tyk_writes: usize,
    pub errors: Vec<String>,
    /// (org, e-mail) of people with a failed step (retried later).
    pub failed_people: BTreeSet<(String, String)>,
    /// People left out of the run because they are quarantined (Tyk
    /// refused the very steps they still need; see `sync failures`).
    pub skipped_quarantined: usize,
    pub verdict: GuardVerdict,
}

pub(super) fn status(
    run_id: Option<Uuid>,
    trigger: Trigger,
    outcome: Outcome,
    summary: PlanSummary,
    report: &ApplyReport,
    verdict: GuardVerdict,
) -> SyncStatus {
    SyncStatus {
        run_id,
        trigger,
        outcome,
        summary,
        applied: report.applied,
        failed: report.failed,
        tyk_writes: report.tyk_writes,
        errors: report.errors.clone(),
        failed_people: report.failed_people.clone(),
        skipped_quarantined: 0,
        verdict,
    }
}
