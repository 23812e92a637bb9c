//! Polling a real slapd into a real store (SQLite and PostgreSQL).

use secrecy::SecretString;
use tyk_idsync::domain::{EventKind, SourceName};
use tyk_idsync::ldap::config::LdapSourceConfig;
use tyk_idsync::ldap::poller::{PollKind, run_once};
use tyk_idsync::store::{Store, events, identities};

use crate::both_backends;
use crate::support::slapd::{SUFFIX, Slapd};
use crate::support::{Db, fresh_store};

fn config(slapd: &Slapd) -> LdapSourceConfig {
    LdapSourceConfig {
        url: slapd.url(),
        bind_dn: slapd.bind_dn().into(),
        user_base: format!("ou=people,{SUFFIX}"),
        group_base: format!("ou=groups,{SUFFIX}"),
        page_size: 3,
        max_removal_min: 0,
        max_removal_percent: 40,
        ..LdapSourceConfig::default()
    }
}

fn users(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| format!("dn: uid=u{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: U{i}\nsn: U\nmail: U{i}@Example.org\n\n"))
        .collect()
}

async fn stored_logins(store: &Store, source: &SourceName) -> Vec<String> {
    let mut conn = store.pool().acquire().await.expect("conn");
    let mut names: Vec<String> = identities::list_users(&mut conn, source)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.user_name)
        .collect();
    names.sort();
    names
}

async fn event_kinds(store: &Store) -> Vec<EventKind> {
    let mut conn = store.pool().acquire().await.expect("conn");
    events::pending(&mut conn, 1000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn poll_lifecycle(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut slapd = Slapd::start();
    slapd.add(&users(0..10));
    let cfg = config(&slapd);
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("ldap-corp");

    let report = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("first poll");
    assert_eq!(
        (report.users_read, report.changes, report.held),
        (10, 10, None)
    );
    assert_eq!(stored_logins(&store, &source).await.len(), 10);
    assert_eq!(event_kinds(&store).await, vec![EventKind::UserCreated; 10]);

    // A deleted user: an incremental poll leaves them, a full poll deletes.
    slapd.delete(&format!("uid=u0,ou=people,{SUFFIX}"));
    run_once(&store, &source, &cfg, &pw, PollKind::Incremental, false)
        .await
        .expect("incremental");
    assert_eq!(stored_logins(&store, &source).await.len(), 10);
    run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("full");
    assert!(
        !stored_logins(&store, &source)
            .await
            .contains(&"u0".to_string())
    );
    assert_eq!(
        event_kinds(&store).await.last(),
        Some(&EventKind::UserDeleted)
    );

    // slapd dies: the poll fails and nobody is removed; after restart it converges.
    slapd.kill();
    assert!(
        run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
            .await
            .is_err()
    );
    assert_eq!(stored_logins(&store, &source).await.len(), 9);
    slapd.restart();
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("after restart");
    assert_eq!(report.changes, 0);

    // Mass removal (5 of 9 > 40%) is held, then applied when forced.
    for i in 1..6 {
        slapd.delete(&format!("uid=u{i},ou=people,{SUFFIX}"));
    }
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("held poll");
    let held = report.held.expect("guard must trip");
    assert_eq!((held.removals, held.stored), (5, 9));
    assert_eq!(
        stored_logins(&store, &source).await.len(),
        9,
        "held poll applied nothing"
    );
    run_once(&store, &source, &cfg, &pw, PollKind::Full, true)
        .await
        .expect("forced");
    assert_eq!(
        stored_logins(&store, &source).await,
        vec!["u6", "u7", "u8", "u9"]
    );
}

both_backends!(ldap_poll_lifecycle, poll_lifecycle);
