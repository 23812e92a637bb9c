//! `/Users`: create, read, list/search, replace, patch and delete, each
//! change written with its identity-change event in one transaction.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ScimState;
use super::auth::Caller;
use super::error::ScimError;
use super::params::{list_params, parse_id, wants_minimal};
use super::patch;
use super::query::{Kind, ListPlan};
use super::resource::{
    ListParams, base_url, check_if_match, check_if_none_match, list_response, meta, page_in_memory,
    project, resource_response,
};
use super::schema::{ENTERPRISE_SCHEMA, USER_SCHEMA};
use super::wire::{ScimBody, ScimJson};
use crate::domain::{
    EventKind, IdentityUser, NewIdentityEvent, SourceName, Timestamp, primary_email,
};
use crate::retry_transient;
use crate::store::scim_query;
use crate::store::{StoreError, events, identities};

/// The SCIM representation of a stored user.
pub fn user_json(user: &IdentityUser, base: &str, groups: Option<Vec<Value>>) -> Value {
    let mut obj = user.attributes.as_object().cloned().unwrap_or_default();
    let mut schemas = vec![json!(USER_SCHEMA)];
    if obj
        .keys()
        .any(|k| k.eq_ignore_ascii_case(ENTERPRISE_SCHEMA))
    {
        schemas.push(json!(ENTERPRISE_SCHEMA));
    }
    obj.insert("schemas".into(), Value::Array(schemas));
    obj.insert("id".into(), json!(user.id.to_string()));
    let location = format!("{base}/Users/{}", user.id);
    obj.insert(
        "meta".into(),
        meta(
            "User",
            user.created_at,
            user.updated_at,
            user.version,
            &location,
        ),
    );
    if let Some(groups) = groups.filter(|g| !g.is_empty()) {
        obj.insert("groups".into(), Value::Array(groups));
    }
    Value::Object(obj)
}

fn text_attr(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::InvalidValue(format!("{key} must be a string"))),
    }
}

/// Accepts `true`, `"True"`, `"false"`…: Entra sends booleans as strings.
fn coerce_bool(obj: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, ScimError> {
    let Some(k) = obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned() else {
        return Ok(None);
    };
    let value = match obj.get(&k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(Value::Null) => {
            obj.remove(&k);
            return Ok(None);
        }
        _ => return Err(ScimError::InvalidValue(format!("{key} must be a boolean"))),
    };
    obj.remove(&k);
    obj.insert(key.to_string(), Value::Bool(value));
    Ok(Some(value))
}

fn email_values(obj: &Map<String, Value>) -> Result<(Vec<String>, Option<String>), ScimError> {
    let Some(emails) = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("emails"))
        .map(|(_, v)| v)
    else {
        return Ok((Vec::new(), None));
    };
    let items = emails
        .as_array()
        .ok_or_else(|| ScimError::InvalidValue("emails must be an array".into()))?;
    let mut values = Vec::new();
    let mut primary = None;
    for item in items {
        let value = item
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::InvalidValue("each email needs a string value".into()))?;
        if item
            .get("primary")
            .is_some_and(|p| p == &json!(true) || p == &json!("True") || p == &json!("true"))
        {
            primary = Some(value.to_string());
        }
        values.push(value.to_string());
    }
    let primary = primary.or_else(|| values.first().cloned());
    Ok((values, primary))
}

