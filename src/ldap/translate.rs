//! Directory entries → a [`DirectorySnapshot`]: users, groups and direct
//! membership edges, keyed by normalised DN. Pure; no LDAP types leak out.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::config::{DisabledRule, LdapSourceConfig, MembershipMode};
use crate::domain::{EmailProblem, fold_key, primary_email};

/// One entry as read: DN plus attributes with lower-cased names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEntry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl RawEntry {
    pub fn new(
        dn: impl Into<String>,
        attrs: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        let attrs = attrs
            .into_iter()
            .map(|(mut k, v): (String, Vec<String>)| {
                k.make_ascii_lowercase();
                (k, v)
            })
            .collect();
        Self {
            dn: dn.into(),
            attrs,
        }
    }

    fn all(&self, name: &str) -> &[String] {
        self.attrs
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().map(String::as_str)
    }
}

/// A user as the directory describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryUser {
    pub dn: String,
    pub stable_id: String,
    pub login: String,
    /// The mail attribute's join key (`domain::email_key`); `None` when
    /// the entry has none or one that is not an address.
    pub email: Option<String>,
    /// Why the entry's mail attribute cannot be provisioned.
    pub email_problem: Option<EmailProblem>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
}

/// A group: its DN and common name.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryGroup {
    pub dn: String,
    pub name: String,
}

/// Everything one poll read, keyed by normalised DN.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectorySnapshot {
    pub users: BTreeMap<String, DirectoryUser>,
    pub groups: BTreeMap<String, DirectoryGroup>,
    /// Group key → direct member user keys.
    pub user_members: BTreeMap<String, BTreeSet<String>>,
    /// Group key → direct member group keys.
    pub group_members: BTreeMap<String, BTreeSet<String>>,
    /// DNs of entries skipped for lacking the id or login attribute.
    pub skipped: Vec<String>,
}

/// Normalises a DN for comparison: lower-case, no spaces around `,` and `=`.
pub fn dn_key(dn: &str) -> String {
    if !dn.is_ascii() {
        return dn_key_unicode(dn);
    }
    // The common case, built in one allocation (it runs for every user and
    // every member value of every poll). Same result as the general case:
    // on ASCII text `to_lowercase` is `to_ascii_lowercase`.
    let mut key = String::with_capacity(dn.len());
    for (i, rdn) in dn.split(',').enumerate() {
        if i > 0 {
            key.push(',');
        }
        for (j, part) in rdn.split('=').enumerate() {
            if j > 0 {
                key.push('=');
            }
            key.push_str(part.trim());
        }
    }
    key.make_ascii_lowercase();
    key
}

