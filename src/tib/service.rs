//! The TIB service: loads what the profiles are rendered from (rules and
//! source groups from the store, group ids from the Dashboard), renders,
//! pushes to TIB's API and file, audits every change, and keeps the last
//! push result in the store so every replica's status can show it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::config::{Template, TibConfig, load_template};
use super::profile::redact;
use super::push::{Change, TibClient, TibError, TibWriteGate, write_profiles_file_gated};
use super::render::{RenderInput, RenderedProfile, render};
use crate::domain::Timestamp;
use crate::mapping::GroupRef;
use crate::store::sync_audit::{self, NewAuditEntry};
use crate::store::{Store, StoreError, identities, mappings, settings, sync_state};
use crate::tyk::TykClient;
use crate::wiring::LiveMapping;

/// Where the last push result is kept (the `settings` table).
const STATE_SETTING: &str = "tib.push_state";

impl From<StoreError> for TibError {
    fn from(e: StoreError) -> Self {
        TibError::Store(e.to_string())
    }
}

/// One profile's part of a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileResult {
    pub id: String,
    /// SHA-256 of the rendered profile (what was pushed).
    pub rendered_sha256: Option<String>,
    /// What the REST push did (`unchanged`, `created`, `updated`).
    #[schema(value_type = Option<String>)]
    pub api: Option<Change>,
    /// What the file write did.
    #[schema(value_type = Option<String>)]
    pub file: Option<Change>,
    /// TIB's copy had been changed outside tyk-idsync and was restored.
    pub corrected: bool,
    pub error: Option<String>,
}

/// The result of one push of every profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushReport {
    /// RFC 3339.
    pub at: String,
    pub ok: bool,
    /// Requests or file writes that changed something.
    pub writes: usize,
    pub profiles: Vec<ProfileResult>,
}

/// What the store keeps between pushes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PushState {
    last: Option<PushReport>,
    last_success_ms: Option<i64>,
    consecutive_failures: u32,
}

/// The `tib` part of `/admin/v1/status`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TibStatus {
    /// Profiles configured.
    pub profiles: usize,
    /// When the last push ran (RFC 3339).
    pub last_push: Option<String>,
    /// When a push last succeeded for every profile (RFC 3339).
    pub last_success: Option<String>,
    /// The errors of the last push, one per failed profile.
    pub last_errors: Vec<String>,
    pub consecutive_failures: u32,
}

/// The `tib` status from the store; `None` without `[tib]`.
pub async fn status(
    store: &Store,
    tib: Option<&TibConfig>,
) -> Result<Option<TibStatus>, StoreError> {
    let Some(tib) = tib else {
        return Ok(None);
    };
    let mut conn = store.acquire().await?;
    let state = load_state(&mut conn).await?;
    let last_errors = state
        .last
        .iter()
        .flat_map(|r| &r.profiles)
        .filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.id)))
        .collect();
    Ok(Some(TibStatus {
        profiles: tib.profiles.len(),
        last_push: state.last.as_ref().map(|r| r.at.clone()),
        last_success: state.last_success_ms.map(|ms| Timestamp(ms).to_rfc3339()),
        last_errors,
        consecutive_failures: state.consecutive_failures,
    }))
}

/// The last push result from the store.
pub async fn last_push(store: &Store) -> Result<Option<PushReport>, StoreError> {
    let mut conn = store.acquire().await?;
    Ok(load_state(&mut conn).await?.last)
}

