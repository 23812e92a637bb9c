//! Every Tyk client call against the stand-in, through Prism validating the
//! official OpenAPI files. Each test works in its own organisation and ends
//! with `assert_clean(key)`: not one violation, warnings included.

use std::time::Duration;

use pretty_assertions::assert_eq;
use tyk_idsync::standin::Fault;
use tyk_idsync::tyk::{NewUser, NewUserGroup, PermissionLevel, Permissions, TykError};

use crate::support::standin::{TestOrg, contract};

fn new_user(email: &str) -> NewUser {
    NewUser {
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email_address: email.into(),
        user_permissions: Permissions::new().with("apis", PermissionLevel::Read),
        active: true,
        group_id: None,
        org_id: None,
    }
}

fn is_24_hex(id: &str) -> bool {
    id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test]
async fn tyk_user_lifecycle_create_get_update_revoke_delete() {
    let c = contract();
    let TestOrg {
        org_id,
        key,
        client,
        ..
    } = c.new_org("lifecycle").await;
    let group_id = client
        .create_group(&NewUserGroup {
            name: "Ops".into(),
            description: "operators".into(),
            active: true,
            user_permissions: Permissions::new().with("apis", PermissionLevel::Write),
            org_id: None,
        })
        .await
        .expect("create group");

    let id = client
        .create_user(&new_user("Ada.Lovelace@Example.COM"))
        .await
        .expect("create");
    assert!(is_24_hex(&id), "{id}");
    let user = client.get_user(&id).await.expect("get");
    assert_eq!(user.email_address, "ada.lovelace@example.com");
    assert_eq!(user.org_id, org_id);
    assert_eq!(user.group_id, "");
    assert!(user.active);

    // GET-modify-PUT, including group_id (the overlay documents it).
    let mut changed = user.clone();
    changed.group_id = group_id.clone();
    changed.last_name = "King".into();
    changed.user_permissions.set("users", PermissionLevel::Read);
    client.update_user(&changed).await.expect("update");
    let after = client.get_user(&id).await.expect("get after update");
    assert_eq!(after.group_id, group_id);
    assert_eq!(after.last_name, "King");
    assert_eq!(
        after.user_permissions.get("users"),
        Some(&PermissionLevel::Read)
    );

    let mut inactive = after.clone();
    inactive.active = false;
    client.update_user(&inactive).await.expect("deactivate");
    assert!(!client.get_user(&id).await.expect("get").active);

    client.revoke_user(&id).await.expect("revoke");
    let revoked = client.get_user(&id).await.expect("get revoked");
    assert!(!revoked.active);
    assert_eq!(revoked.access_key(), None);

    client.delete_user(&id).await.expect("delete");
    let gone = client.get_user(&id).await.expect_err("deleted");
    assert!(
        matches!(gone, TykError::NotFound { status: 404, .. }),
        "{gone:?}"
    );
    assert!(!gone.is_retryable());
    c.assert_clean(&key);
}

#[tokio::test]
async fn tyk_user_paging_walks_every_page() {
    let c = contract();
    let org = c.new_org("paging").await;
    for i in 0..22 {
        org.client
            .create_user(&new_user(&format!("user{i:02}@paging.example")))
            .await
            .expect("create");
    }
    // 22 + the org admin = 23 users = pages of 10, 10, 3.
    let first = org.client.list_users_page(1).await.expect("page 1");
    assert_eq!((first.items.len(), first.pages), (10, 3));
    let last = org.client.list_users_page(3).await.expect("page 3");
    assert_eq!(last.items.len(), 3);
    let beyond = org.client.list_users_page(4).await.expect("page 4");
    assert_eq!((beyond.items.len(), beyond.pages), (0, 3));
    let all = org.client.list_users_page(-1).await.expect("p=-1");
    assert_eq!(all.items.len(), 23);

    let before = c.exchanges_for(&org.key).len();
    let users = org.client.list_users().await.expect("list all");
    assert_eq!(users.len(), 23);
    let mut emails: Vec<_> = users.iter().map(|u| u.email_address.clone()).collect();
    emails.dedup();
    assert_eq!(emails.len(), 23, "no user twice");
    let pages: Vec<(String, String)> = c.exchanges_for(&org.key)[before..]
        .iter()
        .map(|e| (e.method.clone(), e.path.clone()))
        .collect();
    assert_eq!(
        pages,
        vec![("GET".to_string(), "/api/users".to_string()); 3],
        "one request per page"
    );
    c.assert_clean(&org.key);
}

