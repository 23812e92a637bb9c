//! Applies a user diff to the store, with one outbox event per change, on
//! the caller's connection (a transaction: all or nothing). New users and
//! the events are written with multi-row statements.

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use uuid::Uuid;

use super::diff::UserChange;
use super::fingerprint::user_fingerprint;
use super::translate::DirectoryUser;
use crate::domain::{EventKind, IdentityUser, NewIdentityEvent, SourceName, Timestamp};
use crate::store::{StoreError, bulk, identities, ldap_fingerprints};

/// Writes `changes` for `source`; `stored` supplies the rows being changed.
/// Records the fingerprint of every user written. Returns the ids given to
/// created users, by their DN.
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
    let mut prints = Vec::new();
    let mut events = bulk::EventWriter::default();
    // New users go in last, a chunk at a time, so a login freed by an
    // update or deletion can be taken by a new user.
    let (creates, others): (Vec<&UserChange>, Vec<&UserChange>) = changes
        .iter()
        .partition(|c| matches!(c, UserChange::Create(_)));
    for change in others {
        let (subject, email) = match change {
            UserChange::Create(_) => continue,
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
                prints.push((*id, user_fingerprint(user)));
                (*id, row.email)
            }
            UserChange::Delete { id, email } => {
                identities::delete_user(conn, source, *id).await?;
                (*id, email.clone())
            }
        };
        events
            .push(conn, event(source, event_kind(change), subject, email))
            .await?;
    }
    for chunk in creates.chunks(CREATE_CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        for change in chunk {
            let UserChange::Create(user) = change else {
                continue;
            };
            let row = new_row(source, user, now);
            created.push((user.dn.clone(), row.id));
            prints.push((row.id, user_fingerprint(user)));
            rows.push((row, emails(user)));
        }
        bulk::insert_users(conn, &rows).await?;
        for (row, _) in rows {
            events
                .push(
                    conn,
                    event(source, EventKind::UserCreated, row.id, row.email),
                )
                .await?;
        }
    }
    events.flush(conn).await?;
    ldap_fingerprints::put_user_fingerprints(conn, &prints).await?;
    Ok(created)
}

/// New users written per multi-row statement.
const CREATE_CHUNK: usize = 500;

fn event(
    source: &SourceName,
    kind: EventKind,
    subject: Uuid,
    email: Option<String>,
) -> NewIdentityEvent {
    NewIdentityEvent {
        source: source.clone(),
        kind,
        subject_id: Some(subject),
        email,
        detail: serde_json::json!({}),
    }
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
        email_problem: user.email_problem,
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
