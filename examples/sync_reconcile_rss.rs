//! Peak memory of the service alone during a full reconcile with nothing
//! to do (issue #17): the Tyk stand-in runs in a child process (this same
//! binary, re-run as `standin`), so the service's VmHWM is not the
//! stand-in's 100,000 users.
//!
//! `cargo run --release --example sync_reconcile_rss -- [PEOPLE] [sqlite|postgres]`
//! (defaults 100000 sqlite; PostgreSQL at `BENCH_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432`, in a fresh database).
//!
//! The parent stores PEOPLE people (SCIM source `bench`, all in the group
//! mapped to "API Developers") and records them as managed with the Tyk
//! ids the child seeded; then the peak-RSS mark is reset
//! (`/proc/self/clear_refs`) and one full reconcile runs: page size 10,
//! 2 ms per Tyk request, `sync.requests_per_second = 400`. It prints wall
//! time, requests (counted by the child), steps and the service's RSS.
//!
//! A benchmark, not a test: it prints figures and asserts nothing.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use tyk_idsync::config::Config;
use tyk_idsync::domain::{
    GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
};
use tyk_idsync::mapping::ConfigRule;
use tyk_idsync::standin::{FaultRates, StandIn, StandInOptions, UserFields};
use tyk_idsync::startup::Application;
use tyk_idsync::store::{identities, sync_state};
use tyk_idsync::sync::worker::Trigger;
use tyk_idsync::sync::{ManagedGroup, ManagedUser};
use tyk_idsync::tyk::{PermissionLevel, Permissions, TykConfig};
use uuid::Uuid;

const KEY: &str = "rss-bench-dashboard-key-0123456789";
const RATE: u32 = 400;
type Error = Box<dyn std::error::Error + Send + Sync>;

