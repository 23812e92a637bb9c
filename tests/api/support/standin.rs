//! The Tyk stand-in behind the contract check, shared by all tests of this
//! process: stand-in ← Prism (Dashboard spec) / Prism (Admin spec) ← a small
//! recording router ← the client under test. The router sends `/api/...` to
//! the Dashboard Prism and `/admin/...` to the Admin Prism, and records every
//! exchange with Prism's `sl-violations` header, so a test can assert that
//! *its* traffic (found by its own API key) broke no rule, warnings included.
//!
//! Everything runs on one dedicated runtime thread, independent of the
//! per-test tokio runtimes. Tests isolate themselves by organisation.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::tyk::{NewUser, Permissions, TykClient, TykConfig, User};

use super::prism::{Prism, Spec};

pub const ADMIN_SECRET: &str = "contract-admin-secret";

/// One request/response pair seen by the recorder.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The `authorization` (Dashboard) or `"admin"` (Admin API).
    pub credential: String,
    /// Prism's `sl-violations` header, when present.
    pub violations: Option<String>,
}

pub struct Contract {
    /// Where clients connect (the recorder).
    pub url: String,
    pub standin: StandIn,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    _prisms: Vec<Prism>,
    _dir: tempfile::TempDir,
}

/// A fresh organisation with an admin user whose key the client uses.
pub struct TestOrg {
    pub org_id: String,
    pub admin: User,
    pub key: String,
    pub client: TykClient,
}

/// The per-process contract setup, started on first use.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(start)
}

fn start() -> Contract {
    // Fail here, in the test's own thread, with the install hint.
    super::prism::prism_binary();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("tyk-contract".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("contract runtime");
            rt.block_on(async move {
                let _ = tx.send(build().await);
                std::future::pending::<()>().await;
            });
        })
        .expect("contract thread");
    rx.recv().expect("contract setup panicked")
}

async fn build() -> Contract {
    let options = StandInOptions {
        page_size: 10,
        admin_secret: ADMIN_SECRET.into(),
    };
    let standin = StandIn::spawn(options).await.expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = standin.base_url();
    let dir_path = dir.path().to_path_buf();
    let (dash, admin) = tokio::task::spawn_blocking(move || {
        let d = dir_path.clone();
        let u = upstream.clone();
        let dash = std::thread::spawn(move || Prism::start(Spec::Dashboard, &u, &d));
        let admin = Prism::start(Spec::Admin, &upstream, &dir_path);
        (dash.join().expect("dashboard prism"), admin)
    })
    .await
    .expect("prism start");
    let exchanges = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        http: reqwest::Client::new(),
        dashboard: dash.url.clone(),
        admin: admin.url.clone(),
        exchanges: exchanges.clone(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::new(recorder));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("recorder") });
    Contract {
        url,
        standin,
        exchanges,
        _prisms: vec![dash, admin],
        _dir: dir,
    }
}

struct Recorder {
    http: reqwest::Client,
    dashboard: String,
    admin: String,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

async fn forward(State(r): State<Arc<Recorder>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path_q = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let is_admin = parts.uri.path().starts_with("/admin");
    let base = if is_admin { &r.admin } else { &r.dashboard };
    let mut headers = parts.headers.clone();
    headers.remove("host");
    let answer = r
        .http
        .request(parts.method.clone(), format!("{base}{path_q}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let credential = if is_admin {
        "admin".to_string()
    } else {
        header(&parts.headers, "authorization")
    };
    let (status, headers, bytes) = match answer {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            (status, headers, resp.bytes().await.unwrap_or_default())
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            HeaderMap::new(),
            Bytes::from(e.to_string()),
        ),
    };
    r.exchanges.lock().expect("exchanges").push(Exchange {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        status: status.as_u16(),
        credential,
        violations: headers
            .get("sl-violations")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

impl Contract {
    /// Exchanges made with this Dashboard key.
    pub fn exchanges_for(&self, key: &str) -> Vec<Exchange> {
        let all = self.exchanges.lock().expect("exchanges");
        all.iter()
            .filter(|e| e.credential == key)
            .cloned()
            .collect()
    }

    /// Asserts that this key's traffic, and all Admin API traffic, went
    /// through the validator without a single violation.
    pub fn assert_clean(&self, key: &str) {
        let all = self.exchanges.lock().expect("exchanges");
        let mine: Vec<&Exchange> = all.iter().filter(|e| e.credential == key).collect();
        assert!(
            !mine.is_empty(),
            "no traffic of this test went through Prism"
        );
        let dirty: Vec<&Exchange> = all
            .iter()
            .filter(|e| (e.credential == key || e.credential == "admin") && e.violations.is_some())
            .collect();
        assert!(dirty.is_empty(), "OpenAPI violations: {dirty:#?}");
    }

    /// A client through the validator with this Dashboard key.
    pub fn client(&self, key: &str) -> TykClient {
        let mut cfg = TykConfig::new(self.url.clone(), key);
        cfg.admin_secret = Some(ADMIN_SECRET.to_string().into());
        TykClient::new(&cfg).expect("client")
    }

    /// A new organisation and admin user, created through the Admin API.
    pub async fn new_org(&self, name: &str) -> TestOrg {
        let bootstrap = self.client("bootstrap-key-unused");
        let admin_api = bootstrap.admin().expect("admin api");
        let org_id = admin_api
            .create_organisation(&tyk_idsync::tyk::NewOrganisation {
                owner_name: name.into(),
                owner_slug: String::new(),
            })
            .await
            .expect("create org");
        let admin = admin_api
            .create_user(&NewUser {
                first_name: "Org".into(),
                last_name: "Admin".into(),
                email_address: format!("admin@{}.example", org_id),
                user_permissions: Permissions::admin(),
                active: true,
                group_id: None,
                org_id: Some(org_id.clone()),
            })
            .await
            .expect("create admin");
        let key = admin.access_key().expect("admin access key").to_string();
        let client = self.client(&key);
        TestOrg {
            org_id,
            admin,
            key,
            client,
        }
    }
}
