//! The one place that turns an outcome into Redis state — XACK, "leave pending and redeliver
//! after the backoff", or an atomic move to the DLQ — and records the metrics for it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::consumer::Pool;
use crate::dispatch::DlqReason;
use crate::envelope;
use crate::handler::{Delivery, Outcome, truncate};
use crate::metrics;
use crate::redis::{RawEntry, StreamId};

/// `dlq_error` is capped at 1 KiB.
const ERROR_LIMIT: usize = 1024;
/// A DLQ move is retried this often before the entry is left to the janitor.
const DLQ_TRIES: u32 = 3;

/// Acknowledge (batched): success, or an entry that is not this pool's.
pub fn ack(pool: &Pool, id: StreamId) {
    if pool.acks.send(id).is_err() {
        // The acker is gone (shutdown): the entry stays pending and is redelivered later.
        tracing::debug!(pool = %pool.name, entry_id = %id, "acknowledgement dropped at shutdown");
    }
}

fn log_settled(d: &Delivery, outcome: &str, took: Duration, error: Option<&str>) {
    tracing::info!(
        pool = %d.pool,
        r#type = %d.event_type,
        entry_id = %d.entry_id,
        event_id = d.event_id.as_deref().unwrap_or(""),
        attempt = d.attempt,
        outcome,
        duration_ms = took.as_secs_f64() * 1000.0,
        error = error.map(|e| truncate(e, 200)).unwrap_or(""),
        "entry settled"
    );
}

/// Carries out a handler's outcome for `entry`.
pub async fn outcome(
    pool: &Pool,
    entry: &RawEntry,
    d: &Delivery,
    outcome: Outcome,
    took: Duration,
) {
    pool.activity.touch();
    pool.metrics.attempt(d.attempt);
    match outcome {
        Outcome::Success => {
            pool.metrics.processed(&d.event_type, took);
            log_settled(d, "processed", took, None);
            ack(pool, entry.id);
        }
        Outcome::Permanent { error } => {
            pool.metrics.failed(&d.event_type, took);
            log_settled(d, "rejected", took, Some(&error));
            // Boxed (here and below): the DLQ move's state is large and rarely needed, and
            // this future lives inside every in-flight entry's.
            Box::pin(dead_letter(
                pool,
                entry,
                d.attempt,
                DlqReason::Rejected,
                &error,
            ))
            .await;
        }
        Outcome::Retry { after, error } => {
            pool.metrics.failed(&d.event_type, took);
            let policy = &pool.config.retry;
            if d.attempt >= u64::from(policy.max_attempts) {
                log_settled(d, "dead_lettered", took, Some(&error));
                Box::pin(dead_letter(
                    pool,
                    entry,
                    d.attempt,
                    DlqReason::MaxAttempts,
                    &error,
                ))
                .await;
                return;
            }
            let wait = policy.backoff(d.attempt).max(after.unwrap_or_default());
            log_settled(d, "retry", took, Some(&error));
            pool.leases.retry_at(entry.id, Instant::now() + wait);
        }
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The DLQ copy: every original field, then the `dlq_*` fields of contract §1.
fn dlq_fields(
    pool: &Pool,
    entry: &RawEntry,
    attempts: u64,
    reason: DlqReason,
    error: &str,
) -> Vec<(Bytes, Bytes)> {
    let mut fields: Vec<(Bytes, Bytes)> = entry
        .fields
        .iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(b"dlq_"))
        .cloned()
        .collect();
    let mut put = |k: &'static str, v: String| {
        fields.push((Bytes::from_static(k.as_bytes()), Bytes::from(v)))
    };
    put("dlq_source_id", entry.id.to_string());
    put("dlq_group", pool.name.to_string());
    put("dlq_reason", reason.as_str().to_string());
    put("dlq_error", truncate(error, ERROR_LIMIT).to_string());
    put("dlq_attempts", attempts.to_string());
    put("dlq_failed_at", now_ms().to_string());
    fields
}

/// Moves `entry` to the DLQ atomically (XADD + XACK in one MULTI). If Redis cannot be reached
/// the entry stays pending; the janitor or the next delivery decides again.
pub async fn dead_letter(
    pool: &Pool,
    entry: &RawEntry,
    attempts: u64,
    reason: DlqReason,
    error: &str,
) {
    let ty = envelope::event_type(entry).unwrap_or_default();
    let fields = dlq_fields(pool, entry, attempts, reason, error);
    for attempt in 1..=DLQ_TRIES {
        let moved = pool
            .redis
            .dead_letter(
                &pool.stream.name,
                &pool.name,
                &pool.stream.dlq,
                entry.id,
                &fields,
            )
            .await;
        match moved {
            Ok(dlq_id) => {
                pool.leases.release(&[entry.id]);
                metrics::dead_lettered(&pool.name, &ty, reason);
                tracing::warn!(
                    pool = %pool.name, r#type = %ty, entry_id = %entry.id, dlq_id = %dlq_id,
                    reason = reason.as_str(), attempts, error = truncate(error, 200),
                    "entry dead-lettered"
                );
                return;
            }
            Err(e) if attempt == DLQ_TRIES => {
                tracing::error!(pool = %pool.name, entry_id = %entry.id, error = %e, "could not move the entry to the DLQ; it stays pending and will be retried");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
        }
    }
    // Leave it to the visibility timeout: hand the lease back now.
    pool.leases.retry_at(entry.id, Instant::now());
}

/// Entries that were pending but deleted behind weir's back: acknowledged, logged, counted.
pub async fn lost(pool: &Pool, ids: &[StreamId]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = pool.redis.ack(&pool.stream.name, &pool.name, ids).await {
        tracing::debug!(pool = %pool.name, error = %e, "XACK of lost entries failed");
    }
    report_lost(pool, ids);
}

/// Release, count and log entries found deleted (and already acknowledged).
pub fn report_lost(pool: &Pool, ids: &[StreamId]) {
    pool.leases.release(ids);
    metrics::lost(&pool.name, ids.len() as u64);
    tracing::warn!(
        pool = %pool.name,
        count = ids.len(),
        ids = %first_ids(ids),
        "pending entries were deleted from the stream before they were handled (XDEL/XTRIM by hand?); acknowledged and counted as lost"
    );
}

/// The first 100 IDs, comma-separated, for a log line.
pub fn first_ids(ids: &[StreamId]) -> String {
    let list: Vec<String> = ids.iter().take(100).map(|id| id.to_string()).collect();
    list.join(",")
}
