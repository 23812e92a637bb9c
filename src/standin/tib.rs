//! A stand-in for Tyk Identity Broker's profile API, faithful to
//! TykTechnologies/tyk-identity-broker `api.go` and `tap/profileActions.go`
//! (and `swagger/identity-broker-swagger.yml`):
//!
//! - `GET /api/profiles`, `GET|POST|PUT|DELETE /api/profiles/{id}`, also
//!   under `/api/tib/` as the Dashboard-embedded TIB serves them;
//! - `Authorization: <secret>` compared as is, else 401 `Authorization failed`;
//! - bodies decoded into TIB's `Profile` struct as Go does: field names
//!   matched case-insensitively, unknown fields dropped, missing or null
//!   ones zero, a wrong type a 400 `Failed to decode body data`; numbers in
//!   free-form fields come back as Go re-encodes a float64;
//! - POST of an existing ID → 400 `Object ID already exists`, PUT of a
//!   missing one → 404 `Object ID does not exist, operation not permitted`,
//!   body `ID` ≠ path → 400 `Object ID and URI resource ID do not match`;
//! - answers `{"Status":"ok","ID":…,"Data":…}` (201 on POST) or
//!   `{"Status":"error","Error":…}`.
//!
//! Tests inject faults (a status for the next request, or an OK answer to
//! a write that is not kept) and read the request log.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A fault for the next profile request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TibFault {
    /// Answer with this status and an error body, doing nothing.
    Status(u16),
    /// Answer the next POST/PUT as if it worked, but keep nothing (as when
    /// TIB's backend write is lost); reads before it are served normally.
    ForgetWrite,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct TibRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Option<Value>,
}

impl TibRequest {
    /// Whether the request asked for a change.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "DELETE")
    }
}

#[derive(Debug, Default)]
struct Shared {
    secret: String,
    profiles: Mutex<BTreeMap<String, Value>>,
    faults: Mutex<VecDeque<TibFault>>,
    log: Mutex<Vec<TibRequest>>,
}

/// A running TIB stand-in. Dropping it stops the server.
#[derive(Debug)]
pub struct TibStandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl TibStandIn {
    /// Binds 127.0.0.1 on a free port; `secret` is TIB's `Secret`.
    pub async fn spawn(secret: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let shared = Arc::new(Shared {
            secret: secret.to_string(),
            ..Shared::default()
        });
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "TIB stand-in stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            stop: Some(stop),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn request_log(&self) -> Vec<TibRequest> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_request_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Writes (POST/PUT/DELETE) served so far.
    pub fn writes(&self) -> Vec<TibRequest> {
        self.request_log()
            .into_iter()
            .filter(TibRequest::is_write)
            .collect()
    }

    pub fn profile(&self, id: &str) -> Option<Value> {
        lock(&self.shared.profiles).get(id).cloned()
    }

    pub fn profiles(&self) -> BTreeMap<String, Value> {
        lock(&self.shared.profiles).clone()
    }

    /// Stores a profile directly (a hand edit in TIB's UI, or a profile of
    /// someone else), decoded as TIB would.
    pub fn put_profile(&self, profile: Value) {
        let decoded = decode(profile.to_string().as_bytes()).unwrap_or(profile);
        let id = decoded["ID"].as_str().unwrap_or_default().to_string();
        lock(&self.shared.profiles).insert(id, decoded);
    }

    /// Deletes a profile directly (by hand, outside tyk-idsync).
    pub fn remove_profile(&self, id: &str) -> Option<Value> {
        lock(&self.shared.profiles).remove(id)
    }

    pub fn inject(&self, fault: TibFault) {
        lock(&self.shared.faults).push_back(fault);
    }
}

impl Drop for TibStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/api/profiles", get(list))
        .route("/api/tib/profiles", get(list))
        .route(
            "/api/profiles/{id}",
            get(one).post(one).put(one).delete(one),
        )
        .route(
            "/api/tib/profiles/{id}",
            get(one).post(one).put(one).delete(one),
        )
        .with_state(shared)
}

fn ok(status: StatusCode, id: &str, data: Value) -> (StatusCode, Value) {
    (status, json!({"Status": "ok", "ID": id, "Data": data}))
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({"Status": "error", "Error": message}))
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    given == shared.secret
}

