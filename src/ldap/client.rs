//! Connection, bind and strict paged search. A search that ends with any
//! result code but success, or whose connection drops, is an error: a
//! partial read must never look like a directory that lost entries.

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};

use super::config::LdapSourceConfig;
use super::error::LdapError;
use super::translate::RawEntry;

/// A bound connection to one directory.
pub struct LdapClient {
    ldap: Ldap,
    cfg: LdapSourceConfig,
}

impl LdapClient {
    /// Connects (with StartTLS if configured) and binds.
    pub async fn connect(
        cfg: &LdapSourceConfig,
        password: &SecretString,
    ) -> Result<Self, LdapError> {
        let fail = |detail: String| LdapError::Connect {
            url: cfg.url.clone(),
            detail,
        };
        if cfg.ca_file.is_some() {
            return Err(LdapError::Config("ca_file is not supported yet".into()));
        }
        let settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.connect_timeout)
            .set_starttls(cfg.starttls)
            .set_no_tls_verify(!cfg.tls_verify);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
            .await
            .map_err(|e| fail(e.to_string()))?;
        ldap3::drive!(conn);
        ldap.with_timeout(cfg.operation_timeout)
            .simple_bind(&cfg.bind_dn, password.expose_secret())
            .await
            .and_then(|r| r.success())
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            ldap,
            cfg: cfg.clone(),
        })
    }

    /// Reads every entry under `base` matching `filter`, page by page.
    pub async fn search_all(
        &mut self,
        base: &str,
        scope: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<RawEntry>, LdapError> {
        let fail = |detail: String| LdapError::Search {
            base: base.to_string(),
            detail,
        };
        let scope = if scope == "one" {
            Scope::OneLevel
        } else {
            Scope::Subtree
        };
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.cfg.page_size)),
        ];
        let mut stream = self
            .ldap
            .with_timeout(self.cfg.operation_timeout)
            .streaming_search_with(adapters, base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut entries = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(entry)) => {
                    entries.push(raw_entry(SearchEntry::construct(entry), &self.cfg))
                }
                Ok(None) => break,
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        stream
            .finish()
            .await
            .success()
            .map_err(|e| fail(e.to_string()))?;
        Ok(entries)
    }

    /// Unbinds; errors are irrelevant once the data is read.
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// Converts an entry; a binary stable id (AD objectGUID) becomes a UUID.
fn raw_entry(entry: SearchEntry, cfg: &LdapSourceConfig) -> RawEntry {
    let mut attrs: Vec<(String, Vec<String>)> = entry.attrs.into_iter().collect();
    for (name, values) in entry.bin_attrs {
        if name.eq_ignore_ascii_case(&cfg.id_attribute) {
            let ids = values.iter().map(|v| guid_text(v)).collect();
            attrs.push((name, ids));
        }
    }
    RawEntry::new(entry.dn, attrs)
}

/// AD stores objectGUID little-endian in its first three fields.
fn guid_text(bytes: &[u8]) -> String {
    match <[u8; 16]>::try_from(bytes) {
        Ok(b) => uuid::Uuid::from_bytes_le(b).to_string(),
        Err(_) => hex::encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_guid_is_formatted_like_active_directory() {
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(guid_text(&bytes), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(guid_text(&[1, 2]), "0102");
    }
}
