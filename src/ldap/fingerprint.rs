//! Fingerprints of what the poller writes (see
//! [`crate::store::ldap_fingerprints`]): a user's written fields, a group's
//! direct member set. SHA-256, unambiguously framed, cut to 64 bits; stable
//! across processes and versions (stored values are compared with fresh
//! ones). Changing what goes in is harmless: a mismatch only costs one full
//! comparison of the user or group.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::translate::DirectoryUser;
use crate::domain::MemberKind;

/// Bump to invalidate every stored fingerprint when the framing changes.
const USER_FORMAT: u8 = 1;
const MEMBERS_FORMAT: u8 = 1;

/// Hash of every field of `user` the poller stores.
pub fn user_fingerprint(user: &DirectoryUser) -> i64 {
    let mut h = Sha256::new();
    h.update([USER_FORMAT]);
    field(&mut h, Some(&user.dn));
    field(&mut h, Some(&user.stable_id));
    field(&mut h, Some(&user.login));
    field(&mut h, user.email.as_deref());
    // Only when there is one, so fingerprints stored before the field
    // existed stay valid for everyone with a usable (or no) address.
    if let Some(problem) = user.email_problem {
        field(&mut h, Some(problem.as_str()));
    }
    field(&mut h, user.given_name.as_deref());
    field(&mut h, user.family_name.as_deref());
    field(&mut h, user.display_name.as_deref());
    h.update([u8::from(user.active)]);
    finish(h)
}

/// Hash of a direct member set, given in ascending member id order (as a
/// `BTreeMap` iterates).
pub fn members_fingerprint<'a>(
    members: impl IntoIterator<Item = (&'a Uuid, &'a MemberKind)>,
) -> i64 {
    let mut h = Sha256::new();
    h.update([MEMBERS_FORMAT]);
    for (id, kind) in members {
        h.update(id.as_bytes());
        h.update([match kind {
            MemberKind::User => b'u',
            MemberKind::Group => b'g',
        }]);
    }
    finish(h)
}

fn field(h: &mut Sha256, value: Option<&str>) {
    match value {
        None => h.update([0]),
        Some(v) => {
            h.update([1]);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
    }
}

fn finish(h: Sha256) -> i64 {
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> DirectoryUser {
        DirectoryUser {
            dn: "uid=a,dc=x".into(),
            stable_id: "id-a".into(),
            login: "a".into(),
            email: Some("a@x.org".into()),
            email_problem: None,
            given_name: Some("A".into()),
            family_name: None,
            display_name: Some("A".into()),
            active: true,
        }
    }

    #[test]
    fn every_written_user_field_changes_the_fingerprint() {
        let base = user_fingerprint(&user());
        assert_eq!(base, user_fingerprint(&user()), "deterministic");
        let changes: [fn(&mut DirectoryUser); 10] = [
            |u| u.email_problem = Some(crate::domain::EmailProblem::Syntax),
            |u| u.dn = "uid=b,dc=x".into(),
            |u| u.stable_id = "id-b".into(),
            |u| u.login = "b".into(),
            |u| u.email = None,
            |u| u.given_name = Some("B".into()),
            |u| u.family_name = Some(String::new()),
            |u| u.display_name = None,
            |u| u.active = false,
            // Framing: moving text between neighbouring fields is a change.
            |u| {
                u.given_name = Some("AA".into());
                u.display_name = Some(String::new());
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut u = user();
            change(&mut u);
            assert_ne!(user_fingerprint(&u), base, "change {i}");
        }
    }

    #[test]
    fn member_sets_differ_by_member_and_kind() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let set = |v: &[(Uuid, MemberKind)]| members_fingerprint(v.iter().map(|(i, k)| (i, k)));
        let base = set(&[(a, MemberKind::User), (b, MemberKind::User)]);
        assert_eq!(base, set(&[(a, MemberKind::User), (b, MemberKind::User)]));
        assert_ne!(base, set(&[(a, MemberKind::User)]));
        assert_ne!(base, set(&[(a, MemberKind::User), (b, MemberKind::Group)]));
        assert_ne!(set(&[]), set(&[(a, MemberKind::User)]));
    }
}
