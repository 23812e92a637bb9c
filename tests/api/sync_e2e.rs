//! End to end: identities pushed over SCIM become Tyk users in the right
//! group of the stand-in, through the mapping and the sync worker.

use reqwest::Method;
use serde_json::Value;

use crate::both_backends;
use crate::support::Db;
/// Other test modules take it from here.
use crate::support::stack::spawn_stack;

async fn a_scim_user_in_a_mapped_group_becomes_a_tyk_user_in_that_group(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "Ada@Example.org").await;
    stack.create_group("Developers", &[&ada]).await;

    stack
        .until("Ada is in API Developers", |s| {
            let group = s.tyk_group("API Developers");
            let user = s.tyk_user("ada@example.org");
            matches!((group, user), (Some(g), Some(u)) if u.group_id == g.id && u.active)
        })
        .await;
    // Another source's token cannot see Okta's user.
    let path = format!("/Users/{ada}");
    let (status, _) = stack
        .scim(&stack.entra_token, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(status, 404);
    let ada = stack.tyk_user("ada@example.org").expect("ada");
    assert_eq!(
        (ada.first_name.as_str(), ada.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert!(!ada.user_permissions.grants_admin(), "never an admin");
}
both_backends!(
    scim_to_tyk,
    a_scim_user_in_a_mapped_group_becomes_a_tyk_user_in_that_group
);

/// Tyk refuses a user with an empty first or last name (400 `User object
/// validation failed.`); SCIM users without `name` still get both, from
/// the displayName or the userName's local part.
async fn scim_users_without_a_name_reach_tyk_with_non_empty_names(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let schema = "urn:ietf:params:scim:schemas:core:2.0:User";
    let mut ids = Vec::new();
    for body in [
        serde_json::json!({"schemas": [schema], "userName": "fox.mulder@fbi.example"}),
        serde_json::json!({
            "schemas": [schema],
            "userName": "dscully",
            "displayName": "Dana Scully",
            "emails": [{"value": "dana@fbi.example", "primary": true}],
        }),
    ] {
        let (status, user) = stack
            .scim(&stack.okta_token, Method::POST, "/Users", body)
            .await;
        assert_eq!(status, 201, "{user}");
        ids.push(user["id"].as_str().expect("id").to_string());
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    stack.create_group("Developers", &ids).await;
    stack
        .until("both are Tyk users", |s| {
            s.tyk_user("fox.mulder@fbi.example").is_some()
                && s.tyk_user("dana@fbi.example").is_some()
        })
        .await;
    let names = |email: &str| {
        let user = stack.tyk_user(email).expect("user");
        (user.first_name, user.last_name)
    };
    assert_eq!(
        names("fox.mulder@fbi.example"),
        ("fox.mulder".to_string(), "fox.mulder".to_string())
    );
    assert_eq!(
        names("dana@fbi.example"),
        ("Dana".to_string(), "Scully".to_string())
    );
}
both_backends!(
    nameless_scim_users,
    scim_users_without_a_name_reach_tyk_with_non_empty_names
);
