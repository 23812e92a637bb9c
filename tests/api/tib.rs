//! TIB profiles generated from the mapping table (issue #21): rendering,
//! pushing to the TIB stand-in over real HTTP and to the profiles file,
//! convergence, idempotence, corrections of hand edits, the CLI, the admin
//! API and status, and the stand-in against TIB's published API.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::standin::tib::{TibFault, TibStandIn};
use tyk_idsync::store::sync_audit::{self, AuditFilter};
use tyk_idsync::tib::Change;

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::{Stack, TYK_API_KEY, UNTIL, spawn_stack, spawn_stack_configured};
use crate::support::tib::{PROFILE_ID, TEMPLATE_SECRET, TIB_SECRET, TibSetup, service, template};

/// Two rules, Ada in both IdP groups, one reconcile: the Tyk groups exist.
async fn provision(stack: &Stack) {
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack
        .add_rule("Readers", 0, &["okta:Everyone", "okta:Sales*"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    stack.create_group("Everyone", &[&ada]).await;
    // Let the worker's own runs finish first: a full run started beside
    // them could create a group a second time (Tyk keeps names unique
    // nowhere), which is the sync's business, not this test's.
    stack.until_outbox_empty(UNTIL).await;
    // An event run that meets a running full reconcile leaves group
    // creations to it (sync's design), so ask for one rather than wait on
    // the next scheduled run.
    stack.reconcile().await;
    stack
        .until_within(
            "the groups exist",
            std::time::Duration::from_secs(30),
            |s| s.tyk_group("API Developers").is_some() && s.tyk_group("Readers").is_some(),
        )
        .await;
    stack.reconcile().await;
    let names: Vec<String> = stack.standin.groups().into_iter().map(|g| g.name).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        names.len(),
        unique.len(),
        "one Tyk group per name: {names:?}"
    );
}

fn group_id(stack: &Stack, name: &str) -> String {
    stack.tyk_group(name).expect("Tyk group").id
}

async fn audit(stack: &Stack, step_kind: &str) -> Vec<sync_audit::AuditEntry> {
    let mut conn = stack.app.state.store.pool().acquire().await.expect("conn");
    sync_audit::list(
        &mut conn,
        &AuditFilter {
            step_kind: Some(step_kind.into()),
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await
    .expect("audit")
}

/// Tyk group ids replaced by `<NAME>` so snapshots are stable.
fn with_names(stack: &Stack, value: &Value) -> Value {
    let mut text = value.to_string();
    for group in stack.standin.groups() {
        text = text.replace(&group.id, &format!("<{}>", group.name));
    }
    serde_json::from_str(&text).expect("json")
}

#[tokio::test]
async fn rendered_profile_snapshot() {
    let stack = spawn_stack(Db::Sqlite).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let tib = service(&stack, setup.config(&stack.org_id));
    let rendered = tib.render().await.expect("render");
    let profile = rendered[0].1.as_ref().expect("rendered");
    let mut shown = serde_json::to_value(profile).expect("json");
    shown["org_id"] = json!("<org>");
    shown["profile"]["OrgID"] = json!("<org>");
    insta::assert_json_snapshot!(with_names(&stack, &shown));
    assert!(
        setup.tib.request_log().is_empty(),
        "rendering talks to no TIB"
    );
}

async fn push_converges_and_is_idempotent(db: Db) {
    let stack = spawn_stack(db).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let tib = service(&stack, setup.config(&stack.org_id));

    let report = tib.push("test").await.expect("push");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.profiles[0].api, Some(Change::Created));
    assert_eq!(report.profiles[0].file, Some(Change::Created));
    let held = setup
        .tib
        .profile(PROFILE_ID)
        .expect("TIB holds the profile");
    let developers = group_id(&stack, "API Developers");
    let readers = group_id(&stack, "Readers");
    assert_eq!(
        held["UserGroupMapping"],
        json!({"Developers": developers, "Everyone": readers})
    );
    assert_eq!(held["DefaultUserGroupID"], readers, "least privileged");
    assert_eq!(held["SSOOnlyForRegisteredUsers"], true);
    assert_eq!(held["ActionType"], "GenerateOrLoginUserProfile");
    assert_eq!(held["OrgID"], stack.org_id);
    let methods: Vec<String> = setup
        .tib
        .request_log()
        .iter()
        .map(|r| format!("{} {}", r.method, r.status))
        .collect();
    assert_eq!(
        methods,
        ["GET 404", "POST 201", "GET 200"],
        "GET, POST on 404, read back"
    );
    let file = setup.file();
    assert_eq!(file.as_array().map(Vec::len), Some(1));
    assert_eq!(file[0]["UserGroupMapping"], held["UserGroupMapping"]);
    assert_eq!(audit(&stack, "tib_api_create").await.len(), 1);
    assert_eq!(audit(&stack, "tib_file_create").await.len(), 1);

    // Second push: read only, no write anywhere.
    setup.tib.clear_request_log();
    let modified = std::fs::metadata(&setup.profiles_file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let again = tib.push("test").await.expect("push again");
    assert!(again.ok);
    assert_eq!(again.writes, 0);
    assert_eq!(again.profiles[0].api, Some(Change::Unchanged));
    assert_eq!(again.profiles[0].file, Some(Change::Unchanged));
    assert!(setup.tib.writes().is_empty(), "{:?}", setup.tib.writes());
    assert_eq!(
        std::fs::metadata(&setup.profiles_file)
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified
    );
    // And the task's tick with nothing changed talks to TIB not at all.
    setup.tib.clear_request_log();
    assert_eq!(tib.run_once().await.expect("tick"), None);
    assert!(setup.tib.request_log().is_empty());
}
both_backends!(
    push_converges_and_is_idempotent_,
    push_converges_and_is_idempotent
);

async fn a_group_recreated_in_tyk_updates_the_profile(db: Db) {
    let stack = spawn_stack(db).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let tib = service(&stack, setup.config(&stack.org_id));
    assert!(tib.run_once().await.expect("first").is_some_and(|r| r.ok));
    let old = group_id(&stack, "API Developers");

    // Someone deletes the group in the Dashboard; the sync recreates it.
    let dashboard = tyk_idsync::tyk::TykClient::new(&tyk_idsync::tyk::TykConfig::new(
        stack.standin.base_url(),
        TYK_API_KEY,
    ))
    .expect("Tyk client");
    dashboard.delete_group(&old).await.expect("delete group");
    stack.reconcile().await;
    let new = group_id(&stack, "API Developers");
    assert_ne!(old, new);

    let report = tib.run_once().await.expect("tick").expect("re-rendered");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.profiles[0].api, Some(Change::Updated));
    assert!(!report.profiles[0].corrected, "our rendering changed");
    let held = setup.tib.profile(PROFILE_ID).expect("profile");
    assert_eq!(held["UserGroupMapping"]["Developers"], new);
    assert_eq!(setup.file()[0]["UserGroupMapping"]["Developers"], new);
    let updates = audit(&stack, "tib_api_update").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0].entry.before.as_ref().expect("before")["UserGroupMapping"]["Developers"],
        old
    );
    assert!(
        updates[0]
            .entry
            .message
            .as_deref()
            .is_some_and(|m| m.contains("UserGroupMapping"))
    );
}
both_backends!(
    a_group_recreated_in_tyk_updates_the_profile_,
    a_group_recreated_in_tyk_updates_the_profile
);

