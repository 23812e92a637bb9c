//! `tyk-standin`: the Tyk Dashboard + Admin API stand-in as its own process,
//! for demos, benchmarks and docker-compose. Seeds one organisation and an
//! admin user whose Dashboard API key is `--api-key`, then serves until
//! Ctrl-C / SIGTERM.

use std::net::SocketAddr;

use clap::Parser;
use tyk_idsync::standin::{FaultRates, StandIn, StandInOptions};
use tyk_idsync::tyk::Permissions;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Tyk Dashboard + Admin API stand-in (for tests and demos)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TYK_STANDIN_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Items per page of `p`-paged lists (Tyk's page_size).
    #[arg(long, env = "TYK_STANDIN_PAGE_SIZE", default_value_t = 10)]
    page_size: usize,
    /// Dashboard API key of the seeded admin user (`authorization` header).
    #[arg(long, env = "TYK_STANDIN_API_KEY")]
    api_key: String,
    /// Admin API secret (`admin-auth` header).
    #[arg(long, env = "TYK_STANDIN_ADMIN_SECRET")]
    admin_secret: String,
    /// Owner name of the seeded organisation.
    #[arg(long, env = "TYK_STANDIN_SEED_ORG", default_value = "Default Org")]
    seed_org: String,
    /// Email of the seeded admin user.
    #[arg(
        long,
        env = "TYK_STANDIN_SEED_ADMIN_EMAIL",
        default_value = "admin@standin.local"
    )]
    seed_admin_email: String,
    /// Added latency per request, e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<std::time::Duration>,
    /// Share (0..1) of requests answered 429.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Share (0..1) of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    rate_500: f64,
    /// Share (0..1) of requests whose connection is cut.
    #[arg(long, default_value_t = 0.0)]
    rate_reset: f64,
    /// Retry-After seconds sent with 429 answers.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tyk-standin: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let options = StandInOptions {
        page_size: args.page_size.max(1),
        admin_secret: args.admin_secret.clone(),
    };
    let standin = StandIn::serve(listener, options);
    let org = standin.seed_org(&args.seed_org);
    let admin = standin.seed_user(&org.id, &args.seed_admin_email, Permissions::admin());
    standin.set_access_key(&admin.id, &args.api_key);
    standin.set_fault_rates(FaultRates {
        latency: args.latency.unwrap_or_default(),
        rate_429: args.rate_429,
        rate_500: args.rate_500,
        rate_reset: args.rate_reset,
        retry_after_secs: args.retry_after_secs,
        ..FaultRates::default()
    });
    tracing::info!(
        listen = %standin.addr(),
        org_id = %org.id,
        admin_user_id = %admin.id,
        page_size = args.page_size,
        "tyk stand-in ready"
    );
    shutdown_signal().await;
    tracing::info!("tyk stand-in stopping");
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
