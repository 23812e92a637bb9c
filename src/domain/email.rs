//! E-mail addresses: the login of a person in Tyk and the key that merges a
//! person's identities across sources. A source may send anything in
//! `emails` (or `mail`); an address that is not one is stored with the
//! identity (nothing the client sent is lost) but never reaches Tyk, and the
//! person is reported (`invalid_email` in `/admin/v1/status`).

use std::fmt;

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};

use super::fold::fold_key;

/// Why a value is not an e-mail address we may provision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailProblem {
    /// Empty or only white space.
    Empty,
    /// A control character (NUL, a line break, …) anywhere in the value.
    ControlCharacter,
    /// Not an `addr-spec` (RFC 5322 §3.4.1 with RFC 6531 UTF-8): no `@`,
    /// an empty or malformed local part or domain, display text such as
    /// `Name <a@b.c>`, or a domain literal such as `a@[10.0.0.1]`.
    Syntax,
}

impl EmailProblem {
    /// The stable code stored with the identity and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailProblem::Empty => "empty",
            EmailProblem::ControlCharacter => "control_character",
            EmailProblem::Syntax => "syntax",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "empty" => Some(EmailProblem::Empty),
            "control_character" => Some(EmailProblem::ControlCharacter),
            "syntax" => Some(EmailProblem::Syntax),
            _ => None,
        }
    }
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmailProblem::Empty => "the e-mail address is empty",
            EmailProblem::ControlCharacter => "the e-mail address contains a control character",
            EmailProblem::Syntax => "the value is not an e-mail address",
        })
    }
}

impl std::error::Error for EmailProblem {}

/// Whether `value` is an address we may send to Tyk as a login, exactly as
/// given (no trimming, no folding).
///
/// Syntax is checked by the `email_address` crate without display text and
/// without domain literals: a Tyk login is a plain `local@domain`.
pub fn validate(value: &str) -> Result<(), EmailProblem> {
    if value.trim().is_empty() {
        return Err(EmailProblem::Empty);
    }
    if value.chars().any(char::is_control) {
        return Err(EmailProblem::ControlCharacter);
    }
    let options = Options::default()
        .without_display_text()
        .without_domain_literal();
    EmailAddress::parse_with_options(value, options)
        .map(|_| ())
        .map_err(|_| EmailProblem::Syntax)
}

/// The join key of an address as a source sent it: trimmed, then
/// [`fold_key`]; the key is what Tyk receives as the login and what every
/// comparison uses. An address whose key is not a valid address is refused
/// with the problem (control characters are looked for in the value as
/// sent, before folding could hide them).
pub fn email_key(raw: &str) -> Result<String, EmailProblem> {
    if raw.chars().any(char::is_control) {
        return Err(EmailProblem::ControlCharacter);
    }
    let key = fold_key(raw.trim());
    validate(&key)?;
    Ok(key)
}

/// The `(email, email_problem)` pair of an identity from the primary
/// address its source sent: the key when it is valid, else the problem.
pub fn primary_email(raw: Option<&str>) -> (Option<String>, Option<EmailProblem>) {
    match raw.map(email_key) {
        None => (None, None),
        Some(Ok(key)) => (Some(key), None),
        Some(Err(problem)) => (None, Some(problem)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_pass() {
        for ok in [
            "jose@example.com",
            "José@x.io",
            "first.last+tag@sub.example.org",
            "user@localhost",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn invalid_addresses_name_their_problem() {
        assert_eq!(validate(""), Err(EmailProblem::Empty));
        assert_eq!(validate("  "), Err(EmailProblem::Empty));
        assert_eq!(validate("not-an-email"), Err(EmailProblem::Syntax));
        assert_eq!(validate("a@"), Err(EmailProblem::Syntax));
        assert_eq!(validate("@b.io"), Err(EmailProblem::Syntax));
        assert_eq!(validate("a b@c.io"), Err(EmailProblem::Syntax));
        assert_eq!(validate("Jo <jo@x.io>"), Err(EmailProblem::Syntax));
        assert_eq!(validate("jo@[10.0.0.1]"), Err(EmailProblem::Syntax));
        assert_eq!(validate("jo\0e@x.io"), Err(EmailProblem::ControlCharacter));
        assert_eq!(validate("jo@x.io\n"), Err(EmailProblem::ControlCharacter));
    }

    #[test]
    fn keys_fold_look_alikes_together() {
        let nfd = email_key("Jose\u{301}@X.io").expect("valid");
        let nfc = email_key(" JOSÉ@x.io ").expect("valid");
        assert_eq!(nfd, nfc);
        assert_eq!(nfc, "jos\u{e9}@x.io");
        assert_eq!(email_key("ｊｏｓｅ＠ｘ．ｉｏ"), Ok("jose@x.io".into()));
        assert_eq!(email_key("a\0@x.io"), Err(EmailProblem::ControlCharacter));
        assert_eq!(email_key("not-an-email"), Err(EmailProblem::Syntax));
    }

    #[test]
    fn codes_round_trip() {
        for p in [
            EmailProblem::Empty,
            EmailProblem::ControlCharacter,
            EmailProblem::Syntax,
        ] {
            assert_eq!(EmailProblem::parse(p.as_str()), Some(p));
        }
    }
}
