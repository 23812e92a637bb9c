//! Pieces shared by the Users and Groups endpoints: `meta`, ETags and
//! preconditions, `attributes`/`excludedAttributes` projection, list
//! parameters, and retrying a transaction that SQLite reported busy.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{self, Filter};
use super::schema::is_core_schema;
use super::wire::ScimJson;
use crate::domain::Timestamp;

/// `W/"<version>"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

pub fn meta(
    kind: &str,
    created: Timestamp,
    updated: Timestamp,
    version: i64,
    location: &str,
) -> Value {
    json!({
        "resourceType": kind,
        "created": created.to_rfc3339(),
        "lastModified": updated.to_rfc3339(),
        "location": location,
        "version": etag(version),
    })
}

fn etag_matches(list: &str, version: i64) -> bool {
    let current = etag(version);
    list.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag == current
            || tag.trim_start_matches("W/") == current.trim_start_matches("W/")
    })
}

/// `If-Match` (412 when the version differs) for writes.
pub fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ScimError> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(list) if !etag_matches(list, version) => Err(ScimError::PreconditionFailed),
        _ => Ok(()),
    }
}

/// `If-None-Match` (304 when unchanged) for reads.
pub fn check_if_none_match(headers: &HeaderMap, version: i64) -> Result<(), ScimError> {
    match headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        Some(list) if etag_matches(list, version) => Err(ScimError::NotModified),
        _ => Ok(()),
    }
}

/// A single resource response with its ETag and, for creates, `Location`.
pub fn resource_response(status: StatusCode, body: Value, version: i64) -> Response {
    let location = body
        .pointer("/meta/location")
        .and_then(Value::as_str)
        .and_then(|l| HeaderValue::from_str(l).ok());
    let mut response = (status, ScimJson(body)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    if status == StatusCode::CREATED
        && let Some(location) = location
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The `/scim/v2` base URL as the client addressed us.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}/scim/v2")
}

/// Query parameters (or a SearchRequest body) of a list.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

impl ListParams {
    /// From a `/.search` body; `attributes` may be a list there.
    pub fn from_search(body: &Map<String, Value>) -> Result<Self, ScimError> {
        let text = |key: &str| -> Option<String> {
            match body.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Array(items) => Some(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            }
        };
        let int = |key: &str| -> Result<Option<i64>, ScimError> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::InvalidValue(format!("{key} must be an integer"))),
            }
        };
        Ok(Self {
            filter: text("filter"),
            start_index: int("startIndex")?,
            count: int("count")?,
            sort_by: text("sortBy"),
            sort_order: text("sortOrder"),
            attributes: text("attributes"),
            excluded_attributes: text("excludedAttributes"),
        })
    }

    pub fn parsed_filter(&self) -> Result<Option<Filter>, ScimError> {
        self.filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(filter::parse)
            .transpose()
            .map_err(|e| ScimError::InvalidFilter(e.to_string()))
    }

    /// 1-based start and page size, clamped to what the server allows.
    pub fn window(&self, max: usize) -> (i64, i64) {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let start = self.start_index.unwrap_or(1).max(1);
        let count = self.count.unwrap_or(max).clamp(0, max);
        (start, count)
    }

    pub fn descending(&self) -> bool {
        self.sort_order
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("descending"))
    }
}

