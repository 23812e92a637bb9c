//! Runs the SCIM endpoint alone, for conformance runs and benchmarks:
//! `cargo run --release --example scim_server -- DATABASE_URL PORT` prints
//! a bearer token for source `bench` and serves until killed.

use std::time::Duration;

use tyk_idsync::domain::SourceName;
use tyk_idsync::scim::{self, ScimConfig, ScimSourceConfig, ScimState};
use tyk_idsync::store::{Store, StoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "sqlite://scim-dev.db".into());
    let port: u16 = args.next().unwrap_or_else(|| "8099".into()).parse()?;
    let mut options = StoreOptions::new(url);
    options.max_connections = 16;
    let store = Store::connect(&options).await?;
    store.migrate().await?;
    let mut config = ScimConfig {
        enabled: true,
        ..ScimConfig::default()
    };
    config
        .sources
        .insert("bench".into(), ScimSourceConfig::default());
    let state = ScimState::new(store.clone(), &config, None).await?;
    let token = scim::tokens::create_token(
        &store,
        &state.signing_key,
        &SourceName::new("bench"),
        Duration::from_secs(86_400),
        None,
    )
    .await?;
    println!("{}", token.token);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, scim::router(state)).await?;
    Ok(())
}
