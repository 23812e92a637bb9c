//! The whole service against the in-process Tyk stand-in: SCIM enabled for
//! two sources (`okta`, `entra`), a Tyk organisation with an admin user
//! whose key the service uses, and helpers to drive it.

use tyk_idsync::config::Config;
use tyk_idsync::domain::SourceName;
use tyk_idsync::scim::ScimSourceConfig;
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::tyk::{Permissions, TykConfig};

use super::Db;
use super::app::{TestApp, spawn_app_with, test_config};

pub const TYK_API_KEY: &str = "stack-dashboard-key-0123456789";
pub const TYK_ADMIN_EMAIL: &str = "tyk-admin@example.org";

pub struct Stack {
    pub app: TestApp,
    pub standin: StandIn,
    pub org_id: String,
    /// SCIM bearer tokens by source.
    pub okta_token: String,
    pub entra_token: String,
}

/// A config for the stack: SCIM on, Tyk = the stand-in, fast sync timers.
pub async fn stack_config(db: Db) -> (Config, Option<tempfile::TempDir>, StandIn, String) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Stack Org");
    let admin = standin.seed_user(&org.id, TYK_ADMIN_EMAIL, Permissions::admin());
    standin.set_access_key(&admin.id, TYK_API_KEY);
    let (mut config, guard) = test_config(db).await;
    config.tyk = Some(TykConfig::new(standin.base_url(), TYK_API_KEY));
    config.scim.enabled = true;
    for source in ["okta", "entra"] {
        config
            .scim
            .sources
            .insert(source.to_string(), ScimSourceConfig::default());
    }
    config.mapping.default_org_id = Some(org.id.clone());
    config.sync.requests_per_second = 0;
    config.sync.retry_base_delay = std::time::Duration::from_millis(10);
    (config, guard, standin, org.id)
}

pub async fn spawn_stack_with(
    config: Config,
    guard: Option<tempfile::TempDir>,
    standin: StandIn,
    org_id: String,
) -> Stack {
    let app = spawn_app_with(config, guard).await;
    let okta_token = issue_token(&app, "okta").await;
    let entra_token = issue_token(&app, "entra").await;
    Stack {
        app,
        standin,
        org_id,
        okta_token,
        entra_token,
    }
}

pub async fn spawn_stack(db: Db) -> Stack {
    let (config, guard, standin, org_id) = stack_config(db).await;
    spawn_stack_with(config, guard, standin, org_id).await
}

async fn issue_token(app: &TestApp, source: &str) -> String {
    let store = &app.state.store;
    let config = &app.state.config.scim;
    let key = tyk_idsync::scim::signing_key(store, config.token_signing_key.as_ref())
        .await
        .expect("signing key");
    tyk_idsync::scim::tokens::create_token(
        store,
        &key,
        &SourceName::new(source),
        std::time::Duration::from_secs(3600),
        None,
    )
    .await
    .expect("token")
    .token
}
