//! Adaptive concurrency (contract §12): a pool with `concurrency = { min, max }` has `max`
//! workers, but only as many may run a handler at once as [`Scale`] has slots. A controller
//! task per pool ([`control_loop`]) moves that number once per `scale_cooldown_seconds`, by
//! the pure rule in [`decide`](decide::decide), from what the window showed: the group's
//! backlog, the handler's latency and its overload signals.
//!
//! A fixed pool has a `Scale` too, with no slots: its workers never wait, and it only
//! reports its concurrency.

mod decide;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use decide::{Reason, Step, Window, decide};

use super::Pool;
use crate::config::{PoolConfig, Scaling};
use crate::metrics;

/// How a pool's concurrency stands, and for an adaptive pool the gate its workers pass.
pub struct Scale {
    pool: Arc<str>,
    /// Handlers allowed at once now: fixed, or the controller's last decision.
    current: AtomicUsize,
    /// The most: a fixed pool's concurrency, an adaptive pool's `max`.
    max: usize,
    /// Set for an adaptive pool.
    adaptive: Option<Adaptive>,
}

/// The moving parts of an adaptive pool.
struct Adaptive {
    scaling: Scaling,
    /// One permit per handler allowed to run: a worker holds one from taking a job to
    /// settling it.
    slots: Arc<Semaphore>,
    /// Slots still to be given up after a shrink: the free ones go at once, the rest as the
    /// handlers holding them finish (a shrink never waits for or cancels a running call).
    excess: AtomicUsize,
    /// The current window, reset by the controller at each decision.
    completed: AtomicU64,
    busy_nanos: AtomicU64,
    overloads: AtomicU64,
}

/// A worker's right to run one handler call, given back (or given up, after a shrink) when
/// dropped.
pub struct Slot {
    scale: Arc<Scale>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(adaptive) = &self.scale.adaptive else {
            return;
        };
        if let Some(permit) = self.permit.take()
            && take_one(&adaptive.excess)
        {
            permit.forget();
        }
    }
}

/// Decrements `n` if above zero; true if it did.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
        .is_ok()
}

impl Scale {
    /// The scale of `config`'s pool, at its initial concurrency (`min` when adaptive);
    /// records `weir_pool_concurrency`.
    pub fn new(config: &PoolConfig) -> Scale {
        let initial = config.initial_concurrency();
        let adaptive = config.scaling.map(|scaling| Adaptive {
            scaling,
            slots: Arc::new(Semaphore::new(initial)),
            excess: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            overloads: AtomicU64::new(0),
        });
        metrics::pool_concurrency(&config.name, initial);
        Scale {
            pool: config.name.as_str().into(),
            current: AtomicUsize::new(initial),
            max: config.concurrency,
            adaptive,
        }
    }

    /// Handlers allowed at once now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// `(min, max)`: equal for a fixed pool.
    pub fn bounds(&self) -> (usize, usize) {
        let min = self.adaptive.as_ref().map_or(self.max, |a| a.scaling.min);
        (min, self.max)
    }

    /// Waits for a slot to run a handler in: at once for a fixed pool (`None`).
    pub async fn slot(self: &Arc<Self>) -> Option<Slot> {
        let adaptive = self.adaptive.as_ref()?;
        // The semaphore is never closed; if it were, running without a slot beats stalling.
        let permit = adaptive.slots.clone().acquire_owned().await.ok();
        Some(Slot {
            scale: self.clone(),
            permit,
        })
    }

