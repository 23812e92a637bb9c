//! One integration-test binary (as zero2prod does): real HTTP over loopback,
//! real SQLite and PostgreSQL, a real slapd.

mod support;

mod ldap_client;
mod ldap_poll;
mod ldap_slapd;
mod store_identities;
