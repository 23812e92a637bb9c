//! A configuration problem: which key, what is wrong with it, and a hint;
//! and the secret helpers every section uses (inline, file or redacted).
//! Start-up prints exactly one line per problem and exits; never a panic or
//! a serde dump. A leaf module: the boundaries import it, `config`
//! assembles the boundaries' sections, so the imports run one way.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `tyk.dashboard_url` or `ldap.sources.corp.url`.
    pub key: String,
    pub problem: String,
    pub hint: Option<String>,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblem {}

/// Resolves a secret given either inline (`key`) or as a file (`key_file`).
/// Both set is an error; a file is read and its trailing newline trimmed.
/// `key` is the dotted path of the inline key, used in messages.
pub fn resolve_secret(
    key: &str,
    value: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigProblem> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigProblem::new(
            key,
            format!("both `{key}` and `{key}_file` are set"),
        )
        .hint("set only one of them")),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => read_secret_file(&format!("{key}_file"), path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Like [`resolve_secret`], but the secret must be present.
pub fn require_secret(
    key: &str,
    value: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<SecretString, ConfigProblem> {
    resolve_secret(key, value, file)?.ok_or_else(|| {
        let env = format!("TYK_IDSYNC__{}", key.replace('.', "__").to_uppercase());
        ConfigProblem::new(key, "is required but not set").hint(format!(
            "set `{key}` or `{key}_file`, or the environment variable {env}"
        ))
    })
}

fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigProblem> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigProblem::new(key, format!("cannot read {}: {e}", path.display()))
            .hint("check the path and the file's permissions")
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(ConfigProblem::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(SecretString::from(trimmed.to_string()))
}

/// Checks that an optional file path names a readable file (CA bundles etc.).
pub fn check_readable_file(key: &str, path: Option<&PathBuf>) -> Result<(), ConfigProblem> {
    if let Some(path) = path {
        std::fs::metadata(path)
            .map_err(|e| ConfigProblem::new(key, format!("cannot read {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Serializes a secret as `[REDACTED]` (use with `serialize_with`), so that
/// `check-config` never prints one.
pub fn serialize_redacted<S: serde::Serializer>(
    value: &Option<secrecy::SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_some("[REDACTED]"),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        std::fs::write(&path, "hunter2\n").expect("write");
        let secret = require_secret("tyk.api_key", None, Some(&path)).expect("secret");
        assert_eq!(secret.expose_secret(), "hunter2");
    }

    #[test]
    fn a_missing_secret_names_the_key_and_the_env_var() {
        let err = require_secret("tyk.api_key", None, None).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "tyk.api_key: is required but not set (hint: set `tyk.api_key` or \
             `tyk.api_key_file`, or the environment variable TYK_IDSYNC__TYK__API_KEY)"
        );
    }

    #[test]
    fn both_forms_at_once_is_an_error() {
        let value = SecretString::from("a".to_string());
        let err =
            resolve_secret("admin.token", Some(&value), Some(Path::new("/x"))).expect_err("both");
        assert_eq!(err.key, "admin.token");
    }
}
