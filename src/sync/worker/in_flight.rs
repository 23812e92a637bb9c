//! The people the event runs in flight have in hand.
//!
//! Two event runs may overlap: the next one claims and plans while the one
//! before it applies, so the limiter never idles between batches (a run's
//! claim, desired state, ownership and reads take ~110 ms against a
//! 100,000-person store, a fifth of a 200-person batch's requests at
//! 400/s). They never share a person: a run registers the people its
//! events can affect before it lets the next run claim, and a claim made
//! beside a run in flight takes only events naming other people (see
//! `sync_outbox::claim_beside`); a group or mapping event, whose people are
//! found only after its claim, waits until no run is in flight.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::types::ActualScope;

#[derive(Default)]
pub(crate) struct InFlight {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Runs in flight.
    runs: usize,
    /// Runs in flight planning everyone.
    everyone: usize,
    /// Lower-cased e-mail → how many runs in flight have the person.
    people: HashMap<String, usize>,
    /// Most runs in flight at once, and registrations of a person some
    /// run already had (tests).
    #[cfg(test)]
    peak: (usize, usize),
}

/// What a claim may take, given the runs in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beside {
    /// No run is in flight: any event.
    Nothing,
    /// Runs are in flight with some people: only events naming others.
    People,
    /// A run in flight plans everyone: nothing.
    Everyone,
}

/// A run's people, held until the run ends (or is dropped: a run
/// abandoned on a lost lead frees them too).
pub(crate) struct InHand<'a> {
    registry: &'a InFlight,
    people: Option<BTreeSet<String>>,
}

impl InFlight {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn beside(&self) -> Beside {
        let held = self.held();
        if held.everyone > 0 {
            Beside::Everyone
        } else if held.runs > 0 {
            Beside::People
        } else {
            Beside::Nothing
        }
    }

    /// Whether a run in flight has this person (a lower-cased e-mail).
    pub(crate) fn holds(&self, email: &str) -> bool {
        self.held().people.contains_key(email)
    }

    /// Whether any run is in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.held().runs == 0
    }

    /// Most runs in flight at once, and how many times a run registered
    /// a person another run in flight had.
    #[cfg(test)]
    pub(crate) fn peak(&self) -> (usize, usize) {
        self.held().peak
    }

    /// Holds the people of `scope` until the returned value is dropped.
    pub(crate) fn register(&self, scope: &ActualScope) -> InHand<'_> {
        let mut held = self.held();
        held.runs += 1;
        #[cfg(test)]
        {
            let shared = match scope {
                ActualScope::Everyone => 0,
                ActualScope::People(people) => people
                    .iter()
                    .filter(|p| held.people.contains_key(*p))
                    .count(),
            };
            held.peak = (held.peak.0.max(held.runs), held.peak.1 + shared);
        }
        let people = match scope {
            ActualScope::Everyone => {
                held.everyone += 1;
                None
            }
            ActualScope::People(people) => {
                for email in people {
                    *held.people.entry(email.clone()).or_default() += 1;
                }
                Some(people.clone())
            }
        };
        InHand {
            registry: self,
            people,
        }
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        let mut held = self.registry.held();
        held.runs = held.runs.saturating_sub(1);
        match &self.people {
            None => held.everyone = held.everyone.saturating_sub(1),
            Some(people) => {
                for email in people {
                    if let Some(count) = held.people.get_mut(email) {
                        *count -= 1;
                        if *count == 0 {
                            held.people.remove(email);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(emails: &[&str]) -> ActualScope {
        ActualScope::People(emails.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn people_are_held_while_any_run_holding_them_is_in_flight() {
        let registry = InFlight::default();
        assert_eq!(registry.beside(), Beside::Nothing);
        let first = registry.register(&people(&["a@x.io", "b@x.io"]));
        let second = registry.register(&people(&["b@x.io"]));
        assert_eq!(registry.beside(), Beside::People);
        assert!(registry.holds("a@x.io") && registry.holds("b@x.io"));
        assert!(!registry.holds("c@x.io"));
        drop(first);
        assert!(!registry.holds("a@x.io"));
        assert!(registry.holds("b@x.io"), "the second run still has b");
        assert!(!registry.is_empty());
        drop(second);
        assert!(registry.is_empty());
        assert_eq!(registry.beside(), Beside::Nothing);
        assert!(!registry.holds("b@x.io"));
    }

    #[test]
    fn a_run_planning_everyone_blocks_every_claim_until_it_ends() {
        let registry = InFlight::default();
        let some = registry.register(&people(&["a@x.io"]));
        let everyone = registry.register(&ActualScope::Everyone);
        assert_eq!(registry.beside(), Beside::Everyone);
        drop(some);
        assert_eq!(registry.beside(), Beside::Everyone);
        drop(everyone);
        assert_eq!(registry.beside(), Beside::Nothing);
    }
}
