//! Stoplight Prism in proxy mode: validates every request and response
//! against the official Tyk OpenAPI files (plus the documented overlay in
//! `tests/contract/overlay.mjs`). Prism is an npm tool installed into
//! `tools/` by `npm ci --prefix tools`.
//!
//! Each Prism runs under a small `sh` watchdog that kills it once the test
//! process is gone, so no Prism outlives the test binary.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which official file a Prism validates against.
#[derive(Debug, Clone, Copy)]
pub enum Spec {
    Dashboard,
    Admin,
}

impl Spec {
    fn kind(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::Admin => "admin",
        }
    }

    fn official_file(self) -> PathBuf {
        let name = match self {
            Self::Dashboard => "dashboard-swagger.yml",
            Self::Admin => "dashboard-admin-swagger.yml",
        };
        contract_dir().join(name)
    }
}

/// The official files: `tests/contract/official/` (verbatim copies), or
/// `TYK_CONTRACT_DIR` to check against another set.
pub fn contract_dir() -> PathBuf {
    std::env::var_os("TYK_CONTRACT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/contract/official"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const INSTALL_HINT: &str = "install the test tools with `npm ci --prefix tools` \
     (needs node and npm: `apt-get install -y nodejs npm`; scripts/test.sh does this)";

/// The prism executable, or a failure naming the install command.
pub fn prism_binary() -> PathBuf {
    let bin = repo_root().join("tools/node_modules/.bin/prism");
    assert!(
        bin.exists(),
        "Prism not found at {}: {INSTALL_HINT}",
        bin.display()
    );
    bin
}

/// Writes the overlaid spec (JSON) into `dir` and returns its path.
pub fn overlaid_spec(spec: Spec, dir: &Path) -> PathBuf {
    let official = spec.official_file();
    assert!(
        official.exists(),
        "official OpenAPI file {} missing (set TYK_CONTRACT_DIR)",
        official.display()
    );
    let out = dir.join(format!("{}.json", spec.kind()));
    let status = Command::new("node")
        .arg(repo_root().join("tests/contract/overlay.mjs"))
        .arg(spec.kind())
        .arg(&official)
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): {INSTALL_HINT}"));
    assert!(
        status.success(),
        "overlay of {} failed: {INSTALL_HINT}",
        official.display()
    );
    out
}

/// A running Prism proxy; killed on drop.
pub struct Prism {
    pub url: String,
    pub log: PathBuf,
    child: Child,
}

impl Prism {
    /// Starts `prism proxy <spec> <upstream> --errors` on a free port and
    /// waits until it listens.
    pub fn start(spec: Spec, upstream: &str, dir: &Path) -> Prism {
        let prism = prism_binary();
        let spec_file = overlaid_spec(spec, dir);
        let port = super::free_port();
        let log = dir.join(format!("prism-{}.log", spec.kind()));
        let log_file = std::fs::File::create(&log).expect("prism log file");
        let watchdog = r#"parent=$1; shift; "$@" & child=$!
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill "$child" 2>/dev/null; wait "$child""#;
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("prism-watchdog")
            .arg(std::process::id().to_string())
            .arg(&prism)
            .args(["proxy", &spec_file.to_string_lossy(), upstream, "--errors"])
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Prism ({e}): {INSTALL_HINT}"));
        let mut prism = Prism {
            url: format!("http://127.0.0.1:{port}"),
            log,
            child,
        };
        prism.wait_until_listening(port);
        prism
    }

    fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Prism exited ({status}); log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "Prism did not listen within 90 s; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prism {
    /// Kills the watchdog's whole process group (watchdog and Prism).
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
