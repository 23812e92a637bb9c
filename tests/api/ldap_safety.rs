//! What an LDAP poll must never lose or wrongly remove, against a real
//! slapd (memberof overlay) into a real store (SQLite and PostgreSQL):
//! membership changes seen by incremental `member_of` polls, a held full
//! poll's removals applied by `--force`, an empty read held, and a failed
//! full poll followed by a full one (also across processes).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tyk_idsync::domain::{EventKind, SourceName, Timestamp};
use tyk_idsync::ldap::config::{LdapSourceConfig, MembershipMode};
use tyk_idsync::ldap::poller::{PollKind, PollOptions, run_poll};
use tyk_idsync::store::{Store, StoreOptions, events, identities};

use crate::both_backends;
use crate::ldap_groups::{ldap_config, memberships, person, set};
use crate::support::app::{ADMIN_TOKEN, TestApp, spawn_app_with, test_config};
use crate::support::slapd::{SUFFIX, Slapd};
use crate::support::{Db, fresh_database_url, fresh_store};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

fn people(uids: &[&str]) -> String {
    uids.iter().map(|u| person(u, "")).collect()
}

fn dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

async fn logins(store: &Store, source: &SourceName) -> Vec<(String, bool)> {
    let mut conn = store.pool().acquire().await.expect("conn");
    let mut users: Vec<(String, bool)> = identities::list_users(&mut conn, source)
        .await
        .expect("users")
        .into_iter()
        .map(|u| (u.user_name, u.active))
        .collect();
    users.sort();
    users
}

async fn pending_events(store: &Store) -> Vec<(EventKind, Option<String>)> {
    let mut conn = store.pool().acquire().await.expect("conn");
    events::pending(&mut conn, 10_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.kind, e.email))
        .collect()
}

// ------------------------------------------- 1. incremental member_of polls

/// Adding someone to a group or removing them changes the group and the
/// user's `memberOf`, not the user's `modifyTimestamp`: an incremental
/// poll reads no changed user, yet must apply every membership change.
async fn incremental_member_of_polls_apply_membership_changes(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let slapd = Slapd::start();
    slapd.add(&people(&["u0", "u1", "u2", "u3"]));
    slapd.add(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\n\
         member: {}\nmember: {}\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\n\
         member: {}\nmember: {}\n",
        dn("u0"),
        dn("u1"),
        dn("u2"),
        dn("u3")
    ));
    let cfg = LdapSourceConfig {
        membership: MembershipMode::MemberOf,
        ..ldap_config(&slapd)
    };
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");
    let poll = |kind, since, cfg: LdapSourceConfig| {
        let (store, source, pw) = (store.clone(), source.clone(), pw.clone());
        async move {
            let options = PollOptions {
                kind,
                force: false,
                since,
            };
            run_poll(&store, &source, &cfg, &pw, options)
                .await
                .expect("poll")
        }
    };
    poll(PollKind::Full, None, cfg.clone()).await;
    assert_eq!(
        memberships(&store, &source).await,
        [
            ("eng".to_string(), set(&["u0", "u1"])),
            ("ops".to_string(), set(&["u2", "u3"])),
        ]
        .into()
    );
    // slapd's modifyTimestamp has one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = Some(Timestamp::now());
    let before = pending_events(&store).await.len();
    slapd.modify(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: {}\n-\n\
         add: member\nmember: {}\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: {}\n",
        dn("u0"),
        dn("u2"),
        dn("u3")
    ));
    let report = poll(PollKind::Incremental, since, cfg.clone()).await;
    assert_eq!(report.users_read, 0, "no user entry changed: {report:?}");
    assert_eq!(
        (report.groups.members_added, report.groups.members_removed),
        (1, 2),
        "{report:?}"
    );
    assert_eq!(
        memberships(&store, &source).await,
        [
            ("eng".to_string(), set(&["u1", "u2"])),
            ("ops".to_string(), set(&["u2"])),
        ]
        .into()
    );
    // The removals name the people, so the sync worker looks at them.
    let mut new_events = pending_events(&store).await.split_off(before);
    new_events.sort_by(|a, b| a.1.cmp(&b.1));
    let changed = |uid: &str| {
        (
            EventKind::MembershipChanged,
            Some(format!("{uid}@example.org")),
        )
    };
    assert_eq!(
        new_events,
        vec![changed("u0"), changed("u2"), changed("u3")]
    );

    // Nothing changed: nothing written.
    let report = poll(PollKind::Incremental, since, cfg.clone()).await;
    assert_eq!(report.groups.changes(), 0, "{report:?}");
    assert!(!report.wrote());

    // That read of every user's memberOf finding nobody (a filter typo)
    // holds the incremental poll instead of emptying every group.
    let typo = LdapSourceConfig {
        user_filter: "(objectClass=inetOrgPersn)".into(),
        ..cfg.clone()
    };
    let report = poll(PollKind::Incremental, since, typo).await;
    let held = report.held.expect("held");
    assert!(
        held.reason
            .starts_with("read 0 users where the source has 4: check user_filter"),
        "{held:?}"
    );
    assert_eq!(
        memberships(&store, &source).await["eng"],
        set(&["u1", "u2"])
    );
}
both_backends!(
    ldap_member_of_incremental,
    incremental_member_of_polls_apply_membership_changes
);

