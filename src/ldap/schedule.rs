//! The poller of one source as a service: decides full vs incremental from
//! the stored poll state, records every outcome, wakes the sync worker
//! after a change, and runs on a schedule (first poll at start, then every
//! interval plus jitter) while this replica leads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};
use tracing::Instrument;

use super::config::{LdapConfig, LdapSourceConfig};
use super::diff::Held;
use super::error::LdapError;
use super::poller::{PollKind, PollOptions, PollReport, run_poll};
use crate::cluster::Leadership;
use crate::domain::{SourceName, Timestamp};
use crate::problem::ConfigProblem;
use crate::store::Store;
use crate::store::ldap_state::{self, PollState};
use crate::tasks::Shutdown;

/// What an operator (or the schedule) asks for.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollRequest {
    /// Full poll even if an incremental one is due.
    pub full: bool,
    /// Apply a poll that would be held (the mass-removal guard, an empty
    /// read). When a full poll is held, a forced poll is full.
    pub force: bool,
}

/// One configured source, ready to poll.
pub struct LdapPoller {
    pub source: SourceName,
    pub cfg: LdapSourceConfig,
    password: SecretString,
    store: Store,
    sync_wakeup: Arc<Notify>,
    /// One poll of a source at a time in this process.
    running: Mutex<()>,
}

/// Every configured source by name.
pub type LdapPollers = Arc<BTreeMap<SourceName, Arc<LdapPoller>>>;

/// Builds the pollers of `[ldap.sources]`; a missing password is a
/// start-up error naming its key.
pub fn pollers(
    config: &LdapConfig,
    store: &Store,
    sync_wakeup: Arc<Notify>,
) -> Result<LdapPollers, ConfigProblem> {
    let mut out = BTreeMap::new();
    for (name, cfg) in &config.sources {
        let password = cfg.password(&format!("ldap.sources.{name}"))?;
        let source = SourceName::new(name);
        let poller = LdapPoller {
            source: source.clone(),
            cfg: cfg.clone(),
            password,
            store: store.clone(),
            sync_wakeup: sync_wakeup.clone(),
            running: Mutex::new(()),
        };
        out.insert(source, Arc::new(poller));
    }
    Ok(Arc::new(out))
}

impl LdapPoller {
    /// The stored poll state (default before the first poll).
    pub async fn state(&self) -> Result<PollState, LdapError> {
        let mut conn = self.store.acquire().await?;
        Ok(ldap_state::get(&mut conn, &self.source)
            .await?
            .unwrap_or_default())
    }

    /// Polls once now and records the outcome.
    pub async fn poll(&self, request: PollRequest) -> Result<PollReport, LdapError> {
        let _running = self.running.lock().await;
        let mut state = self.state().await?;
        let started = Timestamp::now();
        let options = choose_options(&self.cfg, &state, request);
        let span = tracing::info_span!("ldap_poll", source = %self.source, kind = ?options.kind);
        let result = run_poll(
            &self.store,
            &self.source,
            &self.cfg,
            &self.password,
            options,
        )
        .instrument(span)
        .await;
        match &result {
            Ok(report) => {
                tracing::info!(source = %self.source, kind = ?report.kind, users = report.users_read,
                    groups = report.groups_read, changes = report.changes,
                    group_changes = report.groups.changes(), held = report.held.is_some(),
                    "LDAP poll finished");
                record_success(&mut state, report, started);
            }
            Err(e) => {
                tracing::warn!(source = %self.source, error = %e, "LDAP poll failed; nothing was changed");
                record_failure(&mut state, options.kind, e);
            }
        }
        let mut conn = self.store.acquire().await?;
        ldap_state::put(&mut conn, &self.source, &state).await?;
        if result.as_ref().is_ok_and(PollReport::wrote) {
            self.sync_wakeup.notify_one();
        }
        result
    }

    /// Polls now, then every `interval` plus up to `jitter`, while this
    /// replica leads, until shutdown. A follower checks every second
    /// whether it leads, so a new leader polls promptly.
    pub async fn run(self: Arc<Self>, leadership: Leadership, mut shutdown: Shutdown) {
        loop {
            while !leadership.is_leader() {
                if !shutdown.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
            // Errors are recorded in the poll state and logged.
            let _ = self.poll(PollRequest::default()).await;
            if !shutdown.sleep(self.next_delay()).await {
                return;
            }
        }
    }

    fn next_delay(&self) -> Duration {
        let jitter = u64::try_from(self.cfg.jitter.as_millis()).unwrap_or(0);
        let extra = if jitter == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter)
        };
        self.cfg.interval + Duration::from_millis(extra)
    }
}

