//! `tyk-idsync explain <email>`: loads everything, runs the resolution for
//! one person and renders the reasoning as text (CLI) or JSON (admin API).

use std::fmt::Write;

use super::config::MappingConfig;
use super::input::load_people;
use super::reasoning::{Explanation, explain};
use super::service::MappingError;
use crate::store::Store;
use crate::store::mappings;
use crate::sync::person::PersonInTyk;

/// The explanation for `email` from the current store contents.
pub async fn explain_email(
    store: &Store,
    config: &MappingConfig,
    email: &str,
) -> Result<Explanation, MappingError> {
    let mut conn = store.acquire().await?;
    let people = load_people(&mut conn).await?;
    let rules = mappings::list_rules(&mut conn).await?;
    Ok(explain(email, &people, &rules, &config.resolve_options()))
}

/// Looks up what Tyk holds for a person (`sync::person`); an error is
/// the message to show in its place.
pub type TykSideLookup = std::sync::Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Result<PersonInTyk, String>>
        + Send
        + Sync,
>;

/// The lookup over the service's sync worker (its Tyk client and limiter).
pub fn tyk_side_of(worker: std::sync::Arc<crate::sync::service::ServiceWorker>) -> TykSideLookup {
    std::sync::Arc::new(move |email: String| {
        let worker = std::sync::Arc::clone(&worker);
        Box::pin(async move {
            worker
                .person_in_tyk(&email)
                .await
                .map_err(|e| format!("cannot read Tyk: {e}"))
        })
    })
}

/// The explanation as JSON, with `tyk` (what Tyk holds, the steps a sync
/// would take, any quarantine) or `tyk_error` when Tyk was asked.
pub fn with_tyk_json(
    explanation: &Explanation,
    tyk: Option<&Result<PersonInTyk, String>>,
) -> serde_json::Value {
    let mut value = serde_json::to_value(explanation).unwrap_or_default();
    if let serde_json::Value::Object(fields) = &mut value {
        match tyk {
            Some(Ok(person)) => {
                fields.insert(
                    "tyk".into(),
                    serde_json::to_value(person).unwrap_or_default(),
                );
            }
            Some(Err(message)) => {
                fields.insert("tyk_error".into(), message.clone().into());
            }
            None => {}
        }
    }
    value
}

/// The text rendering with the Tyk side appended (when Tyk was asked).
pub fn render_text_with_tyk(
    explanation: &Explanation,
    tyk: Option<&Result<PersonInTyk, String>>,
) -> String {
    let mut out = render_text(explanation);
    match tyk {
        Some(Ok(person)) => out.push_str(&crate::sync::person::render_text(person)),
        Some(Err(message)) => out.push_str(&format!("\nIn Tyk now:\n  unknown: {message}\n")),
        None => out.push_str("\nIn Tyk now:\n  unknown: no [tyk] section is configured\n"),
    }
    out
}

/// A TIB profile people of `source` log in through (from `[tib]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TibLogin {
    pub profile_id: String,
    pub source: String,
    pub org_id: String,
}

/// TIB picks the first mapped group in the IdP's order, not by priority:
/// where a person is in several mapped groups of a source with a TIB
/// profile, say so, and what makes the provisioned group win.
pub fn add_tib_notes(explanation: &mut Explanation, logins: &[TibLogin]) {
    for login in logins {
        let prefix = format!("{}:", login.source);
        let matching: Vec<_> = explanation
            .matches
            .iter()
            .filter(|m| m.org_id == login.org_id)
            .filter(|m| m.matched_by.iter().any(|(_, g)| g.starts_with(&prefix)))
            .collect();
        if matching.len() < 2 {
            continue;
        }
        let names: Vec<String> = matching.iter().map(|m| format!("{:?}", m.group)).collect();
        let winner = explanation
            .matches
            .iter()
            .find(|m| m.org_id == login.org_id && m.won)
            .map(|m| format!("{:?}", m.group))
            .unwrap_or_else(|| "the winning group".into());
        explanation.notes.push(format!(
            "TIB profile {:?}: through source {} this person is in {} mapped groups ({}); at \
             login TIB takes the first one the IdP lists, which may differ from {winner} here. \
             With SSOOnlyForRegisteredUsers (set by tyk-idsync) and the Dashboard's \
             sso_enable_user_lookup = true, the provisioned user's group ({winner}) applies.",
            login.profile_id,
            login.source,
            matching.len(),
            names.join(", ")
        ));
    }
}

