//! Nested-group expansion: which users belong to a group directly or through
//! groups inside it. Pure; cycles (A ∋ B ∋ A) are tolerated and reported.

use std::collections::{BTreeMap, BTreeSet};

/// Direct membership of every group: group key → (user keys, group keys).
#[derive(Debug, Default, Clone)]
pub struct DirectMembers {
    pub users: BTreeMap<String, BTreeSet<String>>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

/// The result of expanding every group.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expanded {
    /// Group key → all users reachable through it.
    pub users: BTreeMap<String, BTreeSet<String>>,
    /// Groups found on a cycle (each reported once), for a warning.
    pub cycles: BTreeSet<String>,
}

/// Expands every group of `direct` into the users it reaches transitively.
pub fn expand(direct: &DirectMembers) -> Expanded {
    let mut all: BTreeSet<&String> = direct.users.keys().collect();
    all.extend(direct.groups.keys());
    let mut out = Expanded::default();
    for group in all {
        let users = reach(direct, group, &mut out.cycles);
        out.users.insert(group.clone(), users);
    }
    out
}

/// The groups on a membership cycle, as [`expand`] reports them, from the
/// group→group edges alone (users play no part in a cycle): what a poll
/// needs, without building every group's user set.
pub fn cycles(groups: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for start in groups.keys() {
        let mut visited: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> = vec![start];
        while let Some(group) = stack.pop() {
            if !visited.insert(group) {
                continue;
            }
            for child in groups.get(group).into_iter().flatten() {
                if child == start {
                    out.insert(start.clone());
                }
                if !visited.contains(child.as_str()) {
                    stack.push(child);
                }
            }
        }
    }
    out
}

/// Depth-first walk with an explicit stack and a visited set, so a cycle
/// ends the walk instead of looping, and deep nesting cannot overflow.
fn reach(direct: &DirectMembers, start: &str, cycles: &mut BTreeSet<String>) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    let mut visited: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = vec![start];
    while let Some(group) = stack.pop() {
        if !visited.insert(group) {
            continue;
        }
        if let Some(direct_users) = direct.users.get(group) {
            users.extend(direct_users.iter().cloned());
        }
        for child in direct.groups.get(group).into_iter().flatten() {
            if child == start {
                cycles.insert(start.to_string());
            }
            if !visited.contains(child.as_str()) {
                stack.push(child);
            }
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn direct(users: &[(&str, &[&str])], groups: &[(&str, &[&str])]) -> DirectMembers {
        DirectMembers {
            users: users.iter().map(|(g, m)| (g.to_string(), set(m))).collect(),
            groups: groups
                .iter()
                .map(|(g, m)| (g.to_string(), set(m)))
                .collect(),
        }
    }

    #[test]
    fn nested_groups_inherit_their_childrens_users() {
        let d = direct(
            &[
                ("eng", &["alice"]),
                ("backend", &["bob"]),
                ("db", &["carol"]),
            ],
            &[("eng", &["backend"]), ("backend", &["db"])],
        );
        let e = expand(&d);
        assert_eq!(e.users["eng"], set(&["alice", "bob", "carol"]));
        assert_eq!(e.users["backend"], set(&["bob", "carol"]));
        assert_eq!(e.users["db"], set(&["carol"]));
        assert!(e.cycles.is_empty());
        assert!(cycles(&d.groups).is_empty());
    }

    #[test]
    fn a_cycle_terminates_and_is_reported() {
        let d = direct(
            &[("a", &["alice"]), ("b", &["bob"])],
            &[("a", &["b"]), ("b", &["a"])],
        );
        let e = expand(&d);
        assert_eq!(e.users["a"], set(&["alice", "bob"]));
        assert_eq!(e.users["b"], set(&["alice", "bob"]));
        assert_eq!(e.cycles, set(&["a", "b"]));
        assert_eq!(cycles(&d.groups), e.cycles);
    }

    #[test]
    fn a_group_containing_itself_is_a_cycle() {
        let d = direct(&[("a", &["x"])], &[("a", &["a"])]);
        let e = expand(&d);
        assert_eq!(e.users["a"], set(&["x"]));
        assert_eq!(e.cycles, set(&["a"]));
        assert_eq!(cycles(&d.groups), e.cycles);
    }

    #[test]
    fn cycles_match_the_full_expansion() {
        // a → b → c → b: b and c are on the cycle, a only leads into it.
        let d = direct(
            &[("a", &["x"]), ("d", &["y"])],
            &[("a", &["b"]), ("b", &["c"]), ("c", &["b", "d"])],
        );
        assert_eq!(expand(&d).cycles, set(&["b", "c"]));
        assert_eq!(cycles(&d.groups), expand(&d).cycles);
    }

    #[test]
    fn deep_chains_do_not_overflow() {
        let names: Vec<String> = (0..10_000).map(|i| format!("g{i}")).collect();
        let mut d = DirectMembers::default();
        for pair in names.windows(2) {
            d.groups.insert(pair[0].clone(), set(&[pair[1].as_str()]));
        }
        d.users.insert("g9999".into(), set(&["deep"]));
        let e = reach(&d, "g0", &mut BTreeSet::new());
        assert_eq!(e, set(&["deep"]));
    }
}
