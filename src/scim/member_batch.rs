//! Group commit for member PATCHes. Provisioning clients push membership
//! changes one member per request, often many at once to one group; each
//! alone is a durable transaction whose round trips, on one group's row
//! lock (or SQLite's one writer), cap throughput. Here the PATCHes that
//! arrive while a transaction runs wait in a queue and the next transaction
//! takes them all: per group it reads the few rows they name, works out the
//! result in memory ([`super::member_plan`]) and writes it set-at-a-time.
//! Each PATCH still gets exactly the answer it would get alone.
//!
//! If the batch's transaction fails, every PATCH in it is answered
//! [`Outcome::Alone`] and its caller runs it in its own transaction (the
//! unbatched path), so one failure never fails another request.

use std::collections::{HashMap, HashSet};

use axum::http::HeaderMap;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::error::ScimError;
use super::member_patch::MemberChange;
use super::member_plan::{self, GroupWrites, KnownRows, NamedMember, PatchOutcome, PlannedPatch};
use crate::domain::{GroupMember, IdentityGroup, SourceName, Timestamp};
use crate::store::checked_members::{self, CheckedMemberWrites};
use crate::store::scim_query::{self, MemberView};
use crate::store::{Backend, Store, StoreError, WriteTx, bulk, group_members};

/// PATCHes per transaction at most.
const MAX_BATCH: usize = 256;

/// One queued PATCH.
struct Job {
    source: SourceName,
    group: Uuid,
    headers: HeaderMap,
    changes: Vec<MemberChange>,
    wants_members: bool,
    reply: oneshot::Sender<Outcome>,
}

/// A batched PATCH's result: the group as it left it and, if asked for,
/// its members as it left them.
pub(super) type Patched = (IdentityGroup, Option<Vec<MemberView>>);

/// The answer for one PATCH.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Decided in a committed batch: the group (and members) as the PATCH
    /// left it, `None` when the fast path does not apply, or the PATCH's
    /// error.
    Done(Result<Option<Patched>, ScimError>),
    /// The batch failed; run the PATCH on its own.
    Alone,
}

/// The queue in front of the batching task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemberBatcher {
    queue: mpsc::Sender<Job>,
}

impl MemberBatcher {
    /// Starts the batching task on the current runtime; it ends when the
    /// last clone of the batcher is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(store, jobs));
        Self { queue }
    }

    /// Queues a PATCH and waits for its batch. With `wants_members` the
    /// answer carries the group's members as the PATCH left them.
    pub(super) async fn submit(
        &self,
        source: &SourceName,
        group: Uuid,
        headers: &HeaderMap,
        changes: Vec<MemberChange>,
        wants_members: bool,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let mut if_match = HeaderMap::new();
        if let Some(value) = headers.get(axum::http::header::IF_MATCH) {
            if_match.insert(axum::http::header::IF_MATCH, value.clone());
        }
        let job = Job {
            source: source.clone(),
            group,
            headers: if_match,
            changes,
            wants_members,
            reply,
        };
        if self.queue.send(job).await.is_err() {
            return Outcome::Alone;
        }
        answer.await.unwrap_or(Outcome::Alone)
    }
}

