//! End to end with the real binary: `tyk-idsync serve` is SIGKILLed at
//! random points while it syncs 300 SCIM users into a slow Tyk stand-in,
//! and restarted each time on the same database. In the end every person
//! exists exactly once in Tyk, in the right group: no duplicate, no one
//! missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::standin::{FaultRates, StandIn, StandInOptions};
use tyk_idsync::tyk::{Permissions, User};

use crate::both_backends;
use crate::support::app::ADMIN_TOKEN;
use crate::support::stack::{TYK_API_KEY, patch_ops, scim_user};
use crate::support::{Db, free_port, fresh_database_url};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");
const PEOPLE: usize = 300;
const GROUP: &str = "API Developers";

/// A `serve` process; SIGKILLed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    standin: StandIn,
    org_id: String,
    client: reqwest::Client,
    _db: Option<tempfile::TempDir>,
}

impl Setup {
    async fn new(db: Db) -> Self {
        let standin = StandIn::spawn(StandInOptions::default())
            .await
            .expect("stand-in");
        let org = standin.seed_org("Crash Org");
        let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
        standin.set_access_key(&admin.id, TYK_API_KEY);
        let (url, db_guard) = fresh_database_url(db).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("c.toml");
        let toml = format!(
            r#"
[server]
shutdown_timeout = "1s"

[database]
url = "{url}"
leader_check_interval = "200ms"

[admin]
token = "{ADMIN_TOKEN}"

[tyk]
dashboard_url = "{tyk}"
api_key = "{TYK_API_KEY}"

[scim]
enabled = true
[scim.sources.okta]

[mapping]
default_org_id = "{org}"

[[mapping.rules]]
org_id = "{org}"
name = "{GROUP}"
priority = 10
mappings_sso = ["okta:Developers"]
permissions = {{ apis = "write", keys = "read" }}

[sync]
requests_per_second = 0
max_concurrency = 4
retry_base_delay = "10ms"
retry_max_delay = "200ms"
event_lease = "5s"
"#,
            tyk = standin.base_url(),
            org = org.id,
        );
        std::fs::write(&config, toml).expect("config");
        Self {
            dir,
            config,
            standin,
            org_id: org.id,
            client: reqwest::Client::new(),
            _db: db_guard,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env_remove("TYK_IDSYNC_CONFIG")
            .env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("TYK_IDSYNC__") {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    /// A SCIM token for `okta`, issued through the binary.
    async fn scim_token(&self) -> String {
        let mut cmd = self.command();
        cmd.args(["token", "create", "--source", "okta", "--expires", "1d"]);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Starts `serve` on a fresh port and waits until it is ready.
    async fn serve(&self, generation: usize) -> Serve {
        let port = free_port();
        let log = |name: &str| {
            std::fs::File::create(self.dir.path().join(format!("{name}-{generation}.log")))
                .expect("log file")
        };
        let child = self
            .command()
            .arg("serve")
            .env("TYK_IDSYNC__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::from(log("stdout")))
            .stderr(Stdio::from(log("stderr")))
            .spawn()
            .expect("spawn serve");
        let serve = Serve {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        loop {
            let ready = self
                .client
                .get(format!("{}/readyz", serve.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return serve;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve #{generation} not ready: {}",
                self.stderr(generation)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self, generation: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("stderr-{generation}.log")))
            .unwrap_or_default()
    }

    async fn scim(
        &self,
        serve: &Serve,
        token: &str,
        method: Method,
        path: &str,
        body: Value,
    ) -> Value {
        let response = self
            .client
            .request(method, format!("{}/scim/v2{path}", serve.url))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("scim request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn admin(&self, serve: &Serve, method: Method, path: &str) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", serve.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("json")
    }

    fn users(&self) -> Vec<User> {
        self.standin
            .users()
            .into_iter()
            .filter(|u| u.org_id == self.org_id && u.email_address != "root@example.org")
            .collect()
    }

    fn group_ids(&self) -> Vec<String> {
        self.standin
            .groups()
            .into_iter()
            .filter(|g| g.org_id == self.org_id && g.name == GROUP)
            .map(|g| g.id)
            .collect()
    }

    /// Every person once, active, in the group.
    fn converged(&self) -> bool {
        let groups = self.group_ids();
        let users = self.users();
        groups.len() == 1
            && users.len() == PEOPLE
            && users.iter().all(|u| u.active && u.group_id == groups[0])
    }
}

fn email(n: usize) -> String {
    format!("person{n:03}@example.org")
}

async fn sigkilled_while_syncing_it_converges_without_duplicates(db: Db) {
    let setup = Setup::new(db).await;
    let token = setup.scim_token().await;
    // A slow Tyk, so that the sync of 300 people takes several seconds.
    setup.standin.set_fault_rates(FaultRates {
        latency: Duration::from_millis(10),
        latency_jitter: Duration::from_millis(30),
        ..FaultRates::default()
    });

    let mut generation = 0;
    let mut serve = setup.serve(generation).await;
    // The identity provider pushes everyone, in chunks, each followed by a
    // membership PATCH; the worker syncs meanwhile.
    let group = setup
        .scim(
            &serve,
            &token,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Developers",
            }),
        )
        .await;
    let group_path = format!("/Groups/{}", group["id"].as_str().expect("group id"));
    let emails: Vec<String> = (0..PEOPLE).map(email).collect();
    for chunk in emails.chunks(50) {
        let ids: Vec<String> = futures::stream::iter(chunk)
            .map(|e| {
                let (setup, serve, token) = (&setup, &serve, &token);
                async move {
                    let name = e.split('@').next().unwrap_or(e);
                    let user = setup
                        .scim(serve, token, Method::POST, "/Users", scim_user(name, e))
                        .await;
                    user["id"].as_str().expect("id").to_string()
                }
            })
            .buffered(8)
            .collect()
            .await;
        let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        setup
            .scim(
                &serve,
                &token,
                Method::PATCH,
                &group_path,
                patch_ops(json!([{"op": "add", "path": "members", "value": members}])),
            )
            .await;
    }

    // SIGKILL at random points of the sync, restarting on the same database.
    let mut kills = Vec::new();
    for band in [(1, 80), (90, 170), (180, 260)] {
        let at = rand::thread_rng().gen_range(band.0..band.1);
        let start = Instant::now();
        while setup.users().len() < at {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the sync stalled below {at} users; serve #{generation}: {}",
                setup.stderr(generation)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let jitter = rand::thread_rng().gen_range(0..60);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        drop(serve); // SIGKILL
        kills.push(setup.users().len());
        generation += 1;
        serve = setup.serve(generation).await;
    }
    eprintln!("SIGKILLed with {kills:?} of {PEOPLE} people in Tyk");
    assert!(
        kills.iter().any(|&k| k < PEOPLE),
        "every kill came after the sync had finished: {kills:?}"
    );

    let start = Instant::now();
    while !setup.converged() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no convergence: {} users, groups {:?}; serve #{generation}: {}",
            setup.users().len(),
            setup.group_ids(),
            setup.stderr(generation)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("converged {:?} after the last restart", start.elapsed());

    // No duplicate, no one missing, each created by one successful POST.
    let mut seen: Vec<String> = setup.users().into_iter().map(|u| u.email_address).collect();
    seen.sort();
    assert_eq!(seen, emails);
    let mut creations: std::collections::BTreeMap<String, usize> = Default::default();
    for r in setup.standin.request_log() {
        if r.method == "POST" && r.path == "/api/users" && r.status == 200 {
            let e = r.body.as_ref().and_then(|b| b["email_address"].as_str());
            *creations.entry(e.unwrap_or("").to_string()).or_insert(0) += 1;
        }
    }
    let duplicates: Vec<_> = creations.iter().filter(|(_, n)| **n != 1).collect();
    assert!(duplicates.is_empty(), "duplicate creations: {duplicates:?}");
    assert_eq!(creations.len(), PEOPLE);
    let group_posts = setup
        .standin
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/usergroups" && r.status == 200)
        .count();
    assert_eq!(group_posts, 1, "the group was created once");

    // Every event is eventually applied (those a killed worker had leased
    // come back after the lease), and nothing is left to do.
    setup.standin.set_fault_rates(FaultRates::default());
    let start = Instant::now();
    loop {
        let status = setup.admin(&serve, Method::GET, "/admin/v1/status").await;
        if status["outbox"]["depth"] == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "outbox not drained: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = setup
        .admin(&serve, Method::POST, "/admin/v1/sync/run")
        .await;
    assert_eq!(run["outcome"], "applied", "{run}");
    assert_eq!(run["tyk_writes"], 0, "{run}");
}
both_backends!(
    i_sigkill_during_sync,
    sigkilled_while_syncing_it_converges_without_duplicates
);