fn dn_key_unicode(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("=")
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Users already stored but not read by this (incremental) poll, so that
/// group member lists naming them still resolve: (DN key, login).
pub type KnownUsers = [(String, String)];

/// Builds the snapshot from user and group entries. `known` supplies users
/// an incremental poll did not read (see [`KnownUsers`]).
pub fn translate(
    cfg: &LdapSourceConfig,
    users: &[RawEntry],
    groups: &[RawEntry],
    known: &KnownUsers,
) -> DirectorySnapshot {
    let mut t = Translator::new(cfg);
    for entry in users {
        t.push_user(entry);
    }
    t.finish(groups, known)
}

/// [`translate`] in steps: users one at a time as they are read (only
/// their translated form is kept, not the entries), then the groups.
#[derive(Debug)]
pub struct Translator {
    cfg: LdapSourceConfig,
    snap: DirectorySnapshot,
    /// `memberOf` mode: each user entry's key and its groups' keys.
    member_of: Vec<(String, Vec<String>)>,
}

impl Translator {
    pub fn new(cfg: &LdapSourceConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            snap: DirectorySnapshot::default(),
            member_of: Vec::new(),
        }
    }

    pub fn push_user(&mut self, entry: &RawEntry) {
        let key = dn_key(&entry.dn);
        if self.cfg.membership == MembershipMode::MemberOf {
            let groups: Vec<String> = entry.all("memberOf").iter().map(|dn| dn_key(dn)).collect();
            if !groups.is_empty() {
                self.member_of.push((key.clone(), groups));
            }
        }
        match user_from(&self.cfg, entry) {
            Some(user) => {
                self.snap.users.insert(key, user);
            }
            None => self.snap.skipped.push(entry.dn.clone()),
        }
    }

    /// Users read so far.
    pub fn users(&self) -> usize {
        self.snap.users.len()
    }

    pub fn finish(self, groups: &[RawEntry], known: &KnownUsers) -> DirectorySnapshot {
        let mode = self.cfg.membership;
        let groups: Vec<GroupEntry> = groups.iter().map(|g| GroupEntry::new(g, mode)).collect();
        self.finish_prepared(&groups, known)
    }

    /// [`Translator::finish`] with the groups prepared already.
    pub fn finish_prepared(self, groups: &[GroupEntry], known: &KnownUsers) -> DirectorySnapshot {
        let Self {
            cfg,
            mut snap,
            member_of,
        } = self;
        for g in groups {
            snap.groups.insert(
                g.key.clone(),
                DirectoryGroup {
                    dn: g.dn.clone(),
                    name: g.name.clone(),
                },
            );
        }
        match cfg.membership {
            MembershipMode::GroupAttributes => members_from_groups(groups, known, &mut snap),
            MembershipMode::MemberOf => members_from_member_of(member_of, groups, &mut snap),
            // The poller asks the server for each group's members.
            MembershipMode::AdInChain => {}
        }
        snap
    }
}

/// A group entry with its member values keyed already (the costly part of
/// translating groups), which the poller does while users are still being
/// read; what is left for [`Translator::finish_prepared`] is lookups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupEntry {
    key: String,
    dn: String,
    name: String,
    /// Keys of the `member` and `uniqueMember` values (group attributes).
    members: Vec<String>,
    /// `memberUid` values (group attributes).
    member_uids: Vec<String>,
    /// Keys of the `memberOf` values (`memberOf` mode).
    parents: Vec<String>,
}

impl GroupEntry {
    pub fn new(entry: &RawEntry, mode: MembershipMode) -> Self {
        let mut g = GroupEntry {
            key: dn_key(&entry.dn),
            dn: entry.dn.clone(),
            name: entry.first("cn").unwrap_or(entry.dn.as_str()).to_string(),
            ..GroupEntry::default()
        };
        match mode {
            MembershipMode::GroupAttributes => {
                let dns = entry.all("member").iter().chain(entry.all("uniqueMember"));
                // uniqueMember may carry an optional `#'bits'B` UID suffix.
                g.members = dns
                    .map(|dn| dn_key(dn.split('#').next().unwrap_or(dn)))
                    .collect();
                g.member_uids = entry.all("memberUid").to_vec();
            }
            MembershipMode::MemberOf => {
                g.parents = entry.all("memberOf").iter().map(|dn| dn_key(dn)).collect();
            }
            MembershipMode::AdInChain => {}
        }
        g
    }
}

/// Display names must be unique per source, but two groups in different
/// OUs may share a `cn`: such groups are named by their full DN instead
/// (map them with a DN pattern). Deterministic, so names do not flap.
///
/// Two DNs can still fold to one name while their keys differ (the key
/// lower-cases; the name comparison also applies compatibility mappings, so
/// `cn=ϒ` and `cn=υ` are two entries with one folded name — a directory
/// applying LDAPprep (RFC 4518) would refuse the second). Such a group is
/// named by its DN plus a digest of its key: unique, and stable from poll
/// to poll whatever other groups come and go.
pub fn unique_group_names(groups: &BTreeMap<String, DirectoryGroup>) -> BTreeMap<String, String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    // A `cn` that is another group's DN would clash with that group's name
    // if it falls back to its DN (an invariant fuzz/fuzz_targets/ldap_translate checks).
    let mut dns: BTreeMap<String, usize> = BTreeMap::new();
    for g in groups.values() {
        *count.entry(fold_key(&g.name)).or_default() += 1;
        *dns.entry(fold_key(&g.dn)).or_default() += 1;
    }
    groups
        .iter()
        .map(|(key, g)| {
            let folded = fold_key(&g.name);
            let folded_dn = fold_key(&g.dn);
            let own_dn = usize::from(folded_dn == folded);
            let unique = count[&folded] == 1 && dns.get(&folded).copied().unwrap_or(0) == own_dn;
            let name = if unique {
                g.name.clone()
            } else if dns.get(&folded_dn).copied().unwrap_or(0) == 1 {
                g.dn.clone()
            } else {
                let digest = hex::encode(&Sha256::digest(key.as_bytes())[..6]);
                format!("{} #{digest}", g.dn)
            };
            (key.clone(), name)
        })
        .collect()
}

