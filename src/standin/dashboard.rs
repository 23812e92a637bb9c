//! Dashboard API user handlers (`/api/users`; groups are in groups.rs), authenticated
//! by a user's access key in the raw `authorization` header and scoped to
//! that user's organisation (a user without `org_id` sees every org).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Shared;
use super::state::{ApiError, UserFields, page_of, paginate};
use crate::tyk::{Envelope, Permissions, User, UsersList};

pub(super) type Answer = Result<Response, ApiError>;
pub(super) type Params = Query<HashMap<String, String>>;

const USERS: &str = "users";

/// The calling user, from the raw key in `authorization`.
pub(super) fn caller(shared: &Shared, headers: &HeaderMap) -> Result<User, ApiError> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if key.is_empty() {
        return Err(ApiError::new(401, "Authorization field empty"));
    }
    shared
        .dir()
        .user_by_key(key)
        .cloned()
        .ok_or_else(|| ApiError::new(401, "Not authorised"))
}

/// 403 unless the caller may read (or write) `section`. The message prints
/// the path template after two spaces, exactly as the Dashboard does.
pub(super) fn allow(
    caller: &User,
    section: &str,
    write: bool,
    template: &str,
) -> Result<(), ApiError> {
    let p = &caller.user_permissions;
    let ok = if write {
        p.can_write(section)
    } else {
        p.can_read(section)
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            format!("access denied: You do not have permission to access  {template}"),
        ))
    }
}

pub(super) fn in_scope(caller: &User, org_id: &str) -> bool {
    caller.org_id.is_empty() || caller.org_id == org_id
}

pub(super) fn page_param(q: &HashMap<String, String>) -> i64 {
    q.get("p").and_then(|p| p.trim().parse().ok()).unwrap_or(1)
}

pub(super) fn ok(message: &str, meta: Value) -> Answer {
    Ok(Json(Envelope::ok(message, meta)).into_response())
}

pub(super) fn object(body: &Bytes) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

// ---- users -----------------------------------------------------------

pub async fn list_users(State(s): State<Arc<Shared>>, headers: HeaderMap, q: Params) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, false, "/api/users")?;
    // Only the page is cloned; counting and skipping still walk the users
    // before it (as MongoDB's skip does behind Tyk's paged queries).
    let dir = s.dir();
    let visible = || dir.users.values().filter(|u| in_scope(&me, &u.org_id));
    let (users, pages) = page_of(visible, page_param(&q), s.options.page_size);
    drop(dir);
    Ok(Json(UsersList { users, pages }).into_response())
}

pub async fn search_users(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Params,
    body: Bytes,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, false, "/api/users/search")?;
    let bad = || ApiError::new(400, "Could not extract search filter from request body.");
    let body = object(&body).ok_or_else(bad)?;
    let query = body
        .get("filters")
        .and_then(|f| f.get("query"))
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_lowercase();
    let users: Vec<User> = s
        .dir()
        .users
        .values()
        .filter(|u| in_scope(&me, &u.org_id) && u.email_address.contains(&query))
        .cloned()
        .collect();
    let (users, pages) = paginate(&users, page_param(&q), s.options.page_size);
    Ok(Json(UsersList { users, pages }).into_response())
}

pub async fn create_user(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, true, "/api/users")?;
    let invalid = || ApiError::new(400, "User object validation failed.");
    let body = object(&body).ok_or_else(invalid)?;
    let fields = UserFields::from_json(&body).map_err(|()| invalid())?;
    let required = [&fields.first_name, &fields.last_name, &fields.email_address];
    if required
        .iter()
        .any(|f| f.as_deref().is_none_or(str::is_empty))
        || fields.user_permissions.is_none()
    {
        return Err(invalid());
    }
    if s.dir()
        .refused_emails
        .contains(&fields.email_address.as_deref().unwrap_or("").to_lowercase())
    {
        return Err(invalid());
    }
    let org_id = if me.org_id.is_empty() {
        body.get("org_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        me.org_id.clone()
    };
    let mut dir = s.dir();
    let email = fields.email_address.as_deref().unwrap_or("");
    if dir.email_taken(&org_id, email, None) {
        return Err(ApiError::new(403, crate::tyk::MSG_EMAIL_EXISTS_DASHBOARD));
    }
    if !dir.group_exists(&org_id, fields.group_id.as_deref().unwrap_or("")) {
        return Err(ApiError::new(400, "Group ID does not exist"));
    }
    let user = dir.insert_user(&org_id, fields);
    ok("User and session have been created", json!(user.id))
}

