//! The one place that turns an outcome into Redis state — XACK, "leave pending and redeliver
//! after the backoff", or an atomic move to the DLQ — and records the metrics for it.
//!
//! Two halves: [`decide`] is a pure function from a handler's outcome, the attempt number and
//! the retry policy to a [`Settlement`]; [`dead_letter()`] carries out the one settlement that
//! needs Redis here (the atomic move), given only what it needs ([`DlqTarget`]). Acks and
//! retry schedules belong to the pool's acker and lease keeper, so the consumer applies those
//! itself; settle never sees a pool.

mod dead_letter;
mod policy;

use std::time::{Duration, Instant};

pub use dead_letter::{DlqTarget, dead_letter, first_ids, lost, report_lost};

use crate::config::RetryPolicy;
use crate::handler::{Delivery, Outcome};
use crate::vocab::DlqReason;
use crate::vocab::truncate;

/// What becomes of an entry once its handler has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Handled: acknowledge it.
    Ack,
    /// Failed, attempts left: leave it pending and redeliver it after `after`.
    Retry { after: Duration, error: String },
    /// Cannot succeed: move it to the DLQ with this reason.
    DeadLetter { reason: DlqReason, error: String },
}

impl Settlement {
    /// The `outcome` field of the `entry settled` log line.
    pub fn label(&self) -> &'static str {
        match self {
            Settlement::Ack => "processed",
            Settlement::Retry { .. } => "retry",
            Settlement::DeadLetter {
                reason: DlqReason::Rejected,
                ..
            } => "rejected",
            Settlement::DeadLetter { .. } => "dead_lettered",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Settlement::Ack => None,
            Settlement::Retry { error, .. } | Settlement::DeadLetter { error, .. } => Some(error),
        }
    }
}

/// The settlement for a handler's `outcome` at delivery `attempt` (1-based). A retry waits
/// the policy's backoff, or longer if the handler asked for it (`Retry-After`), but never
/// past `max_backoff_seconds` (contract §3): a webhook cannot park an entry for longer than
/// the operator allows.
pub fn decide(outcome: Outcome, attempt: u64, policy: &RetryPolicy) -> Settlement {
    match outcome {
        Outcome::Success => Settlement::Ack,
        Outcome::Permanent { error } => Settlement::DeadLetter {
            reason: DlqReason::Rejected,
            error,
        },
        // Overload is a retryable failure here; only an adaptive pool's controller reads it.
        Outcome::Retry { error, .. } | Outcome::Overloaded { error, .. }
            if policy.exhausted(attempt) =>
        {
            Settlement::DeadLetter {
                reason: DlqReason::MaxAttempts,
                error,
            }
        }
        Outcome::Retry { after, error } | Outcome::Overloaded { after, error } => {
            let asked = after.unwrap_or_default().min(policy.max_backoff);
            Settlement::Retry {
                after: policy.backoff(attempt).max(asked),
                error,
            }
        }
    }
}

/// When a retry `after` this long from now is due. Never panics: `after` is bounded by
/// [`decide`] and the config, but should a clock not reach that far, the retry is due at once
/// rather than never.
pub fn retry_due(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or(now)
}

/// `took` in milliseconds, rounded to the microsecond: `0.052`, not `0.051616999999999996`.
fn millis(took: Duration) -> f64 {
    (took.as_micros() as f64) / 1000.0
}

