//! Measures the SCIM → Tyk latency on an idle stack: the whole service
//! (SQLite in a temp dir) against the in-process Tyk stand-in, one mapped
//! group. Creates users one at a time and times how long each takes from
//! the SCIM answer to its appearance, active and in the group, in the
//! stand-in; prints p50/p95/max.
//!
//! `cargo run --release --example sync_latency -- [USERS] [LATENCY_MS]`
//! (defaults: 100 users, no added Tyk latency).
//!
//! Two ways a person becomes provisionable are measured, each on its own
//! fresh stack:
//! - `default-group`: `unmapped_policy = "default"` — the `POST /Users`
//!   alone maps the person (from its 201);
//! - `membership`: the user is created, then added to the mapped SCIM
//!   group — from the 200 of that `PATCH /Groups/{id}`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tyk_idsync::config::Config;
use tyk_idsync::domain::SourceName;
use tyk_idsync::mapping::{ConfigRule, UnmappedPolicy};
use tyk_idsync::scim::ScimSourceConfig;
use tyk_idsync::standin::{FaultRates, StandIn, StandInOptions};
use tyk_idsync::startup::Application;
use tyk_idsync::tyk::{Permissions, TykConfig};

const KEY: &str = "latency-dashboard-key-0123456789";
const GROUP: &str = "API Developers";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    DefaultGroup,
    Membership,
}

struct Stack {
    base: String,
    token: String,
    standin: StandIn,
    org_id: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Stack {
    async fn start(mode: Mode, latency: Duration) -> Result<Self, Box<dyn std::error::Error>> {
        let standin = StandIn::spawn(StandInOptions::default()).await?;
        let org = standin.seed_org("Latency Org");
        let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
        standin.set_access_key(&admin.id, KEY);
        standin.set_fault_rates(FaultRates {
            latency,
            ..FaultRates::default()
        });
        let dir = tempfile::tempdir()?;
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.database.url = format!("sqlite://{}/latency.db", dir.path().display());
        config.tyk = Some(TykConfig::new(standin.base_url(), KEY));
        config.scim.enabled = true;
        config
            .scim
            .sources
            .insert("okta".into(), ScimSourceConfig::default());
        config.mapping.default_org_id = Some(org.id.clone());
        config.mapping.rules = vec![ConfigRule {
            org_id: org.id.clone(),
            name: GROUP.into(),
            priority: 10,
            mappings_sso: vec!["okta:Developers".into()],
            permissions: [("apis".to_string(), "write".to_string())].into(),
            ..ConfigRule::default()
        }];
        if mode == Mode::DefaultGroup {
            config.mapping.unmapped_policy = UnmappedPolicy::Default;
            config.mapping.default_group = Some(GROUP.into());
        }
        config.sync.requests_per_second = 0;
        let app = Application::build(config).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        let key = tyk_idsync::scim::signing_key(&state.store, None).await?;
        let token = tyk_idsync::scim::tokens::create_token(
            &state.store,
            &key,
            &SourceName::new("okta"),
            Duration::from_secs(3600),
            None,
        )
        .await?
        .token;
        let stack = Self {
            base,
            token,
            standin,
            org_id: org.id,
            client: reqwest::Client::new(),
            _dir: dir,
            _stop: stop,
        };
        // The first full reconcile creates the group: wait for it, idle.
        while stack.group_id().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(stack)
    }

    fn group_id(&self) -> Option<String> {
        self.standin
            .groups()
            .into_iter()
            .find(|g| g.org_id == self.org_id && g.name == GROUP)
            .map(|g| g.id)
    }

    async fn scim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("scim request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn in_tyk(&self, email: &str, group: &str) -> bool {
        self.standin
            .users()
            .iter()
            .any(|u| u.email_address == email && u.active && u.group_id == group)
    }
}

async fn measure(
    mode: Mode,
    users: usize,
    latency: Duration,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let stack = Stack::start(mode, latency).await?;
    let group = stack.group_id().unwrap_or_default();
    let (status, scim_group) = stack
        .scim(
            reqwest::Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Developers",
            }),
        )
        .await;
    assert_eq!(status, 201, "{scim_group}");
    let group_path = format!("/Groups/{}", scim_group["id"].as_str().unwrap_or(""));
    let mut samples = Vec::with_capacity(users);
    for n in 0..users {
        let email = format!("person{n:04}@example.org");
        let (status, user) = stack
            .scim(
                reqwest::Method::POST,
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("person{n:04}"),
                    "name": {"givenName": "Ada", "familyName": "Lovelace"},
                    "emails": [{"value": email, "type": "work", "primary": true}],
                    "active": true,
                }),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        let mut from = Instant::now();
        if mode == Mode::Membership {
            let (status, body) = stack
                .scim(
                    reqwest::Method::PATCH,
                    &group_path,
                    json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "add", "path": "members",
                                        "value": [{"value": user["id"]}]}],
                    }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            from = Instant::now();
        }
        while !stack.in_tyk(&email, &group) {
            assert!(
                from.elapsed() < Duration::from_secs(30),
                "{email} never reached Tyk"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(from.elapsed());
    }
    Ok(samples)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let latency = Duration::from_millis(args.next().map_or(Ok(0), |a| a.parse())?);
    println!(
        "SCIM -> Tyk latency, {users} users one at a time, idle stack, SQLite, \
         Tyk stand-in latency {latency:?}"
    );
    for (mode, name, from) in [
        (Mode::DefaultGroup, "default-group", "POST /Users 201"),
        (Mode::Membership, "membership", "PATCH /Groups 200"),
    ] {
        let mut samples = measure(mode, users, latency).await?;
        samples.sort();
        println!(
            "{name:>13} (from the {from}): p50 {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms",
            ms(percentile(&samples, 50.0)),
            ms(percentile(&samples, 95.0)),
            ms(samples[samples.len() - 1]),
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
