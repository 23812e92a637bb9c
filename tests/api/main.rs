//! One integration-test binary (as zero2prod does): real HTTP over loopback,
//! real SQLite and PostgreSQL, a real slapd.

mod support;

mod mapping_api;
mod mapping_store;
mod store_identities;
