//! `token`, `plan`, `sync --once`, `runs list` and `audit` through the
//! binary, against the in-process Tyk stand-in.

use std::process::{Command, Output};

use serde_json::json;
use tyk_idsync::domain::{
    EventKind, GroupMember, IdentityGroup, IdentityUser, MemberKind, NewIdentityEvent, SourceName,
    Timestamp,
};
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::store::{Store, StoreOptions, events, identities};
use tyk_idsync::tyk::Permissions;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");
const KEY: &str = "cli-sync-dashboard-key-0123456789";

/// Runs the binary with `--config c.toml` in `dir`, off the async runtime.
pub(crate) async fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    let (dir, args): (std::path::PathBuf, Vec<String>) = (
        dir.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["--config", "c.toml"])
            .args(&args)
            .current_dir(dir)
            .env_remove("TYK_IDSYNC_CONFIG")
            .output()
            .expect("run binary")
    })
    .await
    .expect("join")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// One person in the "Platform Team" group of source okta, written as SCIM would.
pub(crate) async fn seed_identity(url: &str) {
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let now = Timestamp::now();
    let source = SourceName::new("okta");
    let user = IdentityUser {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: None,
        user_name: "ada".into(),
        email: Some("ada@example.org".into()),
        email_problem: None,
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let group = IdentityGroup {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: None,
        display_name: "Platform Team".into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.begin().await.expect("begin");
    identities::insert_user(&mut tx, &user, &[])
        .await
        .expect("user");
    identities::insert_group(&mut tx, &group)
        .await
        .expect("group");
    identities::add_members(
        &mut tx,
        group.id,
        &[GroupMember {
            id: user.id,
            kind: MemberKind::User,
        }],
    )
    .await
    .expect("member");
    let event = NewIdentityEvent {
        source,
        kind: EventKind::UserCreated,
        subject_id: Some(user.id),
        email: user.email.clone(),
        detail: json!({}),
    };
    events::append(&mut tx, &event).await.expect("event");
    tx.commit().await.expect("commit");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_plan_sync_runs_and_audit_work_from_the_command_line() {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("CLI Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}/store.db", dir.path().display());
    let config = format!(
        "[database]\nurl = \"{db}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n\n\
         [scim]\nenabled = true\n[scim.sources.okta]\n\n\
         [[mapping.rules]]\norg_id = \"{}\"\nname = \"API Admins\"\npriority = 10\n\
         mappings_sso = [\"okta:Platform Team\"]\npermissions = {{ apis = \"write\" }}\n",
        standin.base_url(),
        org.id
    );
    std::fs::write(dir.path().join("c.toml"), config).expect("config");

    // Tokens: created for a configured source only, listed without the secret.
    let created = run(
        dir.path(),
        &["token", "create", "--source", "okta", "--expires", "30d"],
    )
    .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = out(&created).lines().next().unwrap_or_default().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let listed = out(&run(dir.path(), &["token", "list"]).await);
    assert!(listed.contains("okta\tactive"), "{listed}");
    assert!(
        !listed.contains(&token),
        "token list never shows the secret"
    );
    let unknown = run(dir.path(), &["token", "create", "--source", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(3));

    seed_identity(&db).await;
    let plan = run(dir.path(), &["plan"]).await;
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(out(&plan).contains("create_group"), "{}", out(&plan));
    assert!(out(&plan).contains("create_user"), "{}", out(&plan));
    let plan_json: serde_json::Value =
        serde_json::from_slice(&run(dir.path(), &["plan", "--json"]).await.stdout).expect("JSON");
    assert_eq!(plan_json["steps"].as_array().map(Vec::len), Some(2));
    assert!(
        standin
            .users()
            .iter()
            .all(|u| u.email_address != "ada@example.org"),
        "plan applies nothing"
    );

    let synced = run(dir.path(), &["sync", "--once"]).await;
    assert_eq!(
        synced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    let ada = standin
        .users()
        .into_iter()
        .find(|u| u.email_address == "ada@example.org")
        .expect("ada created in Tyk");
    let group = standin
        .groups()
        .into_iter()
        .find(|g| g.name == "API Admins")
        .expect("group");
    assert_eq!(ada.group_id, group.id);

    let again = run(dir.path(), &["plan"]).await;
    assert!(out(&again).starts_with("nothing to do"), "{}", out(&again));
    let runs = out(&run(dir.path(), &["runs", "list"]).await);
    assert!(runs.contains("applied"), "{runs}");
    let audit = out(&run(dir.path(), &["audit", "--email", "ada@example.org"]).await);
    assert!(
        audit.contains("create_user") && audit.contains("ok"),
        "{audit}"
    );
    // Names beside ids: the rule on the user's row, the group on its creation.
    let listed = out(&run(dir.path(), &["mappings", "list"]).await);
    let rule_id = listed.split('\t').next().unwrap_or_default().to_string();
    let user_row = audit
        .lines()
        .find(|l| l.contains("create_user"))
        .unwrap_or_default();
    assert!(
        !rule_id.is_empty() && user_row.contains(&format!("API Admins ({rule_id})")),
        "{audit}"
    );
    let everything = out(&run(dir.path(), &["audit"]).await);
    let group_row = everything
        .lines()
        .find(|l| l.contains("create_group"))
        .unwrap_or_default();
    assert!(
        group_row.contains(&format!("API Admins ({})", group.id)),
        "{everything}"
    );
    assert!(
        everything
            .lines()
            .next()
            .unwrap_or_default()
            .contains("REASON")
    );
}

#[test]
fn sync_commands_without_tyk_are_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.toml"), "").expect("config");
    let output = Command::new(BIN)
        .args(["--config", "c.toml", "plan"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no [tyk] section"));
}
