//! `sync --once`, `runs approve` and `tib push` on PostgreSQL take the
//! leader lock for their duration, through the real binary: while a replica
//! holds it they refuse (exit 5) and write nothing to Tyk or TIB; once it
//! is free they run, and free it again when done.

use sqlx::{Connection, PgConnection};
use tyk_idsync::cluster::LEADER_LOCK_KEY;
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::tyk::Permissions;

use crate::cli_sync::{run, seed_identity};
use crate::support::postgres::fresh_database;

const KEY: &str = "cli-lock-dashboard-key-0123456789";

async fn try_lock(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK_KEY)
        .fetch_one(conn)
        .await
        .expect("try lock")
}

/// A Dashboard stand-in with one organisation whose admin's key is `KEY`.
async fn dashboard() -> (StandIn, tyk_idsync::tyk::Organisation) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Lock Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    (standin, org)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_on_postgres_refuses_while_a_leader_holds_the_lock() {
    let (standin, org) = dashboard().await;
    let db = fresh_database().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[database]\nurl = \"{db}\"\nleader_check_interval = \"200ms\"\n\n\
         [tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n\n\
         [scim]\nenabled = true\n[scim.sources.okta]\n\n\
         [[mapping.rules]]\norg_id = \"{}\"\nname = \"API Admins\"\npriority = 10\n\
         mappings_sso = [\"okta:Platform Team\"]\npermissions = {{ apis = \"write\" }}\n",
        standin.base_url(),
        org.id
    );
    std::fs::write(dir.path().join("c.toml"), config).expect("config");
    seed_identity(&db).await;

    // A "leader" holds the lock on its session.
    let mut leader = PgConnection::connect(&db).await.expect("connect");
    assert!(try_lock(&mut leader).await, "the test takes the lock");
    standin.clear_request_log();
    let refused = run(dir.path(), &["sync", "--once"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("another tyk-idsync replica leads"),
        "{stderr}"
    );
    let approve = run(
        dir.path(),
        &["runs", "approve", &uuid::Uuid::new_v4().to_string()],
    )
    .await;
    assert_eq!(
        approve.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let log = standin.request_log();
    assert!(
        log.iter().all(|r| r.method == "GET"),
        "no write to Tyk: {log:?}"
    );
    assert!(
        standin
            .users()
            .iter()
            .all(|u| u.email_address != "ada@example.org")
    );

    // Freed: it runs, and frees the lock when done.
    leader.close().await.expect("close");
    let synced = run(dir.path(), &["sync", "--once"]).await;
    assert_eq!(
        synced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert!(
        standin
            .users()
            .iter()
            .any(|u| u.email_address == "ada@example.org"),
        "ada created in Tyk"
    );
    let mut after = PgConnection::connect(&db).await.expect("connect");
    assert!(try_lock(&mut after).await, "the command freed the lock");
    after.close().await.expect("close");
}

/// The command's lock, in process: a second command is refused while it
/// is held, and when its session ends (terminated) its writes stop within
/// the lease, as a replica's do.
#[tokio::test]
async fn a_command_whose_lock_session_ends_stops_writing() {
    use std::time::{Duration, Instant};
    use tyk_idsync::cluster::{CommandLock, CommandLockError};

    let db = fresh_database().await;
    let name = "tyk-idsync/command/lock-test";
    let url = tyk_idsync::store::with_application_name(&db, name);
    let interval = Duration::from_millis(200);
    let lock = CommandLock::acquire(&url, interval).await.expect("lock");
    assert!(lock.leadership().may_write().is_ok(), "waited out, leading");
    assert!(matches!(
        CommandLock::acquire(&db, interval).await,
        Err(CommandLockError::Held)
    ));

    let mut admin = PgConnection::connect(&db).await.expect("connect");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(terminated, vec![true], "the command's lock session");
    let ended = Instant::now();
    while lock.leadership().may_write().is_ok() {
        assert!(
            ended.elapsed() < interval * 3,
            "the lease outlived its interval"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock.release().await;
    // Free again for the next command.
    let again = CommandLock::acquire(&db, interval).await.expect("free");
    again.release().await;
    admin.close().await.expect("close");
}

/// `tib push` beside a leader would race the leader's own TIB task: refused
/// while the lock is held, with nothing sent to TIB; run once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tib_push_on_postgres_refuses_while_a_leader_holds_the_lock() {
    use crate::support::tib::{PROFILE_ID, TIB_SECRET, TibSetup};
    let (standin, org) = dashboard().await;
    standin
        .with_directory(|d| d.insert_group(&org.id, "Config Developers", Permissions::default()));
    let db = fresh_database().await;
    let setup = TibSetup::new(TIB_SECRET).await;
    let config = format!(
        "[database]\nurl = \"{db}\"\nleader_check_interval = \"200ms\"\n\n\
         [tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n\n\
         [scim]\nenabled = true\n[scim.sources.okta]\n\n\
         [[mapping.rules]]\norg_id = \"{org}\"\nname = \"Config Developers\"\npriority = 10\n\
         mappings_sso = [\"okta:Developers\"]\npermissions = {{ apis = \"write\" }}\n\n\
         [tib]\nurl = \"{}\"\nsecret = \"{TIB_SECRET}\"\nprofiles_file = \"{}\"\n\
         [[tib.profiles]]\nid = \"{PROFILE_ID}\"\nsource = \"okta\"\norg_id = \"{org}\"\ntemplate_file = \"{}\"\n",
        standin.base_url(),
        setup.tib.base_url(),
        setup.profiles_file.display(),
        setup.template_file.display(),
        org = org.id,
    );
    std::fs::write(setup.dir.path().join("c.toml"), config).expect("config");
    let migrated = run(setup.dir.path(), &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let mut leader = PgConnection::connect(&db).await.expect("connect");
    assert!(try_lock(&mut leader).await, "the test takes the lock");
    let refused = run(setup.dir.path(), &["tib", "push"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("another tyk-idsync replica leads"),
        "{stderr}"
    );
    assert!(setup.tib.profile(PROFILE_ID).is_none(), "nothing pushed");
    assert!(!setup.profiles_file.exists(), "no profiles file written");

    leader.close().await.expect("close");
    let pushed = run(setup.dir.path(), &["tib", "push"]).await;
    assert_eq!(
        pushed.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&pushed.stdout),
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert!(setup.tib.profile(PROFILE_ID).is_some(), "pushed");
    let mut after = PgConnection::connect(&db).await.expect("connect");
    assert!(try_lock(&mut after).await, "the command freed the lock");
    after.close().await.expect("close");
}
