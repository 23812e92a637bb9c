//! Parsing and matching `mappingsSSO` entries.
//!
//! Entry syntax: `[source:]target`.
//! - `source:` is optional; it is recognised when the text before the first
//!   `:` looks like a source name (letters, digits, `-`, `_`, `.`) and has no
//!   `=`. `*:` means any source, which lets a display name containing `:`
//!   be written unambiguously (`*:Team: Ops`).
//! - A target containing `=` is a distinguished name and is compared with
//!   the group's external id (the LDAP DN), after normalising spaces around
//!   `,` and `=`. Any other target is compared with the display name (SCIM
//!   `displayName`, LDAP `cn`) and with the external id (SCIM `externalId`).
//! - Matching is case-insensitive; `*`, `?`, `[..]` and `{a,b}` make the
//!   target a glob pattern (globset syntax).

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::domain::SourceName;

/// A group as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupRef {
    pub source: SourceName,
    pub display_name: String,
    /// SCIM `externalId` or LDAP DN.
    pub external_id: Option<String>,
}

/// A parsed `mappingsSSO` entry.
#[derive(Debug, Clone)]
pub struct SsoPattern {
    /// The entry as written, for explain output.
    pub text: String,
    source: Option<String>,
    is_dn: bool,
    target: Target,
}

#[derive(Debug, Clone)]
enum Target {
    Exact(String),
    Glob(GlobMatcher),
}

impl SsoPattern {
    /// Parses an entry; the error message says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let text = entry.trim();
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let (source, rest) = split_source(text);
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(format!("{text:?} names a source but no group"));
        }
        let is_dn = rest.contains('=');
        let normalised = if is_dn {
            normalise_dn(rest)
        } else {
            rest.to_lowercase()
        };
        let target = if is_glob(&normalised) {
            let glob = GlobBuilder::new(&normalised)
                .case_insensitive(true)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid glob pattern {rest:?}: {}", e.kind()))?;
            Target::Glob(Glob::compile_matcher(&glob))
        } else {
            Target::Exact(normalised)
        };
        Ok(Self {
            text: text.to_string(),
            source,
            is_dn,
            target,
        })
    }

    /// Whether the group matches this entry.
    pub fn matches(&self, group: &GroupRef) -> bool {
        if let Some(source) = &self.source
            && !source.eq_ignore_ascii_case(group.source.as_str())
        {
            return false;
        }
        if self.is_dn {
            return group
                .external_id
                .as_deref()
                .is_some_and(|dn| self.target_matches(&normalise_dn(dn)));
        }
        self.target_matches(&group.display_name.to_lowercase())
            || group
                .external_id
                .as_deref()
                .is_some_and(|id| self.target_matches(&id.to_lowercase()))
    }

    /// Whether the entry can match groups of `source` (no source prefix,
    /// `*:`, or that source).
    pub fn applies_to(&self, source: &str) -> bool {
        self.source
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(source))
    }

    /// The group as written, without its source prefix, when the entry is
    /// not a glob: the text an IdP sends for that group (TIB's profile
    /// mapping needs literal keys).
    pub fn literal(&self) -> Option<&str> {
        match self.target {
            Target::Exact(_) => Some(split_source(&self.text).1.trim()),
            Target::Glob(_) => None,
        }
    }

    fn target_matches(&self, candidate: &str) -> bool {
        match &self.target {
            Target::Exact(text) => text == candidate,
            Target::Glob(glob) => glob.is_match(candidate),
        }
    }
}

fn split_source(text: &str) -> (Option<String>, &str) {
    let Some((prefix, rest)) = text.split_once(':') else {
        return (None, text);
    };
    if prefix == "*" {
        return (None, rest);
    }
    let looks_like_source = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if looks_like_source {
        (Some(prefix.to_string()), rest)
    } else {
        (None, text)
    }
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '[', '{'])
}

/// Lower-cases a DN and removes the spaces LDAP servers may put around `,`
/// and `=` so `CN=Admins, OU=Groups` equals `cn=admins,ou=groups`.
fn normalise_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(source: &str, name: &str, external_id: Option<&str>) -> GroupRef {
        GroupRef {
            source: SourceName::new(source),
            display_name: name.into(),
            external_id: external_id.map(str::to_string),
        }
    }

    const DN: &str = "cn=api-admins,ou=groups,dc=example,dc=org";

    #[test]
    fn table_of_matches() {
        let okta_platform = group("okta", "Platform Team", Some("00g1"));
        let ldap_admins = group("ldap-corp", "api-admins", Some(DN));
        let cases: &[(&str, &GroupRef, bool)] = &[
            ("Platform Team", &okta_platform, true),
            ("platform team", &okta_platform, true),
            ("PLATFORM TEAM", &okta_platform, true),
            ("okta:Platform Team", &okta_platform, true),
            ("OKTA:platform team", &okta_platform, true),
            ("ldap-corp:Platform Team", &okta_platform, false),
            ("00G1", &okta_platform, true),
            ("Platform*", &okta_platform, true),
            ("okta:plat?orm team", &okta_platform, true),
            ("*:Platform Team", &okta_platform, true),
            ("Platform", &okta_platform, false),
            ("api-admins", &ldap_admins, true),
            (DN, &ldap_admins, true),
            (
                "CN=API-Admins, OU=Groups, DC=example, DC=org",
                &ldap_admins,
                true,
            ),
            (
                "ldap-corp:cn=api-admins,ou=groups,dc=example,dc=org",
                &ldap_admins,
                true,
            ),
            (
                "okta:cn=api-admins,ou=groups,dc=example,dc=org",
                &ldap_admins,
                false,
            ),
            ("cn=*,ou=groups,dc=example,dc=org", &ldap_admins, true),
            (
                "cn=api-admins,ou=other,dc=example,dc=org",
                &ldap_admins,
                false,
            ),
            ("{api,web}-admins", &ldap_admins, true),
            ("cn=api-admins", &okta_platform, false),
        ];
        for (entry, group, expected) in cases {
            let pattern = SsoPattern::parse(entry).expect("valid entry");
            assert_eq!(pattern.matches(group), *expected, "{entry} vs {group:?}");
        }
    }

    #[test]
    fn dn_pattern_never_matches_display_name() {
        let pattern = SsoPattern::parse("cn=x").expect("valid");
        assert!(!pattern.matches(&group("okta", "cn=x", None)));
    }

    #[test]
    fn display_name_with_colon_needs_star_prefix() {
        let team = group("okta", "Team: Ops", None);
        assert!(
            SsoPattern::parse("*:Team: Ops")
                .expect("valid")
                .matches(&team)
        );
        // "Team" is read as a source name here.
        assert!(
            !SsoPattern::parse("Team: Ops")
                .expect("valid")
                .matches(&team)
        );
    }

    #[test]
    fn invalid_entries_are_refused_with_a_reason() {
        for entry in ["", "  ", "okta:", "dev-[", "{a,b"] {
            let error = SsoPattern::parse(entry).expect_err(entry);
            assert!(!error.is_empty());
        }
        assert!(
            SsoPattern::parse("dev-[")
                .expect_err("glob")
                .contains("invalid glob")
        );
    }
}
