//! What a mapping change would do to people, before it is saved: the
//! desired state under the current rules against the desired state under
//! the proposed ones (pure; no Tyk call, nothing written).

use std::collections::BTreeMap;

use crate::domain::{DesiredState, DesiredUser};

/// One person's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonChange {
    /// Gains access (new user, or reactivated).
    Created { group: Option<String> },
    Moved {
        from: Option<String>,
        to: Option<String>,
    },
    /// Loses access (deactivated or left to the unmapped policy).
    Deprovisioned { group: Option<String> },
}

/// Per (organisation, e-mail), what changes; people who keep their group
/// and access are left out.
pub fn diff(
    before: &DesiredState,
    after: &DesiredState,
) -> BTreeMap<(String, String), PersonChange> {
    let key = |u: &DesiredUser| (u.org_id.clone(), u.email.clone());
    let old: BTreeMap<_, _> = before.users.iter().map(|u| (key(u), u)).collect();
    let new: BTreeMap<_, _> = after.users.iter().map(|u| (key(u), u)).collect();
    let mut out = BTreeMap::new();
    for (k, n) in &new {
        let change = match old.get(k) {
            Some(o) if o.active && n.active && o.group != n.group => Some(PersonChange::Moved {
                from: o.group.clone(),
                to: n.group.clone(),
            }),
            Some(o) if o.active && !n.active => Some(PersonChange::Deprovisioned {
                group: o.group.clone(),
            }),
            Some(o) if !o.active && n.active => Some(PersonChange::Created {
                group: n.group.clone(),
            }),
            Some(_) => None,
            None if n.active => Some(PersonChange::Created {
                group: n.group.clone(),
            }),
            None => None,
        };
        if let Some(change) = change {
            out.insert(k.clone(), change);
        }
    }
    for (k, o) in &old {
        if o.active && !new.contains_key(k) {
            out.insert(
                k.clone(),
                PersonChange::Deprovisioned {
                    group: o.group.clone(),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str, group: Option<&str>, active: bool) -> DesiredUser {
        DesiredUser {
            org_id: "org".into(),
            email: email.into(),
            first_name: "A".into(),
            last_name: "B".into(),
            active,
            group: group.map(str::to_string),
            rule: None,
            sources: vec![],
        }
    }

    fn state(users: Vec<DesiredUser>) -> DesiredState {
        DesiredState {
            groups: vec![],
            users,
        }
    }

    #[test]
    fn created_moved_and_deprovisioned_are_told_apart() {
        let before = state(vec![
            user("same@x", Some("Dev"), true),
            user("moves@x", Some("Dev"), true),
            user("leaves@x", Some("Dev"), true),
            user("gone@x", Some("Dev"), true),
            user("back@x", None, false),
        ]);
        let after = state(vec![
            user("same@x", Some("Dev"), true),
            user("moves@x", Some("Ops"), true),
            user("leaves@x", None, false),
            user("back@x", Some("Ops"), true),
            user("new@x", Some("Ops"), true),
        ]);
        let changes = diff(&before, &after);
        let get = |e: &str| changes.get(&("org".to_string(), e.to_string())).cloned();
        assert_eq!(get("same@x"), None);
        assert_eq!(
            get("moves@x"),
            Some(PersonChange::Moved {
                from: Some("Dev".into()),
                to: Some("Ops".into())
            })
        );
        for e in ["leaves@x", "gone@x"] {
            assert_eq!(
                get(e),
                Some(PersonChange::Deprovisioned {
                    group: Some("Dev".into())
                }),
                "{e}"
            );
        }
        for e in ["back@x", "new@x"] {
            assert_eq!(
                get(e),
                Some(PersonChange::Created {
                    group: Some("Ops".into())
                }),
                "{e}"
            );
        }
        assert_eq!(changes.len(), 5);
    }
}
