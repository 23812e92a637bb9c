//! A real SCIM server on a loopback port over a fresh store, with one
//! token per configured source, and a small HTTP client for tests.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use tyk_idsync::domain::SourceName;
use tyk_idsync::scim::{self, ScimConfig, ScimSourceConfig, ScimState};
use tyk_idsync::store::Store;

use super::{Db, fresh_store};

pub const SOURCES: [&str; 2] = ["okta", "entra"];
pub const MAX_BODY: usize = 64 * 1024;

pub struct ScimServer {
    pub url: String,
    pub store: Store,
    pub state: ScimState,
    pub client: reqwest::Client,
    tokens: BTreeMap<String, String>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl ScimServer {
    pub async fn start(db: Db) -> Self {
        let (store, dir) = fresh_store(db).await;
        let mut config = ScimConfig {
            enabled: true,
            max_page_size: 50,
            max_body_bytes: MAX_BODY,
            ..ScimConfig::default()
        };
        for source in SOURCES {
            config
                .sources
                .insert(source.to_string(), ScimSourceConfig::default());
        }
        let state = ScimState::new(store.clone(), &config, None)
            .await
            .expect("state");
        let mut tokens = BTreeMap::new();
        for source in SOURCES {
            let issued = scim::tokens::create_token(
                &store,
                &state.signing_key,
                &SourceName::new(source),
                Duration::from_secs(3600),
                None,
            )
            .await
            .expect("token");
            tokens.insert(source.to_string(), issued.token);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = scim::router(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url: format!("http://{addr}/scim/v2"),
            store,
            state,
            client: reqwest::Client::new(),
            tokens,
            _dir: dir,
        }
    }

    pub fn token(&self, source: &str) -> String {
        self.tokens.get(source).cloned().expect("known source")
    }

    /// Sends a request as `source` (or with a raw `Authorization` value).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        auth: Option<String>,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .header("content-type", "application/scim+json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn send(
        &self,
        source: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let auth = format!("Bearer {}", self.token(source));
        self.send_raw(method, path, Some(auth), body.map(|b| b.to_string()), &[])
            .await
    }
}
