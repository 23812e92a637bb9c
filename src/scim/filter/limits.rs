//! How big a filter (or the filter in a PATCH path) may be. Checked on the
//! text and then on the token stream, without recursion, before the
//! recursive-descent parser runs, so that no client-chosen input can
//! exhaust a worker's stack or build SQL beyond the engines' limits.
//!
//! The figures leave room for every filter real clients send (Entra and
//! Okta send one or two clauses; bulk look-ups a few hundred `or`ed ids)
//! while keeping the SQL translation far inside SQLite's defaults
//! (expression depth 1000, 32766 bound parameters) and PostgreSQL's
//! (65535 parameters).

/// Longest filter text, in bytes (a 1,000-clause `userName eq` chain is
/// about 30 KiB).
pub const MAX_BYTES: usize = 64 * 1024;

/// Deepest nesting of parentheses, value filters (`emails[...]`) and
/// `not`s.
pub const MAX_DEPTH: usize = 64;

/// Most attribute expressions (`attr op value`, `attr pr`) in one filter.
pub const MAX_CLAUSES: usize = 1000;