/// Validates a client document and derives the indexed columns.
fn build_user(
    source: &SourceName,
    mut obj: Map<String, Value>,
    existing: Option<&IdentityUser>,
) -> Result<(IdentityUser, Vec<String>), ScimError> {
    if let (Some(id), Some(existing)) = (text_attr(&obj, "id")?, existing)
        && id != existing.id.to_string()
    {
        return Err(ScimError::Mutability("id cannot be changed".into()));
    }
    for server_owned in ["id", "meta", "groups", "password", "schemas"] {
        obj.retain(|k, _| !k.eq_ignore_ascii_case(server_owned));
    }
    let user_name = text_attr(&obj, "userName")?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ScimError::InvalidValue("userName is required".into()))?;
    let active = coerce_bool(&mut obj, "active")?.unwrap_or(true);
    let (emails, primary) = email_values(&obj)?;
    // An address that is not one is kept in the document (nothing is lost)
    // but never becomes the join key: the mapping skips the person and
    // `/admin/v1/status` reports them as `invalid_email`.
    // With no `emails` at all, a userName that is an address is the
    // person's address (Okta and Entra often send only that); a userName
    // that is not one leaves the person without an address, no problem.
    let (email, email_problem) = match primary.as_deref() {
        Some(primary) => primary_email(Some(primary)),
        None => (crate::domain::email_key(&user_name).ok(), None),
    };
    let name = match obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("name"))
        .map(|(_, v)| v)
    {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(n)) => n.clone(),
        Some(_) => return Err(ScimError::InvalidValue("name must be an object".into())),
    };
    let now = Timestamp::now();
    let user = IdentityUser {
        id: existing.map_or_else(Uuid::new_v4, |e| e.id),
        source: source.clone(),
        external_id: text_attr(&obj, "externalId")?,
        user_name,
        email,
        email_problem,
        given_name: text_attr(&name, "givenName")?,
        family_name: text_attr(&name, "familyName")?,
        display_name: text_attr(&obj, "displayName")?,
        active,
        attributes: Value::Object(obj),
        version: existing.map_or(1, |e| e.version + 1),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    Ok((user, emails))
}

fn event(kind: EventKind, user: &IdentityUser) -> NewIdentityEvent {
    NewIdentityEvent {
        source: user.source.clone(),
        kind,
        subject_id: Some(user.id),
        email: user.email.clone(),
        detail: json!({"userName": user.user_name, "active": user.active}),
    }
}

fn change_kind(before: &IdentityUser, after: &IdentityUser) -> EventKind {
    match (before.active, after.active) {
        (true, false) => EventKind::UserDeactivated,
        (false, true) => EventKind::UserReactivated,
        _ => EventKind::UserUpdated,
    }
}

fn map_conflict(e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict {
            entity: "userName",
            detail,
        } => ScimError::Uniqueness(format!(
            "userName {detail:?} is already taken in this source"
        )),
        other => ScimError::Store(other),
    }
}

async fn group_refs(
    conn: &mut sqlx::AnyConnection,
    user: &IdentityUser,
    base: &str,
) -> Result<Vec<Value>, ScimError> {
    Ok(identities::groups_of_member(conn, &user.source, user.id)
        .await?
        .iter()
        .map(|g| {
            json!({"value": g.id.to_string(), "display": g.display_name,
                   "$ref": format!("{base}/Groups/{}", g.id), "type": "direct"})
        })
        .collect())
}

async fn insert_tx(
    state: &ScimState,
    source: &SourceName,
    body: &Map<String, Value>,
) -> Result<IdentityUser, ScimError> {
    let (user, emails) = build_user(source, body.clone(), None)?;
    let mut tx = state.store.begin_write().await?;
    identities::insert_user(&mut tx, &user, &emails)
        .await
        .map_err(map_conflict)?;
    events::append(&mut tx, &event(EventKind::UserCreated, &user)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, user_id = %user.id, "SCIM user created");
    Ok(user)
}

pub async fn create(
    State(state): State<ScimState>,
    Caller(source): Caller,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let user = retry_transient!(insert_tx(&state, &source, &body))?;
    let body = user_json(&user, &base_url(&headers), None);
    Ok(resource_response(StatusCode::CREATED, body, user.version))
}

pub async fn get(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let params = list_params(&query)?;
    let id = parse_id(&id, "user")?;
    let mut conn = state.store.acquire().await?;
    let user = identities::get_user(&mut conn, &source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("user".into()))?;
    check_if_none_match(&headers, user.version)?;
    let base = base_url(&headers);
    let groups = group_refs(&mut conn, &user, &base).await?;
    let body = project(user_json(&user, &base, Some(groups)), &params);
    Ok(resource_response(StatusCode::OK, body, user.version))
}

