//! The output of the planner: an ordered list of steps, each carrying what
//! the applier needs (Tyk ids, before/after values, the mapping rule), plus
//! what was deliberately left alone and why.
//!
//! Order: group creations and group permission updates first, then every
//! person's steps together (deactivate before delete, adopt before update),
//! then deletions of managed groups nobody is left in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Permissions = BTreeMap<String, String>;

/// A user group in a step: an existing Tyk id, or the name of a group a
/// `CreateGroup` step earlier in the same plan creates (same org).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRef {
    Id(String),
    New(String),
}

/// The user fields Tyk's `PUT /api/users/{id}` takes besides permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
}

/// One change to Tyk (or, for `RecordDeactivation` and `ForgetUser`, to our
/// own ownership records only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum PlanStep {
    CreateGroup {
        org_id: String,
        name: String,
        description: Option<String>,
        permissions: Permissions,
    },
    /// Takes over an existing unmanaged group of the desired name
    /// (`adopt_existing = true`).
    AdoptGroup {
        org_id: String,
        group_id: String,
        name: String,
    },
    UpdateGroupPermissions {
        org_id: String,
        group_id: String,
        name: String,
        before: Permissions,
        after: Permissions,
        description_before: Option<String>,
        description_after: Option<String>,
    },
    CreateUser {
        org_id: String,
        email: String,
        profile: Profile,
        group: GroupRef,
        /// The group's permissions, never empty (empty means admin in Tyk).
        permissions: Permissions,
        rule: Option<String>,
    },
    /// Takes over an existing unmanaged user with the desired e-mail
    /// (`adopt_existing = true`, or an interrupted creation of ours);
    /// logged in the audit trail.
    AdoptUser {
        org_id: String,
        email: String,
        user_id: String,
        rule: Option<String>,
        /// The user is one we created but could not record (crash between
        /// Tyk's answer and our write): ours, whatever `adopt_existing` says.
        resumed_creation: bool,
    },
    Reactivate {
        org_id: String,
        email: String,
        user_id: String,
    },
    /// The e-mail of a user we manage was changed in Tyk by hand: the Tyk
    /// id is what identifies our user, so the e-mail is set back (it is
    /// not taken for another person).
    RevertEmail {
        org_id: String,
        /// The e-mail we manage the user under.
        email: String,
        user_id: String,
        /// The e-mail found in Tyk.
        found: String,
    },
    UpdateUserProfile {
        org_id: String,
        email: String,
        user_id: String,
        before: Profile,
        after: Profile,
    },
    MoveToGroup {
        org_id: String,
        email: String,
        user_id: String,
        from: Option<String>,
        to: GroupRef,
        permissions: Permissions,
        rule: Option<String>,
    },
    /// Same group, but the user's permissions drifted from the group's.
    UpdateUserPermissions {
        org_id: String,
        email: String,
        user_id: String,
        before: Permissions,
        after: Permissions,
    },
    Deactivate {
        org_id: String,
        email: String,
        user_id: String,
        reason: DeprovisionReason,
    },
    /// The user is already inactive in Tyk but our record has no
    /// deactivation time: start the grace period now (no Tyk call).
    RecordDeactivation {
        org_id: String,
        email: String,
        user_id: String,
    },
    Delete {
        org_id: String,
        email: String,
        user_id: String,
        deactivated_at: i64,
    },
    /// A deprovisioned (inactive) user still holds a Dashboard API access
    /// key: give it a new one nobody knows, so the old stops working.
    ResetAccessKey {
        org_id: String,
        email: String,
        user_id: String,
    },
    /// A managed user no longer exists in Tyk (deleted by hand): drop our
    /// record so a later create is not mistaken for a duplicate (no Tyk call).
    ForgetUser {
        org_id: String,
        email: String,
        user_id: String,
    },
    /// A managed group nobody is desired in and no Tyk user is left in.
    DeleteGroup {
        org_id: String,
        group_id: String,
        name: String,
    },
}

/// Why a person is deprovisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeprovisionReason {
    /// No source (or mapping) wants the person any more.
    NotDesired,
    /// The sources have the person inactive.
    InactiveInSource,
}