fn user_from(cfg: &LdapSourceConfig, e: &RawEntry) -> Option<DirectoryUser> {
    let owned = |name: &str| e.first(name).map(str::to_string);
    let (email, email_problem) = primary_email(e.first(&cfg.mail_attribute));
    Some(DirectoryUser {
        dn: e.dn.clone(),
        stable_id: owned(&cfg.id_attribute)?,
        login: owned(&cfg.login_attribute)?,
        email,
        email_problem,
        given_name: owned(&cfg.given_name_attribute),
        family_name: owned(&cfg.family_name_attribute),
        display_name: owned(&cfg.display_name_attribute).or_else(|| owned("cn")),
        active: !is_disabled(cfg.disabled, e),
    })
}

/// Whether an entry is a disabled account under `rule`.
pub fn is_disabled(rule: DisabledRule, e: &RawEntry) -> bool {
    match rule {
        DisabledRule::None => false,
        DisabledRule::OpenLdap => {
            e.first("nsAccountLock")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || e.first("pwdAccountLockedTime").is_some()
        }
        DisabledRule::ActiveDirectory => e
            .first("userAccountControl")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|uac| uac & 2 != 0),
    }
}

fn members_from_groups(groups: &[GroupEntry], known: &KnownUsers, snap: &mut DirectorySnapshot) {
    // Logins are only needed for memberUid values (posixGroup).
    let mut by_login: BTreeMap<&str, &String> = BTreeMap::new();
    if groups.iter().any(|g| !g.member_uids.is_empty()) {
        by_login.extend(known.iter().map(|(key, login)| (login.as_str(), key)));
        by_login.extend(snap.users.iter().map(|(key, u)| (u.login.as_str(), key)));
    }
    let known_keys: BTreeSet<&str> = known.iter().map(|(key, _)| key.as_str()).collect();
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut nested: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in groups {
        let mut direct_users = BTreeSet::new();
        let mut direct_groups = BTreeSet::new();
        for member in &g.members {
            if snap.users.contains_key(member) || known_keys.contains(member.as_str()) {
                direct_users.insert(member.clone());
            } else if snap.groups.contains_key(member) {
                direct_groups.insert(member.clone());
            }
        }
        for uid in &g.member_uids {
            if let Some(user_key) = by_login.get(uid.as_str()) {
                direct_users.insert((*user_key).clone());
            }
        }
        // Only groups with members get an entry; groups whose DNs share a
        // key are merged.
        if !direct_users.is_empty() {
            users.entry(g.key.clone()).or_default().extend(direct_users);
        }
        if !direct_groups.is_empty() {
            nested
                .entry(g.key.clone())
                .or_default()
                .extend(direct_groups);
        }
    }
    snap.user_members = users;
    snap.group_members = nested;
}