async fn a_hand_edited_profile_is_corrected_and_audited(db: Db) {
    let stack = spawn_stack(db).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let tib = service(&stack, setup.config(&stack.org_id));
    assert!(tib.push("test").await.expect("push").ok);
    let rendered = setup.tib.profile(PROFILE_ID).expect("profile");

    // By hand, in TIB and in the file: everyone into the developers group,
    // registered-only off.
    let mut edited = rendered.clone();
    edited["DefaultUserGroupID"] = json!(group_id(&stack, "API Developers"));
    edited["SSOOnlyForRegisteredUsers"] = json!(false);
    setup.tib.put_profile(edited.clone());
    std::fs::write(
        &setup.profiles_file,
        serde_json::to_string(&json!([edited])).expect("json"),
    )
    .expect("edit file");

    let report = tib.push("tib").await.expect("push");
    assert!(report.ok, "{report:?}");
    assert!(report.profiles[0].corrected);
    assert_eq!(report.profiles[0].api, Some(Change::Updated));
    assert_eq!(report.profiles[0].file, Some(Change::Updated));
    assert_eq!(setup.tib.profile(PROFILE_ID), Some(rendered.clone()));
    assert_eq!(setup.file()[0]["SSOOnlyForRegisteredUsers"], true);
    let backup: Value = serde_json::from_slice(
        &std::fs::read(tyk_idsync::tib::push::backup_path(&setup.profiles_file)).expect("bak"),
    )
    .expect("bak json");
    assert_eq!(
        backup[0]["SSOOnlyForRegisteredUsers"], false,
        "previous file kept"
    );

    for kind in ["tib_api_correct", "tib_file_correct"] {
        let entries = audit(&stack, kind).await;
        assert_eq!(entries.len(), 1, "{kind}");
        let entry = &entries[0].entry;
        assert_eq!(entry.tyk_id.as_deref(), Some(PROFILE_ID));
        assert_eq!(entry.org_id, stack.org_id);
        assert!(
            entry
                .message
                .as_deref()
                .is_some_and(|m| m.contains("changed outside tyk-idsync")
                    && m.contains("SSOOnlyForRegisteredUsers")),
            "{:?}",
            entry.message
        );
        assert_eq!(
            entry.before.as_ref().expect("before")["SSOOnlyForRegisteredUsers"],
            false
        );
        let text = serde_json::to_string(entry).expect("json");
        assert!(
            !text.contains(TEMPLATE_SECRET),
            "secrets never reach the audit log"
        );
    }

    // Deleted by hand: recreated, and audited as a correction.
    setup.tib.remove_profile(PROFILE_ID);
    let report = tib.push("tib").await.expect("push");
    assert_eq!(report.profiles[0].api, Some(Change::Created));
    assert!(report.profiles[0].corrected);
    assert_eq!(setup.tib.profile(PROFILE_ID), Some(rendered));
    let corrections = audit(&stack, "tib_api_correct").await;
    assert_eq!(corrections.len(), 2);
    assert!(
        corrections[0]
            .entry
            .message
            .as_deref()
            .is_some_and(|m| m.contains("deleted outside tyk-idsync")),
        "newest first: {:?}",
        corrections[0].entry.message
    );
}
both_backends!(
    a_hand_edited_profile_is_corrected_and_audited_,
    a_hand_edited_profile_is_corrected_and_audited
);

