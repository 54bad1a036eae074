//! The controller's rule, as a pure function of one window's numbers: [`decide`]. No clock,
//! no Redis, no atomics, so every rule is a unit test.
//!
//! Additive increase, multiplicative decrease (TCP's congestion rule, and what Netflix's
//! concurrency-limits library does for services): grow by a quarter while a backlog waits
//! and latency holds, halve on overload or rising latency, and give idle workers back one
//! step at a time once the backlog is gone.

use std::fmt;
use std::time::Duration;

/// Latency "rose" when a window's mean is above this multiple of the best recent one.
pub const LATENCY_RISE: f64 = 1.5;
/// …and above it by at least this much: sub-millisecond handlers jitter by 2× without
/// being in any trouble.
pub const LATENCY_NOISE: Duration = Duration::from_millis(5);
/// Fewer finished calls than this say too little about latency to back off on.
pub const MIN_SAMPLES: u64 = 5;
/// After shrinking, the workers still busy must fill at most this share of the rest, so a
/// shrink does not create the backlog the next window grows on again.
pub const SHRINK_BUSY: f64 = 0.8;

/// What one window (`scale_cooldown_seconds`) of an adaptive pool looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Handlers allowed at once during the window.
    pub current: usize,
    /// The configured bounds.
    pub min: usize,
    pub max: usize,
    /// How long the window lasted.
    pub length: Duration,
    /// The group's unread entries (lag) plus its pending ones, at the window's end.
    pub backlog: u64,
    /// Handler calls that finished in the window.
    pub completed: u64,
    /// Their summed duration: `busy / length` is how many workers were busy on average.
    pub busy: Duration,
    /// How many of them signalled overload (HTTP 429/503, exec exit 75).
    pub overloads: u64,
    /// The best (lowest) mean latency of recent windows: what "latency holds" compares to.
    pub baseline: Option<Duration>,
    /// Entries that waited for a rate token in the window (contract §14): the limit, not
    /// the workers, sets the pace, and more workers would only wait too.
    pub rate_waited: u64,
}

impl Window {
    /// The mean handler latency, if anything finished.
    pub fn mean_latency(&self) -> Option<Duration> {
        (self.completed > 0).then(|| self.busy / self.completed.min(u32::MAX as u64) as u32)
    }

    /// Workers busy on average over the window.
    pub fn busy_workers(&self) -> f64 {
        if self.length.is_zero() {
            return 0.0;
        }
        self.busy.as_secs_f64() / self.length.as_secs_f64()
    }

    /// Entries the current workers get through in one window at the mean latency.
    fn clearable(&self, mean: Duration) -> u64 {
        let per_worker = self.length.as_secs_f64() / mean.as_secs_f64().max(1e-6);
        (per_worker * self.current as f64) as u64
    }

    /// One additive step from the current concurrency: a quarter of it, at least one.
    fn step(&self) -> usize {
        (self.current / 4).max(1)
    }
}

/// What to do with the concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Add workers, up to `max`.
    Grow { to: usize },
    /// Give idle workers back, down to `min`.
    Shrink { to: usize },
    /// Halve (not below `min`): the handler is in trouble.
    BackOff { to: usize },
    /// Stay.
    Hold,
}

/// Why, in the words of the log line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// `signals` of `of` finished calls signalled overload.
    Overload { signals: u64, of: u64 },
    /// The window's mean latency against the best recent one.
    LatencyRose { from: Duration, to: Duration },
    /// More waiting than the workers clear in a window, and latency holds.
    Backlog { entries: u64, clearable: u64 },
    /// Nothing waits beyond what the workers hold, and few of them were busy.
    BacklogGone { entries: u64, busy: f64 },
    /// A backlog, but no call finished in the window: nothing to estimate from.
    NoCallsFinished { entries: u64 },
    /// A backlog, but `waited` entries waited for the pool's rate limit: more workers
    /// would not start more handlers.
    RateLimited { waited: u64 },
    /// Already at the bound the rule points to.
    AtBound,
    /// Neither growing nor shrinking is called for.
    Steady,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        match self {
            Reason::Overload { signals, of } => {
                write!(f, "overload signals ({signals} of {of} calls)")
            }
            Reason::LatencyRose { from, to } => write!(
                f,
                "latency rose from {:.1} ms to {:.1} ms",
                ms(from),
                ms(to)
            ),
            Reason::Backlog { entries, clearable } => write!(
                f,
                "backlog {entries} with latency holding (the workers clear about {clearable} per cooldown)"
            ),
            Reason::BacklogGone { entries, busy } => write!(
                f,
                "backlog gone ({entries} unread or pending; {busy:.1} workers busy on average)"
            ),
            Reason::NoCallsFinished { entries } => {
                write!(f, "backlog {entries} but no handler call finished")
            }
            Reason::RateLimited { waited } => write!(
                f,
                "rate limited ({waited} entries waited for the pool's rate limit)"
            ),
            Reason::AtBound => f.write_str("at its bound"),
            Reason::Steady => f.write_str("steady"),
        }
    }
}

