//! A NUL character anywhere in a SCIM body is a 400 `invalidValue` on both
//! engines (PostgreSQL cannot store it in text; it was a 500 there), and
//! nothing is stored.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::support::Db;
use crate::support::scim::ScimServer;

async fn nul_characters_are_refused(db: Db) {
    let server = ScimServer::start(db).await;
    let bodies = [
        json!({"userName": "nul\u{0}name", "emails": [{"value": "n@example.org"}]}),
        json!({"userName": "n@example.org", "emails": [{"value": "n\u{0}@example.org"}]}),
        json!({"userName": "n@example.org", "name": {"givenName": "N\u{0}"}}),
        json!({"userName": "n@example.org", "x\u{0}": 1}),
    ];
    for body in bodies {
        let mut body = body;
        body["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
        let reply = server
            .send("okta", Method::POST, "/Users", Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body} → {}",
            reply.body
        );
        assert_eq!(reply.body["scimType"], "invalidValue", "{}", reply.body);
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("NUL"),
            "{}",
            reply.body
        );
    }
    let group = server
        .send(
            "okta",
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "G\u{0}"}),
            ),
        )
        .await;
    assert_eq!(group.status, StatusCode::BAD_REQUEST, "{}", group.body);
    let listed = server.send("okta", Method::GET, "/Users", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["totalResults"], 0, "{}", listed.body);
}
both_backends!(nul_in_bodies, nul_characters_are_refused);
