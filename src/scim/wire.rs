//! SCIM on the wire: `application/scim+json` responses and request bodies
//! read with a size limit and parsed into JSON with SCIM errors.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ScimState;
use super::error::ScimError;

pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A JSON body sent as `application/scim+json`.
pub struct ScimJson(pub serde_json::Value);

impl IntoResponse for ScimJson {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.0.to_string()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        response
    }
}

/// A request body parsed as a JSON object, bounded by the configured limit.
pub struct ScimBody(pub serde_json::Map<String, serde_json::Value>);

impl FromRequest<ScimState> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &ScimState) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ScimError::TooLarge(limit))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::InvalidSyntax(format!("the body is not valid JSON: {e}")))?;
        if let Some(where_) = first_nul(&value) {
            return Err(ScimError::InvalidValue(format!(
                "{where_} contains a NUL character (U+0000), which no attribute may hold"
            )));
        }
        match value {
            serde_json::Value::Object(map) => Ok(ScimBody(map)),
            _ => Err(ScimError::InvalidSyntax(
                "the body must be a JSON object".into(),
            )),
        }
    }
}

/// Where the first NUL character is, in any key or string of `value`
/// (`None` when there is none). PostgreSQL cannot store NUL in text, and a
/// NUL cut in one engine but not the other would make them disagree, so
/// no attribute may hold one. Iterative: the JSON's depth is the client's.
fn first_nul(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let mut pending: Vec<(&Value, String)> = vec![(value, String::new())];
    while let Some((value, path)) = pending.pop() {
        let named = |path: &str| {
            if path.is_empty() {
                "the body".to_string()
            } else {
                format!("attribute {path:?}")
            }
        };
        match value {
            Value::String(s) if s.contains('\0') => return Some(named(&path)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    pending.push((item, format!("{path}[{i}]")));
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains('\0') {
                        return Some(format!("a key of {}", named(&path)));
                    }
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    pending.push((item, path));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_nul_anywhere_is_found() {
        assert_eq!(super::first_nul(&json!({"userName": "a"})), None);
        assert_eq!(
            super::first_nul(&json!({"userName": "a\u{0}b"})).as_deref(),
            Some("attribute \"userName\"")
        );
        assert_eq!(
            super::first_nul(&json!({"emails": [{"value": "x"}, {"value": "x\u{0}"}]})).as_deref(),
            Some("attribute \"emails[1].value\"")
        );
        assert!(super::first_nul(&json!({"a\u{0}": 1})).is_some());
    }
}
