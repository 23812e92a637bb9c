//! TIB profile writes are fenced by the leader lease, as Tyk writes are: a
//! replica that does not lead, or whose lease lapsed (its last lock
//! confirmation is older than `leader_check_interval`), pushes no profile —
//! neither to TIB's API nor to its profiles file — and records no push
//! state over the leader's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tyk_idsync::cluster::Leadership;
use tyk_idsync::config::Config;
use tyk_idsync::tib::{TibConfig, TibError, TibService};

use crate::support::Db;
use crate::support::stack::{Stack, UNTIL, spawn_stack};
use crate::support::tib::{PROFILE_ID, TIB_SECRET, TibSetup};

type Gate = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

fn gated(stack: &Stack, tib: TibConfig, gate: Gate) -> Arc<TibService> {
    let mut config: Config = stack.app.state.config.clone();
    config.tib = Some(tib);
    assert!(config.validate().is_empty());
    TibService::new_gated(
        config.tib.as_ref(),
        config.tyk.as_ref(),
        &stack.app.state.store,
        &stack.app.state.mapping,
        Some(gate),
    )
    .expect("TIB service")
    .expect("[tib] is configured")
}

/// A lease gate over `leadership` read at now + `skew_ms` (a fake clock).
fn lease_gate(leadership: Leadership, skew_ms: Arc<AtomicU64>) -> Gate {
    Arc::new(move || {
        let now = Instant::now() + Duration::from_millis(skew_ms.load(Ordering::SeqCst));
        leadership.may_write_at(now).map_err(|e| e.to_string())
    })
}

async fn provision(stack: &Stack) {
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    stack.until_outbox_empty(UNTIL).await;
    stack.reconcile().await;
    stack
        .until_within("the group exists", Duration::from_secs(30), |s| {
            s.tyk_group("API Developers").is_some()
        })
        .await;
}

#[tokio::test]
async fn a_follower_or_a_lapsed_lease_pushes_no_profile() {
    let stack = spawn_stack(Db::Postgres).await;
    provision(&stack).await;
    let leadership = stack.app.state.leadership.clone();
    stack
        .until_within("the app may write", Duration::from_secs(10), |s| {
            s.app.state.leadership.may_write().is_ok()
        })
        .await;
    let setup = TibSetup::new(TIB_SECRET).await;

    // A follower: refused before anything is written, no push state.
    let follower = gated(
        &stack,
        setup.config(&stack.org_id),
        lease_gate(Leadership::follower(), Arc::new(AtomicU64::new(0))),
    );
    let err = follower.push("test").await.expect_err("fenced");
    assert!(matches!(err, TibError::Fenced(_)), "{err:?}");
    assert!(setup.tib.writes().is_empty(), "{:?}", setup.tib.writes());
    assert!(!setup.profiles_file.exists(), "no profiles file written");
    assert!(
        tyk_idsync::tib::service::last_push(&stack.app.state.store)
            .await
            .expect("state")
            .is_none(),
        "a follower records no push state"
    );

    // The leader under a fresh lease pushes.
    let skew = Arc::new(AtomicU64::new(0));
    let leader = gated(
        &stack,
        setup.config(&stack.org_id),
        lease_gate(leadership.clone(), skew.clone()),
    );
    let report = leader.push("test").await.expect("pushed");
    assert!(report.ok, "{report:?}");
    let written = setup.tib.writes().len();
    assert!(written > 0 && setup.profiles_file.exists());

    // Both copies lost; the same replica's lease read two intervals
    // later (no confirmation since): nothing is restored.
    let check = stack.app.state.config.database.leader_check_interval;
    setup.tib.remove_profile(PROFILE_ID);
    std::fs::remove_file(&setup.profiles_file).expect("remove file");
    skew.store(
        u64::try_from((check * 2).as_millis()).expect("ms"),
        Ordering::SeqCst,
    );
    let err = leader.push("test").await.expect_err("fenced");
    assert!(err.to_string().contains("not confirmed"), "{err}");
    assert_eq!(setup.tib.writes().len(), written, "no write to TIB");
    assert!(!setup.profiles_file.exists(), "no file written");
    assert!(setup.tib.profile(PROFILE_ID).is_none());

    // The lease lapses mid-push: the first check passes, every later one
    // (the POST right before it leaves, the file's rename) refuses.
    let calls = Arc::new(AtomicUsize::new(0));
    let (l, c) = (leadership.clone(), calls.clone());
    let lapsing = gated(
        &stack,
        setup.config(&stack.org_id),
        Arc::new(move || {
            let skew = if c.fetch_add(1, Ordering::SeqCst) == 0 {
                Duration::ZERO
            } else {
                check * 2
            };
            l.may_write_at(Instant::now() + skew)
                .map_err(|e| e.to_string())
        }),
    );
    let err = lapsing.push("test").await.expect_err("fenced mid-push");
    assert!(matches!(err, TibError::Fenced(_)), "{err:?}");
    assert!(calls.load(Ordering::SeqCst) >= 3, "gate asked per write");
    assert_eq!(setup.tib.writes().len(), written, "no POST left");
    assert!(!setup.profiles_file.exists(), "no file written");
    let last = tyk_idsync::tib::service::last_push(&stack.app.state.store)
        .await
        .expect("state")
        .expect("the leader's push");
    assert!(last.ok, "the fenced pushes left the last state as it was");

    // Fresh lease again: restored.
    skew.store(0, Ordering::SeqCst);
    let report = leader.push("test").await.expect("pushed");
    assert!(report.ok, "{report:?}");
    assert!(setup.tib.profile(PROFILE_ID).is_some() && setup.profiles_file.exists());
}