async fn run(store: Store, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let taken = std::mem::take(&mut batch);
        metrics::histogram!("tyk_idsync_scim_member_patch_batch_size").record(taken.len() as f64);
        let outcomes = commit_batch(&store, &taken).await;
        for (job, outcome) in taken.into_iter().zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

type Answer = Result<Option<Patched>, ScimError>;

/// Applies a batch; the outcomes are in job order. On PostgreSQL each
/// group's PATCHes are first tried without a transaction
/// ([`apply_group_checked`]); the groups left, and every group on SQLite,
/// share one transaction. A group whose writes fail is answered
/// [`Outcome::Alone`]; the others keep their answers.
async fn commit_batch(store: &Store, jobs: &[Job]) -> Vec<Outcome> {
    let mut by_group: HashMap<(&SourceName, Uuid), Vec<usize>> = HashMap::new();
    let mut order = Vec::new();
    for (n, job) in jobs.iter().enumerate() {
        let key = (&job.source, job.group);
        by_group
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(n);
    }
    let mut outcomes: Vec<Outcome> = jobs.iter().map(|_| Outcome::Alone).collect();
    let group_jobs = |key| -> Vec<&Job> { by_group[&key].iter().map(|&n| &jobs[n]).collect() };
    let now = Timestamp::now();
    let mut left = Vec::new();
    for key in order {
        let answers = if store.backend() == Backend::Postgres {
            apply_group_checked(store, key.0, key.1, &group_jobs(key), now).await
        } else {
            Ok(None)
        };
        match answers {
            Ok(Some(answers)) => {
                for (&n, answer) in by_group[&key].iter().zip(answers) {
                    outcomes[n] = Outcome::Done(answer);
                }
            }
            Ok(None) => left.push(key),
            Err(error) => tracing::warn!(%error, source = %key.0, group_id = %key.1,
                "batched member PATCH failed; each runs on its own"),
        }
    }
    if left.is_empty() {
        return outcomes;
    }
    let committed = async {
        let mut tx = store.begin_write().await?;
        let mut answers = Vec::with_capacity(left.len());
        for &key in &left {
            answers.push(apply_group(&mut tx, key.0, key.1, &group_jobs(key), now).await?);
        }
        tx.commit().await?;
        Ok::<_, StoreError>(answers)
    };
    match committed.await {
        Ok(answers) => {
            for (key, group_answers) in left.into_iter().zip(answers) {
                for (&n, answer) in by_group[&key].iter().zip(group_answers) {
                    outcomes[n] = Outcome::Done(answer);
                }
            }
        }
        Err(error) => tracing::warn!(%error, groups = left.len(),
            "batched member PATCH failed; each runs on its own"),
    }
    outcomes
}

fn planned<'a>(jobs: &[&'a Job]) -> Vec<PlannedPatch<'a>> {
    jobs.iter()
        .map(|job| PlannedPatch {
            headers: &job.headers,
            changes: &job.changes,
            wants_members: job.wants_members,
        })
        .collect()
}

fn not_found(jobs: &[&Job]) -> Vec<Answer> {
    jobs.iter()
        .map(|_| Err(ScimError::NotFound("group".into())))
        .collect()
}

/// One group's PATCHes in its own transaction: lock and read the group and
/// the named rows, plan, write.
async fn apply_group(
    tx: &mut WriteTx,
    source: &SourceName,
    id: Uuid,
    jobs: &[&Job],
    now: Timestamp,
) -> Result<Vec<Answer>, StoreError> {
    let patches = planned(jobs);
    let ids = member_plan::named_ids(&patches);
    let Some((before, named)) =
        group_members::read_group_with_named(tx, source, id, &ids, true).await?
    else {
        return Ok(not_found(jobs));
    };
    let (outcomes, writes) = member_plan::plan(&before, &known_rows(named), &patches, now);
    write(tx, &before, writes).await?;
    // The members as the batch left them: one read for all its PATCHes.
    let after = if wants_listing(&outcomes) {
        scim_query::member_views(tx, source, &id.to_string()).await?
    } else {
        Vec::new()
    };
    Ok(answers(source, id, outcomes, jobs, &after))
}

/// Reads of a group whose version moved before its write, at most.
const CHECKED_ATTEMPTS: usize = 3;

