//! A PostgreSQL database for one test.
//!
//! With `TEST_DATABASE_URL` set (a server URL with rights to create
//! databases), every test gets a fresh database on that server. Without it,
//! the first test of the process starts a throwaway cluster (`initdb` on a
//! random loopback port, in a temp dir, as the `postgres` user when running
//! as root) and every test gets a fresh database there.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sqlx::{Connection, Executor, PgConnection};

use super::{free_port, install_hint};

/// A throwaway cluster owned by this test process.
struct Cluster {
    admin_url: String,
    _dir: tempfile::TempDir,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn server_url() -> String {
    if let Some(url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return url;
    }
    match CLUSTER.get_or_init(start_cluster) {
        Ok(cluster) => cluster.admin_url.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
        .ok_or_else(|| install_hint("PostgreSQL server binaries (initdb)", "postgresql"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn start_cluster() -> Result<Cluster, String> {
    let bin = pg_bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("tyk-idsync-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let port = free_port();
    let run_as_postgres = is_root();
    if run_as_postgres {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("chown of the PostgreSQL temp dir failed".into());
        }
    }
    let run = |program: PathBuf, args: Vec<String>| -> Result<(), String> {
        let mut cmd = if run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(&args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        bin.join("initdb"),
        vec![
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
        ],
    )?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.path().display()
    );
    run(
        bin.join("pg_ctl"),
        vec![
            "-D".into(),
            data.display().to_string(),
            "-l".into(),
            dir.path().join("postgres.log").display().to_string(),
            "-o".into(),
            options,
            "-w".into(),
            "-t".into(),
            "60".into(),
            "start".into(),
        ],
    )?;
    stop_when_this_process_exits(&bin, &data, dir.path(), run_as_postgres)?;
    Ok(Cluster {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _dir: dir,
    })
}

/// Statics are never dropped, so a detached watchdog stops the cluster and
/// removes its directory once the test process is gone: no server outlives
/// the test run.
fn stop_when_this_process_exits(
    bin: &std::path::Path,
    data: &std::path::Path,
    dir: &std::path::Path,
    run_as_postgres: bool,
) -> Result<(), String> {
    let pg_ctl = format!(
        "{}{} -D {} -m immediate -w stop",
        if run_as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {pg_ctl} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the PostgreSQL watchdog: {e}"))
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database() -> String {
    let server = server_url();
    let mut url = url::Url::parse(&server).expect("TEST_DATABASE_URL is not a URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {server}: {e}"));
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("CREATE DATABASE");
    url.set_path(&format!("/{name}"));
    url.to_string()
}
