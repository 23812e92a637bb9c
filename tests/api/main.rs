//! One integration-test binary (as zero2prod does): real HTTP over loopback,
//! real SQLite and PostgreSQL, a real slapd.

mod support;

mod scim_api;
mod scim_conformance;
mod scim_replay;
mod store_identities;
