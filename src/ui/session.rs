//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie,
//! its SHA-256 in the store ([`crate::store::ui_sessions`]), and a CSRF
//! token derived from the id, so every form of a session carries a token an
//! attacker's page cannot know, without a second secret to keep.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::UiState;
use super::error::UiError;
use crate::domain::Timestamp;
use crate::store::ui_sessions;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tyk_idsync_session";
/// The cookie the login form's CSRF token is checked against (there is no
/// session yet to derive it from).
pub const LOGIN_COOKIE: &str = "tyk_idsync_login";
/// How long a session lasts from login.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a session id.
pub fn id_hash(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

/// The CSRF token of a session: a one-way function of its id, separate
/// from [`id_hash`] by its prefix (the page shows it; the store keeps the other).
pub fn csrf_token(session_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tyk-idsync console csrf\0");
    hasher.update(session_id.as_bytes());
    hex::encode(hasher.finalize())
}

/// Constant-time equality of two tokens.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/ui`, Secure
/// when the request reached us over TLS (a terminating proxy says so in
/// `X-Forwarded-Proto`; Secure only narrows where the browser sends it).
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Duration) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The operator's name as given at login: no control characters, at most
/// 64 characters; `None` when empty.
pub fn clean_name(name: &str) -> Option<String> {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Opens a session; returns its id (for the cookie).
pub async fn open(state: &UiState, operator_name: Option<&str>) -> Result<String, UiError> {
    let id = random_token();
    let now = Timestamp::now();
    let expires = Timestamp(now.0 + i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX));
    let mut conn = state.app.store.pool().acquire().await?;
    ui_sessions::delete_expired(&mut conn, now).await?;
    ui_sessions::create(&mut conn, &id_hash(&id), operator_name, now, expires).await?;
    Ok(id)
}

/// Ends the session with this id.
pub async fn close(state: &UiState, session_id: &str) -> Result<(), UiError> {
    let mut conn = state.app.store.pool().acquire().await?;
    ui_sessions::delete(&mut conn, &id_hash(session_id)).await?;
    Ok(())
}

/// A logged-in operator: extracting it checks the session cookie against
/// the store; without a valid session the request is sent to the login
/// page (303).
#[derive(Debug, Clone)]
pub struct Operator {
    session_id: String,
    pub csrf: String,
    /// The name given at login, if any.
    pub name: Option<String>,
}

impl Operator {
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Refuses (403) a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), UiError> {
        if tokens_match(&self.csrf, presented) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }

    /// Who the audit log names for this operator's actions: the console,
    /// the name given at login, and a short, non-secret tag of the session
    /// (one admin token is shared; the tag tells sessions apart).
    pub fn actor(&self) -> String {
        let tag = &id_hash(&self.session_id)[..8];
        match &self.name {
            Some(name) => format!("ui:{name} [{tag}]"),
            None => format!("ui:[{tag}]"),
        }
    }
}

/// Why a request has no operator.
pub enum NoOperator {
    Login,
    Failed(UiError),
}

impl IntoResponse for NoOperator {
    fn into_response(self) -> Response {
        match self {
            NoOperator::Login => Redirect::to("/ui/login").into_response(),
            NoOperator::Failed(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<UiState> for Operator {
    type Rejection = NoOperator;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, NoOperator> {
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(NoOperator::Login);
        };
        let id = id.to_string();
        let live = async {
            let mut conn = state.app.store.pool().acquire().await?;
            Ok::<_, UiError>(
                ui_sessions::find_live(&mut conn, &id_hash(&id), Timestamp::now()).await?,
            )
        }
        .await
        .map_err(NoOperator::Failed)?;
        let Some(session) = live else {
            return Err(NoOperator::Login);
        };
        Ok(Operator {
            csrf: csrf_token(&id),
            session_id: id,
            name: session.operator_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_and_the_stored_hash_differ_and_are_stable() {
        let id = random_token();
        assert_eq!(id.len(), 64);
        assert_ne!(csrf_token(&id), id_hash(&id));
        assert_eq!(csrf_token(&id), csrf_token(&id));
        assert_ne!(csrf_token(&id), csrf_token(&random_token()));
    }

    #[test]
    fn operator_names_are_cleaned_and_bounded() {
        assert_eq!(
            clean_name("  Dana\u{7}  Scully "),
            Some("Dana  Scully".into())
        );
        assert_eq!(clean_name(" \n "), None);
        assert_eq!(clean_name(&"x".repeat(100)).map(|n| n.len()), Some(64));
    }

    #[test]
    fn tokens_match_only_when_equal_and_not_empty() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; tyk_idsync_session=xyz; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn cookies_are_secure_only_behind_tls() {
        let mut headers = HeaderMap::new();
        let plain = set_cookie(&headers, "n", "v", SESSION_TTL);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        headers.insert("x-forwarded-proto", "https".parse().expect("header"));
        assert!(set_cookie(&headers, "n", "v", SESSION_TTL).ends_with("; Secure"));
    }
}
