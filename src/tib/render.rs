//! Rendering one TIB profile, pure: (template, the org's mapping rules, the
//! source's known IdP groups, Tyk group ids, the default group) → the
//! profile JSON TIB should hold.
//!
//! TIB looks each group the IdP sends up in `UserGroupMapping` with an
//! exact, case-sensitive key, so globs and source prefixes of
//! `mappingsSSO` are turned into literal keys: every literal entry as
//! written, plus the display name and external id (Okta/Entra group id,
//! LDAP DN) of every known group of the source that an entry matches. A
//! key claimed by several rules goes to the rule that wins by our order
//! (priority, then name, then id), as it would for a person in only that
//! group.
//!
//! `DefaultUserGroupID` is never empty: TIB makes a user without a group a
//! Dashboard admin. Without a known group id the profile is not rendered.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::config::{Template, TibProfileConfig};
use super::profile::{USER_PROFILE_ACTION, normalise};
use crate::mapping::{GroupRef, MappingRule};

/// Everything one profile is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    pub profile: &'a TibProfileConfig,
    pub template: &'a Template,
    /// All mapping rules (other orgs' are ignored).
    pub rules: &'a [MappingRule],
    /// Known groups of any source (other sources' are ignored).
    pub groups: &'a [GroupRef],
    /// Tyk group name → id, in the profile's organisation.
    pub group_ids: &'a BTreeMap<String, String>,
    /// The configured default group name, if any.
    pub default_group: Option<&'a str>,
}

/// A rendered profile and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedProfile {
    pub id: String,
    pub source: String,
    pub org_id: String,
    /// The whole profile as TIB stores it.
    pub profile: Value,
    /// Every rule of the org, with its keys and Tyk group id.
    pub groups: Vec<MappedGroup>,
    /// The group of `DefaultUserGroupID` and why it was chosen.
    pub default_group: DefaultGroup,
    /// Things the operator should know (keys claimed twice, rules without
    /// a Tyk group yet…).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappedGroup {
    pub name: String,
    pub priority: i64,
    pub tyk_group_id: Option<String>,
    /// The `UserGroupMapping` keys that lead to this group.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefaultGroup {
    pub name: String,
    pub tyk_group_id: String,
    /// `configured` or `least_privileged`.
    pub chosen: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "profile {profile:?}: no mapped group of org {org_id} has a Tyk group id yet, so \
         DefaultUserGroupID would be empty (TIB would make SSO users admins); not rendered"
    )]
    NoDefaultGroup { profile: String, org_id: String },
}

/// Our order: higher priority, then smaller name, then smaller id wins.
fn wins(a: &MappingRule, b: &MappingRule) -> bool {
    (std::cmp::Reverse(a.priority), &a.name, &a.id)
        < (std::cmp::Reverse(b.priority), &b.name, &b.id)
}

/// Privilege of a permission template: write counts 2, read 1.
fn privilege(rule: &MappingRule) -> usize {
    rule.permissions
        .values()
        .map(|level| match level.as_str() {
            "write" => 2,
            "read" => 1,
            _ => 0,
        })
        .sum()
}

/// The keys of one rule for one source.
fn rule_keys(rule: &MappingRule, source: &str, groups: &[GroupRef]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for pattern in rule.patterns() {
        if !pattern.applies_to(source) {
            continue;
        }
        if let Some(literal) = pattern.literal() {
            keys.insert(literal.to_string());
        }
        for group in groups.iter().filter(|g| g.source.as_str() == source) {
            if pattern.matches(group) {
                keys.insert(group.display_name.clone());
                if let Some(id) = &group.external_id {
                    keys.insert(id.clone());
                }
            }
        }
    }
    keys.retain(|k| !k.is_empty());
    keys
}