#[tokio::test]
async fn profiles_not_in_config_are_never_touched() {
    let stack = spawn_stack(Db::Sqlite).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let theirs = json!({"ID": "github-portal", "OrgID": "other", "Type": "redirect",
        "ProviderName": "SocialProvider", "ActionType": "GenerateOrLoginDeveloperProfile"});
    setup.tib.put_profile(theirs.clone());
    let held_before = setup.tib.profile("github-portal");
    let file_entry = json!({"ID": "github-portal", "Custom": "kept verbatim", "Type": "redirect"});
    std::fs::write(
        &setup.profiles_file,
        serde_json::to_string_pretty(&json!([file_entry])).expect("json"),
    )
    .expect("seed file");
    let tib = service(&stack, setup.config(&stack.org_id));
    assert!(tib.push("test").await.expect("push").ok);
    assert!(
        setup
            .tib
            .request_log()
            .iter()
            .all(|r| r.path == format!("/api/profiles/{PROFILE_ID}")),
        "{:?}",
        setup.tib.request_log()
    );
    assert_eq!(setup.tib.profile("github-portal"), held_before);
    let file = setup.file();
    assert_eq!(
        file[0], file_entry,
        "other profiles keep their place and content"
    );
    assert_eq!(file[1]["ID"], PROFILE_ID);
}