fn finish(
    shared: &Shared,
    method: &Method,
    path: String,
    body: &Bytes,
    (status, value): (StatusCode, Value),
) -> Response {
    lock(&shared.log).push(TibRequest {
        method: method.to_string(),
        path,
        status: status.as_u16(),
        body: serde_json::from_slice(body).ok(),
    });
    (status, axum::Json(value)).into_response()
}

async fn list(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let answer = if !authorised(&shared, &headers) {
        error(StatusCode::UNAUTHORIZED, "Authorization failed")
    } else {
        let all: Vec<Value> = lock(&shared.profiles).values().cloned().collect();
        ok(StatusCode::OK, "", Value::Array(all))
    };
    finish(
        &shared,
        &method,
        uri.path().to_string(),
        &Bytes::new(),
        answer,
    )
}

async fn one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = answer(&shared, &method, &id, &headers, &body);
    finish(&shared, &method, uri.path().to_string(), &body, answer)
}

fn answer(
    shared: &Shared,
    method: &Method,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> (StatusCode, Value) {
    if !authorised(shared, headers) {
        return error(StatusCode::UNAUTHORIZED, "Authorization failed");
    }
    // A status fault hits the next request; a forgotten write waits for
    // the next POST or PUT.
    let fault = {
        let mut faults = lock(&shared.faults);
        let writes = matches!(*method, Method::POST | Method::PUT);
        match faults.front() {
            Some(TibFault::Status(_)) => faults.pop_front(),
            Some(TibFault::ForgetWrite) if writes => faults.pop_front(),
            _ => None,
        }
    };
    if let Some(TibFault::Status(code)) = fault {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "injected fault");
    }
    let keep = fault != Some(TibFault::ForgetWrite);
    let mut profiles = lock(&shared.profiles);
    match *method {
        Method::GET => match profiles.get(id) {
            Some(p) => ok(StatusCode::OK, id, p.clone()),
            None => error(StatusCode::NOT_FOUND, "Profile not found"),
        },
        Method::POST => {
            let Ok(profile) = decode(body) else {
                return error(StatusCode::BAD_REQUEST, "Failed to decode body data");
            };
            if profile["ID"] != id {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Object ID and URI resource ID do not match",
                );
            }
            if profiles.contains_key(id) {
                return error(StatusCode::BAD_REQUEST, "Object ID already exists");
            }
            if keep {
                profiles.insert(id.to_string(), profile.clone());
            }
            ok(StatusCode::CREATED, id, profile)
        }
        Method::PUT => {
            let Ok(profile) = decode(body) else {
                return error(StatusCode::BAD_REQUEST, "Failed to decode body data");
            };
            if profile["ID"] != id {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Object ID and URI resource ID do not match",
                );
            }
            if !profiles.contains_key(id) {
                return error(
                    StatusCode::NOT_FOUND,
                    "Object ID does not exist, operation not permitted",
                );
            }
            if keep {
                profiles.insert(id.to_string(), profile.clone());
            }
            ok(StatusCode::OK, id, profile)
        }
        Method::DELETE => {
            if profiles.remove(id).is_none() {
                return error(StatusCode::NOT_FOUND, "Object ID does not exist");
            }
            ok(StatusCode::OK, id, json!({}))
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    }
}

/// Go's zero value for null (`json.Unmarshal` leaves the field alone).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Constraint {
    #[serde(rename = "Domain", default, deserialize_with = "nullable")]
    domain: String,
    #[serde(rename = "Group", default, deserialize_with = "nullable")]
    group: String,
}

