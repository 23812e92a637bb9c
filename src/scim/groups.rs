//! `/Groups`: like `/Users`, plus members. Member changes are applied as
//! row inserts/deletes of the difference, never a rewrite of the list, and
//! the group row's version check serialises concurrent PATCHes, so two
//! clients adding different members never lose one.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::ScimState;
use super::auth::Caller;
use super::error::ScimError;
use super::member_batch::Outcome;
use super::members::{WantedMembers, membership_event, parse_member, sync_members};
use super::params::{list_params, parse_id, wants_minimal};
use super::patch;
use super::query::{Kind, ListPlan};
use super::resource::{
    ListParams, base_url, check_if_match, check_if_none_match, list_response, meta, page_in_memory,
    project, resource_response,
};
use super::schema::GROUP_SCHEMA;
use super::wire::{ScimBody, ScimJson};
use crate::domain::{
    EventKind, IdentityGroup, MemberKind, NewIdentityEvent, SourceName, Timestamp,
};
use crate::retry_transient;
use crate::store::scim_query::{self, MemberView};
use crate::store::{StoreError, events, identities};

/// The SCIM representation of a stored group and its members.
async fn group_json(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    base: &str,
) -> Result<Value, ScimError> {
    let members = scim_query::member_views(conn, &group.source, &group.id.to_string()).await?;
    Ok(group_json_with(group, members, base))
}

/// [`group_json`] projected by `params`; the members are not read at all
/// when the projection drops them (`excludedAttributes=members`, as Okta
/// and Entra ID ask when they only want to know the group exists).
async fn projected_group_json(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    base: &str,
    params: &ListParams,
) -> Result<Value, ScimError> {
    let json = if params.omits("members") {
        group_json_with(group, Vec::new(), base)
    } else {
        group_json(conn, group, base).await?
    };
    Ok(project(json, params))
}

/// The SCIM representation of a group with the given members.
pub(super) fn group_json_with(
    group: &IdentityGroup,
    members: Vec<MemberView>,
    base: &str,
) -> Value {
    let mut obj = group.attributes.as_object().cloned().unwrap_or_default();
    obj.insert("schemas".into(), json!([GROUP_SCHEMA]));
    obj.insert("id".into(), json!(group.id.to_string()));
    obj.insert("displayName".into(), json!(group.display_name));
    if !members.is_empty() {
        let list: Vec<Value> = members
            .into_iter()
            .map(|view| {
                let id = view.member.id.to_string();
                let endpoint = if view.member.kind == MemberKind::User {
                    "Users"
                } else {
                    "Groups"
                };
                let mut v = json!({"value": id, "type": view.member.kind.as_str(),
                                   "$ref": format!("{base}/{endpoint}/{id}")});
                if !view.name.is_empty() {
                    v["display"] = json!(view.name);
                }
                v
            })
            .collect();
        obj.insert("members".into(), Value::Array(list));
    }
    let location = format!("{base}/Groups/{}", group.id);
    obj.insert(
        "meta".into(),
        meta(
            "Group",
            group.created_at,
            group.updated_at,
            group.version,
            &location,
        ),
    );
    Value::Object(obj)
}

/// Splits a client document into the group row and the wanted member ids.
fn build_group(
    source: &SourceName,
    mut obj: Map<String, Value>,
    existing: Option<&IdentityGroup>,
) -> Result<(IdentityGroup, Option<WantedMembers>), ScimError> {
    if let (Some(Value::String(id)), Some(existing)) = (obj.get("id"), existing)
        && *id != existing.id.to_string()
    {
        return Err(ScimError::Mutability("id cannot be changed".into()));
    }
    let members = match obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("members"))
        .map(|(_, v)| v.clone())
    {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(parse_member)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(ScimError::InvalidValue("members must be an array".into())),
    };
    for server_owned in ["id", "meta", "members", "schemas"] {
        obj.retain(|k, _| !k.eq_ignore_ascii_case(server_owned));
    }
    let display_name = match obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("displayName"))
        .map(|(_, v)| v)
    {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(ScimError::InvalidValue(
                "displayName is required and must be a string".into(),
            ));
        }
    };
    let external_id = match obj.get("externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::InvalidValue(
                "externalId must be a string".into(),
            ));
        }
    };
    let now = Timestamp::now();
    let group = IdentityGroup {
        id: existing.map_or_else(Uuid::new_v4, |e| e.id),
        source: source.clone(),
        external_id,
        display_name,
        attributes: Value::Object(obj),
        version: existing.map_or(1, |e| e.version + 1),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    Ok((group, members))
}

