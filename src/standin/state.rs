//! The stand-in's data: organisations, users and user groups, with the
//! Dashboard's rules (24-hex ids, lower-cased emails unique per org, one
//! `group_id` per user). Pure data operations; HTTP lives in the handlers.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::ids::IdGen;
use crate::tyk::{Organisation, Permissions, User, UserGroup, ZERO_TIME};

/// An error answer: status and the exact documented `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Everything the stand-in knows. Maps are keyed by id, and ids sort by
/// creation time, so iteration order is creation order.
#[derive(Debug, Default)]
pub struct Directory {
    pub(crate) ids: IdGen,
    pub(crate) orgs: BTreeMap<String, Organisation>,
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) groups: BTreeMap<String, UserGroup>,
    /// Lower-cased e-mails whose user creations and updates are answered
    /// 400 `User object validation failed.`: stands, in tests, for any
    /// data the real Dashboard's validation refuses.
    pub refused_emails: std::collections::BTreeSet<String>,
    /// Dashboard API key → user id, so that authenticating a request does
    /// not scan every user (at 100,000 users that scan, made under the
    /// directory's lock for every request, was what the benchmark measured).
    /// Users change through many paths (`user_mut`, key resets, removal),
    /// so an entry is only a hint: it is checked against the user and the
    /// index is rebuilt when it is missing or stale.
    key_index: std::collections::HashMap<String, String>,
    /// (org id, lower-cased e-mail) → the ids of users holding it, so that
    /// a create or update does not scan every user for the e-mail. Kept by
    /// `insert_user`, `apply_user` and `remove_user`; rebuilt after
    /// `user_mut` (a hand change may touch anything).
    email_index: std::collections::HashMap<(String, String), std::collections::BTreeSet<String>>,
    email_index_stale: bool,
}

/// Fields a create or update may set; `None` = not sent.
#[derive(Debug, Default)]
pub struct UserFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_address: Option<String>,
    pub active: Option<bool>,
    pub group_id: Option<String>,
    pub user_permissions: Option<Permissions>,
    pub password_max_days: Option<i64>,
}

impl UserFields {
    /// Reads the known fields of a JSON object; wrong types are `Err`.
    pub(crate) fn from_json(body: &Map<String, Value>) -> Result<Self, ()> {
        let string = |k: &str| match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(()),
        };
        let active = match body.get("active") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(()),
        };
        let user_permissions = match body.get("user_permissions") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(serde_json::from_value(v.clone()).map_err(|_| ())?),
            Some(_) => return Err(()),
        };
        Ok(Self {
            first_name: string("first_name")?,
            last_name: string("last_name")?,
            email_address: string("email_address")?.map(|e| e.to_lowercase()),
            active,
            group_id: string("group_id")?,
            user_permissions,
            password_max_days: body.get("password_max_days").and_then(Value::as_i64),
        })
    }
}

impl Directory {
    pub fn now() -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    pub fn create_org(&mut self, owner_name: &str, extra: Map<String, Value>) -> Organisation {
        let id = self.ids.next();
        let mut org = Organisation {
            id: id.clone(),
            owner_name: owner_name.to_string(),
            owner_slug: slug(owner_name),
            extra: org_defaults(),
        };
        org.extra.extend(extra);
        if let Some(Value::String(s)) = org.extra.remove("owner_slug") {
            org.owner_slug = s;
        }
        self.orgs.insert(id, org.clone());
        org
    }

    /// True when `email` (lower-cased) is used by another user of `org_id`.
    pub fn email_taken(&mut self, org_id: &str, email: &str, except: Option<&str>) -> bool {
        if self.email_index_stale {
            self.email_index.clear();
            for u in self.users.values() {
                self.email_index
                    .entry((u.org_id.clone(), u.email_address.clone()))
                    .or_default()
                    .insert(u.id.clone());
            }
            self.email_index_stale = false;
        }
        self.email_index
            .get(&(org_id.to_string(), email.to_string()))
            .is_some_and(|ids| ids.iter().any(|id| Some(id.as_str()) != except))
    }

    fn index_email(&mut self, org_id: String, email: String, id: String) {
        self.email_index
            .entry((org_id, email))
            .or_default()
            .insert(id);
    }

    fn unindex_email(&mut self, org_id: &str, email: &str, id: &str) {
        let key = (org_id.to_string(), email.to_string());
        if let Some(ids) = self.email_index.get_mut(&key) {
            ids.remove(id);
            if ids.is_empty() {
                self.email_index.remove(&key);
            }
        }
    }

    /// Removes a user (`DELETE /api/users/{id}`).
    pub fn remove_user(&mut self, id: &str) -> Option<User> {
        let user = self.users.remove(id)?;
        self.unindex_email(&user.org_id, &user.email_address, &user.id);
        Some(user)
    }

