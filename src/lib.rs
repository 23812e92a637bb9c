//! tyk-idsync keeps Tyk Dashboard users and user groups in step with a
//! company's identity provider (SCIM 2.0 clients and LDAP directories).

pub mod config;
pub mod domain;
pub mod ldap;
pub mod store;