/// Human-readable rendering for the terminal.
pub fn render_text(explanation: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Person: {}", explanation.email);
    let _ = writeln!(out, "\nIdentities:");
    if explanation.identities.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for identity in &explanation.identities {
        let state = if identity.active {
            "active"
        } else {
            "inactive"
        };
        let _ = writeln!(
            out,
            "  {} / {} ({state})",
            identity.source, identity.user_name
        );
        for group in &identity.groups {
            let _ = writeln!(out, "    group {group}");
        }
    }
    let _ = writeln!(out, "\nMatching rules:");
    if explanation.matches.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for m in &explanation.matches {
        let mark = if m.won { "WINS" } else { "    " };
        let _ = writeln!(
            out,
            "  {mark} org {} group {:?} priority {} (rule {})",
            m.org_id, m.group, m.priority, m.rule_id
        );
        for (entry, group) in &m.matched_by {
            let _ = writeln!(out, "         {entry:?} matched {group}");
        }
    }
    let _ = writeln!(out, "\nDecision:");
    for reason in &explanation.reasons {
        let _ = writeln!(out, "  {reason}");
    }
    let _ = writeln!(
        out,
        "\nDesired in Tyk (what the mapping asks for, not what Tyk holds):"
    );
    if explanation.users.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for user in &explanation.users {
        let sources: Vec<&str> = user.sources.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(
            out,
            "  org {}: {} {} <{}> group {} active {} sources [{}]",
            user.org_id,
            user.first_name,
            user.last_name,
            user.email,
            user.group.as_deref().unwrap_or("(none)"),
            user.active,
            sources.join(", ")
        );
    }
    if !explanation.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &explanation.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::SourceName;
    use crate::mapping::{GroupRef, MappingRule, PersonIdentity, ResolveOptions, UnmappedPolicy};

    fn fixture() -> (Vec<PersonIdentity>, Vec<MappingRule>) {
        let group = |source: &str, name: &str, id: Option<&str>| GroupRef {
            source: SourceName::new(source),
            display_name: name.into(),
            external_id: id.map(str::to_string),
        };
        let people = vec![
            PersonIdentity {
                source: SourceName::new("okta"),
                user_name: "alice@example.org".into(),
                email: Some("alice@example.org".into()),
                given_name: Some("Alice".into()),
                family_name: Some("Liddell".into()),
                display_name: None,
                active: true,
                groups: vec![group("okta", "Platform Team", Some("00g1"))],
            },
            PersonIdentity {
                source: SourceName::new("ldap-corp"),
                user_name: "alice".into(),
                email: Some("Alice@Example.org".into()),
                given_name: Some("Al".into()),
                family_name: None,
                display_name: None,
                active: false,
                groups: vec![group(
                    "ldap-corp",
                    "api-admins",
                    Some("cn=api-admins,ou=groups,dc=example,dc=org"),
                )],
            },
        ];
        let rule = |id: &str, name: &str, priority, sso: &[&str]| MappingRule {
            id: id.into(),
            org_id: "org1".into(),
            name: name.into(),
            description: None,
            priority,
            mappings_sso: sso.iter().map(|s| s.to_string()).collect(),
            permissions: BTreeMap::from([("apis".into(), "read".into())]),
        };
        let rules = vec![
            rule("r-dev", "Developers", 10, &["okta:Platform*"]),
            rule(
                "r-admin",
                "API Admins",
                50,
                &["ldap-corp:CN=API-Admins,OU=Groups,DC=example,DC=org"],
            ),
            rule("r-read", "Readers", 0, &["nobody"]),
        ];
        (people, rules)
    }

    #[test]
    fn a_person_in_several_mapped_groups_of_a_tib_source_gets_the_login_caveat() {
        let (people, mut rules) = fixture();
        rules.push(MappingRule {
            id: "r-plat".into(),
            name: "Platform".into(),
            priority: 20,
            mappings_sso: vec!["okta:platform team".into()],
            ..rules[0].clone()
        });
        let mut explanation = explain(
            "alice@example.org",
            &people,
            &rules,
            &ResolveOptions::default(),
        );
        let login = |source: &str| TibLogin {
            profile_id: "okta-dashboard".into(),
            source: source.into(),
            org_id: "org1".into(),
        };
        // One mapped group through ldap-corp: nothing to say.
        add_tib_notes(&mut explanation, &[login("ldap-corp")]);
        assert!(explanation.notes.is_empty());
        add_tib_notes(&mut explanation, &[login("okta")]);
        assert_eq!(explanation.notes.len(), 1);
        let note = &explanation.notes[0];
        assert!(note.contains("2 mapped groups"), "{note}");
        assert!(note.contains("sso_enable_user_lookup"), "{note}");
        assert!(render_text(&explanation).contains("Notes:"));
    }

    #[test]
    fn explain_text_snapshot() {
        let (people, rules) = fixture();
        let options = ResolveOptions {
            source_order: vec!["okta".into()],
            ..ResolveOptions::default()
        };
        let text = render_text(&explain("ALICE@example.org", &people, &rules, &options));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn explain_json_snapshot() {
        let (people, rules) = fixture();
        let explanation = explain(
            "alice@example.org",
            &people,
            &rules,
            &ResolveOptions::default(),
        );
        insta::assert_json_snapshot!(explanation);
    }

    #[test]
    fn explain_unmapped_and_unknown_snapshot() {
        let (people, mut rules) = fixture();
        rules.retain(|r| r.id == "r-read");
        let options = ResolveOptions {
            unmapped_policy: UnmappedPolicy::Default,
            default_org_id: Some("org1".into()),
            default_group: Some("Readers".into()),
            source_order: vec![],
        };
        let unmapped = render_text(&explain("alice@example.org", &people, &rules, &options));
        let unknown = render_text(&explain("bob@example.org", &people, &rules, &options));
        insta::assert_snapshot!(format!("{unmapped}\n---\n{unknown}"));
    }
}
