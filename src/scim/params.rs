//! Small request helpers: ids in paths, list query strings, `Prefer`.

use std::collections::HashMap;

use axum::http::HeaderMap;
use uuid::Uuid;

use super::error::ScimError;
use super::resource::ListParams;

/// An id that is not a UUID cannot exist: 404, like another source's id.
pub fn parse_id(text: &str, what: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(text).map_err(|_| ScimError::NotFound(what.to_string()))
}

fn int_param(query: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ScimError> {
    match query.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
        None => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ScimError::InvalidValue(format!("{key} must be an integer"))),
    }
}

/// List parameters from a query string (names case-insensitive).
pub fn list_params(query: &HashMap<String, String>) -> Result<ListParams, ScimError> {
    let text = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Ok(ListParams {
        filter: text("filter"),
        start_index: int_param(query, "startIndex")?,
        count: int_param(query, "count")?,
        sort_by: text("sortBy"),
        sort_order: text("sortOrder"),
        attributes: text("attributes"),
        excluded_attributes: text("excludedAttributes"),
    })
}

/// `Prefer: return=minimal` asks for 204 instead of the resource.
pub fn wants_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("return=minimal"))
}
