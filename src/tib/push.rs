//! Getting a profile into TIB: its REST API (standalone `/api/profiles`,
//! or `/api/tib/profiles` on the Dashboard for the embedded TIB) and its
//! profiles file.
//!
//! REST: GET → compare → PUT (POST when missing) → GET again and compare,
//! because TIB answers 200 even when it could not write its own file.
//! File: merged into TIB's JSON array (other profiles stay as they are),
//! written to a temp file in the same directory, fsynced and renamed, the
//! previous file kept as `<file>.bak`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::profile::differing_fields;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TibError {
    #[error("TIB unreachable: {0}")]
    Transport(String),
    #[error("TIB answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("TIB refused the secret (401): check tib.secret")]
    Unauthorized,
    #[error("TIB sent an unreadable answer: {0}")]
    InvalidResponse(String),
    #[error("TIB answered OK but does not hold the profile (read back differs in {0})")]
    NotKept(String),
    #[error("profiles file {path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Render(String),
    #[error("store: {0}")]
    Store(String),
    #[error("Tyk: {0}")]
    Tyk(String),
    #[error("config: {0}")]
    Config(String),
    /// The write gate (this replica's leader lease) refused the write: it
    /// was not sent. Not retried here; the next leader pushes.
    #[error("not written: {0}")]
    Fenced(String),
}

impl TibError {
    /// Whether trying again soon may help.
    pub fn is_transient(&self) -> bool {
        match self {
            TibError::Transport(_) | TibError::NotKept(_) | TibError::Tyk(_) => true,
            TibError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// What a push did to one profile in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Unchanged,
    Created,
    Updated,
}

/// The outcome of pushing one profile over REST.
#[derive(Debug, Clone, PartialEq)]
pub struct RestOutcome {
    pub change: Change,
    /// TIB's copy before the change (for the audit log).
    pub before: Option<Value>,
    pub fields: Vec<String>,
}

/// Asked right before each write to TIB (a POST/PUT, or the profiles
/// file's rename); an `Err` stops it unwritten, with the reason. The
/// service passes this replica's leader lease.
pub type TibWriteGate = crate::tyk::WriteGate;

/// Client of TIB's profile API.
#[derive(Clone)]
pub struct TibClient {
    http: reqwest::Client,
    base: Url,
    embedded: bool,
    secret: SecretString,
    write_gate: Option<TibWriteGate>,
}

impl std::fmt::Debug for TibClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TibClient")
            .field("base", &self.base.as_str())
            .field("embedded", &self.embedded)
            .finish_non_exhaustive()
    }
}

impl TibClient {
    pub fn new(
        url: &str,
        embedded: bool,
        secret: SecretString,
        timeout: Duration,
    ) -> Result<Self, TibError> {
        let base = Url::parse(url).map_err(|e| TibError::Config(format!("tib.url: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tyk-idsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TibError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            embedded,
            secret,
            write_gate: None,
        })
    }

    /// Checks `gate` right before each POST or PUT leaves.
    pub fn with_write_gate(mut self, gate: TibWriteGate) -> Self {
        self.write_gate = Some(gate);
        self
    }

    fn url(&self, id: &str) -> Result<Url, TibError> {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| TibError::Config("tib.url cannot be a base URL".into()))?;
            segments.pop_if_empty().push("api");
            if self.embedded {
                segments.push("tib");
            }
            segments.push("profiles").push(id);
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        id: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), TibError> {
        if let (Some(gate), false) = (&self.write_gate, method == Method::GET) {
            gate().map_err(TibError::Fenced)?;
        }
        let mut request = self
            .http
            .request(method, self.url(id)?)
            .header("Authorization", self.secret.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TibError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TibError::Transport(e.without_url().to_string()))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == StatusCode::UNAUTHORIZED {
            return Err(TibError::Unauthorized);
        }
        Ok((status, value))
    }

