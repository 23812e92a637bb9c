//! Retrying a store operation that failed transiently (a connection the
//! server closed or terminated, a serialization failure): each attempt
//! takes a connection from the pool afresh, and the pool drops the broken
//! one, so a failover that killed every pooled session costs a few quick
//! retries rather than an error.

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// Attempts in all; enough to cycle through a pool of dead connections.
pub const TRANSIENT_ATTEMPTS: u32 = 8;

/// Runs `op` until it succeeds, fails for good, or has failed
/// transiently [`TRANSIENT_ATTEMPTS`] times (backoff 10 ms, 20 ms, … up
/// to 200 ms).
pub async fn retry_transient<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < TRANSIENT_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "retrying a store operation");
                let delay =
                    Duration::from_millis(10 << attempt.min(5)).min(Duration::from_millis(200));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn lost() -> StoreError {
        StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let ok = retry_transient(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 3 { Err(lost()) } else { Ok(n) }
        })
        .await;
        assert_eq!(ok.expect("succeeds on the fourth try"), 3);

        calls.store(0, Ordering::SeqCst);
        let failed: Result<(), _> = retry_transient(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(lost())
        })
        .await;
        assert!(failed.expect_err("gives up").is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), TRANSIENT_ATTEMPTS);

        calls.store(0, Ordering::SeqCst);
        let corrupt: Result<(), _> = retry_transient(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Corrupt("x".into()))
        })
        .await;
        assert!(corrupt.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
    }
}
