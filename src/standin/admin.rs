//! Admin API handlers (`/admin/users`, `/admin/organisations`), guarded by
//! the `admin-auth` secret. Admin messages carry no trailing period. There is
//! no list-users and no delete-user endpoint, as upstream.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::Shared;
use super::dashboard::check_user_update;
use super::state::{ApiError, UserFields, paginate};
use crate::tyk::{
    Envelope, MSG_EMAIL_EXISTS_ADMIN, MSG_EMAIL_EXISTS_DASHBOARD, Organisation, OrgsList, User,
};

type Answer = Result<Response, ApiError>;

fn check_secret(s: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("admin-auth")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let want = s.options.admin_secret.as_bytes();
    if !want.is_empty() && bool::from(given.ct_eq(want)) {
        Ok(())
    } else {
        Err(ApiError::new(401, "Not authorised"))
    }
}

fn object(body: &Bytes) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// Admin user answers: Message = access key, Meta = the whole user.
fn user_answer(user: &User) -> Answer {
    let key = user.access_key().unwrap_or("").to_string();
    Ok(Json(Envelope::ok(key, json!(user))).into_response())
}

pub async fn create_user(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Answer {
    check_secret(&s, &headers)?;
    let malformed = || ApiError::new(403, "Request body malformed");
    let body = object(&body).ok_or_else(malformed)?;
    let fields = UserFields::from_json(&body).map_err(|()| malformed())?;
    if fields.email_address.as_deref().is_none_or(str::is_empty) {
        return Err(malformed());
    }
    let org_id = body
        .get("org_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut dir = s.dir();
    if dir.email_taken(&org_id, fields.email_address.as_deref().unwrap_or(""), None) {
        return Err(ApiError::new(403, MSG_EMAIL_EXISTS_ADMIN));
    }
    if !dir.group_exists(&org_id, fields.group_id.as_deref().unwrap_or("")) {
        return Err(malformed());
    }
    let user = dir.insert_user(&org_id, fields);
    drop(dir);
    user_answer(&user)
}

pub async fn get_user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    check_secret(&s, &headers)?;
    let user = s.dir().users.get(&id).cloned();
    let user = user.ok_or_else(|| ApiError::new(404, "Could not retrieve user detail"))?;
    Ok(Json(user).into_response())
}

pub async fn update_user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    check_secret(&s, &headers)?;
    let target = s
        .dir()
        .users
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "User not found"))?;
    let malformed = || ApiError::new(403, "Request body malformed");
    let body = object(&body).ok_or_else(malformed)?;
    let fields = UserFields::from_json(&body).map_err(|()| malformed())?;
    check_user_update(&s, &target, &fields).map_err(|e| match e.message.as_str() {
        MSG_EMAIL_EXISTS_DASHBOARD => ApiError::new(403, MSG_EMAIL_EXISTS_ADMIN),
        _ => malformed(),
    })?;
    let user = s
        .dir()
        .apply_user(&id, fields)
        .ok_or_else(|| ApiError::new(404, "User not found"))?;
    user_answer(&user)
}

pub async fn list_orgs(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Query<HashMap<String, String>>,
) -> Answer {
    check_secret(&s, &headers)?;
    let orgs: Vec<Organisation> = s.dir().orgs.values().cloned().collect();
    // No `p` → everything (the spec declares no paging here).
    let p = q.get("p").and_then(|p| p.parse().ok()).unwrap_or(-1);
    let (organisations, pages) = paginate(&orgs, p, s.options.page_size);
    Ok(Json(OrgsList {
        organisations,
        pages,
    })
    .into_response())
}

pub async fn get_org(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    check_secret(&s, &headers)?;
    let org = s.dir().orgs.get(&id).cloned();
    let org = org.ok_or_else(|| ApiError::new(404, "Could not retrieve org detail"))?;
    Ok(Json(org).into_response())
}

pub async fn create_org(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Answer {
    check_secret(&s, &headers)?;
    let mut body = object(&body).ok_or_else(|| ApiError::new(403, "Request body malformed"))?;
    let owner = match body.remove("owner_name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => return Err(ApiError::new(403, "Request body malformed")),
    };
    body.remove("id");
    let org = s.dir().create_org(&owner, body);
    Ok(Json(Envelope::ok("Org created", json!(org.id))).into_response())
}
