//! The pure resolution: identities and rules in, desired Tyk users and groups
//! out. No I/O; the same input in any order gives an equal result. See the
//! module doc of [`crate::mapping`] for the rules it implements.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::matcher::{GroupRef, SsoPattern};
use super::rule::MappingRule;
use crate::domain::{DesiredGroup, DesiredState, DesiredUser, SourceName};

/// One identity of a person in one source, with all its groups (nested
/// groups already expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonIdentity {
    pub source: SourceName,
    pub user_name: String,
    /// Primary e-mail (its join key, `domain::email_key`); `None` means the
    /// person cannot be provisioned into Tyk.
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// SCIM `displayName`; LDAP `displayName`, else `cn`.
    pub display_name: Option<String>,
    pub active: bool,
    pub groups: Vec<GroupRef>,
}

/// What happens to people no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmappedPolicy {
    /// Not provisioned (and removed from Tyk by the sync worker).
    #[default]
    Ignore,
    /// Kept in the default organisation, inactive, with no group.
    Deactivate,
    /// Put in the default group of the default organisation.
    Default,
}

/// Settings of the resolution that are not rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveOptions {
    pub unmapped_policy: UnmappedPolicy,
    /// Tyk organisation for unmapped people (`deactivate`, `default`).
    pub default_org_id: Option<String>,
    /// Tyk group name (a rule's group in the default org) for `default`.
    pub default_group: Option<String>,
    /// Source preference for names when sources disagree.
    pub source_order: Vec<String>,
}

/// A rule that matched a person, and through which of their groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub rule_id: String,
    pub org_id: String,
    pub group: String,
    pub priority: i64,
    /// `(mappingsSSO entry, "source:group display name")` pairs.
    pub matched_by: Vec<(String, String)>,
    pub won: bool,
}

pub(super) struct CompiledRule<'a> {
    rule: &'a MappingRule,
    patterns: Vec<SsoPattern>,
}

/// A person merged across sources.
pub(super) struct Person<'a> {
    pub(super) email: String,
    pub(super) identities: Vec<&'a PersonIdentity>,
}

/// The desired Tyk state for everyone. Users and groups come out sorted.
pub fn desired_state(
    people: &[PersonIdentity],
    rules: &[MappingRule],
    options: &ResolveOptions,
) -> DesiredState {
    let compiled = compile(rules);
    let mut users: Vec<DesiredUser> = merge_people(people)
        .iter()
        .flat_map(|person| decide(person, &compiled, options).0)
        .collect();
    users.sort();
    let mut groups: Vec<DesiredGroup> = rules
        .iter()
        .map(|rule| DesiredGroup {
            org_id: rule.org_id.clone(),
            name: rule.name.clone(),
            description: rule.description.clone(),
            permissions: rule.permissions.clone(),
        })
        .collect();
    groups.sort();
    groups.dedup_by(|a, b| a.org_id == b.org_id && a.name == b.name);
    DesiredState { groups, users }
}

pub(super) fn describe_group(group: &GroupRef) -> String {
    match &group.external_id {
        Some(id) => format!("{}:{} ({id})", group.source, group.display_name),
        None => format!("{}:{}", group.source, group.display_name),
    }
}

/// The key identities are merged by and Tyk's login: trimmed and folded
/// (`domain::fold_key`), so look-alike spellings of one address in two
/// sources are one person.
pub(super) fn normalise_email(email: &str) -> String {
    crate::domain::fold_key(email.trim())
}

pub(super) fn compile(rules: &[MappingRule]) -> Vec<CompiledRule<'_>> {
    let mut compiled: Vec<CompiledRule<'_>> = rules
        .iter()
        .map(|rule| CompiledRule {
            rule,
            patterns: rule.patterns(),
        })
        .collect();
    compiled.sort_by(|a, b| {
        (&a.rule.org_id, &a.rule.name, &a.rule.id).cmp(&(&b.rule.org_id, &b.rule.name, &b.rule.id))
    });
    compiled
}

/// Groups identities by e-mail key; identities without a valid address are
/// dropped, so no Tyk user is ever planned with a value that is not an
/// e-mail (the store keeps such addresses out of `email` already; checking
/// here too covers every way an identity reaches the mapping).
fn merge_people(people: &[PersonIdentity]) -> Vec<Person<'_>> {
    let mut by_email: BTreeMap<String, Vec<&PersonIdentity>> = BTreeMap::new();
    for identity in people {
        if let Some(email) = identity
            .email
            .as_deref()
            .and_then(|e| crate::domain::email_key(e).ok())
        {
            by_email.entry(email).or_default().push(identity);
        }
    }
    by_email
        .into_iter()
        .map(|(email, mut identities)| {
            identities.sort_by(|a, b| (&a.source, &a.user_name).cmp(&(&b.source, &b.user_name)));
            Person { email, identities }
        })
        .collect()
}

type Decision = (Vec<DesiredUser>, Vec<RuleMatch>, Vec<String>);

