//! The mass-change guard: a run that would take access away from more than
//! `max(min_count, max_percent % of managed users)` people is not applied but
//! held until someone approves it. Protects against a broken mapping, an
//! empty LDAP search or an IdP outage wiping out every Tyk user.

use serde::{Deserialize, Serialize};

use super::step::Plan;

/// Thresholds (from `SyncConfig.guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Removals up to this count always proceed.
    pub min_count: usize,
    /// Removals up to this share of the managed users always proceed.
    pub max_percent: u8,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            min_count: 10,
            max_percent: 10,
        }
    }
}

impl GuardConfig {
    /// The largest number of removals that proceeds without approval.
    pub fn threshold(&self, managed: usize) -> usize {
        let percent = (managed * usize::from(self.max_percent)).div_ceil(100);
        self.min_count.max(percent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum GuardVerdict {
    Proceed,
    Hold {
        would_remove: usize,
        managed: usize,
        threshold: usize,
    },
}

/// Judges a plan against the guard; `managed` is the number of Tyk users we
/// manage before the plan.
pub fn guard(plan: &Plan, managed: usize, config: GuardConfig) -> GuardVerdict {
    let would_remove = plan.summary().people_removed;
    let threshold = config.threshold(managed);
    if would_remove > threshold {
        GuardVerdict::Hold {
            would_remove,
            managed,
            threshold,
        }
    } else {
        GuardVerdict::Proceed
    }
}