/// Full on the first poll, every `full_every`th poll, on request, after a
/// failed full poll, and when forcing a held full poll (its deletions are
/// what is forced, and only a full poll finds them again); otherwise
/// incremental from the previous start minus the overlap.
fn choose_options(cfg: &LdapSourceConfig, state: &PollState, request: PollRequest) -> PollOptions {
    let due_full =
        state.last_full_at.is_none() || state.polls_since_full + 1 >= i64::from(cfg.full_every);
    let since = state.last_started_at.map(|t| {
        let overlap = i64::try_from(cfg.incremental_overlap.as_millis()).unwrap_or(0);
        Timestamp(t.0 - overlap)
    });
    let forcing_held_full = request.force && held_kind(state) == Some(PollKind::Full);
    let kind =
        if request.full || due_full || since.is_none() || state.full_pending || forcing_held_full {
            PollKind::Full
        } else {
            PollKind::Incremental
        };
    PollOptions {
        kind,
        force: request.force,
        since,
    }
}

/// The kind of the held poll, if one is held. A hold recorded without its
/// kind counts as full (a full poll re-evaluates anything).
fn held_kind(state: &PollState) -> Option<PollKind> {
    let held = state.held.as_ref()?;
    Some(match held.get("kind").and_then(serde_json::Value::as_str) {
        Some("incremental") => PollKind::Incremental,
        _ => PollKind::Full,
    })
}

/// What `ldap_poll_state.held` records: the held report's reason and
/// figures, and its kind (which decides what a forced poll is).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeldPoll<'a> {
    kind: PollKind,
    #[serde(flatten)]
    held: &'a Held,
}

fn record_success(state: &mut PollState, report: &PollReport, started: Timestamp) {
    state.last_report = serde_json::to_value(report).ok();
    // Only a poll that read again what the held one read settles it: a full
    // poll settles any hold; an incremental one only an incremental hold
    // (it reads from the same point, which a hold does not move), never a
    // full one's deletions.
    let settles_hold = report.kind == PollKind::Full || held_kind(state) != Some(PollKind::Full);
    if report.kind == PollKind::Full {
        // The full poll ran; what it found is applied, or held below.
        state.full_pending = false;
    }
    if let Some(held) = &report.held {
        // Nothing applied: the next poll of the same kind reads from the
        // same point, so the held changes are proposed again.
        if settles_hold {
            let record = HeldPoll {
                kind: report.kind,
                held,
            };
            state.held = serde_json::to_value(record).ok();
        }
        return;
    }
    if settles_hold {
        state.held = None;
    }
    state.last_error = None;
    state.last_error_at = None;
    state.last_success_at = Some(Timestamp::now());
    state.last_started_at = Some(started);
    match report.kind {
        PollKind::Full => {
            state.polls_since_full = 0;
            state.last_full_at = Some(started);
        }
        PollKind::Incremental => state.polls_since_full += 1,
    }
}

