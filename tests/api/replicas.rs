//! Three real `tyk-idsync serve` processes sharing one PostgreSQL database,
//! against the in-process Tyk stand-in: SCIM writes spread over every
//! replica, the leader killed with SIGKILL mid-sync, a bounded takeover, and
//! neither a lost nor a duplicated change. The replicas' logs are printed
//! when a test fails, or always with `TEST_LOG` set.
//!
//! Each replica reaches the stand-in through its own logging proxy, so the
//! tests can tell from the arrivals which replica sent each Tyk write
//! (see `replicas_fencing.rs` for the fencing tests that rely on it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::tyk::Permissions;

use crate::support::app::ADMIN_TOKEN;
use crate::support::free_port;
use crate::support::postgres::fresh_database;
use crate::support::stack::scim_user;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");
const TYK_API_KEY: &str = "replicas-dashboard-key-0123456789";
pub(crate) const REPLICAS: usize = 3;
pub(crate) const DOMAIN: &str = "replicas.example.org";

/// One request as a replica's proxy saw it arrive (before forwarding it).
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    pub replica: usize,
    pub method: String,
    pub path: String,
    pub at: Instant,
}

impl Arrival {
    /// A request that changes Tyk (anything but reads, listings, searches).
    pub fn is_write(&self) -> bool {
        self.method != "GET" && !self.path.ends_with("/search")
    }
}

pub(crate) type Arrivals = Arc<Mutex<Vec<Arrival>>>;