#[tokio::test]
async fn tyk_empty_lists_come_back_null_and_are_empty() {
    let c = contract();
    let org = c.new_org("empty").await;
    let raw = reqwest::Client::new()
        .get(format!("{}/api/usergroups?p=1", c.url))
        .header("authorization", &org.key)
        .send()
        .await
        .expect("raw list");
    let body: serde_json::Value = raw.json().await.expect("json");
    assert_eq!(body, serde_json::json!({ "groups": null, "pages": 0 }));
    let page = org.client.list_groups_page(1).await.expect("groups");
    assert_eq!((page.items.len(), page.pages), (0, 0));
    assert!(
        org.client
            .list_groups()
            .await
            .expect("all groups")
            .is_empty()
    );
    assert!(
        org.client
            .search_users("@nobody.example")
            .await
            .expect("search")
            .is_empty()
    );
    c.assert_clean(&org.key);
}

#[tokio::test]
async fn tyk_duplicate_email_is_a_typed_error_per_org() {
    let c = contract();
    let org = c.new_org("dup").await;
    org.client
        .create_user(&new_user("dup@example.com"))
        .await
        .expect("first");
    let err = org
        .client
        .create_user(&new_user("DUP@example.com"))
        .await
        .expect_err("dup");
    match &err {
        TykError::EmailAlreadyExists { message } => {
            assert_eq!(message, "User email already exists for this org.")
        }
        other => panic!("expected EmailAlreadyExists, got {other:?}"),
    }
    assert!(!err.is_retryable());

    // Admin API: same rule, its own message (capital O, no period).
    let admin = org.client.admin().expect("admin");
    let mut again = new_user("dup@example.com");
    again.org_id = Some(org.org_id.clone());
    let err = admin.create_user(&again).await.expect_err("admin dup");
    assert!(
        matches!(&err, TykError::EmailAlreadyExists { message } if message == "User email already exists for this Org"),
        "{err:?}"
    );

    // Another organisation may use the same email.
    let other = c.new_org("dup-other").await;
    other
        .client
        .create_user(&new_user("dup@example.com"))
        .await
        .expect("other org");
    c.assert_clean(&org.key);
    c.assert_clean(&other.key);
}

#[tokio::test]
async fn tyk_bad_key_is_unauthorised_and_not_retryable() {
    let c = contract();
    let key = "not-a-real-key-0000";
    let err = c.client(key).list_users().await.expect_err("bad key");
    match &err {
        TykError::Unauthorised { message } => assert_eq!(message, "Not authorised"),
        other => panic!("expected Unauthorised, got {other:?}"),
    }
    assert!(!err.is_retryable());
    c.assert_clean(key);
}