fn group_event(kind: EventKind, group: &IdentityGroup) -> NewIdentityEvent {
    NewIdentityEvent {
        source: group.source.clone(),
        kind,
        subject_id: Some(group.id),
        email: None,
        detail: json!({"displayName": group.display_name}),
    }
}

fn map_conflict(e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict {
            entity: "displayName",
            detail,
        } => ScimError::Uniqueness(format!(
            "a group named {detail:?} already exists in this source"
        )),
        other => ScimError::Store(other),
    }
}

async fn insert_tx(
    state: &ScimState,
    source: &SourceName,
    body: &Map<String, Value>,
) -> Result<IdentityGroup, ScimError> {
    let (group, members) = build_group(source, body.clone(), None)?;
    let mut tx = state.store.begin_write().await?;
    identities::insert_group(&mut tx, &group)
        .await
        .map_err(map_conflict)?;
    events::append(&mut tx, &group_event(EventKind::GroupCreated, &group)).await?;
    sync_members(&mut tx, &group, &members.unwrap_or_default()).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, group_id = %group.id, "SCIM group created");
    Ok(group)
}

async fn respond(
    state: &ScimState,
    group: &IdentityGroup,
    headers: &HeaderMap,
    status: StatusCode,
    params: &ListParams,
) -> Result<Response, ScimError> {
    let mut conn = state.store.acquire().await?;
    let body = projected_group_json(&mut conn, group, &base_url(headers), params).await?;
    Ok(resource_response(status, body, group.version))
}

pub async fn create(
    State(state): State<ScimState>,
    Caller(source): Caller,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let group = retry_transient!(insert_tx(&state, &source, &body))?;
    respond(
        &state,
        &group,
        &headers,
        StatusCode::CREATED,
        &ListParams::default(),
    )
    .await
}

pub async fn get(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let params = list_params(&query)?;
    let id = parse_id(&id, "group")?;
    let mut conn = state.store.acquire().await?;
    let group = identities::get_group(&mut conn, &source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("group".into()))?;
    drop(conn);
    check_if_none_match(&headers, group.version)?;
    respond(&state, &group, &headers, StatusCode::OK, &params).await
}

pub async fn list(
    State(state): State<ScimState>,
    Caller(source): Caller,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<ScimJson, ScimError> {
    let params = list_params(&query)?;
    list_groups(&state, &source, &base_url(&headers), &params)
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
    list_groups(&state, &source, &base_url(&headers), &params)
        .await
        .map(ScimJson)
}

/// Lists groups, as [`super::users::list_users`] does users.
pub async fn list_groups(
    state: &ScimState,
    source: &SourceName,
    base: &str,
    params: &ListParams,
) -> Result<Value, ScimError> {
    let plan = ListPlan::new(params, Kind::Group, state.max_page_size)?;
    let condition = plan.condition.as_ref();
    let mut conn = state.store.acquire().await?;
    if let Some((start, page)) = plan.sql_page {
        let total = scim_query::count(&mut conn, source, condition, false).await?;
        let groups = scim_query::query_groups(&mut conn, source, condition, Some(page)).await?;
        let mut resources = Vec::new();
        for g in &groups {
            resources.push(projected_group_json(&mut conn, g, base, params).await?);
        }
        return Ok(list_response(total, start, resources));
    }
    let groups = scim_query::query_groups(&mut conn, source, condition, None).await?;
    let mut resources = Vec::new();
    for g in &groups {
        let json = group_json(&mut conn, g, base).await?;
        if plan.keeps(&json) {
            resources.push(json);
        }
    }
    Ok(page_in_memory(resources, params, state.max_page_size))
}

/// Loads a group with its members, lets `change` produce the new document,
/// and stores the row (version-checked) and the member difference.
async fn update_tx(
    state: &ScimState,
    source: &SourceName,
    id: Uuid,
    headers: &HeaderMap,
    change: &(dyn Fn(Map<String, Value>) -> Result<Map<String, Value>, ScimError> + Sync),
) -> Result<IdentityGroup, ScimError> {
    let mut tx = state.store.begin_write().await?;
    scim_query::lock_for_update(&mut tx, source, &id.to_string(), false).await?;
    let before = identities::get_group(&mut tx, source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("group".into()))?;
    check_if_match(headers, before.version)?;
    let mut current = before.attributes.as_object().cloned().unwrap_or_default();
    current.insert("displayName".into(), json!(before.display_name));
    let members: Vec<Value> = identities::list_members(&mut tx, id)
        .await?
        .iter()
        .map(|m| json!({"value": m.id.to_string(), "type": m.kind.as_str()}))
        .collect();
    current.insert("members".into(), Value::Array(members));
    let (after, wanted) = build_group(source, change(current)?, Some(&before))?;
    identities::update_group(&mut tx, &after, Some(before.version))
        .await
        .map_err(map_conflict)?;
    if after.display_name != before.display_name || after.attributes != before.attributes {
        events::append(&mut tx, &group_event(EventKind::GroupUpdated, &after)).await?;
    }
    sync_members(&mut tx, &after, &wanted.unwrap_or_default()).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, group_id = %id, "SCIM group updated");
    Ok(after)
}

