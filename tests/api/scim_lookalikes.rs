//! Look-alike names and invalid e-mails (security issue #16, reproducers 4
//! and 9): userName and group displayName are unique per source after
//! Unicode NFKC and full case folding (stored as sent), e-mails are merged
//! and compared by the same key, and an address that is not one is stored
//! but never sent to Tyk and is reported in `/admin/v1/status`.

use pretty_assertions::assert_eq;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tyk_idsync::domain::{SourceName, Timestamp, fold_key};
use tyk_idsync::store::{identities, rekey};

use crate::both_backends;
use crate::support::scim::ScimServer;
use crate::support::stack::{scim_user, spawn_stack};
use crate::support::{Db, fresh_database_url, stored_user};

const JOSE_NFC: &str = "Jos\u{e9}";
const JOSE_NFD: &str = "Jose\u{301}";

/// (first, look-alike sent second): the second is the same name.
const LOOK_ALIKES: [(&str, &str); 3] = [
    (JOSE_NFC, JOSE_NFD),
    ("ｊｏｓｅ", "jose"),
    ("Straße", "STRASSE"),
];

fn user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "emails": [{"value": "someone@example.org", "primary": true}],
    })
}

fn group(display_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": display_name,
    })
}

fn patch(path: &str, value: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": path, "value": value}],
    })
}

fn assert_uniqueness(reply: &crate::support::scim::Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::CONFLICT, "{what}: {}", reply.body);
    assert_eq!(reply.body["scimType"], json!("uniqueness"), "{what}");
    assert_eq!(reply.body["status"], json!("409"), "{what}");
}

