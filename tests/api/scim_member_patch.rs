//! Member PATCHes on a large group (the fast path): right answers, events,
//! version and preconditions, and the same outcome as the general path for
//! what the fast path hands over to it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tyk_idsync::domain::EventKind;
use tyk_idsync::store::events;

use crate::both_backends;
use crate::support::Db;
use crate::support::scim::ScimServer;

fn patch(ops: Value) -> Option<Value> {
    Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    }))
}

async fn user(server: &ScimServer, name: &str) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "emails": [{"value": name, "primary": true}],
    });
    let reply = server
        .send("okta", Method::POST, "/Users", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().expect("id").to_string()
}

async fn member_patches_on_a_large_group(db: Db) {
    let server = ScimServer::start(db).await;
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(user(&server, &format!("m{i}@example.org")).await);
    }
    let members: Vec<Value> = ids[..299].iter().map(|id| json!({"value": id})).collect();
    let reply = server
        .send(
            "okta",
            Method::POST,
            "/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Big", "members": members,
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let group = format!("/Groups/{}", reply.body["id"].as_str().expect("id"));
    let etag = reply.headers["etag"].to_str().expect("etag").to_string();
    let pending = |server: &ScimServer| {
        let store = server.store.clone();
        async move {
            let mut conn = store.pool().acquire().await.expect("conn");
            events::pending(&mut conn, 10_000).await.expect("events")
        }
    };
    let before = pending(&server).await.len();

    // Add the 300th member: 200 with all 300, one event naming the person.
    let newcomer = &ids[299];
    let add = patch(json!([{"op": "Add", "path": "members", "value": [{"value": newcomer}]}]));
    let reply = server
        .send("okta", Method::PATCH, &group, add.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["members"].as_array().map(Vec::len), Some(300));
    let new_etag = reply.headers["etag"].to_str().expect("etag").to_string();
    assert_ne!(new_etag, etag, "the version moved");
    let new_events = pending(&server).await.split_off(before);
    assert_eq!(new_events.len(), 1);
    assert_eq!(new_events[0].kind, EventKind::MembershipChanged);
    assert_eq!(new_events[0].email.as_deref(), Some("m299@example.org"));

    // Adding again changes nothing but is accepted.
    let reply = server.send("okta", Method::PATCH, &group, add).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(pending(&server).await.len(), before + 1);

    // A stale If-Match is refused with 412 and nothing changes.
    let remove =
        patch(json!([{"op": "remove", "path": format!("members[value eq \"{newcomer}\"]")}]));
    let reply = server
        .send_raw(
            Method::PATCH,
            &group,
            Some(format!("Bearer {}", server.token("okta"))),
            remove.as_ref().map(Value::to_string),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        reply.body
    );

    // Entra's remove with a value list, then the filter form.
    let reply = server
        .send(
            "okta",
            Method::PATCH,
            &group,
            patch(json!([{"op": "Remove", "path": "members", "value": [{"value": ids[0]}]}])),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = server
        .send("okta", Method::PATCH, &group, remove.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["members"].as_array().map(Vec::len), Some(298));

    // Removing someone who is not a member: the general path decides, and
    // the group is unchanged either way.
    let again = server.send("okta", Method::PATCH, &group, remove).await;
    let after = server.send("okta", Method::GET, &group, None).await;
    assert_eq!(
        after.body["members"].as_array().map(Vec::len),
        Some(298),
        "{}",
        again.body
    );

    // Another source cannot touch the group.
    let reply = server
        .send(
            "entra",
            Method::PATCH,
            &group,
            patch(json!([{"op": "add", "path": "members", "value": [{"value": ids[0]}]}])),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
both_backends!(scim_member_patch, member_patches_on_a_large_group);

fn etag_version(reply: &crate::support::scim::Reply) -> i64 {
    reply.headers["etag"]
        .to_str()
        .expect("etag")
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .expect("numeric version")
}

/// Creates a group: its path, its version and the number of events stored
/// before any PATCH.
async fn new_group(server: &ScimServer, name: &str, members: Vec<Value>) -> (String, i64, usize) {
    let reply = server
        .send(
            "okta",
            Method::POST,
            "/Groups",
            Some(json!({"displayName": name, "members": members})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let group = format!("/Groups/{}", reply.body["id"].as_str().expect("id"));
    let mut conn = server.store.pool().acquire().await.expect("conn");
    let stored = events::pending(&mut conn, 100_000)
        .await
        .expect("events")
        .len();
    (group, etag_version(&reply), stored)
}

fn member_ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["members"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| m["value"].as_str().expect("value").to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Many member PATCHes at once are committed in batches; each must still be
/// answered as if it ran alone: its own version, its own change visible in
/// its answer, its own precondition, and every change and event kept.
async fn concurrent_member_patches_answer_as_if_alone(db: Db) {
    let server = ScimServer::start(db).await;
    let mut adds = Vec::new();
    let mut olds = Vec::new();
    for i in 0..20 {
        adds.push(user(&server, &format!("new{i}@example.org")).await);
        olds.push(user(&server, &format!("old{i}@example.org")).await);
    }
    let outsider = user(&server, "never-a-member@example.org").await;
    let members: Vec<Value> = olds.iter().map(|id| json!({"value": id})).collect();
    let (group, start_version, start_events) = new_group(&server, "Busy", members).await;
    let token = format!("Bearer {}", server.token("okta"));

    enum Want {
        Added(String),
        Removed(String),
        Precondition,
        Unchanged,
    }
    let mut requests = Vec::new();
    for (i, id) in adds.iter().enumerate() {
        let body = patch(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
        requests.push((body, None, Want::Added(id.clone())));
        let old = &olds[i];
        let body = patch(json!([{"op": "remove", "path": format!("members[value eq \"{old}\"]")}]));
        requests.push((body, None, Want::Removed(old.clone())));
    }
    for _ in 0..3 {
        let body = patch(json!([{"op": "add", "path": "members", "value": [{"value": outsider}]}]));
        requests.push((body, Some("W/\"0\""), Want::Precondition));
        let body =
            patch(json!([{"op": "remove", "path": format!("members[value eq \"{outsider}\"]")}]));
        requests.push((body, None, Want::Unchanged));
    }
    let sends = requests.iter().map(|(body, if_match, _)| {
        let headers: Vec<(&str, &str)> = if_match.iter().map(|v| ("if-match", *v)).collect();
        let body = body.as_ref().map(Value::to_string);
        let token = token.clone();
        let server = &server;
        let group = &group;
        async move {
            server
                .send_raw(Method::PATCH, group, Some(token), body, &headers)
                .await
        }
    });
    let replies = futures::future::join_all(sends).await;

    let mut versions = Vec::new();
    for ((_, _, want), reply) in requests.iter().zip(&replies) {
        match want {
            Want::Added(id) => {
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                assert!(member_ids(&reply.body).contains(id), "its own add shows");
                versions.push(etag_version(reply));
            }
            Want::Removed(id) => {
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                assert!(
                    !member_ids(&reply.body).contains(id),
                    "its own removal shows"
                );
                versions.push(etag_version(reply));
            }
            Want::Precondition => {
                assert_eq!(
                    reply.status,
                    StatusCode::PRECONDITION_FAILED,
                    "{}",
                    reply.body
                )
            }
            Want::Unchanged => {
                // Removing someone who is not a member succeeds (clients
                // retry removals) and moves the version.
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                assert!(!member_ids(&reply.body).contains(&outsider));
                versions.push(etag_version(reply));
            }
        }
    }
    // 43 PATCHes applied, 43 distinct versions.
    versions.sort();
    let expected: Vec<i64> = (start_version + 1..=start_version + 43).collect();
    assert_eq!(versions, expected, "each PATCH got its own version");

    let after = server.send("okta", Method::GET, &group, None).await;
    let mut want_members = adds.clone();
    want_members.sort();
    assert_eq!(member_ids(&after.body), want_members);
    let mut conn = server.store.pool().acquire().await.expect("conn");
    let new_events = events::pending(&mut conn, 10_000)
        .await
        .expect("events")
        .split_off(start_events);
    assert_eq!(new_events.len(), 40, "one event per membership change");
    assert!(
        new_events
            .iter()
            .all(|e| e.kind == EventKind::MembershipChanged)
    );
}
both_backends!(
    scim_member_patches_batched,
    concurrent_member_patches_answer_as_if_alone
);

/// Clients toggling one member without pause (Entra and Okta push adds and
/// removes as they happen): whatever the batching, the PATCHes in version
/// order must tell one consistent story — each answer, the events and the
/// final members agree with applying them one after another. On PostgreSQL
/// a batch is read while the previous one is written; reading it as if the
/// previous one had not happened would add or remove the member twice.
async fn concurrent_toggles_of_one_member_keep_one_history(db: Db) {
    const CLIENTS: usize = 8;
    const EACH: usize = 24;
    let server = ScimServer::start(db).await;
    let toggled = user(&server, "toggled@example.org").await;
    let bystander = user(&server, "bystander@example.org").await;
    let members = vec![json!({"value": bystander})];
    let (group, start_version, start_events) = new_group(&server, "Toggled", members).await;
    let token = format!("Bearer {}", server.token("okta"));
    let add = patch(json!([{"op": "add", "path": "members", "value": [{"value": toggled}]}]));
    let remove =
        patch(json!([{"op": "remove", "path": format!("members[value eq \"{toggled}\"]")}]));

    // Each client alternates add and remove, one request after another.
    let clients = (0..CLIENTS).map(|client| {
        let (add, remove) = (add.clone(), remove.clone());
        let (server, group, token) = (&server, &group, token.clone());
        async move {
            let mut seen = Vec::new();
            for n in 0..EACH {
                let adds = (client + n) % 2 == 0;
                let body = if adds { &add } else { &remove };
                let reply = server
                    .send_raw(
                        Method::PATCH,
                        group,
                        Some(token.clone()),
                        body.as_ref().map(Value::to_string),
                        &[],
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                seen.push((etag_version(&reply), adds, member_ids(&reply.body)));
            }
            seen
        }
    });
    let mut applied: Vec<(i64, bool, Vec<String>)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    applied.sort_by_key(|(version, _, _)| *version);

    let versions: Vec<i64> = applied.iter().map(|(v, _, _)| *v).collect();
    let total = (CLIENTS * EACH) as i64;
    assert_eq!(
        versions,
        (start_version + 1..=start_version + total).collect::<Vec<_>>(),
        "each PATCH got its own version"
    );
    // Replayed one after another: each answer shows the members as its
    // PATCH left them, and a membership event marks each real change.
    let mut member = false;
    let mut want_events = Vec::new();
    for (version, adds, members) in &applied {
        if *adds != member {
            want_events.push(if *adds { "added" } else { "removed" });
        }
        member = *adds;
        let mut want = vec![bystander.clone()];
        if member {
            want.push(toggled.clone());
        }
        want.sort();
        assert_eq!(members, &want, "members in the answer of version {version}");
    }
    let mut conn = server.store.pool().acquire().await.expect("conn");
    let got_events: Vec<String> = events::pending(&mut conn, 100_000)
        .await
        .expect("events")
        .split_off(start_events)
        .into_iter()
        .map(|e| e.detail["change"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        got_events, want_events,
        "one event per real change, in order"
    );
    let after = server.send("okta", Method::GET, &group, None).await;
    let mut want = vec![bystander.clone()];
    if member {
        want.push(toggled.clone());
    }
    want.sort();
    assert_eq!(member_ids(&after.body), want);
}
both_backends!(
    scim_member_toggles_batched,
    concurrent_toggles_of_one_member_keep_one_history
);

/// A PATCH answers with the group as `attributes` / `excludedAttributes`
/// project it (RFC 7644 §3.9), members included only when asked for —
/// on the member fast path and on the general one (a displayName change).
async fn patch_answers_are_projected_by_the_query(db: Db) {
    let server = ScimServer::start(db).await;
    let ada = user(&server, "ada@example.org").await;
    let bob = user(&server, "bob@example.org").await;
    let (group, ..) = new_group(&server, "Crew", vec![json!({"value": ada})]).await;
    let toggle =
        |op: &str| patch(json!([{"op": op, "path": "members", "value": [{"value": bob}]}]));
    let rename =
        |name: &str| patch(json!([{"op": "replace", "path": "displayName", "value": name}]));
    // (query, body, members in the answer, displayName in the answer)
    let cases = [
        ("", toggle("add"), Some(2), true),
        ("?excludedAttributes=members", toggle("remove"), None, true),
        (
            "?excludedAttributes=Members,externalId",
            toggle("add"),
            None,
            true,
        ),
        ("?attributes=displayName", toggle("remove"), None, true),
        ("?attributes=members", toggle("add"), Some(2), false),
        (
            "?excludedAttributes=members.display",
            toggle("remove"),
            Some(1),
            true,
        ),
        ("?excludedAttributes=members", rename("Crew 2"), None, true),
        (
            "?attributes=members,displayName",
            rename("Crew 3"),
            Some(1),
            true,
        ),
    ];
    for (query, body, members, display_name) in cases {
        let path = format!("{group}{query}");
        let reply = server.send("okta", Method::PATCH, &path, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        assert_eq!(
            reply.body["members"].as_array().map(Vec::len),
            members,
            "{query}: {}",
            reply.body
        );
        assert_eq!(
            reply.body.get("displayName").is_some(),
            display_name,
            "{query}: {}",
            reply.body
        );
        assert!(
            reply.body["id"].is_string(),
            "{query}: id is always returned"
        );
    }
    let reply = server
        .send(
            "okta",
            Method::GET,
            &format!("{group}?excludedAttributes=members"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.get("members").is_none(), "{}", reply.body);
    assert_eq!(reply.body["displayName"], "Crew 3");
}
both_backends!(
    patch_answers_projected,
    patch_answers_are_projected_by_the_query
);
