//! SCIM endpoint behaviour over real HTTP: isolation between sources,
//! tokens, error bodies, preconditions, filters, and concurrent PATCHes.

use pretty_assertions::assert_eq;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tyk_idsync::domain::{EventKind, SourceName};
use tyk_idsync::scim;
use tyk_idsync::store::{events, identities};

use crate::both_backends;
use crate::support::Db;
use crate::support::scim::{MAX_BODY, ScimServer};

fn new_user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "externalId": format!("ext-{user_name}"),
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
}

async fn create_user(server: &ScimServer, source: &str, user_name: &str) -> String {
    let reply = server
        .send(source, Method::POST, "/Users", Some(new_user(user_name)))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().expect("id").to_string()
}

fn assert_scim_error(body: &Value, status: &str, scim_type: Option<&str>) {
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], json!(status), "{body}");
    assert_eq!(
        body.get("scimType").and_then(Value::as_str),
        scim_type,
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
}

async fn sources_are_isolated(db: Db) {
    let server = ScimServer::start(db).await;
    let id = create_user(&server, "okta", "ada@example.org").await;
    let path = format!("/Users/{id}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(new_user("ada@example.org"))),
        (
            Method::PATCH,
            Some(json!({"schemas": [scim::wire::PATCH_SCHEMA],
                "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        ),
        (Method::DELETE, None),
    ] {
        let reply = server.send("entra", method.clone(), &path, body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} as entra");
        assert_scim_error(&reply.body, "404", None);
    }
    let list = server
        .send(
            "entra",
            Method::GET,
            "/Users?filter=userName%20eq%20%22ada@example.org%22",
            None,
        )
        .await;
    assert_eq!(list.body["totalResults"], json!(0));
    // The same userName may exist in another source.
    create_user(&server, "entra", "ada@example.org").await;
    let mine = server.send("okta", Method::GET, &path, None).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.body["userName"], json!("ada@example.org"));
}
both_backends!(scim_sources_are_isolated, sources_are_isolated);

async fn tokens_are_checked(db: Db) {
    let server = ScimServer::start(db).await;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        (
            "wrong scheme",
            Some(format!("Basic {}", server.token("okta"))),
        ),
        ("malformed", Some("Bearer not.a.jwt".into())),
        (
            "tampered",
            Some(format!("Bearer {}x", server.token("okta"))),
        ),
        (
            "expired",
            Some(format!("Bearer {}", expired_token(&server))),
        ),
    ];
    for (name, auth) in cases {
        let reply = server
            .send_raw(Method::GET, "/Users", auth, None, &[])
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            reply
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"scim\""),
            "{name}"
        );
        assert_scim_error(&reply.body, "401", None);
    }
    // Revocation by id takes effect on the next request; the list has no secrets.
    let listed = scim::tokens::list_tokens(&server.store, Some(&SourceName::new("okta")))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0].token_hash, server.token("okta"));
    let ok = server.send("okta", Method::GET, "/Users", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(
        scim::tokens::revoke_token(&server.store, listed[0].id)
            .await
            .expect("revoke")
    );
    let revoked = server.send("okta", Method::GET, "/Users", None).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    let other = server.send("entra", Method::GET, "/Users", None).await;
    assert_eq!(other.status, StatusCode::OK, "other sources keep working");
}
both_backends!(scim_tokens_are_checked, tokens_are_checked);

