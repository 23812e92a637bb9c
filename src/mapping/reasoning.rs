//! The pure explain: the same decision as [`super::resolve::desired_state`]
//! for one e-mail address, with the identities, every matching rule, the
//! winner and the reason, for `tyk-idsync explain` and the admin API.

use serde::Serialize;

use super::resolve::{
    Person, PersonIdentity, ResolveOptions, RuleMatch, compile, decide, describe_group,
    normalise_email,
};
use super::rule::MappingRule;
use crate::domain::{DesiredUser, SourceName};

/// The full reasoning for one e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub email: String,
    pub identities: Vec<IdentitySummary>,
    pub matches: Vec<RuleMatch>,
    /// One sentence per organisation (or for the unmapped policy) saying why.
    pub reasons: Vec<String>,
    pub users: Vec<DesiredUser>,
    /// Caveats beside the decision (e.g. TIB's login-time group choice).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// An identity as explain shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentitySummary {
    pub source: SourceName,
    pub user_name: String,
    pub active: bool,
    pub groups: Vec<String>,
}

/// The decision for one e-mail address, with its reasoning.
pub fn explain(
    email: &str,
    people: &[PersonIdentity],
    rules: &[MappingRule],
    options: &ResolveOptions,
) -> Explanation {
    let email = normalise_email(email);
    let mut identities: Vec<&PersonIdentity> = people
        .iter()
        .filter(|p| p.email.as_deref().map(normalise_email).as_deref() == Some(email.as_str()))
        .collect();
    identities.sort_by(|a, b| (&a.source, &a.user_name).cmp(&(&b.source, &b.user_name)));
    let person = Person {
        email: email.clone(),
        identities,
    };
    let compiled = compile(rules);
    let (users, matches, reasons) = if person.identities.is_empty() {
        (Vec::new(), Vec::new(), without_email(&email, people))
    } else {
        decide(&person, &compiled, options)
    };
    Explanation {
        email,
        identities: person.identities.iter().map(|i| summarise(i)).collect(),
        matches,
        reasons,
        users,
        notes: Vec::new(),
    }
}

/// Reasons for a query no e-mail matched: identities with that user name
/// but no e-mail are named, as they can never be provisioned.
fn without_email(query: &str, people: &[PersonIdentity]) -> Vec<String> {
    let mut reasons: Vec<String> = people
        .iter()
        .filter(|p| p.email.is_none() && p.user_name.eq_ignore_ascii_case(query))
        .map(|p| {
            format!(
                "identity {}/{} has no e-mail: Tyk keys users by e-mail, so it is not provisioned",
                p.source, p.user_name
            )
        })
        .collect();
    reasons.sort();
    if reasons.is_empty() {
        reasons.push("no identity with this e-mail in any source: not provisioned".into());
    }
    reasons
}

fn summarise(identity: &PersonIdentity) -> IdentitySummary {
    let mut groups: Vec<String> = identity.groups.iter().map(describe_group).collect();
    groups.sort();
    groups.dedup();
    IdentitySummary {
        source: identity.source.clone(),
        user_name: identity.user_name.clone(),
        active: identity.active,
        groups,
    }
}