/// A failed full poll leaves its deletions unfound: the next poll is full
/// (kept in the stored state, so also after a restart).
fn record_failure(state: &mut PollState, kind: PollKind, error: &LdapError) {
    state.last_error = Some(error.to_string());
    state.last_error_at = Some(Timestamp::now());
    if kind == PollKind::Full {
        state.full_pending = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poller(full_every: u32) -> LdapSourceConfig {
        LdapSourceConfig {
            full_every,
            incremental_overlap: Duration::from_secs(60),
            ..LdapSourceConfig::default()
        }
    }

    fn decide(cfg: &LdapSourceConfig, state: &PollState, request: PollRequest) -> PollOptions {
        choose_options(cfg, state, request)
    }

    #[test]
    fn the_first_poll_is_full_then_every_nth() {
        let cfg = poller(3);
        let mut state = PollState::default();
        assert_eq!(
            decide(&cfg, &state, PollRequest::default()).kind,
            PollKind::Full
        );
        let report = |kind| PollReport {
            kind,
            users_read: 0,
            groups_read: 0,
            changes: 0,
            groups: Default::default(),
            cycles: vec![],
            held: None,
        };
        record_success(&mut state, &report(PollKind::Full), Timestamp(1_000_000));
        let next = decide(&cfg, &state, PollRequest::default());
        assert_eq!(next.kind, PollKind::Incremental);
        assert_eq!(next.since, Some(Timestamp(1_000_000 - 60_000)));
        // full_every = 3: full, incremental, incremental, full, …
        record_success(
            &mut state,
            &report(PollKind::Incremental),
            Timestamp(2_000_000),
        );
        let next = decide(&cfg, &state, PollRequest::default());
        assert_eq!(next.kind, PollKind::Incremental);
        assert_eq!(next.since, Some(Timestamp(2_000_000 - 60_000)));
        record_success(
            &mut state,
            &report(PollKind::Incremental),
            Timestamp(3_000_000),
        );
        assert_eq!(
            decide(&cfg, &state, PollRequest::default()).kind,
            PollKind::Full
        );
        let forced = PollRequest {
            full: true,
            force: false,
        };
        state.polls_since_full = 0;
        assert_eq!(decide(&cfg, &state, forced).kind, PollKind::Full);
    }

    #[test]
    fn a_held_poll_keeps_its_place() {
        let mut state = PollState {
            polls_since_full: 1,
            last_started_at: Some(Timestamp(5)),
            last_full_at: Some(Timestamp(1)),
            ..PollState::default()
        };
        let held = PollReport {
            kind: PollKind::Full,
            users_read: 1,
            groups_read: 0,
            changes: 9,
            groups: Default::default(),
            cycles: vec![],
            held: Some(Held {
                reason: "would remove 9 of 10 users".into(),
                removals: 9,
                stored: 10,
                max_percent: 20,
            }),
        };
        record_success(&mut state, &held, Timestamp(99));
        assert_eq!(state.polls_since_full, 1);
        assert_eq!(state.last_started_at, Some(Timestamp(5)));
        assert!(state.held.is_some());
    }

    fn report(kind: PollKind, held: bool) -> PollReport {
        PollReport {
            kind,
            users_read: 0,
            groups_read: 0,
            changes: 0,
            groups: Default::default(),
            cycles: vec![],
            held: held.then(|| Held {
                reason: "read 0 users where the source has 6".into(),
                removals: 6,
                stored: 6,
                max_percent: 20,
            }),
        }
    }

    #[test]
    fn forcing_a_held_full_poll_runs_a_full_poll_and_only_a_full_poll_settles_it() {
        let cfg = poller(12);
        let mut state = PollState::default();
        record_success(&mut state, &report(PollKind::Full, false), Timestamp(1_000));
        record_success(&mut state, &report(PollKind::Full, true), Timestamp(2_000));
        assert_eq!(state.held.as_ref().expect("held")["kind"], "full");
        assert_eq!(
            state.held.as_ref().expect("held")["reason"],
            "read 0 users where the source has 6"
        );
        let force = PollRequest {
            full: false,
            force: true,
        };
        assert_eq!(decide(&cfg, &state, force).kind, PollKind::Full);
        // A scheduled incremental poll applies its own changes and leaves
        // the held full poll held (and a held incremental one does not
        // replace it).
        let plain = PollRequest::default();
        assert_eq!(decide(&cfg, &state, plain).kind, PollKind::Incremental);
        record_success(
            &mut state,
            &report(PollKind::Incremental, false),
            Timestamp(3_000),
        );
        record_success(
            &mut state,
            &report(PollKind::Incremental, true),
            Timestamp(4_000),
        );
        assert_eq!(state.held.as_ref().expect("still held")["kind"], "full");
        assert_eq!(decide(&cfg, &state, force).kind, PollKind::Full);
        record_success(&mut state, &report(PollKind::Full, false), Timestamp(5_000));
        assert_eq!(state.held, None);
        assert_eq!(decide(&cfg, &state, force).kind, PollKind::Incremental);
        // A held incremental poll is settled by the next incremental one.
        record_success(
            &mut state,
            &report(PollKind::Incremental, true),
            Timestamp(6_000),
        );
        assert_eq!(state.held.as_ref().expect("held")["kind"], "incremental");
        assert_eq!(decide(&cfg, &state, force).kind, PollKind::Incremental);
        record_success(
            &mut state,
            &report(PollKind::Incremental, false),
            Timestamp(7_000),
        );
        assert_eq!(state.held, None);
        // A hold recorded before holds had a kind is treated as full.
        state.held = Some(serde_json::json!({"removals": 9, "stored": 10, "maxPercent": 20}));
        assert_eq!(decide(&cfg, &state, force).kind, PollKind::Full);
    }

    #[test]
    fn a_failed_full_poll_makes_the_next_poll_full() {
        let cfg = poller(12);
        let mut state = PollState::default();
        record_success(&mut state, &report(PollKind::Full, false), Timestamp(1_000));
        let error = LdapError::Connect {
            url: "ldap://x".into(),
            detail: "refused".into(),
        };
        // A failed incremental poll changes nothing about the choice.
        record_failure(&mut state, PollKind::Incremental, &error);
        assert_eq!(
            decide(&cfg, &state, PollRequest::default()).kind,
            PollKind::Incremental
        );
        record_failure(&mut state, PollKind::Full, &error);
        assert!(state.full_pending);
        assert_eq!(
            decide(&cfg, &state, PollRequest::default()).kind,
            PollKind::Full
        );
        record_failure(&mut state, PollKind::Full, &error);
        assert!(state.full_pending, "still failing");
        record_success(&mut state, &report(PollKind::Full, false), Timestamp(2_000));
        assert!(!state.full_pending);
        assert_eq!(
            decide(&cfg, &state, PollRequest::default()).kind,
            PollKind::Incremental
        );
    }
}
