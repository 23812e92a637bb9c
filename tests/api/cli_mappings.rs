//! `tyk-idsync mappings list|apply|export` and `explain` through the binary.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("TYK_IDSYNC_CONFIG")
        .output()
        .expect("run binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn rules_are_applied_listed_exported_and_bad_files_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = serde_json::json!([{
        "orgId": "org1",
        "name": "API Admins",
        "priority": 100,
        "mappingsSSO": ["okta:Platform Team"],
        "permissions": {"apis": "write"}
    }]);
    std::fs::write(dir.path().join("rules.json"), rules.to_string()).expect("write");
    let applied = run(dir.path(), &["mappings", "apply", "rules.json"]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(stdout(&applied), "added 1, updated 0, unchanged 0\n");

    let listed = stdout(&run(dir.path(), &["mappings", "list"]));
    assert!(
        listed.contains("org1\tAPI Admins\tpriority 100\tApi\tokta:Platform Team"),
        "{listed}"
    );

    let exported: serde_json::Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["mappings", "export"]))).expect("JSON");
    assert_eq!(exported[0]["name"], "API Admins");
    assert_eq!(exported[0]["mappingsSSO"][0], "okta:Platform Team");

    // A rule granting admin is refused and nothing is stored.
    let bad = serde_json::json!([{"orgId": "org1", "name": "Root", "priority": 1,
        "mappingsSSO": ["x"], "permissions": {"IsAdmin": "admin"}}]);
    std::fs::write(dir.path().join("bad.json"), bad.to_string()).expect("write");
    let refused = run(dir.path(), &["mappings", "apply", "bad.json"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("IsAdmin"));
    assert!(!stdout(&run(dir.path(), &["mappings", "list"])).contains("Root"));

    let explained = run(dir.path(), &["explain", "nobody@example.org"]);
    assert!(explained.status.success());
    assert!(
        stdout(&explained).starts_with("Person: nobody@example.org"),
        "{}",
        stdout(&explained)
    );
    let json = run(dir.path(), &["explain", "--json", "nobody@example.org"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(parsed["email"], "nobody@example.org");
}
