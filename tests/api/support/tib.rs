//! TIB for the tests: the stand-in over real HTTP on a random port, a
//! profile template on disk, and the `[tib]` section pointing at both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tyk_idsync::config::Config;
use tyk_idsync::standin::tib::TibStandIn;
use tyk_idsync::tib::{TibConfig, TibProfileConfig, TibService};

use super::stack::Stack;

pub const TIB_SECRET: &str = "tib-secret-for-tests-0123";
pub const PROFILE_ID: &str = "okta-dashboard";
/// A secret inside the template (an OIDC client secret).
pub const TEMPLATE_SECRET: &str = "okta-client-secret-xyz";

/// The operator's part of an Okta OIDC Dashboard login.
pub fn template() -> Value {
    json!({
        "Name": "Okta SSO for the Dashboard",
        "ProviderName": "SocialProvider",
        "Type": "redirect",
        "ReturnURL": "https://dashboard.example.org/tap",
        "ProviderConfig": {
            "CallbackBaseURL": "https://tib.example.org",
            "FailureRedirect": "https://dashboard.example.org/?fail=true",
            "UseProviders": [{
                "Name": "openid-connect",
                "Key": "okta-client-id",
                "Secret": TEMPLATE_SECRET,
                "DiscoverURL": "https://example.okta.com/.well-known/openid-configuration",
                "Scopes": ["openid", "email", "groups"]
            }]
        },
        "IdentityHandlerConfig": {"DashboardCredential": "dashboard-key-in-template"}
    })
}

/// A TIB stand-in, a template file and a profiles-file path in a temp dir.
pub struct TibSetup {
    pub tib: TibStandIn,
    pub dir: tempfile::TempDir,
    pub template_file: PathBuf,
    pub profiles_file: PathBuf,
}

impl TibSetup {
    pub async fn new(secret: &str) -> Self {
        let tib = TibStandIn::spawn(secret).await.expect("TIB stand-in");
        let dir = tempfile::tempdir().expect("tempdir");
        let template_file = dir.path().join("okta.json");
        std::fs::write(&template_file, template().to_string()).expect("template");
        let profiles_file = dir.path().join("profiles.json");
        Self {
            tib,
            dir,
            template_file,
            profiles_file,
        }
    }

    /// `[tib]` with the REST API and the file, fast retries, one profile
    /// for source `okta` in `org_id`.
    pub fn config(&self, org_id: &str) -> TibConfig {
        TibConfig {
            url: Some(self.tib.base_url()),
            secret: Some(secrecy::SecretString::from(TIB_SECRET.to_string())),
            profiles_file: Some(self.profiles_file.clone()),
            retry_base_delay: Duration::from_millis(10),
            profiles: vec![TibProfileConfig {
                id: PROFILE_ID.into(),
                source: "okta".into(),
                org_id: org_id.into(),
                template_file: self.template_file.clone(),
                default_group: None,
            }],
            ..TibConfig::default()
        }
    }

    /// The profiles file as JSON.
    pub fn file(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.profiles_file).expect("profiles file"))
            .expect("profiles file JSON")
    }
}

/// A TIB service over the stack's store, Dashboard and mapping, with this
/// `[tib]` section (the app itself runs none, so nothing races the test).
pub fn service(stack: &Stack, tib: TibConfig) -> Arc<TibService> {
    let mut config: Config = stack.app.state.config.clone();
    config.tib = Some(tib);
    let problems = config.validate();
    assert!(problems.is_empty(), "config problems: {problems:?}");
    TibService::new(
        config.tib.as_ref(),
        config.tyk.as_ref(),
        &stack.app.state.store,
        &stack.app.state.mapping,
    )
    .expect("TIB service")
    .expect("[tib] is configured")
}
