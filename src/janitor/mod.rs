//! Beside the pipeline: per pool, an XAUTOCLAIM pass that takes back entries idle past the
//! visibility timeout (crashed workers, and failed entries whose backoff ended), dead-letters
//! those past `max_attempts`, and counts deleted ones as lost, run only when the tick's
//! dead-letter sweep (XPENDING IDLE) saw an idle entry; consumer garbage collection; and,
//! per stream, trimming (`trim.rs`) toward `max_len` and `max_age_seconds` that never passes
//! an unread or unacknowledged entry.

mod trim;

pub(crate) use trim::trim_loop;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::consumer::{Pool, enqueue};
use crate::error::RedisErrorKind;
use crate::metrics;
use crate::redis::{IdleSweep, SweepResult};
use crate::settle;
use crate::streak::FailureStreak;
use crate::vocab::{DlqReason, StreamId};

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
        pool.metrics
            .dead_lettered(&entry.event_type, DlqReason::MaxAttempts);
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
    entries: Vec<crate::vocab::RawEntry>,
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
        if pool
            .dead_letter_if_used_up(&entry, count, "worker stopped (visibility timeout)")
            .await
        {
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
/// XINFO only picks the candidates: the check that decides runs with the delete, in one
/// script, so a consumer that read meanwhile is kept.
async fn collect_consumers(pool: &Pool, idle: Duration) {
    let Ok(consumers) = pool.redis.consumers(&pool.stream.name, &pool.name).await else {
        return;
    };
    for c in consumers {
        let candidate =
            c.name != pool.consumer && c.pending == 0 && u128::from(c.idle_ms) >= idle.as_millis();
        if !candidate {
            continue;
        }
        match pool
            .redis
            .delete_idle_consumer(&pool.stream.name, &pool.name, &c.name, idle)
            .await
        {
            Ok(Some(0)) => {
                tracing::info!(pool = %pool.name, consumer = %c.name, idle_ms = c.idle_ms, "deleted idle consumer with nothing pending")
            }
            Ok(Some(dropped)) => {
                metrics::lost(&pool.name, dropped);
                tracing::error!(pool = %pool.name, consumer = %c.name, dropped, "deleting an idle consumer dropped pending entries from the group: they are lost (never handled, never dead-lettered)");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(pool = %pool.name, consumer = %c.name, error = %e, "could not delete an idle consumer; trying again next time")
            }
        }
    }
}