    fn failure(status: StatusCode, body: &Value) -> TibError {
        let message = body
            .get("Error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"))
            .to_string();
        TibError::Status {
            status: status.as_u16(),
            message,
        }
    }

    /// The profile, or `None` when TIB has none with that id.
    pub async fn get(&self, id: &str) -> Result<Option<Value>, TibError> {
        let (status, body) = self.send(Method::GET, id, None).await?;
        match status {
            StatusCode::OK => match body.get("Data") {
                Some(data) if data.is_object() => Ok(Some(data.clone())),
                _ => Err(TibError::InvalidResponse(
                    "no profile object in `Data`".into(),
                )),
            },
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::failure(status, &body)),
        }
    }

    /// POST; `Ok(false)` when TIB says it exists already.
    async fn create(&self, id: &str, profile: &Value) -> Result<bool, TibError> {
        let (status, body) = self.send(Method::POST, id, Some(profile)).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::BAD_REQUEST
                if body["Error"]
                    .as_str()
                    .is_some_and(|m| m.contains("already exists")) =>
            {
                Ok(false)
            }
            _ => Err(Self::failure(status, &body)),
        }
    }

    /// PUT; `Ok(false)` when TIB has no such profile (404).
    async fn update(&self, id: &str, profile: &Value) -> Result<bool, TibError> {
        let (status, body) = self.send(Method::PUT, id, Some(profile)).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::failure(status, &body)),
        }
    }

    /// Makes TIB hold `profile` under `id`, writing only on a difference,
    /// and proves it by reading it back.
    pub async fn push(&self, id: &str, profile: &Value) -> Result<RestOutcome, TibError> {
        let before = self.get(id).await?;
        let fields = match &before {
            Some(current) => differing_fields(profile, current),
            None => Vec::new(),
        };
        let change = match &before {
            Some(_) if fields.is_empty() => {
                return Ok(RestOutcome {
                    change: Change::Unchanged,
                    before,
                    fields,
                });
            }
            Some(_) => {
                if self.update(id, profile).await? {
                    Change::Updated
                } else {
                    // Deleted since our GET.
                    self.create(id, profile).await?;
                    Change::Created
                }
            }
            None => {
                if self.create(id, profile).await? {
                    Change::Created
                } else {
                    // Created since our GET.
                    self.update(id, profile).await?;
                    Change::Updated
                }
            }
        };
        match self.get(id).await? {
            Some(kept) => {
                let still = differing_fields(profile, &kept);
                if !still.is_empty() {
                    return Err(TibError::NotKept(still.join(", ")));
                }
            }
            None => return Err(TibError::NotKept("the whole profile (404)".into())),
        }
        Ok(RestOutcome {
            change,
            before,
            fields,
        })
    }
}

/// The outcome of writing the profiles file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOutcome {
    /// Per profile id (ours only): what changed and the previous entry.
    pub changes: Vec<(String, Change, Option<Value>, Vec<String>)>,
    pub written: bool,
}