/// The `entry settled` line (target `weir::settled`): at INFO for a retry or a dead letter,
/// and for a success only with `[logging] each_entry = true` (else at DEBUG: at hundreds of
/// thousands of entries a second the line would cost a third of the throughput; each pool's
/// summary line reports successes instead).
pub fn log_settled(d: &Delivery, settlement: &Settlement, took: Duration, each_entry: bool) {
    macro_rules! settled {
        ($level:ident) => {
            tracing::$level!(
                target: "weir::settled",
                pool = %d.pool,
                r#type = %d.event_type,
                entry_id = %d.entry_id,
                event_id = d.event_id.as_deref().unwrap_or(""),
                attempt = d.attempt,
                outcome = settlement.label(),
                duration_ms = millis(took),
                error = settlement.error().map(|e| truncate(e, 200)).unwrap_or(""),
                "entry settled"
            )
        };
    }
    if each_entry || !matches!(settlement, Settlement::Ack) {
        settled!(info);
    } else {
        settled!(debug);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_logged_to_the_microsecond() {
        assert_eq!(
            millis(Duration::from_nanos(51_616_999)).to_string(),
            "51.616"
        );
        assert_eq!(millis(Duration::from_nanos(51_617)).to_string(), "0.051");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000");
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            retry: Duration::from_secs(10),
            backoff_exp: 2.0,
            max_backoff: Duration::from_secs(3600),
            visibility_timeout: Duration::from_secs(900),
        }
    }

    fn retry(after: Option<u64>) -> Outcome {
        Outcome::Retry {
            after: after.map(Duration::from_secs),
            error: "503".into(),
        }
    }

    #[test]
    fn success_is_acknowledged() {
        assert_eq!(decide(Outcome::Success, 1, &policy()), Settlement::Ack);
        assert_eq!(decide(Outcome::Success, 9, &policy()), Settlement::Ack);
    }

    #[test]
    fn a_permanent_failure_is_rejected_at_any_attempt() {
        let s = decide(Outcome::permanent("400"), 1, &policy());
        assert_eq!(
            s,
            Settlement::DeadLetter {
                reason: DlqReason::Rejected,
                error: "400".into()
            }
        );
        assert_eq!(s.label(), "rejected");
    }

    #[test]
    fn a_retry_waits_the_backoff_or_the_handlers_hint_whichever_is_longer() {
        let p = policy();
        let wait = |s: Settlement| match s {
            Settlement::Retry { after, .. } => after,
            other => panic!("expected a retry, got {other:?}"),
        };
        assert_eq!(wait(decide(retry(None), 1, &p)), Duration::from_secs(10));
        assert_eq!(wait(decide(retry(None), 2, &p)), Duration::from_secs(20));
        assert_eq!(wait(decide(retry(Some(5)), 1, &p)), Duration::from_secs(10));
        assert_eq!(
            wait(decide(retry(Some(60)), 1, &p)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_handlers_hint_never_goes_past_max_backoff_however_absurd() {
        let p = policy();
        for hint in [
            Duration::from_secs(3601),
            Duration::from_secs(10_000_000_000_000_000_000),
            Duration::MAX,
        ] {
            for outcome in [
                Outcome::Retry {
                    after: Some(hint),
                    error: "503".into(),
                },
                Outcome::Overloaded {
                    after: Some(hint),
                    error: "503".into(),
                },
            ] {
                assert_eq!(
                    decide(outcome, 1, &p),
                    Settlement::Retry {
                        after: p.max_backoff,
                        error: "503".into()
                    }
                );
            }
        }
        assert!(
            retry_due(Duration::MAX) <= Instant::now(),
            "due at once, no panic"
        );
        let due = retry_due(p.max_backoff);
        assert!(due > Instant::now() + Duration::from_secs(3500));
    }

    #[test]
    fn overload_settles_exactly_like_a_retry() {
        let p = policy();
        let overloaded = |after: Option<u64>| Outcome::Overloaded {
            after: after.map(Duration::from_secs),
            error: "503".into(),
        };
        for (after, attempt) in [(None, 1), (None, 2), (Some(60), 1), (None, 3)] {
            assert_eq!(
                decide(overloaded(after), attempt, &p),
                decide(retry(after), attempt, &p),
                "after {after:?}, attempt {attempt}"
            );
        }
        assert!(Outcome::overloaded("429").is_overload());
        assert!(!retry(None).is_overload());
    }

    #[test]
    fn the_last_allowed_attempt_dead_letters_instead_of_retrying() {
        let s = decide(retry(None), 3, &policy());
        assert_eq!(
            s,
            Settlement::DeadLetter {
                reason: DlqReason::MaxAttempts,
                error: "503".into()
            }
        );
        assert_eq!(s.label(), "dead_lettered");
        assert!(matches!(
            decide(retry(None), 2, &policy()),
            Settlement::Retry { .. }
        ));
    }
}
