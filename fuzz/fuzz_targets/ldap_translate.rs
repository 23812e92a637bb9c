//! Directory entries → snapshot (src/ldap/translate.rs), on entries whose
//! attribute names are the ones translation reads and whose values are
//! arbitrary text or (mangled) DNs of other entries: translation never
//! panics, the stepwise form agrees with `translate`, every membership
//! edge joins entries of the snapshot, and group names are unique.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tyk_idsync::ldap::config::{DisabledRule, LdapSourceConfig, MembershipMode};
use tyk_idsync::ldap::translate::{
    GroupEntry, RawEntry, Translator, dn_key, translate, unique_group_names,
};

const NAMES: [&str; 16] = [
    "entryUUID",
    "uid",
    "mail",
    "givenName",
    "sn",
    "cn",
    "displayName",
    "memberOf",
    "member",
    "uniqueMember",
    "memberUid",
    "nsAccountLock",
    "pwdAccountLockedTime",
    "userAccountControl",
    "objectGUID",
    "sAMAccountName",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Free(String),
    /// The DN of entry `n` (users then groups), re-cased and re-spaced.
    DnOf(u8, bool),
    /// The login of user `n`.
    LoginOf(u8),
}

#[derive(Arbitrary, Debug)]
struct Entry {
    dn: String,
    attrs: Vec<(u8, Vec<Text>)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    users: Vec<Entry>,
    groups: Vec<Entry>,
    known: Vec<(Text, Text)>,
}

fn mangle(dn: &str, upper: bool) -> String {
    let dn = dn.replace(',', " , ").replace('=', " = ");
    if upper { dn.to_uppercase() } else { dn }
}

fuzz_target!(|input: Input| {
    let mut cfg = LdapSourceConfig::default();
    cfg.membership = match input.mode % 3 {
        0 => MembershipMode::GroupAttributes,
        1 => MembershipMode::MemberOf,
        _ => MembershipMode::AdInChain,
    };
    cfg.disabled = match (input.mode / 3) % 3 {
        0 => DisabledRule::None,
        1 => DisabledRule::OpenLdap,
        _ => DisabledRule::ActiveDirectory,
    };
    let dns: Vec<&str> = input
        .users
        .iter()
        .chain(&input.groups)
        .map(|e| e.dn.as_str())
        .collect();
    let login = |n: u8| -> String {
        let users = &input.users;
        if users.is_empty() {
            return String::new();
        }
        let e = &users[usize::from(n) % users.len()];
        e.attrs
            .iter()
            .find(|(name, _)| NAMES[usize::from(*name) % NAMES.len()] == cfg.login_attribute)
            .and_then(|(_, v)| v.first())
            .map(|t| match t {
                Text::Free(s) => s.clone(),
                _ => String::new(),
            })
            .unwrap_or_default()
    };
    let text = |t: &Text| -> String {
        match t {
            Text::Free(s) => s.clone(),
            Text::DnOf(n, upper) if !dns.is_empty() => {
                mangle(dns[usize::from(*n) % dns.len()], *upper)
            }
            Text::DnOf(..) => String::new(),
            Text::LoginOf(n) => login(*n),
        }
    };
    let raw = |e: &Entry| {
        RawEntry::new(
            e.dn.clone(),
            e.attrs.iter().map(|(name, values)| {
                (
                    NAMES[usize::from(*name) % NAMES.len()].to_string(),
                    values.iter().map(text).collect(),
                )
            }),
        )
    };
    let users: Vec<RawEntry> = input.users.iter().map(raw).collect();
    let groups: Vec<RawEntry> = input.groups.iter().map(raw).collect();
    let known: Vec<(String, String)> = input
        .known
        .iter()
        .map(|(dn, login)| (dn_key(&text(dn)), text(login)))
        .collect();

    let snap = translate(&cfg, &users, &groups, &known);

    let mut stepwise = Translator::new(&cfg);
    for u in &users {
        stepwise.push_user(u);
    }
    let prepared: Vec<GroupEntry> = groups
        .iter()
        .map(|g| GroupEntry::new(g, cfg.membership))
        .collect();
    assert_eq!(stepwise.finish_prepared(&prepared, &known), snap);

    assert!(snap.users.len() + snap.skipped.len() <= users.len());
    for (key, user) in &snap.users {
        assert_eq!(key, &dn_key(&user.dn));
        if let Some(email) = &user.email {
            assert_eq!(email, &tyk_idsync::domain::fold_key(email));
        }
    }
    let known_keys: BTreeSet<&str> = known.iter().map(|(k, _)| k.as_str()).collect();
    for (group, members) in &snap.user_members {
        assert!(snap.groups.contains_key(group), "{group:?}");
        for m in members {
            assert!(
                snap.users.contains_key(m) || known_keys.contains(m.as_str()),
                "{m:?}"
            );
        }
    }
    for (group, members) in &snap.group_members {
        assert!(snap.groups.contains_key(group), "{group:?}");
        for m in members {
            assert!(snap.groups.contains_key(m), "{m:?}");
        }
    }
    let names = unique_group_names(&snap.groups);
    assert_eq!(names.len(), snap.groups.len());
    let distinct: BTreeSet<String> = names
        .values()
        .map(|n| tyk_idsync::domain::fold_key(n))
        .collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "group names are unique: {names:?}"
    );
});