async fn load_state(conn: &mut sqlx::AnyConnection) -> Result<PushState, StoreError> {
    Ok(settings::get(conn, STATE_SETTING)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

/// Render results of every configured profile, in config order.
pub type Rendered = Vec<(String, Result<RenderedProfile, String>)>;

/// The running part of `[tib]`.
pub struct TibService {
    config: TibConfig,
    templates: Vec<Template>,
    store: Store,
    tyk: TykClient,
    rest: Option<TibClient>,
    mapping: LiveMapping,
    wakeup: Arc<Notify>,
    memory: Mutex<Memory>,
    /// This replica's leader lease (the server's task); `None` for a
    /// one-shot command, which runs on its own.
    write_gate: Option<TibWriteGate>,
}

/// What the task remembers between runs (this process only).
#[derive(Debug, Default)]
struct Memory {
    /// Fingerprints of the last push that succeeded for every profile.
    pushed: Option<Vec<String>>,
    verified_at: Option<Instant>,
}

impl std::fmt::Debug for TibService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TibService")
            .field("profiles", &self.config.profiles.len())
            .field("rest", &self.rest)
            .finish_non_exhaustive()
    }
}

fn sha256(value: &Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

impl TibService {
    /// Builds the service of a validated config; `None` without `[tib]`.
    /// Its writes are not fenced: for one-shot commands and tests.
    pub fn new(
        tib: Option<&TibConfig>,
        tyk: Option<&crate::tyk::TykConfig>,
        store: &Store,
        mapping: &LiveMapping,
    ) -> Result<Option<Arc<Self>>, TibError> {
        Self::new_gated(tib, tyk, store, mapping, None)
    }

    /// [`Self::new`] with every write to TIB (each POST/PUT and the
    /// profiles file's replacement) asking `write_gate` first, right before
    /// it leaves: the server passes its leader lease, so a replica that
    /// lost the lead pushes no profile.
    pub fn new_gated(
        tib: Option<&TibConfig>,
        tyk: Option<&crate::tyk::TykConfig>,
        store: &Store,
        mapping: &LiveMapping,
        write_gate: Option<TibWriteGate>,
    ) -> Result<Option<Arc<Self>>, TibError> {
        let Some(tib) = tib else {
            return Ok(None);
        };
        let tyk_config =
            tyk.ok_or_else(|| TibError::Config("tib: needs the [tyk] section".into()))?;
        let tyk = TykClient::new(tyk_config).map_err(|e| TibError::Config(e.to_string()))?;
        let templates = tib
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| {
                load_template(
                    &format!("tib.profiles[{i}].template_file"),
                    &p.template_file,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| TibError::Config(p.to_string()))?;
        let rest = match tib.effective_url(Some(tyk_config)) {
            Some(url) => {
                let secret = tib
                    .resolve_secret(Some(tyk_config))
                    .map_err(|p| TibError::Config(p.to_string()))?;
                let client = TibClient::new(&url, tib.embedded, secret, tib.timeout)?;
                Some(match &write_gate {
                    Some(gate) => client.with_write_gate(gate.clone()),
                    None => client,
                })
            }
            None => None,
        };
        Ok(Some(Arc::new(Self {
            config: tib.clone(),
            templates,
            store: store.clone(),
            tyk,
            rest,
            mapping: mapping.clone(),
            wakeup: Arc::new(Notify::new()),
            memory: Mutex::new(Memory::default()),
            write_gate,
        })))
    }

    pub fn config(&self) -> &TibConfig {
        &self.config
    }

    /// Poke to make the task re-render now (e.g. after a rule change).
    pub fn waker(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renders every profile from the current rules, source groups and
    /// Tyk group ids. An error here (store, Dashboard) renders nothing.
    pub async fn render(&self) -> Result<Rendered, TibError> {
        let mut conn = self.store.acquire().await?;
        let mapping = self
            .mapping
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        // The config file's rules merged in memory: rendering (and so
        // `tib render` / `tib push`) never writes them to the store.
        let rules = crate::mapping::service::rules_as_applied(&mut conn, &mapping)
            .await
            .map_err(|e| TibError::Render(e.to_string()))?;
        let groups: Vec<GroupRef> = identities::list_all_groups(&mut conn)
            .await?
            .into_iter()
            .map(|g| GroupRef {
                source: g.source,
                display_name: g.display_name,
                external_id: g.external_id,
            })
            .collect();
        let managed = sync_state::list_groups(&mut conn).await?;
        drop(conn);
        let tyk_groups = self
            .tyk
            .list_groups()
            .await
            .map_err(|e| TibError::Tyk(e.to_string()))?;
        let mut out = Vec::new();
        for (profile, template) in self.config.profiles.iter().zip(&self.templates) {
            // The group of each name that exists in Tyk now, preferring one
            // we manage (as the sync's planner does).
            let mut ids: BTreeMap<String, String> = BTreeMap::new();
            for group in tyk_groups
                .iter()
                .filter(|g| g.org_id == profile.org_id || g.org_id.is_empty())
            {
                let ours = managed.iter().any(|m| m.tyk_group_id == group.id);
                match ids.get(&group.name) {
                    Some(_) if !ours => {}
                    _ => {
                        ids.insert(group.name.clone(), group.id.clone());
                    }
                }
            }
            let default_group = profile.default_group.as_deref().or_else(|| {
                (mapping.default_org_id.as_deref() == Some(profile.org_id.as_str()))
                    .then_some(mapping.default_group.as_deref())
                    .flatten()
            });
            let rendered = render(RenderInput {
                profile,
                template,
                rules: &rules,
                groups: &groups,
                group_ids: &ids,
                default_group,
            })
            .map_err(|e| e.to_string());
            out.push((profile.id.clone(), rendered));
        }
        Ok(out)
    }

    /// A cheap fingerprint of what the profiles depend on in the store: the
    /// mapping rules and the Tyk groups the sync manages (a group it
    /// creates or recreates changes it). Two small queries, no Tyk call.
    pub async fn store_fingerprint(&self) -> Result<String, TibError> {
        let mut conn = self.store.acquire().await?;
        let rules = mappings::list_rules(&mut conn).await?;
        let groups = sync_state::list_groups(&mut conn).await?;
        let value = serde_json::json!({"rules": rules, "groups": groups});
        Ok(sha256(&value))
    }

    /// Re-renders; pushes when a profile's rendering changed since the last
    /// successful push, or when the read-back is due. `Ok(None)`: nothing
    /// to do.
    pub async fn run_once(&self) -> Result<Option<PushReport>, TibError> {
        let rendered = self.render().await?;
        let prints: Vec<String> = rendered
            .iter()
            .map(|(_, r)| match r {
                Ok(p) => sha256(&p.profile),
                Err(e) => e.clone(),
            })
            .collect();
        let due = {
            let memory = self.memory();
            memory.pushed.as_ref() != Some(&prints)
                || memory
                    .verified_at
                    .is_none_or(|at| at.elapsed() >= self.config.verify_interval)
        };
        if !due {
            return Ok(None);
        }
        self.push_rendered(rendered, "tib").await.map(Some)
    }

    /// Renders and pushes every profile now, reading each back (what
    /// corrects a hand edit). `actor` goes to the audit log.
    pub async fn push(&self, actor: &str) -> Result<PushReport, TibError> {
        let rendered = self.render().await?;
        self.push_rendered(rendered, actor).await
    }

    /// `Err(Fenced)` when the write gate refuses now: not leading, nothing
    /// to push (and no push state recorded: the leader's stands).
    fn admit(&self) -> Result<(), TibError> {
        match &self.write_gate {
            Some(gate) => gate().map_err(TibError::Fenced),
            None => Ok(()),
        }
    }

    async fn push_rendered(&self, rendered: Rendered, actor: &str) -> Result<PushReport, TibError> {
        self.admit()?;
        // Set when the gate refused a write mid-push (the lease lapsed).
        let mut fenced: Option<TibError> = None;
        let mut conn = self.store.acquire().await?;
        let previous = load_state(&mut conn).await?;
        drop(conn);
        let previous_sha: BTreeMap<String, String> = previous
            .last
            .iter()
            .flat_map(|r| &r.profiles)
            .filter(|p| p.error.is_none())
            .filter_map(|p| p.rendered_sha256.clone().map(|s| (p.id.clone(), s)))
            .collect();
        let mut results = Vec::new();
        let mut audits = Vec::new();
        let mut writes = 0;
        for (id, outcome) in &rendered {
            let org_id = self
                .config
                .profiles
                .iter()
                .find(|p| &p.id == id)
                .map(|p| p.org_id.clone())
                .unwrap_or_default();
            let mut result = ProfileResult {
                id: id.clone(),
                rendered_sha256: None,
                api: None,
                file: None,
                corrected: false,
                error: None,
            };
            let profile = match outcome {
                Ok(p) => p,
                Err(e) => {
                    result.error = Some(e.clone());
                    results.push(result);
                    continue;
                }
            };
            let sha = sha256(&profile.profile);
            // Same rendering as last time, yet TIB differs: a hand edit.
            let unchanged_here = previous_sha.get(id) == Some(&sha);
            result.rendered_sha256 = Some(sha);
            if let Some(rest) = &self.rest {
                match self.with_retry(|| rest.push(id, &profile.profile)).await {
                    Ok(out) => {
                        result.api = Some(out.change);
                        if out.change != Change::Unchanged {
                            writes += 1;
                            let corrected = unchanged_here;
                            result.corrected |= corrected;
                            audits.push(audit_entry(
                                actor,
                                step_kind("api", out.change, corrected),
                                &org_id,
                                id,
                                out.before.as_ref(),
                                &profile.profile,
                                message("TIB API", out.change, corrected, &out.fields),
                            ));
                            count_change("api", out.change, corrected);
                        }
                    }
                    Err(e) => {
                        if matches!(e, TibError::Fenced(_)) {
                            fenced = Some(e.clone());
                        }
                        result.error = Some(e.to_string());
                    }
                }
            }
            results.push(result);
        }
        if let Some(path) = &self.config.profiles_file {
            let ours: Vec<(String, Value)> = rendered
                .iter()
                .filter_map(|(id, r)| r.as_ref().ok().map(|p| (id.clone(), p.profile.clone())))
                .collect();
            if !ours.is_empty() {
                match write_profiles_file_gated(path, ours, self.write_gate.clone()).await {
                    Ok(out) => {
                        if out.written {
                            writes += 1;
                        }
                        for (id, change, before, fields) in out.changes {
                            let Some(result) = results.iter_mut().find(|r| r.id == id) else {
                                continue;
                            };
                            result.file = Some(change);
                            if change == Change::Unchanged {
                                continue;
                            }
                            let unchanged_here =
                                previous_sha.get(&id) == result.rendered_sha256.as_ref();
                            let corrected = unchanged_here;
                            result.corrected |= corrected;
                            let (org_id, after) = rendered
                                .iter()
                                .find(|(i, _)| *i == id)
                                .and_then(|(_, r)| r.as_ref().ok())
                                .map(|p| (p.org_id.clone(), p.profile.clone()))
                                .unwrap_or_default();
                            audits.push(audit_entry(
                                actor,
                                step_kind("file", change, corrected),
                                &org_id,
                                &id,
                                before.as_ref(),
                                &after,
                                message(&path.display().to_string(), change, corrected, &fields),
                            ));
                            count_change("file", change, corrected);
                        }
                    }
                    Err(e) => {
                        if matches!(e, TibError::Fenced(_)) {
                            fenced = Some(e.clone());
                        }
                        for result in results.iter_mut().filter(|r| r.error.is_none()) {
                            result.error = Some(e.to_string());
                        }
                    }
                }
            }
        }
        let ok = results.iter().all(|r| r.error.is_none());
        let now = Timestamp::now();
        let report = PushReport {
            at: now.to_rfc3339(),
            ok,
            writes,
            profiles: results,
        };
        let state = PushState {
            last: Some(report.clone()),
            last_success_ms: if ok {
                Some(now.0)
            } else {
                previous.last_success_ms
            },
            consecutive_failures: if ok {
                0
            } else {
                previous.consecutive_failures.saturating_add(1)
            },
        };
        let mut conn = self.store.acquire().await?;
        // What did reach TIB is audited even when the lease lapsed mid-push.
        for entry in &audits {
            sync_audit::append(&mut conn, entry).await?;
        }
        if let Some(fenced) = fenced {
            // This replica no longer leads: the new leader's push state
            // stands, and it pushes what was not written here.
            return Err(fenced);
        }
        let text = serde_json::to_string(&state).map_err(|e| TibError::Store(e.to_string()))?;
        settings::set(&mut conn, STATE_SETTING, &text).await?;
        drop(conn);
        self.observe(&report, &state);
        if ok {
            let mut memory = self.memory();
            memory.pushed = Some(
                report
                    .profiles
                    .iter()
                    .map(|p| p.rendered_sha256.clone().unwrap_or_default())
                    .collect(),
            );
            memory.verified_at = Some(Instant::now());
        }
        for failed in report.profiles.iter().filter(|p| p.error.is_some()) {
            tracing::warn!(profile = %failed.id, error = failed.error.as_deref().unwrap_or(""),
                "TIB profile not pushed; retrying later");
        }
        Ok(report)
    }

    /// Up to `max_attempts` tries, doubling the delay, for transient errors.
    async fn with_retry<T, F, Fut>(&self, mut call: F) -> Result<T, TibError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TibError>>,
    {
        let mut delay = self.config.retry_base_delay;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    tracing::debug!(error = %e, attempt, "TIB call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn observe(&self, report: &PushReport, state: &PushState) {
        let result = if report.ok { "ok" } else { "error" };
        metrics::counter!("tyk_idsync_tib_pushes_total", "result" => result).increment(1);
        metrics::gauge!("tyk_idsync_tib_consecutive_failures")
            .set(f64::from(state.consecutive_failures));
        if let Some(ms) = state.last_success_ms {
            metrics::gauge!("tyk_idsync_tib_last_success_timestamp_seconds")
                .set(ms as f64 / 1000.0);
        }
    }

    /// The delay before the next run after `failures` failed pushes in a row.
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            // Wake in time for the read-back, too.
            return self.config.interval.min(self.config.verify_interval);
        }
        let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
        self.config
            .retry_base_delay
            .saturating_mul(factor)
            .min(self.config.interval)
    }
}

fn step_kind(target: &str, change: Change, corrected: bool) -> String {
    let what = match (change, corrected) {
        (_, true) => "correct",
        (Change::Created, _) => "create",
        _ => "update",
    };
    format!("tib_{target}_{what}")
}

fn message(place: &str, change: Change, corrected: bool, fields: &[String]) -> String {
    match (change, corrected) {
        (Change::Created, true) => {
            format!("{place}: profile was deleted outside tyk-idsync; recreated")
        }
        (Change::Created, _) => format!("{place}: profile created"),
        (_, true) => format!(
            "{place}: profile was changed outside tyk-idsync ({}); restored",
            fields.join(", ")
        ),
        _ => format!("{place}: {} updated", fields.join(", ")),
    }
}

fn count_change(target: &'static str, change: Change, corrected: bool) {
    let kind = match (change, corrected) {
        (_, true) => "corrected",
        (Change::Created, _) => "created",
        _ => "updated",
    };
    metrics::counter!("tyk_idsync_tib_profile_changes_total", "target" => target, "change" => kind)
        .increment(1);
}

fn audit_entry(
    actor: &str,
    step_kind: String,
    org_id: &str,
    id: &str,
    before: Option<&Value>,
    after: &Value,
    message: String,
) -> NewAuditEntry {
    NewAuditEntry {
        run_id: None,
        at: Timestamp::now(),
        actor: actor.to_string(),
        step_kind,
        org_id: org_id.to_string(),
        email: None,
        tyk_id: Some(id.to_string()),
        // Templates carry TIB secrets; the audit log never does.
        before: before.map(redact),
        after: Some(redact(after)),
        event_seqs: Vec::new(),
        rule: None,
        ok: true,
        message: Some(message),
    }
}