pub(super) fn decide(
    person: &Person<'_>,
    rules: &[CompiledRule<'_>],
    options: &ResolveOptions,
) -> Decision {
    let groups: BTreeSet<&GroupRef> = person
        .identities
        .iter()
        .flat_map(|i| i.groups.iter())
        .collect();
    let mut matches: Vec<RuleMatch> = rules
        .iter()
        .filter_map(|rule| match_rule(rule, &groups))
        .collect();
    let mut winners: BTreeMap<String, usize> = BTreeMap::new();
    for (index, candidate) in matches.iter().enumerate() {
        let better = winners
            .get(&candidate.org_id)
            .is_none_or(|&best| rank(candidate) > rank(&matches[best]));
        if better {
            winners.insert(candidate.org_id.clone(), index);
        }
    }
    let mut users = Vec::new();
    let mut reasons = Vec::new();
    for (org, &index) in &winners {
        matches[index].won = true;
        let winner = &matches[index];
        let rivals = matches.iter().filter(|m| &m.org_id == org).count() - 1;
        reasons.push(win_reason(winner, rivals));
        users.push(user(
            person,
            options,
            org,
            Some(&winner.group),
            Some(&winner.rule_id),
            true,
        ));
    }
    if winners.is_empty() {
        let (user, reason) = unmapped(person, rules, options);
        users.extend(user);
        reasons.push(reason);
    }
    matches.sort_by(|a, b| {
        (&a.org_id, Reverse(a.priority), &a.group).cmp(&(&b.org_id, Reverse(b.priority), &b.group))
    });
    (users, matches, reasons)
}

/// Higher is better: priority, then smaller group name, then smaller id.
fn rank(m: &RuleMatch) -> (i64, Reverse<&str>, Reverse<&str>) {
    (
        m.priority,
        Reverse(m.group.as_str()),
        Reverse(m.rule_id.as_str()),
    )
}

fn win_reason(winner: &RuleMatch, rivals: usize) -> String {
    let base = format!(
        "org {}: rule {:?} (group {:?}, priority {}) wins",
        winner.org_id, winner.rule_id, winner.group, winner.priority
    );
    match rivals {
        0 => format!("{base}: it is the only matching rule in this org"),
        n => format!(
            "{base} over {n} other matching rule(s): highest priority, ties broken by \
             smaller group name, then smaller rule id"
        ),
    }
}

fn match_rule(rule: &CompiledRule<'_>, groups: &BTreeSet<&GroupRef>) -> Option<RuleMatch> {
    let matched_by: Vec<(String, String)> = rule
        .patterns
        .iter()
        .flat_map(|pattern| {
            groups
                .iter()
                .filter(|group| pattern.matches(group))
                .map(|group| (pattern.text.clone(), describe_group(group)))
        })
        .collect();
    (!matched_by.is_empty()).then(|| RuleMatch {
        rule_id: rule.rule.id.clone(),
        org_id: rule.rule.org_id.clone(),
        group: rule.rule.name.clone(),
        priority: rule.rule.priority,
        matched_by,
        won: false,
    })
}

fn unmapped(
    person: &Person<'_>,
    rules: &[CompiledRule<'_>],
    options: &ResolveOptions,
) -> (Option<DesiredUser>, String) {
    let Some(org) = options.default_org_id.as_deref() else {
        return match options.unmapped_policy {
            UnmappedPolicy::Ignore => (
                None,
                "no rule matched; policy ignore: not provisioned".into(),
            ),
            _ => (
                None,
                "no rule matched and no default_org_id is set: not provisioned".into(),
            ),
        };
    };
    match options.unmapped_policy {
        UnmappedPolicy::Ignore => (
            None,
            "no rule matched; policy ignore: not provisioned".into(),
        ),
        UnmappedPolicy::Deactivate => (
            Some(user(person, options, org, None, None, false)),
            format!("no rule matched; policy deactivate: inactive in org {org} with no group"),
        ),
        UnmappedPolicy::Default => {
            let default_group = options.default_group.as_deref().and_then(|name| {
                rules
                    .iter()
                    .find(|r| r.rule.org_id == org && r.rule.name == name)
            });
            match default_group {
                Some(rule) => (
                    Some(user(
                        person,
                        options,
                        org,
                        Some(&rule.rule.name),
                        None,
                        true,
                    )),
                    format!(
                        "no rule matched; policy default: group {:?} in org {org}",
                        rule.rule.name
                    ),
                ),
                None => (
                    None,
                    "no rule matched; policy default, but the default group has no rule in \
                     the default org (it would have no permissions): not provisioned"
                        .into(),
                ),
            }
        }
    }
}

fn user(
    person: &Person<'_>,
    options: &ResolveOptions,
    org: &str,
    group: Option<&String>,
    rule: Option<&String>,
    mapped: bool,
) -> DesiredUser {
    let preferred = by_source_order(&person.identities, &options.source_order);
    let pick = |field: fn(&PersonIdentity) -> Option<&String>| {
        preferred
            .iter()
            .find_map(|i| field(i).filter(|v| !v.trim().is_empty()))
            .map(String::as_str)
    };
    let login = preferred.first().map_or("", |i| i.user_name.as_str());
    let (first_name, last_name) = super::names::tyk_names(super::names::NameSources {
        given_name: pick(|i| i.given_name.as_ref()),
        family_name: pick(|i| i.family_name.as_ref()),
        display_name: pick(|i| i.display_name.as_ref()),
        user_name: login,
        email: &person.email,
    });
    let mut sources: Vec<SourceName> = person.identities.iter().map(|i| i.source.clone()).collect();
    sources.sort();
    sources.dedup();
    DesiredUser {
        org_id: org.to_string(),
        email: person.email.clone(),
        first_name,
        last_name,
        active: mapped && person.identities.iter().any(|i| i.active),
        group: group.cloned(),
        rule: rule.cloned(),
        sources,
    }
}

/// Identities ordered by the configured source order; unlisted sources
/// follow in name order.
fn by_source_order<'a>(
    identities: &[&'a PersonIdentity],
    order: &[String],
) -> Vec<&'a PersonIdentity> {
    let mut sorted = identities.to_vec();
    sorted.sort_by_key(|i| {
        let position = order
            .iter()
            .position(|s| s.eq_ignore_ascii_case(i.source.as_str()))
            .unwrap_or(usize::MAX);
        (position, i.source.clone(), i.user_name.clone())
    });
    sorted
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
