use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::problem::{ConfigProblem, resolve_secret, serialize_redacted};

/// `[admin]`: the admin API's bearer token.
///
/// Give the token itself (`token`, `token_file`, or the environment), or —
/// so that no plaintext token sits in the config at all — only its SHA-256
/// (`token_sha256`, hex; `printf %s "$TOKEN" | sha256sum`). Either way only
/// the hash is kept in memory. With none set, the admin API answers 401 to
/// everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin bearer token (at least 32 characters).
    #[serde(serialize_with = "serialize_redacted")]
    pub token: Option<SecretString>,
    /// Read the admin token from this file.
    pub token_file: Option<PathBuf>,
    /// SHA-256 of the admin token, hex-encoded, instead of the token.
    pub token_sha256: Option<String>,
}

impl AdminConfig {
    /// The hash of the configured token, if any.
    pub fn token_hash(&self) -> Result<Option<[u8; 32]>, ConfigProblem> {
        let secret = resolve_secret(
            "admin.token",
            self.token.as_ref(),
            self.token_file.as_deref(),
        )?;
        match (secret, &self.token_sha256) {
            (Some(_), Some(_)) => Err(ConfigProblem::new(
                "admin.token_sha256",
                "is set together with admin.token or admin.token_file",
            )
            .hint("set only one of them")),
            (Some(secret), None) => {
                use secrecy::ExposeSecret;
                let token = secret.expose_secret();
                if token.len() < 32 {
                    return Err(ConfigProblem::new(
                        "admin.token",
                        format!(
                            "is {} characters long; at least 32 are required",
                            token.len()
                        ),
                    )
                    .hint("generate one with `openssl rand -hex 32`"));
                }
                Ok(Some(super::auth::hash_token(token)))
            }
            (None, Some(hex_hash)) => {
                let bytes = hex::decode(hex_hash.trim()).ok().filter(|b| b.len() == 32);
                match bytes {
                    Some(bytes) => {
                        let mut hash = [0u8; 32];
                        hash.copy_from_slice(&bytes);
                        Ok(Some(hash))
                    }
                    None => Err(ConfigProblem::new(
                        "admin.token_sha256",
                        "is not 64 hexadecimal characters",
                    )
                    .hint("printf %s \"$TOKEN\" | sha256sum")),
                }
            }
            (None, None) => Ok(None),
        }
    }

    pub fn validate(&self) -> Vec<ConfigProblem> {
        self.token_hash().err().into_iter().collect()
    }
}
