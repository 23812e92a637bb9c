//! One integration-test binary (as zero2prod does): real HTTP over loopback,
//! real SQLite and PostgreSQL, a real slapd.

mod support;

mod store_identities;
mod tyk_client;
mod tyk_standin;