    /// A handler call finished after `took`; `overload` when it signalled overload. Counted
    /// into the current window of an adaptive pool; nothing for a fixed one.
    pub fn observe(&self, took: Duration, overload: bool) {
        let Some(a) = &self.adaptive else {
            return;
        };
        a.completed.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        a.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        if overload {
            a.overloads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The window's counters, reset for the next one: (completed, busy, overloads).
    fn take_window(a: &Adaptive) -> (u64, Duration, u64) {
        let completed = a.completed.swap(0, Ordering::Relaxed);
        let busy = Duration::from_nanos(a.busy_nanos.swap(0, Ordering::Relaxed));
        (completed, busy, a.overloads.swap(0, Ordering::Relaxed))
    }

    /// Moves the slot count to `to` and records the gauge.
    fn set(&self, a: &Adaptive, to: usize) {
        let from = self.current.swap(to, Ordering::Relaxed);
        if to > from {
            let mut add = to - from;
            // Slots not yet given up from an earlier shrink are simply kept.
            let _ = a
                .excess
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
                    let kept = e.min(to - from);
                    add = to - from - kept;
                    Some(e - kept)
                });
            a.slots.add_permits(add);
        } else if to < from {
            a.excess.fetch_add(from - to, Ordering::AcqRel);
            // The free slots go now; the busy ones when their calls finish.
            while a.excess.load(Ordering::Acquire) > 0 {
                let Ok(permit) = a.slots.try_acquire() else {
                    break;
                };
                if take_one(&a.excess) {
                    permit.forget();
                }
            }
        }
        metrics::pool_concurrency(&self.pool, to);
    }
}

/// The best mean latency of the last few windows: what "latency holds" is measured against.
/// A window, not all time, so a downstream that got slower for good becomes the new normal
/// after a while instead of holding the pool at `min` forever.
#[derive(Default)]
struct Baseline(Vec<Duration>);

impl Baseline {
    const WINDOWS: usize = 10;

    fn best(&self) -> Option<Duration> {
        self.0.iter().min().copied()
    }

    fn note(&mut self, w: &Window) {
        let Some(mean) = w
            .mean_latency()
            .filter(|_| w.completed >= decide::MIN_SAMPLES)
        else {
            return;
        };
        if self.0.len() == Self::WINDOWS {
            self.0.remove(0);
        }
        self.0.push(mean);
    }
}

/// The controller of one adaptive pool (nothing for a fixed one): every cooldown, one
/// decision from the window just ended, logged at INFO when it changes the concurrency.
/// `parts` are the pool's partitions (their groups make the backlog); `stream` is the
/// configured stream name, under which the current value is published for `weir status`.
/// Stops with `stop`.
pub(crate) async fn control_loop(
    scale: Arc<Scale>,
    parts: Vec<Arc<Pool>>,
    stream: String,
    stop: CancellationToken,
) {
    let (Some(a), Some(first)) = (scale.adaptive.as_ref(), parts.first()) else {
        return;
    };
    let report = report::Reporter::new(first, &stream, a.scaling.cooldown);
    let mut baseline = Baseline::default();
    let mut since = Instant::now();
    report.publish(scale.current()).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(a.scaling.cooldown) => {}
            _ = stop.cancelled() => break,
        }
        // A failed look at the backlog skips this decision; the window runs on.
        let Some(backlog) = backlog(&parts).await else {
            continue;
        };
        let (completed, busy, overloads) = Scale::take_window(a);
        let window = Window {
            current: scale.current(),
            min: a.scaling.min,
            max: scale.max,
            length: since.elapsed(),
            backlog,
            completed,
            busy,
            overloads,
            baseline: baseline.best(),
            rate_waited: first
                .rate
                .as_ref()
                .map_or(0, |rate| rate.take_waited() as u64),
        };
        since = Instant::now();
        let (step, reason) = decide(&window);
        baseline.note(&window);
        apply(&scale, a, step, reason);
        report.publish(scale.current()).await;
    }
    report.withdraw().await;
}

/// Carries out `step` and logs it with its reason.
fn apply(scale: &Scale, a: &Adaptive, step: Step, reason: Reason) {
    let from = scale.current();
    let (to, change) = match step {
        Step::Grow { to } => (to, "grow"),
        Step::Shrink { to } => (to, "shrink"),
        Step::BackOff { to } => (to, "back off"),
        Step::Hold => {
            tracing::debug!(pool = %scale.pool, concurrency = from, reason = %reason, "concurrency held");
            return;
        }
    };
    scale.set(a, to);
    tracing::info!(pool = %scale.pool, from, to, change, reason = %reason, "concurrency changed: {reason}");
}

