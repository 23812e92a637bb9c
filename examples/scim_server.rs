//! Runs the SCIM endpoint alone, for conformance runs and benchmarks:
//! `cargo run --release --example scim_server -- DATABASE_URL PORT [SEED]`
//! stores SEED users (`user{n}@bench.example`) and a group `bench-group`
//! directly, prints a bearer token for source `bench` and the group id, and
//! serves until killed.

use std::time::Duration;

use tyk_idsync::domain::SourceName;
use tyk_idsync::scim::{self, ScimConfig, ScimSourceConfig, ScimState};
use tyk_idsync::store::{Store, StoreOptions};

/// The same allocator as the service binary (`src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "sqlite://scim-dev.db".into());
    let port: u16 = args.next().unwrap_or_else(|| "8099".into()).parse()?;
    let seed: usize = args.next().unwrap_or_else(|| "0".into()).parse()?;
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
    if seed > 0 {
        println!("{}", seed_store(&store, seed).await?);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, scim::router(state)).await?;
    Ok(())
}

/// Stores `count` users and one empty group; returns the group id.
async fn seed_store(store: &Store, count: usize) -> Result<String, Box<dyn std::error::Error>> {
    use tyk_idsync::domain::{IdentityGroup, IdentityUser, Timestamp};
    use tyk_idsync::store::identities;
    let source = SourceName::new("bench");
    let now = Timestamp::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut tx = store.begin().await?;
        for n in chunk {
            let email = format!("user{n}@bench.example");
            let user = IdentityUser {
                id: uuid::Uuid::new_v4(),
                source: source.clone(),
                external_id: Some(format!("ext-{n}")),
                user_name: email.clone(),
                email: Some(email.clone()),
                email_problem: None,
                given_name: Some("Bench".into()),
                family_name: Some(format!("User{n}")),
                display_name: Some(format!("Bench User{n}")),
                active: true,
                attributes: serde_json::json!({
                    "userName": email, "externalId": format!("ext-{n}"), "active": true,
                    "name": {"givenName": "Bench", "familyName": format!("User{n}")},
                    "displayName": format!("Bench User{n}"),
                    "emails": [{"value": email, "type": "work", "primary": true}]
                }),
                version: 1,
                created_at: now,
                updated_at: now,
            };
            identities::insert_user(&mut tx, &user, std::slice::from_ref(&email)).await?;
        }
        tx.commit().await?;
    }
    let group = IdentityGroup {
        id: uuid::Uuid::new_v4(),
        source,
        external_id: None,
        display_name: "bench-group".into(),
        attributes: serde_json::json!({"displayName": "bench-group"}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut conn = store.pool().acquire().await?;
    identities::insert_group(&mut conn, &group).await?;
    Ok(group.id.to_string())
}
