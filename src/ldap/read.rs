//! Reading one source: users (all, or changed since a time), all groups,
//! and what the configuration adds (the disabled filter, AD range
//! retrieval, AD in-chain membership). Users and groups are read at once
//! on two connections. Any failure fails the whole read:
//! a partial directory must never look like one that lost entries.

use std::collections::{BTreeMap, BTreeSet};

use secrecy::SecretString;

use super::client::LdapClient;
use super::config::{LdapSourceConfig, MembershipMode};
use super::error::LdapError;
use super::escape::filter_value;
use super::translate::{GroupEntry, RawEntry, Translator, dn_key};
use crate::domain::Timestamp;

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: transitive membership, server-side.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// Everything one poll read.
#[derive(Debug, Default)]
pub struct DirectoryRead {
    pub users: Vec<RawEntry>,
    pub groups: Vec<RawEntry>,
    /// DN keys of users the `disabled_filter` matched.
    pub disabled: BTreeSet<String>,
    /// AD in-chain mode: group DN key → DN keys of its (transitive) users.
    pub in_chain: BTreeMap<String, BTreeSet<String>>,
    /// Incremental `member_of` polls: every user's `memberOf`.
    pub member_of: Option<AllMemberOf>,
}

/// Every user's `memberOf`, read by an incremental `member_of` poll apart
/// from the changed users: adding someone to a group or removing them
/// changes the group and the user's `memberOf`, not the user's
/// `modifyTimestamp` (nor AD's `whenChanged`), so the changed users alone
/// would miss it.
#[derive(Debug, Default)]
pub struct AllMemberOf {
    /// User entries read (with or without `memberOf`).
    pub users: usize,
    /// (user DN key, its groups' DN keys), for users in some group.
    pub memberships: Vec<(String, Vec<String>)>,
}

/// Reads the directory; `since` restricts users to those changed after it.
pub async fn read_directory(
    cfg: &LdapSourceConfig,
    password: &SecretString,
    since: Option<Timestamp>,
) -> Result<DirectoryRead, LdapError> {
    let mut users = Vec::new();
    let (rest, ()) = read_parts(cfg, password, since, |e| users.push(e), |_| ()).await?;
    Ok(DirectoryRead { users, ..rest })
}

/// What [`read_translated`] returns: the users translated as they arrived,
/// the groups prepared, the rest as read.
#[derive(Debug)]
pub struct TranslatedRead {
    pub users: Translator,
    pub groups: Vec<GroupEntry>,
    /// As in [`DirectoryRead`]; `users` and `groups` are empty.
    pub rest: DirectoryRead,
}

/// Like [`read_directory`], but each user entry is translated as it
/// arrives and then dropped (a poll never holds every raw user entry), and
/// the groups are prepared ([`GroupEntry`]) while the users are still
/// being read.
pub async fn read_translated(
    cfg: &LdapSourceConfig,
    password: &SecretString,
    since: Option<Timestamp>,
) -> Result<TranslatedRead, LdapError> {
    let mut users = Translator::new(cfg);
    let mode = cfg.membership;
    let prepare = move |groups: &[RawEntry]| -> Vec<GroupEntry> {
        groups.iter().map(|g| GroupEntry::new(g, mode)).collect()
    };
    let (mut rest, groups) =
        read_parts(cfg, password, since, |e| users.push_user(&e), prepare).await?;
    rest.groups = Vec::new();
    Ok(TranslatedRead {
        users,
        groups,
        rest,
    })
}