impl PlanStep {
    /// Stable snake_case name, as in JSON, the audit log and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PlanStep::CreateGroup { .. } => "create_group",
            PlanStep::AdoptGroup { .. } => "adopt_group",
            PlanStep::UpdateGroupPermissions { .. } => "update_group_permissions",
            PlanStep::CreateUser { .. } => "create_user",
            PlanStep::AdoptUser { .. } => "adopt_user",
            PlanStep::Reactivate { .. } => "reactivate",
            PlanStep::RevertEmail { .. } => "revert_email",
            PlanStep::UpdateUserProfile { .. } => "update_user_profile",
            PlanStep::MoveToGroup { .. } => "move_to_group",
            PlanStep::UpdateUserPermissions { .. } => "update_user_permissions",
            PlanStep::Deactivate { .. } => "deactivate",
            PlanStep::RecordDeactivation { .. } => "record_deactivation",
            PlanStep::Delete { .. } => "delete",
            PlanStep::ResetAccessKey { .. } => "reset_access_key",
            PlanStep::ForgetUser { .. } => "forget_user",
            PlanStep::DeleteGroup { .. } => "delete_group",
        }
    }

    pub fn org_id(&self) -> &str {
        match self {
            PlanStep::CreateGroup { org_id, .. }
            | PlanStep::AdoptGroup { org_id, .. }
            | PlanStep::UpdateGroupPermissions { org_id, .. }
            | PlanStep::CreateUser { org_id, .. }
            | PlanStep::AdoptUser { org_id, .. }
            | PlanStep::Reactivate { org_id, .. }
            | PlanStep::RevertEmail { org_id, .. }
            | PlanStep::UpdateUserProfile { org_id, .. }
            | PlanStep::MoveToGroup { org_id, .. }
            | PlanStep::UpdateUserPermissions { org_id, .. }
            | PlanStep::Deactivate { org_id, .. }
            | PlanStep::RecordDeactivation { org_id, .. }
            | PlanStep::Delete { org_id, .. }
            | PlanStep::ResetAccessKey { org_id, .. }
            | PlanStep::ForgetUser { org_id, .. }
            | PlanStep::DeleteGroup { org_id, .. } => org_id,
        }
    }

    /// The person (lower-cased e-mail) a user step is about; `None` for group steps.
    pub fn email(&self) -> Option<&str> {
        match self {
            PlanStep::CreateUser { email, .. }
            | PlanStep::AdoptUser { email, .. }
            | PlanStep::Reactivate { email, .. }
            | PlanStep::RevertEmail { email, .. }
            | PlanStep::UpdateUserProfile { email, .. }
            | PlanStep::MoveToGroup { email, .. }
            | PlanStep::UpdateUserPermissions { email, .. }
            | PlanStep::Deactivate { email, .. }
            | PlanStep::RecordDeactivation { email, .. }
            | PlanStep::Delete { email, .. }
            | PlanStep::ResetAccessKey { email, .. }
            | PlanStep::ForgetUser { email, .. } => Some(email),
            _ => None,
        }
    }

    /// The Tyk user id a user step changes (`None` for creations and group steps).
    pub fn user_id(&self) -> Option<&str> {
        match self {
            PlanStep::AdoptUser { user_id, .. }
            | PlanStep::Reactivate { user_id, .. }
            | PlanStep::RevertEmail { user_id, .. }
            | PlanStep::UpdateUserProfile { user_id, .. }
            | PlanStep::MoveToGroup { user_id, .. }
            | PlanStep::UpdateUserPermissions { user_id, .. }
            | PlanStep::Deactivate { user_id, .. }
            | PlanStep::RecordDeactivation { user_id, .. }
            | PlanStep::Delete { user_id, .. }
            | PlanStep::ResetAccessKey { user_id, .. }
            | PlanStep::ForgetUser { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// The mapping rule behind the step, when there is one.
    pub fn rule(&self) -> Option<&str> {
        match self {
            PlanStep::CreateUser { rule, .. }
            | PlanStep::AdoptUser { rule, .. }
            | PlanStep::MoveToGroup { rule, .. } => rule.as_deref(),
            _ => None,
        }
    }

    /// Whether the step removes a person's access or our hold on them; the
    /// mass-change guard counts these (a Tyk listing that comes back empty by
    /// mistake would otherwise make us forget everyone).
    pub fn removes_access(&self) -> bool {
        matches!(
            self,
            PlanStep::Deactivate { .. } | PlanStep::Delete { .. } | PlanStep::ForgetUser { .. }
        )
    }

    /// Whether applying the step calls Tyk at all.
    pub fn writes_to_tyk(&self) -> bool {
        !matches!(
            self,
            PlanStep::AdoptGroup { .. }
                | PlanStep::AdoptUser { .. }
                | PlanStep::RecordDeactivation { .. }
                | PlanStep::ForgetUser { .. }
        )
    }
}

/// Something the planner deliberately left alone, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub org_id: String,
    /// E-mail for a person, group name for a group.
    pub subject: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A Tyk administrator: never changed, managed or not.
    Admin,
    /// A Tyk user with the desired e-mail that we do not manage
    /// (`adopt_existing = false`).
    UnmanagedUser,
    /// An existing group we do not manage whose permissions differ from the
    /// mapping's; it is used as it is.
    UnmanagedGroupDiffers,
    /// The group would have no permissions (Tyk would make its members admins)
    /// or asks for `IsAdmin`.
    GroupPermissionsInvalid,
    /// An active person with no group or whose group cannot be used.
    NoUsableGroup,
    /// A managed group no longer desired but still holding Tyk users.
    GroupStillHasMembers,
    /// The desired e-mail is not an address (`domain::email::validate`):
    /// never sent to Tyk.
    InvalidEmail,
}

/// An ordered plan plus what was left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<PlanStep>,
    pub skipped: Vec<Skipped>,
}

/// Counts per step kind, for logs, metrics and `tyk-idsync plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub by_kind: BTreeMap<String, usize>,
    pub tyk_writes: usize,
    /// Distinct people who lose access (deactivated, deleted, or forgotten
    /// without being re-created: [`super::guard::counts`]).
    pub people_removed: usize,
    pub people_changed: usize,
    pub skipped: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn summary(&self) -> PlanSummary {
        let mut summary = PlanSummary {
            skipped: self.skipped.len(),
            ..PlanSummary::default()
        };
        let mut changed = std::collections::BTreeSet::new();
        for step in &self.steps {
            *summary.by_kind.entry(step.kind().to_string()).or_default() += 1;
            if step.writes_to_tyk() {
                summary.tyk_writes += 1;
            }
            if let Some(email) = step.email() {
                changed.insert((step.org_id(), email));
            }
        }
        // Re-created people (forgotten, then created afresh) are not removals.
        summary.people_removed = super::guard::counts(self).removals;
        summary.people_changed = changed.len();
        summary
    }
}