async fn created(server: &ScimServer, source: &str, path: &str, body: Value) -> String {
    let reply = server.send(source, Method::POST, path, Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().expect("id").to_string()
}

/// `filter=attr eq "value"` on `path`; the matching names.
async fn filter_eq(server: &ScimServer, path: &str, attr: &str, value: &str) -> Vec<String> {
    let filter = format!("{attr} eq \"{value}\"");
    let query: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let reply = server
        .send("okta", Method::GET, &format!("{path}?filter={query}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["Resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r[attr].as_str().expect("name").to_string())
        .collect()
}

async fn look_alike_user_names_are_one_name(db: Db) {
    let server = ScimServer::start(db).await;
    for (first, second) in LOOK_ALIKES {
        let id = created(&server, "okta", "/Users", user(first)).await;
        let reply = server
            .send("okta", Method::POST, "/Users", Some(user(second)))
            .await;
        assert_uniqueness(&reply, &format!("POST {second:?} after {first:?}"));
        // Stored as sent: the original spelling, byte for byte.
        let got = server
            .send("okta", Method::GET, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(got.body["userName"], json!(first));
        // `userName` is caseExact=false: the look-alike finds it.
        assert_eq!(
            filter_eq(&server, "/Users", "userName", second).await,
            vec![first.to_string()]
        );
    }
    assert_eq!(
        filter_eq(&server, "/Users", "userName", "STRASSE").await,
        vec!["Straße".to_string()]
    );

    // PUT and PATCH to a look-alike of a taken name are refused too.
    let other = created(&server, "okta", "/Users", user("other")).await;
    let reply = server
        .send(
            "okta",
            Method::PUT,
            &format!("/Users/{other}"),
            Some(user("strasse")),
        )
        .await;
    assert_uniqueness(&reply, "PUT userName strasse");
    let reply = server
        .send(
            "okta",
            Method::PATCH,
            &format!("/Users/{other}"),
            Some(patch("userName", "ＳＴＲＡＳＳＥ")),
        )
        .await;
    assert_uniqueness(&reply, "PATCH userName ＳＴＲＡＳＳＥ");
    let got = server
        .send("okta", Method::GET, &format!("/Users/{other}"), None)
        .await;
    assert_eq!(got.body["userName"], json!("other"), "nothing changed");

    // A different name is still a different name.
    created(&server, "okta", "/Users", user("josé2")).await;
    // The server keeps serving.
    let list = server.send("okta", Method::GET, "/Users", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["totalResults"], json!(5), "{}", list.body);
}
both_backends!(
    scim_look_alike_user_names,
    look_alike_user_names_are_one_name
);

async fn look_alike_group_names_are_one_name(db: Db) {
    let server = ScimServer::start(db).await;
    for (first, second) in LOOK_ALIKES {
        let id = created(&server, "okta", "/Groups", group(first)).await;
        let reply = server
            .send("okta", Method::POST, "/Groups", Some(group(second)))
            .await;
        assert_uniqueness(&reply, &format!("POST group {second:?} after {first:?}"));
        let got = server
            .send("okta", Method::GET, &format!("/Groups/{id}"), None)
            .await;
        assert_eq!(got.body["displayName"], json!(first));
        assert_eq!(
            filter_eq(&server, "/Groups", "displayName", second).await,
            vec![first.to_string()]
        );
    }
    let other = created(&server, "okta", "/Groups", group("Other")).await;
    let reply = server
        .send(
            "okta",
            Method::PUT,
            &format!("/Groups/{other}"),
            Some(group("STRASSE")),
        )
        .await;
    assert_uniqueness(&reply, "PUT displayName STRASSE");
    let reply = server
        .send(
            "okta",
            Method::PATCH,
            &format!("/Groups/{other}"),
            Some(patch("displayName", JOSE_NFD)),
        )
        .await;
    assert_uniqueness(&reply, "PATCH displayName José (NFD)");
    let list = server.send("okta", Method::GET, "/Groups", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["totalResults"], json!(4), "{}", list.body);
}
both_backends!(
    scim_look_alike_group_names,
    look_alike_group_names_are_one_name
);

async fn each_source_has_its_own_names(db: Db) {
    let server = ScimServer::start(db).await;
    created(&server, "okta", "/Users", user("jose")).await;
    created(&server, "entra", "/Users", user("ＪＯＳＥ")).await;
    created(&server, "okta", "/Groups", group("Straße")).await;
    created(&server, "entra", "/Groups", group("STRASSE")).await;
    let reply = server
        .send("entra", Method::POST, "/Users", Some(user("JOSE")))
        .await;
    assert_uniqueness(&reply, "entra's second jose");
}
both_backends!(
    scim_names_are_unique_per_source,
    each_source_has_its_own_names
);

/// Tyk users of the stack's org whose login folds to `key`.
fn tyk_logins_folding_to(stack: &crate::support::stack::Stack, key: &str) -> Vec<String> {
    stack
        .standin
        .users()
        .into_iter()
        .filter(|u| u.org_id == stack.org_id && fold_key(&u.email_address) == key)
        .map(|u| u.email_address)
        .collect()
}

async fn look_alike_emails_are_one_tyk_user(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers", "entra:Admins"])
        .await;
    // One person: e-mail in NFD with a capital in one source, all capitals
    // (NFC) in the other.
    let a = stack.create_user("jose-a", "Jose\u{301}@x.io").await;
    stack.create_group("Developers", &[&a]).await;
    let (status, b) = stack
        .scim(
            &stack.entra_token,
            Method::POST,
            "/Users",
            scim_user("jose-b", "JOS\u{c9}@X.IO"),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let key = "jos\u{e9}@x.io";
    stack
        .until("José is in Tyk", |s| s.in_group(key, "API Developers"))
        .await;
    stack.reconcile().await;
    assert_eq!(tyk_logins_folding_to(&stack, key), vec![key.to_string()]);
    let creates = stack
        .tyk_writes()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/users")
        .count();
    assert_eq!(creates, 1, "one creation for one person");
    // The mapping's explanation merges both identities under the key.
    let (status, explained) = stack
        .admin_request(Method::GET, "/admin/v1/explain/JOSE%CC%81@x.io")
        .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["email"], json!(key));
    assert_eq!(
        explained["identities"].as_array().map(Vec::len),
        Some(2),
        "{explained}"
    );
}
both_backends!(
    scim_look_alike_emails_merge,
    look_alike_emails_are_one_tyk_user
);

async fn invalid_emails_never_reach_tyk_and_are_reported(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let bad = stack.create_user("bad", "not-an-email").await;
    // A NUL never gets this far (400 at the SCIM edge, tests/api/scim_nul.rs);
    // another control character is stored and reported.
    let nul = stack.create_user("nul", "nu\u{7}l@x.io").await;
    let good = stack.create_user("good", "good@x.io").await;
    stack.create_group("Developers", &[&bad, &nul, &good]).await;
    stack
        .until("good is in Tyk", |s| {
            s.in_group("good@x.io", "API Developers")
        })
        .await;
    stack.reconcile().await;
    stack.until_outbox_empty(crate::support::stack::UNTIL).await;

    let logins: Vec<String> = stack
        .standin
        .users()
        .into_iter()
        .map(|u| u.email_address)
        .collect();
    assert!(
        !logins
            .iter()
            .any(|l| l.contains("not-an-email") || l.contains('\u{7}') || l.contains("nul")),
        "{logins:?}"
    );
    for request in stack.tyk_writes() {
        let body = request.body.map(|b| b.to_string()).unwrap_or_default();
        assert!(
            !body.contains("not-an-email") && !body.contains("\\u0007"),
            "{} {}: {body}",
            request.method,
            request.path
        );
    }
    // Stored as sent: the SCIM document keeps the e-mail.
    let (status, stored) = stack
        .scim(
            &stack.okta_token,
            Method::GET,
            &format!("/Users/{nul}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["emails"][0]["value"], json!("nu\u{7}l@x.io"));

    let (status, body) = stack.admin_request(Method::GET, "/admin/v1/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invalid_email"]["count"], json!(2), "{body}");
    let sample: Vec<(String, String)> = body["invalid_email"]["sample"]
        .as_array()
        .expect("sample")
        .iter()
        .map(|p| {
            assert_eq!(p["source"], json!("okta"));
            (
                p["user_name"].as_str().expect("name").to_string(),
                p["problem"].as_str().expect("problem").to_string(),
            )
        })
        .collect();
    assert_eq!(
        sample,
        vec![
            ("bad".to_string(), "syntax".to_string()),
            ("nul".to_string(), "control_character".to_string()),
        ]
    );
    // Fixing the address provisions the person.
    let (status, fixed) = stack
        .scim(
            &stack.okta_token,
            Method::PUT,
            &format!("/Users/{bad}"),
            scim_user("bad", "bad@x.io"),
        )
        .await;
    assert_eq!(status, 200, "{fixed}");
    stack
        .until("bad is in Tyk once fixed", |s| {
            s.in_group("bad@x.io", "API Developers")
        })
        .await;
    let (_, body) = stack.admin_request(Method::GET, "/admin/v1/status").await;
    assert_eq!(body["invalid_email"]["count"], json!(1), "{body}");
}
both_backends!(
    scim_invalid_emails_are_not_provisioned,
    invalid_emails_never_reach_tyk_and_are_reported
);

/// A database written before the keys were folded gets them re-keyed once,
/// on the next start; look-alikes already stored are both kept and named.
async fn existing_rows_are_re_keyed_once(db: Db) {
    let (url, _dir) = fresh_database_url(db).await;
    let options = tyk_idsync::store::StoreOptions::new(url);
    let store = tyk_idsync::store::Store::connect(&options)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let okta = SourceName::new("okta");
    let straße = stored_user("okta", "Straße", "jose\u{301}@x.io");
    let strasse = stored_user("okta", "STRASSE", "strasse@x.io");
    let bad = stored_user("okta", "bad", "not-an-email");
    let nfd = stored_user("entra", JOSE_NFD, "JOSE\u{301}@x.io");
    {
        let mut tx = store.begin_write().await.expect("tx");
        // Rows as the old code wrote them: keys and e-mails `lower()`ed.
        identities::insert_user(&mut tx, &straße, &["Jose\u{301}@x.io".into()])
            .await
            .expect("insert");
        let old_keys = [
            (&straße, "straße", "jose\u{301}@x.io"),
            (&bad, "bad", "not-an-email"),
            (&nfd, "jose\u{301}", "jose\u{301}@x.io"),
        ];
        identities::insert_user(&mut tx, &bad, &[])
            .await
            .expect("insert");
        identities::insert_user(&mut tx, &nfd, &[])
            .await
            .expect("insert");
        for (user, lc, email) in old_keys {
            sqlx::query(
                "UPDATE identity_users SET user_name_lc = $1, email = $2, email_problem = NULL \
                 WHERE id = $3",
            )
            .bind(lc)
            .bind(email)
            .bind(user.id.to_string())
            .execute(&mut **tx)
            .await
            .expect("old keys");
        }
        sqlx::query("UPDATE identity_user_emails SET value_lc = $1 WHERE user_id = $2")
            .bind("jose\u{301}@x.io")
            .bind(straße.id.to_string())
            .execute(&mut **tx)
            .await
            .expect("old e-mail key");
        // A managed Tyk user recorded under an old key.
        let managed = tyk_idsync::sync::ManagedUser {
            org_id: "org".into(),
            tyk_user_id: "tyk-1".into(),
            email: "x".into(),
            managed_since: Timestamp(1),
            adopted: false,
            deactivated_at: None,
            access_key_reset_at: None,
        };
        tyk_idsync::store::sync_state::record_user(&mut tx, &managed)
            .await
            .expect("managed");
        sqlx::query("UPDATE sync_managed_users SET email = $1 WHERE tyk_user_id = 'tyk-1'")
            .bind("jose\u{301}@x.io")
            .execute(&mut **tx)
            .await
            .expect("old managed key");
        // A look-alike the old keys let in.
        identities::insert_user(&mut tx, &strasse, &[])
            .await
            .expect("look-alike");
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(rekey::REKEY_SETTING)
            .execute(&mut **tx)
            .await
            .expect("as before the upgrade");
        tx.commit().await.expect("commit");
    }
    store.migrate().await.expect("re-key");

    let mut conn = store.pool().acquire().await.expect("conn");
    // Both look-alikes are kept; the one already holding the key keeps it.
    let found = identities::find_user_by_user_name(&mut conn, &okta, "strasse")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, strasse.id);
    assert!(
        identities::get_user(&mut conn, &okta, straße.id)
            .await
            .expect("get")
            .is_some()
    );
    let collisions = rekey::fold_collisions(&mut conn).await.expect("collisions");
    assert_eq!(collisions.len(), 1, "{collisions:?}");
    assert!(
        collisions[0].contains(&straße.id.to_string())
            && collisions[0].contains(&strasse.id.to_string()),
        "{collisions:?}"
    );
    // Keys and e-mails re-folded (composed, case-folded).
    let entra = SourceName::new("entra");
    let jose = identities::find_user_by_user_name(&mut conn, &entra, JOSE_NFC)
        .await
        .expect("find")
        .expect("NFD José found by its NFC spelling");
    assert_eq!(jose.user_name, JOSE_NFD, "stored as sent");
    assert_eq!(jose.email.as_deref(), Some("jos\u{e9}@x.io"));
    let by_email = identities::users_by_email(&mut conn, "JOSÉ@x.io")
        .await
        .expect("by email");
    assert_eq!(by_email.len(), 2, "{by_email:?}");
    let bad = identities::get_user(&mut conn, &okta, bad.id)
        .await
        .expect("get")
        .expect("bad");
    assert_eq!(bad.email, None);
    assert_eq!(
        bad.email_problem,
        Some(tyk_idsync::domain::EmailProblem::Syntax)
    );
    let (count, _) = identities::users_with_email_problem(&mut conn, 10)
        .await
        .expect("problems");
    assert_eq!(count, 1);
    let indexed: Vec<String> =
        sqlx::query_scalar("SELECT value_lc FROM identity_user_emails WHERE user_id = $1")
            .bind(straße.id.to_string())
            .fetch_all(&mut *conn)
            .await
            .expect("index");
    assert_eq!(indexed, vec!["jos\u{e9}@x.io".to_string()]);
    let managed = tyk_idsync::store::sync_state::find_user_by_email(&mut conn, "org", "JOSÉ@x.io")
        .await
        .expect("managed")
        .expect("found by its folded e-mail");
    assert_eq!(managed.tyk_user_id, "tyk-1");
    assert_eq!(managed.email, "jos\u{e9}@x.io");
    drop(conn);
    // Once only: a later start leaves the report and the rows alone.
    store.migrate().await.expect("again");
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(
        rekey::fold_collisions(&mut conn).await.expect("collisions"),
        collisions
    );
}
both_backends!(store_rekeys_existing_rows, existing_rows_are_re_keyed_once);

/// LDAP logins that fold to the same name clash as logins differing only
/// in case always did: the poll fails on the store's uniqueness, applies
/// nothing, and the first login stays; a look-alike never becomes a second
/// user.
async fn ldap_look_alike_logins_clash(db: Db) {
    use secrecy::SecretString;
    use tyk_idsync::ldap::config::LdapSourceConfig;
    use tyk_idsync::ldap::poller::{PollKind, run_once};
    use tyk_idsync::store::StoreError;

    use crate::support::slapd::{SUFFIX, Slapd};

    let (store, _guard) = crate::support::fresh_store(db).await;
    let slapd = Slapd::start();
    let person = |uid: &str, login: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
             cn: {uid}\nsn: S\ndescription: {login}\nmail: {uid}@example.org\n\n"
        )
    };
    slapd.add(&person("j1", JOSE_NFC));
    let cfg = LdapSourceConfig {
        url: slapd.url(),
        bind_dn: slapd.bind_dn().into(),
        user_base: format!("ou=people,{SUFFIX}"),
        group_base: format!("ou=groups,{SUFFIX}"),
        login_attribute: "description".into(),
        max_removal_min: 0,
        ..LdapSourceConfig::default()
    };
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("ldap-corp");
    run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("first poll");
    for (uid, look_alike) in [("j2", JOSE_NFD), ("j3", "JOSÉ"), ("j4", "ｊｏｓé")] {
        slapd.add(&person(uid, look_alike));
        let err = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
            .await
            .expect_err("a look-alike login clashes");
        assert!(
            matches!(
                err,
                tyk_idsync::ldap::LdapError::Store(StoreError::Conflict {
                    entity: "userName",
                    ..
                })
            ),
            "{look_alike:?}: {err}"
        );
        slapd.delete(&format!("uid={uid},ou=people,{SUFFIX}"));
    }
    let mut conn = store.pool().acquire().await.expect("conn");
    let logins: Vec<String> = identities::list_users(&mut conn, &source)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.user_name)
        .collect();
    assert_eq!(logins, vec![JOSE_NFC.to_string()]);
}
both_backends!(ldap_look_alike_logins, ldap_look_alike_logins_clash);
