//! Every metric name weir exports, and typed helpers to record them. No metric name appears
//! anywhere else. Label values are bounded (contract §7): pools and reasons come from the
//! config and the code, and every `type` label goes through one rule, [`TypeLabels`]
//! (`labels.rs`): listed types, at most 100 more for a `"*"` pool, then `(other)`;
//! `(unrouted)` and `(missing)` for the rest. Never entry IDs.

mod labels;

use std::sync::OnceLock;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::histogram::{Buckets, Family};

use crate::vocab::DlqReason;
use labels::ByLabel;
pub use labels::TypeLabels;

pub const PROCESSED: &str = "weir_messages_processed_total";
pub const FAILED: &str = "weir_messages_failed_total";
pub const DEAD_LETTERED: &str = "weir_messages_dead_lettered_total";
pub const RECLAIMED: &str = "weir_messages_reclaimed_total";
pub const HANDLER_DURATION: &str = "weir_handler_duration_seconds";
pub const PUBLISHED: &str = "weir_messages_published_total";
pub const PUBLISH_REJECTED: &str = "weir_publish_rejected_total";
pub const LOST: &str = "weir_entries_lost_total";
/// Lease renewal ticks (XCLAIM … JUSTID of the entries in flight) that failed: entries drift
/// toward the visibility timeout while they do.
pub const LEASE_RENEWAL_FAILED: &str = "weir_lease_renewal_failures_total";
pub const STREAM_LENGTH: &str = "weir_stream_length";
pub const DLQ_LENGTH: &str = "weir_dlq_length";
pub const GROUP_PENDING: &str = "weir_group_pending";
pub const GROUP_LAG: &str = "weir_group_lag";
pub const IN_FLIGHT: &str = "weir_in_flight";
pub const POOL_PAUSED: &str = "weir_pool_paused";
/// Entries a pool has not handled yet: undelivered plus pending, counted by weir where
/// Redis reports no lag (contract §15); what to autoscale on.
pub const POOL_BACKLOG: &str = "weir_pool_backlog";
/// 1 while a pool is stalled in this process (contract §15, `/readyz`), else 0.
pub const POOL_STALLED: &str = "weir_pool_stalled";
/// Handlers a pool lets run at once in this process: fixed, or where adaptive concurrency
/// stands now.
pub const POOL_CONCURRENCY: &str = "weir_pool_concurrency";
pub const GROUP_CONSUMERS: &str = "weir_group_consumers";
pub const OLDEST_PENDING_AGE: &str = "weir_oldest_pending_age_seconds";
/// Ordered pools: entries waiting behind a busy key (per pool, summed over partitions).
pub const ORDERED_WAITING: &str = "weir_ordered_waiting";
/// Ordered pools: streams or partitions whose ownership lease this process holds.
pub const POOL_OWNED: &str = "weir_pool_owned_partitions";
/// Rate-limited pools (contract §14): entries waiting for a start token in this process.
pub const RATE_WAITING: &str = "weir_rate_waiting";
/// Rate-limited pools: times an entry had to wait for a start token.
pub const RATE_LIMITED: &str = "weir_rate_limited_total";
pub const DELIVERY_ATTEMPTS: &str = "weir_delivery_attempts";
/// Entries trimmed from the main stream, by `rule`: [`TRIM_MAX_LEN`] or [`TRIM_MAX_AGE`].
pub const TRIMMED: &str = "weir_entries_trimmed_total";
pub const TRIM_MAX_LEN: &str = "max_len";
pub const TRIM_MAX_AGE: &str = "max_age";
/// Delayed events waiting in the scheduled sets (contract §13), every partition's.
pub const SCHEDULED: &str = "weir_scheduled";
/// How late the most overdue delayed event is, by Redis's clock (0 when none is): above a
/// second or so, no mover runs or it cannot keep up.
pub const SCHEDULED_OVERDUE: &str = "weir_scheduled_overdue_seconds";
/// Delayed events this process's mover took out of the scheduled sets, by `outcome`:
/// `moved` (to the stream) or `dead_lettered` (no event: `malformed`).
pub const SCHEDULED_MOVED: &str = "weir_scheduled_moved_total";

/// Delivery spans not exported (contract §15): the export queue was full, or the collector
/// refused, failed or did not answer in time.
pub const TRACE_SPANS_DROPPED: &str = "weir_trace_spans_dropped_total";

/// Which delivery settled an entry: 1 is first time.
const ATTEMPT_BOUNDS: &[u64] = &[1, 2, 3, 4, 5, 8, 13, 21];

