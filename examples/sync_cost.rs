//! What changes cost against a large Tyk (issue #17): the whole service
//! against the in-process Tyk stand-in (page size 10, 2 ms added to every
//! request), with PEOPLE people stored and already in Tyk.
//!
//! `cargo run --release --example sync_cost -- [PEOPLE] [CHANGES] [BULK] [sqlite|postgres]`
//! (defaults 100000 200 10000 sqlite; PostgreSQL at `BENCH_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432`, in a fresh database).
//!
//! Measures, with `sync.requests_per_second = 400`:
//! 1. a full reconcile with nothing to do: wall, requests, writes, RSS;
//! 2. CHANGES single SCIM changes (a person added to a higher-priority
//!    group), one at a time, idle: SCIM answer → visible in Tyk, p50/p95/max,
//!    and Tyk requests per change;
//! 3. the same while a full reconcile runs;
//! 4. the same with 20 % faults (10 % 429 `Retry-After: 1`, 10 % 500);
//! 5. BULK new people through SCIM (created, then added to the mapped
//!    group): wall and Tyk requests;
//! 6. BULK more, in steps of 200 (created, then added), as an IdP pushing
//!    a large group does: the sync applies one step while the next
//!    arrives.
//!
//! A benchmark, not a test: it prints figures and asserts nothing.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tyk_idsync::config::Config;
use tyk_idsync::domain::{
    GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
};
use tyk_idsync::mapping::ConfigRule;
use tyk_idsync::scim::ScimSourceConfig;
use tyk_idsync::standin::{FaultRates, StandIn, StandInOptions, UserFields};
use tyk_idsync::startup::Application;
use tyk_idsync::store::{identities, sync_state};
use tyk_idsync::sync::worker::Trigger;
use tyk_idsync::sync::{ManagedGroup, ManagedUser};
use tyk_idsync::tyk::{PermissionLevel, Permissions, TykConfig};
use uuid::Uuid;

const KEY: &str = "cost-bench-dashboard-key-0123456789";
const RATE: u32 = 400;
type Error = Box<dyn std::error::Error + Send + Sync>;

fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Where the sync left Tyk's limiter idle: gaps between consecutive Tyk
/// requests longer than 4 slots (4 / RATE), their count and the time they
/// added over one slot each.
fn idle_gaps(log: &[tyk_idsync::standin::LoggedRequest]) -> String {
    let slot = Duration::from_secs_f64(1.0 / f64::from(RATE));
    let (mut count, mut lost) = (0, Duration::ZERO);
    for pair in log.windows(2) {
        let gap = pair[1].received_at.duration_since(pair[0].received_at);
        if gap > slot * 4 {
            count += 1;
            lost += gap - slot;
        }
    }
    format!("{count} gaps over {:.1?} adding {lost:.2?}", slot * 4)
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:>7.1?}  p95 {:>7.1?}  max {:>7.1?}  (n={})",
        at(0.5),
        at(0.95),
        samples[samples.len() - 1],
        samples.len()
    )
}

struct Bench {
    base: String,
    token: String,
    client: reqwest::Client,
    standin: StandIn,
    ops_scim: Uuid,
    developers_scim: Uuid,
    ops_tyk: String,
    /// Seeded people: identity id and Tyk id.
    people: Vec<(Uuid, String)>,
}