    pub fn group_exists(&self, org_id: &str, group_id: &str) -> bool {
        group_id.is_empty()
            || self
                .groups
                .get(group_id)
                .is_some_and(|g| g.org_id == org_id)
    }

    /// Creates a user; the caller has checked required fields and email.
    pub fn insert_user(&mut self, org_id: &str, fields: UserFields) -> User {
        let id = self.ids.next();
        let now = Self::now();
        let mut extra = Map::new();
        extra.insert("access_key".into(), json!(self.ids.access_key()));
        extra.insert("api_model".into(), json!({}));
        extra.insert(
            "password_max_days".into(),
            json!(fields.password_max_days.unwrap_or(0)),
        );
        extra.insert("password_updated".into(), json!(ZERO_TIME));
        extra.insert("last_login_date".into(), json!(ZERO_TIME));
        extra.insert("created_at".into(), json!(now));
        let user = User {
            id: id.clone(),
            org_id: org_id.to_string(),
            first_name: fields.first_name.unwrap_or_default(),
            last_name: fields.last_name.unwrap_or_default(),
            email_address: fields.email_address.unwrap_or_default(),
            active: fields.active.unwrap_or(false),
            group_id: fields.group_id.unwrap_or_default(),
            user_permissions: fields.user_permissions.unwrap_or_default(),
            extra,
        };
        self.index_email(user.org_id.clone(), user.email_address.clone(), id.clone());
        self.users.insert(id, user.clone());
        user
    }