/// Handler durations from 1 ms to 15 min, in nanoseconds.
const DURATION_BOUNDS_NS: &[u64] = &[
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
    300_000_000_000,
    600_000_000_000,
    900_000_000_000,
];

/// The per-entry histograms, kept by weir rather than the recorder (see [`crate::histogram`]);
/// rendered after the recorder's metrics by [`render`].
static DURATIONS: Family = Family::new(
    HANDLER_DURATION,
    "Handler call duration, by pool and type.",
    DURATION_BOUNDS_NS,
    1e9,
);
static ATTEMPTS: Family = Family::new(
    DELIVERY_ATTEMPTS,
    "Which delivery settled an entry (1 = first), by pool.",
    ATTEMPT_BOUNDS,
    1.0,
);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle (`None` if another
/// recorder was installed first, e.g. by an embedding application).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Whether weir's own recorder is installed: then the per-entry histograms are weir's
/// [`Family`]s; under an embedding application's recorder they go through `metrics`.
fn own_recorder() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

/// The exposition text: the recorder's metrics, then weir's own histograms.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    DURATIONS.render(&mut text);
    ATTEMPTS.render(&mut text);
    text
}

pub fn reclaimed(pool: &str, n: u64) {
    counter!(RECLAIMED, "pool" => pool.to_string()).increment(n);
}

pub fn lost(pool: &str, n: u64) {
    counter!(LOST, "pool" => pool.to_string()).increment(n);
}

pub fn lease_renewal_failed(pool: &str) {
    counter!(LEASE_RENEWAL_FAILED, "pool" => pool.to_string()).increment(1);
}

pub fn trimmed(rule: &'static str, n: u64) {
    counter!(TRIMMED, "rule" => rule).increment(n);
}

/// `weir_messages_published_total`, by type label: one per publisher, whose handles are
/// resolved once per label.
pub struct Published {
    by_type: ByLabel<Counter>,
}

impl Published {
    /// Labels by `labels` (the engine-wide rule, [`TypeLabels::for_engine`]).
    pub fn new(labels: TypeLabels) -> Published {
        Published {
            by_type: ByLabel::new(Arc::new(labels)),
        }
    }

    /// `n` events of type `ty` were written.
    pub fn record(&self, ty: &str, n: u64) {
        self.by_type
            .get(ty, |label| counter!(PUBLISHED, "type" => label.to_string()))
            .increment(n);
    }
}

pub fn publish_rejected(reason: &str) {
    counter!(PUBLISH_REJECTED, "reason" => reason.to_string()).increment(1);
}

pub fn stream_lengths(stream: u64, dlq: u64) {
    gauge!(STREAM_LENGTH).set(stream as f64);
    gauge!(DLQ_LENGTH).set(dlq as f64);
}

/// The delayed events waiting and how late the most overdue is.
pub fn scheduled(members: u64, overdue_seconds: f64) {
    gauge!(SCHEDULED).set(members as f64);
    gauge!(SCHEDULED_OVERDUE).set(overdue_seconds);
}

/// What one round of the mover took out of a scheduled set.
pub fn scheduled_moved(moved: u64, dead_lettered: u64) {
    counter!(SCHEDULED_MOVED, "outcome" => "moved").increment(moved);
    counter!(SCHEDULED_MOVED, "outcome" => "dead_lettered").increment(dead_lettered);
}

/// Spans the exporter dropped (0 creates the series when export starts).
pub fn trace_spans_dropped(n: u64) {
    counter!(TRACE_SPANS_DROPPED).increment(n);
}

/// Creates the pool's counters at zero, so alerts on `increase()` and dashboards see a series
/// from the start instead of an absent one.
pub fn register_pool(pool: &str) {
    counter!(LOST, "pool" => pool.to_string()).increment(0);
    counter!(RECLAIMED, "pool" => pool.to_string()).increment(0);
    pool_stalled(pool, false);
}

/// A pool's backlog (see [`POOL_BACKLOG`]).
pub fn pool_backlog(pool: &str, backlog: u64) {
    gauge!(POOL_BACKLOG, "pool" => pool.to_string()).set(backlog as f64);
}

/// Whether a pool is stalled in this process now.
pub fn pool_stalled(pool: &str, stalled: bool) {
    gauge!(POOL_STALLED, "pool" => pool.to_string()).set(if stalled { 1.0 } else { 0.0 });
}

pub fn group_consumers(pool: &str, consumers: u64) {
    gauge!(GROUP_CONSUMERS, "pool" => pool.to_string()).set(consumers as f64);
}