/// One group's PATCHes without a transaction (PostgreSQL): read the group
/// and the named rows, plan, and write in one statement that applies only
/// if the group's version has not moved since (read again if it has, or if
/// the database refused a member that left the source in between).
/// `None` when the batch is better run in a transaction: too large for one
/// statement, names no one, or the group kept changing.
async fn apply_group_checked(
    store: &Store,
    source: &SourceName,
    id: Uuid,
    jobs: &[&Job],
    now: Timestamp,
) -> Result<Option<Vec<Answer>>, StoreError> {
    let patches = planned(jobs);
    let ids = member_plan::named_ids(&patches);
    if ids.is_empty() || ids.len() > group_members::CHUNK {
        return Ok(None);
    }
    let mut conn = store.pool().acquire().await?;
    for _ in 0..CHECKED_ATTEMPTS {
        let Some((before, named)) =
            group_members::read_group_with_named(&mut conn, source, id, &ids, false).await?
        else {
            return Ok(Some(not_found(jobs)));
        };
        let (outcomes, writes) = member_plan::plan(&before, &known_rows(named), &patches, now);
        let Some(after) = &writes.group else {
            // Every PATCH refused: nothing to write.
            return Ok(Some(answers(source, id, outcomes, jobs, &[])));
        };
        let checked = CheckedMemberWrites {
            group: after,
            expected_version: before.version,
            delete_members: &writes.delete_members,
            upsert_members: &writes.insert_members,
            events: &writes.events,
            list_members: wants_listing(&outcomes),
        };
        if !checked.fits_one_statement() {
            return Ok(None);
        }
        // The members as they were before the batch: the answers replace
        // every id the batch names, so before or after serves alike.
        match checked_members::write_if_unchanged(&mut conn, &checked).await {
            Ok(Some(members)) => {
                return Ok(Some(answers(source, id, outcomes, jobs, &members)));
            }
            Ok(None) => {
                tracing::debug!(source = %source, group_id = %id,
                    "group changed while batching; reading again");
            }
            // A member the lookup found was deleted before the write, and
            // the database refused the statement (nothing was written):
            // read again, and the plan refuses the PATCHes naming it.
            Err(refused) if refused.member_outside_source().is_some() => {
                tracing::debug!(source = %source, group_id = %id, error = %refused,
                    "a named member went away while batching; reading again");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}

fn known_rows(named: Vec<group_members::NamedRow>) -> KnownRows {
    let mut known = KnownRows::default();
    for row in named {
        if let Some(email) = row.user_email {
            known.users.insert(row.id, email);
        } else if row.is_group {
            known.groups.insert(row.id);
        }
        if let Some(kind) = row.member_kind {
            known.members.insert(row.id, kind);
        }
        if !row.name.is_empty() {
            known.names.insert(row.id, row.name);
        }
    }
    known
}

/// Whether any answer shows the group's members.
fn wants_listing(outcomes: &[PatchOutcome]) -> bool {
    outcomes
        .iter()
        .any(|o| matches!(o, PatchOutcome::Applied(_, named) if !named.is_empty()))
}

/// Each PATCH's answer, given the group's members with the batch applied or
/// not (the ids the batch names are replaced by how each PATCH left them).
fn answers(
    source: &SourceName,
    id: Uuid,
    outcomes: Vec<PatchOutcome>,
    jobs: &[&Job],
    members: &[MemberView],
) -> Vec<Answer> {
    outcomes
        .into_iter()
        .zip(jobs)
        .map(|(outcome, job)| match outcome {
            PatchOutcome::Applied(group, named) => {
                tracing::info!(source = %source, group_id = %id, version = group.version,
                    "SCIM group members changed");
                let members = job.wants_members.then(|| members_as_left(members, named));
                Ok(Some((group, members)))
            }
            PatchOutcome::Refused(error) => Err(error),
        })
        .collect()
}

/// The members as one PATCH left them: the group's members (before or
/// after the batch) with the ids the batch names as that PATCH left them.
fn members_as_left(members: &[MemberView], named: Vec<NamedMember>) -> Vec<MemberView> {
    let named_ids: HashSet<Uuid> = named.iter().map(|m| m.id).collect();
    let mut members: Vec<MemberView> = members
        .iter()
        .filter(|view| !named_ids.contains(&view.member.id))
        .cloned()
        .collect();
    members.extend(named.into_iter().filter_map(|m| {
        Some(MemberView {
            member: GroupMember {
                id: m.id,
                kind: m.kind?,
            },
            name: m.name,
        })
    }));
    members.sort_by_key(|view| view.member.id);
    members
}

async fn write(
    tx: &mut WriteTx,
    before: &IdentityGroup,
    writes: GroupWrites,
) -> Result<(), StoreError> {
    let Some(after) = writes.group else {
        return Ok(());
    };
    let group_id = before.id;
    if !writes.delete_members.is_empty() {
        group_members::delete_members(tx, group_id, &writes.delete_members).await?;
    }
    if !writes.insert_members.is_empty() {
        let edges: Vec<_> = writes
            .insert_members
            .into_iter()
            .map(|member| (group_id, member))
            .collect();
        bulk::add_members(tx, &edges).await?;
    }
    group_members::bump_version_with_events(tx, &after, before.version, &writes.events).await?;
    Ok(())
}