    /// Applies the sent fields to a user; absent fields stay as they were.
    pub fn apply_user(&mut self, id: &str, fields: UserFields) -> Option<User> {
        if let Some(email) = &fields.email_address {
            let (org, old) = self
                .users
                .get(id)
                .map(|u| (u.org_id.clone(), u.email_address.clone()))?;
            self.unindex_email(&org, &old, id);
            self.index_email(org, email.clone(), id.to_string());
        }
        let user = self.users.get_mut(id)?;
        if let Some(v) = fields.first_name {
            user.first_name = v;
        }
        if let Some(v) = fields.last_name {
            user.last_name = v;
        }
        if let Some(v) = fields.email_address {
            user.email_address = v;
        }
        if let Some(v) = fields.active {
            user.active = v;
        }
        if let Some(v) = fields.group_id {
            user.group_id = v;
        }
        if let Some(v) = fields.user_permissions {
            user.user_permissions = v;
        }
        if let Some(v) = fields.password_max_days {
            user.extra.insert("password_max_days".into(), json!(v));
        }
        Some(user.clone())
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    /// Creates a group straight in the data (seeding); returns it.
    pub fn insert_group(
        &mut self,
        org_id: &str,
        name: &str,
        permissions: Permissions,
    ) -> UserGroup {
        let group = UserGroup {
            id: self.ids.next(),
            org_id: org_id.to_string(),
            name: name.to_string(),
            active: true,
            user_permissions: permissions,
            ..UserGroup::default()
        };
        self.groups.insert(group.id.clone(), group.clone());
        group
    }

    /// A user to change by hand (tests: a change made in the Dashboard UI).
    pub fn user_mut(&mut self, id: &str) -> Option<&mut User> {
        self.email_index_stale = true;
        self.users.get_mut(id)
    }

    /// Removes a group by hand, leaving its members' `group_id` dangling
    /// (as the stand-in's `DELETE /api/usergroups/{id}` does).
    pub fn remove_group(&mut self, id: &str) -> Option<UserGroup> {
        self.groups.remove(id)
    }

    /// The active user owning this Dashboard API key.
    pub fn user_by_key(&mut self, key: &str) -> Option<&User> {
        if !self.key_hint_holds(key) {
            self.key_index = self
                .users
                .values()
                .filter_map(|u| Some((u.access_key()?.to_string(), u.id.clone())))
                .filter(|(k, _)| !k.is_empty())
                .collect();
        }
        let id = self.key_index.get(key)?;
        self.users.get(id).filter(|u| u.active && owns_key(u, key))
    }

    fn key_hint_holds(&self, key: &str) -> bool {
        self.key_index
            .get(key)
            .and_then(|id| self.users.get(id))
            .is_some_and(|u| owns_key(u, key))
    }
}

/// True when `user`'s Dashboard API key is `key` (compared in constant time).
fn owns_key(user: &User, key: &str) -> bool {
    use subtle::ConstantTimeEq;
    user.access_key()
        .is_some_and(|k| !k.is_empty() && bool::from(k.as_bytes().ct_eq(key.as_bytes())))
}

/// Splits `items` into pages of `size`: `p` < 0 is everything, `p` 0 is
/// page 1. Returns `null` (None) for an empty page and the total page count.
pub fn paginate<T: Clone>(items: &[T], p: i64, size: usize) -> (Option<Vec<T>>, i64) {
    page_of(|| items.iter(), p, size)
}

/// [`paginate`] over an iterator made twice (once counted, once paged), so
/// that a page of a large listing clones only that page and collects
/// nothing else.
pub fn page_of<'a, T, I>(items: impl Fn() -> I, p: i64, size: usize) -> (Option<Vec<T>>, i64)
where
    T: Clone + 'a,
    I: Iterator<Item = &'a T>,
{
    let size = size.max(1);
    let pages = i64::try_from(items().count().div_ceil(size)).unwrap_or(i64::MAX);
    let slice: Vec<T> = if p < 0 {
        items().cloned().collect()
    } else {
        let page = usize::try_from(p.max(1) - 1).unwrap_or(usize::MAX);
        items()
            .skip(page.saturating_mul(size))
            .take(size)
            .cloned()
            .collect()
    };
    ((!slice.is_empty()).then_some(slice), pages)
}

fn slug(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn org_defaults() -> Map<String, Value> {
    let v = json!({
        "cname": "", "cname_enabled": false, "apis": [], "developer_quota": 0,
        "developer_count": 0, "event_options": {}, "hybrid_enabled": false,
        "org_options_meta": {}, "sso_enabled": false
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_rules() {
        let items: Vec<u32> = (1..=25).collect();
        let cases: &[(i64, Option<Vec<u32>>, i64)] = &[
            (1, Some((1..=10).collect()), 3),
            (0, Some((1..=10).collect()), 3),
            (3, Some((21..=25).collect()), 3),
            (4, None, 3),
            (-1, Some(items.clone()), 3),
        ];
        for (p, want, pages) in cases {
            assert_eq!(paginate(&items, *p, 10), (want.clone(), *pages), "p={p}");
        }
        assert_eq!(paginate::<u32>(&[], 1, 10), (None, 0));
        assert_eq!(paginate::<u32>(&[], -1, 10), (None, 0));
    }

    #[test]
    fn emails_are_unique_per_org_only() {
        let mut dir = Directory::default();
        let fields = |e: &str| UserFields {
            email_address: Some(e.into()),
            ..UserFields::default()
        };
        let user = dir.insert_user("org-a", fields("a@x.io"));
        assert!(dir.email_taken("org-a", "a@x.io", None));
        assert!(!dir.email_taken("org-a", "a@x.io", Some(&user.id)));
        assert!(!dir.email_taken("org-b", "a@x.io", None));
        // The index follows updates, hand changes and removals.
        dir.apply_user(&user.id, fields("b@x.io"));
        assert!(!dir.email_taken("org-a", "a@x.io", None));
        assert!(dir.email_taken("org-a", "b@x.io", None));
        if let Some(u) = dir.user_mut(&user.id) {
            u.email_address = "c@x.io".into();
        }
        assert!(!dir.email_taken("org-a", "b@x.io", None));
        assert!(dir.email_taken("org-a", "c@x.io", None));
        dir.remove_user(&user.id);
        assert!(!dir.email_taken("org-a", "c@x.io", None));
        assert_eq!(user.extra.get("last_login_date"), Some(&json!(ZERO_TIME)));
    }

    #[test]
    fn key_lookup_follows_every_change_to_keys_and_users() {
        let mut dir = Directory::default();
        let active = |e: &str| UserFields {
            email_address: Some(e.into()),
            active: Some(true),
            ..UserFields::default()
        };
        let a = dir.insert_user("org", active("a@x.io"));
        let b = dir.insert_user("org", active("b@x.io"));
        let key_a = a.access_key().unwrap_or_default().to_string();
        let key_b = b.access_key().unwrap_or_default().to_string();
        assert_eq!(
            dir.user_by_key(&key_a).map(|u| u.id.clone()),
            Some(a.id.clone())
        );
        assert_eq!(
            dir.user_by_key(&key_b).map(|u| u.id.clone()),
            Some(b.id.clone())
        );
        assert!(dir.user_by_key("not-a-key").is_none());
        assert!(dir.user_by_key("").is_none());

        // A key changed by hand: the old one stops working, the new one works.
        if let Some(u) = dir.user_mut(&a.id) {
            u.extra.insert("access_key".into(), json!("fresh-key"));
        }
        assert!(dir.user_by_key(&key_a).is_none());
        assert_eq!(
            dir.user_by_key("fresh-key").map(|u| u.id.clone()),
            Some(a.id.clone())
        );

        // Deactivated and removed users do not authenticate.
        dir.apply_user(
            &a.id,
            UserFields {
                active: Some(false),
                ..UserFields::default()
            },
        );
        assert!(dir.user_by_key("fresh-key").is_none());
        dir.users.remove(&b.id);
        assert!(dir.user_by_key(&key_b).is_none());
    }
}
