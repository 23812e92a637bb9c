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
    /// Reading or writing the store failed; nothing was applied.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// No LDAP source of that name is configured.
    #[error("no LDAP source named {0:?} is configured")]
    UnknownSource(String),
}
