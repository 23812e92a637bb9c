//! Hostile filters and PATCH paths from a client holding a valid token
//! (issue #16), over real HTTP on both engines: what used to overflow a
//! worker's stack, answer 500 or cut a value at a NUL now answers 400
//! `invalidFilter` with the reason, or the right 200, and the server keeps
//! serving. Proptests drive deep, long and random filters and PATCH bodies
//! through the same server.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tyk_idsync::scim::ScimSourceConfig;
use tyk_idsync::scim::filter::limits::{MAX_CLAUSES, MAX_DEPTH};
use tyk_idsync::scim::tokens::issue_for_source;
use tyk_idsync::scim::wire::{PATCH_SCHEMA, SEARCH_SCHEMA};

use crate::both_backends;
use crate::support::Db;
use crate::support::app::{TestApp, spawn_app_with, test_config};

/// The whole application on a random port with SCIM on for one source
/// and its default 1 MiB body limit (so 190 KB `.search` bodies reach the
/// filter parser), and a token of that source.
struct Api {
    app: TestApp,
    base: String,
    token: String,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

/// The first characters of a long request, for failure messages.
fn brief(text: &str) -> String {
    let head: String = text.chars().take(120).collect();
    format!("{head:?}… ({} bytes)", text.len())
}

impl Api {
    async fn start(db: Db) -> Self {
        let (mut config, guard) = test_config(db).await;
        config.scim.enabled = true;
        config
            .scim
            .sources
            .insert("okta".into(), ScimSourceConfig::default());
        let app = spawn_app_with(config, guard).await;
        let issued = issue_for_source(
            &app.state.store,
            &app.state.config.scim,
            "okta",
            Duration::from_secs(3600),
            None,
        )
        .await
        .expect("token");
        let base = app.url("/scim/v2");
        Self {
            app,
            base,
            token: issued.token,
        }
    }

    async fn send_text(&self, method: Method, path: &str, body: Option<String>) -> Reply {
        let mut request = self
            .app
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json");
        if let Some(body) = body {
            request = request.body(body);
        }
        read(request.send().await.expect("request")).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send_text(method, path, body.map(|b| b.to_string()))
            .await
    }

    /// `GET {path}?filter=...&...`, percent-encoded. URIs are limited to
    /// 64 KiB by HTTP libraries, so longer filters come by `.search`.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        let response = self
            .app
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    async fn get_filter(&self, path: &str, filter: &str) -> Reply {
        self.get(path, &[("filter", filter)]).await
    }

    /// `POST {path}` (a `.search` endpoint) with a SearchRequest body.
    async fn search(&self, path: &str, filter: &str) -> Reply {
        let body = json!({"schemas": [SEARCH_SCHEMA], "filter": filter});
        self.send(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, id: &str, ops: Value) -> Reply {
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
        self.send(Method::PATCH, &format!("/Users/{id}"), Some(body))
            .await
    }

    async fn create_user(&self, user_name: &str) -> Reply {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "externalId": format!("ext-{user_name}"),
            "emails": [{"value": format!("{user_name}@example.org"), "type": "work"}],
            "active": true
        });
        self.send(Method::POST, "/Users", Some(body)).await
    }

    async fn created(&self, user_name: &str) -> String {
        let reply = self.create_user(user_name).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().expect("id").to_string()
    }

    /// The server still answers a plain list.
    async fn assert_alive(&self) {
        let reply = self.send(Method::GET, "/Users?count=1", None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, body }
}

fn assert_invalid_filter(reply: &Reply, reason: &str, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        reply.body
    );
    assert_eq!(reply.body["scimType"], json!("invalidFilter"), "{what}");
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(reason), "{what}: {detail}");
}

