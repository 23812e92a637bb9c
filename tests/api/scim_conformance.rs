//! The scim2-tester compliance checker (PyPI `scim2-cli`) against the real
//! server: every check must pass without an ERROR line.

use std::path::Path;
use std::process::Command;

use crate::support::Db;
use crate::support::scim::ScimServer;

const SCIM2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/scim2");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_conformance_scim2_tester() {
    assert!(
        Path::new(SCIM2).exists(),
        "scim2 not found at {SCIM2}: install it with \
         `python3 -m venv .venv && .venv/bin/pip install scim2-cli` (scripts/test.sh does this)"
    );
    let server = ScimServer::start(Db::Sqlite).await;
    let url = server.url.clone();
    let headers = format!("Authorization: Bearer {}", server.token("okta"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(SCIM2)
            .args(["--url", &url, "test"])
            .env("SCIM_CLI_HEADERS", headers)
            .env("NO_COLOR", "1")
            .output()
            .expect("run scim2")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains("ERROR")).collect();
    let skipped = stdout.lines().filter(|l| l.contains("SKIPPED")).count();
    let passed = stdout.lines().filter(|l| l.contains("SUCCESS")).count();
    eprintln!(
        "scim2-tester: {passed} SUCCESS, {skipped} SKIPPED, {} ERROR",
        errors.len()
    );
    assert!(
        passed > 0,
        "scim2 printed no results:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        errors.is_empty(),
        "scim2-tester errors:\n{}",
        errors.join("\n")
    );
}
