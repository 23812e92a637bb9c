//! The sync worker as the service runs it: Tyk through [`TykGateway`], the
//! desired state from the mapping over the store, and a loop that only
//! applies while this replica leads.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};

use super::actual::{ActualGroup, ActualState, ActualUser};
use super::tyk_gateway::TykGateway;
use super::worker::{ActualScope, LoadError, StateSource, SyncWorker};
use crate::cluster::Leadership;
use crate::domain::DesiredState;
use crate::store::{Store, sync_state};
use crate::tasks::Shutdown;

type DesiredFuture = Pin<Box<dyn Future<Output = Result<DesiredState, LoadError>> + Send>>;

/// Computes the desired Tyk state from the store (the mapping): of
/// everyone (`None`), or of the people with these lower-cased e-mails.
pub type DesiredLoader =
    Arc<dyn Fn(Store, Option<BTreeSet<String>>) -> DesiredFuture + Send + Sync>;

/// Where `unmapped_policy = "default"` places people no rule matches
/// ((org, group name)), as the live mapping config says now.
pub type UnmappedGroup = Arc<dyn Fn() -> Option<(String, String)> + Send + Sync>;

/// Pages of Tyk's user listing the full reconcile plans at a time (with
/// Tyk's default page size of 10, 500 users).
pub const FULL_RECONCILE_WINDOW_PAGES: usize = 50;

/// Where the service's worker gets desired and actual state.
///
/// The full reconcile lists Tyk (and refreshes the group cache); an event
/// run reads only the people it plans: each managed user by its recorded
/// Tyk id (`GET /api/users/{id}`), and by `POST /api/users/search` those
/// whose creation was interrupted. People we do not manage are not looked
/// up at all: creating them is tried straight away, and "User email already
/// exists" is what makes the applier search (see `apply::person`).
pub struct ServiceSource {
    store: Store,
    gateway: TykGateway,
    desired: DesiredLoader,
    /// Tyk's user groups as last listed; `None` until listed or after
    /// [`StateSource::groups_changed`].
    groups: Mutex<Option<Vec<ActualGroup>>>,
    /// `None`: not told, so any rule's group may hold unmapped people.
    unmapped_group: Option<UnmappedGroup>,
}

impl ServiceSource {
    pub fn new(store: Store, gateway: TykGateway, desired: DesiredLoader) -> Self {
        Self {
            store,
            gateway,
            desired,
            groups: Mutex::new(None),
            unmapped_group: None,
        }
    }

    /// Tells the source where unmapped people go, so a change of any other
    /// rule plans only the people that rule matches.
    pub fn placing_unmapped_people(mut self, unmapped: UnmappedGroup) -> Self {
        self.unmapped_group = Some(unmapped);
        self
    }

    fn cached_groups(&self) -> Option<Vec<ActualGroup>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn cache_groups(&self, groups: Option<Vec<ActualGroup>>) {
        *self.groups.lock().unwrap_or_else(|e| e.into_inner()) = groups;
    }

    async fn groups(&self) -> Result<Vec<ActualGroup>, LoadError> {
        if let Some(groups) = self.cached_groups() {
            return Ok(groups);
        }
        let groups = self
            .gateway
            .list_groups()
            .await
            .map_err(|e| LoadError(format!("listing Tyk user groups: {e}")))?;
        self.cache_groups(Some(groups.clone()));
        Ok(groups)
    }

