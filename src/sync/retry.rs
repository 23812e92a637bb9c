//! Being gentle with Tyk: bounded retries with exponential backoff and full
//! jitter (honouring `Retry-After`), and a requests-per-second pacer.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::writer::WriteError;

/// Retry knobs (from `SyncConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries per request, including the first.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(max, base * 2^retry)]`; a server's
    /// `Retry-After` wins (capped at `max_delay`).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// Spaces requests at most `rate` per second (no bursts). Cheap to share.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `None` or 0 means unlimited.
    pub fn new(requests_per_second: Option<u32>) -> Self {
        let interval = match requests_per_second {
            Some(rate) if rate > 0 => Duration::from_secs(1) / rate,
            _ => Duration::ZERO,
        };
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's slot.
    pub async fn wait(&self) {
        if self.interval.is_zero() {
            return;
        }
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The outcome of a retried call, with whether an earlier attempt may have
/// reached Tyk (a timeout can hide a success: creations must then check).
#[derive(Debug)]
pub struct Retried<T> {
    pub result: Result<T, WriteError>,
    pub attempts: u32,
    pub maybe_applied_before: bool,
}

/// Calls `op` until it succeeds, fails permanently or runs out of attempts.
pub async fn with_retry<T, F, Fut>(policy: &RetryPolicy, pacer: &Pacer, mut op: F) -> Retried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, WriteError>>,
{
    let mut attempts = 0;
    let mut maybe_applied_before = false;
    loop {
        pacer.wait().await;
        attempts += 1;
        let result = crate::tyk::failure_log::with_attempt(attempts, op()).await;
        let retry_after = match &result {
            Err(WriteError::Retryable { retry_after, .. })
                if attempts < policy.max_attempts.max(1) =>
            {
                *retry_after
            }
            _ => {
                return Retried {
                    result,
                    attempts,
                    maybe_applied_before,
                };
            }
        };
        maybe_applied_before = true;
        let delay = policy.delay(attempts - 1, retry_after);
        tracing::debug!(attempts, ?delay, "retrying a Tyk write");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn retryable(after: Option<u64>) -> WriteError {
        WriteError::Retryable {
            message: "503".into(),
            retry_after: after.map(Duration::from_millis),
        }
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        };
        for retry in 0..8 {
            let ceiling = Duration::from_millis((100u64 << retry).min(1_000));
            for _ in 0..50 {
                assert!(policy.delay(retry, None) <= ceiling);
            }
        }
        assert_eq!(
            policy.delay(0, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(60))),
            Duration::from_millis(1_000)
        );
    }

    #[tokio::test]
    async fn retries_transient_failures_honouring_retry_after() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let out = with_retry(&RetryPolicy::default(), &Pacer::new(None), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(retryable(Some(50))),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(out.result, Ok(7));
        assert_eq!(out.attempts, 2);
        assert!(out.maybe_applied_before);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_permanent_errors() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        let calls = AtomicU32::new(0);
        let out: Retried<()> = with_retry(&policy, &Pacer::new(None), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(retryable(None))
        })
        .await;
        assert!(out.result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let out: Retried<()> = with_retry(&policy, &Pacer::new(None), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(WriteError::Permanent {
                status: Some(400),
                message: "bad".into(),
            })
        })
        .await;
        assert!(!out.maybe_applied_before);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_pacer_spaces_requests() {
        let pacer = Pacer::new(Some(100));
        let started = Instant::now();
        for _ in 0..11 {
            pacer.wait().await;
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
