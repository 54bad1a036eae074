//! The retry policy's rules, written once: when an entry's attempts are used up and how long
//! a failed attempt waits. The worker (through [`super::decide`]), the janitor's reclaim pass
//! and the dead-letter sweep's arguments all ask here.

use std::time::Duration;

use crate::config::RetryPolicy;

impl RetryPolicy {
    /// Whether an entry that has been handed to a handler `attempts` times may not be tried
    /// again. The sweep script receives [`RetryPolicy::max_attempts`] and applies the same
    /// comparison (`count >= max`) inside Redis.
    pub fn exhausted(&self, attempts: u64) -> bool {
        attempts >= u64::from(self.max_attempts)
    }

    /// How long to wait after failed attempt `attempt` (1-based): `retry * exp^(attempt-1)`,
    /// capped at `max_backoff`.
    pub fn backoff(&self, attempt: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let secs = self.retry.as_secs_f64() * self.backoff_exp.powi(exponent);
        if !secs.is_finite() || secs >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            retry: Duration::from_secs(2),
            backoff_exp: 3.0,
            max_backoff: Duration::from_secs(60),
            visibility_timeout: Duration::from_secs(900),
        }
    }

    #[test]
    fn attempts_are_used_up_at_max_attempts() {
        let p = policy();
        assert!(!p.exhausted(0));
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
        assert!(p.exhausted(40));
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = policy();
        assert_eq!(p.backoff(1), Duration::from_secs(2));
        assert_eq!(p.backoff(2), Duration::from_secs(6));
        assert_eq!(p.backoff(3), Duration::from_secs(18));
        assert_eq!(p.backoff(5), Duration::from_secs(60));
        assert_eq!(p.backoff(u64::MAX), Duration::from_secs(60));
        // attempt 0 (never handed out) waits the first backoff, not less.
        assert_eq!(p.backoff(0), Duration::from_secs(2));
    }
}
