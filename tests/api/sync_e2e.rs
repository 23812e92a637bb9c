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
