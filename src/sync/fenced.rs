//! The fence between a replica and Tyk: a [`TykWriter`] that refuses each
//! write unless this replica holds a lease it confirmed recently
//! ([`Leadership::may_write`]).
//!
//! A refusal is a temporary failure ("not sent"): the person's events stay
//! in the outbox for whoever leads next, so nothing is lost. The check runs
//! before each attempt, not once per run, so a replica that loses its lock
//! mid-run stops writing at its next request. (The Tyk client checks the
//! same lease once more right before a request leaves, after its rate
//! limiter and concurrency wait; see [`crate::tyk::TykClient::with_write_gate`].)

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::actual::ActualUser;
use super::writer::{GroupRecord, TykWriter, UserRecord, WriteError};
use crate::cluster::Leadership;

/// Where the fence reads the time (tests pass a fake clock).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A writer that writes only while this replica's lease is fresh.
#[derive(Clone)]
pub struct Fenced<W> {
    inner: W,
    leadership: Leadership,
    clock: Clock,
}

impl<W> Fenced<W> {
    pub fn new(inner: W, leadership: Leadership) -> Self {
        Self::with_clock(inner, leadership, Arc::new(Instant::now))
    }

    pub fn with_clock(inner: W, leadership: Leadership, clock: Clock) -> Self {
        Self {
            inner,
            leadership,
            clock,
        }
    }

    pub fn inner(&self) -> &W {
        &self.inner
    }

    /// `Ok` when a write may start now.
    fn admit(&self) -> Result<(), WriteError> {
        self.leadership
            .may_write_at((self.clock)())
            .map_err(refused)
    }
}

/// The temporary failure a refused write reports.
pub fn refused(why: crate::cluster::NotLeading) -> WriteError {
    metrics::counter!("tyk_idsync_fenced_writes_total").increment(1);
    WriteError::Retryable {
        message: format!("not sent: {why}"),
        retry_after: None,
    }
}

impl<W> std::fmt::Debug for Fenced<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fenced").finish_non_exhaustive()
    }
}

impl<W: TykWriter> TykWriter for Fenced<W> {
    fn paces_itself(&self) -> bool {
        self.inner.paces_itself()
    }

    async fn create_group(&self, group: &GroupRecord) -> Result<String, WriteError> {
        self.admit()?;
        self.inner.create_group(group).await
    }

    async fn update_group(&self, group_id: &str, group: &GroupRecord) -> Result<(), WriteError> {
        self.admit()?;
        self.inner.update_group(group_id, group).await
    }

    async fn delete_group(&self, org_id: &str, group_id: &str) -> Result<(), WriteError> {
        self.admit()?;
        self.inner.delete_group(org_id, group_id).await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<String, WriteError> {
        self.admit()?;
        self.inner.create_user(user).await
    }

    async fn update_user(&self, user_id: &str, user: &UserRecord) -> Result<(), WriteError> {
        self.admit()?;
        self.inner.update_user(user_id, user).await
    }

    async fn delete_user(&self, org_id: &str, user_id: &str) -> Result<(), WriteError> {
        self.admit()?;
        self.inner.delete_user(org_id, user_id).await
    }

    async fn reset_user_key(&self, org_id: &str, user_id: &str) -> Result<(), WriteError> {
        self.admit()?;
        self.inner.reset_user_key(org_id, user_id).await
    }

    /// A read: not fenced.
    fn find_user_by_email(
        &self,
        org_id: &str,
        email: &str,
    ) -> impl Future<Output = Result<Option<ActualUser>, WriteError>> + Send {
        self.inner.find_user_by_email(org_id, email)
    }

    /// A read: not fenced.
    fn read_groups(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<super::actual::ActualGroup>>, WriteError>> + Send
    {
        self.inner.read_groups(org_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::sync::fake_tyk::FakeTyk;

    fn record(email: &str) -> UserRecord {
        UserRecord {
            org_id: "org".into(),
            email: email.into(),
            first_name: "A".into(),
            last_name: "B".into(),
            active: true,
            group_id: None,
            permissions: [("apis".to_string(), "read".to_string())].into(),
        }
    }

    fn fake_clock(start: Instant) -> (Arc<Mutex<Instant>>, Clock) {
        let now = Arc::new(Mutex::new(start));
        let read = now.clone();
        (now, Arc::new(move || *read.lock().expect("clock")))
    }

    #[tokio::test]
    async fn a_follower_writes_nothing_and_the_refusal_is_temporary() {
        let tyk = Arc::new(FakeTyk::default());
        let fenced = Fenced::new(tyk.clone(), Leadership::follower());
        let err = fenced
            .create_user(&record("a@x.org"))
            .await
            .expect_err("refused");
        assert!(err.is_retryable(), "{err:?}");
        assert!(tyk.lock().writes.is_empty(), "nothing reached Tyk");
    }

    #[tokio::test]
    async fn writes_stop_once_the_last_confirmation_is_older_than_the_interval() {
        let check = Duration::from_secs(1);
        let tyk = Arc::new(FakeTyk::default());
        let leadership = Leadership::follower();
        let t0 = Instant::now();
        crate::cluster::test_support::gain(&leadership, t0, check);
        let (now, clock) = fake_clock(t0);
        let fenced = Fenced::with_clock(tyk.clone(), leadership.clone(), clock);

        // Waiting out a predecessor: refused.
        assert!(fenced.create_user(&record("a@x.org")).await.is_err());
        // Confirmed, wait over: written.
        let confirmed = t0 + check;
        crate::cluster::test_support::confirm(&leadership, confirmed, check);
        *now.lock().expect("clock") = t0 + check + crate::cluster::TAKEOVER_MARGIN;
        let id = fenced
            .create_user(&record("a@x.org"))
            .await
            .expect("written");
        // No confirmation since (the lock connection died unnoticed): the
        // next write, even of the same run, is refused.
        *now.lock().expect("clock") = confirmed + check;
        let err = fenced
            .update_user(&id, &record("a@x.org"))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("not confirmed"), "{err}");
        assert!(fenced.delete_user("org", &id).await.is_err());
        assert_eq!(
            tyk.lock().writes.len(),
            1,
            "only the write under a fresh lease"
        );
        // Reads are not fenced.
        assert!(fenced.find_user_by_email("org", "a@x.org").await.is_ok());
    }
}
