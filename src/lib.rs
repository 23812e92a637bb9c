//! tyk-idsync keeps Tyk Dashboard users and user groups in step with a
//! company's identity provider (SCIM 2.0 clients and LDAP directories).
//!
//! Boundaries, one module each: `config` (loading and validation), `store`
//! (sqlx repositories on SQLite or PostgreSQL), `http` (the axum edge),
//! `startup` (building and running the app), `cli` (commands), `domain`
//! (types shared by all of them).

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod http;
pub mod ldap;
pub mod mapping;
pub mod problem;
pub mod scim;
pub mod standin;
pub mod startup;
pub mod store;
pub mod sync;
pub mod tasks;
pub mod telemetry;
pub mod tib;
pub mod tyk;
pub mod ui;
pub mod wiring;