/// What the controller does after `w`, and why. Checked in order: overload, rising latency
/// (both halve), a backlog latency can afford (grow), the backlog gone with workers idle
/// (shrink), else hold.
pub fn decide(w: &Window) -> (Step, Reason) {
    let halved = (w.current / 2).max(w.min);
    let back_off = |reason| match halved < w.current {
        true => (Step::BackOff { to: halved }, reason),
        false => (Step::Hold, reason),
    };
    if w.overloads > 0 {
        return back_off(Reason::Overload {
            signals: w.overloads,
            of: w.completed,
        });
    }
    let mean = w.mean_latency();
    if let (Some(to), Some(from)) = (mean, w.baseline)
        && w.completed >= MIN_SAMPLES
        && to.as_secs_f64() > from.as_secs_f64() * LATENCY_RISE
        && to > from + LATENCY_NOISE
    {
        return back_off(Reason::LatencyRose { from, to });
    }
    let entries = w.backlog;
    let Some(mean) = mean else {
        return match entries <= w.current as u64 {
            true => shrink(w, Reason::BacklogGone { entries, busy: 0.0 }),
            false => (Step::Hold, Reason::NoCallsFinished { entries }),
        };
    };
    let clearable = w.clearable(mean);
    if entries > clearable {
        if w.rate_waited > 0 {
            return (
                Step::Hold,
                Reason::RateLimited {
                    waited: w.rate_waited,
                },
            );
        }
        let to = (w.current + w.step()).min(w.max);
        return match to > w.current {
            true => (Step::Grow { to }, Reason::Backlog { entries, clearable }),
            false => (Step::Hold, Reason::AtBound),
        };
    }
    let busy = w.busy_workers();
    if entries <= w.current as u64 {
        return shrink(w, Reason::BacklogGone { entries, busy });
    }
    (Step::Hold, Reason::Steady)
}

