//! Applies a user diff to the store, with one outbox event per change, on
//! the caller's connection (a transaction: all or nothing).

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use uuid::Uuid;

use super::diff::UserChange;
use super::translate::DirectoryUser;
use crate::domain::{EventKind, IdentityUser, NewIdentityEvent, SourceName, Timestamp};
use crate::store::{StoreError, events, identities};

/// Writes `changes` for `source`; `stored` supplies the rows being changed.
/// Returns the ids given to created users, by their DN.
pub async fn apply_user_changes(
    conn: &mut AnyConnection,
    source: &SourceName,
    stored: &[IdentityUser],
    changes: &[UserChange],
) -> Result<Vec<(String, Uuid)>, StoreError> {
    let now = Timestamp::now();
    let by_id: BTreeMap<Uuid, &IdentityUser> = if changes.is_empty() {
        BTreeMap::new()
    } else {
        stored.iter().map(|u| (u.id, u)).collect()
    };
    let mut created = Vec::new();
    for change in changes {
        let (kind, subject, email) = match change {
            UserChange::Create(user) => {
                let row = new_row(source, user, now);
                identities::insert_user(conn, &row, &emails(user)).await?;
                created.push((user.dn.clone(), row.id));
                (EventKind::UserCreated, row.id, row.email)
            }
            UserChange::Update { id, user }
            | UserChange::Deactivate { id, user }
            | UserChange::Reactivate { id, user } => {
                let Some(old) = by_id.get(id) else {
                    continue;
                };
                let row = IdentityUser {
                    version: old.version + 1,
                    created_at: old.created_at,
                    id: *id,
                    ..new_row(source, user, now)
                };
                identities::update_user(conn, &row, &emails(user), None).await?;
                (event_kind(change), *id, row.email)
            }
            UserChange::Delete { id, email } => {
                identities::delete_user(conn, source, *id).await?;
                (EventKind::UserDeleted, *id, email.clone())
            }
        };
        let event = NewIdentityEvent {
            source: source.clone(),
            kind,
            subject_id: Some(subject),
            email,
            detail: serde_json::json!({}),
        };
        events::append(conn, &event).await?;
    }
    Ok(created)
}

fn event_kind(change: &UserChange) -> EventKind {
    match change {
        UserChange::Create(_) => EventKind::UserCreated,
        UserChange::Update { .. } => EventKind::UserUpdated,
        UserChange::Deactivate { .. } => EventKind::UserDeactivated,
        UserChange::Reactivate { .. } => EventKind::UserReactivated,
        UserChange::Delete { .. } => EventKind::UserDeleted,
    }
}

fn emails(user: &DirectoryUser) -> Vec<String> {
    user.email.iter().cloned().collect()
}

fn new_row(source: &SourceName, user: &DirectoryUser, now: Timestamp) -> IdentityUser {
    IdentityUser {
        id: uuid::Uuid::new_v4(),
        source: source.clone(),
        external_id: Some(user.stable_id.clone()),
        user_name: user.login.clone(),
        email: user.email.clone(),
        given_name: user.given_name.clone(),
        family_name: user.family_name.clone(),
        display_name: user.display_name.clone(),
        active: user.active,
        attributes: serde_json::json!({ "dn": user.dn, "login": user.login }),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}
