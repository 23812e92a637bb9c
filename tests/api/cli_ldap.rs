//! `tyk-idsync ldap poll|status` and `check-config` with an `[ldap]`
//! section, through the binary against a real slapd.

use std::process::{Command, Output};

use crate::ldap_groups::person;
use crate::support::slapd::{SUFFIX, Slapd};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--config", "c.toml"])
        .args(args)
        .current_dir(dir)
        .env_remove("TYK_IDSYNC_CONFIG")
        .env("TYK_IDSYNC__LDAP__SOURCES__CORP__BIND_PASSWORD", "admin")
        .output()
        .expect("run binary")
}

#[test]
fn ldap_poll_and_status_from_the_command_line() {
    let slapd = Slapd::start();
    slapd.add(
        &(0..3)
            .map(|i| person(&format!("c{i}"), ""))
            .collect::<String>(),
    );
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[database]\nurl = \"sqlite://{}/db.sqlite\"\n\n[ldap.sources.corp]\nurl = \"{}\"\n\
             bind_dn = \"{}\"\nuser_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n",
            dir.path().display(),
            slapd.url(),
            slapd.bind_dn(),
        ),
    )
    .expect("config");

    let check = run(dir.path(), &["check-config"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(text.contains("bind_password = \"[REDACTED]\""), "{text}");

    let poll = run(dir.path(), &["ldap", "poll", "--source", "corp"]);
    assert!(poll.status.success(), "{poll:?}");
    let report: serde_json::Value = serde_json::from_slice(&poll.stdout).expect("json report");
    assert_eq!(
        (report["kind"].as_str(), report["usersRead"].as_i64()),
        (Some("full"), Some(3))
    );

    let status = run(dir.path(), &["ldap", "status"]);
    assert!(status.status.success(), "{status:?}");
    let state: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json status");
    assert_eq!(state["corp"]["pollsSinceFull"], 0, "{state}");

    let unknown = run(dir.path(), &["ldap", "poll", "--source", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));

    // No password anywhere: start-up refuses and names the key.
    let no_pw = Command::new(BIN)
        .args(["--config", "c.toml", "ldap", "status"])
        .current_dir(dir.path())
        .env_remove("TYK_IDSYNC_CONFIG")
        .output()
        .expect("run");
    assert_eq!(no_pw.status.code(), Some(3), "{no_pw:?}");
    assert!(
        String::from_utf8_lossy(&no_pw.stderr).contains("ldap.sources.corp.bind_password"),
        "{no_pw:?}"
    );
}