/// The user `id` if the caller may see it; `missing` is the 4xx otherwise.
fn visible_user(s: &Shared, me: &User, id: &str, missing: ApiError) -> Result<User, ApiError> {
    s.dir()
        .users
        .get(id)
        .filter(|u| in_scope(me, &u.org_id))
        .cloned()
        .ok_or(missing)
}

pub async fn get_user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, false, "/api/users/{userId}")?;
    let user = visible_user(
        &s,
        &me,
        &id,
        ApiError::new(404, "Could not retrieve user detail."),
    )?;
    Ok(Json(user).into_response())
}

pub async fn update_user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, true, "/api/users/{userId}")?;
    let target = visible_user(&s, &me, &id, ApiError::new(400, "user does not exist."))?;
    let rights = || {
        ApiError::new(
            403,
            "To create a user specify at least one permission, or make them an admin.",
        )
    };
    let body = object(&body).ok_or_else(rights)?;
    let fields = UserFields::from_json(&body).map_err(|()| rights())?;
    check_user_update(&s, &target, &fields)?;
    let email = fields
        .email_address
        .as_deref()
        .unwrap_or(&target.email_address)
        .to_lowercase();
    if s.dir().refused_emails.contains(&email) {
        return Err(ApiError::new(400, "User object validation failed."));
    }
    s.dir().apply_user(&id, fields);
    ok("User updated", Value::Null)
}

/// Rules shared by the Dashboard and Admin PUT: permissions non-empty, email
/// well-formed and unused in the org, group in the same org.
pub(crate) fn check_user_update(
    s: &Shared,
    target: &User,
    fields: &UserFields,
) -> Result<(), ApiError> {
    let rights = || {
        ApiError::new(
            403,
            "To create a user specify at least one permission, or make them an admin.",
        )
    };
    if fields
        .user_permissions
        .as_ref()
        .is_some_and(Permissions::is_empty)
    {
        return Err(rights());
    }
    let mut dir = s.dir();
    if let Some(email) = &fields.email_address {
        if !email.contains('@') {
            return Err(rights());
        }
        if dir.email_taken(&target.org_id, email, Some(&target.id)) {
            return Err(ApiError::new(403, crate::tyk::MSG_EMAIL_EXISTS_DASHBOARD));
        }
    }
    if !dir.group_exists(&target.org_id, fields.group_id.as_deref().unwrap_or("")) {
        return Err(ApiError::new(400, "Group ID does not exist"));
    }
    Ok(())
}

pub async fn delete_user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, true, "/api/users/{userId}")?;
    visible_user(
        &s,
        &me,
        &id,
        ApiError::new(404, "Could not retrieve user detail."),
    )?;
    s.dir().remove_user(&id);
    ok("User deleted", Value::Null)
}

/// Deactivates the user and disables its API key (emptied, so it no
/// longer authenticates).
pub async fn revoke_user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, true, "/api/users/{userId}/actions/revoke")?;
    visible_user(
        &s,
        &me,
        &id,
        ApiError::new(400, "Could not retrieve user detail."),
    )?;
    if let Some(user) = s.dir().users.get_mut(&id) {
        user.active = false;
        user.extra.insert("access_key".into(), json!(""));
    }
    ok("User revoked", Value::Null)
}

/// Gives the user a new Dashboard API access key (the old one stops
/// authenticating at once), as `PUT /api/users/{id}/actions/key/reset` does.
pub async fn reset_user_key(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, USERS, true, "/api/users/{userId}/actions/key/reset")?;
    visible_user(
        &s,
        &me,
        &id,
        ApiError::new(404, "Could not retrieve user detail."),
    )?;
    let mut dir = s.dir();
    let key = dir.ids.access_key();
    if let Some(user) = dir.users.get_mut(&id) {
        user.extra.insert("access_key".into(), json!(key));
    }
    ok("User session renewed", Value::Null)
}