/// In `group_attributes` mode an incremental poll resolves member DNs and
/// `memberUid`s of users it did not read through the stored users.
async fn incremental_group_polls_resolve_users_they_did_not_read(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let slapd = Slapd::start();
    slapd.add(&people(&["g0", "g1"]));
    slapd.add(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\nmember: {}\n\n\
         dn: cn=posix,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: posix\n\
         gidNumber: 5000\nmemberUid: g1\n",
        dn("g0")
    ));
    let cfg = ldap_config(&slapd);
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");
    let options = |kind, since| PollOptions {
        kind,
        force: false,
        since,
    };
    run_poll(&store, &source, &cfg, &pw, options(PollKind::Full, None))
        .await
        .expect("full");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = Some(Timestamp::now());
    slapd.modify(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: {}\n",
        dn("g1")
    ));
    let report = run_poll(
        &store,
        &source,
        &cfg,
        &pw,
        options(PollKind::Incremental, since),
    )
    .await
    .expect("incremental");
    assert_eq!(report.users_read, 0, "{report:?}");
    assert_eq!(
        (report.groups.members_added, report.groups.members_removed),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(
        memberships(&store, &source).await,
        [
            ("eng".to_string(), set(&["g0", "g1"])),
            ("posix".to_string(), set(&["g1"])),
        ]
        .into()
    );
}
both_backends!(
    ldap_incremental_group_attributes,
    incremental_group_polls_resolve_users_they_did_not_read
);

// ------------------------------------------------ the binary and the API

/// A config file for the `tyk-idsync` binary: one source `corp`.
struct CliSetup {
    dir: tempfile::TempDir,
    db_url: String,
    ldap_url: String,
    _db_guard: Option<tempfile::TempDir>,
}

impl CliSetup {
    async fn new(db: Db, slapd: &Slapd) -> CliSetup {
        let (db_url, guard) = fresh_database_url(db).await;
        let setup = CliSetup {
            dir: tempfile::tempdir().expect("dir"),
            db_url,
            ldap_url: slapd.url(),
            _db_guard: guard,
        };
        setup.configure("");
        setup
    }

    /// Rewrites the config; `extra` adds keys to `[ldap.sources.corp]`.
    fn configure(&self, extra: &str) {
        std::fs::write(
            self.dir.path().join("c.toml"),
            format!(
                "[database]\nurl = \"{}\"\n\n[ldap.sources.corp]\nurl = \"{}\"\n\
                 bind_dn = \"cn=admin,{SUFFIX}\"\nuser_base = \"ou=people,{SUFFIX}\"\n\
                 group_base = \"ou=groups,{SUFFIX}\"\n{extra}\n",
                self.db_url, self.ldap_url
            ),
        )
        .expect("config");
    }

