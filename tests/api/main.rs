//! One integration-test binary (as zero2prod does): real HTTP over loopback,
//! real SQLite and PostgreSQL, a real slapd.

mod support;

mod admin;
mod admin_routes;
mod cli;
mod cli_ldap;
mod cli_mappings;
mod cli_sync;
mod cluster;
mod compose;
mod config_example;
mod health;
mod ldap_client;
mod ldap_e2e;
mod ldap_fingerprints;
mod ldap_groups;
mod ldap_poll;
mod ldap_slapd;
mod mapping_api;
mod mapping_store;
mod migrate_store;
mod openapi;
mod reload;
mod replicas;
mod scim_api;
mod scim_conformance;
mod scim_member_patch;
mod scim_oauth;
mod scim_replay;
mod store_checked_members;
mod store_identities;
mod sync_cost;
mod sync_e2e;
mod sync_e2e_crash;
mod sync_e2e_faults;
mod sync_e2e_lifecycle;
mod sync_store;
mod tyk_client;
mod tyk_standin;
