//! The demo stack, checked statically: `docker-compose config -q` accepts
//! docker-compose.yml (alone and with docker-compose.real-tyk.yml) with a copy
//! of .env.example as the env file; every build context, Dockerfile, bind
//! mount and env_file it names exists in the repo; .env.example names every
//! variable the files use; and `tyk-idsync check-config` accepts
//! config/compose.toml with the environment compose gives the container.
//!
//! Needs `docker-compose` (Debian package `docker-compose`, installed by
//! scripts/test.sh). Outside CI a machine without it skips these tests
//! loudly; in CI (`CI` set) its absence fails them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

use crate::support::install_hint;

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");
const BASE: &[&str] = &["docker-compose.yml"];
const REAL_TYK: &[&str] = &["docker-compose.yml", "docker-compose.real-tyk.yml"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `NAME`s of .env.example's `NAME=value` lines.
fn env_example_names() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(".env.example")).expect("read .env.example");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_string()))
        .collect()
}

/// Runs `docker-compose --env-file <copy of .env.example> -f FILE… ARGS…` in
/// the repo, with no variable of .env.example (nor `COMPOSE_*`) inherited
/// from this process, so that only the example's values count. `None` when
/// docker-compose is not installed and this is not CI (the test is skipped).
fn docker_compose(files: &[&str], args: &[&str]) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join("env");
    std::fs::copy(repo().join(".env.example"), &env_file).expect("copy .env.example");
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(repo()).arg("--env-file").arg(&env_file);
    for file in files {
        cmd.arg("-f").arg(repo().join(file));
    }
    cmd.args(args);
    for name in env_example_names() {
        cmd.env_remove(name);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("COMPOSE_") {
            cmd.env_remove(name);
        }
    }
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = install_hint("docker-compose", "docker-compose");
            if std::env::var_os("CI").is_some() {
                panic!("{hint}");
            }
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED: the docker-compose checks did not run. {hint}\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            None
        }
        Err(e) => panic!("cannot run docker-compose: {e}"),
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The normalized configuration `docker-compose config` prints (variables
/// interpolated from .env.example, paths absolute).
fn compose_config(files: &[&str]) -> Option<Value> {
    let out = docker_compose(files, &["config"])?;
    assert!(
        out.status.success(),
        "docker-compose config {files:?} failed:\n{}",
        output_text(&out)
    );
    Some(serde_norway::from_slice(&out.stdout).expect("docker-compose config prints YAML"))
}

fn services(config: &Value) -> Vec<(String, &Value)> {
    config["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (name.as_str().expect("service name").to_string(), service))
        .collect()
}

/// A path from the compose configuration, relative to the repo unless absolute.
fn repo_path(path: &str) -> PathBuf {
    repo().join(path)
}

fn assert_in_repo(what: &str, path: &Path) {
    assert!(
        path.exists(),
        "{what}: {} does not exist in the repo",
        path.display()
    );
    let canonical = path.canonicalize().expect("canonicalize");
    let root = repo().canonicalize().expect("canonicalize repo");
    assert!(
        canonical.starts_with(&root),
        "{what}: {} is outside the repo",
        path.display()
    );
}

/// The service's environment as compose gives it to the container (a map in
/// the normalized output; `NAME=value` lists accepted too).
fn environment(service: &Value) -> BTreeMap<String, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_norway::to_string(other)
            .expect("scalar")
            .trim()
            .to_string(),
    };
    match &service["environment"] {
        Value::Mapping(map) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        Value::Sequence(list) => list
            .iter()
            .filter_map(|item| {
                let (k, v) = item.as_str()?.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[test]
fn compose_accepts_the_files_with_the_example_env() {
    for files in [BASE, REAL_TYK] {
        let Some(out) = docker_compose(files, &["config", "-q"]) else {
            return;
        };
        assert!(
            out.status.success(),
            "docker-compose config -q {files:?} failed:\n{}",
            output_text(&out)
        );
    }
}

#[test]
fn env_example_names_every_variable_the_compose_files_use() {
    let names = env_example_names();
    for file in REAL_TYK {
        let text = std::fs::read_to_string(repo().join(file)).expect("read compose file");
        // `$$` is a literal `$` for the container; `${NAME…}` is interpolated
        // (comments are not).
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("$$", "");
        for (start, _) in text.match_indices("${") {
            let name: String = text[start + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                names.contains(&name),
                "{file} uses ${{{name}}}, which .env.example does not set"
            );
        }
    }
}

#[test]
fn everything_the_compose_files_reference_exists() {
    for files in [BASE, REAL_TYK] {
        let Some(config) = compose_config(files) else {
            return;
        };
        for (name, service) in services(&config) {
            // build: "dir" or {context, dockerfile}
            let (context, dockerfile) = match &service["build"] {
                Value::String(context) => (Some(context.clone()), "Dockerfile".to_string()),
                Value::Mapping(_) => (
                    service["build"]["context"].as_str().map(str::to_string),
                    service["build"]["dockerfile"]
                        .as_str()
                        .unwrap_or("Dockerfile")
                        .to_string(),
                ),
                _ => (None, String::new()),
            };
            if let Some(context) = context {
                let context = repo_path(&context);
                assert_in_repo(&format!("{name}: build.context"), &context);
                assert_in_repo(
                    &format!("{name}: build.dockerfile"),
                    &context.join(&dockerfile),
                );
            }
            // volumes: "SOURCE:TARGET[:MODE]" or {type: bind, source, target}
            for volume in service["volumes"].as_sequence().into_iter().flatten() {
                let source = match volume {
                    Value::String(short) => short.split(':').next().map(str::to_string),
                    Value::Mapping(_) if volume["type"].as_str() == Some("bind") => {
                        volume["source"].as_str().map(str::to_string)
                    }
                    _ => None,
                };
                // A named volume has no `/` and does not start with `.`.
                if let Some(source) = source.filter(|s| s.contains('/') || s.starts_with('.')) {
                    assert_in_repo(&format!("{name}: bind mount"), &repo_path(&source));
                }
            }
            // env_file: "file", ["file", …] or [{path, required}, …]
            let env_files: Vec<String> = match &service["env_file"] {
                Value::String(path) => vec![path.clone()],
                Value::Sequence(list) => list
                    .iter()
                    .filter_map(|item| item.as_str().or_else(|| item["path"].as_str()))
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            for path in env_files {
                assert_in_repo(&format!("{name}: env_file"), &repo_path(&path));
            }
        }
    }
}

#[test]
fn the_real_tyk_override_switches_the_stand_in_off() {
    let (Some(base), Some(real)) = (compose_config(BASE), compose_config(REAL_TYK)) else {
        return;
    };
    let active = |config: &Value, name: &str| {
        let service = &config["services"][name];
        !service.is_null()
            && service["profiles"]
                .as_sequence()
                .is_none_or(|profiles| profiles.is_empty())
    };
    assert!(active(&base, "tyk-standin"), "the demo runs the stand-in");
    assert!(
        !active(&real, "tyk-standin"),
        "docker-compose.real-tyk.yml must leave the stand-in out"
    );
    // Nothing that still runs may pull the stand-in in as a dependency.
    for (name, service) in services(&real) {
        if active(&real, &name) {
            let depends = &service["depends_on"];
            let on_standin = depends["tyk-standin"] != Value::Null
                || depends
                    .as_sequence()
                    .is_some_and(|list| list.iter().any(|d| d.as_str() == Some("tyk-standin")));
            assert!(!on_standin, "{name} depends on tyk-standin");
        }
    }
}

/// Runs `tyk-idsync check-config --config config/compose.toml` with exactly
/// the environment compose gives the tyk-idsync container.
fn check_config(files: &[&str]) -> Option<String> {
    let config = compose_config(files)?;
    let service = &config["services"]["tyk-idsync"];
    let volumes: Vec<&str> = service["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v["source"].as_str()))
        .collect();
    assert!(
        volumes.iter().any(|v| v.contains("config/compose.toml")),
        "tyk-idsync must mount config/compose.toml, mounts {volumes:?}"
    );
    let env = environment(service);
    let mut cmd = Command::new(BIN);
    cmd.args(["check-config", "--config", "config/compose.toml"])
        .current_dir(repo())
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("TYK_IDSYNC") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(&env);
    let out = cmd.output().expect("run tyk-idsync");
    assert!(
        out.status.success(),
        "check-config of config/compose.toml with the environment of {files:?} failed:\n{}",
        output_text(&out)
    );
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn compose_toml_passes_check_config_in_the_stack() {
    let Some(printed) = check_config(BASE) else {
        return;
    };
    for expected in [
        "listen = \"0.0.0.0:8080\"",
        "url = \"postgres://",
        "dashboard_url = \"http://tyk-standin:3000\"",
        "api_key = \"[REDACTED]\"",
        "[scim.sources.okta]",
    ] {
        assert!(
            printed.contains(expected),
            "expected {expected:?} in:\n{printed}"
        );
    }
    assert!(
        printed.contains("[admin]\ntoken = \"[REDACTED]\""),
        "the admin token must come from the environment:\n{printed}"
    );
}

#[test]
fn compose_toml_passes_check_config_against_a_real_tyk() {
    let Some(printed) = check_config(REAL_TYK) else {
        return;
    };
    let url = std::fs::read_to_string(repo().join(".env.example"))
        .expect("read .env.example")
        .lines()
        .find_map(|l| l.strip_prefix("TYK_DASHBOARD_URL=").map(str::to_string))
        .expect(".env.example sets TYK_DASHBOARD_URL");
    assert!(
        printed.contains(&format!("dashboard_url = \"{url}\"")),
        "the override must point tyk-idsync at TYK_DASHBOARD_URL:\n{printed}"
    );
}
