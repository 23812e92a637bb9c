//! The foundation's configuration sections: HTTP server, database, logging.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::store::Backend;

/// `[server]`: the HTTP listener (SCIM, admin API, health, metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Per-request timeout; a slower request is answered with 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A client must send a request's whole head (request line and headers)
    /// within this long, also when it reuses a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte moved for this
    /// long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// At most this many connections are served at once; more wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            shutdown_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl ServerConfig {
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigProblem> {
        self.listen.parse().map_err(|_| {
            ConfigProblem::new(
                "server.listen",
                format!("{:?} is not an address:port", self.listen),
            )
            .hint("use e.g. \"0.0.0.0:8080\" or \"127.0.0.1:8080\"")
        })
    }

    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Err(p) = self.listen_addr() {
            problems.push(p);
        }
        if self.shutdown_timeout.is_zero() {
            problems.push(ConfigProblem::new(
                "server.shutdown_timeout",
                "must be more than 0s",
            ));
        }
        for (key, value) in [
            ("server.request_timeout", self.request_timeout),
            ("server.header_read_timeout", self.header_read_timeout),
            ("server.idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                problems.push(ConfigProblem::new(key, "must be more than 0s"));
            }
        }
        if self.max_connections == 0 {
            problems.push(ConfigProblem::new(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        problems
    }
}

/// `[database]`: where state is kept.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the embedded default; file and directory are created
    /// on first run) or `postgres://USER:PASSWORD@HOST:PORT/DB` for several
    /// replicas. The password may also come from `url_file`.
    pub url: String,
    /// Read the URL from this file instead (e.g. a container secret).
    pub url_file: Option<std::path::PathBuf>,
    /// Upper bound of pooled connections (SQLite uses at most 4).
    pub max_connections: u32,
    /// Apply pending migrations at start-up (`serve`). `migrate` always does.
    pub run_migrations: bool,
    /// PostgreSQL only: how often a replica tries to become the leader (and
    /// the leader checks its lock). A dead leader is replaced within about
    /// one interval.
    #[serde(with = "humantime_serde")]
    pub leader_check_interval: Duration,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::store::redact_url(&self.url))
            .field("url_file", &self.url_file)
            .field("max_connections", &self.max_connections)
            .field("run_migrations", &self.run_migrations)
            .field("leader_check_interval", &self.leader_check_interval)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/tyk-idsync.db".into(),
            url_file: None,
            max_connections: 10,
            run_migrations: true,
            leader_check_interval: Duration::from_secs(1),
        }
    }
}

impl DatabaseConfig {
    /// The URL to connect to, read from `url_file` when that is set.
    pub fn effective_url(&self) -> Result<String, ConfigProblem> {
        match &self.url_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    ConfigProblem::new(
                        "database.url_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                }),
            None => Ok(self.url.clone()),
        }
    }

    pub fn validate(&self) -> Vec<ConfigProblem> {
        let url = match self.effective_url() {
            Ok(url) => url,
            Err(p) => return vec![p],
        };
        let mut problems = Vec::new();
        if Backend::from_url(&url).is_none() {
            problems.push(
                ConfigProblem::new(
                    if self.url_file.is_some() {
                        "database.url_file"
                    } else {
                        "database.url"
                    },
                    format!(
                        "{:?} is not a supported database URL",
                        crate::store::redact_url(&url)
                    ),
                )
                .hint("use sqlite://data/tyk-idsync.db or postgres://user:pass@host:5432/db"),
            );
        }
        if self.max_connections == 0 {
            problems.push(ConfigProblem::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        problems
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`RUST_LOG` syntax); `RUST_LOG`, when set, wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "tyk_idsync=info,tower_http=info,sqlx=warn,warn".into(),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Vec<ConfigProblem> {
        match tracing_subscriber::EnvFilter::try_new(&self.filter) {
            Ok(_) => Vec::new(),
            Err(e) => vec![
                ConfigProblem::new(
                    "log.filter",
                    format!("{:?} is not a valid filter: {e}", self.filter),
                )
                .hint("e.g. \"tyk_idsync=debug,info\""),
            ],
        }
    }
}
