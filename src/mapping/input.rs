//! Loads the pure resolution input from the store: every identity of every
//! source with all its groups, nested groups expanded (a member of group B,
//! where B is a member of group A, is in A too). Membership cycles are
//! tolerated: each group is visited once. A person's groups are always of
//! the person's own source (issue #16).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::AnyConnection;
use uuid::Uuid;

use super::matcher::GroupRef;
use super::resolve::PersonIdentity;
use crate::domain::{GroupMember, IdentityGroup, SourceName};
use crate::store::StoreError;
use crate::store::identities;

/// Every identity of every source, with expanded groups.
pub async fn load_people(conn: &mut AnyConnection) -> Result<Vec<PersonIdentity>, StoreError> {
    let users = identities::list_all_users(&mut *conn).await?;
    let groups = identities::list_all_groups(&mut *conn).await?;
    let sources: BTreeSet<SourceName> = users
        .iter()
        .map(|u| u.source.clone())
        .chain(groups.iter().map(|g| g.source.clone()))
        .collect();
    let mut parents: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for source in &sources {
        for (group, GroupMember { id, .. }) in
            identities::list_memberships(&mut *conn, source).await?
        {
            parents.entry(id).or_default().push(group);
        }
    }
    let by_id: BTreeMap<Uuid, &IdentityGroup> = groups.iter().map(|g| (g.id, g)).collect();
    Ok(users
        .iter()
        .map(|user| PersonIdentity {
            source: user.source.clone(),
            user_name: user.user_name.clone(),
            email: user.email.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            display_name: user.display_name.clone(),
            active: user.active,
            // Only the user's own source's groups: the store keeps
            // memberships within a source and reads them so; this holds
            // even if a membership row somehow crossed sources.
            groups: ancestors(user.id, &parents)
                .into_iter()
                .filter_map(|id| by_id.get(&id))
                .filter(|group| group.source == user.source)
                .map(|group| GroupRef {
                    source: group.source.clone(),
                    display_name: group.display_name.clone(),
                    external_id: group.external_id.clone(),
                })
                .collect(),
        })
        .collect())
}

/// Every group `member` is in, directly or through nested groups.
fn ancestors(member: Uuid, parents: &HashMap<Uuid, Vec<Uuid>>) -> BTreeSet<Uuid> {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<Uuid> = parents.get(&member).cloned().unwrap_or_default();
    while let Some(group) = queue.pop() {
        if seen.insert(group) {
            queue.extend(parents.get(&group).into_iter().flatten().copied());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_groups_expand_and_cycles_end() {
        let [user, a, b, c] = [
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        ];
        // user ∈ a, a ∈ b, b ∈ c, c ∈ a (cycle)
        let parents = HashMap::from([(user, vec![a]), (a, vec![b]), (b, vec![c]), (c, vec![a])]);
        assert_eq!(ancestors(user, &parents), BTreeSet::from([a, b, c]));
        assert!(ancestors(Uuid::new_v4(), &parents).is_empty());
    }
}