impl Bench {
    async fn scim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let (status, text) = self.send(method, path, body, false).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One SCIM request; its status and body text. `minimal` asks for no
    /// answer body (`Prefer: return=minimal`).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
        minimal: bool,
    ) -> (u16, String) {
        let mut request = self
            .client
            .request(method, format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json");
        if minimal {
            request = request.header("prefer", "return=minimal");
        }
        let response = request
            .body(body.to_string())
            .send()
            .await
            .expect("scim request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Adds members to a group over SCIM, asking for no answer body
    /// (`Prefer: return=minimal`, 204): otherwise each PATCH answers with
    /// every member of the group (100,000 here), which an IdP pushing a
    /// large group has no use for and which would be measured instead of
    /// the sync.
    async fn add_members(&self, group: Uuid, members: &[Uuid]) {
        let value: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": value}],
        });
        let (status, text) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/Groups/{group}"),
                body,
                true,
            )
            .await;
        assert_eq!(status, 204, "{text}");
    }

    /// Creates one person over SCIM (`{name}@cost.example`); their id.
    async fn create_person(&self, name: &str) -> Uuid {
        let (status, user) = self
            .scim(
                reqwest::Method::POST,
                "/Users",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": name,
                    "name": {"givenName": "Bulk", "familyName": name},
                    "emails": [{"value": format!("{name}@cost.example"), "type": "work", "primary": true}],
                    "active": true,
                }),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        user["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .expect("id")
    }

    fn group_of(&self, tyk_id: &str) -> Option<String> {
        self.standin
            .with_directory(|d| d.user(tyk_id).map(|u| u.group_id.clone()))
    }

    /// Moves person `n` into Ops over SCIM; the time until Tyk shows it,
    /// and the Tyk requests made meanwhile (and just after).
    async fn change(&self, n: usize) -> (Duration, usize) {
        let (identity, tyk_id) = &self.people[n];
        self.standin.clear_request_log();
        self.add_members(self.ops_scim, &[*identity]).await;
        let from = Instant::now();
        while self.group_of(tyk_id).as_deref() != Some(self.ops_tyk.as_str()) {
            assert!(
                from.elapsed() < Duration::from_secs(60),
                "change {n} never reached Tyk"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = from.elapsed();
        tokio::time::sleep(Duration::from_millis(20)).await;
        (took, self.standin.request_log().len())
    }

    async fn changes(&self, range: std::ops::Range<usize>) -> (Vec<Duration>, Vec<usize>) {
        let mut times = Vec::new();
        let mut requests = Vec::new();
        for n in range {
            let (t, r) = self.change(n).await;
            times.push(t);
            requests.push(r);
        }
        (times, requests)
    }
}

fn requests_summary(requests: &[usize]) -> String {
    let max = requests.iter().copied().max().unwrap_or(0);
    let mean = requests.iter().sum::<usize>() as f64 / requests.len().max(1) as f64;
    format!("Tyk requests per change: mean {mean:.2}, max {max}")
}

async fn database_url(backend: &str, dir: &tempfile::TempDir) -> Result<String, Error> {
    if backend != "postgres" {
        return Ok(format!("sqlite://{}/cost.db", dir.path().display()));
    }
    use sqlx::Connection;
    let server =
        std::env::var("BENCH_POSTGRES").unwrap_or("postgres://postgres@127.0.0.1:5432".into());
    let name = format!("sync_cost_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    Ok(format!("{server}/{name}"))
}

fn identity(source: &SourceName, email: &str, n: usize, now: Timestamp) -> IdentityUser {
    IdentityUser {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: Some(format!("ext-{email}")),
        user_name: email.split('@').next().unwrap_or(email).to_string(),
        email: Some(email.to_string()),
        email_problem: None,
        given_name: Some("Given".into()),
        family_name: Some(format!("Person{n}")),
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn group(source: &SourceName, name: &str, now: Timestamp) -> IdentityGroup {
    IdentityGroup {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: None,
        display_name: name.into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (people, changes, bulk) = (arg(1, 100_000), arg(2, 200), arg(3, 10_000));
    let backend = std::env::args().nth(4).unwrap_or("sqlite".into());

    let standin = StandIn::spawn(StandInOptions::default()).await?;
    let org = standin.seed_org("Cost Org");
    let admin = standin.seed_user(&org.id, "root@cost.example", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.url = database_url(&backend, &dir).await?;
    config.tyk = Some(TykConfig::new(standin.base_url(), KEY));
    config.scim.enabled = true;
    config
        .scim
        .sources
        .insert("bench".into(), ScimSourceConfig::default());
    config.mapping.default_org_id = Some(org.id.clone());
    let rule = |name: &str, priority: i64, sso: &str| ConfigRule {
        org_id: org.id.clone(),
        name: name.into(),
        priority,
        mappings_sso: vec![sso.into()],
        permissions: [("apis".to_string(), "write".to_string())].into(),
        ..ConfigRule::default()
    };
    config.mapping.rules = vec![
        rule("API Developers", 10, "bench:Developers"),
        rule("API Ops", 20, "bench:Ops"),
    ];
    config.sync.requests_per_second = RATE;
    config.sync.interval = Duration::from_secs(24 * 3600);
    let app = Application::build(config).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let worker = state.sync.clone().ok_or("no sync worker")?;

    // Seed: PEOPLE in the store (SCIM source `bench`, group Developers)
    // and in Tyk (in API Developers, managed by us).
    let seeding = Instant::now();
    let source = SourceName::new("bench");
    let now = Timestamp::now();
    let perms = Permissions::new().with("apis", PermissionLevel::Write);
    let (dev_tyk, ops_tyk) = standin.with_directory(|d| {
        (
            d.insert_group(&org.id, "API Developers", perms.clone()).id,
            d.insert_group(&org.id, "API Ops", perms.clone()).id,
        )
    });
    let developers = group(&source, "Developers", now);
    let ops = group(&source, "Ops", now);
    let mut seeded = Vec::with_capacity(people);
    let mut tx = state.store.begin_write().await?;
    identities::insert_group(&mut tx, &developers).await?;
    identities::insert_group(&mut tx, &ops).await?;
    for (id, name) in [(&dev_tyk, "API Developers"), (&ops_tyk, "API Ops")] {
        let managed = ManagedGroup {
            org_id: org.id.clone(),
            tyk_group_id: id.clone(),
            name: name.into(),
        };
        sync_state::record_group(&mut tx, &managed, now).await?;
    }
    for n in 0..people {
        let email = format!("person{n}@cost.example");
        let user = identity(&source, &email, n, now);
        identities::insert_user(&mut tx, &user, std::slice::from_ref(&email)).await?;
        let member = GroupMember {
            id: user.id,
            kind: MemberKind::User,
        };
        identities::add_members(&mut tx, developers.id, &[member]).await?;
        let tyk = standin.with_directory(|d| {
            d.insert_user(
                &org.id,
                UserFields {
                    first_name: Some("Given".into()),
                    last_name: Some(format!("Person{n}")),
                    email_address: Some(email.clone()),
                    active: Some(true),
                    group_id: Some(dev_tyk.clone()),
                    user_permissions: Some(perms.clone()),
                    ..UserFields::default()
                },
            )
        });
        let managed = ManagedUser {
            org_id: org.id.clone(),
            tyk_user_id: tyk.id.clone(),
            email,
            managed_since: now,
            adopted: false,
            deactivated_at: None,
            access_key_reset_at: None,
        };
        sync_state::record_user(&mut tx, &managed).await?;
        seeded.push((user.id, tyk.id));
    }
    tx.commit().await?;
    println!(
        "{people} people stored and in Tyk ({backend}), seeded in {:.1?}; page size 10, +2 ms per Tyk request, requests_per_second {RATE}, release build",
        seeding.elapsed()
    );
    standin.set_fault_rates(FaultRates {
        latency: Duration::from_millis(2),
        ..FaultRates::default()
    });

    let key = tyk_idsync::scim::signing_key(&state.store, None).await?;
    let token = tyk_idsync::scim::tokens::create_token(
        &state.store,
        &key,
        &source,
        Duration::from_secs(24 * 3600),
        None,
    )
    .await?
    .token;
    let bench = Bench {
        base,
        token,
        client: reqwest::Client::new(),
        standin,
        ops_scim: ops.id,
        developers_scim: developers.id,
        ops_tyk: ops_tyk.clone(),
        people: seeded,
    };

    // 1. The full reconcile with nothing to do (run directly, before the
    // service's own loop starts).
    bench.standin.clear_request_log();
    let rss_before = rss_mb("VmRSS:");
    let started = Instant::now();
    let full = worker.run_once(Trigger::Full).await?;
    let wall = started.elapsed();
    let log = bench.standin.request_log();
    let writes = log.iter().filter(|r| r.method != "GET").count();
    println!(
        "full reconcile, nothing to do: {wall:>8.2?}  {} requests ({writes} writes, {} steps planned)  RSS {rss_before:.0} → {:.0} MB, peak {:.0} MB (stand-in and seed included)",
        log.len(),
        full.summary.by_kind.values().sum::<usize>(),
        rss_mb("VmRSS:"),
        rss_mb("VmHWM:"),
    );

    // The service's loop; it starts with a full reconcile of its own: let it
    // finish first (the idle figures are idle).
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    // (The config's rules left a mapping event in the outbox: it plans
    // everyone once more.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let mut conn = state.store.pool().acquire().await?;
        let (depth, _) = tyk_idsync::store::events::depth(&mut conn).await?;
        if depth == 0 {
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut quiet_since = Instant::now();
    let mut seen = 0;
    while quiet_since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = bench.standin.request_log().len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }

    // 2. Idle single changes.
    let (times, requests) = bench.changes(0..changes).await;
    println!(
        "single changes, idle:            {}  {}",
        percentiles(times),
        requests_summary(&requests)
    );

    // 3. The same while a full reconcile runs.
    let during = worker.clone();
    let reconcile = tokio::spawn(async move { during.run_once(Trigger::Full).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut times = Vec::new();
    let mut n = changes;
    while !reconcile.is_finished() && n < 2 * changes {
        times.push(bench.change(n).await.0);
        n += 1;
    }
    let still_running = !reconcile.is_finished();
    let result = reconcile.await?;
    println!(
        "single changes, during a full reconcile: {}  (reconcile {} when the changes ended: {:?})",
        percentiles(times),
        if still_running {
            "still running"
        } else {
            "finished"
        },
        result.map(|s| s.outcome)
    );

    // 4. With 20 % faults.
    bench.standin.set_fault_rates(FaultRates {
        latency: Duration::from_millis(2),
        rate_429: 0.10,
        rate_500: 0.10,
        retry_after_secs: 1,
        ..FaultRates::default()
    });
    let faulty = (changes / 2).max(1);
    let (times, requests) = bench.changes(n..n + faulty).await;
    println!(
        "single changes, 20% faults:      {}  {}",
        percentiles(times),
        requests_summary(&requests)
    );
    bench.standin.set_fault_rates(FaultRates {
        latency: Duration::from_millis(2),
        ..FaultRates::default()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 5. Bulk: BULK new people over SCIM, then into the mapped group.
    bench.standin.clear_request_log();
    let started = Instant::now();
    let ids: Vec<Uuid> = futures::stream::iter(0..bulk)
        .map(|n| {
            let bench = &bench;
            async move {
                let email = format!("bulk{n}@cost.example");
                let (status, user) = bench
                    .scim(
                        reqwest::Method::POST,
                        "/Users",
                        json!({
                            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                            "userName": format!("bulk{n}"),
                            "name": {"givenName": "Bulk", "familyName": format!("Person{n}")},
                            "emails": [{"value": email, "type": "work", "primary": true}],
                            "active": true,
                        }),
                    )
                    .await;
                assert_eq!(status, 201, "{user}");
                user["id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .expect("id")
            }
        })
        .buffered(8)
        .collect()
        .await;
    for chunk in ids.chunks(200) {
        bench.add_members(bench.developers_scim, chunk).await;
    }
    let scim_done = started.elapsed();
    loop {
        let mut conn = state.store.pool().acquire().await?;
        let (depth, _) = tyk_idsync::store::events::depth(&mut conn).await?;
        if depth == 0 {
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();
    let log = bench.standin.request_log();
    let tyk_span = match (log.first(), log.last()) {
        (Some(a), Some(b)) => b.received_at.duration_since(a.received_at),
        _ => Duration::ZERO,
    };
    let creates = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/users" && r.status == 200)
        .count();
    let listings = log
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/users")
        .count();
    println!(
        "bulk {bulk} new people: {wall:>8.2?} (SCIM done at {scim_done:.1?}; first to last Tyk request {tyk_span:.1?}; {})  {} Tyk requests = {:.3} per person ({creates} creates, {listings} listing pages)  floor requests/rate {:.1?}, wall/floor {:.2}",
        idle_gaps(&log),
        log.len(),
        log.len() as f64 / bulk as f64,
        Duration::from_secs_f64(log.len() as f64 / f64::from(RATE)),
        wall.as_secs_f64() / (log.len() as f64 / f64::from(RATE)),
    );

    // 6. Bulk again, as an IdP pushing in steps: each 200 new people are
    // created, then added to the mapped group, while the sync applies the
    // steps before (the wall time then shows whether the sync keeps up).
    bench.standin.clear_request_log();
    let started = Instant::now();
    for wave in 0..bulk.div_ceil(200) {
        let range = wave * 200..((wave + 1) * 200).min(bulk);
        let ids: Vec<Uuid> = futures::stream::iter(range)
            .map(|n| {
                let bench = &bench;
                async move { bench.create_person(&format!("wave{n}")).await }
            })
            .buffered(8)
            .collect()
            .await;
        bench.add_members(bench.developers_scim, &ids).await;
    }
    let scim_done = started.elapsed();
    loop {
        let mut conn = state.store.pool().acquire().await?;
        let (depth, _) = tyk_idsync::store::events::depth(&mut conn).await?;
        if depth == 0 {
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();
    let log = bench.standin.request_log();
    let listings = log
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/users")
        .count();
    println!(
        "bulk {bulk} new people in steps of 200: {wall:>8.2?} (SCIM done at {scim_done:.1?}; {})  {} Tyk requests = {:.3} per person ({listings} listing pages)  floor requests/rate {:.1?}, wall/floor {:.2}",
        idle_gaps(&log),
        log.len(),
        log.len() as f64 / bulk as f64,
        Duration::from_secs_f64(log.len() as f64 / f64::from(RATE)),
        wall.as_secs_f64() / (log.len() as f64 / f64::from(RATE)),
    );
    println!(
        "peak RSS {:.0} MB (stand-in and seed included)",
        rss_mb("VmHWM:")
    );
    let _ = stop.send(());
    Ok(())
}