pub fn render(input: RenderInput<'_>) -> Result<RenderedProfile, RenderError> {
    let profile = input.profile;
    let mut rules: Vec<&MappingRule> = input
        .rules
        .iter()
        .filter(|r| r.org_id == profile.org_id)
        .collect();
    rules.sort_by(|a, b| {
        if wins(a, b) {
            std::cmp::Ordering::Less
        } else if wins(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let mut notes = Vec::new();
    let mut mapping: BTreeMap<String, (&MappingRule, String)> = BTreeMap::new();
    let mut groups = Vec::new();
    for rule in &rules {
        let id = input.group_ids.get(&rule.name).cloned();
        let keys = rule_keys(rule, &profile.source, input.groups);
        let mut own_keys = Vec::new();
        for key in keys {
            match (&id, mapping.get(&key)) {
                (_, Some((winner, _))) => notes.push(format!(
                    "IdP group {key:?} maps to {:?} and {:?}; TIB can hold one, {:?} wins",
                    winner.name, rule.name, winner.name
                )),
                (Some(id), None) => {
                    mapping.insert(key.clone(), (rule, id.clone()));
                    own_keys.push(key);
                }
                (None, None) => own_keys.push(key),
            }
        }
        if id.is_none() && !own_keys.is_empty() {
            notes.push(format!(
                "group {:?} has no Tyk group id yet (the next sync creates it); its IdP groups \
                 are left out",
                rule.name
            ));
        }
        groups.push(MappedGroup {
            name: rule.name.clone(),
            priority: rule.priority,
            tyk_group_id: id,
            keys: own_keys,
        });
    }
    let separator = match input.template.fields.get("UserGroupSeparator") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => " ".to_string(),
    };
    for key in mapping.keys().filter(|k| k.contains(separator.as_str())) {
        notes.push(format!(
            "IdP group {key:?} contains the UserGroupSeparator {separator:?}: TIB matches it only \
             when the IdP sends groups as a list, not as one string"
        ));
    }
    let default_group =
        choose_default(&input, &rules, &mut notes).ok_or_else(|| RenderError::NoDefaultGroup {
            profile: profile.id.clone(),
            org_id: profile.org_id.clone(),
        })?;

    if input.template.fields.get("SSOOnlyForRegisteredUsers") == Some(&Value::Bool(false)) {
        notes.push(
            "the template turns SSOOnlyForRegisteredUsers off: anyone the IdP authenticates \
             gets a Dashboard session, provisioned or not"
                .into(),
        );
    }
    let mut fields: Map<String, Value> = input.template.fields.clone();
    fields.insert("ID".into(), Value::String(profile.id.clone()));
    fields.insert("OrgID".into(), Value::String(profile.org_id.clone()));
    fields.insert(
        "ActionType".into(),
        Value::String(USER_PROFILE_ACTION.into()),
    );
    fields.insert(
        "UserGroupMapping".into(),
        Value::Object(
            mapping
                .into_iter()
                .map(|(key, (_, id))| (key, Value::String(id)))
                .collect(),
        ),
    );
    fields.insert(
        "DefaultUserGroupID".into(),
        Value::String(default_group.tyk_group_id.clone()),
    );
    fields
        .entry("CustomUserGroupField")
        .or_insert_with(|| Value::String("groups".into()));
    // Only provisioned people may log in, unless the operator says so.
    fields
        .entry("SSOOnlyForRegisteredUsers")
        .or_insert(Value::Bool(true));
    Ok(RenderedProfile {
        id: profile.id.clone(),
        source: profile.source.clone(),
        org_id: profile.org_id.clone(),
        profile: Value::Object(normalise(&Value::Object(fields))),
        groups,
        default_group,
        notes,
    })
}

/// The configured default group when it has an id, else the least
/// privileged rule with an id (ties: lower priority, then name).
fn choose_default(
    input: &RenderInput<'_>,
    rules: &[&MappingRule],
    notes: &mut Vec<String>,
) -> Option<DefaultGroup> {
    if let Some(name) = input.default_group {
        match input.group_ids.get(name) {
            Some(id) => {
                return Some(DefaultGroup {
                    name: name.to_string(),
                    tyk_group_id: id.clone(),
                    chosen: "configured",
                });
            }
            None => notes.push(format!(
                "the default group {name:?} has no Tyk group id (no Tyk group of that name \
                 in this org yet); the least privileged mapped group is the default meanwhile"
            )),
        }
    }
    rules
        .iter()
        .filter_map(|r| input.group_ids.get(&r.name).map(|id| (*r, id)))
        .min_by(|(a, _), (b, _)| {
            (privilege(a), a.priority, &a.name).cmp(&(privilege(b), b.priority, &b.name))
        })
        .map(|(rule, id)| DefaultGroup {
            name: rule.name.clone(),
            tyk_group_id: id.clone(),
            chosen: "least_privileged",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceName;
    use serde_json::json;

    fn rule(name: &str, priority: i64, sso: &[&str], perms: &[(&str, &str)]) -> MappingRule {
        MappingRule {
            id: format!("r-{name}"),
            org_id: "org1".into(),
            name: name.into(),
            description: None,
            priority,
            mappings_sso: sso.iter().map(|s| s.to_string()).collect(),
            permissions: perms
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn group(source: &str, name: &str, id: Option<&str>) -> GroupRef {
        GroupRef {
            source: SourceName::new(source),
            display_name: name.into(),
            external_id: id.map(str::to_string),
        }
    }

    struct Fixture {
        profile: TibProfileConfig,
        template: Template,
        rules: Vec<MappingRule>,
        groups: Vec<GroupRef>,
        ids: BTreeMap<String, String>,
    }

    fn fixture() -> Fixture {
        let template = json!({"ProviderName": "SocialProvider", "Type": "redirect",
            "ReturnURL": "https://dashboard.example.org/tap",
            "ProviderConfig": {"UseProviders": [{"Name": "openid-connect", "Key": "client",
                "Secret": "client-secret", "DiscoverURL": "https://okta/.well-known"}]}});
        Fixture {
            profile: TibProfileConfig {
                id: "okta-dashboard".into(),
                source: "okta".into(),
                org_id: "org1".into(),
                template_file: "okta.json".into(),
                default_group: None,
            },
            template: Template {
                fields: template.as_object().cloned().unwrap_or_default(),
            },
            rules: vec![
                rule(
                    "API Admins",
                    50,
                    &["okta:API Admins", "ldap-corp:cn=admins,dc=x"],
                    &[("apis", "write"), ("keys", "write")],
                ),
                rule(
                    "Developers",
                    10,
                    &["okta:Platform*", "developers"],
                    &[("apis", "read")],
                ),
                rule("Readers", 0, &["everyone"], &[("analytics", "read")]),
                MappingRule {
                    org_id: "org2".into(),
                    ..rule("Other org", 99, &["developers"], &[])
                },
            ],
            groups: vec![
                group("okta", "Platform Team", Some("00g1")),
                group("okta", "Platform Ops", Some("00g2")),
                group("okta", "Sales", Some("00g3")),
                group("ldap-corp", "Platform LDAP", Some("cn=platform,dc=x")),
            ],
            ids: BTreeMap::from([
                ("API Admins".into(), "aaaa".into()),
                ("Developers".into(), "dddd".into()),
                ("Readers".into(), "rrrr".into()),
            ]),
        }
    }

    fn input(f: &Fixture) -> RenderInput<'_> {
        RenderInput {
            profile: &f.profile,
            template: &f.template,
            rules: &f.rules,
            groups: &f.groups,
            group_ids: &f.ids,
            default_group: None,
        }
    }

    #[test]
    fn rendered_profile_snapshot() {
        let f = fixture();
        let rendered = render(input(&f)).expect("render");
        insta::assert_json_snapshot!(rendered);
    }

    #[test]
    fn the_default_is_the_configured_group_else_the_least_privileged() {
        let f = fixture();
        let rendered = render(input(&f)).expect("render");
        assert_eq!(rendered.default_group.name, "Readers");
        assert_eq!(rendered.profile["DefaultUserGroupID"], "rrrr");
        let configured = render(RenderInput {
            default_group: Some("Developers"),
            ..input(&f)
        })
        .expect("render");
        assert_eq!(configured.profile["DefaultUserGroupID"], "dddd");
        assert_eq!(configured.default_group.chosen, "configured");
    }

    #[test]
    fn without_any_group_id_nothing_is_rendered() {
        let mut f = fixture();
        f.ids.clear();
        assert!(matches!(
            render(input(&f)),
            Err(RenderError::NoDefaultGroup { .. })
        ));
    }

    #[test]
    fn a_group_without_id_is_left_out_and_noted() {
        let mut f = fixture();
        f.ids.remove("Developers");
        let rendered = render(input(&f)).expect("render");
        let mapping = rendered.profile["UserGroupMapping"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(!mapping.values().any(|v| v == "dddd"));
        assert!(rendered.notes.iter().any(|n| n.contains("Developers")));
    }

    #[test]
    fn a_key_claimed_twice_goes_to_our_winner() {
        let mut f = fixture();
        f.rules
            .push(rule("Platform Leads", 70, &["Platform Team"], &[]));
        f.ids.insert("Platform Leads".into(), "llll".into());
        let rendered = render(input(&f)).expect("render");
        assert_eq!(
            rendered.profile["UserGroupMapping"]["Platform Team"],
            "llll"
        );
        assert_eq!(rendered.profile["UserGroupMapping"]["Platform Ops"], "dddd");
    }

    #[test]
    fn the_template_may_switch_registered_only_off_and_name_the_claim() {
        let mut f = fixture();
        f.template
            .fields
            .insert("SSOOnlyForRegisteredUsers".into(), json!(false));
        f.template
            .fields
            .insert("CustomUserGroupField".into(), json!("memberOf"));
        let rendered = render(input(&f)).expect("render");
        assert_eq!(rendered.profile["SSOOnlyForRegisteredUsers"], false);
        assert_eq!(rendered.profile["CustomUserGroupField"], "memberOf");
    }
}