#[tokio::test]
async fn transient_errors_are_retried_and_a_write_tib_did_not_keep_is_an_error() {
    let stack = spawn_stack(Db::Sqlite).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let mut config = setup.config(&stack.org_id);
    config.profiles_file = None;
    let tib = service(&stack, config);

    setup.tib.inject(TibFault::Status(503));
    let report = tib.push("test").await.expect("push");
    assert!(report.ok, "a 503 is retried: {report:?}");
    let statuses: Vec<u16> = setup.tib.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 404, 201, 200]);

    // TIB says 200 to the PUT but keeps nothing, three times: the read
    // back shows it, the push fails and says why.
    let mut edited = setup.tib.profile(PROFILE_ID).expect("profile");
    edited["DefaultUserGroupID"] = json!("");
    setup.tib.put_profile(edited);
    for _ in 0..3 {
        setup.tib.inject(TibFault::ForgetWrite);
    }
    let failed = tib.push("test").await.expect("push");
    assert!(!failed.ok);
    let error = failed.profiles[0].error.as_deref().unwrap_or("");
    assert!(error.contains("does not hold the profile"), "{error}");
    assert_eq!(
        setup.tib.profile(PROFILE_ID).expect("p")["DefaultUserGroupID"],
        ""
    );

    // Next time it works and the hand edit is corrected.
    assert!(tib.push("test").await.expect("push").ok);
    assert_ne!(
        setup.tib.profile(PROFILE_ID).expect("p")["DefaultUserGroupID"],
        ""
    );
}

#[tokio::test]
async fn embedded_tib_uses_the_dashboard_prefix_and_key() {
    let stack = spawn_stack(Db::Sqlite).await;
    provision(&stack).await;
    let setup = TibSetup::new(TYK_API_KEY).await;
    let mut config = setup.config(&stack.org_id);
    config.embedded = true;
    config.secret = None;
    config.profiles_file = None;
    let tib = service(&stack, config);
    assert!(tib.push("test").await.expect("push").ok);
    let log = setup.tib.request_log();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|r| r.path == format!("/api/tib/profiles/{PROFILE_ID}")),
        "{log:?}"
    );
    assert!(setup.tib.profile(PROFILE_ID).is_some());
}

#[tokio::test]
async fn a_wrong_secret_is_an_error_and_nothing_is_written() {
    let stack = spawn_stack(Db::Sqlite).await;
    provision(&stack).await;
    let setup = TibSetup::new("another-secret").await;
    let mut config = setup.config(&stack.org_id);
    config.profiles_file = None;
    let tib = service(&stack, config);
    let report = tib.push("test").await.expect("push");
    assert!(!report.ok);
    assert!(
        report.profiles[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("401")),
        "{report:?}"
    );
    assert_eq!(setup.tib.request_log().len(), 1, "no retry of a 401");
    assert!(setup.tib.profiles().is_empty());
}

