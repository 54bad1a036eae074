//! Beside the pipeline: per pool, an XAUTOCLAIM pass that takes back entries idle past the
//! visibility timeout (crashed workers, and failed entries whose backoff ended), dead-letters
//! those past `max_attempts`, and counts deleted ones as lost, run only when the tick's
//! dead-letter sweep (XPENDING IDLE) saw an idle entry; consumer garbage collection;
//! and, per stream, trimming toward `max_len` and `max_age_seconds` that never passes an
//! unread or unacknowledged entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backoff::FailureStreak;
use crate::config::{Config, StreamConfig};
use crate::consumer::{Pool, enqueue};
use crate::error::RedisErrorKind;
use crate::metrics;
use crate::redis::{IdleSweep, Redis, StreamId, SweepResult};
use crate::settle;
use crate::vocab::DlqReason;

/// XAUTOCLAIM pages per pass, so one pass never monopolises Redis.
const PAGES_PER_PASS: usize = 10;
const PAGE: usize = 100;
/// Dead-letter sweep: XPENDING rows per page, pages per tick, IDs per script.
const SWEEP_PAGE: usize = 1000;
const SWEEP_PAGES: usize = 200;
const SWEEP_BATCH: usize = 250;
/// How often dead consumers are looked for, at most.
const GC_EVERY: Duration = Duration::from_secs(30);

pub(crate) async fn reclaim_loop(pool: Arc<Pool>, interval: Duration, consumer_gc: Duration) {
    let (mut cursor, mut sweep_cursor) = (StreamId::ZERO, StreamId::ZERO);
    let mut streak = FailureStreak::default();
    let mut last_gc = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = pool.stop.cancelled() => break,
        }
        if pool.is_paused() {
            continue;
        }
        if pool.ordered.is_some() {
            // Ordered pools retry in-process and their owner takes over pending entries in
            // order: no reclaim, no sweep; only dead consumers are collected.
            if last_gc.elapsed() >= GC_EVERY.min(consumer_gc / 2) {
                last_gc = Instant::now();
                collect_consumers(&pool, consumer_gc).await;
            }
            continue;
        }
        let swept = sweep(&pool, &mut sweep_cursor).await;
        let reclaimed = match swept {
            // Nothing pending is idle past the visibility timeout: XAUTOCLAIM would claim
            // nothing, and costs Redis a stream lookup per pending entry it scans.
            Ok(Idle::None) if cursor == StreamId::ZERO => Ok(cursor),
            Ok(_) => reclaim_pass(&pool, cursor).await,
            Err(e) => Err(e),
        };
        match reclaimed {
            Ok(next) => {
                cursor = next;
                streak.succeeded();
            }
            Err(e) => {
                if e.is(RedisErrorKind::Protocol) {
                    pool.redis.reset_connection();
                }
                if streak.failed() {
                    tracing::warn!(pool = %pool.name, error = %e, "reclaim pass failed");
                }
                if e.is(RedisErrorKind::NoGroup) {
                    (cursor, sweep_cursor) = (StreamId::ZERO, StreamId::ZERO);
                }
                streak.wait(&pool.stop).await;
                continue;
            }
        }
        // Looked for at least every 30 s, and at least twice per `consumer_gc_seconds`.
        if last_gc.elapsed() >= GC_EVERY.min(consumer_gc / 2) {
            last_gc = Instant::now();
            collect_consumers(&pool, consumer_gc).await;
        }
    }
}

/// What a sweep saw of the entries idle past the visibility timeout.
#[derive(Debug, PartialEq)]
enum Idle {
    /// None in the whole PEL (the sweep went through it from the start).
    None,
    /// Some, or the sweep did not see the whole PEL.
    Maybe,
}

