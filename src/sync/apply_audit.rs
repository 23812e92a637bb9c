//! What the audit log says about a step: before/after values in a small,
//! readable JSON shape per step kind, and the entry itself.

use serde_json::{Value, json};

use super::step::{GroupRef, PlanStep};

fn group_ref(group: &GroupRef) -> Value {
    match group {
        GroupRef::Id(id) => json!({ "group_id": id }),
        GroupRef::New(name) => json!({ "group_name": name }),
    }
}

/// The (before, after) pair recorded for a step.
pub fn before_after(step: &PlanStep) -> (Option<Value>, Option<Value>) {
    match step {
        PlanStep::CreateGroup {
            name,
            description,
            permissions,
            ..
        } => (
            None,
            Some(json!({ "name": name, "description": description, "permissions": permissions })),
        ),
        PlanStep::AdoptGroup { name, .. } => (
            Some(json!({ "managed": false, "name": name })),
            Some(json!({ "managed": true, "name": name })),
        ),
        PlanStep::UpdateGroupPermissions {
            before,
            after,
            description_before,
            description_after,
            ..
        } => (
            Some(json!({ "permissions": before, "description": description_before })),
            Some(json!({ "permissions": after, "description": description_after })),
        ),
        PlanStep::CreateUser {
            profile,
            group,
            permissions,
            ..
        } => (
            None,
            Some(
                json!({ "profile": profile, "group": group_ref(group), "permissions": permissions, "active": true }),
            ),
        ),
        PlanStep::AdoptUser {
            resumed_creation, ..
        } => (
            Some(json!({ "managed": false })),
            Some(json!({ "managed": true, "resumed_creation": resumed_creation })),
        ),
        PlanStep::Reactivate { .. } => (
            Some(json!({ "active": false })),
            Some(json!({ "active": true })),
        ),
        PlanStep::RevertEmail { email, found, .. } => (
            Some(json!({ "email_address": found })),
            Some(json!({ "email_address": email })),
        ),
        PlanStep::UpdateUserProfile { before, after, .. } => {
            (Some(json!(before)), Some(json!(after)))
        }
        PlanStep::MoveToGroup {
            from,
            to,
            permissions,
            ..
        } => (
            Some(json!({ "group_id": from })),
            Some(json!({ "group": group_ref(to), "permissions": permissions })),
        ),
        PlanStep::UpdateUserPermissions { before, after, .. } => (
            Some(json!({ "permissions": before })),
            Some(json!({ "permissions": after })),
        ),
        PlanStep::Deactivate { reason, .. } => (
            Some(json!({ "active": true })),
            Some(json!({ "active": false, "reason": reason })),
        ),
        PlanStep::RecordDeactivation { .. } => {
            (None, Some(json!({ "grace_period_started": true })))
        }
        PlanStep::Delete { deactivated_at, .. } => (
            Some(json!({ "active": false, "deactivated_at": deactivated_at })),
            None,
        ),
        PlanStep::ResetAccessKey { .. } => (None, Some(json!({ "access_key": "reset" }))),
        PlanStep::ForgetUser { .. } => (Some(json!({ "managed": true })), None),
        PlanStep::DeleteGroup { name, .. } => (Some(json!({ "name": name })), None),
    }
}