fn members_from_member_of(
    member_of: Vec<(String, Vec<String>)>,
    groups: &[GroupEntry],
    snap: &mut DirectorySnapshot,
) {
    for (user_key, group_keys) in member_of {
        if !snap.users.contains_key(&user_key) {
            continue;
        }
        for group_key in group_keys {
            if snap.groups.contains_key(&group_key) {
                snap.user_members
                    .entry(group_key)
                    .or_default()
                    .insert(user_key.clone());
            }
        }
    }
    // Nested groups: a group's own memberOf names its parents.
    for g in groups {
        for parent in &g.parents {
            if snap.groups.contains_key(parent) && *parent != g.key {
                snap.group_members
                    .entry(parent.clone())
                    .or_default()
                    .insert(g.key.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> RawEntry {
        RawEntry::new(
            dn,
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())),
        )
    }

    fn user(uid: &str, extra: &[(&str, &[&str])]) -> RawEntry {
        let mut attrs: Vec<(&str, &[&str])> =
            vec![("entryUUID", &["id"]), ("uid", std::slice::from_ref(&uid))];
        attrs.extend_from_slice(extra);
        let mut e = entry(&format!("uid={uid},ou=people,dc=x"), &attrs);
        e.attrs
            .insert("entryuuid".into(), vec![format!("id-{uid}")]);
        e
    }

    #[test]
    fn dn_keys_are_the_same_on_the_ascii_fast_path() {
        for dn in [
            "UID=Alice , OU=People,DC=Example, DC=org",
            "cn=a=b,dc=x",
            "cn= R&D (EU) ,dc=x",
            "",
            ",,=",
            "cn=x\t\x0b,dc=y",
            "CN=\u{00C9}quipe \u{03A3},DC=x",
        ] {
            assert_eq!(dn_key(dn), dn_key_unicode(dn), "{dn:?}");
        }
        assert_eq!(dn_key("UID=a , OU=P"), "uid=a,ou=p");
    }

    #[test]
    fn users_are_mapped_with_lower_cased_mail() {
        let cfg = LdapSourceConfig::default();
        let alice = user(
            "alice",
            &[
                ("mail", &["Alice@Example.ORG"]),
                ("givenName", &["Alice"]),
                ("cn", &["Alice A"]),
            ],
        );
        let snap = translate(
            &cfg,
            &[alice, entry("uid=nobody,dc=x", &[("uid", &["n"])])],
            &[],
            &[],
        );
        let u = &snap.users["uid=alice,ou=people,dc=x"];
        assert_eq!(u.stable_id, "id-alice");
        assert_eq!(u.email.as_deref(), Some("alice@example.org"));
        assert_eq!(u.display_name.as_deref(), Some("Alice A"));
        assert!(u.active);
        assert_eq!(snap.skipped, vec!["uid=nobody,dc=x".to_string()]);
    }

    #[test]
    fn disabled_rules() {
        type Attrs<'a> = &'a [(&'a str, &'a [&'a str])];
        let cases: &[(DisabledRule, Attrs, bool)] = &[
            (DisabledRule::OpenLdap, &[], false),
            (
                DisabledRule::OpenLdap,
                &[("nsAccountLock", &["TRUE"])],
                true,
            ),
            (
                DisabledRule::OpenLdap,
                &[("pwdAccountLockedTime", &["000001010000Z"])],
                true,
            ),
            (
                DisabledRule::ActiveDirectory,
                &[("userAccountControl", &["512"])],
                false,
            ),
            (
                DisabledRule::ActiveDirectory,
                &[("userAccountControl", &["514"])],
                true,
            ),
            (
                DisabledRule::ActiveDirectory,
                &[("userAccountControl", &["junk"])],
                false,
            ),
            (DisabledRule::None, &[("nsAccountLock", &["true"])], false),
        ];
        for (rule, attrs, expected) in cases {
            assert_eq!(
                is_disabled(*rule, &entry("cn=x", attrs)),
                *expected,
                "{rule:?} {attrs:?}"
            );
        }
    }

    #[test]
    fn all_three_group_kinds_and_nesting_give_direct_edges() {
        let cfg = LdapSourceConfig::default();
        let users = [user("alice", &[]), user("bob", &[])];
        let groups = [
            entry(
                "cn=eng,dc=x",
                &[
                    ("cn", &["eng"]),
                    (
                        "member",
                        &["UID=alice, ou=people,dc=x", "cn=ops,dc=x", "uid=gone,dc=x"],
                    ),
                ],
            ),
            entry(
                "cn=ops,dc=x",
                &[
                    ("cn", &["ops"]),
                    ("uniqueMember", &["uid=bob,ou=people,dc=x#'0101'B"]),
                ],
            ),
            entry(
                "cn=posix,dc=x",
                &[("cn", &["posix"]), ("memberUid", &["alice", "ghost"])],
            ),
        ];
        let snap = translate(&cfg, &users, &groups, &[]);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            snap.user_members["cn=eng,dc=x"],
            set(&["uid=alice,ou=people,dc=x"])
        );
        assert_eq!(snap.group_members["cn=eng,dc=x"], set(&["cn=ops,dc=x"]));
        assert_eq!(
            snap.user_members["cn=ops,dc=x"],
            set(&["uid=bob,ou=people,dc=x"])
        );
        assert_eq!(
            snap.user_members["cn=posix,dc=x"],
            set(&["uid=alice,ou=people,dc=x"])
        );
        assert_eq!(snap.groups["cn=ops,dc=x"].name, "ops");
    }

    #[test]
    fn member_of_mode_reads_users() {
        let cfg = LdapSourceConfig {
            membership: MembershipMode::MemberOf,
            ..Default::default()
        };
        let users = [user(
            "alice",
            &[("memberOf", &["cn=eng,dc=x", "cn=elsewhere,dc=y"])],
        )];
        let snap = translate(
            &cfg,
            &users,
            &[entry("cn=eng,dc=x", &[("cn", &["eng"])])],
            &[],
        );
        assert_eq!(snap.user_members.len(), 1);
        assert!(snap.user_members["cn=eng,dc=x"].contains("uid=alice,ou=people,dc=x"));
    }

    #[test]
    fn members_not_read_by_an_incremental_poll_resolve_through_known_users() {
        let cfg = LdapSourceConfig::default();
        let groups = [entry(
            "cn=eng,dc=x",
            &[
                ("cn", &["eng"]),
                ("member", &["uid=carol,ou=people,dc=x"]),
                ("memberUid", &["dave"]),
            ],
        )];
        let known = [
            ("uid=carol,ou=people,dc=x".to_string(), "carol".to_string()),
            ("uid=dave,ou=people,dc=x".to_string(), "dave".to_string()),
        ];
        let snap = translate(&cfg, &[], &groups, &known);
        assert_eq!(snap.user_members["cn=eng,dc=x"].len(), 2);
    }

    #[test]
    fn mail_is_folded_and_an_invalid_one_is_kept_out() {
        let cfg = LdapSourceConfig::default();
        let users = [
            user("nfd", &[("mail", &["Jose\u{301}@X.org"])]),
            user("bad", &[("mail", &["not-an-email"])]),
            user("nul", &[("mail", &["a\0b@x.org"])]),
        ];
        let snap = translate(&cfg, &users, &[], &[]);
        let get = |uid: &str| &snap.users[&format!("uid={uid},ou=people,dc=x")];
        assert_eq!(get("nfd").email.as_deref(), Some("jos\u{e9}@x.org"));
        assert_eq!(get("nfd").email_problem, None);
        assert_eq!(get("bad").email, None);
        assert_eq!(get("bad").email_problem, Some(EmailProblem::Syntax));
        assert_eq!(get("nul").email, None);
        assert_eq!(
            get("nul").email_problem,
            Some(EmailProblem::ControlCharacter)
        );
    }

    #[test]
    fn common_names_that_fold_together_clash_too() {
        let cfg = LdapSourceConfig::default();
        let groups = [
            entry("cn=Straße,ou=a,dc=x", &[("cn", &["Straße"])]),
            entry("cn=STRASSE,ou=b,dc=x", &[("cn", &["STRASSE"])]),
            entry("cn=jose,ou=a,dc=x", &[("cn", &["Jose\u{301}"])]),
        ];
        let snap = translate(&cfg, &[], &groups, &[]);
        let names = unique_group_names(&snap.groups);
        assert_eq!(names["cn=straße,ou=a,dc=x"], "cn=Straße,ou=a,dc=x");
        assert_eq!(names["cn=strasse,ou=b,dc=x"], "cn=STRASSE,ou=b,dc=x");
        assert_eq!(names["cn=jose,ou=a,dc=x"], "Jose\u{301}", "stored as read");
    }

    #[test]
    fn clashing_common_names_fall_back_to_the_dn() {
        let cfg = LdapSourceConfig::default();
        let groups = [
            entry("cn=ops,ou=a,dc=x", &[("cn", &["ops"])]),
            entry("cn=Ops,ou=b,dc=x", &[("cn", &["Ops"])]),
            entry("cn=eng,ou=a,dc=x", &[("cn", &["eng"])]),
        ];
        let snap = translate(&cfg, &[], &groups, &[]);
        let names = unique_group_names(&snap.groups);
        assert_eq!(names["cn=eng,ou=a,dc=x"], "eng");
        assert_eq!(names["cn=ops,ou=a,dc=x"], "cn=ops,ou=a,dc=x");
        assert_eq!(names["cn=ops,ou=b,dc=x"], "cn=Ops,ou=b,dc=x");
    }

    #[test]
    fn dns_that_fold_to_one_name_are_told_apart_by_a_digest_of_their_key() {
        // Found by fuzz/fuzz_targets/ldap_translate: U+03D2 and U+03C5
        // lower-case apart but fold (NFKC + case folding) together.
        let cfg = LdapSourceConfig::default();
        let groups = [
            entry("cn=\u{3d2},dc=x", &[]),
            entry("cn=\u{3c5},dc=x", &[]),
            entry("cn=ops,dc=x", &[("cn", &["ops"])]),
        ];
        let snap = translate(&cfg, &[], &groups, &[]);
        let first = unique_group_names(&snap.groups);
        assert_eq!(first["cn=ops,dc=x"], "ops");
        let hook = &first["cn=\u{3d2},dc=x"];
        let plain = &first["cn=\u{3c5},dc=x"];
        assert!(hook.starts_with("cn=\u{3d2},dc=x #"), "{hook}");
        assert!(plain.starts_with("cn=\u{3c5},dc=x #"), "{plain}");
        assert_ne!(fold_key(hook), fold_key(plain));
        // Stable: the same name whatever else the directory holds.
        let alone = translate(&cfg, &[], &groups[..2], &[]);
        assert_eq!(unique_group_names(&alone.groups), {
            let mut two = first.clone();
            two.remove("cn=ops,dc=x");
            two
        });
    }

    #[test]
    fn a_common_name_that_is_another_groups_dn_falls_back_to_the_dn() {
        let cfg = LdapSourceConfig::default();
        let groups = [
            entry("cn=ops,ou=a,dc=x", &[("cn", &["ops"])]),
            entry("cn=ops,ou=b,dc=x", &[("cn", &["ops"])]),
            entry("cn=odd,dc=x", &[("cn", &["CN=ops,ou=a,dc=x"])]),
            entry("cn=plain,dc=x", &[]),
        ];
        let snap = translate(&cfg, &[], &groups, &[]);
        let names = unique_group_names(&snap.groups);
        assert_eq!(names["cn=ops,ou=a,dc=x"], "cn=ops,ou=a,dc=x");
        assert_eq!(names["cn=odd,dc=x"], "cn=odd,dc=x");
        // A group without `cn` is named by its own DN, which is no clash.
        assert_eq!(names["cn=plain,dc=x"], "cn=plain,dc=x");
        let distinct: BTreeSet<String> = names.values().map(|n| n.to_lowercase()).collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }

    #[test]
    fn member_of_mode_reads_nested_groups_from_groups() {
        let cfg = LdapSourceConfig {
            membership: MembershipMode::MemberOf,
            ..Default::default()
        };
        let groups = [
            entry("cn=eng,dc=x", &[("cn", &["eng"])]),
            entry(
                "cn=ops,dc=x",
                &[("cn", &["ops"]), ("memberOf", &["cn=eng,dc=x"])],
            ),
        ];
        let snap = translate(&cfg, &[], &groups, &[]);
        assert!(snap.group_members["cn=eng,dc=x"].contains("cn=ops,dc=x"));
    }
}