fn file_err(path: &Path, message: impl Into<String>) -> TibError {
    TibError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The backup of `path`: `<path>.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// Puts `ours` (id, profile) into TIB's profiles file; other entries are
/// kept verbatim and in place. Writes nothing when every profile is
/// already there as rendered.
pub async fn write_profiles_file(
    path: &Path,
    ours: Vec<(String, Value)>,
) -> Result<FileOutcome, TibError> {
    write_profiles_file_gated(path, ours, None).await
}

/// [`write_profiles_file`], asking `gate` right before the new file
/// replaces the old one (nothing is written when it refuses).
pub async fn write_profiles_file_gated(
    path: &Path,
    ours: Vec<(String, Value)>,
    gate: Option<TibWriteGate>,
) -> Result<FileOutcome, TibError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || write_blocking(&path, &ours, gate.as_ref()))
        .await
        .map_err(|e| TibError::File {
            path: String::new(),
            message: e.to_string(),
        })?
}

fn write_blocking(
    path: &Path,
    ours: &[(String, Value)],
    gate: Option<&TibWriteGate>,
) -> Result<FileOutcome, TibError> {
    let existing: Option<Vec<u8>> = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(file_err(path, format!("cannot read: {e}"))),
    };
    let mut entries: Vec<Value> = match &existing {
        None => Vec::new(),
        Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Vec::new(),
        Some(bytes) => match serde_json::from_slice(bytes) {
            Ok(Value::Array(items)) => items,
            // Never clobber a file we cannot read as TIB's.
            _ => {
                return Err(file_err(
                    path,
                    "is not a JSON array of profiles; left untouched",
                ));
            }
        },
    };
    let mut changes = Vec::new();
    for (id, profile) in ours {
        let at = entries
            .iter()
            .position(|e| e.get("ID").and_then(Value::as_str) == Some(id.as_str()));
        match at {
            Some(i) => {
                // TIB loads entries in order and the last of an ID wins: a
                // second copy of ours would override the one we keep.
                let before_len = entries.len();
                let mut index = 0;
                entries.retain(|e| {
                    index += 1;
                    index - 1 <= i || e.get("ID").and_then(Value::as_str) != Some(id.as_str())
                });
                let duplicates = entries.len() != before_len;
                let mut fields = differing_fields(profile, &entries[i]);
                if duplicates {
                    fields.push("(duplicate entries removed)".into());
                }
                if fields.is_empty() {
                    changes.push((id.clone(), Change::Unchanged, None, fields));
                } else {
                    let before = std::mem::replace(&mut entries[i], profile.clone());
                    changes.push((id.clone(), Change::Updated, Some(before), fields));
                }
            }
            None => {
                entries.push(profile.clone());
                changes.push((id.clone(), Change::Created, None, Vec::new()));
            }
        }
    }
    if changes.iter().all(|(_, c, _, _)| *c == Change::Unchanged) {
        return Ok(FileOutcome {
            changes,
            written: false,
        });
    }
    let mut text = serde_json::to_string_pretty(&Value::Array(entries))
        .map_err(|e| file_err(path, e.to_string()))?;
    text.push('\n');
    if let Some(gate) = gate {
        gate().map_err(TibError::Fenced)?;
    }
    replace_atomically(path, text.as_bytes(), existing.is_some())?;
    Ok(FileOutcome {
        changes,
        written: true,
    })
}

/// Temp file in the same directory, fsync, backup, rename, fsync the
/// directory: a reader sees the old file or the new one, never half.
fn replace_atomically(path: &Path, bytes: &[u8], had_file: bool) -> Result<(), TibError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "profiles.json".into());
    let temp = dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        // The file carries TIB secrets (DashboardCredential…): keep the
        // original's mode, else owner-only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0o600);
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if had_file {
            let backup = backup_path(path);
            std::fs::copy(path, &backup)?;
            std::fs::File::open(&backup)?.sync_all()?;
        }
        std::fs::rename(&temp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        file_err(path, format!("cannot write: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
    }

    #[tokio::test]
    async fn the_file_keeps_other_profiles_and_a_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("profiles.json");
        let other = json!({"ID": "theirs", "Type": "redirect", "Extra": 1});
        std::fs::write(
            &path,
            serde_json::to_vec(&json!([other, {"ID": "ours", "Name": "old"}])).expect("json"),
        )
        .expect("seed");
        let ours = json!({"ID": "ours", "Name": "new"});
        let out = write_profiles_file(&path, vec![("ours".into(), ours.clone())])
            .await
            .expect("write");
        assert!(out.written);
        assert_eq!(out.changes[0].1, Change::Updated);
        assert_eq!(out.changes[0].3, ["Name"]);
        assert_eq!(read(&path), json!([other, ours]));
        assert_eq!(
            read(&backup_path(&path))[1]["Name"],
            "old",
            "the previous file is kept"
        );
        let again = write_profiles_file(&path, vec![("ours".into(), ours)])
            .await
            .expect("again");
        assert!(!again.written, "nothing changed, nothing written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn a_second_copy_of_our_profile_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("profiles.json");
        let ours = json!({"ID": "ours", "Name": "new"});
        let seeded = json!([ours, {"ID": "x"}, {"ID": "ours", "Name": "stale"}]);
        std::fs::write(&path, seeded.to_string()).expect("seed");
        let out = write_profiles_file(&path, vec![("ours".into(), ours.clone())])
            .await
            .expect("write");
        assert!(out.written);
        assert_eq!(read(&path), json!([ours, {"ID": "x"}]));
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_profile_array_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("profiles.json");
        std::fs::write(&path, "{\"not\": \"an array\"}").expect("seed");
        let err = write_profiles_file(&path, vec![("p".into(), json!({"ID": "p"}))])
            .await
            .expect_err("refused");
        assert!(matches!(err, TibError::File { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"not\": \"an array\"}"
        );
    }

    #[test]
    fn rest_paths_for_standalone_and_embedded() {
        let secret = SecretString::from("s".to_string());
        let standalone = TibClient::new(
            "http://tib:3010",
            false,
            secret.clone(),
            Duration::from_secs(1),
        )
        .expect("client");
        assert_eq!(
            standalone.url("okta sso").expect("url").as_str(),
            "http://tib:3010/api/profiles/okta%20sso"
        );
        let embedded = TibClient::new("http://dash:3000/", true, secret, Duration::from_secs(1))
            .expect("client");
        assert_eq!(
            embedded.url("p").expect("url").as_str(),
            "http://dash:3000/api/tib/profiles/p"
        );
    }
}