/// The user names a list reply holds, sorted.
fn user_names(reply: &Reply) -> Vec<String> {
    let mut names: Vec<String> = reply.body["Resources"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r["userName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn chain(n: usize, joiner: &str, clause: impl Fn(usize) -> String) -> String {
    (0..n).map(clause).collect::<Vec<_>>().join(joiner)
}

/// Reproducer 2: one request used to overflow a worker's stack and abort
/// the whole service.
async fn deep_and_long_filters_are_refused(db: Db) {
    let api = Api::start(db).await;
    let id = api.created("ada").await;
    let deep = |n: usize| format!("{}userName eq \"x\"{}", "(".repeat(n), ")".repeat(n));
    let deep_filters = [
        ("1,700 parentheses", deep(1_700)),
        ("2,000 not(", format!("{}userName pr", "not(".repeat(2_000))),
        (
            "2,000 emails[",
            format!("{}value pr", "emails[".repeat(2_000)),
        ),
        ("65 parentheses", deep(MAX_DEPTH + 1)),
    ];
    for (what, filter) in &deep_filters {
        for path in ["/Users", "/Groups"] {
            let reply = api.get_filter(path, filter).await;
            assert_invalid_filter(&reply, "deeper than 64", &format!("GET {path} {what}"));
        }
        for path in ["/Users/.search", "/Groups/.search", "/.search"] {
            let reply = api.search(path, filter).await;
            assert_invalid_filter(&reply, "deeper than 64", &format!("POST {path} {what}"));
        }
        api.assert_alive().await;
    }
    // Up to the limit, deep nesting is answered.
    let reply = api.get_filter("/Users", &deep(MAX_DEPTH)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // Flat chains of 10,000 clauses (~190 KB): too many clauses or bytes.
    for joiner in [" and ", " or "] {
        let long = chain(10_000, joiner, |i| format!("userName eq \"u{i}\""));
        assert!(long.len() > 180_000, "{}", long.len());
        for path in ["/Users/.search", "/.search"] {
            let reply = api.search(path, &long).await;
            assert_invalid_filter(&reply, "longer than 65536 bytes", "10k chain");
        }
        let short = chain(MAX_CLAUSES + 1, joiner, |i| format!("id eq \"{i}\""));
        let reply = api.get_filter("/Users", &short).await;
        assert_invalid_filter(&reply, "more than 1000", "GET 1,001 clauses");
        let reply = api.search("/.search", &short).await;
        assert_invalid_filter(&reply, "more than 1000", "POST /.search 1,001 clauses");
        api.assert_alive().await;
    }

    // PATCH paths with deep brackets and parentheses.
    let deep_paths = [
        format!(
            "emails[{}type eq \"work\"{}].value",
            "(".repeat(1_700),
            ")".repeat(1_700)
        ),
        format!("emails[{}type pr].value", "not(".repeat(2_000)),
        format!("emails{}", "[".repeat(2_000)),
        format!("{}]", "emails[".repeat(2_000)),
    ];
    for path in &deep_paths {
        for op in ["add", "replace", "remove"] {
            let reply = api
                .patch(&id, json!([{"op": op, "path": path, "value": "x"}]))
                .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{op}: {}",
                reply.body
            );
        }
        // As a key of a path-less operation's value.
        let reply = api
            .patch(&id, json!([{"op": "replace", "value": {path: "x"}}]))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        api.assert_alive().await;
    }
    let reply = api
        .patch(&id, json!([{"op": "remove", "path": deep_paths[0]}]))
        .await;
    assert_invalid_filter(&reply, "deeper than 64", "PATCH deep path");
    let reply = api.patch(
        &id,
        json!([{"op": "replace", "path": format!("emails[{}].value", chain(MAX_CLAUSES + 1, " or ", |i| format!("value eq \"{i}\""))), "value": "x"}]),
    )
    .await;
    assert_invalid_filter(&reply, "more than 1000", "PATCH long path");
    // The user is untouched and a sane PATCH still works.
    let reply = api.patch(
        &id,
        json!([{"op": "replace", "path": "((emails[((type eq \"work\"))].value))", "value": "x"}]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let reply = api.patch(
        &id,
        json!([{"op": "replace", "path": "emails[((type eq \"work\") and not (value pr and type eq \"home\"))].value", "value": "n@example.org"}]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["emails"][0]["value"], json!("n@example.org"));
}
both_backends!(
    scim_deep_and_long_filters_are_refused,
    deep_and_long_filters_are_refused
);

/// Reproducer 3: `or` chains of 999–6,000 clauses answered 500 (SQLite's
/// expression depth). Under the clause limit they are answered correctly
/// on both engines, in SQL; over it, refused.
async fn long_chains_are_answered_correctly(db: Db) {
    let api = Api::start(db).await;
    let names: Vec<String> = (0..12).map(|i| format!("user-{i:04}")).collect();
    for name in &names {
        api.created(name).await;
    }
    api.created("someone-else").await;
    // Clause i names user-i: the first 12 exist.
    let or_names = |n: usize| chain(n, " or ", |i| format!("userName eq \"user-{i:04}\""));
    for n in [999, MAX_CLAUSES] {
        let filter = or_names(n);
        let reply = api.get_filter("/Users", &filter).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {n}: {}", reply.body);
        assert_eq!(reply.body["totalResults"], json!(12), "GET {n}");
        assert_eq!(user_names(&reply), names, "GET {n}");
        let reply = api.search("/Users/.search", &filter).await;
        assert_eq!(reply.status, StatusCode::OK, "POST {n}: {}", reply.body);
        assert_eq!(user_names(&reply), names, "POST {n}");
        let reply = api.search("/.search", &filter).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "POST /.search {n}: {}",
            reply.body
        );
        assert_eq!(reply.body["totalResults"], json!(12), "POST /.search {n}");
    }
    // Sorted (so evaluated in memory after the SQL narrowing) and paged.
    let filter = or_names(999);
    let reply = api
        .get(
            "/Users",
            &[
                ("filter", filter.as_str()),
                ("sortBy", "userName"),
                ("sortOrder", "descending"),
                ("count", "3"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["totalResults"], json!(12));
    assert_eq!(reply.body["Resources"][0]["userName"], json!("user-0011"));

    // Every translated kind of clause, 999 of them, in one chain: LIKE
    // patterns, the e-mail subquery, ids, externalId.
    let mixed = chain(999, " or ", |i| match i % 6 {
        0 => format!("userName sw \"user-{:04}\"", i / 6),
        1 => format!("userName ew \"-{:04}\"", i / 6),
        2 => format!("userName co \"er-{:04}\"", i / 6),
        3 => format!("emails.value eq \"user-{:04}@example.org\"", i / 6),
        4 => format!("externalId eq \"ext-user-{:04}\"", i / 6),
        _ => format!("id eq \"{i}\""),
    });
    let reply = api.get_filter("/Users", &mixed).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(user_names(&reply), names);
    // 999 `and`ed clauses that all hold for user-0003 only.
    let and_chain = chain(999, " and ", |i| match i % 3 {
        0 => "userName sw \"user-\"".to_string(),
        1 => "userName ew \"3\"".to_string(),
        _ => "active eq true".to_string(),
    });
    let reply = api.search("/Users/.search", &and_chain).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(user_names(&reply), vec!["user-0003".to_string()]);

    // The deepest shape the limits allow, with as many clauses as they
    // allow: 64 nested groups of 15 `or`ed clauses, all translated.
    let mut nested = "userName eq \"user-0000\"".to_string();
    for level in 0..MAX_DEPTH {
        let siblings = chain(14, " or ", |i| {
            format!("userName eq \"user-{:04}\"", (level + i) % 12)
        });
        nested = format!("({siblings} or {nested})");
    }
    let reply = api.get_filter("/Users", &nested).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(user_names(&reply), names);

    for n in [1_500, 6_000] {
        let filter = chain(n, " or ", |_| "id pr".to_string());
        let reply = api.search("/Users/.search", &filter).await;
        assert_invalid_filter(&reply, "more than 1000", &format!("{n} clauses"));
    }
    let filter = chain(1_500, " or ", |i| format!("id eq \"{i}\""));
    let reply = api.get_filter("/Users", &filter).await;
    assert_invalid_filter(&reply, "more than 1000", "GET 1,500 clauses");
    api.assert_alive().await;
}
both_backends!(
    scim_long_chains_are_answered_correctly,
    long_chains_are_answered_correctly
);

/// Reproducer 5: SQLite's LIKE read its pattern only up to a NUL, so
/// `userName ew "\u0000" + "0"` matched every user; PostgreSQL cannot bind
/// a NUL at all. Control characters are now matched literally on both.
async fn control_characters_are_matched_literally(db: Db) {
    let api = Api::start(db).await;
    for name in ["plain0", "user-10", "tab\t0", "ctl\u{1}0"] {
        api.created(name).await;
    }
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("ew NUL+0", "userName ew \"\\u00000\"".into(), vec![]),
        ("sw NUL", "userName sw \"\\u0000\"".into(), vec![]),
        ("co NUL", "userName co \"\\u0000\"".into(), vec![]),
        ("eq NUL", "userName eq \"plain0\\u0000\"".into(), vec![]),
        (
            "externalId NUL",
            "externalId eq \"ext-plain0\\u0000\"".into(),
            vec![],
        ),
        ("e-mail NUL", "emails.value eq \"\\u0000\"".into(), vec![]),
        ("id NUL", "id eq \"\\u0000\"".into(), vec![]),
        (
            "NUL or a match",
            "userName co \"\\u0000\" or userName eq \"plain0\"".into(),
            vec!["plain0"],
        ),
        (
            "NUL and a match",
            "userName ew \"0\" and not (userName co \"\\u0000\")".into(),
            vec!["ctl\u{1}0", "plain0", "tab\t0", "user-10"],
        ),
        (
            "ew U+0001 0",
            "userName ew \"\\u00010\"".into(),
            vec!["ctl\u{1}0"],
        ),
        ("co tab", "userName co \"\\t\"".into(), vec!["tab\t0"]),
        (
            "sw control",
            "userName sw \"ctl\\u0001\"".into(),
            vec!["ctl\u{1}0"],
        ),
    ];
    for (what, filter, expected) in &cases {
        for reply in [
            api.get_filter("/Users", filter).await,
            api.search("/Users/.search", filter).await,
        ] {
            assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.body);
            assert_eq!(user_names(&reply), *expected, "{what}");
            assert_eq!(reply.body["totalResults"], json!(expected.len()), "{what}");
        }
    }
    // Where the store can hold a NUL (SQLite; PostgreSQL text cannot), the
    // NUL is matched as a character, not as the end of the value.
    if api.create_user("nul\u{0}0").await.status == StatusCode::CREATED {
        for filter in [
            "userName ew \"\\u00000\"",
            "userName co \"l\\u0000\"",
            "userName eq \"NUL\\u00000\"",
        ] {
            let reply = api.get_filter("/Users", filter).await;
            assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.body);
            assert_eq!(user_names(&reply), vec!["nul\u{0}0"], "{filter}");
        }
    }
    // A value filter in a PATCH path compares literally too.
    let id = api.created("ada").await;
    let reply = api
        .patch(
            &id,
            json!([{"op": "replace", "path": "emails[value sw \"\\u0000\"].value", "value": "x"}]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["scimType"], json!("noTarget"));
    api.assert_alive().await;
}
both_backends!(
    scim_control_characters_are_matched_literally,
    control_characters_are_matched_literally
);

/// Pieces that nest, chain and quote, joined into deep, long and random
/// filters (most of them invalid).
fn hostile_filter() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("(".to_string()),
        3 => Just(")".to_string()),
        2 => Just("emails[".to_string()),
        2 => Just("]".to_string()),
        3 => Just("not ".to_string()),
        3 => Just(" and ".to_string()),
        3 => Just(" or ".to_string()),
        4 => Just("userName eq \"user-0001\"".to_string()),
        2 => Just("type pr".to_string()),
        2 => "[a-zA-Z.:$]{1,12} (eq|ne|co|sw|ew|gt|ge|lt|le|pr|xx) ".prop_map(|s| s),
        2 => "\"(\\\\u0000|\\\\\"|[^\"\\\\]){0,6}\"".prop_map(|s| s),
        1 => "[\\x00-\\x1f\\]\\[()\"\\\\]{1,4}".prop_map(|s| s),
        1 => (1usize..3_000).prop_map(|n| "(".repeat(n)),
        1 => (1usize..3_000).prop_map(|n| "not(".repeat(n)),
        1 => (1usize..3_000).prop_map(|n| " or id eq \"x\"".repeat(n)),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// Random JSON, up to `depth` levels (past serde_json's 128 when deep).
fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 4 * depth, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("(value|type|primary|[a-z]{1,6})", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn patch_path() -> impl Strategy<Value = String> {
    prop_oneof![
        "(userName|active|name\\.givenName|emails|members|title|urn:ietf:params:scim:schemas:extension:enterprise:2\\.0:User:department)",
        hostile_filter().prop_map(|f| format!("emails[{f}].value")),
        hostile_filter().prop_map(|f| format!("emails[{f}]")),
        hostile_filter(),
    ]
}

fn patch_body() -> impl Strategy<Value = Value> {
    let op = (
        "(add|replace|remove|Replace|jump)",
        proptest::option::of(patch_path()),
        proptest::option::of(json_value(6)),
    )
        .prop_map(|(op, path, value)| {
            let mut op = json!({"op": op});
            if let Some(path) = path {
                op["path"] = json!(path);
            }
            if let Some(value) = value {
                op["value"] = value;
            }
            op
        });
    proptest::collection::vec(op, 0..4).prop_map(Value::Array)
}

/// Nested JSON `depth` levels deep, as a string (serde_json refuses past
/// 128 levels: a 400, never a crash).
fn deep_json(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Random filters by GET and `.search` and random PATCH bodies, through a
/// real server on a multi-threaded runtime (worker stacks as in release):
/// every answer is 2xx or 4xx, and the server keeps answering.
fn hostile_requests_never_crash(db: Db) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let api = runtime.block_on(Api::start(db));
    let id = runtime.block_on(api.created("user-0001"));
    let answered = |what: &str, reply: &Reply| {
        assert!(
            reply.status.is_success() || reply.status.is_client_error(),
            "{}: {} {}",
            brief(what),
            reply.status,
            reply.body
        );
    };
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(hostile_filter(), patch_body()), |(filter, ops)| {
            runtime.block_on(async {
                // HTTP libraries refuse URIs over 64 KiB: those go by POST.
                if filter.len() * 3 < 60_000 {
                    answered(&filter, &api.get_filter("/Users", &filter).await);
                    answered(&filter, &api.get_filter("/Groups", &filter).await);
                }
                answered(&filter, &api.search("/.search", &filter).await);
                answered(&filter, &api.search("/Users/.search", &filter).await);
                answered(&ops.to_string(), &api.patch(&id, ops.clone()).await);
                api.assert_alive().await;
            });
            Ok(())
        })
        .map_err(|e| brief(&e.to_string()))
        .expect("every hostile request answered with 2xx/4xx");
    runtime.block_on(async {
        let body = format!(
            "{{\"schemas\": [\"{PATCH_SCHEMA}\"], \"Operations\": [{{\"op\": \"add\", \"path\": \"title\", \"value\": {}}}]}}",
            deep_json(5_000)
        );
        let reply = api
            .send_text(Method::PATCH, &format!("/Users/{id}"), Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        api.assert_alive().await;
    });
}

mod scim_hostile_requests_never_crash {
    #[test]
    fn sqlite() {
        super::hostile_requests_never_crash(crate::support::Db::Sqlite);
    }
    #[test]
    fn postgres() {
        super::hostile_requests_never_crash(crate::support::Db::Postgres);
    }
}