/// A proxy in front of the stand-in for one replica: logs each request's
/// arrival (with the replica's index), then forwards it unchanged.
async fn spawn_proxy(replica: usize, upstream: String, log: Arrivals) -> String {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy listener");
    let addr = listener.local_addr().expect("proxy address");
    let client = reqwest::Client::new();
    let forward = move |request: Request| {
        let (client, upstream, log) = (client.clone(), upstream.clone(), log.clone());
        async move {
            let (parts, body) = request.into_parts();
            log.lock().expect("arrivals").push(Arrival {
                replica,
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                at: Instant::now(),
            });
            let body = axum::body::to_bytes(body, 64 << 20)
                .await
                .unwrap_or_default();
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut outgoing = client
                .request(parts.method.clone(), format!("{upstream}{target}"))
                .body(body);
            for (name, value) in &parts.headers {
                if name != axum::http::header::HOST {
                    outgoing = outgoing.header(name, value);
                }
            }
            let mut response = Response::builder();
            match outgoing.send().await {
                Ok(answer) => {
                    response = response.status(answer.status());
                    for (name, value) in answer.headers() {
                        response = response.header(name, value);
                    }
                    let bytes = answer.bytes().await.unwrap_or_default();
                    response.body(Body::from(bytes)).expect("response")
                }
                Err(_) => response.status(502).body(Body::empty()).expect("response"),
            }
        }
    };
    let app = axum::Router::new().fallback(forward);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// One `tyk-idsync serve` child process; killed (and reaped) on drop.
pub(crate) struct Replica {
    pub index: usize,
    pub base: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn spawn(index: usize, dir: &Path, dashboard_url: &str) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("replica-{index}.log"));
        let out = File::create(&log).expect("replica log");
        let err = out.try_clone().expect("replica log");
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", "c.toml", "serve"])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("TYK_IDSYNC_CONFIG");
        for (key, _) in std::env::vars() {
            if key.starts_with("TYK_IDSYNC__") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .env("TYK_IDSYNC__SERVER__LISTEN", &listen)
            .env("TYK_IDSYNC__TYK__DASHBOARD_URL", dashboard_url)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn tyk-idsync serve");
        Self {
            index,
            base: format!("http://{listen}"),
            log,
            child: Some(child),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `server.listen` (what its `application_name`s end with).
    pub fn listen(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// SIGTERM (a graceful stop), then waits until it has exited.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait for the replica");
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stand-in, one fresh database and three replicas on it, each behind
/// its own logging proxy.
pub(crate) struct Cluster {
    // Replicas first: they stop before the stand-in and the temp dir go.
    pub replicas: Vec<Replica>,
    pub standin: StandIn,
    pub org_id: String,
    scim_token: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    /// The database's URL (tests terminate its sessions).
    pub db: String,
    /// Each replica's proxy URL, by index.
    proxies: Vec<String>,
    /// Every request the proxies forwarded, in arrival order.
    pub arrivals: Arrivals,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // On failure (or with TEST_LOG set), show what the replicas logged.
        let full = std::env::var_os("TEST_LOG").is_some();
        if full || std::thread::panicking() {
            for r in &self.replicas {
                eprintln!("--- replica {} ({}) log ---", r.index, r.base);
                eprintln!("{}", r.log_tail(if full { usize::MAX } else { 40 }));
            }
        }
        for r in &mut self.replicas {
            r.kill();
        }
    }
}

/// Polls `check` every 20 ms until it yields a value; panics after `bound`.
pub(crate) async fn poll<T, F, Fut>(what: &str, bound: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, start.elapsed());
        }
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Cluster {
    /// `requests_per_second` paces the sync toward Tyk (0 = unlimited).
    pub async fn start(requests_per_second: u32) -> Self {
        let standin = StandIn::spawn(StandInOptions::default())
            .await
            .expect("stand-in");
        let org = standin.seed_org("Replicas Org");
        let admin = standin.seed_user(&org.id, "tyk-admin@example.org", Permissions::admin());
        standin.set_access_key(&admin.id, TYK_API_KEY);
        let db = fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            r#"
[server]
shutdown_timeout = "2s"

[admin]
token = "{ADMIN_TOKEN}"

[database]
url = "{db}"
max_connections = 5
leader_check_interval = "1s"

[log]
filter = "tyk_idsync=info,warn"

[tyk]
dashboard_url = "{tyk}"
api_key = "{TYK_API_KEY}"

[scim]
enabled = true

[scim.sources.okta]

[mapping]
default_org_id = "{org}"

[sync]
requests_per_second = {requests_per_second}
retry_base_delay = "10ms"
retry_max_delay = "1s"
poll_interval = "100ms"
"#,
            tyk = standin.base_url(),
            org = org.id,
        );
        std::fs::write(dir.path().join("c.toml"), config).expect("config");

        let arrivals = Arrivals::default();
        let mut proxies = Vec::new();
        for i in 0..REPLICAS {
            proxies.push(spawn_proxy(i, standin.base_url(), arrivals.clone()).await);
        }
        // All three start at once on the empty database: they migrate it
        // and agree on the generated token-signing key concurrently.
        let replicas: Vec<Replica> = (0..REPLICAS)
            .map(|i| Replica::spawn(i, dir.path(), &proxies[i]))
            .collect();
        let mut cluster = Self {
            replicas,
            standin,
            db,
            proxies,
            arrivals,
            org_id: org.id,
            scim_token: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            dir,
        };
        for i in 0..REPLICAS {
            cluster.wait_ready(i).await;
        }
        cluster.scim_token = cluster.create_token().await;
        cluster
    }

    /// Waits for `/readyz` to answer 200. A replica that lost its port to
    /// another test between `free_port` and its bind is started again on
    /// another one.
    async fn wait_ready(&mut self, i: usize) {
        let start = Instant::now();
        let mut respawns = 0;
        loop {
            if !self.replicas[i].is_running() {
                let log = self.replicas[i].log_tail(40);
                assert!(
                    log.contains("cannot listen on") && respawns < 3,
                    "replica {i} exited:\n{log}"
                );
                respawns += 1;
                self.replicas[i] = Replica::spawn(i, self.dir.path(), &self.proxies[i]);
            }
            let answered = self
                .client
                .get(self.replicas[i].url("/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if answered {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "replica {i} not ready after 60 s:\n{}",
                self.replicas[i].log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `tyk-idsync token create --source okta` against the same database.
    async fn create_token(&self) -> String {
        let dir = self.dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(BIN);
            cmd.args(["--config", "c.toml", "token", "create", "--source", "okta"])
                .current_dir(dir)
                .env_remove("RUST_LOG")
                .env_remove("TYK_IDSYNC_CONFIG");
            for (key, _) in std::env::vars() {
                if key.starts_with("TYK_IDSYNC__") {
                    cmd.env_remove(key);
                }
            }
            cmd.output().expect("run token create")
        })
        .await
        .expect("join");
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        token
    }

    /// The replica's role from `/readyz` (`None` if it does not answer).
    pub async fn role(&self, i: usize) -> Option<String> {
        let response = self
            .client
            .get(self.replicas[i].url("/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["role"].as_str().map(str::to_string)
    }

    /// The leaders among `among`, as their `/readyz` reports them.
    pub async fn leaders(&self, among: &[usize]) -> Vec<usize> {
        let mut leaders = Vec::new();
        for &i in among {
            if self.role(i).await.as_deref() == Some("leader") {
                leaders.push(i);
            }
        }
        leaders
    }

    /// Waits until exactly one of `among` leads; returns it.
    pub async fn single_leader(&self, among: &[usize], bound: Duration) -> (usize, Duration) {
        poll("exactly one replica leads", bound, move || async move {
            match self.leaders(among).await[..] {
                [one] => Some(one),
                _ => None,
            }
        })
        .await
    }

    pub async fn scim(
        &self,
        replica: usize,
        method: Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(
                method,
                self.replicas[replica].url(&format!("/scim/v2{path}")),
            )
            .bearer_auth(&self.scim_token);
        if !body.is_null() {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("scim request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn add_rule(&self, replica: usize, name: &str, sso: &str) {
        let response = self
            .client
            .post(self.replicas[replica].url("/admin/v1/mappings"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "orgId": self.org_id,
                "name": name,
                "priority": 10,
                "mappingsSSO": [sso],
                "permissions": {"apis": "write", "keys": "read"},
            }))
            .send()
            .await
            .expect("create rule");
        assert_eq!(response.status(), 201, "rule {name}");
    }

    /// Creates `n` SCIM users, request `i` on replica `i % 3`, 16 at a time;
    /// returns their ids in order.
    pub async fn create_users(&self, prefix: &str, n: usize) -> Vec<String> {
        let created: Vec<(usize, u16, Value)> = futures::stream::iter(0..n)
            .map(|i| async move {
                let name = format!("{prefix}{i:03}");
                let (status, body) = self
                    .scim(
                        i % REPLICAS,
                        Method::POST,
                        "/Users",
                        scim_user(&name, &format!("{name}@{DOMAIN}")),
                    )
                    .await;
                (i, status, body)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut ids = vec![String::new(); n];
        for (i, status, body) in created {
            assert_eq!(status, 201, "user {i}: {body}");
            ids[i] = body["id"].as_str().expect("user id").to_string();
        }
        ids
    }

    pub async fn outbox_depth(&self, replica: usize) -> Option<i64> {
        let response = self
            .client
            .get(self.replicas[replica].url("/admin/v1/status"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["outbox"]["depth"].as_i64()
    }

    /// Tyk users of the test's org created for SCIM users, by e-mail.
    pub fn tyk_users_by_email(&self) -> BTreeMap<String, Vec<tyk_idsync::tyk::User>> {
        let mut by_email: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for user in self.standin.users() {
            if user.org_id == self.org_id && user.email_address.ends_with(DOMAIN) {
                by_email
                    .entry(user.email_address.clone())
                    .or_default()
                    .push(user);
            }
        }
        by_email
    }

    pub fn tyk_groups_named(&self, name: &str) -> Vec<tyk_idsync::tyk::UserGroup> {
        self.standin
            .groups()
            .into_iter()
            .filter(|g| g.org_id == self.org_id && g.name == name)
            .collect()
    }

    /// True when every e-mail is one active Tyk user in the group `name`.
    pub fn all_in_group(&self, emails: &BTreeSet<String>, name: &str) -> bool {
        let groups = self.tyk_groups_named(name);
        let [group] = &groups[..] else {
            return false;
        };
        let users = self.tyk_users_by_email();
        emails.iter().all(|e| {
            users
                .get(e)
                .is_some_and(|us| us.iter().any(|u| u.group_id == group.id && u.active))
        })
    }
}

pub(crate) fn emails(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}{i:03}@{DOMAIN}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_mid_sync_is_replaced_and_nothing_is_lost_or_duplicated() {
    const USERS: usize = 200;
    const GROUP: &str = "Replicated Team";
    let started = Instant::now();
    // 50 Tyk writes per second: the 200 creations take about 4 s, a window
    // wide enough to kill the leader in the middle of them.
    let mut cluster = Cluster::start(50).await;
    let all: Vec<usize> = (0..REPLICAS).collect();
    cluster.single_leader(&all, Duration::from_secs(15)).await;
    let ready_at = started.elapsed();

    let ids = cluster.create_users("user", USERS).await;
    // The group with the first half, the second half in ten PATCHes of ten,
    // each on the next replica.
    let (status, group) = cluster
        .scim(
            0,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Replicated",
                "members": ids[..USERS / 2].iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().expect("group id").to_string();
    for (n, chunk) in ids[USERS / 2..].chunks(10).enumerate() {
        let (status, body) = cluster
            .scim(
                (n + 1) % REPLICAS,
                Method::PATCH,
                &format!("/Groups/{group_id}"),
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members",
                        "value": chunk.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()}],
                }),
            )
            .await;
        assert_eq!(status, 200, "patch {n}: {body}");
    }
    let pushed_at = started.elapsed();
    // Nobody is mapped yet, so the sync has nothing to do until the rule
    // comes: then the leader creates all 200 at once (however slow the
    // pushes above were), and is killed once it has applied some of them.
    assert!(cluster.tyk_users_by_email().is_empty(), "no rule, no user");
    cluster.add_rule(1, GROUP, "okta:Replicated").await;
    let c = &cluster;
    let (at_kill, _) = poll(
        "the leader is syncing",
        Duration::from_secs(30),
        move || async move {
            let n = c.tyk_users_by_email().len();
            (n >= 20).then_some(n)
        },
    )
    .await;
    let (leader, _) = cluster.single_leader(&all, Duration::from_secs(5)).await;
    let killed = Instant::now();
    cluster.replicas[leader].kill();
    let at_kill = at_kill.max(cluster.tyk_users_by_email().len());
    assert!(
        at_kill < USERS,
        "the sync finished before the leader was killed ({at_kill} users); the test proves nothing"
    );
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (new_leader, _) = cluster
        .single_leader(&survivors, Duration::from_secs(15))
        .await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(15),
        "takeover took {takeover:?}"
    );

    let wanted = &emails("user", USERS);
    let c = &cluster;
    let (_, converged) = poll(
        "every user is in the Tyk group",
        // Well under the default 60 s event lease: the new leader frees the
        // events the dead one had claimed instead of waiting them out.
        Duration::from_secs(30),
        move || async move { c.all_in_group(wanted, GROUP).then_some(()) },
    )
    .await;
    let converged = takeover + converged;
    poll(
        "the outbox is drained",
        Duration::from_secs(30),
        move || async move { (c.outbox_depth(new_leader).await == Some(0)).then_some(()) },
    )
    .await;

    // Exactly one Tyk user per e-mail and one group: nothing duplicated.
    let users = cluster.tyk_users_by_email();
    assert_eq!(users.len(), USERS);
    let twice: Vec<&String> = users
        .iter()
        .filter(|(_, us)| us.len() != 1)
        .map(|(e, _)| e)
        .collect();
    assert!(twice.is_empty(), "several Tyk users for {twice:?}");
    assert_eq!(cluster.tyk_groups_named(GROUP).len(), 1, "one Tyk group");
    // Every successful user creation made one distinct user (the log has
    // no bodies; with one user per e-mail, as many successes as users
    // means no e-mail was created twice), and nothing was deleted.
    let log = cluster.standin.request_log();
    let created = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/users" && r.status == 200)
        .count();
    assert_eq!(created, USERS, "successful POST /api/users");
    let refused = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/users" && r.status != 200)
        .count();
    let group_posts = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/usergroups" && r.status == 200)
        .count();
    assert_eq!(group_posts, 1, "successful POST /api/usergroups");
    assert!(
        !log.iter().any(|r| r.method == "DELETE"),
        "nothing deleted in Tyk"
    );
    // Still exactly one leader among the survivors.
    assert_eq!(cluster.leaders(&survivors).await, vec![new_leader]);
    println!(
        "replicas: 3 ready with a leader in {ready_at:?}; {USERS} users + group pushed by {pushed_at:?}; \
         leader {leader} killed with {at_kill}/{USERS} users in Tyk; replica {new_leader} took over \
         in {takeover:?}; all {USERS} users in the group {converged:?} after the kill; \
         {refused} refused user POSTs; test took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_member_patches_on_all_replicas_lose_no_member() {
    const MEMBERS: usize = 60;
    const GROUP: &str = "Patched Team";
    let started = Instant::now();
    let cluster = Cluster::start(0).await;
    let all: Vec<usize> = (0..REPLICAS).collect();
    cluster.single_leader(&all, Duration::from_secs(15)).await;
    cluster.add_rule(0, GROUP, "okta:Patched").await;
    let ids = cluster.create_users("member", MEMBERS).await;
    let (status, group) = cluster
        .scim(
            1,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Patched",
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let path = format!("/Groups/{}", group["id"].as_str().expect("group id"));

    // Every PATCH at once, each adding a different member, request i on
    // replica i % 3.
    let patched_at = Instant::now();
    let answers = futures::future::join_all(ids.iter().enumerate().map(|(i, id)| {
        let path = path.clone();
        let cluster = &cluster;
        async move {
            cluster
                .scim(
                    i % REPLICAS,
                    Method::PATCH,
                    &path,
                    json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}],
                    }),
                )
                .await
        }
    }))
    .await;
    let patch_time = patched_at.elapsed();
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "patch {i}: {body}");
    }

    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    for replica in 0..REPLICAS {
        let (status, body) = cluster.scim(replica, Method::GET, &path, Value::Null).await;
        assert_eq!(status, 200, "{body}");
        let members: BTreeSet<&str> = body["members"]
            .as_array()
            .map(|ms| ms.iter().filter_map(|m| m["value"].as_str()).collect())
            .unwrap_or_default();
        let lost: Vec<&&str> = wanted.difference(&members).collect();
        assert!(lost.is_empty(), "replica {replica}: lost members {lost:?}");
        assert_eq!(members.len(), MEMBERS, "replica {replica}");
    }
    // And every membership reached Tyk through the leader.
    let wanted = &emails("member", MEMBERS);
    let c = &cluster;
    poll(
        "every member is in the Tyk group",
        Duration::from_secs(30),
        move || async move { c.all_in_group(wanted, GROUP).then_some(()) },
    )
    .await;
    println!(
        "replicas: {MEMBERS} concurrent member PATCHes over 3 replicas answered in {patch_time:?}; \
         test took {:?}",
        started.elapsed()
    );
}