/// The dead-letter sweep: scans the pending entries idle past the visibility timeout
/// (XPENDING IDLE, no claim) from `cursor` and moves those that used up `max_attempts` to the
/// DLQ in batches, one script per batch. It needs no worker slots, so a large backlog of
/// over-attempted entries (after a crash, or a handler that was down) drains at Redis speed
/// instead of at the pace of the reclaim pass. At most [`SWEEP_PAGES`] pages per tick.
async fn sweep(pool: &Pool, cursor: &mut StreamId) -> Result<Idle, crate::error::RedisError> {
    let (stream, group) = (&pool.stream.name, &*pool.name);
    let retry = &pool.config.retry;
    let job = IdleSweep {
        stream,
        dlq: &pool.stream.dlq,
        group,
        min_idle: retry.visibility_timeout,
        max_attempts: retry.max_attempts,
        error: "no success after {n} deliveries; the last one timed out or its worker stopped (visibility timeout)",
    };
    let mut seen = if *cursor == StreamId::ZERO {
        Idle::None
    } else {
        Idle::Maybe
    };
    for _ in 0..SWEEP_PAGES {
        let rows = pool
            .redis
            .idle_pending(stream, group, job.min_idle, *cursor, SWEEP_PAGE)
            .await?;
        if !rows.is_empty() {
            seen = Idle::Maybe;
        }
        let over: Vec<StreamId> = rows
            .iter()
            .filter(|(_, count)| retry.exhausted(*count))
            .map(|(id, _)| *id)
            .collect();
        for batch in over.chunks(SWEEP_BATCH) {
            let result = pool.redis.dead_letter_idle(&job, batch).await?;
            report_swept(pool, &result);
        }
        match rows.last() {
            Some((last, _)) if rows.len() == SWEEP_PAGE => *cursor = last.next(),
            _ => {
                *cursor = StreamId::ZERO;
                return Ok(seen);
            }
        }
    }
    Ok(Idle::Maybe)
}

fn report_swept(pool: &Pool, result: &SweepResult) {
    if !result.lost.is_empty() {
        pool.leases.release(&result.lost);
        settle::report_lost(&pool.name, &result.lost);
    }
    if result.moved.is_empty() {
        return;
    }
    let ids: Vec<StreamId> = result.moved.iter().map(|e| e.id).collect();
    pool.leases.release(&ids);
    for entry in &result.moved {
        metrics::dead_lettered(&pool.name, &entry.event_type, DlqReason::MaxAttempts);
        tracing::debug!(pool = %pool.name, r#type = %entry.event_type, entry_id = %entry.id, dlq_id = %entry.dlq_id, attempts = entry.attempts, "entry dead-lettered by the sweep");
    }
    tracing::warn!(
        pool = %pool.name,
        count = ids.len(),
        ids = %settle::first_ids(&ids),
        reason = DlqReason::MaxAttempts.as_str(),
        "entries idle past the visibility timeout after their last attempt were dead-lettered (their worker died or hung on the final delivery)"
    );
}

/// One pass: up to [`PAGES_PER_PASS`] pages from `cursor`; returns where to continue.
async fn reclaim_pass(
    pool: &Arc<Pool>,
    mut cursor: StreamId,
) -> Result<StreamId, crate::error::RedisError> {
    let (stream, group) = (&pool.stream.name, &*pool.name);
    let retry = &pool.config.retry;
    for _ in 0..PAGES_PER_PASS {
        let room = pool.permits.available_permits().min(PAGE);
        if room == 0 {
            break;
        }
        let page = pool
            .redis
            .autoclaim(
                stream,
                group,
                &pool.consumer,
                retry.visibility_timeout,
                cursor,
                room,
            )
            .await?;
        tracing::trace!(pool = group, claimed = page.entries.len(), deleted = page.deleted.len(), next = %page.next, "reclaim page");
        pool.lost(&page.deleted).await;
        hand_out_claimed(pool, page.entries).await?;
        cursor = page.next;
        if cursor == StreamId::ZERO {
            break;
        }
    }
    Ok(cursor)
}

/// Entries one reclaim page claimed: dead-lettered when their attempts are used up, handed
/// to the workers otherwise (a permit each), in claim order.
async fn hand_out_claimed(
    pool: &Arc<Pool>,
    entries: Vec<crate::redis::RawEntry>,
) -> Result<(), crate::error::RedisError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (stream, group) = (&pool.stream.name, &*pool.name);
    let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
    pool.leases.hold(ids.iter().copied());
    let counts = match pool.redis.delivery_counts(stream, group, &ids).await {
        Ok(counts) => counts,
        Err(e) => {
            // Not held after all: let them go idle again for the next pass.
            for id in ids {
                pool.leases.retry_at(id, Instant::now());
            }
            return Err(e);
        }
    };
    report_reclaimed(pool, &ids);
    for entry in entries {
        let Some(&count) = counts.get(&entry.id) else {
            pool.leases.release(&[entry.id]);
            continue; // acknowledged meanwhile
        };
        // XAUTOCLAIM itself counted a delivery; the handler has seen `count - 1`.
        let made = count.saturating_sub(1);
        if pool.config.retry.exhausted(made) {
            let error = format!(
                "no success after {made} deliveries; the last one timed out or its worker stopped (visibility timeout)"
            );
            pool.dead_letter(&entry, made, DlqReason::MaxAttempts, &error)
                .await;
            continue;
        }
        let permit = tokio::select! {
            permit = pool.permits.clone().acquire_owned() => permit.ok(),
            _ = pool.stop.cancelled() => None,
        };
        match permit {
            Some(permit) => enqueue(pool, entry, count, permit),
            // Shutting down: give it back to the PEL for another consumer.
            None => pool.leases.retry_at(entry.id, Instant::now()),
        }
    }
    Ok(())
}

