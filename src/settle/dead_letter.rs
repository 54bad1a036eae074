//! Carrying out a dead letter: the DLQ copy's fields (contract §1, written here once for
//! Rust; the sweep script writes the same fields) and the atomic move, retried a few times.

use std::time::Duration;

use bytes::Bytes;

use crate::clock;
use crate::envelope;
use crate::metrics;
use crate::redis::Redis;
use crate::vocab::{
    DLQ_ATTEMPTS, DLQ_ERROR, DLQ_ERROR_LIMIT, DLQ_FAILED_AT, DLQ_GROUP, DLQ_PREFIX, DLQ_REASON,
    DLQ_SOURCE_ID, DlqReason, RawEntry, StreamId, truncate,
};

/// A DLQ move is retried this often before the entry is left to the janitor.
const DLQ_TRIES: u32 = 3;

/// Where a pool's dead letters go: all a DLQ move needs to know.
pub struct DlqTarget<'a> {
    /// Shared connection (not a blocking reader's).
    pub redis: &'a Redis,
    /// The stream (or partition) the entry is pending in.
    pub stream: &'a str,
    /// The DLQ stream beside it.
    pub dlq: &'a str,
    /// The pool, i.e. the consumer group.
    pub group: &'a str,
    /// The pool's metrics, whose type labels are bounded.
    pub metrics: &'a metrics::PoolMetrics,
}

/// The DLQ copy: every original field except earlier `dlq_*` ones, then the `dlq_*` fields.
pub fn dlq_fields(
    entry: &RawEntry,
    group: &str,
    attempts: u64,
    reason: DlqReason,
    error: &str,
    failed_at_ms: u64,
) -> Vec<(Bytes, Bytes)> {
    let mut fields: Vec<(Bytes, Bytes)> = entry
        .fields
        .iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(DLQ_PREFIX.as_bytes()))
        .cloned()
        .collect();
    let mut put = |k: &'static str, v: String| {
        fields.push((Bytes::from_static(k.as_bytes()), Bytes::from(v)))
    };
    put(DLQ_SOURCE_ID, entry.id.to_string());
    put(DLQ_GROUP, group.to_string());
    put(DLQ_REASON, reason.as_str().to_string());
    put(DLQ_ERROR, truncate(error, DLQ_ERROR_LIMIT).to_string());
    put(DLQ_ATTEMPTS, attempts.to_string());
    put(DLQ_FAILED_AT, failed_at_ms.to_string());
    fields
}

/// Moves `entry` to the DLQ atomically (XADD + XACK in one script), counts and logs it.
/// Returns whether it moved; if Redis could not be reached it stays pending and the caller
/// hands it back to the visibility timeout.
pub async fn dead_letter(
    target: &DlqTarget<'_>,
    entry: &RawEntry,
    attempts: u64,
    reason: DlqReason,
    error: &str,
) -> bool {
    let ty = envelope::event_type(entry).unwrap_or_default();
    let fields = dlq_fields(
        entry,
        target.group,
        attempts,
        reason,
        error,
        clock::now_ms(),
    );
    for attempt in 1..=DLQ_TRIES {
        let moved = target
            .redis
            .dead_letter(target.stream, target.group, target.dlq, entry.id, &fields)
            .await;
        match moved {
            Ok(dlq_id) => {
                target.metrics.dead_lettered(&ty, reason);
                tracing::warn!(
                    pool = target.group, r#type = %ty, entry_id = %entry.id, dlq_id = %dlq_id,
                    reason = reason.as_str(), attempts, error = truncate(error, 200),
                    "entry dead-lettered"
                );
                return true;
            }
            Err(e) if attempt == DLQ_TRIES => {
                tracing::error!(pool = target.group, entry_id = %entry.id, error = %e, "could not move the entry to the DLQ; it stays pending and will be retried");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
        }
    }
    false
}

/// Entries that were pending but deleted behind weir's back: acknowledged, counted, logged.
/// The caller releases its leases on them.
pub async fn lost(target: &DlqTarget<'_>, ids: &[StreamId]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = target.redis.ack(target.stream, target.group, ids).await {
        tracing::debug!(pool = target.group, error = %e, "XACK of lost entries failed");
    }
    report_lost(target.group, ids);
}

/// Count and log entries found deleted (and already acknowledged).
pub fn report_lost(group: &str, ids: &[StreamId]) {
    metrics::lost(group, ids.len() as u64);
    tracing::warn!(
        pool = group,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dlq_copy_keeps_the_fields_and_replaces_old_dlq_fields() {
        let entry = RawEntry {
            id: StreamId { ms: 5, seq: 1 },
            fields: Some(vec![
                (Bytes::from_static(b"type"), Bytes::from_static(b"t")),
                (
                    Bytes::from_static(b"dlq_reason"),
                    Bytes::from_static(b"old"),
                ),
                (Bytes::from_static(b"tenant"), Bytes::from_static(b"acme")),
            ]),
        };
        let long = "e".repeat(5000);
        let fields = dlq_fields(&entry, "p", 3, DlqReason::MaxAttempts, &long, 42);
        let get = |k: &str| {
            let found: Vec<_> = fields.iter().filter(|(f, _)| f == k.as_bytes()).collect();
            assert_eq!(found.len(), 1, "{k} once");
            String::from_utf8(found[0].1.to_vec()).unwrap_or_default()
        };
        assert_eq!(get("type"), "t");
        assert_eq!(get("tenant"), "acme");
        assert_eq!(get("dlq_reason"), "max_attempts");
        assert_eq!(get("dlq_source_id"), "5-1");
        assert_eq!(get("dlq_group"), "p");
        assert_eq!(get("dlq_attempts"), "3");
        assert_eq!(get("dlq_failed_at"), "42");
        assert!(get("dlq_error").len() <= DLQ_ERROR_LIMIT);
    }
}
