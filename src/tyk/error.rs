//! Errors of the Tyk client. Each says whether a retry can help
//! ([`TykError::is_retryable`]) and how long the server asked to wait.

use std::time::Duration;

use reqwest::StatusCode;

use super::{MSG_EMAIL_EXISTS_ADMIN, MSG_EMAIL_EXISTS_DASHBOARD};

#[derive(Debug, thiserror::Error)]
pub enum TykError {
    /// 401: the key or admin secret is missing or wrong.
    #[error("Tyk rejected the credential (401): {message}")]
    Unauthorised { message: String },
    /// 403 other than the duplicate-email case: the key lacks a permission,
    /// or the Dashboard refused the request body.
    #[error("Tyk refused the request (403): {message}")]
    Forbidden { message: String },
    /// The email is already used in this organisation (Dashboard or Admin API).
    #[error("email already exists in this organisation: {message}")]
    EmailAlreadyExists { message: String },
    /// 404, or a 400 whose documented message means "no such object".
    #[error("not found ({status}): {message}")]
    NotFound { status: u16, message: String },
    /// 409 (not documented by Tyk, but a proxy in front may send it).
    #[error("conflict (409): {message}")]
    Conflict { message: String },
    /// Another 4xx: the request itself is wrong; retrying will not help.
    #[error("Tyk rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 429, with the server's `Retry-After` when it sent one.
    #[error("rate-limited by Tyk (429), retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx.
    #[error("Tyk server error ({status}): {message}")]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The per-request timeout elapsed.
    #[error("request to Tyk timed out after {0:?}")]
    Timeout(Duration),
    /// Connection refused/reset, TLS failure, a body cut off mid-way.
    #[error("cannot reach Tyk: {0}")]
    Transport(String),
    /// A 2xx answer that does not match the contract.
    #[error("unexpected answer from Tyk: {0}")]
    InvalidResponse(String),
    /// The caller passed something unusable (e.g. an empty id); not sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client was built from an unusable configuration.
    #[error("invalid Tyk client configuration: {0}")]
    Config(String),
}

impl TykError {
    /// True when the same request may succeed later (429, 5xx, timeouts,
    /// transport failures). Everything else needs a change first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout(_) | Self::Transport(_)
        )
    }

    /// The wait the server asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies a non-2xx answer by status and the envelope's `Message`.
    pub(crate) fn from_status(
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let code = status.as_u16();
        match code {
            401 => Self::Unauthorised { message },
            403 if is_email_exists(&message) => Self::EmailAlreadyExists { message },
            403 => Self::Forbidden { message },
            404 => Self::NotFound {
                status: code,
                message,
            },
            400 if is_missing_object(&message) => Self::NotFound {
                status: code,
                message,
            },
            409 => Self::Conflict { message },
            429 => Self::RateLimited { retry_after },
            500..=599 => Self::Server {
                status: code,
                message,
                retry_after,
            },
            _ => Self::Rejected {
                status: code,
                message,
            },
        }
    }

    pub(crate) fn from_reqwest(err: reqwest::Error, timeout: Duration) -> Self {
        if err.is_timeout() {
            Self::Timeout(timeout)
        } else {
            // `{:#}`-style chain without the URL's query (no secrets travel there).
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Self::Transport(text)
        }
    }
}

fn is_email_exists(message: &str) -> bool {
    message == MSG_EMAIL_EXISTS_DASHBOARD || message == MSG_EMAIL_EXISTS_ADMIN
}

/// 400 answers the contract documents as "the object is not there".
fn is_missing_object(message: &str) -> bool {
    matches!(
        message,
        "user does not exist." | "Group ID does not exist" | "Could not retrieve user detail."
    )
}

/// Parses `Retry-After` in its delta-seconds form (the HTTP-date form is
/// not used by Tyk or the stand-in and is ignored).
pub(crate) fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_retryability() {
        let s = |c| StatusCode::from_u16(c).expect("status");
        let cases: Vec<(u16, &str, &str, bool)> = vec![
            (401, "Not authorised", "Unauthorised", false),
            (403, MSG_EMAIL_EXISTS_DASHBOARD, "EmailAlreadyExists", false),
            (403, MSG_EMAIL_EXISTS_ADMIN, "EmailAlreadyExists", false),
            (
                403,
                "access denied: You do not have permission to access  /api/users",
                "Forbidden",
                false,
            ),
            (404, "Could not retrieve user detail.", "NotFound", false),
            (400, "user does not exist.", "NotFound", false),
            (400, "User object validation failed.", "Rejected", false),
            (409, "x", "Conflict", false),
            (429, "", "RateLimited", true),
            (500, "Attempted unauthorised access.", "Server", true),
            (503, "", "Server", true),
        ];
        for (code, msg, kind, retry) in cases {
            let err = TykError::from_status(s(code), msg.to_string(), None);
            assert!(
                format!("{err:?}").starts_with(kind),
                "{code} {msg}: {err:?}"
            );
            assert_eq!(err.is_retryable(), retry, "{code} {msg}");
        }
    }

    #[test]
    fn retry_after_is_carried() {
        let err = TykError::from_status(
            StatusCode::TOO_MANY_REQUESTS,
            String::new(),
            Some(Duration::from_secs(7)),
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        let header = reqwest::header::HeaderValue::from_static("12");
        assert_eq!(
            parse_retry_after(Some(&header)),
            Some(Duration::from_secs(12))
        );
        let bad = reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(Some(&bad)), None);
    }
}
