//! The slapd harness itself: seeding, memberOf, kill and restart.

use ldap3::{LdapConnAsync, Scope, SearchEntry};

use crate::support::slapd::{SUFFIX, Slapd};

async fn search(slapd: &Slapd, filter: &str, attrs: Vec<&str>) -> Vec<SearchEntry> {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url()).await.expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(slapd.bind_dn(), slapd.bind_password())
        .await
        .expect("bind")
        .success()
        .expect("bind ok");
    let (entries, _) = ldap
        .search(SUFFIX, Scope::Subtree, filter, attrs)
        .await
        .expect("search")
        .success()
        .expect("search ok");
    let _ = ldap.unbind().await;
    entries.into_iter().map(SearchEntry::construct).collect()
}

#[tokio::test]
async fn seeded_groups_populate_member_of_and_survive_a_restart() {
    let mut slapd = Slapd::start();
    slapd.add(include_str!("../fixtures/ldap/basic.ldif"));
    let alice = search(&slapd, "(uid=alice)", vec!["memberOf", "entryUUID"]).await;
    assert_eq!(alice.len(), 1);
    assert_eq!(
        alice[0].attrs.get("memberOf").cloned().unwrap_or_default(),
        vec![format!("cn=engineering,ou=groups,{SUFFIX}")]
    );
    slapd.modify(&format!(
        "dn: uid=bob,ou=people,{SUFFIX}\nchangetype: modify\nreplace: mail\nmail: robert@example.org\n"
    ));
    let bob = search(&slapd, "(uid=bob)", vec!["mail"]).await;
    assert_eq!(bob[0].attrs["mail"], vec!["robert@example.org".to_string()]);
    slapd.kill();
    assert!(
        LdapConnAsync::new(&slapd.url()).await.is_err(),
        "killed slapd still answers"
    );
    slapd.restart();
    slapd.delete(&format!("uid=alice,ou=people,{SUFFIX}"));
    let group = search(&slapd, "(cn=engineering)", vec!["member"]).await;
    let members = group[0].attrs.get("member").cloned().unwrap_or_default();
    assert!(
        !members.iter().any(|m| m.starts_with("uid=alice")),
        "refint removed alice: {members:?}"
    );
}
