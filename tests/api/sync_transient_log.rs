//! Transient Tyk failures are retried, and each shows in the log at WARN
//! with the endpoint, the status and the attempt — a storm as one line per
//! interval with a count — through the real binary.

use std::process::Output;

use tyk_idsync::standin::{Fault, StandIn, StandInOptions};
use tyk_idsync::tyk::Permissions;

use crate::both_backends;
use crate::cli_sync::{run, seed_identity};
use crate::support::{Db, fresh_database_url};

const KEY: &str = "transient-log-dashboard-key-012345";

fn warn_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("transient Tyk failure"))
        .map(str::to_string)
        .collect()
}

async fn setup(db: Db) -> (StandIn, tempfile::TempDir, Option<tempfile::TempDir>) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Faulty Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_url, guard) = fresh_database_url(db).await;
    let config = format!(
        "[log]\nformat = \"json\"\n\n\
         [database]\nurl = \"{db_url}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n\n\
         [sync]\nretry_base_delay = \"5ms\"\nretry_max_delay = \"20ms\"\nmax_attempts = 10\n\n\
         [scim]\nenabled = true\n[scim.sources.okta]\n\n\
         [[mapping.rules]]\norg_id = \"{}\"\nname = \"API Admins\"\npriority = 10\n\
         mappings_sso = [\"okta:Platform Team\"]\npermissions = {{ apis = \"write\" }}\n",
        standin.base_url(),
        org.id
    );
    std::fs::write(dir.path().join("c.toml"), config).expect("config");
    seed_identity(&db_url).await;
    (standin, dir, guard)
}

async fn injected_500s_are_logged_at_warn_and_a_storm_is_one_line(db: Db) {
    let (standin, dir, _guard) = setup(db).await;
    // Eight 500s in a row, on whatever requests come first.
    for _ in 0..8 {
        standin.inject(Fault::ServerError, Some(KEY));
    }
    let synced = run(dir.path(), &["sync", "--once"]).await;
    let stderr = String::from_utf8_lossy(&synced.stderr).to_string();
    let injected = standin
        .request_log()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert_eq!(injected, 8, "{stderr}");
    // Retried with backoff until Tyk answered.
    assert_eq!(synced.status.code(), Some(0), "{stderr}");
    assert!(
        standin
            .users()
            .iter()
            .any(|u| u.email_address == "ada@example.org"),
        "{stderr}"
    );
    let lines = warn_lines(&synced);
    // One line for the storm (all within the 10 s interval), not eight.
    assert_eq!(lines.len(), 1, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON log line");
    let fields = &line;
    assert_eq!(fields["status"], "500", "{line}");
    assert!(
        fields["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("/api/")),
        "{line}"
    );
    assert!(fields["attempt"].as_u64().is_some(), "{line}");
    assert!(fields["method"].is_string(), "{line}");
}

both_backends!(
    injected_500s_are_logged_at_warn_and_a_storm_is_one_line_,
    injected_500s_are_logged_at_warn_and_a_storm_is_one_line
);