/// A revocation written by another process (the CLI, another replica) does
/// not pass through this process's token cache: it applies within the
/// cache's lifetime.
async fn revocation_elsewhere_applies_within_the_cache_lifetime(db: Db) {
    let server = ScimServer::start(db).await;
    let ok = server.send("okta", Method::GET, "/Users", None).await;
    assert_eq!(ok.status, StatusCode::OK, "the token is now cached");
    let listed = scim::tokens::list_tokens(&server.store, Some(&SourceName::new("okta")))
        .await
        .expect("list");
    let mut conn = server.store.pool().acquire().await.expect("conn");
    assert!(
        tyk_idsync::store::tokens::revoke(&mut conn, listed[0].id)
            .await
            .expect("revoke")
    );
    let revoked_at = std::time::Instant::now();
    let limit = tyk_idsync::store::tokens::TOKEN_CACHE_TTL + std::time::Duration::from_secs(1);
    loop {
        let reply = server.send("okta", Method::GET, "/Users", None).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            revoked_at.elapsed() < limit,
            "still accepted after {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
both_backends!(
    scim_revocation_elsewhere_applies,
    revocation_elsewhere_applies_within_the_cache_lifetime
);

fn expired_token(server: &ScimServer) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = scim::tokens::TokenClaims {
        src: "okta".into(),
        sub: "okta".into(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now - 7200,
        exp: now - 3600,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&server.state.signing_key),
    )
    .expect("encode")
}

/// name, method, path, raw body, expected status, expected scimType.
type BadRequestCase = (
    &'static str,
    Method,
    &'static str,
    String,
    StatusCode,
    Option<&'static str>,
);

async fn bad_requests_get_rfc_errors(db: Db) {
    let server = ScimServer::start(db).await;
    create_user(&server, "okta", "Taken@Example.org").await;
    let auth = Some(format!("Bearer {}", server.token("okta")));
    let huge = json!({"userName": "x", "title": "a".repeat(MAX_BODY)}).to_string();
    let cases: Vec<BadRequestCase> = vec![
        (
            "oversized",
            Method::POST,
            "/Users",
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "malformed",
            Method::POST,
            "/Users",
            "{\"userName\":".into(),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "not an object",
            Method::POST,
            "/Users",
            "[1]".into(),
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
        ),
        (
            "missing userName",
            Method::POST,
            "/Users",
            json!({"active": true}).to_string(),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "wrong type",
            Method::POST,
            "/Users",
            json!({"userName": "b", "active": 5}).to_string(),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "duplicate, other case",
            Method::POST,
            "/Users",
            new_user("taken@EXAMPLE.org").to_string(),
            StatusCode::CONFLICT,
            Some("uniqueness"),
        ),
        (
            "group without name",
            Method::POST,
            "/Groups",
            json!({"members": []}).to_string(),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "member not an id",
            Method::POST,
            "/Groups",
            json!({"displayName": "g", "members": [{"value": "not-a-uuid"}]}).to_string(),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            "bad filter",
            Method::POST,
            "/Users/.search",
            json!({"filter": "userName eq"}).to_string(),
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
    ];
    for (name, method, path, body, status, scim_type) in cases {
        let reply = server
            .send_raw(method, path, auth.clone(), Some(body), &[])
            .await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert_scim_error(&reply.body, status.as_str(), scim_type);
    }
    let reply = server
        .send(
            "okta",
            Method::GET,
            "/Users?filter=userName%20zz%20%22a%22",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_scim_error(&reply.body, "400", Some("invalidFilter"));
    // Nothing bad was stored.
    let mut conn = server.store.pool().acquire().await.expect("conn");
    let count = identities::count_users(&mut conn, &SourceName::new("okta"))
        .await
        .expect("count");
    assert_eq!(count, 1);
}
both_backends!(
    scim_bad_requests_get_rfc_errors,
    bad_requests_get_rfc_errors
);

async fn etags_guard_writes(db: Db) {
    let server = ScimServer::start(db).await;
    let id = create_user(&server, "okta", "e@example.org").await;
    let path = format!("/Users/{id}");
    let auth = Some(format!("Bearer {}", server.token("okta")));
    let got = server.send("okta", Method::GET, &path, None).await;
    let etag = got
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string();
    assert_eq!(got.body["meta"]["version"], json!(etag));
    let same = server
        .send_raw(
            Method::GET,
            &path,
            auth.clone(),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    let patch =
        json!({"Operations": [{"op": "replace", "path": "displayName", "value": "E"}]}).to_string();
    let stale = server
        .send_raw(
            Method::PATCH,
            &path,
            auth.clone(),
            Some(patch.clone()),
            &[("if-match", "W/\"999\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_scim_error(&stale.body, "412", None);
    let fresh = server
        .send_raw(
            Method::PATCH,
            &path,
            auth,
            Some(patch),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.body["displayName"], json!("E"));
    assert_ne!(fresh.body["meta"]["version"], json!(etag));
}
both_backends!(scim_etags_guard_writes, etags_guard_writes);

async fn filters_paging_and_projection(db: Db) {
    let server = ScimServer::start(db).await;
    for i in 0..7 {
        create_user(&server, "okta", &format!("user{i}@example.org")).await;
    }
    let cases = [
        ("userName eq \"USER3@example.org\"", 1),
        (
            "userName sw \"user\" and emails[type eq \"work\" and value co \"@example.org\"]",
            7,
        ),
        (
            "emails.value eq \"user1@example.org\" or externalId eq \"ext-user2@example.org\"",
            2,
        ),
        (
            "not (userName eq \"user1@example.org\") and active eq true",
            6,
        ),
        ("meta.lastModified gt \"2000-01-01T00:00:00Z\"", 7),
        ("name.givenName eq \"ada\"", 7),
        ("title pr", 0),
    ];
    for (filter, expected) in cases {
        let reply = server
            .send(
                "okta",
                Method::POST,
                "/Users/.search",
                Some(json!({"filter": filter})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.body);
        assert_eq!(reply.body["totalResults"], json!(expected), "{filter}");
    }
    let page = server
        .send(
            "okta",
            Method::GET,
            "/Users?startIndex=3&count=2&sortBy=userName&sortOrder=descending&attributes=userName",
            None,
        )
        .await;
    assert_eq!(page.body["totalResults"], json!(7));
    assert_eq!(page.body["itemsPerPage"], json!(2));
    assert_eq!(page.body["startIndex"], json!(3));
    let names: Vec<&str> = page.body["Resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["userName"].as_str().expect("userName"))
        .collect();
    assert_eq!(names, vec!["user4@example.org", "user3@example.org"]);
    assert!(page.body["Resources"][0].get("emails").is_none());
}
both_backends!(
    scim_filters_paging_and_projection,
    filters_paging_and_projection
);

async fn concurrent_member_patches_lose_nothing(db: Db) {
    let server = ScimServer::start(db).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(create_user(&server, "okta", &format!("m{i}@example.org")).await);
    }
    let group = server
        .send(
            "okta",
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Team"})),
        )
        .await;
    let group_id = group.body["id"].as_str().expect("id").to_string();
    let path = format!("/Groups/{group_id}");
    let patches = ids.iter().map(|id| {
        let body =
            json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
        server.send("okta", Method::PATCH, &path, Some(body))
    });
    for reply in futures::future::join_all(patches).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let got = server.send("okta", Method::GET, &path, None).await;
    let mut members: Vec<String> = got.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().expect("value").to_string())
        .collect();
    members.sort();
    ids.sort();
    assert_eq!(members, ids);
    let mut conn = server.store.pool().acquire().await.expect("conn");
    let changes = events::since(&mut conn, &SourceName::new("okta"), 0)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == EventKind::MembershipChanged)
        .count();
    assert_eq!(changes, 12, "one membership event per added member");
}
both_backends!(
    scim_concurrent_member_patches_lose_nothing,
    concurrent_member_patches_lose_nothing
);

async fn discovery_documents(db: Db) {
    let server = ScimServer::start(db).await;
    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"] {
        let reply = server.send("okta", Method::GET, path, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/scim+json")
        );
        let mut body = reply.body;
        redact_host(&mut body);
        insta::assert_json_snapshot!(path.trim_start_matches('/'), body);
    }
    let spc = server
        .send("okta", Method::GET, "/ServiceProviderConfig", None)
        .await;
    assert_eq!(spc.body["filter"]["maxResults"], json!(50));
}

fn redact_host(value: &mut Value) {
    match value {
        Value::String(s) if s.starts_with("http://127.0.0.1:") => {
            if let Some(i) = s.find("/scim/v2") {
                *s = format!("http://HOST{}", &s[i..]);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_host),
        Value::Object(map) => map.values_mut().for_each(redact_host),
        _ => {}
    }
}

#[tokio::test]
async fn scim_discovery_documents() {
    discovery_documents(Db::Sqlite).await;
}
