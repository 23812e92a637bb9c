//! Tyk's first and last name for a person. Tyk refuses a user whose
//! `first_name` or `last_name` is empty (400 `User object validation
//! failed.`), so both are always derived to something non-empty:
//!
//! 1. the given and family name (SCIM `name.givenName`/`name.familyName`,
//!    LDAP `givenName`/`sn`);
//! 2. for a part still missing, the display name split at its first run of
//!    whitespace (SCIM `displayName`; LDAP `displayName`, else `cn`):
//!    "Dana Scully" → Dana / Scully, "Dana Katherine Scully" → Dana /
//!    Katherine Scully. A single-word display name gives that word for both
//!    parts ("Cher" → Cher / Cher): repeating the one name the person has is
//!    more faithful than inventing a surname;
//! 3. else the local part of the user name (LDAP: the login), or of the
//!    e-mail when the user name is empty, for the missing part(s).
//!
//! Every value is trimmed; a value that is blank after trimming counts as
//! missing.

/// What a person's identity says about their name.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameSources<'a> {
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub user_name: &'a str,
    pub email: &'a str,
}

/// `(first_name, last_name)`, both non-empty whenever the user name or the
/// e-mail is non-empty (the e-mail always is for a provisioned person).
pub fn tyk_names(sources: NameSources<'_>) -> (String, String) {
    let (display_first, display_last) = match present(sources.display_name) {
        Some(display) => match display.split_once(char::is_whitespace) {
            Some((first, rest)) => (Some(first), Some(rest.trim())),
            None => (Some(display), Some(display)),
        },
        None => (None, None),
    };
    let login = present(Some(sources.user_name))
        .or(present(Some(sources.email)))
        .map(|v| v.split_once('@').map_or(v, |(local, _)| local))
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let first = present(sources.given_name).or(display_first).or(login);
    let last = present(sources.family_name).or(display_last).or(login);
    (
        first.unwrap_or_default().to_string(),
        last.unwrap_or_default().to_string(),
    )
}

/// The trimmed value, `None` when blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_in_order_and_never_empty() {
        // (case, given, family, display, user_name, email, first, last)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                "scim full name",
                Some("Dana"),
                Some("Scully"),
                Some("Agent Scully"),
                "dana@x.org",
                "dana@x.org",
                "Dana",
                "Scully",
            ),
            (
                "scim displayName only",
                None,
                None,
                Some("Dana Scully"),
                "dana@x.org",
                "dana@x.org",
                "Dana",
                "Scully",
            ),
            (
                "displayName with three words",
                None,
                None,
                Some("Dana Katherine Scully"),
                "d",
                "d@x.org",
                "Dana",
                "Katherine Scully",
            ),
            (
                "displayName with odd whitespace",
                None,
                None,
                Some("  Dana \t  Scully  "),
                "d",
                "d@x.org",
                "Dana",
                "Scully",
            ),
            (
                "single-word displayName",
                None,
                None,
                Some("Cher"),
                "cher@x.org",
                "cher@x.org",
                "Cher",
                "Cher",
            ),
            (
                "scim userName only (an e-mail)",
                None,
                None,
                None,
                "fox.mulder@fbi.gov",
                "fox.mulder@fbi.gov",
                "fox.mulder",
                "fox.mulder",
            ),
            (
                "blank names count as missing",
                Some("  "),
                Some(""),
                Some(" "),
                "walter@x.org",
                "walter@x.org",
                "walter",
                "walter",
            ),
            (
                "given only: last from displayName",
                Some("Dana"),
                None,
                Some("D. Scully"),
                "d",
                "d@x.org",
                "Dana",
                "Scully",
            ),
            (
                "family only: first from the login",
                Some(""),
                Some("Skinner"),
                None,
                "wskinner",
                "w@x.org",
                "wskinner",
                "Skinner",
            ),
            (
                "names are trimmed",
                Some(" Dana "),
                Some(" Scully "),
                None,
                "d",
                "d@x.org",
                "Dana",
                "Scully",
            ),
            (
                "empty userName: the e-mail's local part",
                None,
                None,
                None,
                "",
                "monica@x.org",
                "monica",
                "monica",
            ),
            (
                "ldap givenName/sn",
                Some("Alice"),
                Some("Liddell"),
                Some("Alice L"),
                "alice",
                "alice@x.org",
                "Alice",
                "Liddell",
            ),
            (
                "ldap cn as the display name",
                None,
                None,
                Some("Bob Builder"),
                "bob",
                "bob@x.org",
                "Bob",
                "Builder",
            ),
            (
                "ldap login only",
                None,
                None,
                None,
                "carol",
                "carol@x.org",
                "carol",
                "carol",
            ),
        ];
        for &(case, given, family, display, user_name, email, first, last) in cases {
            let names = tyk_names(NameSources {
                given_name: given,
                family_name: family,
                display_name: display,
                user_name,
                email,
            });
            assert_eq!(names, (first.to_string(), last.to_string()), "{case}");
        }
    }
}