/// One step down toward `min`, if the workers left can carry what was busy.
fn shrink(w: &Window, reason: Reason) -> (Step, Reason) {
    let to = w.current.saturating_sub(w.step()).max(w.min);
    if to >= w.current {
        return (Step::Hold, Reason::AtBound);
    }
    if w.busy_workers() > SHRINK_BUSY * to as f64 {
        return (Step::Hold, Reason::Steady);
    }
    (Step::Shrink { to }, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// 4 workers of 1..=16 over a 1 s window, 50 ms calls, 40 finished (2 busy on average),
    /// baseline 50 ms, no backlog, no overload.
    fn window() -> Window {
        Window {
            current: 4,
            min: 1,
            max: 16,
            length: Duration::from_secs(1),
            backlog: 0,
            completed: 40,
            busy: 40 * 50 * MS,
            overloads: 0,
            baseline: Some(50 * MS),
            rate_waited: 0,
        }
    }

    #[test]
    fn a_rate_limited_pool_does_not_grow_on_its_backlog() {
        let limited = Window {
            backlog: 10_000,
            rate_waited: 3,
            ..window()
        };
        assert_eq!(
            decide(&limited),
            (Step::Hold, Reason::RateLimited { waited: 3 })
        );
        // Without waits the same backlog grows the pool.
        let free = Window {
            rate_waited: 0,
            ..limited
        };
        assert!(matches!(decide(&free).0, Step::Grow { .. }));
        // Idle workers are still given back.
        let idle = Window {
            backlog: 0,
            completed: 4,
            busy: 4 * 50 * MS,
            ..limited
        };
        assert!(matches!(decide(&idle).0, Step::Shrink { .. }));
    }

    #[test]
    fn a_backlog_with_latency_holding_grows_by_a_quarter() {
        // 4 workers at 50 ms clear 80 entries a second.
        let w = Window {
            backlog: 81,
            ..window()
        };
        assert_eq!(
            decide(&w),
            (
                Step::Grow { to: 5 },
                Reason::Backlog {
                    entries: 81,
                    clearable: 80
                }
            )
        );
        let big = Window {
            current: 12,
            backlog: 10_000,
            ..window()
        };
        assert_eq!(decide(&big).0, Step::Grow { to: 15 });
        let near_max = Window {
            current: 15,
            backlog: 10_000,
            ..window()
        };
        assert_eq!(decide(&near_max).0, Step::Grow { to: 16 });
        let at_max = Window {
            current: 16,
            backlog: 10_000,
            ..window()
        };
        assert_eq!(decide(&at_max), (Step::Hold, Reason::AtBound));
    }

    #[test]
    fn a_backlog_the_workers_clear_within_the_window_holds() {
        let w = Window {
            backlog: 80,
            ..window()
        };
        assert_eq!(decide(&w), (Step::Hold, Reason::Steady));
    }

    #[test]
    fn the_first_window_has_no_baseline_and_grows_on_a_backlog() {
        let w = Window {
            backlog: 500,
            baseline: None,
            ..window()
        };
        assert!(matches!(decide(&w).0, Step::Grow { to: 5 }));
    }

    #[test]
    fn overload_halves_down_to_min_whatever_the_backlog() {
        let w = Window {
            current: 9,
            backlog: 10_000,
            overloads: 3,
            ..window()
        };
        let overload = Reason::Overload { signals: 3, of: 40 };
        assert_eq!(decide(&w), (Step::BackOff { to: 4 }, overload));
        let near_min = Window {
            current: 3,
            min: 2,
            ..w
        };
        assert_eq!(decide(&near_min).0, Step::BackOff { to: 2 });
        let at_min = Window {
            current: 2,
            ..near_min
        };
        assert_eq!(decide(&at_min), (Step::Hold, overload));
        assert_eq!(overload.to_string(), "overload signals (3 of 40 calls)");
    }

    #[test]
    fn rising_latency_halves_even_with_a_backlog() {
        // 40 calls at 80 ms against a 50 ms baseline: 1.6×.
        let w = Window {
            current: 8,
            backlog: 10_000,
            busy: 40 * 80 * MS,
            ..window()
        };
        let rose = Reason::LatencyRose {
            from: 50 * MS,
            to: 80 * MS,
        };
        assert_eq!(decide(&w), (Step::BackOff { to: 4 }, rose));
        assert_eq!(rose.to_string(), "latency rose from 50.0 ms to 80.0 ms");
        // 70 ms is 1.4×: latency holds, so the backlog grows it.
        let held = Window {
            busy: 40 * 70 * MS,
            ..w
        };
        assert_eq!(decide(&held).0, Step::Grow { to: 10 });
    }

    #[test]
    fn latency_needs_enough_calls_and_more_than_jitter_to_count_as_rising() {
        let few = Window {
            current: 8,
            backlog: 10_000,
            completed: MIN_SAMPLES - 1,
            busy: (MIN_SAMPLES as u32 - 1) * 200 * MS,
            ..window()
        };
        assert!(
            matches!(decide(&few).0, Step::Grow { .. }),
            "{:?}",
            decide(&few)
        );
        // 0.3 ms → 0.9 ms is 3×, but well under the noise floor.
        let fast = Window {
            current: 8,
            backlog: 100_000,
            completed: 1000,
            busy: 1000 * Duration::from_micros(900),
            baseline: Some(Duration::from_micros(300)),
            ..window()
        };
        assert!(
            matches!(decide(&fast).0, Step::Grow { .. }),
            "{:?}",
            decide(&fast)
        );
    }

    #[test]
    fn idle_workers_are_given_back_once_the_backlog_is_gone() {
        // 8 workers, 2 busy on average, 3 entries held.
        let w = Window {
            current: 8,
            backlog: 3,
            ..window()
        };
        assert_eq!(
            decide(&w),
            (
                Step::Shrink { to: 6 },
                Reason::BacklogGone {
                    entries: 3,
                    busy: 2.0
                }
            )
        );
        // Nothing at all happened: shrink toward min, one step at a time.
        let quiet = Window {
            current: 2,
            completed: 0,
            busy: Duration::ZERO,
            ..window()
        };
        assert_eq!(decide(&quiet).0, Step::Shrink { to: 1 });
        let at_min = Window {
            current: 1,
            ..quiet
        };
        assert_eq!(decide(&at_min), (Step::Hold, Reason::AtBound));
    }

    #[test]
    fn busy_workers_are_kept_even_without_a_backlog() {
        // 4 workers, 3.5 busy: 3 left would be over 80% busy.
        let w = Window {
            backlog: 2,
            completed: 70,
            busy: 70 * 50 * MS,
            ..window()
        };
        assert_eq!(decide(&w), (Step::Hold, Reason::Steady));
    }

    #[test]
    fn a_backlog_with_nothing_finished_holds() {
        // Paused, or every worker stuck in a call longer than the window.
        let w = Window {
            backlog: 50,
            completed: 0,
            busy: Duration::ZERO,
            ..window()
        };
        assert_eq!(
            decide(&w),
            (Step::Hold, Reason::NoCallsFinished { entries: 50 })
        );
    }
}