    /// The Tyk users of these people: managed ones read by id, interrupted
    /// creations searched by e-mail.
    async fn people(&self, emails: &BTreeSet<String>) -> Result<Vec<ActualUser>, LoadError> {
        let ownership = {
            let mut conn = self
                .store
                .pool()
                .acquire()
                .await
                .map_err(|e| LoadError(format!("store: {e}")))?;
            sync_state::load_ownership_for(&mut conn, emails)
                .await
                .map_err(|e| LoadError(format!("store: {e}")))?
        };
        // Futures built eagerly (not in a stream closure) keep the run `Send`.
        // What we wrote a moment ago is trusted (`sync.trust_own_writes`):
        // a person whose events span two batches is not read back.
        let (trusted, unsure): (Vec<ActualUser>, Vec<&String>) = {
            let mut trusted = Vec::new();
            let mut unsure = Vec::new();
            for id in ownership.users.keys() {
                match self.gateway.recently_written(id) {
                    Some(user) => trusted.push(user),
                    None => unsure.push(id),
                }
            }
            (trusted, unsure)
        };
        let reads: Vec<_> = unsure
            .into_iter()
            .map(|id| self.gateway.read_user(id))
            .collect();
        let searched: BTreeSet<&String> = ownership
            .pending_creates
            .iter()
            .map(|(_, email)| email)
            .collect();
        let searches: Vec<_> = searched
            .into_iter()
            .map(|email| self.gateway.search_email(email))
            .collect();
        let found: Vec<Option<ActualUser>> = futures::stream::iter(reads)
            .buffer_unordered(self.gateway.concurrency())
            .try_collect()
            .await
            .map_err(|e| LoadError(format!("reading Tyk users: {e}")))?;
        let matches: Vec<Vec<ActualUser>> = futures::stream::iter(searches)
            .buffer_unordered(self.gateway.concurrency())
            .try_collect()
            .await
            .map_err(|e| LoadError(format!("searching Tyk users: {e}")))?;
        let mut users: BTreeMap<String, ActualUser> = BTreeMap::new();
        let found = found.into_iter().flatten().chain(trusted);
        for user in found.chain(matches.into_iter().flatten()) {
            users.insert(user.id.clone(), user);
        }
        Ok(users.into_values().collect())
    }
}

impl StateSource for ServiceSource {
    async fn desired(&self) -> Result<DesiredState, LoadError> {
        (self.desired)(self.store.clone(), None).await
    }

    async fn desired_for(&self, emails: &BTreeSet<String>) -> Result<DesiredState, LoadError> {
        (self.desired)(self.store.clone(), Some(emails.clone())).await
    }

    async fn actual(&self, scope: &ActualScope) -> Result<ActualState, LoadError> {
        match scope {
            ActualScope::Everyone => {
                let state = self
                    .gateway
                    .list_actual()
                    .await
                    .map_err(|e| LoadError(format!("listing Tyk users and groups: {e}")))?;
                self.cache_groups(Some(state.groups.clone()));
                Ok(state)
            }
            ActualScope::People(emails) => {
                let (groups, users) = tokio::try_join!(self.groups(), self.people(emails))?;
                Ok(ActualState { users, groups })
            }
        }
    }

    /// Groups first (and cached), then the users streamed in windows of
    /// [`FULL_RECONCILE_WINDOW_PAGES`] pages.
    async fn actual_in_windows(
        &self,
        each: &mut (dyn FnMut(&[ActualGroup], Vec<ActualUser>) + Send),
    ) -> Result<Vec<ActualGroup>, LoadError> {
        let groups = self
            .gateway
            .list_groups()
            .await
            .map_err(|e| LoadError(format!("listing Tyk user groups: {e}")))?;
        self.cache_groups(Some(groups.clone()));
        self.gateway
            .list_users_in_windows(FULL_RECONCILE_WINDOW_PAGES, &groups, each)
            .await
            .map_err(|e| LoadError(format!("listing Tyk users: {e}")))?;
        Ok(groups)
    }

    fn groups_changed(&self) {
        self.cache_groups(None);
    }

    fn takes_unmapped_people(&self, org_id: &str, group: &str) -> bool {
        self.unmapped_group.as_ref().is_none_or(|unmapped| {
            unmapped().is_some_and(|(org, name)| org == org_id && name == group)
        })
    }
}

/// The worker the service runs: its writes fenced by the leader lease.
pub type ServiceWorker = SyncWorker<super::fenced::Fenced<TykGateway>, ServiceSource>;

/// Runs the worker until shutdown, applying only while this replica may
/// write: it leads, has waited out its predecessor, and its lease is fresh
/// (so a new leader frees its predecessor's events only once that one can
/// no longer write, and a doubtful lease abandons the runs in flight).
pub async fn run(worker: Arc<ServiceWorker>, leadership: Leadership, mut shutdown: Shutdown) {
    worker
        .run(shutdown.requested(), || leadership.may_write().is_ok())
        .await;
}
