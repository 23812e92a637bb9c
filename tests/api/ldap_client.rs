//! The LDAP client against a real slapd: paging and failure on a dropped
//! connection (a partial read must be an error, never a short result).

use secrecy::SecretString;
use tyk_idsync::ldap::client::LdapClient;
use tyk_idsync::ldap::config::LdapSourceConfig;
use tyk_idsync::ldap::translate::translate;

use crate::support::slapd::{SUFFIX, Slapd};

fn config(slapd: &Slapd, page_size: i32) -> LdapSourceConfig {
    LdapSourceConfig {
        url: slapd.url(),
        bind_dn: slapd.bind_dn().into(),
        user_base: format!("ou=people,{SUFFIX}"),
        group_base: format!("ou=groups,{SUFFIX}"),
        page_size,
        ..LdapSourceConfig::default()
    }
}

fn password(slapd: &Slapd) -> SecretString {
    SecretString::from(slapd.bind_password().to_string())
}

fn many_users(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "dn: uid=u{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: U {i}\nsn: U\nmail: u{i}@example.org\n\n"
            )
        })
        .collect()
}

#[tokio::test]
async fn more_entries_than_one_page_are_all_read() {
    let slapd = Slapd::start();
    slapd.add(&many_users(25));
    let cfg = config(&slapd, 7);
    let mut client = LdapClient::connect(&cfg, &password(&slapd))
        .await
        .expect("connect");
    let users = client
        .search_all(
            &cfg.user_base,
            "sub",
            &cfg.user_filter,
            &["uid", "entryUUID", "mail"],
        )
        .await
        .expect("search");
    client.close().await;
    assert_eq!(users.len(), 25);
    let snap = translate(&cfg, &users, &[], &[]);
    assert_eq!(snap.users.len(), 25, "skipped: {:?}", snap.skipped);
}

#[tokio::test]
async fn a_wrong_password_is_a_connect_error() {
    let slapd = Slapd::start();
    let cfg = config(&slapd, 10);
    let wrong = SecretString::from("wrong".to_string());
    let err = LdapClient::connect(&cfg, &wrong)
        .await
        .err()
        .expect("bind must fail");
    assert!(err.to_string().contains("cannot connect or bind"), "{err}");
}

#[tokio::test]
async fn a_dropped_connection_fails_the_search() {
    let mut slapd = Slapd::start();
    slapd.add(&many_users(5));
    let cfg = config(&slapd, 2);
    let mut client = LdapClient::connect(&cfg, &password(&slapd))
        .await
        .expect("connect");
    slapd.kill();
    let result = client
        .search_all(
            &cfg.user_base,
            "sub",
            &cfg.user_filter,
            &["uid", "entryUUID"],
        )
        .await;
    assert!(
        result.is_err(),
        "search on a dead server returned {:?}",
        result.map(|v| v.len())
    );
}
