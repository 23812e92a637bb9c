//! A source may accept OAuth 2 access tokens from its identity provider:
//! signed by a key of the provider's JWKS, with the configured issuer and
//! audience, not expired. The provider here is a JWKS endpoint on loopback
//! and a test-only RSA key (tests/fixtures/oauth).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tyk_idsync::scim::ScimSourceConfig;
use tyk_idsync::scim::oauth::OAuthConfig;

use crate::support::Db;
use crate::support::app::{TestApp, spawn_app_with, test_config};

const ISSUER: &str = "https://idp.example.test/oauth2/default";
const AUDIENCE: &str = "api://tyk-idsync";
/// PKCS#1 DER of a key made for these tests only.
const PRIVATE_KEY: &[u8] = include_bytes!("../fixtures/oauth/test-only-idp-private.der");
const JWKS: &str = include_str!("../fixtures/oauth/idp-jwks.json");

/// Serves the JWKS and counts fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { ([("content-type", "application/json")], JWKS) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/keys", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, fetches)
}

fn access_token(kid: &str, iss: &str, aud: &str, exp_offset: i64) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": iss, "aud": aud, "sub": "okta-provisioning", "iat": now, "exp": now + exp_offset});
    let key = EncodingKey::from_rsa_der(PRIVATE_KEY);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn app_with_oauth(jwks_url: &str) -> TestApp {
    let (mut config, guard) = test_config(Db::Sqlite).await;
    config.scim.enabled = true;
    config.scim.sources.insert(
        "okta".into(),
        ScimSourceConfig {
            description: None,
            oauth: Some(OAuthConfig {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                jwks_url: jwks_url.into(),
                jwks_cache: std::time::Duration::from_secs(600),
            }),
        },
    );
    config
        .scim
        .sources
        .insert("entra".into(), ScimSourceConfig::default());
    spawn_app_with(config, guard).await
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.client
        .get(app.url("/scim/v2/Users"))
        .bearer_auth(token)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn provider_access_tokens_are_checked_against_jwks_issuer_audience_and_expiry() {
    let (jwks_url, fetches) = jwks_server().await;
    let app = app_with_oauth(&jwks_url).await;

    let valid = access_token("test-key-1", ISSUER, AUDIENCE, 300);
    assert_eq!(status(&app, &valid).await, 200);
    // The source is the one whose provider issued the token: a user created
    // with it belongs to okta, and the entra source cannot see it.
    let created = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&valid)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada"})
                .to_string(),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let mut conn = app.state.store.pool().acquire().await.expect("conn");
    let okta = tyk_idsync::domain::SourceName::new("okta");
    let found = tyk_idsync::store::identities::find_user_by_user_name(&mut conn, &okta, "ada")
        .await
        .expect("lookup");
    assert!(found.is_some(), "the user belongs to okta");

    let rejected = [
        (
            "wrong audience",
            access_token("test-key-1", ISSUER, "api://other", 300),
        ),
        (
            "wrong issuer",
            access_token("test-key-1", "https://evil.example", AUDIENCE, 300),
        ),
        (
            "expired",
            access_token("test-key-1", ISSUER, AUDIENCE, -3600),
        ),
        (
            "unknown key id",
            access_token("rotated-key", ISSUER, AUDIENCE, 300),
        ),
        ("not a JWT", "not.a.jwt".to_string()),
    ];
    for (why, token) in &rejected {
        let response = app
            .client
            .get(app.url("/scim/v2/Users"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401, "{why}");
        assert!(response.headers().contains_key("www-authenticate"), "{why}");
    }
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(status(&app, &tampered).await, 401, "tampered signature");

    // Keys are cached: an unknown kid refetches at most once per 30 s.
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "fetched {} times",
        fetches.load(Ordering::SeqCst)
    );
}