    fn run_with_password(&self, password: &str, args: &[&str]) -> Output {
        run_in(self.dir.path(), password, args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_password("admin", args)
    }

    /// `ldap poll` with `args`: (exit code, report, stderr).
    fn poll(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let mut all = vec!["ldap", "poll", "--source", "corp"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn state(&self) -> Value {
        let out = self.run(&["ldap", "status"]);
        assert!(out.status.success(), "{out:?}");
        let state: Value = serde_json::from_slice(&out.stdout).expect("status json");
        state["corp"].clone()
    }

    async fn store(&self) -> Store {
        Store::connect(&StoreOptions::new(self.db_url.clone()))
            .await
            .expect("store")
    }
}

fn run_in(dir: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--config", "c.toml"])
        .args(args)
        .current_dir(dir)
        .env_remove("TYK_IDSYNC_CONFIG")
        .env("TYK_IDSYNC__LDAP__SOURCES__CORP__BIND_PASSWORD", password)
        .output()
        .expect("run binary")
}

// ------------------------------------------------------- 3. an empty read

/// A user-filter typo reads 0 users from a source that has 6 (below
/// `max_removal_min`): held with a reason naming it, nobody removed; a
/// group-filter typo likewise; `--force` applies it. Each command is its
/// own process, as an operator runs them.
async fn an_empty_read_is_held(db: Db) {
    let slapd = Slapd::start();
    let uids = ["e0", "e1", "e2", "e3", "e4", "e5"];
    slapd.add(&people(&uids));
    slapd.add(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\nmember: {}\n",
        dn("e0")
    ));
    let cli = CliSetup::new(db, &slapd).await;
    let (code, report, _) = cli.poll(&[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (report["kind"].as_str(), report["changes"].as_i64()),
        (Some("full"), Some(6))
    );
    let store = cli.store().await;
    let source = SourceName::new("corp");
    let everyone: Vec<(String, bool)> = uids.iter().map(|u| (u.to_string(), true)).collect();
    assert_eq!(logins(&store, &source).await, everyone);
    let events_before = pending_events(&store).await.len();

    // No group read where the source has one (an incremental poll: every
    // poll reads every group).
    cli.configure("group_filter = \"(objectClass=groupOfNamez)\"");
    let (code, report, stderr) = cli.poll(&[]);
    assert_eq!(code, Some(2), "{report} {stderr}");
    assert_eq!(report["kind"], "incremental");
    let reason = report["held"]["reason"].as_str().unwrap_or_default();
    assert_eq!(
        reason,
        "read 0 groups where the source has 1: check group_filter/group_base; not applied"
    );
    assert!(
        stderr.contains(reason) && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(memberships(&store, &source).await["eng"], set(&["e0"]));

    // No user read where the source has 6, whatever the thresholds say.
    cli.configure(
        "user_filter = \"(objectClass=inetOrgPersn)\"\nmax_removal_percent = 100\n\
         max_removal_min = 10",
    );
    let (code, report, stderr) = cli.poll(&["--full"]);
    assert_eq!(code, Some(2), "{report} {stderr}");
    assert_eq!(
        report["held"]["reason"],
        "read 0 users where the source has 6: check user_filter/user_base; not applied"
    );
    assert_eq!(report["held"]["removals"], 6);
    let state = cli.state();
    assert_eq!(state["held"]["kind"], "full", "{state}");
    assert_eq!(logins(&store, &source).await, everyone, "nobody removed");
    assert_eq!(memberships(&store, &source).await["eng"], set(&["e0"]));
    assert_eq!(
        pending_events(&store).await.len(),
        events_before,
        "no event"
    );

    // A scheduled-style incremental poll (it reads only changed users)
    // neither applies nor clears the held full poll.
    let (code, report, _) = cli.poll(&[]);
    assert_eq!(
        (code, report["kind"].as_str()),
        (Some(0), Some("incremental")),
        "{report}"
    );
    assert_eq!(cli.state()["held"]["kind"], "full");
    assert_eq!(logins(&store, &source).await, everyone);

    // `--force` (without `--full`, as the hint says) applies the held
    // full poll: everyone is deleted.
    let (code, report, stderr) = cli.poll(&["--force"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(
        (report["kind"].as_str(), report["changes"].as_i64()),
        (Some("full"), Some(6))
    );
    assert_eq!(cli.state()["held"], Value::Null);
    assert_eq!(logins(&store, &source).await, vec![]);
    store.close().await;
}
both_backends!(ldap_empty_read_held, an_empty_read_is_held);

// ------------------------------------------------- 4. a failed full poll

/// A failed full poll (a bind failure, slapd down) makes the next poll
/// full, also in the next process.
async fn a_failed_full_poll_makes_the_next_one_full(db: Db) {
    let mut slapd = Slapd::start();
    slapd.add(&people(&["f0", "f1", "f2"]));
    let cli = CliSetup::new(db, &slapd).await;
    assert_eq!(cli.poll(&[]).1["kind"], "full");
    assert_eq!(cli.poll(&[]).1["kind"], "incremental");
    assert_eq!(cli.state()["fullPending"], false);

    // A bind failure in a requested full poll.
    let out = cli.run_with_password("wrong", &["ldap", "poll", "--source", "corp", "--full"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let state = cli.state();
    assert_eq!(state["fullPending"], true, "{state}");
    assert!(state["lastError"].is_string(), "{state}");
    // Deleted meanwhile: the next poll, full, finds it.
    slapd.delete(&dn("f2"));
    let (code, report, _) = cli.poll(&[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (report["kind"].as_str(), report["changes"].as_i64()),
        (Some("full"), Some(1))
    );
    assert_eq!(cli.state()["fullPending"], false);
    assert_eq!(cli.poll(&[]).1["kind"], "incremental");

    // slapd down during a requested full poll: the next poll is full (and
    // fails too), and so is the one after.
    slapd.kill();
    let (code, _, stderr) = cli.poll(&["--full"]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, report, _) = cli.poll(&[]);
    assert_eq!((code, report), (Some(1), Value::Null));
    assert_eq!(cli.state()["fullPending"], true);
    slapd.restart();
    let (code, report, _) = cli.poll(&[]);
    assert_eq!(
        (code, report["kind"].as_str()),
        (Some(0), Some("full")),
        "{report}"
    );
    assert_eq!(cli.state()["fullPending"], false);
}
both_backends!(
    ldap_failed_full_poll,
    a_failed_full_poll_makes_the_next_one_full
);

// --------------------------------------- 2. forcing a held poll over HTTP

async fn admin_poll(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/admin/v1/ldap/sources/corp/poll"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("poll request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn source_state(app: &TestApp) -> Value {
    let sources: Value = app
        .admin_get("/admin/v1/ldap/sources")
        .await
        .json()
        .await
        .expect("json");
    sources["sources"][0]["state"].clone()
}

/// `POST …/poll {"force": true}` after a held full poll runs a full poll
/// and applies its removals; a plain poll in between leaves it held.
async fn forcing_a_held_full_poll_over_the_admin_api(db: Db) {
    let slapd = Slapd::start();
    let uids: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    let uid_refs: Vec<&str> = uids.iter().map(String::as_str).collect();
    slapd.add(&people(&uid_refs));
    let (mut config, guard) = test_config(db).await;
    let db_url = config.database.url.clone();
    let source_cfg = LdapSourceConfig {
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        max_removal_percent: 20,
        max_removal_min: 0,
        ..ldap_config(&slapd)
    };
    config.ldap.sources.insert("corp".into(), source_cfg);
    let app = spawn_app_with(config, guard).await;
    // The first poll runs at start.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !source_state(&app).await["lastSuccessAt"].is_i64() {
        assert!(std::time::Instant::now() < deadline, "no first poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = Store::connect(&StoreOptions::new(db_url))
        .await
        .expect("store");
    let source = SourceName::new("corp");
    assert_eq!(logins(&store, &source).await.len(), 10);

    for uid in &uids[..5] {
        slapd.delete(&dn(uid));
    }
    let (status, body) = admin_poll(&app, json!({"full": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["report"]["held"]["reason"],
        "would remove 5 of 10 users (more than 20% and more than 0); not applied",
        "{body}"
    );
    assert_eq!(source_state(&app).await["held"]["kind"], "full");

    // A plain poll is incremental: it applies nothing of the held one and
    // keeps it held.
    let (status, body) = admin_poll(&app, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["kind"], "incremental", "{body}");
    assert_eq!(source_state(&app).await["held"]["removals"], 5);
    assert_eq!(logins(&store, &source).await.len(), 10);

    // Forced without "full": a full poll, applied, the hold cleared.
    let (status, body) = admin_poll(&app, json!({"force": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["report"]["kind"].as_str(),
            body["report"]["changes"].as_i64()
        ),
        (Some("full"), Some(5)),
        "{body}"
    );
    assert!(body["report"]["held"].is_null(), "{body}");
    assert!(source_state(&app).await["held"].is_null());
    let left: Vec<String> = logins(&store, &source)
        .await
        .into_iter()
        .map(|(login, _)| login)
        .collect();
    assert_eq!(left, uids[5..].to_vec());
    store.close().await;
}
both_backends!(
    ldap_forced_held_poll_api,
    forcing_a_held_full_poll_over_the_admin_api
);
