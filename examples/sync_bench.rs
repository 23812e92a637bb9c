//! Sync benchmark through real HTTP: N people (default 10 000) in one
//! mapped group, stored in SQLite, synced into the in-process Tyk stand-in
//! (Tyk's page size of 10). Reports wall time, Tyk calls per changed user
//! and peak memory for: the first full sync (everyone created), a second
//! run with nothing changed, and a run after 1% of the people changed
//! their names.
//!
//! `cargo run --release --example sync_bench -- [USERS]`

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;
use tyk_idsync::config::Config;
use tyk_idsync::domain::{
    GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
};
use tyk_idsync::mapping::ConfigRule;
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::startup::Application;
use tyk_idsync::store::{Store, identities};
use tyk_idsync::sync::worker::Trigger;
use tyk_idsync::tyk::{Permissions, TykConfig};
use uuid::Uuid;

const KEY: &str = "bench-dashboard-key-0123456789";

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn person(source: &SourceName, i: usize, given: &str, now: Timestamp) -> IdentityUser {
    IdentityUser {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: Some(format!("ext-{i}")),
        user_name: format!("user{i}"),
        email: Some(format!("user{i}@bench.example")),
        email_problem: None,
        given_name: Some(given.into()),
        family_name: Some(format!("Person{i}")),
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

async fn seed(store: &Store, n: usize) -> Result<Vec<IdentityUser>, Box<dyn std::error::Error>> {
    let source = SourceName::new("bench");
    let now = Timestamp::now();
    let mut tx = store.begin_write().await?;
    let group = IdentityGroup {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: None,
        display_name: "Everyone".into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    identities::insert_group(&mut tx, &group).await?;
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let user = person(&source, i, "Given", now);
        identities::insert_user(&mut tx, &user, &[user.email.clone().unwrap_or_default()]).await?;
        let member = GroupMember {
            id: user.id,
            kind: MemberKind::User,
        };
        identities::add_members(&mut tx, group.id, &[member]).await?;
        users.push(user);
    }
    tx.commit().await?;
    Ok(users)
}

/// Requests in the stand-in's log since it was last cleared, by kind.
fn calls(standin: &StandIn) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in standin.request_log() {
        let kind = if r.method == "GET" || r.path.ends_with("/search") {
            "reads"
        } else {
            "writes"
        };
        *out.entry(kind.to_string()).or_default() += 1;
    }
    standin.clear_request_log();
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let standin = StandIn::spawn(StandInOptions::default()).await?;
    let org = standin.seed_org("Bench Org");
    let admin = standin.seed_user(&org.id, "root@bench.example", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.url = format!("sqlite://{}/bench.db", dir.path().display());
    config.tyk = Some(TykConfig::new(standin.base_url(), KEY));
    config.mapping.rules = vec![ConfigRule {
        org_id: org.id.clone(),
        name: "Bench Users".into(),
        priority: 10,
        mappings_sso: vec!["bench:Everyone".into()],
        permissions: [("apis".to_string(), "read".to_string())].into(),
        ..ConfigRule::default()
    }];
    config.sync.requests_per_second = 0;
    let app = Application::build(config).await?;
    let state = app.state();
    let worker = state.sync.clone().ok_or("no sync worker")?;
    let users = seed(&state.store, n).await?;
    standin.clear_request_log();
    println!("{n} people, stand-in page size 10, SQLite, release build");

    let start = Instant::now();
    let first = worker.run_once(Trigger::Full).await?;
    let first_time = start.elapsed();
    let first_calls = calls(&standin);
    println!(
        "first sync:  {:>8.2?}  applied {} failed {}  Tyk {:?}  writes per created user {:.3}",
        first_time,
        first.applied,
        first.failed,
        first_calls,
        first_calls.get("writes").copied().unwrap_or(0) as f64 / n as f64
    );

    let start = Instant::now();
    let second = worker.run_once(Trigger::Full).await?;
    println!(
        "no change:   {:>8.2?}  applied {}  Tyk {:?}",
        start.elapsed(),
        second.applied,
        calls(&standin)
    );

    let changed = (n / 100).max(1);
    let mut tx = state.store.begin_write().await?;
    for user in users.iter().take(changed) {
        let renamed = IdentityUser {
            given_name: Some("Renamed".into()),
            version: user.version + 1,
            ..user.clone()
        };
        identities::update_user(
            &mut tx,
            &renamed,
            &[user.email.clone().unwrap_or_default()],
            None,
        )
        .await?;
    }
    tx.commit().await?;
    let start = Instant::now();
    let third = worker.run_once(Trigger::Full).await?;
    let third_calls = calls(&standin);
    println!(
        "{changed} renamed: {:>8.2?}  applied {}  Tyk {:?}  writes per changed user {:.3}",
        start.elapsed(),
        third.applied,
        third_calls,
        third_calls.get("writes").copied().unwrap_or(0) as f64 / changed as f64
    );
    println!("peak RSS {:.0} MB", peak_rss_mb());
    Ok(())
}
