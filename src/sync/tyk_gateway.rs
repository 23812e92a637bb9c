//! The sync worker's two views of Tyk — [`TykWriter`] (writes) and the
//! actual-state listing — over the Dashboard client.
//!
//! Writes send whole objects built from the planner's records (the planner
//! already merged the listed user with the desired changes), so each changed
//! user costs exactly one request and no read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::Future;

use super::actual::{ActualGroup, ActualState, ActualUser};
use super::retry::RetryPolicy;
use super::writer::{GroupRecord, TykWriter, UserRecord, WriteError};
use crate::tyk::{
    NewUser, NewUserGroup, Page, PermissionLevel, Permissions, TykClient, TykError, User, UserGroup,
};

/// Users this gateway wrote, with what it wrote and when: an event run
/// trusts them for a short while instead of reading them back.
type OwnWrites = Arc<Mutex<HashMap<String, (ActualUser, Instant)>>>;

/// Tyk, as the sync worker sees it.
#[derive(Debug, Clone)]
pub struct TykGateway {
    client: TykClient,
    own_writes: OwnWrites,
    /// How long a write is trusted (`sync.trust_own_writes`).
    trust_own_writes: Duration,
    /// For the listing's pages (the applier retries writes itself).
    retry: RetryPolicy,
    /// Pages of a listing fetched at once (`sync.max_concurrency`).
    concurrency: usize,
}

impl TykGateway {
    pub fn new(client: TykClient) -> Self {
        Self {
            client,
            own_writes: OwnWrites::default(),
            trust_own_writes: Duration::ZERO,
            retry: RetryPolicy::default(),
            concurrency: 1,
        }
    }

    /// Trusts a user it wrote for this long instead of reading it back.
    pub fn trusting_own_writes(mut self, window: Duration) -> Self {
        self.trust_own_writes = window;
        self
    }

    /// The user as this gateway wrote it, if that was less than
    /// `trust_own_writes` ago.
    pub fn recently_written(&self, id: &str) -> Option<ActualUser> {
        let mut writes = self.own_writes.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.trust_own_writes;
        writes.retain(|_, (_, at)| at.elapsed() < window);
        writes.get(id).map(|(user, _)| user.clone())
    }

