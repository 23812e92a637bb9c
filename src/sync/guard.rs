//! The mass-change guard: a run that would take access away from more than
//! `max(min_count, max_percent % of managed users)` people is not applied but
//! held until someone approves it. Protects against a broken mapping, an
//! empty LDAP search or an IdP outage wiping out every Tyk user.
//!
//! Re-creations are counted apart from removals: a managed user that
//! vanished from Tyk but is still desired is forgotten and created afresh
//! (`forget_user` then `create_user`), which gives access back rather than
//! taking it away. Many of them at once can still mean the bridge points at
//! the wrong Dashboard or organisation (or Tyk lost its data), so more than
//! `max(min_count, recreate_max_percent % of managed users)` re-creations
//! hold the run too, with that reason.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::step::{Plan, PlanStep};

/// Thresholds (from `SyncConfig.guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Removals (and re-creations) up to this count always proceed.
    pub min_count: usize,
    /// Removals up to this share of the managed users always proceed.
    pub max_percent: u8,
    /// Re-creations of managed users that vanished from Tyk up to this
    /// share of the managed users always proceed.
    pub recreate_max_percent: u8,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            min_count: 10,
            max_percent: 10,
            recreate_max_percent: 20,
        }
    }
}

impl GuardConfig {
    /// The largest number of removals that proceeds without approval.
    pub fn threshold(&self, managed: usize) -> usize {
        share(self.min_count, self.max_percent, managed)
    }

    /// The largest number of re-creations that proceeds without approval.
    pub fn recreate_threshold(&self, managed: usize) -> usize {
        share(self.min_count, self.recreate_max_percent, managed)
    }
}

fn share(min_count: usize, percent: u8, managed: usize) -> usize {
    min_count.max((managed * usize::from(percent)).div_ceil(100))
}

/// Distinct people a plan removes and re-creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    /// People who lose access: deactivated, deleted, or forgotten without
    /// being created again.
    pub removals: usize,
    /// Managed users gone from Tyk that the plan forgets and creates afresh.
    pub recreations: usize,
}

/// Counts removals and re-creations apart (per organisation and e-mail).
pub fn counts(plan: &Plan) -> GuardCounts {
    let person = |step: &PlanStep| {
        step.email()
            .map(|e| (step.org_id().to_string(), e.to_string()))
    };
    let created: BTreeSet<_> = plan
        .steps
        .iter()
        .filter(|s| matches!(s, PlanStep::CreateUser { .. }))
        .filter_map(person)
        .collect();
    let mut removed = BTreeSet::new();
    let mut recreated = BTreeSet::new();
    for step in plan.steps.iter().filter(|s| s.removes_access()) {
        let Some(key) = person(step) else { continue };
        if matches!(step, PlanStep::ForgetUser { .. }) && created.contains(&key) {
            recreated.insert(key);
        } else {
            removed.insert(key);
        }
    }
    // A person both re-created and deactivated in one plan loses access.
    recreated.retain(|key| !removed.contains(key));
    GuardCounts {
        removals: removed.len(),
        recreations: recreated.len(),
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
        #[serde(default)]
        would_recreate: usize,
        #[serde(default)]
        recreate_threshold: usize,
    },
}

impl GuardVerdict {
    /// Why the run is held, naming what exceeded its threshold; empty for
    /// `Proceed`.
    pub fn reason(&self) -> String {
        let GuardVerdict::Hold {
            would_remove,
            managed,
            threshold,
            would_recreate,
            recreate_threshold,
        } = *self
        else {
            return String::new();
        };
        let mut reasons = Vec::new();
        if would_remove > threshold {
            reasons.push(format!(
                "would remove {would_remove} of {managed} managed users (threshold {threshold})"
            ));
        }
        if would_recreate > recreate_threshold {
            reasons.push(format!(
                "would re-create {would_recreate} of {managed} managed users that vanished from \
                 Tyk (threshold {recreate_threshold}; check that the bridge points at the right \
                 Dashboard and organisation)"
            ));
        }
        reasons.join("; ")
    }
}