/// `ListResponse` body.
pub fn list_response(total: i64, start: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [super::wire::LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

fn split_attr(name: &str) -> (Option<String>, String, Option<String>) {
    match filter::parse_attr_path(name.trim()) {
        Ok(p) => {
            let uri = p.uri.filter(|u| !is_core_schema(u));
            (uri, p.attr, p.sub)
        }
        Err(_) => (None, name.trim().to_string(), None),
    }
}

fn find_key(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned()
}

impl ListParams {
    /// Whether [`project`] drops the core attribute `name` whole (so the
    /// server need not read it): `attributes` is given and does not name
    /// it, or `excludedAttributes` names it (not one of its sub-attributes).
    pub fn omits(&self, name: &str) -> bool {
        let names = |list: &str| -> Vec<(Option<String>, String, Option<String>)> {
            list.split(',')
                .filter(|n| !n.trim().is_empty())
                .map(split_attr)
                .collect()
        };
        if let Some(list) = self.attributes.as_deref().filter(|l| !l.trim().is_empty()) {
            return !names(list)
                .iter()
                .any(|(uri, attr, _)| uri.is_none() && attr.eq_ignore_ascii_case(name));
        }
        self.excluded_attributes.as_deref().is_some_and(|list| {
            names(list).iter().any(|(uri, attr, sub)| {
                uri.is_none() && sub.is_none() && attr.eq_ignore_ascii_case(name)
            })
        })
    }
}

/// Applies `attributes` (keep only these, plus `schemas`, `id`, `meta`) or
/// `excludedAttributes` (drop these) to a resource.
pub fn project(resource: Value, params: &ListParams) -> Value {
    let Value::Object(mut obj) = resource else {
        return resource;
    };
    if let Some(list) = params
        .attributes
        .as_deref()
        .filter(|l| !l.trim().is_empty())
    {
        let mut out = Map::new();
        for always in ["schemas", "id", "meta"] {
            if let Some(v) = obj.get(always) {
                out.insert(always.to_string(), v.clone());
            }
        }
        for name in list.split(',') {
            let (uri, attr, sub) = split_attr(name);
            let ext_key = match &uri {
                Some(uri) => match find_key(&obj, uri) {
                    Some(k) => Some(k),
                    None => continue,
                },
                None => None,
            };
            let src = match &ext_key {
                Some(k) => match obj.get(k) {
                    Some(Value::Object(ext)) => ext,
                    _ => continue,
                },
                None => &obj,
            };
            let Some(key) = find_key(src, &attr) else {
                continue;
            };
            let Some(mut value) = src.get(&key).cloned() else {
                continue;
            };
            if let Some(sub) = &sub {
                value = keep_sub(value, sub);
            }
            match ext_key {
                Some(k) => {
                    if let Value::Object(d) =
                        out.entry(k).or_insert_with(|| Value::Object(Map::new()))
                    {
                        d.insert(key, value);
                    }
                }
                None => {
                    out.insert(key, value);
                }
            }
        }
        return Value::Object(out);
    }
    if let Some(list) = params.excluded_attributes.as_deref() {
        for name in list.split(',') {
            let (uri, attr, sub) = split_attr(name);
            if matches!(
                attr.to_ascii_lowercase().as_str(),
                "id" | "schemas" | "meta"
            ) {
                continue;
            }
            let target = match uri.and_then(|u| find_key(&obj, &u)) {
                Some(k) => match obj.get_mut(&k) {
                    Some(Value::Object(ext)) => ext,
                    _ => continue,
                },
                None => &mut obj,
            };
            let Some(key) = find_key(target, &attr) else {
                continue;
            };
            match sub {
                None => {
                    target.remove(&key);
                }
                Some(sub) => drop_sub(target.get_mut(&key), &sub),
            }
        }
    }
    Value::Object(obj)
}

fn keep_sub(value: Value, sub: &str) -> Value {
    let pick = |v: &Value| -> Value {
        let mut m = Map::new();
        if let Some(obj) = v.as_object()
            && let Some(k) = find_key(obj, sub)
            && let Some(x) = obj.get(&k)
        {
            m.insert(k, x.clone());
        }
        Value::Object(m)
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(pick).collect()),
        v => pick(&v),
    }
}

fn drop_sub(value: Option<&mut Value>, sub: &str) {
    let drop = |v: &mut Value| {
        if let Some(obj) = v.as_object_mut()
            && let Some(k) = find_key(obj, sub)
        {
            obj.remove(&k);
        }
    };
    match value {
        Some(Value::Array(items)) => items.iter_mut().for_each(drop),
        Some(v) => drop(v),
        None => {}
    }
}

/// Sort key of a resource for `sortBy` (missing values sort last).
pub fn sort_key(resource: &Value, sort_by: &str) -> Option<String> {
    let path = filter::parse_attr_path(sort_by).ok()?;
    filter::values_at(resource, &path).first().map(|v| match v {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    })
}

/// Sorts and pages resources filtered in memory.
pub fn page_in_memory(mut resources: Vec<Value>, params: &ListParams, max: usize) -> Value {
    if let Some(sort_by) = params.sort_by.as_deref() {
        resources.sort_by_cached_key(|r| {
            let key = sort_key(r, sort_by);
            (key.is_none(), key)
        });
        if params.descending() {
            resources.reverse();
        }
    }
    let total = i64::try_from(resources.len()).unwrap_or(i64::MAX);
    let (start, count) = params.window(max);
    let page: Vec<Value> = resources
        .into_iter()
        .skip(usize::try_from(start - 1).unwrap_or(0))
        .take(usize::try_from(count).unwrap_or(0))
        .map(|r| project(r, params))
        .collect();
    list_response(total, start, page)
}

/// Re-runs a fallible async operation while the store reports a transient
/// failure (SQLite busy, serialization failure), a few times with backoff.
#[macro_export]
macro_rules! retry_transient {
    ($op:expr) => {{
        let mut attempt: u64 = 0;
        loop {
            match $op.await {
                Err($crate::scim::error::ScimError::Store(ref e))
                    if (e.is_transient()
                        || matches!(
                            e,
                            $crate::store::StoreError::Conflict {
                                entity: "version",
                                ..
                            }
                        ))
                        && attempt < 10 =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
                }
                result => break result,
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_and_drops_attributes() {
        let user = json!({"schemas": ["s"], "id": "1", "userName": "a",
            "name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "x", "type": "w"}]});
        let keep = ListParams {
            attributes: Some("userName,name.givenName,emails.value".into()),
            ..Default::default()
        };
        assert_eq!(
            project(user.clone(), &keep),
            json!({"schemas": ["s"], "id": "1", "userName": "a", "name": {"givenName": "A"}, "emails": [{"value": "x"}]})
        );
        let drop = ListParams {
            excluded_attributes: Some("name,emails.type,id".into()),
            ..Default::default()
        };
        assert_eq!(
            project(user, &drop),
            json!({"schemas": ["s"], "id": "1", "userName": "a", "emails": [{"value": "x"}]})
        );
    }

    #[test]
    fn etags_match_weak_and_strong_forms() {
        assert!(etag_matches("W/\"3\"", 3));
        assert!(etag_matches("\"3\"", 3));
        assert!(etag_matches("*", 3));
        assert!(!etag_matches("W/\"2\", W/\"4\"", 3));
    }
}
