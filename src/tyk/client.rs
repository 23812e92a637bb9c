//! The HTTP client: one pooled `reqwest::Client`, a per-request timeout, a
//! semaphore bounding requests in flight, and envelope/error decoding.
//! Dashboard calls live on [`TykClient`], Admin calls on [`AdminClient`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use url::Url;

use super::config::TykConfig;
use super::error::{TykError, parse_retry_after};
use super::model::{
    Envelope, GroupsList, NewOrganisation, NewUser, NewUserGroup, Organisation, OrgsList, Page,
    User, UserGroup, UsersList, page_count,
};
use crate::config::{require_secret, resolve_secret};

/// Which credential header a request carries.
#[derive(Clone, Copy)]
enum Auth {
    Dashboard,
    Admin,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
    admin_secret: Option<SecretString>,
    in_flight: Semaphore,
    timeout: Duration,
}

/// Client of the Dashboard API. Cheap to clone; clones share the pool and
/// the concurrency limit.
#[derive(Clone)]
pub struct TykClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TykClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TykClient")
            .field("base", &self.inner.base.as_str())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl TykClient {
    /// Builds the client from a validated config section.
    pub fn new(config: &TykConfig) -> Result<Self, TykError> {
        let cfg_err = |e: crate::config::ConfigProblem| TykError::Config(e.to_string());
        let api_key = require_secret(
            "tyk.api_key",
            config.api_key.as_ref(),
            config.api_key_file.as_deref(),
        )
        .map_err(cfg_err)?;
        let admin_secret = resolve_secret(
            "tyk.admin_secret",
            config.admin_secret.as_ref(),
            config.admin_secret_file.as_deref(),
        )
        .map_err(cfg_err)?;
        let base = Url::parse(&config.dashboard_url)
            .map_err(|e| TykError::Config(format!("tyk.dashboard_url: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http: build_http(config)?,
                base,
                api_key,
                admin_secret,
                in_flight: Semaphore::new(config.max_concurrency.max(1)),
                timeout: config.timeout,
            }),
        })
    }

    /// The Admin API half; fails when no admin secret is configured.
    pub fn admin(&self) -> Result<AdminClient<'_>, TykError> {
        if self.inner.admin_secret.is_none() {
            return Err(TykError::Config(
                "tyk.admin_secret is needed for Admin API calls".into(),
            ));
        }
        Ok(AdminClient { client: self })
    }

    // ---- users -------------------------------------------------------

    /// One page of users (`p` ≥ 1; `p` < 0 asks for all).
    pub async fn list_users_page(&self, p: i64) -> Result<Page<User>, TykError> {
        let list: UsersList = self
            .get_json(Auth::Dashboard, &["api", "users"], Some(p))
            .await?;
        Ok(Page {
            items: list.users.unwrap_or_default(),
            pages: page_count(list.pages),
        })
    }

    /// Every user the key can see, page by page.
    pub async fn list_users(&self) -> Result<Vec<User>, TykError> {
        collect_pages(|p| self.list_users_page(p)).await
    }

    pub async fn get_user(&self, id: &str) -> Result<User, TykError> {
        self.get_json(Auth::Dashboard, &["api", "users", id], None)
            .await
    }

    /// Creates a user (email lower-cased, as Tyk stores it); returns its id.
    pub async fn create_user(&self, user: &NewUser) -> Result<String, TykError> {
        let mut body = user.clone();
        body.email_address = body.email_address.to_lowercase();
        let env = self
            .send_envelope(
                Method::POST,
                Auth::Dashboard,
                &["api", "users"],
                Some(&body),
            )
            .await?;
        meta_id(env)
    }

    /// Replaces a user with `user` (GET-modify-PUT; `group_id` included).
    pub async fn update_user(&self, user: &User) -> Result<(), TykError> {
        self.send_envelope(
            Method::PUT,
            Auth::Dashboard,
            &["api", "users", &user.id],
            Some(user),
        )
        .await
        .map(drop)
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), TykError> {
        self.send_envelope(
            Method::DELETE,
            Auth::Dashboard,
            &["api", "users", id],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Deactivates the user, disables its API access and logs it out.
    pub async fn revoke_user(&self, id: &str) -> Result<(), TykError> {
        let path = ["api", "users", id, "actions", "revoke"];
        self.send_envelope(Method::PUT, Auth::Dashboard, &path, None::<&()>)
            .await
            .map(drop)
    }

    /// Users whose email contains `query` (the Dashboard's substring search).
    pub async fn search_users(&self, query: &str) -> Result<Vec<User>, TykError> {
        let body = serde_json::json!({ "filters": { "query": query } });
        let body = &body;
        collect_pages(|p| async move {
            let bytes = self
                .send(
                    Method::POST,
                    Auth::Dashboard,
                    &["api", "users", "search"],
                    Some(p),
                    Some(body),
                )
                .await?;
            let list: UsersList = decode(&bytes)?;
            Ok(Page {
                items: list.users.unwrap_or_default(),
                pages: page_count(list.pages),
            })
        })
        .await
    }

    /// The user with exactly this email (case-insensitive), if any.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, TykError> {
        let wanted = email.to_lowercase();
        let users = self.search_users(&wanted).await?;
        Ok(users
            .into_iter()
            .find(|u| u.email_address.to_lowercase() == wanted))
    }

    // ---- user groups -------------------------------------------------

    pub async fn list_groups_page(&self, p: i64) -> Result<Page<UserGroup>, TykError> {
        let list: GroupsList = self
            .get_json(Auth::Dashboard, &["api", "usergroups"], Some(p))
            .await?;
        Ok(Page {
            items: list.groups.unwrap_or_default(),
            pages: page_count(list.pages),
        })
    }

    pub async fn list_groups(&self) -> Result<Vec<UserGroup>, TykError> {
        collect_pages(|p| self.list_groups_page(p)).await
    }

    pub async fn get_group(&self, id: &str) -> Result<UserGroup, TykError> {
        self.get_json(Auth::Dashboard, &["api", "usergroups", id], None)
            .await
    }

    pub async fn create_group(&self, group: &NewUserGroup) -> Result<String, TykError> {
        let env = self
            .send_envelope(
                Method::POST,
                Auth::Dashboard,
                &["api", "usergroups"],
                Some(group),
            )
            .await?;
        meta_id(env)
    }

    pub async fn update_group(&self, group: &UserGroup) -> Result<(), TykError> {
        let path = ["api", "usergroups", group.id.as_str()];
        self.send_envelope(Method::PUT, Auth::Dashboard, &path, Some(group))
            .await
            .map(drop)
    }

    pub async fn delete_group(&self, id: &str) -> Result<(), TykError> {
        self.send_envelope(
            Method::DELETE,
            Auth::Dashboard,
            &["api", "usergroups", id],
            None::<&()>,
        )
        .await
        .map(drop)
    }

    // ---- plumbing ----------------------------------------------------

    async fn get_json<T: DeserializeOwned>(
        &self,
        auth: Auth,
        path: &[&str],
        p: Option<i64>,
    ) -> Result<T, TykError> {
        let bytes = self.send(Method::GET, auth, path, p, None::<&()>).await?;
        decode(&bytes)
    }

    async fn send_envelope<B: Serialize>(
        &self,
        method: Method,
        auth: Auth,
        path: &[&str],
        body: Option<&B>,
    ) -> Result<Envelope, TykError> {
        let bytes = self.send(method, auth, path, None, body).await?;
        decode(&bytes)
    }

    /// Sends one request under the concurrency limit and returns the body of
    /// a 2xx answer; anything else becomes a typed error.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        auth: Auth,
        path: &[&str],
        p: Option<i64>,
        body: Option<&B>,
    ) -> Result<bytes_of::Bytes, TykError> {
        let url = self.url(path, p)?;
        let _permit = self
            .inner
            .in_flight
            .acquire()
            .await
            .map_err(|_| TykError::Transport("client is shutting down".into()))?;
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .header(self.header_name(auth), self.credential(auth)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let timeout = self.inner.timeout;
        let response = request
            .send()
            .await
            .map_err(|e| TykError::from_reqwest(e, timeout))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TykError::from_reqwest(e, timeout))?;
        tracing::debug!(%method, path = %path.join("/"), status = status.as_u16(), "tyk request");
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(TykError::from_status(
                status,
                error_message(status, &bytes),
                retry_after,
            ))
        }
    }

    fn url(&self, path: &[&str], p: Option<i64>) -> Result<Url, TykError> {
        if path.iter().any(|s| s.is_empty()) {
            return Err(TykError::InvalidResponse("empty id in request path".into()));
        }
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|_| TykError::Config("tyk.dashboard_url cannot be a base URL".into()))?
            .pop_if_empty()
            .extend(path);
        if let Some(p) = p {
            url.query_pairs_mut().append_pair("p", &p.to_string());
        }
        Ok(url)
    }

    fn header_name(&self, auth: Auth) -> &'static str {
        match auth {
            Auth::Dashboard => "authorization",
            Auth::Admin => "admin-auth",
        }
    }

    fn credential(&self, auth: Auth) -> Result<HeaderValue, TykError> {
        let secret = match auth {
            Auth::Dashboard => Some(&self.inner.api_key),
            Auth::Admin => self.inner.admin_secret.as_ref(),
        }
        .ok_or_else(|| TykError::Config("tyk.admin_secret is not set".into()))?;
        let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
            TykError::Config("credential has characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// The Admin API (`admin-auth`): users in a given org, organisations.
#[derive(Debug, Clone, Copy)]
pub struct AdminClient<'a> {
    client: &'a TykClient,
}

impl AdminClient<'_> {
    /// Creates a user (with `org_id`, or unbounded without); returns the
    /// stored user, including its `access_key`.
    pub async fn create_user(&self, user: &NewUser) -> Result<User, TykError> {
        let mut body = user.clone();
        body.email_address = body.email_address.to_lowercase();
        let env = self
            .client
            .send_envelope(Method::POST, Auth::Admin, &["admin", "users"], Some(&body))
            .await?;
        meta_user(env)
    }

    pub async fn get_user(&self, id: &str) -> Result<User, TykError> {
        self.client
            .get_json(Auth::Admin, &["admin", "users", id], None)
            .await
    }

    pub async fn update_user(&self, user: &User) -> Result<User, TykError> {
        let path = ["admin", "users", user.id.as_str()];
        let env = self
            .client
            .send_envelope(Method::PUT, Auth::Admin, &path, Some(user))
            .await?;
        meta_user(env)
    }

    pub async fn list_organisations(&self) -> Result<Vec<Organisation>, TykError> {
        // The spec declares no paging here, but tyk-demo sends p=-1.
        let list: OrgsList = self
            .client
            .get_json(Auth::Admin, &["admin", "organisations"], Some(-1))
            .await?;
        Ok(list.organisations.unwrap_or_default())
    }

    pub async fn get_organisation(&self, id: &str) -> Result<Organisation, TykError> {
        self.client
            .get_json(Auth::Admin, &["admin", "organisations", id], None)
            .await
    }

    pub async fn create_organisation(&self, org: &NewOrganisation) -> Result<String, TykError> {
        let env = self
            .client
            .send_envelope(
                Method::POST,
                Auth::Admin,
                &["admin", "organisations"],
                Some(org),
            )
            .await?;
        meta_id(env)
    }
}

/// Fetches p=1, then p=2..=pages. `pages` of 0 means "just what came".
async fn collect_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, TykError>
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

fn build_http(config: &TykConfig) -> Result<reqwest::Client, TykError> {
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
    builder
        .build()
        .map_err(|e| TykError::Config(format!("HTTP client: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TykError> {
    serde_json::from_slice(bytes).map_err(|e| TykError::InvalidResponse(format!("bad JSON: {e}")))
}

/// The envelope's `Message`, else a short excerpt of the body.
fn error_message(status: StatusCode, bytes: &[u8]) -> String {
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

fn meta_id(env: Envelope) -> Result<String, TykError> {
    match env.meta {
        serde_json::Value::String(id) if !id.is_empty() => Ok(id),
        other => Err(TykError::InvalidResponse(format!(
            "expected an id in Meta, got {other}"
        ))),
    }
}

fn meta_user(env: Envelope) -> Result<User, TykError> {
    serde_json::from_value(env.meta)
        .map_err(|e| TykError::InvalidResponse(format!("expected a user in Meta: {e}")))
}

/// `bytes::Bytes` without naming the `bytes` crate as a dependency.
mod bytes_of {
    pub type Bytes = axum::body::Bytes;
}
