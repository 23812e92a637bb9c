//! The poller of one source as a service: decides full vs incremental from
//! the stored poll state, records every outcome, wakes the sync worker
//! after a change, and runs on a schedule (first poll at start, then every
//! interval plus jitter) while this replica leads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::{Mutex, Notify};
use tracing::Instrument;

use super::config::{LdapConfig, LdapSourceConfig};
use super::error::LdapError;
use super::poller::{PollKind, PollOptions, PollReport, run_poll};
use crate::cluster::Leadership;
use crate::config::ConfigProblem;
use crate::domain::{SourceName, Timestamp};
use crate::store::Store;
use crate::store::ldap_state::{self, PollState};
use crate::tasks::Shutdown;

/// What an operator (or the schedule) asks for.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollRequest {
    /// Full poll even if an incremental one is due.
    pub full: bool,
    /// Apply a poll the mass-removal guard would hold.
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
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(crate::store::StoreError::from)?;
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
                state.last_error = Some(e.to_string());
                state.last_error_at = Some(Timestamp::now());
            }
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(crate::store::StoreError::from)?;
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

/// Full on the first poll, every `full_every`th poll and on request;
/// otherwise incremental from the previous start minus the overlap.
fn choose_options(cfg: &LdapSourceConfig, state: &PollState, request: PollRequest) -> PollOptions {
    let due_full =
        state.last_full_at.is_none() || state.polls_since_full + 1 >= i64::from(cfg.full_every);
    let since = state.last_started_at.map(|t| {
        let overlap = i64::try_from(cfg.incremental_overlap.as_millis()).unwrap_or(0);
        Timestamp(t.0 - overlap)
    });
    let kind = if request.full || due_full || since.is_none() {
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

fn record_success(state: &mut PollState, report: &PollReport, started: Timestamp) {
    state.last_report = serde_json::to_value(report).ok();
    if let Some(held) = &report.held {
        // Nothing applied: the next poll is of the same kind and reads from
        // the same point, so the held changes are proposed again.
        state.held = serde_json::to_value(held).ok();
        return;
    }
    state.held = None;
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
            held: Some(super::super::diff::Held {
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
}