#[tokio::test]
async fn tyk_429_carries_retry_after_through_the_validator() {
    let c = contract();
    let org = c.new_org("ratelimit").await;
    c.standin.inject(
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        Some(&org.key),
    );
    let err = org.client.list_users().await.expect_err("429");
    assert!(matches!(err, TykError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    // The spec declares no 429: Prism must have flagged exactly that, and
    // nothing else, for this one exchange.
    let seen = c.exchanges_for(&org.key);
    let flagged: Vec<_> = seen.iter().filter(|e| e.violations.is_some()).collect();
    assert_eq!(flagged.len(), 1, "{seen:#?}");
    assert_eq!(flagged[0].status, 429);
    let text = flagged[0].violations.as_deref().unwrap_or_default();
    assert!(
        text.contains("Unable to match the returned status code"),
        "{text}"
    );
    // The next call is served normally.
    assert_eq!(org.client.list_users().await.expect("after 429").len(), 1);
}

#[tokio::test]
async fn tyk_groups_create_get_list_update_delete() {
    let c = contract();
    let org = c.new_org("groups").await;
    let perms = Permissions::new()
        .with("analytics", PermissionLevel::Read)
        .with("log", PermissionLevel::Deny);
    let id = org
        .client
        .create_group(&NewUserGroup {
            name: "Devops".into(),
            description: "logs".into(),
            active: true,
            user_permissions: perms.clone(),
            org_id: None,
        })
        .await
        .expect("create");
    assert!(is_24_hex(&id));
    let mut group = org.client.get_group(&id).await.expect("get");
    assert_eq!(
        (group.name.as_str(), group.org_id.as_str()),
        ("Devops", org.org_id.as_str())
    );
    assert_eq!(group.user_permissions, perms);

    group.description = "logs and analytics".into();
    group
        .user_permissions
        .set("custom_section", PermissionLevel::Other("custom".into()));
    org.client.update_group(&group).await.expect("update");
    let updated = org.client.get_group(&id).await.expect("get updated");
    assert_eq!(updated.description, "logs and analytics");
    assert_eq!(
        updated.user_permissions.get("custom_section"),
        Some(&PermissionLevel::Other("custom".into()))
    );

    for n in 0..11 {
        org.client
            .create_group(&NewUserGroup {
                name: format!("g{n}"),
                user_permissions: perms.clone(),
                ..NewUserGroup::default()
            })
            .await
            .expect("more groups");
    }
    let first = org.client.list_groups_page(1).await.expect("page 1");
    assert_eq!((first.items.len(), first.pages), (10, 2));
    assert_eq!(org.client.list_groups().await.expect("all").len(), 12);

    // A member keeps a dangling group_id when its group is deleted.
    let mut member = new_user("member@groups.example");
    member.group_id = Some(id.clone());
    let member_id = org.client.create_user(&member).await.expect("member");
    org.client.delete_group(&id).await.expect("delete");
    let err = org.client.get_group(&id).await.expect_err("deleted");
    assert!(
        matches!(&err, TykError::NotFound { message, .. } if message == "Could not retrieve user group detail."),
        "{err:?}"
    );
    assert_eq!(
        org.client
            .get_user(&member_id)
            .await
            .expect("member")
            .group_id,
        id
    );
    c.assert_clean(&org.key);
}

#[tokio::test]
async fn tyk_search_and_find_by_email() {
    let c = contract();
    let org = c.new_org("search").await;
    for email in [
        "Ann@corp.example",
        "bob@corp.example",
        "ann@elsewhere.example",
    ] {
        org.client
            .create_user(&new_user(email))
            .await
            .expect("create");
    }
    let corp = org
        .client
        .search_users("@corp.example")
        .await
        .expect("search");
    assert_eq!(corp.len(), 2);
    let ann = org
        .client
        .find_user_by_email("ANN@corp.example")
        .await
        .expect("find");
    assert_eq!(
        ann.map(|u| u.email_address),
        Some("ann@corp.example".into())
    );
    assert!(
        org.client
            .find_user_by_email("ann@corp")
            .await
            .expect("partial")
            .is_none()
    );
    c.assert_clean(&org.key);
}

#[tokio::test]
async fn tyk_admin_api_users_and_organisations() {
    let c = contract();
    let org = c.new_org("admin-api").await;
    let admin = org.client.admin().expect("admin");
    let mut body = new_user("Boss@Admin.example");
    body.org_id = Some(org.org_id.clone());
    body.user_permissions = Permissions::admin();
    let created = admin.create_user(&body).await.expect("create");
    assert!(is_24_hex(&created.id));
    assert_eq!(created.email_address, "boss@admin.example");
    assert!(created.user_permissions.is_admin());
    assert_eq!(
        created.extra.get("last_login_date"),
        Some(&serde_json::json!("0001-01-01T00:00:00Z"))
    );
    assert!(created.access_key().is_some_and(|k| k.len() == 32));

    let mut fetched = admin.get_user(&created.id).await.expect("get");
    assert_eq!(fetched, created);
    fetched.first_name = "Grace".into();
    let updated = admin.update_user(&fetched).await.expect("update");
    assert_eq!(updated.first_name, "Grace");
    // The Dashboard API sees the same user, admin rights intact.
    let seen = org
        .client
        .get_user(&created.id)
        .await
        .expect("dashboard get");
    assert!(seen.user_permissions.is_admin());

    let missing = admin
        .get_user("000000000000000000000000")
        .await
        .expect_err("missing");
    assert!(
        matches!(&missing, TykError::NotFound { message, .. } if message == "Could not retrieve user detail"),
        "{missing:?}"
    );

    let orgs = admin.list_organisations().await.expect("orgs");
    assert!(
        orgs.iter()
            .any(|o| o.id == org.org_id && o.owner_name == "admin-api")
    );
    let one = admin.get_organisation(&org.org_id).await.expect("org");
    assert_eq!(one.owner_slug, "admin-api");
    let err = admin
        .get_organisation("000000000000000000000000")
        .await
        .expect_err("no org");
    assert!(
        matches!(&err, TykError::NotFound { message, .. } if message == "Could not retrieve org detail"),
        "{err:?}"
    );
    c.assert_clean(&org.key);
}

#[tokio::test]
async fn tyk_missing_permission_is_forbidden_with_the_exact_text() {
    let c = contract();
    let org = c.new_org("rbac").await;
    let reader = c.standin.seed_user(
        &org.org_id,
        "reader@rbac.example",
        Permissions::new().with("users", PermissionLevel::Read),
    );
    let key = reader.access_key().expect("key").to_string();
    let client = c.client(&key);
    assert_eq!(client.list_users().await.expect("read allowed").len(), 2);
    let err = client
        .create_user(&new_user("x@rbac.example"))
        .await
        .expect_err("write denied");
    match &err {
        TykError::Forbidden { message } => {
            assert_eq!(
                message,
                "access denied: You do not have permission to access  /api/users"
            )
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let err = client.list_groups().await.expect_err("groups denied");
    assert!(
        matches!(&err, TykError::Forbidden { message } if message.ends_with("  /api/usergroups")),
        "{err:?}"
    );
    c.assert_clean(&key);
}

#[tokio::test]
async fn tyk_admins_are_representable_and_recognisable() {
    let c = contract();
    let org = c.new_org("admins").await;
    org.client
        .create_user(&new_user("plain@admins.example"))
        .await
        .expect("plain");
    let users = org.client.list_users().await.expect("list");
    let admins: Vec<_> = users
        .iter()
        .filter(|u| u.user_permissions.is_admin())
        .collect();
    assert_eq!(admins.len(), 1, "only the org admin: {users:#?}");
    assert_eq!(admins[0].id, org.admin.id);
    c.assert_clean(&org.key);
}

#[tokio::test]
async fn tyk_prism_rejects_a_request_that_breaks_the_spec() {
    let c = contract();
    let org = c.new_org("violations").await;
    let http = reqwest::Client::new();
    // Missing required fields: Prism answers 422 itself.
    let resp = http
        .post(format!("{}/api/users", c.url))
        .header("authorization", &org.key)
        .json(&serde_json::json!({ "first_name": "only" }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 422);
    let body = resp.text().await.expect("body");
    assert!(body.contains("last_name"), "{body}");
    // A wrongly typed group_id on PUT is caught too (the overlay types it).
    let resp = http
        .put(format!("{}/api/users/{}", c.url, org.admin.id))
        .header("authorization", &org.key)
        .json(&serde_json::json!({ "group_id": 5 }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 422);
    // The PUT never reached the stand-in (its path is unique to this test).
    let put_path = format!("/api/users/{}", org.admin.id);
    let reached = c
        .standin
        .request_log()
        .into_iter()
        .any(|r| r.method == "PUT" && r.path == put_path);
    assert!(!reached, "Prism forwarded an invalid request");
}
