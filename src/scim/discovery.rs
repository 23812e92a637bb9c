//! `/ServiceProviderConfig`, `/ResourceTypes` and `/Schemas`, plus the
//! root `/.search` over both resource types.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::ScimState;
use super::auth::Caller;
use super::error::ScimError;
use super::resource::{ListParams, base_url, list_response, page_in_memory};
use super::wire::{ScimBody, ScimJson};
use super::{groups, schema, users};

pub async fn service_provider_config(
    State(state): State<ScimState>,
    headers: HeaderMap,
) -> ScimJson {
    ScimJson(schema::service_provider_config(
        &base_url(&headers),
        state.max_page_size,
        state.max_body_bytes,
    ))
}

fn listed(items: Vec<Value>) -> ScimJson {
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    ScimJson(list_response(total, 1, items))
}

fn one_of(items: Vec<Value>, id: &str, what: &str) -> Result<ScimJson, ScimError> {
    items
        .into_iter()
        .find(|item| item.get("id").and_then(Value::as_str) == Some(id))
        .map(ScimJson)
        .ok_or_else(|| ScimError::NotFound(format!("{what} {id:?}")))
}

pub async fn resource_types(headers: HeaderMap) -> ScimJson {
    listed(schema::resource_types(&base_url(&headers)))
}

pub async fn resource_type(
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<ScimJson, ScimError> {
    one_of(
        schema::resource_types(&base_url(&headers)),
        &id,
        "resource type",
    )
}

pub async fn schemas(headers: HeaderMap) -> ScimJson {
    listed(schema::schemas(&base_url(&headers)))
}

pub async fn schema_by_id(
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<ScimJson, ScimError> {
    one_of(schema::schemas(&base_url(&headers)), &id, "schema")
}

/// `POST /.search`: users then groups, filtered, sorted and paged together.
pub async fn root_search(
    State(state): State<ScimState>,
    Caller(source): Caller,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<ScimJson, ScimError> {
    let params = ListParams::from_search(&body)?;
    let base = base_url(&headers);
    let everything = ListParams {
        start_index: None,
        count: Some(i64::MAX),
        attributes: None,
        excluded_attributes: None,
        ..params.clone()
    };
    let unbounded = usize::MAX;
    let mut state_all = state.clone();
    state_all.max_page_size = unbounded;
    let mut resources = Vec::new();
    for list in [
        users::list_users(&state_all, &source, &base, &everything).await?,
        groups::list_groups(&state_all, &source, &base, &everything).await?,
    ] {
        if let Some(Value::Array(items)) = list.get("Resources") {
            resources.extend(items.iter().cloned());
        }
    }
    Ok(ScimJson(page_in_memory(
        resources,
        &params,
        state.max_page_size,
    )))
}

pub async fn not_found() -> ScimError {
    ScimError::NotFound("endpoint".into())
}