pub async fn list(
    State(state): State<ScimState>,
    Caller(source): Caller,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<ScimJson, ScimError> {
    let params = list_params(&query)?;
    list_users(&state, &source, &base_url(&headers), &params)
        .await
        .map(ScimJson)
}

pub async fn search(
    State(state): State<ScimState>,
    Caller(source): Caller,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<ScimJson, ScimError> {
    let params = ListParams::from_search(&body)?;
    list_users(&state, &source, &base_url(&headers), &params)
        .await
        .map(ScimJson)
}

/// Lists users: in SQL with paging when the filter translates exactly and
/// no sort is asked for, otherwise narrowed in SQL and finished in memory.
pub async fn list_users(
    state: &ScimState,
    source: &SourceName,
    base: &str,
    params: &ListParams,
) -> Result<Value, ScimError> {
    let plan = ListPlan::new(params, Kind::User, state.max_page_size)?;
    let condition = plan.condition.as_ref();
    let mut conn = state.store.acquire().await?;
    if let Some((start, page)) = plan.sql_page {
        let total = scim_query::count(&mut conn, source, condition, true).await?;
        let users = scim_query::query_users(&mut conn, source, condition, Some(page)).await?;
        let resources = users
            .iter()
            .map(|u| project(user_json(u, base, None), params))
            .collect();
        return Ok(list_response(total, start, resources));
    }
    let users = scim_query::query_users(&mut conn, source, condition, None).await?;
    let resources: Vec<Value> = users
        .iter()
        .map(|u| user_json(u, base, None))
        .filter(|json| plan.keeps(json))
        .collect();
    Ok(page_in_memory(resources, params, state.max_page_size))
}

/// Loads a user, lets `change` produce its new document, and stores it.
async fn update_tx(
    state: &ScimState,
    source: &SourceName,
    id: Uuid,
    headers: &HeaderMap,
    change: &(dyn Fn(Value) -> Result<Map<String, Value>, ScimError> + Sync),
) -> Result<IdentityUser, ScimError> {
    let mut tx = state.store.begin_write().await?;
    scim_query::lock_for_update(&mut tx, source, &id.to_string(), true).await?;
    let before = identities::get_user(&mut tx, source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("user".into()))?;
    check_if_match(headers, before.version)?;
    let current = before.attributes.as_object().cloned().unwrap_or_default();
    let document = change(Value::Object(current))?;
    let (after, emails) = build_user(source, document, Some(&before))?;
    identities::update_user(&mut tx, &after, &emails, Some(before.version))
        .await
        .map_err(map_conflict)?;
    events::append(&mut tx, &event(change_kind(&before, &after), &after)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, user_id = %after.id, "SCIM user updated");
    Ok(after)
}

pub async fn replace(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = parse_id(&id, "user")?;
    let change = |_: Value| Ok(body.clone());
    let user = retry_transient!(update_tx(&state, &source, id, &headers, &change))?;
    let body = user_json(&user, &base_url(&headers), None);
    Ok(resource_response(StatusCode::OK, body, user.version))
}

pub async fn patch(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = parse_id(&id, "user")?;
    let ops = patch::parse_ops(&body)?;
    let change = |current: Value| {
        let mut obj = current.as_object().cloned().unwrap_or_default();
        patch::apply(&mut obj, &ops)?;
        Ok(obj)
    };
    let user = retry_transient!(update_tx(&state, &source, id, &headers, &change))?;
    if wants_minimal(&headers) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let body = user_json(&user, &base_url(&headers), None);
    Ok(resource_response(StatusCode::OK, body, user.version))
}

async fn delete_tx(
    state: &ScimState,
    source: &SourceName,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<(), ScimError> {
    let mut tx = state.store.begin_write().await?;
    let user = identities::get_user(&mut tx, source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("user".into()))?;
    check_if_match(headers, user.version)?;
    identities::delete_user(&mut tx, source, id).await?;
    events::append(&mut tx, &event(EventKind::UserDeleted, &user)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, user_id = %id, "SCIM user deleted");
    Ok(())
}

pub async fn delete(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ScimError> {
    let id = parse_id(&id, "user")?;
    retry_transient!(delete_tx(&state, &source, id, &headers))?;
    Ok(StatusCode::NO_CONTENT)
}