pub async fn replace(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let id = parse_id(&id, "group")?;
    let change = |_: Map<String, Value>| Ok(body.clone());
    let group = retry_transient!(update_tx(&state, &source, id, &headers, &change))?;
    respond(
        &state,
        &group,
        &headers,
        StatusCode::OK,
        &ListParams::default(),
    )
    .await
}

/// `PATCH /Groups/{id}`. The answer is 204 with `Prefer: return=minimal`,
/// else the group projected by `attributes` / `excludedAttributes` (RFC
/// 7644 §3.9 allows them on PATCH): an IdP that patches a large group's
/// members and asks `excludedAttributes=members` is not sent, nor made to
/// wait for, the whole member list.
pub async fn patch(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let params = list_params(&query)?;
    let id = parse_id(&id, "group")?;
    let ops = patch::parse_ops(&body)?;
    let minimal = wants_minimal(&headers);
    if let Some(changes) = super::member_patch::member_only(&ops) {
        let with_members = !minimal && !params.omits("members");
        let batched = state
            .member_batcher
            .submit(&source, id, &headers, changes.clone(), with_members)
            .await;
        let patched = match batched {
            Outcome::Done(result) => result?,
            Outcome::Alone => retry_transient!(super::member_patch::apply(
                &state.store,
                &source,
                id,
                &headers,
                &changes
            ))?
            .map(|group| (group, None)),
        };
        match patched {
            Some(_) if minimal => return Ok(StatusCode::NO_CONTENT.into_response()),
            Some((group, Some(members))) => {
                let body = project(
                    group_json_with(&group, members, &base_url(&headers)),
                    &params,
                );
                return Ok(resource_response(StatusCode::OK, body, group.version));
            }
            Some((group, None)) => {
                return respond(&state, &group, &headers, StatusCode::OK, &params).await;
            }
            None => {}
        }
    }
    let change = |mut current: Map<String, Value>| {
        patch::apply(&mut current, &ops)?;
        Ok(current)
    };
    let group = retry_transient!(update_tx(&state, &source, id, &headers, &change))?;
    if minimal {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    respond(&state, &group, &headers, StatusCode::OK, &params).await
}

async fn delete_tx(
    state: &ScimState,
    source: &SourceName,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<(), ScimError> {
    let mut tx = state.store.begin_write().await?;
    let group = identities::get_group(&mut tx, source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("group".into()))?;
    check_if_match(headers, group.version)?;
    let members = identities::list_members(&mut tx, id).await?;
    // Who the deletion can affect, read before the memberships go with it.
    let detail =
        crate::store::sync_scope::deleted_group_detail(&mut tx, source, id, &group.display_name)
            .await?;
    identities::delete_group(&mut tx, source, id).await?;
    events::append(
        &mut tx,
        &NewIdentityEvent {
            detail,
            ..group_event(EventKind::GroupDeleted, &group)
        },
    )
    .await?;
    for member in members {
        membership_event(&mut tx, &group, member.id, "removed").await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, group_id = %id, "SCIM group deleted");
    Ok(())
}

pub async fn delete(
    State(state): State<ScimState>,
    Caller(source): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ScimError> {
    let id = parse_id(&id, "group")?;
    retry_transient!(delete_tx(&state, &source, id, &headers))?;
    Ok(StatusCode::NO_CONTENT)
}
