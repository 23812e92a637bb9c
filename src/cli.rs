//! Command line: `serve`, `migrate`, `check-config`, `--version`.
//!
//! Exit codes (also in the README):
//! - 0: success
//! - 1: runtime failure (e.g. the server stopped with an error)
//! - 2: command-line usage error (unknown flag or command)
//! - 3: invalid configuration (one `config error:` line per problem)
//! - 4: database unreachable or a migration failed

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::startup::{self, Application, StartupError};
use crate::store::{Store, StoreOptions};
use crate::telemetry;

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CONFIG: u8 = 3;
pub const EXIT_DATABASE: u8 = 4;
/// A one-shot command that writes to Tyk (`sync --once`, `runs approve`)
/// refused to run because a replica leads (holds the leader lock).
pub const EXIT_LEADER_HOLDS_LOCK: u8 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "tyk-idsync",
    version,
    about = "Keeps Tyk Dashboard users and user groups in step with your identity provider."
)]
pub struct Cli {
    /// TOML configuration file. Without one, built-in defaults apply;
    /// `TYK_IDSYNC__SECTION__KEY` environment variables override either.
    #[arg(short, long, env = "TYK_IDSYNC_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP API, pollers, sync worker).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Copy all state from one store to another (e.g. SQLite to PostgreSQL).
    /// The target must be empty; stop the service while copying.
    MigrateStore {
        /// Source database URL (e.g. sqlite://data/tyk-idsync.db).
        #[arg(long)]
        from: String,
        /// Target database URL (e.g. postgres://user:pass@host/db).
        #[arg(long)]
        to: String,
    },
    /// Manage the mapping table (identity-provider groups → Tyk user groups).
    Mappings {
        #[command(subcommand)]
        action: MappingsAction,
    },
    /// Show how a person is mapped: identities, groups, matching rules, the winner and why.
    Explain {
        /// The person's e-mail address.
        email: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the plan a full reconcile would apply, without applying it.
    Plan {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// `sync --once`: apply one full reconcile and exit: 0 applied, 1 some
    /// steps failed (or the run could not start), 2 held by the
    /// mass-change guard, 5 refused because a replica leads (PostgreSQL). `sync failures`, `sync retry`: the people the
    /// sync stopped trying.
    #[command(args_conflicts_with_subcommands = true)]
    Sync {
        /// Run once and exit (`serve` runs continuously).
        #[arg(long)]
        once: bool,
        #[command(subcommand)]
        action: Option<SyncAction>,
    },
    /// Sync runs: list them, approve a held one.
    Runs {
        #[command(subcommand)]
        action: RunsAction,
    },
    /// The audit log of applied steps.
    Audit {
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        run: Option<uuid::Uuid>,
        /// Step kind, e.g. create_user.
        #[arg(long)]
        step: Option<String>,
        /// Rows about people of this identity source, e.g. okta.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// LDAP sources: poll one now, or show every source's poll state.
    Ldap {
        #[command(subcommand)]
        action: LdapAction,
    },
    /// SCIM bearer tokens of the identity sources.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Tyk Identity Broker profiles generated from the mapping table.
    Tib {
        #[command(subcommand)]
        action: TibAction,
    },
    /// Exit 0 if the service at URL answers 200 (for container health checks).
    Healthcheck {
        /// What to probe.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TibAction {
    /// Print the profiles as they would be pushed now; writes nothing.
    /// Exit 1 if a profile cannot be rendered.
    Render {
        /// Print the profiles as JSON (TIB's format) instead of a summary.
        #[arg(long)]
        json: bool,
        /// Print the templates' secrets instead of `[REDACTED]`.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Render and push every profile now (REST API and/or file) and print
    /// the report: exit 0 all pushed, 1 otherwise; on PostgreSQL exit 5
    /// (nothing pushed) while a replica leads.
    Push,
}

#[derive(Debug, Subcommand)]
pub enum MappingsAction {
    /// List every rule with its origin (config or api).
    List,
    /// Add or update the rules of a JSON file (as `export` writes it).
    Apply {
        /// JSON array of rules.
        file: PathBuf,
    },
    /// Print every rule as JSON.
    Export,
}

#[derive(Debug, Subcommand)]
pub enum LdapAction {
    /// Poll one source now and print the report: exit 0 applied, 1 failed,
    /// 2 held (the mass-removal guard, or a read that found no users or no
    /// groups; re-run with --force to apply: forcing a held full poll runs
    /// a full poll).
    Poll {
        /// The source name (`[ldap.sources.<name>]`).
        #[arg(long)]
        source: String,
        /// Full poll (finds deleted users) even if an incremental one is due.
        #[arg(long)]
        full: bool,
        /// Apply even if the poll would be held (a held full poll is
        /// re-run as a full poll).
        #[arg(long)]
        force: bool,
    },
    /// Every source's last poll, as JSON.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SyncAction {
    /// List every person the sync quarantined (Tyk refused them) or skips
    /// (no or an invalid e-mail), with the reason.
    Failures {
        #[arg(long)]
        json: bool,
    },
    /// Lift a quarantine: the person is tried again at once.
    Retry {
        /// The person's e-mail.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        email: Option<String>,
        /// Every quarantined person.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// Newest first.
    List {
        /// Only runs in this status (e.g. held).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Apply a run held by the mass-change guard.
    Approve { id: uuid::Uuid },
    /// Reject a held run: nothing of it is applied; who and why go to the audit log.
    Reject {
        id: uuid::Uuid,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Issue a token for a configured source; it is printed once.
    Create {
        #[arg(long)]
        source: String,
        /// Lifetime from 1s to 3650d (10 years), e.g. 365d.
        #[arg(long, default_value = "365d", value_parser = crate::scim::tokens::parse_lifetime)]
        expires: std::time::Duration,
        #[arg(long)]
        description: Option<String>,
    },
    /// Every token (never the secret).
    List {
        #[arg(long)]
        source: Option<String>,
    },
    /// Revoke a token by id.
    Revoke { id: uuid::Uuid },
}

/// Parses the command line, runs the command and maps the outcome to an
/// exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The health probe needs no configuration (the container may not have it).
    if let Command::Healthcheck { url } = &cli.command {
        return healthcheck(url);
    }
    let config = match config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(dispatch(cli.command, config, cli.config))
}

async fn dispatch(command: Command, config: Config, config_file: Option<PathBuf>) -> ExitCode {
    match command {
        Command::CheckConfig => {
            print_stdout(&format!(
                "# configuration is valid; effective values (secrets redacted):\n{}",
                config.to_redacted_toml()
            ));
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            telemetry::init(&config.log);
            match migrate(&config).await {
                Ok(applied) => {
                    print_stdout(&format!("migrations applied; {applied} in total\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Mappings { action } => {
            telemetry::init(&config.log);
            finish(mappings(&config, action).await)
        }
        Command::Plan { json } => {
            telemetry::init(&config.log);
            finish(plan(&config, json).await)
        }
        Command::Sync {
            action: Some(action),
            ..
        } => {
            telemetry::init(&config.log);
            finish(sync_failures(&config, action).await)
        }
        Command::Sync { once: true, .. } => {
            telemetry::init(&config.log);
            sync_once(&config).await
        }
        Command::Sync { .. } => {
            eprintln!(
                "usage: tyk-idsync sync --once | sync failures [--json] | sync retry EMAIL|--all"
            );
            ExitCode::from(EXIT_USAGE)
        }
        Command::Runs { action } => {
            telemetry::init(&config.log);
            finish(runs(&config, action).await)
        }
        Command::Audit {
            email,
            org,
            run,
            step,
            source,
            limit,
            json,
        } => {
            telemetry::init(&config.log);
            let filter = crate::store::sync_audit::AuditFilter {
                run_id: run,
                email,
                org_id: org,
                step_kind: step,
                source,
                since: None,
                before_id: None,
                limit,
            };
            finish(audit(&config, &filter, json).await)
        }
        Command::Ldap { action } => {
            telemetry::init(&config.log);
            ldap(&config, action).await
        }
        Command::Token { action } => {
            telemetry::init(&config.log);
            finish(token(&config, action).await)
        }
        Command::Tib { action } => {
            telemetry::init(&config.log);
            tib(&config, action).await
        }
        Command::Explain { email, json } => {
            telemetry::init(&config.log);
            finish(explain(&config, &email, json).await)
        }
        Command::MigrateStore { from, to } => {
            telemetry::init(&config.log);
            match migrate_store(&from, &to).await {
                Ok(report) => {
                    let total: u64 = report.values().sum();
                    let mut text = String::new();
                    for (table, rows) in &report {
                        text.push_str(&format!("{table}: {rows} rows\n"));
                    }
                    text.push_str(&format!("copied {total} rows\n"));
                    print_stdout(&text);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Serve => {
            telemetry::init(&config.log);
            match serve(config, config_file).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

async fn migrate(config: &Config) -> Result<usize, StartupError> {
    let store = startup::open_store(config).await?;
    store.migrate().await?;
    let status = store.migration_status().await?;
    store.close().await;
    Ok(status.applied)
}

async fn migrate_store(
    from: &str,
    to: &str,
) -> Result<crate::store::copy::CopyReport, StartupError> {
    let from = Store::connect(&StoreOptions::new(from)).await?;
    let to = Store::connect(&StoreOptions::new(to)).await?;
    let report = crate::store::copy::copy_all(&from, &to).await?;
    from.close().await;
    to.close().await;
    Ok(report)
}

async fn serve(config: Config, config_file: Option<PathBuf>) -> Result<(), StartupError> {
    let app = Application::build_with_config_file(config, config_file).await?;
    tracing::info!(addr = %app.local_addr(), "Listening.");
    app.run_until(startup::shutdown_signal()).await
}

/// Errors of the one-shot commands, with their exit codes.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    #[error(transparent)]
    Sync(#[from] crate::sync::worker::SyncError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Token(#[from] crate::scim::tokens::TokenError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    /// The database is not as the command needs it (exit 4).
    #[error("{0}")]
    Schema(String),
    /// A replica leads: the command would write beside it (exit 5).
    #[error(transparent)]
    LeaderLock(#[from] crate::cluster::CommandLockError),
}

fn finish(result: Result<String, CommandError>) -> ExitCode {
    match result {
        Ok(text) => {
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(CommandError::Startup(e)) => fail(e),
        Err(CommandError::Usage(message)) => {
            eprintln!("config error: {message}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(CommandError::Schema(message)) => {
            eprintln!("database error: {message}");
            ExitCode::from(EXIT_DATABASE)
        }
        Err(CommandError::LeaderLock(e @ crate::cluster::CommandLockError::Held)) => {
            eprintln!("refused: {e}");
            ExitCode::from(EXIT_LEADER_HOLDS_LOCK)
        }
        Err(CommandError::LeaderLock(e)) => {
            eprintln!("database error: {e}");
            ExitCode::from(EXIT_DATABASE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Opens and migrates the configured store for a one-shot command.
async fn command_store(config: &Config) -> Result<Store, StartupError> {
    let store = startup::open_store(config).await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens the configured store for a command that writes nothing (`plan`):
/// pending migrations are not applied; the command refuses to run on a
/// schema that is not current.
async fn current_store(config: &Config) -> Result<Store, CommandError> {
    let store = startup::open_store(config).await?;
    let status = store.migration_status().await?;
    if !status.is_current() {
        store.close().await;
        return Err(CommandError::Schema(format!(
            "the database schema is not current ({} migrations pending); \
             this command writes nothing, so it does not apply them: run `tyk-idsync migrate` first",
            status.pending.len()
        )));
    }
    Ok(store)
}

async fn mappings(config: &Config, action: MappingsAction) -> Result<String, CommandError> {
    let store = command_store(config).await?;
    let text = match action {
        MappingsAction::List => {
            let mut text = String::new();
            for stored in crate::mapping::list(&store).await? {
                let rule = &stored.rule;
                text.push_str(&format!(
                    "{}\t{}\t{}\tpriority {}\t{:?}\t{}\n",
                    rule.id,
                    rule.org_id,
                    rule.name,
                    rule.priority,
                    stored.origin,
                    rule.mappings_sso.join(", ")
                ));
            }
            text
        }
        MappingsAction::Apply { file } => {
            let report =
                crate::mapping::apply_file(&store, &file, &config.mapping.extra_permission_keys)
                    .await?;
            format!(
                "added {}, updated {}, unchanged {}\n",
                report.added.len(),
                report.updated.len(),
                report.unchanged
            )
        }
        MappingsAction::Export => format!("{}\n", crate::mapping::export(&store).await?),
    };
    store.close().await;
    Ok(text)
}

async fn tib(config: &Config, action: TibAction) -> ExitCode {
    // `tib push` writes to TIB as the leader's TIB task does: on PostgreSQL
    // it takes the leader lock (refused, exit 5, while a replica leads) and
    // its writes are fenced by that lock's lease.
    let lock = match action {
        TibAction::Push if config.tib.is_some() => match command_lock(config).await {
            Ok(lock) => lock,
            Err(e) => return finish(Err(e)),
        },
        _ => None,
    };
    let gate = lock
        .as_ref()
        .map(|l| crate::wiring::write_gate(l.leadership()));
    let outcome = async {
        let store = command_store(config).await?;
        // The config file's rules are merged in memory by the renderer:
        // neither `tib render` nor `tib push` writes them to the store.
        let mapping = crate::wiring::live_mapping(config);
        let service = crate::tib::TibService::new_gated(config.tib.as_ref(), config.tyk.as_ref(), &store, &mapping, gate)
            .map_err(|e| CommandError::Usage(e.to_string()))?
            .ok_or_else(|| {
                CommandError::Usage(
                    "tib: no [tib] section is configured (hint: see the README, section \"Tyk Identity Broker (TIB) profiles\")".into(),
                )
            })?;
        let result = match action {
            TibAction::Render { json, show_secrets } => service
                .render()
                .await
                .map(|r| crate::tib::cli::render_output(&r, json, show_secrets)),
            TibAction::Push => crate::tib::cli::push(&service).await,
        };
        store.close().await;
        result.map_err(|e| CommandError::NotFound(e.to_string()))
    }
    .await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    match outcome {
        Ok((text, true)) => finish(Ok(text)),
        Ok((text, false)) => {
            print_stdout(&text);
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(e) => finish(Err(e)),
    }
}

async fn explain(config: &Config, email: &str, json: bool) -> Result<String, CommandError> {
    let store = command_store(config).await?;
    let mut explanation =
        crate::mapping::explain::explain_email(&store, &config.mapping, email).await?;
    let logins = crate::tib::config::logins(config.tib.as_ref());
    crate::mapping::explain::add_tib_notes(&mut explanation, &logins);
    store.close().await;
    // The other side: what Tyk holds now and what a sync would do (a dry
    // run: the config file's rules merged in memory, nothing written).
    let tyk = match config.tyk {
        Some(_) => {
            let worker = command_worker(config, true).await?;
            let found = worker
                .person_in_tyk(email)
                .await
                .map_err(|e| format!("cannot read Tyk: {e}"));
            worker.store().close().await;
            Some(found)
        }
        None => None,
    };
    Ok(if json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&crate::mapping::explain::with_tyk_json(
                &explanation,
                tyk.as_ref()
            ))
            .unwrap_or_default()
        )
    } else {
        crate::mapping::explain::render_text_with_tyk(&explanation, tyk.as_ref())
    })
}

/// The sync worker for a one-shot command; `[tyk]` must be configured.
/// A dry run (`plan`) writes nothing: the config file's rules are merged
/// in memory instead of into the store.
async fn command_worker(
    config: &Config,
    dry_run: bool,
) -> Result<std::sync::Arc<crate::sync::service::ServiceWorker>, CommandError> {
    // A one-shot command runs on its own, outside the replicas' election.
    command_worker_led(config, dry_run, &crate::cluster::Leadership::always()).await
}

/// On PostgreSQL, the leader lock for a one-shot command that writes to
/// Tyk, held until [`crate::cluster::CommandLock::release`]: refused
/// (exit 5) while a replica leads, so the command never writes beside it.
/// `None` on SQLite (one process by construction).
async fn command_lock(
    config: &Config,
) -> Result<Option<crate::cluster::CommandLock>, CommandError> {
    // Nothing to write without Tyk: say so before contending for the lock.
    require_tyk(config)?;
    let url = config
        .database
        .effective_url()
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    if crate::store::Backend::from_url(&url) != Some(crate::store::Backend::Postgres) {
        return Ok(None);
    }
    let name = crate::store::application_name("command", &config.server.listen);
    let url = crate::store::with_application_name(&url, &name);
    let lock =
        crate::cluster::CommandLock::acquire(&url, config.database.leader_check_interval).await?;
    Ok(Some(lock))
}

/// The sync worker for a one-shot command whose writes are fenced by
/// `leadership` (the command's leader lock on PostgreSQL).
async fn command_worker_led(
    config: &Config,
    dry_run: bool,
    leadership: &crate::cluster::Leadership,
) -> Result<std::sync::Arc<crate::sync::service::ServiceWorker>, CommandError> {
    require_tyk(config)?;
    let store = if dry_run {
        current_store(config).await?
    } else {
        command_store(config).await?
    };
    let mapping = crate::wiring::live_mapping(config);
    let loader = if dry_run {
        crate::wiring::dry_run_loader(mapping)
    } else {
        crate::mapping::sync_config_rules(&store, &config.mapping).await?;
        crate::wiring::desired_loader(mapping)
    };
    crate::wiring::sync_worker_with(config, &store, loader, leadership)
        .map_err(StartupError::from)?
        .ok_or_else(no_tyk_section)
}

fn no_tyk_section() -> CommandError {
    CommandError::Usage(
        "tyk: no [tyk] section is configured (hint: set tyk.dashboard_url and tyk.api_key)".into(),
    )
}

/// A command that talks to Tyk needs `[tyk]` (checked before the store is
/// opened, so the answer does not depend on the database's state).
fn require_tyk(config: &Config) -> Result<(), CommandError> {
    match config.tyk {
        Some(_) => Ok(()),
        None => Err(no_tyk_section()),
    }
}

async fn plan(config: &Config, json: bool) -> Result<String, CommandError> {
    let worker = command_worker(config, true).await?;
    Ok(crate::sync::cli::plan_command(&worker, json).await?)
}

/// `sync failures [--json]` and `sync retry EMAIL|--all`.
async fn sync_failures(config: &Config, action: SyncAction) -> Result<String, CommandError> {
    let store = command_store(config).await?;
    let text = match action {
        SyncAction::Failures { json } => {
            let people = crate::sync::quarantine::failures(&store).await?;
            if json {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&serde_json::json!({ "failures": people }))
                        .unwrap_or_default()
                )
            } else {
                crate::sync::quarantine::failures_table(&people)
            }
        }
        SyncAction::Retry { email, all } => {
            let email = if all { None } else { email };
            let lifted = crate::sync::quarantine::retry(&store, email.as_deref()).await?;
            match (&email, lifted.is_empty()) {
                (Some(email), true) => {
                    store.close().await;
                    return Err(CommandError::NotFound(format!(
                        "{email} is not quarantined"
                    )));
                }
                _ => format!(
                    "lifted the quarantine of {} people; they are tried again at the next sync\n",
                    lifted.len()
                ),
            }
        }
    };
    store.close().await;
    Ok(text)
}

async fn sync_once(config: &Config) -> ExitCode {
    let lock = match command_lock(config).await {
        Ok(lock) => lock,
        Err(e) => return finish(Err(e)),
    };
    let leadership = lock
        .as_ref()
        .map_or_else(crate::cluster::Leadership::always, |l| {
            l.leadership().clone()
        });
    let worker = match command_worker_led(config, false, &leadership).await {
        Ok(worker) => worker,
        Err(e) => {
            if let Some(lock) = lock {
                lock.release().await;
            }
            return finish(Err(e));
        }
    };
    let result = crate::sync::cli::sync_once_command(&worker).await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    match result {
        Ok(status) => {
            print_stdout(&format!("{}\n", status.describe()));
            ExitCode::from(u8::try_from(status.exit_code()).unwrap_or(EXIT_RUNTIME))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn ldap(config: &Config, action: LdapAction) -> ExitCode {
    let pollers = async {
        let store = command_store(config).await?;
        let wakeup = std::sync::Arc::new(tokio::sync::Notify::new());
        crate::ldap::schedule::pollers(&config.ldap, &store, wakeup)
            .map_err(|e| CommandError::Startup(e.into()))
    };
    let pollers = match pollers.await {
        Ok(p) => p,
        Err(e) => return finish(Err(e)),
    };
    match action {
        LdapAction::Status => {
            let mut out = serde_json::Map::new();
            for (name, poller) in pollers.iter() {
                match poller.state().await {
                    Ok(state) => {
                        out.insert(name.to_string(), serde_json::json!(state));
                    }
                    Err(e) => return finish(Err(CommandError::Usage(e.to_string()))),
                }
            }
            finish(Ok(format!("{:#}\n", serde_json::Value::Object(out))))
        }
        LdapAction::Poll {
            source,
            full,
            force,
        } => {
            let Some(poller) = pollers.get(&crate::domain::SourceName::new(&source)) else {
                return finish(Err(CommandError::NotFound(format!(
                    "no LDAP source named {source:?} is configured"
                ))));
            };
            let request = crate::ldap::schedule::PollRequest { full, force };
            match poller.poll(request).await {
                Ok(report) => {
                    print_stdout(&format!("{:#}\n", serde_json::json!(report)));
                    if let Some(held) = &report.held {
                        // --force re-runs a held full poll as a full poll.
                        eprintln!("held: {}; re-run with --force to apply it", held.reason);
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

async fn runs(config: &Config, action: RunsAction) -> Result<String, CommandError> {
    match action {
        RunsAction::List { status, limit } => {
            let status = match status {
                Some(text) => Some(crate::store::sync_runs::RunStatus::parse(&text).ok_or_else(
                    || CommandError::Usage(format!("--status: unknown run status {text:?}")),
                )?),
                None => None,
            };
            let store = command_store(config).await?;
            Ok(crate::sync::cli::runs_list_command(&store, status, limit).await?)
        }
        RunsAction::Approve { id } => {
            // Approving applies the held plan: like `sync --once`, it
            // takes the leader lock for its duration (refused, exit 5,
            // while a replica leads; approve on the leader's admin API).
            let lock = command_lock(config).await?;
            let leadership = lock
                .as_ref()
                .map_or_else(crate::cluster::Leadership::always, |l| {
                    l.leadership().clone()
                });
            let status = match command_worker_led(config, false, &leadership).await {
                Ok(worker) => crate::sync::cli::runs_approve_command(&worker, id)
                    .await
                    .map_err(CommandError::from),
                Err(e) => Err(e),
            };
            if let Some(lock) = lock {
                lock.release().await;
            }
            Ok(format!("{}\n", status?.describe()))
        }
        RunsAction::Reject { id, reason } => {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(CommandError::Usage(
                    "--reason: say why the run is rejected".into(),
                ));
            }
            let store = command_store(config).await?;
            crate::sync::reject::reject_held_run(&store, id, "cli:reject", reason).await?;
            Ok(format!("run {id} rejected: nothing of it is applied\n"))
        }
    }
}

async fn audit(
    config: &Config,
    filter: &crate::store::sync_audit::AuditFilter,
    json: bool,
) -> Result<String, CommandError> {
    let store = command_store(config).await?;
    Ok(crate::sync::cli::audit_command(&store, filter, json).await?)
}

async fn token(config: &Config, action: TokenAction) -> Result<String, CommandError> {
    use crate::scim::tokens;
    let store = command_store(config).await?;
    match action {
        TokenAction::Create {
            source,
            expires,
            description,
        } => {
            let issued =
                tokens::issue_for_source(&store, &config.scim, &source, expires, description)
                    .await
                    .map_err(|e| match e {
                        tokens::TokenError::UnknownSource(source) => CommandError::Usage(format!(
                            "scim.sources.{source}: no such source is configured (hint: add [scim.sources.{source}])"
                        )),
                        tokens::TokenError::Config(problem) => CommandError::Usage(problem),
                        e => e.into(),
                    })?;
            Ok(format!(
                "{}\n# id {} for source {source}, expires {}; shown only once\n",
                issued.token,
                issued.id,
                issued.expires_at.to_rfc3339()
            ))
        }
        TokenAction::List { source } => {
            let source = source.map(crate::domain::SourceName::new);
            let mut text = String::new();
            for t in tokens::list_tokens(&store, source.as_ref()).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                text.push_str(&format!(
                    "{}\t{}\t{state}\texpires {}\t{}\n",
                    t.id,
                    t.source,
                    t.expires_at
                        .map(|e| e.to_rfc3339())
                        .unwrap_or_else(|| "never".into()),
                    t.description.unwrap_or_default()
                ));
            }
            Ok(text)
        }
        TokenAction::Revoke { id } => match tokens::revoke_token(&store, id).await? {
            true => Ok(format!("revoked {id}\n")),
            false => Err(CommandError::NotFound(format!("token {id}: no such token"))),
        },
    }
}

fn healthcheck(url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return ExitCode::from(EXIT_RUNTIME),
    };
    let ok = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build();
        match client {
            Ok(client) => client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Err(_) => false,
        }
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("unhealthy: {url}");
        ExitCode::from(EXIT_RUNTIME)
    }
}

fn fail(error: StartupError) -> ExitCode {
    eprintln!("error: {error}");
    tracing::error!(error = %error, "Exiting on error.");
    ExitCode::from(match error {
        StartupError::Config(_) | StartupError::Wiring(crate::wiring::WiringError::Tyk(_)) => {
            EXIT_CONFIG
        }
        StartupError::Store(_) => EXIT_DATABASE,
        _ => EXIT_RUNTIME,
    })
}

/// Command output goes to stdout (logs go to stderr).
#[allow(clippy::print_stdout)]
fn print_stdout(text: &str) {
    print!("{text}");
}
