//! Entra ID's PATCH shapes over real HTTP (issue #18): a `Replace` on a
//! filtered path that matches nothing adds the element the filter
//! describes — bundled with other operations, the whole PATCH applies —
//! and an `Add` on such a path keeps the filter's type.

use pretty_assertions::assert_eq;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tyk_idsync::scim;

use crate::both_backends;
use crate::support::Db;
use crate::support::scim::ScimServer;

async fn entra_replace_on_empty_filtered_paths_adds(db: Db) {
    let server = ScimServer::start(db).await;
    let created = server
        .send(
            "entra",
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "dana@example.org",
                "name": {"givenName": "Dana", "familyName": "Scully"},
                "emails": [{"type": "work", "value": "dana@example.org", "primary": true}],
                "active": true
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let path = format!("/Users/{}", created.body["id"].as_str().expect("id"));
    // As Entra sends it: capitalised ops, several in one request.
    let reply = server
        .send(
            "entra",
            Method::PATCH,
            &path,
            Some(json!({
                "schemas": [scim::wire::PATCH_SCHEMA],
                "Operations": [
                    {"op": "Replace", "path": "displayName", "value": "Dana Scully"},
                    {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
                    {"op": "Replace", "path": "emails[type eq \"home\"].value", "value": "dana@home.example"},
                    {"op": "Replace", "path": "addresses[type eq \"work\"].formatted", "value": "935 Pennsylvania Ave"},
                    {"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0199"}
                ]
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stored = server.send("entra", Method::GET, &path, None).await;
    let user = stored.body;
    assert_eq!(user["displayName"], "Dana Scully");
    assert_eq!(
        user["phoneNumbers"],
        json!([
            {"type": "mobile", "value": "+1 555 0100"},
            {"type": "work", "value": "+1 555 0199"}
        ])
    );
    assert_eq!(
        user["emails"],
        json!([
            {"type": "work", "value": "dana@example.org", "primary": true},
            {"type": "home", "value": "dana@home.example"}
        ])
    );
    assert_eq!(
        user["addresses"],
        json!([{"type": "work", "formatted": "935 Pennsylvania Ave"}])
    );
    // A second Replace now matches and changes the element in place.
    let reply = server
        .send(
            "entra",
            Method::PATCH,
            &path,
            Some(json!({
                "schemas": [scim::wire::PATCH_SCHEMA],
                "Operations": [
                    {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0111"}
                ]
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["phoneNumbers"],
        json!([
            {"type": "mobile", "value": "+1 555 0111"},
            {"type": "work", "value": "+1 555 0199"}
        ])
    );
    // A filter that describes no element still matches nothing: noTarget,
    // and nothing of the request is applied.
    let reply = server
        .send(
            "entra",
            Method::PATCH,
            &path,
            Some(json!({
                "schemas": [scim::wire::PATCH_SCHEMA],
                "Operations": [
                    {"op": "Replace", "path": "displayName", "value": "Changed"},
                    {"op": "Replace", "path": "emails[value co \"nowhere\"].value", "value": "x@y.z"}
                ]
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["scimType"], "noTarget");
    let stored = server.send("entra", Method::GET, &path, None).await;
    assert_eq!(stored.body["displayName"], "Dana Scully");
}
both_backends!(
    entra_replace_on_empty_filtered_paths,
    entra_replace_on_empty_filtered_paths_adds
);
