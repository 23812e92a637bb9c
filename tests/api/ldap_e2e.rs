//! A real slapd → tyk-idsync (scheduler, admin routes) → the Tyk stand-in:
//! users land in the mapped group, move with their memberships, are
//! deactivated when they leave the directory, and an outage or a held
//! poll never removes anyone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::ldap_groups::{ldap_config, person};
use crate::support::Db;
use crate::support::app::ADMIN_TOKEN;
use crate::support::slapd::{SUFFIX, Slapd};
use crate::support::stack::{Stack, spawn_stack_with, stack_config};

fn seed() -> String {
    let mut ldif: String = (0..5).map(|i| person(&format!("u{i}"), "")).collect();
    let members: String = (0..5)
        .map(|i| format!("member: uid=u{i},ou=people,{SUFFIX}\n"))
        .collect();
    ldif.push_str(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\n{members}\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\n\
         member: cn=nobody\n\n"
    ));
    ldif
}

async fn poll(stack: &Stack, source: &str, body: Value) -> (StatusCode, Value) {
    let response = stack
        .app
        .client
        .post(
            stack
                .app
                .url(&format!("/admin/v1/ldap/sources/{source}/poll")),
        )
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("poll request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn in_group(stack: &Stack, email: &str, group: &str) -> bool {
    match (stack.tyk_user(email), stack.tyk_group(group)) {
        (Some(u), Some(g)) => u.group_id == g.id && u.active,
        _ => false,
    }
}

fn active(stack: &Stack, email: &str) -> Option<bool> {
    stack.tyk_user(email).map(|u| u.active)
}

async fn ldap_to_tyk(db: Db) {
    let mut slapd = Slapd::start();
    slapd.add(&seed());
    let (mut config, guard, standin, org_id) = stack_config(db).await;
    let mut source = ldap_config(&slapd);
    source.interval = Duration::from_secs(3600);
    source.jitter = Duration::ZERO;
    source.max_removal_percent = 30;
    source.max_removal_min = 0;
    config.ldap.sources.insert("corp".into(), source);
    let stack = spawn_stack_with(config, guard, standin, org_id).await;
    stack.add_rule("Engineers", 10, &["corp:eng"]).await;
    stack.add_rule("Operators", 20, &["corp:ops"]).await;

    // The first poll runs at start; the rules and the poll both wake the sync.
    stack
        .until("u0..u4 are Engineers", |s| {
            (0..5).all(|i| in_group(s, &format!("u{i}@example.org"), "Engineers"))
        })
        .await;
    let sources = stack.app.admin_get("/admin/v1/ldap/sources").await;
    assert_eq!(sources.status(), 200);
    let sources: Value = sources.json().await.expect("json");
    assert_eq!(sources["sources"][0]["source"], "corp");
    assert!(
        sources["sources"][0]["state"]["lastSuccessAt"].is_i64(),
        "{sources}"
    );
    assert!(
        !sources.to_string().contains(slapd.bind_password()) || slapd.bind_password() == "admin",
        "never the bind password"
    );

    let status: Value = stack
        .app
        .admin_get("/admin/v1/status")
        .await
        .json()
        .await
        .expect("status");
    let corp = &status["sources"]["corp"];
    assert_eq!(
        (corp["kind"].as_str(), corp["users"].as_i64()),
        (Some("ldap"), Some(5)),
        "{status}"
    );
    assert!(
        corp["last_poll"].is_string() && !corp["poll_held"].as_bool().unwrap_or(true),
        "{status}"
    );
    let metrics = stack.app.metrics_text().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tyk_idsync_last_success_timestamp_seconds")
                && l.contains("source=\"corp\"")
                && l.contains("kind=\"poll\"")
        ),
        "{metrics}"
    );

    // Moved when memberships change: u0 leaves eng for ops.
    slapd.modify(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: uid=u0,ou=people,{SUFFIX}\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: uid=u0,ou=people,{SUFFIX}\n"
    ));
    let (status, body) = poll(&stack, "corp", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["groups"]["membersAdded"], 1, "{body}");
    stack
        .until("u0 moved to Operators", |s| {
            in_group(s, "u0@example.org", "Operators")
        })
        .await;

    // Deactivated when removed from the directory (full poll, 1 of 5 ≤ 30%).
    slapd.delete(&format!("uid=u4,ou=people,{SUFFIX}"));
    let (status, body) = poll(&stack, "corp", json!({"full": true})).await;
    assert_eq!(status, 200, "{body}");
    stack
        .until("u4 deactivated", |s| {
            active(s, "u4@example.org") == Some(false)
        })
        .await;

    // slapd down: the poll fails with 502, nobody is touched.
    slapd.kill();
    let (status, body) = poll(&stack, "corp", json!({"full": true})).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!((1..4).all(|i| active(&stack, &format!("u{i}@example.org")) == Some(true)));
    slapd.restart();

    // Removing 2 of 4 (50% > 30%) is held, reported, and applied on force.
    slapd.delete(&format!("uid=u2,ou=people,{SUFFIX}"));
    slapd.delete(&format!("uid=u3,ou=people,{SUFFIX}"));
    let (status, body) = poll(&stack, "corp", json!({"full": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["held"]["removals"], 2, "{body}");
    let sources: Value = stack
        .app
        .admin_get("/admin/v1/ldap/sources")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(sources["sources"][0]["state"]["held"]["removals"], 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        active(&stack, "u2@example.org"),
        Some(true),
        "held: untouched"
    );
    let (status, body) = poll(&stack, "corp", json!({"full": true, "force": true})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["report"]["held"].is_null(), "{body}");
    stack
        .until("u2 and u3 deactivated", |s| {
            active(s, "u2@example.org") == Some(false) && active(s, "u3@example.org") == Some(false)
        })
        .await;
    assert!(in_group(&stack, "u1@example.org", "Engineers"));

    let (status, _) = poll(&stack, "nope", json!({})).await;
    assert_eq!(status, 404);
}
both_backends!(ldap_e2e, ldap_to_tyk);

/// An LDAP person without `givenName` still gets a Tyk first name: the
/// first word of `cn` (the display name when `displayName` is absent).
async fn ldap_person_without_given_name_gets_one_from_cn(db: Db) {
    let slapd = Slapd::start();
    slapd.add(&format!(
        "dn: uid=wskinner,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: wskinner\n\
         cn: Walter Skinner\nsn: Skinner\nmail: wskinner@example.org\n\n\
         dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\n\
         member: uid=wskinner,ou=people,{SUFFIX}\n\n"
    ));
    let (mut config, guard, standin, org_id) = stack_config(db).await;
    let mut source = ldap_config(&slapd);
    source.interval = Duration::from_secs(3600);
    source.jitter = Duration::ZERO;
    config.ldap.sources.insert("corp".into(), source);
    let stack = spawn_stack_with(config, guard, standin, org_id).await;
    stack.add_rule("Engineers", 10, &["corp:eng"]).await;
    stack
        .until("wskinner is an Engineer", |s| {
            in_group(s, "wskinner@example.org", "Engineers")
        })
        .await;
    let user = stack.tyk_user("wskinner@example.org").expect("user");
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("Walter", "Skinner")
    );
}
both_backends!(
    ldap_names_from_cn,
    ldap_person_without_given_name_gets_one_from_cn
);
