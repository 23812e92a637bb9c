//! Connection, bind and strict paged search. A search that ends with any
//! result code but success, or whose connection drops, is an error: a
//! partial read must never look like a directory that lost entries.

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::asn1::StructureTag;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};
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
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.connect_timeout)
            .set_starttls(cfg.starttls)
            .set_no_tls_verify(!cfg.tls_verify);
        if let Some(path) = &cfg.ca_file
            && cfg.tls_verify
        {
            settings = settings.set_config(tls_config(path)?);
        }
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
        let mut entries = Vec::new();
        self.search_each(base, scope, filter, attrs, |e| entries.push(e))
            .await?;
        Ok(entries)
    }

    /// Reads every entry under `base` matching `filter`, page by page,
    /// handing each to `sink` as it arrives (so a caller can keep a smaller
    /// form instead of every entry). The search must still end in success:
    /// on an error the caller must discard what `sink` saw.
    pub async fn search_each(
        &mut self,
        base: &str,
        scope: &str,
        filter: &str,
        attrs: &[&str],
        mut sink: impl FnMut(RawEntry),
    ) -> Result<(), LdapError> {
        let fail = |detail: String| LdapError::Search {
            base: base.to_string(),
            detail,
        };
        let scope = match scope {
            "one" => Scope::OneLevel,
            "base" => Scope::Base,
            _ => Scope::Subtree,
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
        loop {
            match stream.next().await {
                Ok(Some(entry)) => match raw_entry(entry.0, &self.cfg) {
                    Some(entry) => sink(entry),
                    None => {
                        let _ = stream.finish().await;
                        return Err(fail("malformed search result entry".into()));
                    }
                },
                Ok(None) => break,
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        stream
            .finish()
            .await
            .success()
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    }

    /// The DNs of entries matching `filter` (no attributes transferred).
    pub async fn search_dns(
        &mut self,
        base: &str,
        scope: &str,
        filter: &str,
    ) -> Result<Vec<String>, LdapError> {
        let entries = self.search_all(base, scope, filter, &["1.1"]).await?;
        Ok(entries.into_iter().map(|e| e.dn).collect())
    }

    /// Active Directory returns at most 1,500 values of a large attribute,
    /// as `member;range=0-1499`; reads the remaining ranges of every such
    /// attribute of `entry` and stores the whole list under the plain name.
    pub async fn complete_ranged(&mut self, entry: &mut RawEntry) -> Result<(), LdapError> {
        let ranged: Vec<String> = entry
            .attrs
            .keys()
            .filter(|k| parse_range(k).is_some())
            .cloned()
            .collect();
        for name in ranged {
            let Some(mut values) = entry.attrs.remove(&name) else {
                continue;
            };
            let Some((attr, _, mut end)) = parse_range(&name) else {
                continue;
            };
            while let Some(last) = end {
                let wanted = format!("{attr};range={}-*", last + 1);
                let found = self
                    .search_all(&entry.dn, "base", "(objectClass=*)", &[&wanted])
                    .await?;
                let next = found.into_iter().next().and_then(|e| {
                    e.attrs
                        .into_iter()
                        .find(|(k, _)| parse_range(k).is_some_and(|(a, _, _)| a == attr))
                });
                let Some((next_name, more)) = next else { break };
                values.extend(more);
                end = parse_range(&next_name).and_then(|(_, _, e)| e);
            }
            entry.attrs.entry(attr).or_default().extend(values);
        }
        Ok(())
    }

    /// Unbinds; errors are irrelevant once the data is read.
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// `member;range=0-1499` → (`member`, 0, Some(1499)); `;range=1500-*` →
/// (`member`, 1500, None). Names are lower-cased already.
pub fn parse_range(name: &str) -> Option<(String, u64, Option<u64>)> {
    let (attr, range) = name.split_once(";range=")?;
    let (start, end) = range.split_once('-')?;
    let start = start.parse().ok()?;
    let end = if end == "*" {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((attr.to_string(), start, end))
}

/// A rustls client configuration trusting only the CAs in `path` (PEM).
fn tls_config(path: &std::path::Path) -> Result<std::sync::Arc<rustls::ClientConfig>, LdapError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let problem =
        |detail: String| LdapError::Config(format!("ca_file {}: {detail}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| problem(e.to_string()))? {
        let cert = cert.map_err(|e| problem(e.to_string()))?;
        roots.add(cert).map_err(|e| problem(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(problem("holds no certificate".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// Converts a SearchResultEntry (`[APPLICATION 4] { dn, attributes }`); a
/// binary stable id (AD objectGUID) becomes a UUID. Takes the decoded
/// buffers over instead of copying them (`SearchEntry::construct` copies
/// every value, and panics on a malformed entry: here that is `None`).
/// Other attributes with a value that is not UTF-8 are left out, as
/// before.
fn raw_entry(tag: StructureTag, cfg: &LdapSourceConfig) -> Option<RawEntry> {
    let mut parts = StructureTag::expect_constructed(tag.match_id(4)?)?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attrs: Vec<(String, Vec<String>)> = Vec::new();
    for attr in StructureTag::expect_constructed(parts.next()?)? {
        let mut attr = StructureTag::expect_constructed(attr)?.into_iter();
        let name = String::from_utf8(attr.next()?.expect_primitive()?).ok()?;
        let raw = StructureTag::expect_constructed(attr.next()?)?
            .into_iter()
            .map(StructureTag::expect_primitive)
            .collect::<Option<Vec<Vec<u8>>>>()?;
        if raw.iter().all(|v| std::str::from_utf8(v).is_ok()) {
            let values = raw.into_iter().filter_map(|v| String::from_utf8(v).ok());
            attrs.push((name, values.collect()));
        } else if name.eq_ignore_ascii_case(&cfg.id_attribute) {
            attrs.push((name, raw.iter().map(|v| guid_text(v)).collect()));
        }
    }
    Some(RawEntry::new(dn, attrs))
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

    #[test]
    fn range_attribute_names_are_parsed() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(("member".into(), 0, Some(1499)))
        );
        assert_eq!(
            parse_range("member;range=1500-*"),
            Some(("member".into(), 1500, None))
        );
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("member;range=x-1"), None);
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_config_error() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let err = tls_config(&path).expect_err("no certificate");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
