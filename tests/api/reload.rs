//! SIGHUP re-reads the config file and applies its mapping rules to the
//! running service; a broken file changes nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::ADMIN_TOKEN;
use crate::support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

fn config(port: u16, rules: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n{rules}"
    )
}

const RULE_A: &str = "[[mapping.rules]]\norg_id = \"org1\"\nname = \"Readers\"\npriority = 1\n\
mappings_sso = [\"okta:Everyone\"]\npermissions = { apis = \"read\" }\n";
const RULE_B: &str = "[[mapping.rules]]\norg_id = \"org1\"\nname = \"Writers\"\npriority = 5\n\
mappings_sso = [\"okta:Platform*\"]\npermissions = { apis = \"write\" }\n";

fn rule_names(port: u16) -> Option<Vec<String>> {
    let body: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/admin/v1/mappings"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .ok()?
        .json()
        .ok()?;
    let mut names: Vec<String> = body["mappings"]
        .as_array()?
        .iter()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    names.sort();
    Some(names)
}

fn wait_for(port: u16, expected: &[&str]) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if rule_names(port).is_some_and(|n| n == expected) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_applies_the_mapping_rules_of_the_edited_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let path = dir.path().join("tyk-idsync.toml");
    std::fs::write(&path, config(port, RULE_A)).expect("write config");
    let child = Child(
        Command::new(BIN)
            .args(["--config", "tyk-idsync.toml", "serve"])
            .current_dir(dir.path())
            .env_remove("TYK_IDSYNC_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve"),
    );
    let pid = child.0.id().to_string();
    assert!(wait_for(port, &["Readers"]), "rules from the file at start");

    std::fs::write(&path, config(port, &format!("{RULE_A}\n{RULE_B}"))).expect("edit");
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert!(
        wait_for(port, &["Readers", "Writers"]),
        "rules after SIGHUP"
    );

    // A broken file is refused and the running rules stay.
    std::fs::write(&path, "[mapping\n").expect("break");
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rule_names(port),
        Some(vec!["Readers".to_string(), "Writers".to_string()])
    );

    // Removing a rule from the file removes it from the store.
    std::fs::write(&path, config(port, RULE_B)).expect("edit");
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert!(wait_for(port, &["Writers"]), "rule removed after SIGHUP");
}