pub fn pool_state(pool: &str, pending: u64, lag: Option<u64>, in_flight: usize, paused: bool) {
    gauge!(GROUP_PENDING, "pool" => pool.to_string()).set(pending as f64);
    if let Some(lag) = lag {
        gauge!(GROUP_LAG, "pool" => pool.to_string()).set(lag as f64);
    }
    gauge!(IN_FLIGHT, "pool" => pool.to_string()).set(in_flight as f64);
    gauge!(POOL_PAUSED, "pool" => pool.to_string()).set(if paused { 1.0 } else { 0.0 });
}

/// Ordered pools: entries waiting behind a busy key, and how many streams or partitions
/// this process owns.
pub fn ordered(pool: &str, waiting: usize, owned: usize) {
    gauge!(ORDERED_WAITING, "pool" => pool.to_string()).set(waiting as f64);
    gauge!(POOL_OWNED, "pool" => pool.to_string()).set(owned as f64);
}

/// A rate-limited pool: `delta` entries more (or fewer) wait for a start token.
pub fn rate_waiting(pool: &str, delta: f64) {
    gauge!(RATE_WAITING, "pool" => pool.to_string()).increment(delta);
}

/// A rate-limited pool: an entry had to wait for a start token.
pub fn rate_limited(pool: &str) {
    counter!(RATE_LIMITED, "pool" => pool.to_string()).increment(1);
}

/// A rate-limited pool's series at zero from the start.
pub fn register_rate(pool: &str) {
    gauge!(RATE_WAITING, "pool" => pool.to_string()).set(0.0);
    counter!(RATE_LIMITED, "pool" => pool.to_string()).increment(0);
}

/// A pool's concurrency in this process (adaptive pools: after each change).
pub fn pool_concurrency(pool: &str, concurrency: usize) {
    gauge!(POOL_CONCURRENCY, "pool" => pool.to_string()).set(concurrency as f64);
}

/// Age of the oldest unacknowledged entry (0 when nothing is pending).
pub fn oldest_pending(pool: &str, oldest: Option<crate::vocab::StreamId>) {
    let now = crate::clock::now_ms();
    let age = oldest.map_or(0.0, |id| now.saturating_sub(id.ms) as f64 / 1000.0);
    gauge!(OLDEST_PENDING_AGE, "pool" => pool.to_string()).set(age);
}

struct TypeMetrics {
    processed: Counter,
    failed: Counter,
    duration: Spread,
}

/// A histogram series: weir's own buckets, or the embedding application's recorder.
enum Spread {
    Own(Arc<Buckets>),
    Recorder(Histogram),
}

