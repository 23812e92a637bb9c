//! The console's mappings (preview before saving), audit and LDAP pages
//! over the real app, the Tyk stand-in and a real slapd.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::both_backends;
use crate::ldap_groups::{ldap_config, person};
use crate::support::Db;
use crate::support::slapd::{SUFFIX, Slapd};
use crate::support::stack::{spawn_stack_with, stack_config};
use crate::ui::{Console, csrf_in, four_developers, guarded_stack};

async fn a_rule_change_is_previewed_then_saved_and_config_rules_are_read_only(db: Db) {
    let stack = guarded_stack(db).await;
    four_developers(&stack).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let list = console.page("/ui/mappings").await;
    assert!(
        list.contains("<th scope=\"row\">API Developers</th>"),
        "{list}"
    );
    let at = list.find("/edit\"").expect("an edit link");
    let start = list[..at].rfind("href=\"").expect("href") + 6;
    let edit_href = format!("{}/edit", &list[start..at]);
    let form = console.page(&edit_href).await;
    let id = edit_href
        .trim_start_matches("/ui/mappings/")
        .trim_end_matches("/edit");
    let csrf = csrf_in(&form);
    let fields = |sso: &'static str, action: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("id", id.to_string()),
            ("org_id", stack.org_id.clone()),
            ("name", "API Developers".to_string()),
            ("priority", "10".to_string()),
            ("mappings_sso", sso.to_string()),
            ("permissions", String::new()),
            ("description", String::new()),
            ("action", action.to_string()),
        ]
    };
    // Preview: pointing the rule elsewhere would deprovision all four; nothing saved yet.
    let preview = fields("okta:Nobody", "preview");
    let preview: Vec<(&str, &str)> = preview.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page, _) = console.post("/ui/mappings/save", &preview).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Would be deprovisioned (4)"), "{page}");
    assert!(page.contains("Would be created (0)"), "{page}");
    assert!(
        page.contains("value=\"save\""),
        "a Save button after the preview: {page}"
    );
    let list = console.page("/ui/mappings").await;
    assert!(
        list.contains("okta:Developers"),
        "not saved by a preview: {list}"
    );
    // An invalid rule: the form again with the field's error.
    let bad: Vec<(&str, String)> = fields("", "preview")
        .into_iter()
        .map(|(k, v)| {
            if k == "name" {
                (k, " ".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page, _) = console.post("/ui/mappings/save", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("name: must not be empty"), "{page}");
    // Save a harmless change: adds a second group.
    let save = fields("okta:Developers\nokta:Contractors", "save");
    let save: Vec<(&str, &str)> = save.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, headers) = console.post("/ui/mappings/save", &save).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/ui/mappings");
    let list = console.page("/ui/mappings").await;
    assert!(list.contains("okta:Contractors"), "{list}");
    // Delete: previewed first, then done.
    let (status, page, _) = console
        .post(
            &format!("/ui/mappings/{id}/delete"),
            &[("csrf", &csrf), ("action", "preview")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Would be deprovisioned (4)"), "{page}");
    let (status, _, _) = console
        .post(
            &format!("/ui/mappings/{id}/delete"),
            &[("csrf", &csrf), ("action", "delete")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let list = console.page("/ui/mappings").await;
    assert!(!list.contains("API Developers"), "{list}");
}
both_backends!(
    ui_mappings,
    a_rule_change_is_previewed_then_saved_and_config_rules_are_read_only
);

#[tokio::test]
async fn config_file_rules_are_marked_and_cannot_be_edited() {
    let (mut config, guard, standin, org_id) = stack_config(Db::Sqlite).await;
    config.mapping.rules.push(
        toml::from_str(&format!(
            "org_id = \"{org_id}\"\nname = \"Readers\"\npriority = 1\nmappings_sso = [\"okta:Readers\"]"
        ))
        .expect("config rule"),
    );
    let stack = spawn_stack_with(config, guard, standin, org_id).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let list = console.page("/ui/mappings").await;
    assert!(list.contains("config file (read-only)"), "{list}");
    assert!(
        !list.contains("/edit\""),
        "no edit link for a config rule: {list}"
    );
    let rules = tyk_idsync::mapping::service::list(&stack.app.state.store)
        .await
        .expect("rules");
    let (status, page, _) = console
        .get(&format!("/ui/mappings/{}/edit", rules[0].rule.id))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("comes from the config file"), "{page}");
}

async fn the_audit_page_searches_and_pages(db: Db) {
    let stack = guarded_stack(db).await;
    four_developers(&stack).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let page = console.page("/ui/audit").await;
    for name in ["ada", "grace", "edsger", "barbara"] {
        assert!(page.contains(&format!("{name}@example.org")), "{page}");
    }
    let page = console
        .page("/ui/audit?email=Grace%40example.org&step=create_user")
        .await;
    assert!(page.contains("grace@example.org"), "{page}");
    assert!(!page.contains("ada@example.org"), "{page}");
    let page = console.page("/ui/audit?since=2999-01-01").await;
    assert!(page.contains("No audit rows."), "{page}");
    let (status, page, _) = console.get("/ui/audit?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("is not a date"), "{page}");
    let (status, _, _) = console.get("/ui/audit?run=not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
both_backends!(ui_audit, the_audit_page_searches_and_pages);

#[tokio::test]
async fn the_ldap_page_polls_a_real_directory_on_demand() {
    let slapd = Slapd::start();
    slapd.add(&format!(
        "{}{}dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\n\
         member: uid=u0,ou=people,{SUFFIX}\n\n",
        person("u0", ""),
        person("u1", "")
    ));
    let (mut config, guard, standin, org_id) = stack_config(Db::Sqlite).await;
    let mut source = ldap_config(&slapd);
    source.interval = Duration::from_secs(3600);
    source.jitter = Duration::ZERO;
    source.max_removal_percent = 10;
    source.max_removal_min = 0;
    config.ldap.sources.insert("corp".into(), source);
    let stack = spawn_stack_with(config, guard, standin, org_id).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let page = console.page("/ui/ldap").await;
    assert!(page.contains("<h2 id=\"src-corp\">corp</h2>"), "{page}");
    assert!(page.contains("Poll now (full)"), "{page}");
    slapd.add(&person("u2", ""));
    let csrf = csrf_in(&page);
    let (status, page, _) = console
        .post("/ui/ldap/corp/poll", &[("csrf", &csrf), ("kind", "full")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("3 users and 1 groups read"), "{page}");
    let (status, _, _) = console
        .post("/ui/ldap/nope/poll", &[("csrf", &csrf), ("kind", "full")])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = console
        .post(
            "/ui/ldap/corp/poll",
            &[("csrf", "forged"), ("kind", "full")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Two of three leave the directory: the full poll is held, and every
    // page says so until the operator applies it.
    slapd.delete(&format!("uid=u1,ou=people,{SUFFIX}"));
    slapd.delete(&format!("uid=u2,ou=people,{SUFFIX}"));
    let (status, page, _) = console
        .post("/ui/ldap/corp/poll", &[("csrf", &csrf), ("kind", "full")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("The poll was held; nothing was applied."),
        "{page}"
    );
    let status_page = console.page("/ui/").await;
    assert!(
        status_page.contains("Source corp: the last poll was held"),
        "{status_page}"
    );
    let runs = console.page("/ui/runs").await;
    assert!(runs.contains("<a href=\"/ui/ldap\">corp</a>"), "{runs}");
    let ldap = console.page("/ui/ldap").await;
    assert!(ldap.contains("Apply the held poll"), "{ldap}");
    let (status, page, _) = console
        .post("/ui/ldap/corp/poll", &[("csrf", &csrf), ("kind", "force")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("1 users and 1 groups read"), "{page}");
    let runs = console.page("/ui/runs").await;
    assert!(runs.contains("No LDAP poll is held."), "{runs}");
}
