//! "Retry a failing loop with capped, jittered backoff and throttled logs", written once.
//! Every long-lived loop that calls Redis (readers, the janitor, trimming, start-up) keeps a
//! [`FailureStreak`]: it logs the 1st, 2nd, 4th, 8th… failure in a row (so an outage of an
//! hour is a handful of lines, not thousands) and waits longer after each, up to 5 s.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The longest pause between two tries.
const CAP_MS: u64 = 5_000;

/// Consecutive failures of one loop.
#[derive(Debug, Default)]
pub(crate) struct FailureStreak {
    failures: u32,
}

impl FailureStreak {
    /// The call worked: the next failure starts a new streak.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure; true when this one should be logged (1st, 2nd, 4th, 8th… in a row).
    pub(crate) fn failed(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.failures.is_power_of_two()
    }

    /// Failures in a row so far.
    pub(crate) fn count(&self) -> u32 {
        self.failures
    }

    /// Waits before the next try: 100 ms doubling per failure up to 5 s, plus up to half
    /// again of jitter; returns early when `cancel` fires (stay responsive to shutdown).
    pub(crate) async fn wait(&self, cancel: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(pause(self.failures)) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

fn pause(failures: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << failures.min(6)).min(CAP_MS);
    Duration::from_millis(base + rand::random_range(0..=base / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_throttled_to_powers_of_two() {
        let mut streak = FailureStreak::default();
        let mut logged = Vec::new();
        for _ in 0..20 {
            if streak.failed() {
                logged.push(streak.count());
            }
        }
        assert_eq!(logged, vec![1, 2, 4, 8, 16]);
        streak.succeeded();
        assert!(streak.failed(), "a new streak logs its first failure");
    }

    #[test]
    fn pauses_grow_and_are_capped() {
        assert!(pause(1) >= Duration::from_millis(200) && pause(1) <= Duration::from_millis(300));
        assert!(pause(30) >= Duration::from_millis(5_000));
        assert!(pause(30) <= Duration::from_millis(7_500));
    }
}
