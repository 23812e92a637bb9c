//! Commands that must write nothing, through the binary on both backends:
//! `plan` applies no pending migration; `tib render` and `tib push` merge
//! the config file's mapping rules in memory instead of into the store.

use std::process::Output;

use sqlx::Row;
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::store::{Store, StoreOptions};
use tyk_idsync::tyk::Permissions;

use crate::both_backends;
use crate::cli_sync::run;
use crate::support::stack::{TYK_API_KEY, spawn_stack};
use crate::support::tib::{PROFILE_ID, TIB_SECRET, TibSetup};
use crate::support::{Db, fresh_database_url};

const KEY: &str = "dry-runs-dashboard-key-0123456789";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn table_names(url: &str, db: Db) -> Vec<String> {
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("store");
    let list = match db {
        Db::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Db::Postgres => {
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1"
        }
    };
    let names = sqlx::query(list)
        .fetch_all(store.pool())
        .await
        .expect("tables")
        .iter()
        .map(|row| row.get::<String, _>("name"))
        .collect();
    store.close().await;
    names
}

async fn plan_applies_no_pending_migration(db: Db) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Dry Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let (url, _guard) = fresh_database_url(db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[database]\nurl = \"{url}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n",
        standin.base_url()
    );
    std::fs::write(dir.path().join("c.toml"), config).expect("config");

    let plan = run(dir.path(), &["plan"]).await;
    assert_eq!(plan.status.code(), Some(4), "{}", text(&plan));
    assert!(
        text(&plan).contains("run `tyk-idsync migrate` first"),
        "{}",
        text(&plan)
    );
    assert!(table_names(&url, db).await.is_empty(), "plan migrated");

    let migrated = run(dir.path(), &["migrate"]).await;
    assert!(migrated.status.success(), "{}", text(&migrated));
    let plan = run(dir.path(), &["plan"]).await;
    assert!(plan.status.success(), "{}", text(&plan));
}

both_backends!(
    plan_applies_no_pending_migration_,
    plan_applies_no_pending_migration
);

async fn rule_names(url: &str) -> Vec<String> {
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("store");
    let mut conn = store.pool().acquire().await.expect("conn");
    let names = tyk_idsync::store::mappings::list_rules(&mut conn)
        .await
        .expect("rules")
        .into_iter()
        .map(|r| r.name)
        .collect();
    drop(conn);
    store.close().await;
    names
}

async fn tib_render_and_push_write_no_config_rule(db: Db) {
    let mut stack = spawn_stack(db).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    let org = stack.org_id.clone();
    let tyk_group = stack
        .standin
        .with_directory(|d| d.insert_group(&org, "Config Developers", Permissions::default()));
    let setup = TibSetup::new(TIB_SECRET).await;
    let db_url = stack.app.state.config.database.url.clone();
    std::fs::write(
        setup.dir.path().join("c.toml"),
        format!(
            "[database]\nurl = \"{db_url}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{TYK_API_KEY}\"\n\n\
             [scim]\nenabled = true\n[scim.sources.okta]\n\n[mapping]\ndefault_org_id = \"{org}\"\n\n\
             [[mapping.rules]]\norg_id = \"{org}\"\nname = \"Config Developers\"\npriority = 10\n\
             mappings_sso = [\"okta:Developers\"]\npermissions = {{ apis = \"write\" }}\n\n\
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
    let rendered = run(setup.dir.path(), &["tib", "render"]).await;
    assert!(rendered.status.success(), "{}", text(&rendered));
    // The config rule is rendered (merged in memory)…
    assert!(
        text(&rendered).contains(&format!(
            "\"Config Developers\" priority 10 → {}",
            tyk_group.id
        )),
        "{}",
        text(&rendered)
    );
    // …and never written.
    assert!(rule_names(&db_url).await.is_empty());
    // On PostgreSQL the stack's replica may hold the leader lock, and a
    // push refuses (exit 5) beside a leader: stop it, and push once its
    // lock is free.
    stack.app.stop();
    let start = std::time::Instant::now();
    let pushed = loop {
        let pushed = run(setup.dir.path(), &["tib", "push"]).await;
        if pushed.status.code() != Some(5) || start.elapsed() > std::time::Duration::from_secs(20) {
            break pushed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(pushed.status.success(), "{}", text(&pushed));
    assert!(setup.tib.profile(PROFILE_ID).is_some());
    assert!(rule_names(&db_url).await.is_empty());
    assert!(!text(&pushed).contains("mapping rules from the config file applied"));
}

both_backends!(
    tib_render_and_push_write_no_config_rule_,
    tib_render_and_push_write_no_config_rule
);
