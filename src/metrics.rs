//! Every metric name weir exports, and typed helpers to record them. No metric name appears
//! anywhere else. Labels stay low-cardinality: pool, type, reason — never entry IDs.

use std::sync::OnceLock;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::sync::lock;
use crate::vocab::DlqReason;

pub const PROCESSED: &str = "weir_messages_processed_total";
pub const FAILED: &str = "weir_messages_failed_total";
pub const DEAD_LETTERED: &str = "weir_messages_dead_lettered_total";
pub const RECLAIMED: &str = "weir_messages_reclaimed_total";
pub const HANDLER_DURATION: &str = "weir_handler_duration_seconds";
pub const PUBLISHED: &str = "weir_messages_published_total";
pub const PUBLISH_REJECTED: &str = "weir_publish_rejected_total";
pub const LOST: &str = "weir_entries_lost_total";
pub const STREAM_LENGTH: &str = "weir_stream_length";
pub const DLQ_LENGTH: &str = "weir_dlq_length";
pub const GROUP_PENDING: &str = "weir_group_pending";
pub const GROUP_LAG: &str = "weir_group_lag";
pub const IN_FLIGHT: &str = "weir_in_flight";
pub const POOL_PAUSED: &str = "weir_pool_paused";
/// Handlers a pool lets run at once in this process: fixed, or where adaptive concurrency
/// stands now.
pub const POOL_CONCURRENCY: &str = "weir_pool_concurrency";
pub const GROUP_CONSUMERS: &str = "weir_group_consumers";
pub const OLDEST_PENDING_AGE: &str = "weir_oldest_pending_age_seconds";
/// Ordered pools: entries waiting behind a busy key (per pool, summed over partitions).
pub const ORDERED_WAITING: &str = "weir_ordered_waiting";
/// Ordered pools: streams or partitions whose ownership lease this process holds.
pub const POOL_OWNED: &str = "weir_pool_owned_partitions";
pub const DELIVERY_ATTEMPTS: &str = "weir_delivery_attempts";

/// Which delivery settled an entry: 1 is first time.
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0, 21.0];

/// Handler durations from 1 ms to 15 min.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 900.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle (`None` if another
/// recorder was installed first, e.g. by an embedding application).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HANDLER_DURATION.into()), DURATION_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(DELIVERY_ATTEMPTS.into()), ATTEMPT_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

pub fn dead_lettered(pool: &str, ty: &str, reason: DlqReason) {
    counter!(DEAD_LETTERED, "pool" => pool.to_string(), "type" => ty.to_string(), "reason" => reason.as_str())
        .increment(1);
}

pub fn reclaimed(pool: &str, n: u64) {
    counter!(RECLAIMED, "pool" => pool.to_string()).increment(n);
}

pub fn lost(pool: &str, n: u64) {
    counter!(LOST, "pool" => pool.to_string()).increment(n);
}

pub fn published(ty: &str) {
    counter!(PUBLISHED, "type" => ty.to_string()).increment(1);
}

pub fn publish_rejected(reason: &str) {
    counter!(PUBLISH_REJECTED, "reason" => reason.to_string()).increment(1);
}

pub fn stream_lengths(stream: u64, dlq: u64) {
    gauge!(STREAM_LENGTH).set(stream as f64);
    gauge!(DLQ_LENGTH).set(dlq as f64);
}

/// Creates the pool's counters at zero, so alerts on `increase()` and dashboards see a series
/// from the start instead of an absent one.
pub fn register_pool(pool: &str) {
    counter!(LOST, "pool" => pool.to_string()).increment(0);
    counter!(RECLAIMED, "pool" => pool.to_string()).increment(0);
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

/// A pool's concurrency in this process (adaptive pools: after each change).
pub fn pool_concurrency(pool: &str, concurrency: usize) {
    gauge!(POOL_CONCURRENCY, "pool" => pool.to_string()).set(concurrency as f64);
}

/// Age of the oldest unacknowledged entry (0 when nothing is pending).
pub fn oldest_pending(pool: &str, oldest: Option<crate::redis::StreamId>) {
    let now = crate::clock::now_ms();
    let age = oldest.map_or(0.0, |id| now.saturating_sub(id.ms) as f64 / 1000.0);
    gauge!(OLDEST_PENDING_AGE, "pool" => pool.to_string()).set(age);
}

/// Types tracked per pool before further types share the label `other`: a `"*"` pool sees
/// whatever publishers send, and label cardinality must stay bounded.
const MAX_TYPES: usize = 500;

struct TypeMetrics {
    processed: Counter,
    failed: Counter,
    duration: Histogram,
}

/// A pool's metric handles, resolved once per type: recording is then an atomic add, with
/// no label strings built on the hot path.
pub struct PoolMetrics {
    pool: String,
    /// Settled handler calls since start, read by the API's history sampler
    /// (`GET /api/v1/stats/history`) without going through the recorder.
    pub processed_total: AtomicU64,
    /// Failed handler calls (every failed attempt) since start.
    pub failed_total: AtomicU64,
    attempts: Histogram,
    by_type: Mutex<HashMap<String, Arc<TypeMetrics>>>,
}

impl PoolMetrics {
    pub fn new(pool: &str) -> PoolMetrics {
        PoolMetrics {
            pool: pool.to_string(),
            processed_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            attempts: histogram!(DELIVERY_ATTEMPTS, "pool" => pool.to_string()),
            by_type: Mutex::new(HashMap::new()),
        }
    }

    fn for_type(&self, ty: &str) -> Arc<TypeMetrics> {
        let mut map = lock(&self.by_type);
        if let Some(m) = map.get(ty) {
            return m.clone();
        }
        let label = if map.len() >= MAX_TYPES { "other" } else { ty };
        let labels = [("pool", self.pool.clone()), ("type", label.to_string())];
        let m = Arc::new(TypeMetrics {
            processed: counter!(PROCESSED, &labels),
            failed: counter!(FAILED, &labels),
            duration: histogram!(HANDLER_DURATION, &labels),
        });
        map.insert(label.to_string(), m.clone());
        m
    }

    pub fn processed(&self, ty: &str, took: Duration) {
        self.processed_total.fetch_add(1, Ordering::Relaxed);
        let m = self.for_type(ty);
        m.processed.increment(1);
        m.duration.record(took.as_secs_f64());
    }

    pub fn failed(&self, ty: &str, took: Duration) {
        self.failed_total.fetch_add(1, Ordering::Relaxed);
        let m = self.for_type(ty);
        m.failed.increment(1);
        m.duration.record(took.as_secs_f64());
    }

    pub fn attempt(&self, attempt: u64) {
        self.attempts.record(attempt as f64);
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
            let pool = PoolMetrics::new("orders");
            crate::sync::poison(&pool.by_type);
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
