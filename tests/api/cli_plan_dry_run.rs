//! `tyk-idsync plan` is a dry run: it shows what the config file's mapping
//! rules would do without writing them (or anything else) to the store;
//! `sync --once` applies them. Through the binary, on both backends.

use std::collections::BTreeMap;

use sqlx::Row;
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::store::{Store, StoreOptions};
use tyk_idsync::tyk::Permissions;

use crate::both_backends;
use crate::cli_sync::{run, seed_identity};
use crate::support::{Db, fresh_database_url};

const KEY: &str = "plan-dry-run-dashboard-key-0123456789";

/// The row count of every table of the store.
async fn row_counts(url: &str, db: Db) -> BTreeMap<String, i64> {
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("store");
    let list = match db {
        Db::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Db::Postgres => {
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    let names: Vec<String> = sqlx::query(list)
        .fetch_all(store.pool())
        .await
        .expect("tables")
        .iter()
        .map(|row| row.get::<String, _>("name"))
        .collect();
    let mut counts = BTreeMap::new();
    for name in names {
        let count: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM \"{name}\""))
            .fetch_one(store.pool())
            .await
            .expect("count")
            .get("n");
        counts.insert(name, count);
    }
    store.close().await;
    counts
}

async fn plan_never_writes_and_sync_applies_the_config_rules(db: Db) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Dry Run Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let (url, _guard) = fresh_database_url(db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[database]\nurl = \"{url}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n\n\
         [[mapping.rules]]\norg_id = \"{}\"\nname = \"API Admins\"\npriority = 10\n\
         mappings_sso = [\"okta:Platform Team\"]\npermissions = {{ apis = \"write\" }}\n",
        standin.base_url(),
        org.id
    );
    std::fs::write(dir.path().join("c.toml"), config).expect("config");
    seed_identity(&url).await;
    // A store that is up to date, as after any earlier run: the once-only
    // steps after the migrations (the key re-fold) are done.
    let store = Store::connect(&StoreOptions::new(&url))
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    store.close().await;
    let before = row_counts(&url, db).await;
    assert_eq!(before.get("mapping_rules"), Some(&0), "{before:?}");

    let plan = run(dir.path(), &["plan"]).await;
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    // The config rule's effect is shown…
    assert!(
        text.contains("create_group") && text.contains("API Admins"),
        "{text}"
    );
    assert!(
        text.contains("create_user") && text.contains("ada@example.org"),
        "{text}"
    );
    let json = run(dir.path(), &["plan", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(json["steps"].as_array().map(Vec::len), Some(2), "{json}");
    // …and nothing was written: no rule rows, events, settings, audit or runs.
    assert_eq!(
        row_counts(&url, db).await,
        before,
        "plan wrote to the store"
    );
    assert!(
        standin
            .users()
            .iter()
            .all(|u| u.email_address != "ada@example.org")
    );

    // `sync --once` is not a dry run: it applies the rules and the plan.
    let synced = run(dir.path(), &["sync", "--once"]).await;
    assert_eq!(
        synced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert_eq!(row_counts(&url, db).await.get("mapping_rules"), Some(&1));
    assert!(
        standin
            .users()
            .iter()
            .any(|u| u.email_address == "ada@example.org")
    );
}
both_backends!(
    plan_is_a_dry_run,
    plan_never_writes_and_sync_applies_the_config_rules
);
