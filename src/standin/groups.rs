//! Dashboard API user-group handlers (`/api/usergroups`, no underscore; list
//! key `groups`), with the same key auth and org scoping as the users.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::Shared;
use super::dashboard::{Answer, Params, allow, caller, in_scope, object, ok, page_param};
use super::state::{ApiError, paginate};
use crate::tyk::{GroupsList, Permissions, User, UserGroup};

const GROUPS: &str = "user_groups";

pub async fn list_groups(State(s): State<Arc<Shared>>, headers: HeaderMap, q: Params) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, GROUPS, false, "/api/usergroups")?;
    let groups: Vec<UserGroup> = s
        .dir()
        .groups
        .values()
        .filter(|g| in_scope(&me, &g.org_id))
        .cloned()
        .collect();
    let (groups, pages) = paginate(&groups, page_param(&q), s.options.page_size);
    Ok(Json(GroupsList { groups, pages }).into_response())
}

fn group_fields(body: &Bytes) -> Result<(Map<String, Value>, Option<Permissions>), ApiError> {
    let malformed = || ApiError::new(403, "Request body malformed.");
    let body = object(body).ok_or_else(malformed)?;
    let perms = match body.get("user_permissions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value::<Permissions>(v.clone()).map_err(|_| malformed())?),
    };
    for key in ["name", "description"] {
        if body.get(key).is_some_and(|v| !v.is_string()) {
            return Err(malformed());
        }
    }
    if body.get("active").is_some_and(|v| !v.is_boolean()) {
        return Err(malformed());
    }
    Ok((body, perms))
}

fn apply_group(group: &mut UserGroup, body: &Map<String, Value>, perms: Option<Permissions>) {
    if let Some(v) = body.get("name").and_then(Value::as_str) {
        group.name = v.to_string();
    }
    if let Some(v) = body.get("description").and_then(Value::as_str) {
        group.description = v.to_string();
    }
    if let Some(v) = body.get("active").and_then(Value::as_bool) {
        group.active = v;
    }
    if let Some(v) = body.get("password_max_days").and_then(Value::as_i64) {
        group.password_max_days = v;
    }
    if let Some(p) = perms {
        group.user_permissions = p;
    }
}

pub async fn create_group(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, GROUPS, true, "/api/usergroups")?;
    let (body, perms) = group_fields(&body)?;
    if body
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::new(403, "Request body malformed."));
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
    let mut group = UserGroup {
        id: dir.ids.next(),
        org_id,
        ..UserGroup::default()
    };
    apply_group(&mut group, &body, perms);
    let id = group.id.clone();
    dir.groups.insert(id.clone(), group);
    ok("User group created", json!(id))
}

fn visible_group(
    s: &Shared,
    me: &User,
    id: &str,
    missing: ApiError,
) -> Result<UserGroup, ApiError> {
    s.dir()
        .groups
        .get(id)
        .filter(|g| in_scope(me, &g.org_id))
        .cloned()
        .ok_or(missing)
}

pub async fn get_group(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, GROUPS, false, "/api/usergroups/{groupId}")?;
    let group = visible_group(
        &s,
        &me,
        &id,
        ApiError::new(404, "Could not retrieve user group detail."),
    )?;
    Ok(Json(group).into_response())
}

pub async fn update_group(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, GROUPS, true, "/api/usergroups/{groupId}")?;
    visible_group(&s, &me, &id, ApiError::new(400, "Group ID does not exist"))?;
    let (body, perms) = group_fields(&body)?;
    if perms.as_ref().is_some_and(Permissions::is_empty) {
        return Err(ApiError::new(403, "Request body malformed."));
    }
    if let Some(group) = s.dir().groups.get_mut(&id) {
        apply_group(group, &body, perms);
    }
    ok("User group updated", Value::Null)
}

/// Deletes a group. Members are left alone and keep a dangling `group_id`
/// (upstream does not document this; see the README).
pub async fn delete_group(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let me = caller(&s, &headers)?;
    allow(&me, GROUPS, true, "/api/usergroups/{groupId}")?;
    visible_group(
        &s,
        &me,
        &id,
        ApiError::new(404, "Could not retrieve user detail."),
    )?;
    s.dir().groups.remove(&id);
    ok("User group deleted", Value::Null)
}