impl Spread {
    fn new(family: &Family, labels: &[(&'static str, &str)]) -> Spread {
        if own_recorder() {
            return Spread::Own(family.series(labels));
        }
        let labels: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Spread::Recorder(histogram!(family.name(), &labels))
    }

    fn record_nanos(&self, nanos: u64) {
        match self {
            Spread::Own(b) => b.record(nanos),
            Spread::Recorder(h) => h.record(nanos as f64 / 1e9),
        }
    }

    fn record_count(&self, n: u64) {
        match self {
            Spread::Own(b) => b.record(n),
            Spread::Recorder(h) => h.record(n as f64),
        }
    }
}

/// A pool's metric handles, resolved once per type label: recording is then a map lookup and
/// an atomic add, with no label strings built on the hot path.
pub struct PoolMetrics {
    pool: String,
    /// Counted since start for the pool's summary log line ([`Summary`]).
    summary: Tally,
    /// Settled handler calls since start, read by the API's history sampler
    /// (`GET /api/v1/stats/history`) without going through the recorder.
    pub processed_total: AtomicU64,
    /// Failed handler calls (every failed attempt) since start.
    pub failed_total: AtomicU64,
    attempts: Spread,
    by_type: ByLabel<TypeMetrics>,
}

impl PoolMetrics {
    /// `labels` is the pool's rule ([`TypeLabels::for_pool`]), shared by its partitions so a
    /// `"*"` pool admits its 100 types once, not once per partition.
    pub fn new(pool: &str, labels: Arc<TypeLabels>) -> PoolMetrics {
        PoolMetrics {
            pool: pool.to_string(),
            summary: Tally::default(),
            processed_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            attempts: Spread::new(&ATTEMPTS, &[("pool", pool)]),
            by_type: ByLabel::new(labels),
        }
    }

    fn for_type(&self, ty: &str) -> Arc<TypeMetrics> {
        self.by_type.get(ty, |label| {
            let labels = [("pool", self.pool.clone()), ("type", label.to_string())];
            TypeMetrics {
                processed: counter!(PROCESSED, &labels),
                failed: counter!(FAILED, &labels),
                duration: Spread::new(&DURATIONS, &[("pool", &self.pool), ("type", label)]),
            }
        })
    }

    /// An entry of type `ty` (`""` when it has none readable) moved to the DLQ. Rare next to
    /// processed and failed: the handle is looked up in the recorder each time.
    pub fn dead_lettered(&self, ty: &str, reason: DlqReason) {
        self.summary.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let label = self.by_type.labels().label(ty);
        counter!(DEAD_LETTERED, "pool" => self.pool.clone(), "type" => label.to_string(), "reason" => reason.as_str())
            .increment(1);
    }

    pub fn processed(&self, ty: &str, took: Duration) {
        self.processed_total.fetch_add(1, Ordering::Relaxed);
        self.summary.durations.record(took.as_nanos() as u64);
        let m = self.for_type(ty);
        m.processed.increment(1);
        m.duration.record_nanos(took.as_nanos() as u64);
    }

    pub fn failed(&self, ty: &str, took: Duration) {
        self.failed_total.fetch_add(1, Ordering::Relaxed);
        self.summary.durations.record(took.as_nanos() as u64);
        let m = self.for_type(ty);
        m.failed.increment(1);
        m.duration.record_nanos(took.as_nanos() as u64);
    }

    pub fn attempt(&self, attempt: u64) {
        self.attempts.record_count(attempt);
    }

    /// A failed attempt left pending for a retry.
    pub fn retried(&self) {
        self.summary.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// Where this pool (on this partition) stands since start, for [`Summary::since`].
    pub fn summary(&self) -> Summary {
        Summary {
            processed: self.processed_total.load(Ordering::Relaxed),
            failed: self.failed_total.load(Ordering::Relaxed),
            retried: self.summary.retried.load(Ordering::Relaxed),
            dead_lettered: self.summary.dead_lettered.load(Ordering::Relaxed),
            durations: self.summary.durations.counts(),
        }
    }
}

/// Handler times for the summary line: finer than the exported histogram at the low end,
/// where a fast handler lives (10 µs … 15 min).
const SUMMARY_BOUNDS_NS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
    900_000_000_000,
];

/// The summary counts of a pool that are not already kept for the API's history.
struct Tally {
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    durations: Buckets,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            durations: Buckets::detached(SUMMARY_BOUNDS_NS),
        }
    }
}

/// A pool's counts since start (or, after [`Summary::since`], over a window): what its
/// periodic INFO line reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub processed: u64,
    /// Failed attempts (each retry, and each failure that was dead-lettered).
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    durations: Vec<u64>,
}

impl Summary {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Summary) -> Summary {
        let durations = self
            .durations
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(before.durations.get(i).copied().unwrap_or(0)))
            .collect();
        Summary {
            processed: self.processed.saturating_sub(before.processed),
            failed: self.failed.saturating_sub(before.failed),
            retried: self.retried.saturating_sub(before.retried),
            dead_lettered: self.dead_lettered.saturating_sub(before.dead_lettered),
            durations,
        }
    }

    /// Adds another partition's counts.
    pub fn add(&mut self, other: &Summary) {
        self.processed += other.processed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        if self.durations.len() < other.durations.len() {
            self.durations.resize(other.durations.len(), 0);
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            *mine += theirs;
        }
    }

    /// Whether anything was handled or dead-lettered.
    pub fn is_empty(&self) -> bool {
        self.processed + self.failed + self.dead_lettered == 0
    }

    /// The handler time under which a share `q` of the calls finished, as the upper bound of
    /// its bucket (`None`: no calls; [`Duration::MAX`]: past 15 minutes).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        crate::histogram::quantile(SUMMARY_BOUNDS_NS, &self.durations, q).map(|ns| {
            if ns == u64::MAX {
                Duration::MAX
            } else {
                Duration::from_nanos(ns)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_metrics_still_record_after_a_panic_poisoned_their_lock() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let config = crate::Config::from_toml(
                "[[pools]]\nname = \"orders\"\ntypes = [\"order.created\"]\nhandler = { kind = \"log\" }\n",
                std::path::Path::new("."),
            )
            .expect("test config");
            let labels = TypeLabels::for_pool(&config, &config.pools[0]);
            let pool = PoolMetrics::new("orders", Arc::new(labels));
            crate::sync::poison(&pool.by_type.handles);
            pool.processed("order.created", Duration::from_millis(3));
            pool.failed("order.created", Duration::from_millis(3));
        });
        let text = handle.render();
        for name in [PROCESSED, FAILED] {
            let line = format!("{name}{{pool=\"orders\",type=\"order.created\"}} 1");
            assert!(text.contains(&line), "{line} missing in:\n{text}");
        }
    }
}