/// Judges a plan against the guard; `managed` is the number of Tyk users we
/// manage before the plan.
pub fn guard(plan: &Plan, managed: usize, config: GuardConfig) -> GuardVerdict {
    let GuardCounts {
        removals,
        recreations,
    } = counts(plan);
    let threshold = config.threshold(managed);
    let recreate_threshold = config.recreate_threshold(managed);
    if removals > threshold || recreations > recreate_threshold {
        GuardVerdict::Hold {
            would_remove: removals,
            managed,
            threshold,
            would_recreate: recreations,
            recreate_threshold,
        }
    } else {
        GuardVerdict::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::step::{DeprovisionReason, GroupRef, Profile};

    fn forget(email: &str) -> PlanStep {
        PlanStep::ForgetUser {
            org_id: "o".into(),
            email: email.into(),
            user_id: format!("id-{email}"),
        }
    }

    fn create(email: &str) -> PlanStep {
        PlanStep::CreateUser {
            org_id: "o".into(),
            email: email.into(),
            profile: Profile {
                first_name: "F".into(),
                last_name: "L".into(),
            },
            group: GroupRef::Id("g".into()),
            permissions: Default::default(),
            rule: None,
        }
    }

    fn deactivate(email: &str) -> PlanStep {
        PlanStep::Deactivate {
            org_id: "o".into(),
            email: email.into(),
            user_id: format!("id-{email}"),
            reason: DeprovisionReason::NotDesired,
        }
    }

    fn plan(steps: Vec<PlanStep>) -> Plan {
        Plan {
            steps,
            skipped: vec![],
        }
    }

    const CONFIG: GuardConfig = GuardConfig {
        min_count: 2,
        max_percent: 10,
        recreate_max_percent: 50,
    };

    #[test]
    fn forgotten_and_created_again_is_a_recreation_not_a_removal() {
        let steps = vec![
            forget("a"),
            create("a"),
            forget("b"),
            deactivate("c"),
            create("d"),
            forget("e"),
            create("e"),
            deactivate("e"),
        ];
        assert_eq!(
            counts(&plan(steps)),
            // b forgotten for good, c deactivated, e re-created but deactivated.
            GuardCounts {
                removals: 3,
                recreations: 1
            }
        );
    }

    #[test]
    fn each_count_has_its_own_threshold_and_reason() {
        let recreate = |n: usize| {
            (0..n)
                .flat_map(|i| [forget(&format!("p{i}")), create(&format!("p{i}"))])
                .collect::<Vec<_>>()
        };
        // 100 managed: removals may be 10, re-creations 50.
        assert_eq!(
            guard(&plan(recreate(50)), 100, CONFIG),
            GuardVerdict::Proceed
        );
        let held = guard(&plan(recreate(51)), 100, CONFIG);
        assert_eq!(
            held,
            GuardVerdict::Hold {
                would_remove: 0,
                managed: 100,
                threshold: 10,
                would_recreate: 51,
                recreate_threshold: 50,
            }
        );
        assert!(
            held.reason().contains("would re-create 51 of 100"),
            "{}",
            held.reason()
        );
        assert!(!held.reason().contains("remove"), "{}", held.reason());
        let removals: Vec<_> = (0..11).map(|i| deactivate(&format!("p{i}"))).collect();
        let held = guard(&plan(removals), 100, CONFIG);
        assert!(
            held.reason().starts_with("would remove 11 of 100"),
            "{}",
            held.reason()
        );
        assert!(!held.reason().contains("re-create"), "{}", held.reason());
        assert_eq!(GuardVerdict::Proceed.reason(), "");
    }

    #[test]
    fn thresholds_are_the_larger_of_count_and_percent() {
        assert_eq!(CONFIG.recreate_threshold(0), 2);
        assert_eq!(CONFIG.recreate_threshold(3), 2);
        assert_eq!(CONFIG.recreate_threshold(307), 154);
        assert_eq!(CONFIG.threshold(307), 31);
    }
}
