//! The binary itself: exit codes, one-line config errors, serve + signals.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("TYK_IDSYNC") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().expect("run binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn version_prints_the_crate_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["--version"], &[], dir.path());
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tyk-idsync {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["frobnicate"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

/// Each bad configuration must stop with exit code 3 and exactly one line
/// naming the key.
#[test]
fn bad_configuration_fails_with_one_line_naming_the_key() {
    // (case, TOML file, environment, expected start of stderr)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "wrong type in file",
            "[server]\nlisten = 8080\n",
            &[],
            "config error: server.listen: has the wrong type: found signed int `8080`, expected a string (in ",
        ),
        (
            "unknown key in file",
            "[server]\nlistn = \"x\"\n",
            &[],
            "config error: server.listn: is not a known key",
        ),
        (
            "unknown section",
            "[servr]\n",
            &[],
            "config error: servr: is not a known key",
        ),
        (
            "bad enum value",
            "[log]\nformat = \"xml\"\n",
            &[],
            "config error: log.format: has an unknown value \"xml\"",
        ),
        (
            "bad duration",
            "[server]\nshutdown_timeout = \"soon\"\n",
            &[],
            "config error: server.shutdown_timeout: has an invalid value",
        ),
        (
            "bad TOML",
            "[server\n",
            &[],
            "config error: (file): TOML parse error at line 1",
        ),
        (
            "unknown key from env",
            "",
            &[("TYK_IDSYNC__DATABASE__URI", "x")],
            "config error: database.uri: is not a known key (in environment variable TYK_IDSYNC__DATABASE__URI)",
        ),
        (
            "wrong type from env",
            "",
            &[("TYK_IDSYNC__DATABASE__MAX_CONNECTIONS", "many")],
            "config error: database.max_connections: has the wrong type",
        ),
        (
            "unsupported database",
            "[database]\nurl = \"mysql://u:secretpw@h/db\"\n",
            &[],
            "config error: database.url: \"mysql://u:REDACTED@h/db\" is not a supported database URL",
        ),
        (
            "missing secret",
            "[tyk]\ndashboard_url = \"http://127.0.0.1:3000\"\n",
            &[],
            "config error: tyk.api_key: is required but not set (hint: set `tyk.api_key` or `tyk.api_key_file`, or the environment variable TYK_IDSYNC__TYK__API_KEY)",
        ),
        (
            "missing secret file",
            "[database]\nurl_file = \"/nonexistent/db-url\"\n",
            &[],
            "config error: database.url_file: cannot read /nonexistent/db-url",
        ),
    ];
    for (name, toml, env, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.toml"), toml).expect("write");
        let out = run(&["--config", "c.toml", "check-config"], env, dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{name}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{name}: one line expected, got {err}"
        );
        assert!(
            err.starts_with(expected),
            "{name}: expected {expected:?}, got {err:?}"
        );
        assert!(!err.contains("secretpw"), "{name}: a secret leaked: {err}");
    }
}

#[test]
fn a_missing_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["--config", "nope.toml", "check-config"], &[], dir.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).starts_with("config error: --config: nope.toml does not exist"));
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &["check-config"],
        &[
            (
                "TYK_IDSYNC__DATABASE__URL",
                "postgres://app:hunter2@db:5432/idsync",
            ),
            ("TYK_IDSYNC__SERVER__LISTEN", "0.0.0.0:9000"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listen = \"0.0.0.0:9000\""), "{stdout}");
    assert!(
        stdout.contains("postgres://app:REDACTED@db:5432/idsync"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn migrate_creates_the_sqlite_file_under_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["migrate"], &[], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("data/tyk-idsync.db").is_file());
    // Idempotent.
    let again = run(&["migrate"], &[], dir.path());
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn an_unreachable_database_exits_with_code_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("postgres://nobody@127.0.0.1:{port}/none?connect_timeout=1");
    let out = run(
        &["migrate"],
        &[("TYK_IDSYNC__DATABASE__URL", url.as_str())],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

/// `serve` on the embedded default answers health checks and stops cleanly
/// on SIGTERM and on SIGINT.
#[test]
fn serve_answers_and_stops_on_sigterm_and_sigint() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir.path())
            .env("TYK_IDSYNC__SERVER__LISTEN", &listen)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let ready = wait_for_200(&format!("http://{listen}/readyz"));
        let health = wait_for_200(&format!("http://{listen}/healthz"));
        let probe = run(
            &["healthcheck", "--url", &format!("http://{listen}/healthz")],
            &[],
            dir.path(),
        );
        assert!(probe.status.success(), "healthcheck: {}", stderr(&probe));
        let kill = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        let status = wait_with_timeout(&mut child, Duration::from_secs(10));
        assert!(ready && health, "serve did not become ready on {listen}");
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{signal}: exit status"
        );
        assert!(dir.path().join("data/tyk-idsync.db").is_file());
    }
}

fn wait_for_200(url: &str) -> bool {
    let client = reqwest::blocking::Client::new();
    for _ in 0..100 {
        if client.get(url).send().is_ok_and(|r| r.status() == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn healthcheck_fails_when_nothing_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}/healthz", free_port());
    let out = run(&["healthcheck", "--url", &url], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
}