fn status_mb(field: &str) -> f64 {
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

/// The child: a stand-in holding `people` managed-looking users. Prints
/// `ready <base> <org> <group>`, then `<n> <tyk id>` per user, then
/// `end`; answers `count` on stdin with the requests served since the last
/// `count`; exits when stdin closes.
async fn standin(people: usize) -> Result<(), Error> {
    let standin = StandIn::spawn(StandInOptions::default()).await?;
    let org = standin.seed_org("RSS Org");
    let admin = standin.seed_user(&org.id, "root@rss.example", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let perms = Permissions::new().with("apis", PermissionLevel::Write);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let group = standin.with_directory(|d| {
        let group = d.insert_group(&org.id, "API Developers", perms.clone()).id;
        writeln!(out, "ready {} {} {group}", standin.base_url(), org.id)?;
        for n in 0..people {
            let user = d.insert_user(
                &org.id,
                UserFields {
                    first_name: Some("Given".into()),
                    last_name: Some(format!("Person{n}")),
                    email_address: Some(format!("person{n}@rss.example")),
                    active: Some(true),
                    group_id: Some(group.clone()),
                    user_permissions: Some(perms.clone()),
                    ..UserFields::default()
                },
            );
            writeln!(out, "{n} {}", user.id)?;
        }
        writeln!(out, "end")?;
        Ok::<_, std::io::Error>(group)
    })?;
    out.flush()?;
    drop(out);
    let _ = group;
    standin.set_fault_rates(FaultRates {
        latency: Duration::from_millis(2),
        ..FaultRates::default()
    });
    let answers = tokio::task::spawn_blocking(move || {
        let mut seen = 0;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "count" {
                let log = standin.request_log();
                let writes = log[seen..].iter().filter(|r| r.method != "GET").count();
                println!("{} {writes}", log.len() - seen);
                seen = log.len();
            }
        }
    });
    answers.await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("standin") {
        let people = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
        return standin(people).await;
    }
    let people: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let backend = args.get(2).cloned().unwrap_or("sqlite".into());

    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["standin", &people.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().ok_or("no child stdin")?;
    let mut from_child = std::io::BufReader::new(child.stdout.take().ok_or("no child stdout")?);
    let mut line = String::new();
    from_child.read_line(&mut line)?;
    let ready: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let [_, base, org_id, group_id] = ready.as_slice() else {
        return Err(format!("unexpected {line:?}").into());
    };
    let (base, org_id, group_id) = (base.clone(), org_id.clone(), group_id.clone());

    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.url = database_url(&backend, &dir).await?;
    config.tyk = Some(TykConfig::new(base, KEY));
    config.mapping.default_org_id = Some(org_id.clone());
    config.mapping.rules = vec![ConfigRule {
        org_id: org_id.clone(),
        name: "API Developers".into(),
        priority: 10,
        mappings_sso: vec!["bench:Developers".into()],
        permissions: [("apis".to_string(), "write".to_string())].into(),
        ..ConfigRule::default()
    }];
    config.sync.requests_per_second = RATE;
    config.sync.interval = Duration::from_secs(24 * 3600);
    let app = Application::build(config).await?;
    let state = app.state();
    let worker = state.sync.clone().ok_or("no sync worker")?;

    let seeding = Instant::now();
    let source = SourceName::new("bench");
    let now = Timestamp::now();
    let developers = IdentityGroup {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: None,
        display_name: "Developers".into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.store.begin_write().await?;
    identities::insert_group(&mut tx, &developers).await?;
    let managed = ManagedGroup {
        org_id: org_id.clone(),
        tyk_group_id: group_id,
        name: "API Developers".into(),
    };
    sync_state::record_group(&mut tx, &managed, now).await?;
    loop {
        line.clear();
        from_child.read_line(&mut line)?;
        let mut fields = line.split_whitespace();
        let (Some(n), Some(tyk_id)) = (fields.next(), fields.next()) else {
            break;
        };
        let n: usize = n.parse()?;
        let email = format!("person{n}@rss.example");
        let user = IdentityUser {
            id: Uuid::new_v4(),
            source: source.clone(),
            external_id: Some(format!("ext-{email}")),
            user_name: format!("person{n}"),
            email: Some(email.clone()),
            email_problem: None,
            given_name: Some("Given".into()),
            family_name: Some(format!("Person{n}")),
            display_name: None,
            active: true,
            attributes: json!({}),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        identities::insert_user(&mut tx, &user, std::slice::from_ref(&email)).await?;
        let member = GroupMember {
            id: user.id,
            kind: MemberKind::User,
        };
        identities::add_members(&mut tx, developers.id, &[member]).await?;
        let managed = ManagedUser {
            org_id: org_id.clone(),
            tyk_user_id: tyk_id.to_string(),
            email,
            managed_since: now,
            adopted: false,
            deactivated_at: None,
            access_key_reset_at: None,
        };
        sync_state::record_user(&mut tx, &managed).await?;
    }
    tx.commit().await?;
    println!(
        "{people} people stored and in Tyk ({backend}), seeded in {:.1?}; stand-in in a child process, page size 10, +2 ms per Tyk request, requests_per_second {RATE}",
        seeding.elapsed()
    );
    let mut ask = |to_child: &mut std::process::ChildStdin| -> Result<(usize, usize), Error> {
        writeln!(to_child, "count")?;
        to_child.flush()?;
        line.clear();
        from_child.read_line(&mut line)?;
        let mut fields = line.split_whitespace();
        let requests = fields.next().ok_or("no count")?.parse()?;
        let writes = fields.next().ok_or("no count")?.parse()?;
        Ok((requests, writes))
    };
    ask(&mut to_child)?;

    // Forget the seeding's peak: from here, VmHWM is the reconcile's.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_mb("VmRSS:");
    let started = Instant::now();
    let full = worker.run_once(Trigger::Full).await?;
    let wall = started.elapsed();
    let (requests, writes) = ask(&mut to_child)?;
    println!(
        "full reconcile, nothing to do: {wall:.2?}  {requests} requests ({writes} writes, {} steps planned)  service RSS {before:.0} → {:.0} MB, peak {:.0} MB{}",
        full.summary.by_kind.values().sum::<usize>(),
        status_mb("VmRSS:"),
        status_mb("VmHWM:"),
        if reset {
            ""
        } else {
            " (peak mark not reset: includes the seeding)"
        }
    );
    drop(to_child);
    let _ = child.wait();
    Ok(())
}

async fn database_url(backend: &str, dir: &tempfile::TempDir) -> Result<String, Error> {
    if backend != "postgres" {
        return Ok(format!("sqlite://{}/rss.db", dir.path().display()));
    }
    use sqlx::Connection;
    let server =
        std::env::var("BENCH_POSTGRES").unwrap_or("postgres://postgres@127.0.0.1:5432".into());
    let name = format!("sync_rss_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    Ok(format!("{server}/{name}"))
}