/// Counts and logs the claimed entries that were not retries this process scheduled: their
/// worker died or hung.
fn report_reclaimed(pool: &Pool, ids: &[StreamId]) {
    let taken_over = ids
        .iter()
        .filter(|id| !pool.leases.was_scheduled(**id))
        .count();
    if taken_over > 0 {
        metrics::reclaimed(&pool.name, taken_over as u64);
        tracing::info!(
            pool = %pool.name,
            entries = taken_over,
            "reclaimed entries idle past the visibility timeout (a worker died or hung)"
        );
    }
}

/// Deletes other consumers of the group that own nothing and have been idle long enough.
async fn collect_consumers(pool: &Pool, idle: Duration) {
    let Ok(consumers) = pool.redis.consumers(&pool.stream.name, &pool.name).await else {
        return;
    };
    for c in consumers {
        let expired =
            c.name != pool.consumer && c.pending == 0 && u128::from(c.idle_ms) >= idle.as_millis();
        if expired
            && pool
                .redis
                .delete_consumer(&pool.stream.name, &pool.name, &c.name)
                .await
                .is_ok()
        {
            tracing::info!(pool = %pool.name, consumer = %c.name, idle_ms = c.idle_ms, "deleted idle consumer with nothing pending");
        }
    }
}

/// Trims the main stream toward `max_len` and `max_age_seconds`, never past an entry a group
/// has not read or not acknowledged.
pub(crate) async fn trim_loop(redis: Redis, config: Arc<Config>, cancel: CancellationToken) {
    let every = config.janitor.interval.max(Duration::from_secs(1));
    let mut streak = FailureStreak::default();
    let mut reported = HashMap::new();
    // Both series exist from the start, so dashboards and alerts see 0 rather than nothing.
    metrics::trimmed(metrics::TRIM_MAX_LEN, 0);
    metrics::trimmed(metrics::TRIM_MAX_AGE, 0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => break,
        }
        let mut trimmed = Ok(0);
        for part in config.stream.partition_list() {
            if let Err(e) = detect_unread_deletions(&redis, &config, &part, &mut reported).await {
                tracing::debug!(error = %e, "could not check for entries deleted before they were read");
            }
            trimmed = trim_once(&redis, &config, &part).await;
            if trimmed.is_err() {
                break;
            }
        }
        match trimmed {
            Ok(_) => streak.succeeded(),
            Err(e) => {
                if e.is(RedisErrorKind::Protocol) {
                    redis.reset_connection();
                }
                if streak.failed() {
                    tracing::warn!(error = %e, "trimming failed");
                }
                streak.wait(&cancel).await;
            }
        }
    }
}

/// Entries removed from the stream before a configured pool read them (XTRIM or XDEL by
/// hand, or `MAXLEN` on publish): the stream's first recorded entry is newer than the
/// group's last-delivered ID. Logged at WARN with the ID range and counted as lost, each
/// entry once. The count is estimated from Redis's counters: entries added, minus entries still
/// there, minus entries the group had read.
async fn detect_unread_deletions(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
    reported: &mut HashMap<(String, String), u64>,
) -> Result<(), crate::error::RedisError> {
    let stream = &part.name;
    let info = redis.stream_info(stream).await?;
    if info.recorded_first == StreamId::ZERO {
        return Ok(());
    }
    for group in redis.groups(stream).await? {
        // A group that never read anything (a pool added to an old, trimmed stream) missed
        // nothing that existed in its lifetime.
        if config.pool(&group.name).is_none() || group.last_delivered == StreamId::ZERO {
            continue;
        }
        // IDs are sparse, so the counters decide: more entries removed than the group had
        // read means some were removed unread. Without a read counter (after a restart),
        // a deletion past the group's position is the sign, count unknown.
        let removed = info.entries_added.saturating_sub(info.length);
        let missed = match group.entries_read {
            Some(read) => removed.saturating_sub(read),
            None if info.max_deleted > group.last_delivered => 1,
            None => 0,
        };
        // Count each missed entry once: only what grew since the last report.
        let key = (stream.clone(), group.name.clone());
        let already = reported.get(&key).copied().unwrap_or(0);
        if missed <= already {
            if missed == 0 {
                reported.remove(&key);
            }
            continue;
        }
        reported.insert(key, missed);
        metrics::lost(&group.name, missed - already);
        tracing::warn!(
            pool = %group.name,
            after = %group.last_delivered,
            before = %info.recorded_first,
            missed = if group.entries_read.is_some() { (missed - already).to_string() } else { "unknown".to_string() },
            "entries were deleted from the stream before this pool read them (XTRIM/XDEL by hand, or MAXLEN on publish); counted as lost"
        );
    }
    Ok(())
}

