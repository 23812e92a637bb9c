//! Transport helpers of the client: the pooled HTTP client (timeouts, CA,
//! TLS switch), page walking, and envelope decoding.

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::config::TykConfig;
use super::error::TykError;
use super::model::{Envelope, Page, User};

/// Fetches p=1, then p=2..=pages. `pages` of 0 means "just what came".
pub(super) async fn collect_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, TykError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, TykError>>,
{
    let first = fetch(1).await?;
    let mut items = first.items;
    for p in 2..=i64::from(first.pages) {
        let page = fetch(p).await?;
        if page.items.is_empty() {
            break;
        }
        items.extend(page.items);
    }
    Ok(items)
}

pub(super) fn build_http(config: &TykConfig) -> Result<reqwest::Client, TykError> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.max_concurrency.max(1))
        .user_agent(concat!("tyk-idsync/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| TykError::Config(format!("tyk.ca_file {}: {e}", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| TykError::Config(format!("tyk.ca_file {}: {e}", path.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    if !config.tls_verify {
        tracing::warn!(
            dashboard_url = %config.dashboard_url,
            "TLS VERIFICATION IS OFF for the Tyk Dashboard (tyk.tls_verify = false): \
             anyone on the network path can impersonate it; use tyk.ca_file instead"
        );
        builder = builder.danger_accept_invalid_certs(true);
    }
    // rustls parses the CA only here, so a bad PEM surfaces at build time.
    builder.build().map_err(|e| {
        TykError::Config(match &config.ca_file {
            Some(path) => format!("tyk.ca_file {}: not a usable PEM CA ({e})", path.display()),
            None => format!("HTTP client: {e}"),
        })
    })
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TykError> {
    serde_json::from_slice(bytes).map_err(|e| TykError::InvalidResponse(format!("bad JSON: {e}")))
}

/// The envelope's `Message`, else a short excerpt of the body.
pub(super) fn error_message(status: StatusCode, bytes: &[u8]) -> String {
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(env) if !env.message.is_empty() => env.message,
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let excerpt: String = text.chars().take(200).collect();
            if excerpt.is_empty() {
                status.to_string()
            } else {
                excerpt
            }
        }
    }
}

pub(super) fn meta_id(env: Envelope) -> Result<String, TykError> {
    match env.meta {
        serde_json::Value::String(id) if !id.is_empty() => Ok(id),
        other => Err(TykError::InvalidResponse(format!(
            "expected an id in Meta, got {other}"
        ))),
    }
}

pub(super) fn meta_user(env: Envelope) -> Result<User, TykError> {
    serde_json::from_value(env.meta)
        .map_err(|e| TykError::InvalidResponse(format!("expected a user in Meta: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_or_bad_ca_file_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("ca.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        for path in [bad, dir.path().join("missing.pem")] {
            let cfg = TykConfig {
                ca_file: Some(path.clone()),
                ..TykConfig::new("https://d", "k")
            };
            let err = build_http(&cfg).expect_err("bad CA");
            assert!(
                matches!(&err, TykError::Config(m) if m.contains("tyk.ca_file")),
                "{path:?}: {err:?}"
            );
        }
    }

    /// A fake server: `pages` as reported, items per page as listed.
    async fn walk(pages: u32, served: Vec<Vec<u32>>) -> (Vec<u32>, Vec<i64>) {
        let asked = std::sync::Mutex::new(Vec::new());
        let items = collect_pages(|p| {
            asked.lock().expect("lock").push(p);
            let items = usize::try_from(p - 1)
                .ok()
                .and_then(|i| served.get(i))
                .cloned()
                .unwrap_or_default();
            async move { Ok(Page { items, pages }) }
        })
        .await
        .expect("walk");
        (items, asked.into_inner().expect("lock"))
    }

    /// reported pages, items served per page → items collected, pages asked.
    type WalkCase = (u32, Vec<Vec<u32>>, Vec<u32>, Vec<i64>);

    #[tokio::test]
    async fn page_walking_tolerates_zero_and_overstated_page_counts() {
        let cases: Vec<WalkCase> = vec![
            (0, vec![], vec![], vec![1]),
            (0, vec![vec![1, 2]], vec![1, 2], vec![1]),
            (2, vec![vec![1], vec![2]], vec![1, 2], vec![1, 2]),
            (5, vec![vec![1], vec![2]], vec![1, 2], vec![1, 2, 3]),
        ];
        for (pages, served, want_items, want_asked) in cases {
            assert_eq!(
                walk(pages, served).await,
                (want_items, want_asked),
                "pages={pages}"
            );
        }
    }

    #[test]
    fn tls_verification_can_be_switched_off() {
        let cfg = TykConfig {
            tls_verify: false,
            ..TykConfig::new("https://d", "k")
        };
        assert!(build_http(&cfg).is_ok());
    }

    #[test]
    fn error_message_prefers_the_envelope() {
        let env = br#"{"Status":"Error","Message":"Not authorised","Meta":null}"#;
        assert_eq!(
            error_message(StatusCode::UNAUTHORIZED, env),
            "Not authorised"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"upstream down"),
            "upstream down"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b""),
            "502 Bad Gateway"
        );
    }
}
