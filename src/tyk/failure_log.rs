//! WARN lines for transient Tyk failures (429, 5xx, timeouts, transport
//! errors), which are retried and so never surface as errors: each names
//! the endpoint, the status and the attempt. A storm is kept to one line
//! per interval: the first failure of an interval is logged, with how many
//! more the previous interval saw; the rest are counted.
//!
//! The attempt number comes from the caller's retry loop through a task
//! local ([`with_attempt`]), so the client stays unaware of retries.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one WARN line per this much time.
pub const INTERVAL: Duration = Duration::from_secs(10);

tokio::task_local! {
    static ATTEMPT: u32;
}

/// Runs `request` as attempt `attempt` of a retried call.
pub async fn with_attempt<F: Future>(attempt: u32, request: F) -> F::Output {
    ATTEMPT.scope(attempt, request).await
}

fn current_attempt() -> u32 {
    ATTEMPT.try_with(|a| *a).unwrap_or(1)
}

/// Decides which failures get a line.
#[derive(Debug)]
pub struct StormLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl StormLimiter {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)`: log this failure, noting the `n` not logged since the
    /// last line; `None`: counted, not logged.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last_line, suppressed) = &mut *state;
        match last_line {
            Some(at) if now.duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            _ => {
                *last_line = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

static LIMITER: StormLimiter = StormLimiter::new(INTERVAL);

/// Notes a transient failure of one request (`status`: the code,
/// `timeout` or `transport`).
pub(crate) fn transient(method: &str, endpoint: &str, status: &str) {
    let Some(suppressed) = LIMITER.admit(Instant::now()) else {
        return;
    };
    tracing::warn!(
        method,
        endpoint,
        status,
        attempt = current_attempt(),
        suppressed_since_last_line = suppressed,
        "transient Tyk failure; retrying with backoff (at most one such line per {}s)",
        INTERVAL.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_one_line_per_interval_with_a_count() {
        let limiter = StormLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.admit(start), Some(0));
        let logged: Vec<Option<u64>> = (1..=100)
            .map(|i| limiter.admit(start + Duration::from_millis(i * 50)))
            .collect();
        // 100 failures over 5 s: none logged, all counted.
        assert!(logged.iter().all(Option::is_none));
        assert_eq!(limiter.admit(start + Duration::from_secs(11)), Some(100));
        assert_eq!(limiter.admit(start + Duration::from_secs(12)), None);
    }

    #[tokio::test]
    async fn the_attempt_comes_from_the_retry_loop() {
        assert_eq!(current_attempt(), 1);
        assert_eq!(with_attempt(3, async { current_attempt() }).await, 3);
    }
}