    fn remember_write(&self, id: &str, user: &UserRecord) {
        if self.trust_own_writes.is_zero() {
            return;
        }
        let written = ActualUser {
            id: id.to_string(),
            org_id: user.org_id.clone(),
            email: user.email.to_lowercase(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            active: user.active,
            group_id: user.group_id.clone().filter(|g| !g.is_empty()),
            is_admin: ActualUser::permissions_mean_admin(&user.permissions),
            permissions: user.permissions.clone(),
        };
        self.own_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), (written, Instant::now()));
    }

    fn forget_write(&self, id: &str) {
        self.own_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Fetches up to `n` pages of a listing at once (after the first,
    /// which says how many there are), keeping their order.
    pub fn with_listing_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Retries each page of the listing with this policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn client(&self) -> &TykClient {
        &self.client
    }

    /// Every user and group the Dashboard key can see (all organisations it
    /// may see), page by page. Each page is retried on timeouts, 429 and
    /// 5xx: one lost page must not fail a listing of hundreds of pages.
    pub async fn list_actual(&self) -> Result<ActualState, TykError> {
        let (users, groups) = tokio::try_join!(
            self.all_pages(|p| self.client.list_users_page(p)),
            self.list_groups(),
        )?;
        Ok(ActualState {
            users: users.iter().map(actual_user).collect(),
            groups,
        })
    }

    /// Every user the key can see, handed to `each` (with `groups`) a window of
    /// `window_pages` pages at a time, in page order, while the next pages
    /// are fetched (up to `concurrency` at once): memory holds a window,
    /// never the whole listing.
    pub async fn list_users_in_windows(
        &self,
        window_pages: usize,
        groups: &[ActualGroup],
        each: &mut (dyn FnMut(&[ActualGroup], Vec<ActualUser>) + Send),
    ) -> Result<(), TykError> {
        use futures::StreamExt;
        let first = self.retried(|| self.client.list_users_page(1)).await?;
        let mut window: Vec<ActualUser> = first.items.iter().map(actual_user).collect();
        let mut pages_in_window = 1;
        let client = &self.client;
        let mut rest = futures::stream::iter(2..=i64::from(first.pages))
            .map(|p| self.retried(move || client.list_users_page(p)))
            .buffered(self.concurrency);
        while let Some(page) = rest.next().await {
            let page = page?;
            if page.items.is_empty() {
                break;
            }
            window.extend(page.items.iter().map(actual_user));
            pages_in_window += 1;
            if pages_in_window >= window_pages.max(1) {
                each(groups, std::mem::take(&mut window));
                pages_in_window = 0;
            }
        }
        if !window.is_empty() {
            each(groups, window);
        }
        Ok(())
    }

    /// Every user group, page by page (each page retried).
    pub async fn list_groups(&self) -> Result<Vec<ActualGroup>, TykError> {
        let groups = self.all_pages(|p| self.client.list_groups_page(p)).await?;
        Ok(groups.iter().map(actual_group).collect())
    }

    /// One user by its Tyk id (`GET /api/users/{id}`), retried while the
    /// failure is temporary; `None` when Tyk no longer has it.
    pub async fn read_user(&self, id: &str) -> Result<Option<ActualUser>, TykError> {
        match self.retried(|| self.client.get_user(id)).await {
            Ok(user) => Ok(Some(actual_user(&user))),
            Err(TykError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The users with exactly this e-mail, in every organisation the key
    /// sees (`POST /api/users/search` is a substring match), retried.
    pub async fn search_email(&self, email: &str) -> Result<Vec<ActualUser>, TykError> {
        let wanted = crate::domain::fold_key(email);
        let query = email.to_lowercase();
        let found = self.retried(|| self.client.search_users(&query)).await?;
        Ok(found
            .iter()
            .filter(|u| crate::domain::fold_key(&u.email_address) == wanted)
            .map(actual_user)
            .collect())
    }

    /// Fetches p=1, then p=2..=pages (several at once), each page with
    /// retries.
    async fn all_pages<T, F, Fut>(&self, fetch: F) -> Result<Vec<T>, TykError>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<Page<T>, TykError>>,
    {
        use futures::{StreamExt, TryStreamExt};
        let first = self.retried(|| fetch(1)).await?;
        let mut items = first.items;
        let rest: Vec<Page<T>> = futures::stream::iter(2..=i64::from(first.pages))
            .map(|p| {
                let fetch = &fetch;
                self.retried(move || fetch(p))
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        for page in rest {
            items.extend(page.items);
        }
        Ok(items)
    }

    /// One read, retried with backoff (honouring `Retry-After`) while the
    /// failure is temporary.
    async fn retried<T, F, Fut>(&self, fetch: F) -> Result<T, TykError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, TykError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match fetch().await {
                Err(e) if e.is_retryable() && attempts < self.retry.max_attempts.max(1) => {
                    let delay = self.retry.delay(attempts - 1, e.retry_after());
                    tracing::debug!(attempts, ?delay, error = %e, "retrying a Tyk read");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// How many reads this gateway runs at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
}

fn to_map(permissions: &Permissions) -> BTreeMap<String, String> {
    permissions
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect()
}

fn from_map(permissions: &BTreeMap<String, String>) -> Permissions {
    permissions
        .iter()
        .map(|(k, v)| (k.clone(), PermissionLevel::parse(v)))
        .collect()
}

pub fn actual_user(user: &User) -> ActualUser {
    let permissions = to_map(&user.user_permissions);
    ActualUser {
        id: user.id.clone(),
        org_id: user.org_id.clone(),
        email: user.email_address.to_lowercase(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        active: user.active,
        group_id: Some(user.group_id.clone()).filter(|g| !g.is_empty()),
        is_admin: ActualUser::permissions_mean_admin(&permissions),
        permissions,
    }
}

pub fn actual_group(group: &UserGroup) -> ActualGroup {
    ActualGroup {
        id: group.id.clone(),
        org_id: group.org_id.clone(),
        name: group.name.clone(),
        description: Some(group.description.clone()).filter(|d| !d.is_empty()),
        permissions: to_map(&group.user_permissions),
    }
}

/// How a client error counts for retries.
pub fn write_error(error: TykError) -> WriteError {
    match error {
        TykError::EmailAlreadyExists { .. } => WriteError::EmailAlreadyExists,
        TykError::Rejected { status, message } if status != 408 => {
            WriteError::Refused { status, message }
        }
        ref e if e.is_retryable() => WriteError::Retryable {
            message: e.to_string(),
            retry_after: e.retry_after(),
        },
        e => WriteError::Permanent {
            status: status_of(&e),
            message: e.to_string(),
        },
    }
}

fn status_of(error: &TykError) -> Option<u16> {
    match error {
        TykError::Unauthorised { .. } => Some(401),
        TykError::Forbidden { .. } => Some(403),
        TykError::NotFound { status, .. } | TykError::Rejected { status, .. } => Some(*status),
        TykError::Conflict { .. } => Some(409),
        _ => None,
    }
}

impl TykWriter for TykGateway {
    fn paces_itself(&self) -> bool {
        true
    }

    async fn create_group(&self, group: &GroupRecord) -> Result<String, WriteError> {
        let body = NewUserGroup {
            name: group.name.clone(),
            description: group.description.clone().unwrap_or_default(),
            active: true,
            user_permissions: from_map(&group.permissions),
            org_id: Some(group.org_id.clone()),
        };
        self.client.create_group(&body).await.map_err(write_error)
    }

    async fn update_group(&self, group_id: &str, group: &GroupRecord) -> Result<(), WriteError> {
        let body = UserGroup {
            id: group_id.to_string(),
            org_id: group.org_id.clone(),
            name: group.name.clone(),
            description: group.description.clone().unwrap_or_default(),
            active: true,
            user_permissions: from_map(&group.permissions),
            ..UserGroup::default()
        };
        self.client.update_group(&body).await.map_err(write_error)
    }

    async fn delete_group(&self, _org_id: &str, group_id: &str) -> Result<(), WriteError> {
        self.client
            .delete_group(group_id)
            .await
            .map_err(write_error)
    }

    async fn create_user(&self, user: &UserRecord) -> Result<String, WriteError> {
        let body = NewUser {
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            email_address: user.email.clone(),
            user_permissions: from_map(&user.permissions),
            active: user.active,
            group_id: user.group_id.clone(),
            org_id: Some(user.org_id.clone()),
        };
        let id = self.client.create_user(&body).await.map_err(write_error)?;
        self.remember_write(&id, user);
        Ok(id)
    }

    async fn update_user(&self, user_id: &str, user: &UserRecord) -> Result<(), WriteError> {
        let body = User {
            id: user_id.to_string(),
            org_id: user.org_id.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            email_address: user.email.clone(),
            active: user.active,
            group_id: user.group_id.clone().unwrap_or_default(),
            user_permissions: from_map(&user.permissions),
            ..User::default()
        };
        // Whatever happens, what we knew of this user is no longer sure.
        self.forget_write(user_id);
        self.client.update_user(&body).await.map_err(write_error)?;
        self.remember_write(user_id, user);
        Ok(())
    }

    async fn delete_user(&self, _org_id: &str, user_id: &str) -> Result<(), WriteError> {
        self.forget_write(user_id);
        self.client.delete_user(user_id).await.map_err(write_error)
    }

    async fn reset_user_key(&self, _org_id: &str, user_id: &str) -> Result<(), WriteError> {
        self.client
            .reset_user_key(user_id)
            .await
            .map_err(write_error)
    }

    async fn find_user_by_email(
        &self,
        org_id: &str,
        email: &str,
    ) -> Result<Option<ActualUser>, WriteError> {
        // The same e-mail may exist once per organisation.
        let wanted = crate::domain::fold_key(email);
        let found = self
            .client
            .search_users(&wanted)
            .await
            .map_err(write_error)?;
        Ok(found
            .iter()
            .find(|u| u.org_id == org_id && crate::domain::fold_key(&u.email_address) == wanted)
            .map(actual_user))
    }

    async fn read_groups(&self, org_id: &str) -> Result<Option<Vec<ActualGroup>>, WriteError> {
        let groups = self.list_groups().await.map_err(write_error)?;
        Ok(Some(
            groups
                .into_iter()
                .filter(|g| g.org_id == org_id || g.org_id.is_empty())
                .collect(),
        ))
    }
}