/// The oldest entry any group still needs, or `None` when trimming must not happen at all
/// (a configured group is missing, so its position is unknown).
pub async fn safe_trim_point(
    redis: &Redis,
    config: &Config,
    stream: &str,
) -> Result<Option<StreamId>, crate::error::RedisError> {
    let groups = redis.groups(stream).await?;
    let by_name: HashMap<&str, _> = groups.iter().map(|g| (g.name.as_str(), g)).collect();
    if config
        .pools
        .iter()
        .any(|p| !by_name.contains_key(p.name.as_str()))
    {
        return Ok(None);
    }
    let mut safe: Option<StreamId> = None;
    for g in &groups {
        let needed = if g.pending > 0 {
            match redis.pending_summary(stream, &g.name).await?.1 {
                Some(min) => min,
                None => g.last_delivered.next(),
            }
        } else {
            g.last_delivered.next()
        };
        safe = Some(safe.map_or(needed, |s| s.min(needed)));
    }
    Ok(safe)
}

/// One trimming step on one partition: toward `max_len`, then (with `max_age_seconds`) up
/// to the age limit; returns how many entries were removed.
pub async fn trim_once(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
) -> Result<u64, crate::error::RedisError> {
    let mut removed = trim_to_length(redis, config, part).await?;
    if let Some(max_age) = part.max_age {
        removed += trim_by_age(redis, config, part, max_age).await?;
    }
    Ok(removed)
}

/// Trims toward `max_len`, never past [`safe_trim_point`].
async fn trim_to_length(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
) -> Result<u64, crate::error::RedisError> {
    let stream = &part.name;
    let mut removed = 0;
    for _ in 0..10 {
        let len = redis.stream_len(stream).await?;
        if len <= part.max_len {
            break;
        }
        let Some(safe) = safe_trim_point(redis, config, stream).await? else {
            break;
        };
        let excess = (len - part.max_len).min(10_000);
        let Some(cut) = redis.nth_id(stream, excess).await? else {
            break;
        };
        let n = redis.trim_before(stream, cut.next().min(safe)).await?;
        removed += n;
        if n == 0 {
            break;
        }
    }
    report_trimmed(stream, metrics::TRIM_MAX_LEN, removed, None);
    Ok(removed)
}

/// Trims entries whose ID is older than `max_age` (XTRIM MINID), never past
/// [`safe_trim_point`]: whole nodes first (`~`, at most 10 000 entries a call), then, once
/// only the boundary node is left, exactly, so a quiet stream is trimmed too.
async fn trim_by_age(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
    max_age: Duration,
) -> Result<u64, crate::error::RedisError> {
    let stream = &part.name;
    let oldest_allowed = StreamId {
        ms: crate::clock::now_ms().saturating_sub(max_age.as_millis() as u64),
        seq: 0,
    };
    let first = redis.range(stream, "-", "+", 1).await?;
    if first.first().is_none_or(|e| e.id >= oldest_allowed) {
        return Ok(0);
    }
    let Some(safe) = safe_trim_point(redis, config, stream).await? else {
        return Ok(0);
    };
    let cut = oldest_allowed.min(safe);
    let mut removed = 0;
    let mut whole_nodes_gone = false;
    for _ in 0..10 {
        let n = redis.trim_before(stream, cut).await?;
        removed += n;
        if n == 0 {
            whole_nodes_gone = true;
            break;
        }
    }
    if whole_nodes_gone {
        removed += redis.trim_before_exactly(stream, cut).await?;
    }
    report_trimmed(stream, metrics::TRIM_MAX_AGE, removed, Some(cut));
    Ok(removed)
}

/// Counts trimmed entries by rule (`weir_entries_trimmed_total{rule}`) and logs them at
/// DEBUG (a busy stream is trimmed every second).
fn report_trimmed(stream: &str, rule: &'static str, removed: u64, cut: Option<StreamId>) {
    if removed == 0 {
        return;
    }
    metrics::trimmed(rule, removed);
    match cut {
        Some(before) => {
            tracing::debug!(stream = %stream, removed, rule, %before, "trimmed the main stream")
        }
        None => tracing::debug!(stream = %stream, removed, rule, "trimmed the main stream"),
    }
}