/// `tap.Profile`, field for field.
#[derive(Debug, Default, Serialize, Deserialize)]
struct GoProfile {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    id: String,
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    name: String,
    #[serde(rename = "OrgID", default, deserialize_with = "nullable")]
    org_id: String,
    #[serde(rename = "ActionType", default, deserialize_with = "nullable")]
    action_type: String,
    #[serde(rename = "MatchedPolicyID", default, deserialize_with = "nullable")]
    matched_policy_id: String,
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    provider_type: String,
    #[serde(rename = "ProviderName", default, deserialize_with = "nullable")]
    provider_name: String,
    #[serde(rename = "CustomEmailField", default, deserialize_with = "nullable")]
    custom_email_field: String,
    #[serde(rename = "CustomUserIDField", default, deserialize_with = "nullable")]
    custom_user_id_field: String,
    #[serde(rename = "ProviderConfig", default)]
    provider_config: Value,
    #[serde(rename = "IdentityHandlerConfig", default)]
    identity_handler_config: Option<Map<String, Value>>,
    #[serde(rename = "ProviderConstraints", default, deserialize_with = "nullable")]
    provider_constraints: Constraint,
    #[serde(rename = "ReturnURL", default, deserialize_with = "nullable")]
    return_url: String,
    #[serde(rename = "DefaultUserGroupID", default, deserialize_with = "nullable")]
    default_user_group_id: String,
    #[serde(
        rename = "CustomUserGroupField",
        default,
        deserialize_with = "nullable"
    )]
    custom_user_group_field: String,
    #[serde(rename = "UserGroupMapping", default)]
    user_group_mapping: Option<BTreeMap<String, Option<String>>>,
    #[serde(rename = "UserGroupSeparator", default, deserialize_with = "nullable")]
    user_group_separator: String,
    #[serde(
        rename = "SSOOnlyForRegisteredUsers",
        default,
        deserialize_with = "nullable"
    )]
    sso_only_for_registered_users: bool,
}

const FIELD_NAMES: &[&str] = &[
    "ID",
    "Name",
    "OrgID",
    "ActionType",
    "MatchedPolicyID",
    "Type",
    "ProviderName",
    "CustomEmailField",
    "CustomUserIDField",
    "ProviderConfig",
    "IdentityHandlerConfig",
    "ProviderConstraints",
    "ReturnURL",
    "DefaultUserGroupID",
    "CustomUserGroupField",
    "UserGroupMapping",
    "UserGroupSeparator",
    "SSOOnlyForRegisteredUsers",
];

/// Decodes a body as TIB does and returns what TIB would store and echo.
fn decode(body: &[u8]) -> Result<Value, ()> {
    let Ok(Value::Object(given)) = serde_json::from_slice::<Value>(body) else {
        return Err(());
    };
    // encoding/json matches field names case-insensitively, preferring an
    // exact match; unknown fields are dropped.
    let mut fields = Map::new();
    for (key, value) in &given {
        let canonical = FIELD_NAMES
            .iter()
            .find(|f| **f == key)
            .or_else(|| FIELD_NAMES.iter().find(|f| f.eq_ignore_ascii_case(key)));
        if let Some(name) = canonical
            && (*name == key || !given.contains_key(*name))
        {
            fields.insert(name.to_string(), value.clone());
        }
    }
    let profile: GoProfile = serde_json::from_value(Value::Object(fields)).map_err(|_| ())?;
    let mut value = serde_json::to_value(&profile).map_err(|_| ())?;
    if let Some(map) = value
        .get_mut("UserGroupMapping")
        .and_then(Value::as_object_mut)
    {
        for v in map.values_mut() {
            if v.is_null() {
                *v = Value::String(String::new());
            }
        }
    }
    for free in ["ProviderConfig", "IdentityHandlerConfig"] {
        if let Some(v) = value.get_mut(free) {
            as_go_floats(v);
        }
    }
    Ok(value)
}

/// Numbers in `interface{}` values become float64 in Go and are written
/// back in Go's shortest form (`1000`, not `1e3` or `1000.0`).
fn as_go_floats(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                *value = if f.fract() == 0.0 && f.abs() < 1e15 {
                    json!(f as i64)
                } else {
                    json!(f)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_go_floats),
        Value::Object(map) => map.values_mut().for_each(as_go_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_as_go_does() {
        let body = br#"{"id":"p","type":"redirect","Unknown":1,"ProviderConfig":{"Port":1e3},
            "UserGroupMapping":{"a":"1"},"ProviderConstraints":null}"#;
        let p = decode(body).expect("decodes");
        assert_eq!(p["ID"], "p");
        assert_eq!(p["Type"], "redirect");
        assert!(p.get("Unknown").is_none());
        assert_eq!(p["ProviderConfig"]["Port"], json!(1000));
        assert_eq!(p["ProviderConstraints"], json!({"Domain": "", "Group": ""}));
        assert_eq!(p["IdentityHandlerConfig"], Value::Null);
        assert_eq!(p["SSOOnlyForRegisteredUsers"], false);
        assert!(decode(br#"{"ID":"p","SSOOnlyForRegisteredUsers":"yes"}"#).is_err());
        assert!(decode(br#"{"ID":"p","UserGroupMapping":{"a":1}}"#).is_err());
        assert!(decode(b"[1]").is_err());
    }
}
