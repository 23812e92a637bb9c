//! Errors of the LDAP layer. Any of them fails a poll without writing.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LdapError {
    /// Connecting, binding or StartTLS failed.
    #[error("cannot connect or bind to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// A search failed or returned a partial result (size/time limit,
    /// referral, busy, dropped connection): never treat it as complete.
    #[error("search of {base} failed: {detail}")]
    Search { base: String, detail: String },
    /// The source is not configured correctly.
    #[error("configuration: {0}")]
    Config(String),
}