/// The pool's unread plus pending entries over its partitions, from XINFO GROUPS; `None`
/// when Redis could not be asked.
async fn backlog(parts: &[Arc<Pool>]) -> Option<u64> {
    let mut total = 0;
    for part in parts {
        let groups = match part.redis.groups(&part.stream.name).await {
            Ok(groups) => groups,
            Err(e) => {
                tracing::debug!(pool = %part.name, error = %e, "could not read the backlog; concurrency unchanged this window");
                return None;
            }
        };
        if let Some(g) = groups.iter().find(|g| g.name == *part.name) {
            total += g.pending + unread(part, g).await;
        }
    }
    Some(total)
}

/// The group's unread entries: its `lag`, or when Redis cannot tell (after deletions, or
/// right after a restart) entries added minus entries read, or else none.
async fn unread(part: &Pool, g: &crate::redis::GroupInfo) -> u64 {
    if let Some(lag) = g.lag {
        return lag;
    }
    let Some(read) = g.entries_read else {
        return 0;
    };
    match part.redis.stream_info(&part.stream.name).await {
        Ok(info) => info.entries_added.saturating_sub(read),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn scale(concurrency: &str) -> Arc<Scale> {
        let text = format!(
            "[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = {{ kind = \"log\" }}\nconcurrency = {concurrency}\n"
        );
        let config = Config::from_toml(&text, std::path::Path::new(".")).expect("valid");
        Arc::new(Scale::new(&config.pools[0]))
    }

    fn free(scale: &Scale) -> usize {
        scale
            .adaptive
            .as_ref()
            .map_or(0, |a| a.slots.available_permits())
    }

    #[tokio::test]
    async fn a_fixed_pool_never_waits_and_reports_its_concurrency() {
        let s = scale("6");
        assert!(s.slot().await.is_none());
        assert_eq!((s.current(), s.bounds()), (6, (6, 6)));
    }

    #[tokio::test]
    async fn slots_follow_the_decisions_and_a_shrink_waits_for_busy_slots() {
        let s = scale("{ min = 2, max = 8 }");
        let a = s.adaptive.as_ref().expect("adaptive");
        assert_eq!((s.current(), free(&s), s.bounds()), (2, 2, (2, 8)));
        s.set(a, 5);
        assert_eq!(free(&s), 5);
        let held: Vec<Slot> = futures::future::join_all((0..4).map(|_| s.slot()))
            .await
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(free(&s), 1);
        // Down to 2: the free slot goes now, two of the four busy ones when they finish.
        s.set(a, 2);
        assert_eq!((s.current(), free(&s)), (2, 0));
        drop(held);
        assert_eq!(free(&s), 2, "two given up, two returned");
        // Growing while a shrink is still owed keeps the owed slots instead.
        let held: Vec<Slot> = futures::future::join_all((0..2).map(|_| s.slot()))
            .await
            .into_iter()
            .flatten()
            .collect();
        s.set(a, 1);
        s.set(a, 3);
        drop(held);
        assert_eq!((s.current(), free(&s)), (3, 3));
    }

    #[tokio::test]
    async fn the_window_counts_calls_latency_and_overload() {
        let s = scale("{ min = 1, max = 4 }");
        let a = s.adaptive.as_ref().expect("adaptive");
        s.observe(Duration::from_millis(30), false);
        s.observe(Duration::from_millis(50), true);
        assert_eq!(Scale::take_window(a), (2, Duration::from_millis(80), 1));
        assert_eq!(Scale::take_window(a), (0, Duration::ZERO, 0));
    }

    #[test]
    fn the_baseline_is_the_best_of_recent_windows_with_enough_calls() {
        let mut b = Baseline::default();
        let w = |ms: u64, completed: u64| Window {
            current: 1,
            min: 1,
            max: 1,
            length: Duration::from_secs(1),
            backlog: 0,
            completed,
            busy: Duration::from_millis(ms * completed),
            overloads: 0,
            baseline: None,
            rate_waited: 0,
        };
        b.note(&w(10, 2));
        assert_eq!(b.best(), None, "two calls say too little");
        b.note(&w(40, 10));
        b.note(&w(30, 10));
        assert_eq!(b.best(), Some(Duration::from_millis(30)));
        for _ in 0..Baseline::WINDOWS {
            b.note(&w(60, 10));
        }
        assert_eq!(
            b.best(),
            Some(Duration::from_millis(60)),
            "old windows age out"
        );
    }
}