#[tokio::test]
async fn the_service_pushes_and_shows_profiles_in_the_admin_api_status_and_metrics() {
    let setup = TibSetup::new(TIB_SECRET).await;
    let stack = spawn_stack_configured(Db::Sqlite, |config| {
        let org = config.mapping.default_org_id.clone().unwrap_or_default();
        let mut tib = setup.config(&org);
        tib.interval = Duration::from_secs(3600);
        config.tib = Some(tib);
    })
    .await;
    provision(&stack).await;
    // The rule writes woke the task; it retries until the groups exist.
    let start = std::time::Instant::now();
    while setup.tib.profile(PROFILE_ID).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "profile never pushed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let anonymous = stack
        .app
        .client
        .get(stack.app.url("/admin/v1/tib/profiles"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401, "the admin token guards it");
    let (status, body) = stack
        .admin_request(Method::GET, "/admin/v1/tib/profiles")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true);
    let shown = &body["profiles"][0];
    assert_eq!(shown["id"], PROFILE_ID);
    assert_eq!(
        shown["profile"]["UserGroupMapping"]["Developers"],
        group_id(&stack, "API Developers")
    );
    assert!(
        !body.to_string().contains(TEMPLATE_SECRET),
        "the admin API never shows template secrets"
    );
    let start = std::time::Instant::now();
    loop {
        let (_, status) = stack.admin_request(Method::GET, "/admin/v1/status").await;
        if status["tib"]["last_success"].is_string() {
            assert_eq!(status["tib"]["profiles"], 1);
            assert_eq!(status["tib"]["consecutive_failures"], 0);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics = stack.app.metrics_text().await;
    assert!(metrics.contains("tyk_idsync_tib_pushes_total"), "{metrics}");
    assert!(metrics.contains("tyk_idsync_tib_consecutive_failures"));
}

#[tokio::test]
async fn failed_pushes_show_in_status_and_metrics_and_are_retried() {
    let setup = TibSetup::new(TIB_SECRET).await;
    let stack = spawn_stack_configured(Db::Sqlite, |config| {
        let org = config.mapping.default_org_id.clone().unwrap_or_default();
        let mut tib = setup.config(&org);
        tib.secret = Some(secrecy::SecretString::from("not-the-secret".to_string()));
        tib.profiles_file = None;
        config.tib = Some(tib);
    })
    .await;
    provision(&stack).await;
    let start = std::time::Instant::now();
    let status = loop {
        let (_, status) = stack.admin_request(Method::GET, "/admin/v1/status").await;
        let failing = status["tib"]["consecutive_failures"].as_u64().unwrap_or(0) >= 2;
        let unauthorised = status["tib"]["last_errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("401"));
        if failing && unauthorised {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status["tib"]["last_success"].is_null(), "{status}");
    assert!(setup.tib.profiles().is_empty());
    assert!(
        setup.tib.request_log().iter().all(|r| r.status == 401),
        "{:?}",
        setup.tib.request_log()
    );
    let metrics = stack.app.metrics_text().await;
    assert!(
        metrics.contains("tyk_idsync_tib_pushes_total{result=\"error\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn explain_says_when_tib_may_pick_another_group() {
    let setup = TibSetup::new(TIB_SECRET).await;
    let stack = spawn_stack_configured(Db::Sqlite, |config| {
        let org = config.mapping.default_org_id.clone().unwrap_or_default();
        let mut tib = setup.config(&org);
        tib.interval = Duration::from_secs(3600);
        config.tib = Some(tib);
    })
    .await;
    provision(&stack).await;
    let (status, body) = stack
        .admin_request(Method::GET, "/admin/v1/explain/ada@example.org")
        .await;
    assert_eq!(status, 200, "{body}");
    let notes = body["notes"].as_array().cloned().unwrap_or_default();
    assert_eq!(notes.len(), 1, "{body}");
    let note = notes[0].as_str().unwrap_or("");
    assert!(
        note.contains(PROFILE_ID) && note.contains("sso_enable_user_lookup"),
        "{note}"
    );
    assert!(note.contains("\"API Developers\""), "{note}");
}

// ---- the binary -------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

fn run_bin(args: &[&str], config: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("TYK_IDSYNC") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run binary")
}

fn config_file(dir: &std::path::Path, tib: &str) -> std::path::PathBuf {
    let path = dir.join("tyk-idsync.toml");
    let text = format!(
        "[database]\nurl = \"sqlite://{}/db.sqlite\"\n\n[tyk]\ndashboard_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n\n[scim]\nenabled = true\n[scim.sources.okta]\n\n{tib}",
        dir.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn a_bad_template_or_key_is_a_config_error_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"ProviderName": "SocialProvider", "Type": "redirect", "UserGroupMapping": {"x": "y"}})
            .to_string(),
    )
    .expect("template");
    let profile = |extra: &str, template: &std::path::Path| {
        format!(
            "[tib]\nurl = \"http://tib:3010\"\nsecret = \"s\"\n[[tib.profiles]]\nid = \"okta\"\nsource = \"okta\"\norg_id = \"o\"\ntemplate_file = \"{}\"\n{extra}",
            template.display()
        )
    };
    let cases = [
        (
            profile("", &bad),
            "config error: tib.profiles[0].template_file: ",
            "`UserGroupMapping` is generated by tyk-idsync",
        ),
        (
            profile("", &dir.path().join("missing.json")),
            "config error: tib.profiles[0].template_file: cannot read",
            "missing.json",
        ),
        (
            profile("templat = \"x\"\n", &bad),
            "config error: tib.profiles[0].templat: is not a known key",
            "template_file",
        ),
        (
            "[tib]\nurl = \"http://tib:3010\"\nsecret = \"s\"\nintervall = \"1s\"\n".to_string(),
            "config error: tib.intervall: is not a known key",
            "known keys here",
        ),
    ];
    for (tib, start, contains) in cases {
        let config = config_file(dir.path(), &tib);
        for command in [["check-config"].as_slice(), ["serve"].as_slice()] {
            let out = run_bin(command, &config);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(out.status.code(), Some(3), "{command:?} {tib}: {stderr}");
            assert!(stderr.starts_with(start), "{tib}: {stderr}");
            assert!(stderr.contains(contains), "{tib}: {stderr}");
        }
    }
}

#[tokio::test]
async fn tib_render_writes_nothing_and_tib_push_pushes() {
    let stack = spawn_stack(Db::Sqlite).await;
    provision(&stack).await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let db_url = stack.app.state.config.database.url.clone();
    let config = setup.dir.path().join("tyk-idsync.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{db_url}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{TYK_API_KEY}\"\n\n\
             [scim]\nenabled = true\n[scim.sources.okta]\n\n[mapping]\ndefault_org_id = \"{org}\"\n\n\
             [tib]\nurl = \"{}\"\nsecret = \"{TIB_SECRET}\"\nprofiles_file = \"{}\"\n\
             [[tib.profiles]]\nid = \"{PROFILE_ID}\"\nsource = \"okta\"\norg_id = \"{org}\"\ntemplate_file = \"{}\"\n",
            stack.standin.base_url(),
            setup.tib.base_url(),
            setup.profiles_file.display(),
            setup.template_file.display(),
            org = stack.org_id,
        ),
    )
    .expect("config");
    let rendered = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run_bin(&["tib", "render", "--json"], &config)
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&rendered.stdout).to_string();
    assert!(
        rendered.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let profiles: Value = serde_json::from_str(&stdout).expect("JSON array");
    assert_eq!(profiles[0]["ID"], PROFILE_ID);
    assert_eq!(
        profiles[0]["UserGroupMapping"]["Developers"],
        group_id(&stack, "API Developers")
    );
    assert!(
        !stdout.contains(TEMPLATE_SECRET),
        "secrets redacted by default"
    );
    assert!(setup.tib.request_log().is_empty(), "render writes nothing");
    assert!(!setup.profiles_file.exists());

    let text = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run_bin(&["tib", "render"], &config)
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("Profile okta-dashboard (source okta"),
        "{text}"
    );
    assert!(text.contains("\"Readers\" priority 0"), "{text}");

    let pushed = tokio::task::spawn_blocking(move || run_bin(&["tib", "push"], &config))
        .await
        .expect("join");
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let report: Value = serde_json::from_slice(&pushed.stdout).expect("report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["profiles"][0]["api"], "created");
    let held = setup.tib.profile(PROFILE_ID).expect("pushed");
    assert_eq!(
        held["ProviderConfig"]["UseProviders"][0]["Secret"],
        TEMPLATE_SECRET
    );
    assert_eq!(setup.file()[0]["ID"], PROFILE_ID);
}

// ---- the stand-in against TIB's published API ----------------------------

/// Every operation of `/api/profiles…` in identity-broker-swagger.yml is
/// served, and each scenario's status is one the spec documents for it,
/// with the documented body shape.
#[tokio::test]
async fn the_tib_standin_matches_the_published_api() {
    let spec_path = crate::support::prism::contract_dir().join("identity-broker-swagger.yml");
    let spec: Value =
        serde_norway::from_str(&std::fs::read_to_string(&spec_path).expect("spec")).expect("yaml");
    let mut documented: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, op) in item.as_object().expect("item") {
            let codes = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .filter_map(|c| c.parse().ok())
                .collect();
            documented.insert((method.to_uppercase(), path.clone()), codes);
        }
    }
    assert_eq!(documented.len(), 5, "{documented:?}");

    let tib = TibStandIn::spawn(TIB_SECRET).await.expect("stand-in");
    let client = reqwest::Client::new();
    let profile = |id: &str| {
        let mut p = template();
        p["ID"] = json!(id);
        p
    };
    // (method, path, secret, body, expected status)
    let scenarios: Vec<(&str, &str, &str, Option<Value>, u16)> = vec![
        ("GET", "/api/profiles", "wrong", None, 401),
        ("GET", "/api/profiles", TIB_SECRET, None, 200),
        ("GET", "/api/profiles/p1", TIB_SECRET, None, 404),
        (
            "PUT",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(profile("p1")),
            404,
        ),
        (
            "POST",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(profile("p2")),
            400,
        ),
        (
            "POST",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(json!({"ID": "p1", "Type": 3})),
            400,
        ),
        ("POST", "/api/profiles/p1", "", Some(profile("p1")), 401),
        (
            "POST",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(profile("p1")),
            201,
        ),
        (
            "POST",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(profile("p1")),
            400,
        ),
        ("GET", "/api/profiles/p1", TIB_SECRET, None, 200),
        (
            "PUT",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(profile("p2")),
            400,
        ),
        (
            "PUT",
            "/api/profiles/p1",
            TIB_SECRET,
            Some(profile("p1")),
            200,
        ),
        ("GET", "/api/profiles", TIB_SECRET, None, 200),
        ("DELETE", "/api/profiles/p1", "nope", None, 401),
        ("DELETE", "/api/profiles/p1", TIB_SECRET, None, 200),
        ("DELETE", "/api/profiles/p1", TIB_SECRET, None, 404),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (method, path, secret, body, want) in scenarios {
        let template_path = if path == "/api/profiles" {
            path.to_string()
        } else {
            "/api/profiles/{id}".to_string()
        };
        let codes = documented
            .get(&(method.to_string(), template_path.clone()))
            .unwrap_or_else(|| panic!("{method} {template_path} is not in the spec"));
        assert!(
            codes.contains(&want),
            "{method} {path}: {want} not documented ({codes:?})"
        );
        covered.insert((method.to_string(), template_path));
        let mut request = client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", tib.base_url()),
            )
            .header("Authorization", secret);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("JSON body");
        assert_eq!(status, want, "{method} {path}: {answer}");
        if status < 300 {
            assert_eq!(answer["Status"], "ok", "{answer}");
            assert!(answer.get("ID").is_some_and(Value::is_string), "{answer}");
            assert!(answer.get("Data").is_some(), "{answer}");
        } else {
            assert_eq!(answer["Status"], "error", "{answer}");
            assert!(answer["Error"].is_string(), "{answer}");
        }
    }
    assert_eq!(
        covered.len(),
        documented.len(),
        "every documented operation is exercised"
    );
    // What POST answered is what GET returns: every Profile field, the
    // unknown ones dropped.
    let mut p = profile("p3");
    p["NotAField"] = json!(1);
    let created: Value = client
        .post(format!("{}/api/profiles/p3", tib.base_url()))
        .header("Authorization", TIB_SECRET)
        .json(&p)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let fields: Vec<&str> = spec["components"]["schemas"]["Profile"]["properties"]
        .as_object()
        .expect("Profile properties")
        .keys()
        .map(String::as_str)
        .collect();
    let data = created["Data"].as_object().expect("Data");
    let mut got: Vec<&str> = data.keys().map(String::as_str).collect();
    let mut want = fields.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(
        tib.profile("p3").map(|v| v.to_string()),
        Some(created["Data"].to_string())
    );
}

// ---- the background task ---------------------------------------------------

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_running_service_corrects_a_hand_edit_by_itself() {
    let setup = TibSetup::new(TIB_SECRET).await;
    let stack = spawn_stack_configured(Db::Sqlite, |config| {
        let org = config.mapping.default_org_id.clone().unwrap_or_default();
        let mut tib = setup.config(&org);
        tib.interval = Duration::from_secs(3600);
        tib.verify_interval = Duration::from_millis(200);
        config.tib = Some(tib);
    })
    .await;
    provision(&stack).await;
    let readers = group_id(&stack, "Readers");
    let developers = group_id(&stack, "API Developers");
    // Both groups: a push rendered while only Readers existed would be
    // followed by one whose rendering changed, which reverts the hand edit
    // too but is audited as an update, not a correction.
    wait_for("the whole profile is pushed", || {
        setup.tib.profile(PROFILE_ID).is_some_and(|p| {
            p["UserGroupMapping"]["Everyone"] == readers
                && p["UserGroupMapping"]["Developers"] == developers
        })
    })
    .await;
    let mut edited = setup.tib.profile(PROFILE_ID).expect("profile");
    edited["DefaultUserGroupID"] = json!(developers);
    setup.tib.put_profile(edited);
    wait_for("the hand edit is corrected", || {
        setup
            .tib
            .profile(PROFILE_ID)
            .is_some_and(|p| p["DefaultUserGroupID"] == readers)
    })
    .await;
    let start = std::time::Instant::now();
    loop {
        let corrections = audit(&stack, "tib_api_correct").await;
        if let Some(entry) = corrections.first() {
            assert_eq!(entry.entry.actor, "tib");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no audit entry");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Two replicas on one PostgreSQL database, each with its own TIB
/// stand-in: only the leader's ever hears from tyk-idsync.
#[tokio::test]
async fn only_the_leader_pushes() {
    let first = TibSetup::new(TIB_SECRET).await;
    let second = TibSetup::new(TIB_SECRET).await;
    let stack = spawn_stack_configured(Db::Postgres, |config| {
        let org = config.mapping.default_org_id.clone().unwrap_or_default();
        let mut tib = first.config(&org);
        tib.verify_interval = Duration::from_millis(100);
        config.tib = Some(tib);
    })
    .await;
    let mut config = stack.app.state.config.clone();
    let mut tib = second.config(&stack.org_id);
    tib.verify_interval = Duration::from_millis(100);
    config.tib = Some(tib);
    let other = crate::support::app::spawn_app_with(config, None).await;
    provision(&stack).await;
    wait_for("a leader pushed", || {
        first.tib.profile(PROFILE_ID).is_some() || second.tib.profile(PROFILE_ID).is_some()
    })
    .await;
    // Several read-backs later, the follower's TIB has heard nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (leader, follower) = if stack.app.state.leadership.is_leader() {
        (&first, &second)
    } else {
        assert!(other.state.leadership.is_leader(), "one of them leads");
        (&second, &first)
    };
    assert!(
        follower.tib.request_log().is_empty(),
        "{:?}",
        follower.tib.request_log()
    );
    assert!(
        leader.tib.request_log().len() > 3,
        "the leader keeps reading back"
    );
    drop(other);
}

/// A group the sync recreates on its own (no admin request that would wake
/// the TIB task) reaches TIB within about a second, not `interval`.
#[tokio::test]
async fn a_group_the_sync_recreates_reaches_tib_promptly() {
    let setup = TibSetup::new(TIB_SECRET).await;
    let stack = spawn_stack_configured(Db::Sqlite, |config| {
        let org = config.mapping.default_org_id.clone().unwrap_or_default();
        let mut tib = setup.config(&org);
        tib.interval = Duration::from_secs(3600);
        tib.verify_interval = Duration::from_secs(3600);
        config.tib = Some(tib);
    })
    .await;
    provision(&stack).await;
    let readers = group_id(&stack, "Readers");
    wait_for("the whole profile is pushed", || {
        setup
            .tib
            .profile(PROFILE_ID)
            .is_some_and(|p| p["UserGroupMapping"]["Everyone"] == readers)
    })
    .await;
    let dashboard = tyk_idsync::tyk::TykClient::new(&tyk_idsync::tyk::TykConfig::new(
        stack.standin.base_url(),
        TYK_API_KEY,
    ))
    .expect("Tyk client");
    dashboard
        .delete_group(&readers)
        .await
        .expect("delete group");
    let worker = stack.app.state.sync.clone().expect("sync worker");
    worker
        .run_once(tyk_idsync::sync::Trigger::Full)
        .await
        .expect("reconcile");
    let recreated = group_id(&stack, "Readers");
    assert_ne!(recreated, readers);
    let start = std::time::Instant::now();
    wait_for("TIB has the recreated group", || {
        setup
            .tib
            .profile(PROFILE_ID)
            .is_some_and(|p| p["UserGroupMapping"]["Everyone"] == recreated)
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
