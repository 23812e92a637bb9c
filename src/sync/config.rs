//! The `[sync]` configuration section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::apply::ApplyLimits;
use super::guard::GuardConfig;
use super::ownership::{Deprovision, SyncPolicy};
use super::retry::RetryPolicy;
use crate::problem::ConfigProblem;

/// How the sync worker plans and applies changes to Tyk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How often a full reconcile corrects hand-made changes in Tyk.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// What happens to people no source wants: `deactivate` or `delete`.
    pub deprovision: Deprovision,
    /// With `delete`: how long a user stays deactivated before deletion.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Take over existing Tyk users whose e-mail matches a desired person
    /// (and existing groups with a desired name). Logged in the audit log.
    pub adopt_existing: bool,
    /// After deprovisioning a user (deactivation, or an inactive user we
    /// keep), give it a new Dashboard API access key: a deactivated user's
    /// key otherwise keeps working against the Dashboard API.
    pub reset_access_key_on_deactivate: bool,
    /// The mass-change guard.
    pub guard: GuardConfig,
    /// Requests to Tyk in flight at once (people applied at once, listing
    /// pages and reads fetched at once); also capped by `tyk.max_concurrency`.
    pub max_concurrency: usize,
    /// Requests per second toward Tyk, every kind counted — reads by id,
    /// searches, listing pages and writes share ONE limiter in the Tyk
    /// client, evenly spaced 1 % under the rate with a burst of half that
    /// slack (none below 200/s, 3 at 400/s; see `tyk::client`); 0 = unlimited.
    pub requests_per_second: u32,
    /// How long after writing a user an event run trusts the written record
    /// instead of reading the user back (`GET /api/users/{id}`); 0 = always
    /// read. Drift in that window is fixed by a later read or the full
    /// reconcile.
    #[serde(with = "humantime_serde")]
    pub trust_own_writes: Duration,
    /// Tries per Tyk request (timeouts, 429 and 5xx are retried).
    pub max_attempts: u32,
    /// First retry delay (grows exponentially, with full jitter): of a
    /// request, and of the events of a person or a run that failed.
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    /// Largest retry delay (also caps a server's `Retry-After`).
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Outbox events claimed per event-driven run; a full batch lets the
    /// next one be claimed and planned while it applies (never over the
    /// same person).
    pub event_batch: u32,
    /// How long a claimed event stays leased before another worker may
    /// retry it (a crashed worker's events come back after this).
    #[serde(with = "humantime_serde")]
    pub event_lease: Duration,
    /// How often the outbox is checked when nobody signals a change.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            deprovision: Deprovision::Deactivate,
            grace_period: Duration::from_secs(30 * 24 * 3600),
            adopt_existing: false,
            reset_access_key_on_deactivate: true,
            guard: GuardConfig::default(),
            max_concurrency: 8,
            requests_per_second: 50,
            trust_own_writes: Duration::from_secs(10),
            max_attempts: 5,
            retry_base_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            event_batch: 200,
            event_lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl SyncConfig {
    pub fn policy(&self) -> SyncPolicy {
        SyncPolicy {
            deprovision: self.deprovision,
            grace_period: self.grace_period,
            adopt_existing: self.adopt_existing,
            reset_access_key: self.reset_access_key_on_deactivate,
        }
    }

    pub fn limits(&self) -> ApplyLimits {
        ApplyLimits {
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                base_delay: self.retry_base_delay,
                max_delay: self.retry_max_delay,
            },
            max_concurrency: self.max_concurrency,
            requests_per_second: (self.requests_per_second > 0).then_some(self.requests_per_second),
        }
    }

    /// One problem per bad key; `prefix` is the section's dotted path (`sync`).
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let key = |name: &str| format!("{prefix}.{name}");
        let mut problems = Vec::new();
        if self.interval < Duration::from_secs(10) {
            problems.push(
                ConfigProblem::new(key("interval"), "must be at least 10s")
                    .hint("e.g. \"10m\"; events are applied as they come anyway"),
            );
        }
        if self.guard.max_percent > 100 {
            problems.push(ConfigProblem::new(
                key("guard.max_percent"),
                "must be 0..=100",
            ));
        }
        if self.guard.recreate_max_percent > 100 {
            problems.push(ConfigProblem::new(
                key("guard.recreate_max_percent"),
                "must be 0..=100",
            ));
        }
        if !(1..=64).contains(&self.max_concurrency) {
            problems.push(ConfigProblem::new(key("max_concurrency"), "must be 1..=64"));
        }
        if !(1..=20).contains(&self.max_attempts) {
            problems.push(ConfigProblem::new(key("max_attempts"), "must be 1..=20"));
        }
        if self.retry_base_delay > self.retry_max_delay {
            problems.push(ConfigProblem::new(
                key("retry_base_delay"),
                "must not exceed retry_max_delay",
            ));
        }
        if self.event_batch == 0 {
            problems.push(ConfigProblem::new(key("event_batch"), "must be at least 1"));
        }
        if self.event_lease < Duration::from_secs(5) {
            problems.push(ConfigProblem::new(
                key("event_lease"),
                "must be at least 5s",
            ));
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(60) {
            problems.push(ConfigProblem::new(
                key("poll_interval"),
                "must be between 1ms and 60s",
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_toml_section_parses_and_defaults_fill_the_rest() {
        let config: SyncConfig = toml::from_str(
            r#"
            interval = "5m"
            deprovision = "delete"
            grace_period = "7d"
            adopt_existing = true
            requests_per_second = 0
            [guard]
            min_count = 20
            max_percent = 5
            "#,
        )
        .expect("parse");
        assert_eq!(config.interval, Duration::from_secs(300));
        assert_eq!(config.deprovision, Deprovision::Delete);
        assert_eq!(config.grace_period, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(
            config.guard,
            GuardConfig {
                min_count: 20,
                max_percent: 5,
                ..GuardConfig::default()
            }
        );
        assert_eq!(config.limits().requests_per_second, None);
        assert_eq!(config.max_attempts, 5);
        assert!(config.validate("sync").is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported_by_key() {
        assert!(toml::from_str::<SyncConfig>("intervall = \"5m\"").is_err());
        assert!(toml::from_str::<SyncConfig>("deprovision = \"shred\"").is_err());
        let config = SyncConfig {
            interval: Duration::from_secs(1),
            max_concurrency: 0,
            guard: GuardConfig {
                min_count: 1,
                max_percent: 150,
                ..GuardConfig::default()
            },
            ..SyncConfig::default()
        };
        let keys: Vec<_> = config.validate("sync").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "sync.interval",
                "sync.guard.max_percent",
                "sync.max_concurrency"
            ]
        );
    }
}