/// Users (into `sink`) and groups are read at the same time on two
/// connections; either failing fails the read. `prepare` runs on the
/// groups as soon as they are read, on a blocking thread (beside the
/// users still arriving).
async fn read_parts<G: Send + 'static>(
    cfg: &LdapSourceConfig,
    password: &SecretString,
    since: Option<Timestamp>,
    sink: impl FnMut(RawEntry),
    prepare: impl FnOnce(&[RawEntry]) -> G + Send + 'static,
) -> Result<(DirectoryRead, G), LdapError> {
    let (mut users_client, mut groups_client) = tokio::try_join!(
        LdapClient::connect(cfg, password),
        LdapClient::connect(cfg, password)
    )?;
    let result = async {
        let groups = async {
            let groups = read_groups(&mut groups_client, cfg).await?;
            tokio::task::spawn_blocking(move || {
                let prepared = prepare(&groups);
                (groups, prepared)
            })
            .await
            .map_err(|e| LdapError::Search {
                base: cfg.group_base.clone(),
                detail: format!("preparing the groups read failed: {e}"),
            })
        };
        let users = async {
            read_users(&mut users_client, cfg, since, sink).await?;
            if since.is_some() && cfg.membership == MembershipMode::MemberOf {
                read_all_member_of(&mut users_client, cfg).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (member_of, (groups, prepared)) = tokio::try_join!(users, groups)?;
        let mut read = read_extras(&mut users_client, cfg, groups).await?;
        read.member_of = member_of;
        Ok((read, prepared))
    }
    .await;
    tokio::join!(users_client.close(), groups_client.close());
    result
}

async fn read_users(
    client: &mut LdapClient,
    cfg: &LdapSourceConfig,
    since: Option<Timestamp>,
    sink: impl FnMut(RawEntry),
) -> Result<(), LdapError> {
    let user_filter = match since {
        Some(t) => changed_since_filter(&cfg.user_filter, &cfg.incremental_attribute, t),
        None => cfg.user_filter.clone(),
    };
    let attrs = user_attributes(cfg);
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    client
        .search_each(&cfg.user_base, &cfg.user_scope, &user_filter, &attrs, sink)
        .await
}

/// Every user's `memberOf` and nothing else, paged like any read.
async fn read_all_member_of(
    client: &mut LdapClient,
    cfg: &LdapSourceConfig,
) -> Result<AllMemberOf, LdapError> {
    let mut all = AllMemberOf::default();
    client
        .search_each(
            &cfg.user_base,
            &cfg.user_scope,
            &cfg.user_filter,
            &["memberOf"],
            |entry| {
                all.users += 1;
                if let Some(groups) = entry.attrs.get("memberof").filter(|g| !g.is_empty()) {
                    let groups = groups.iter().map(|dn| dn_key(dn)).collect();
                    all.memberships.push((dn_key(&entry.dn), groups));
                }
            },
        )
        .await?;
    Ok(all)
}

async fn read_groups(
    client: &mut LdapClient,
    cfg: &LdapSourceConfig,
) -> Result<Vec<RawEntry>, LdapError> {
    let group_attrs = [
        "cn",
        "member",
        "uniqueMember",
        "memberUid",
        "memberOf",
        cfg.id_attribute.as_str(),
    ];
    let mut groups = client
        .search_all(
            &cfg.group_base,
            &cfg.group_scope,
            &cfg.group_filter,
            &group_attrs,
        )
        .await?;
    for group in &mut groups {
        client.complete_ranged(group).await?;
    }
    Ok(groups)
}

/// The disabled filter and AD in-chain membership.
async fn read_extras(
    client: &mut LdapClient,
    cfg: &LdapSourceConfig,
    groups: Vec<RawEntry>,
) -> Result<DirectoryRead, LdapError> {
    let mut read = DirectoryRead {
        groups,
        ..DirectoryRead::default()
    };
    if let Some(filter) = &cfg.disabled_filter {
        let filter = format!("(&{}{filter})", cfg.user_filter);
        let dns = client
            .search_dns(&cfg.user_base, &cfg.user_scope, &filter)
            .await?;
        read.disabled = dns.iter().map(|dn| dn_key(dn)).collect();
    }
    if cfg.membership == MembershipMode::AdInChain {
        for group in &read.groups {
            let filter = in_chain_filter(&cfg.user_filter, &group.dn);
            let dns = client
                .search_dns(&cfg.user_base, &cfg.user_scope, &filter)
                .await?;
            read.in_chain
                .insert(dn_key(&group.dn), dns.iter().map(|dn| dn_key(dn)).collect());
        }
    }
    Ok(read)
}

/// `(&<filter>(<attr>>=<generalized time>))`.
pub fn changed_since_filter(filter: &str, attribute: &str, since: Timestamp) -> String {
    let time = since.as_datetime().format("%Y%m%d%H%M%SZ");
    format!("(&{filter}({attribute}>={time}))")
}

/// Users whose transitive membership includes `group_dn` (AD only).
pub fn in_chain_filter(user_filter: &str, group_dn: &str) -> String {
    format!(
        "(&{user_filter}(memberOf:{IN_CHAIN}:={}))",
        filter_value(group_dn)
    )
}

fn user_attributes(cfg: &LdapSourceConfig) -> Vec<String> {
    let mut attrs = vec![
        cfg.id_attribute.clone(),
        cfg.login_attribute.clone(),
        cfg.mail_attribute.clone(),
        cfg.given_name_attribute.clone(),
        cfg.family_name_attribute.clone(),
        cfg.display_name_attribute.clone(),
        "cn".into(),
        "memberOf".into(),
        "nsAccountLock".into(),
        "pwdAccountLockedTime".into(),
        "userAccountControl".into(),
    ];
    attrs.sort();
    attrs.dedup();
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_filters_use_generalized_time() {
        let t = Timestamp::parse_rfc3339("2026-11-30T02:03:04.500Z").expect("time");
        assert_eq!(
            changed_since_filter("(objectClass=person)", "modifyTimestamp", t),
            "(&(objectClass=person)(modifyTimestamp>=20261130020304Z))"
        );
    }

    #[test]
    fn in_chain_filters_escape_the_group_dn() {
        assert_eq!(
            in_chain_filter("(objectClass=user)", "CN=R&D (EU),DC=corp"),
            "(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:=CN=R&D \\28EU\\29,DC=corp))"
        );
    }
}
