//! The blocking XREADGROUP loop of one pool, on its own connection. It reads only as many
//! entries as there are free workers, so nothing waits unleased in memory; with a handler
//! that answers at once it handles each batch itself (no worker hop) before reading on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio_util::sync::CancellationToken;

use super::job::Job;
use super::ordered::{Ordered, retry_later};
use super::worker::{Batch, Done, requeue_after, run_here};
use super::{Pool, enqueue};
use crate::error::{RedisError, RedisErrorKind};
use crate::redis::Redis;
use crate::streak::FailureStreak;
use crate::vocab::RawEntry;

/// Short enough that pausing and shutdown take effect within a second.
const BLOCK: Duration = Duration::from_millis(500);

/// Reads and hands out entries until `stop` (shutdown, an ordered pool losing its lease, or
/// the stall detector starting the reader over).
pub(crate) async fn read_until(pool: &Arc<Pool>, conn: &Redis, stop: &CancellationToken) {
    if pool.runs_inline() {
        return read_inline_until(pool, conn, stop).await;
    }
    let mut streak = FailureStreak::default();
    let block = pool.ordered.as_ref().map_or(BLOCK, |o| o.read_block(BLOCK));
    while !stop.is_cancelled() {
        if pool.is_paused() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        let Some(count) = free_workers(pool, stop).await else {
            break;
        };
        // Never dropped mid-flight: a read cancelled after Redis answered would strand entries.
        let read = conn
            .read_group(&pool.stream.name, &pool.name, &pool.consumer, count, block)
            .await;
        match read {
            Ok(entries) => {
                streak.succeeded();
                if !hand_out(pool, entries).await {
                    break;
                }
            }
            Err(e) => failed(pool, conn, &e, &mut streak, stop).await,
        }
    }
    tracing::debug!(pool = %pool.name, "reader stopped");
}

/// Reads kept in flight while a backlog lasts (see [`read_inline_until`]).
const PIPELINE: usize = 2;

/// The reader of a pool whose handler answers at once. It handles each batch itself while
/// the next reads are already on their way, so Redis reads while the engine handles: one
/// blocking XREADGROUP while the stream is quiet, and while a backlog lasts (the last read
/// came back full) up to [`PIPELINE`] non-blocking ones pipelined on its connection, which
/// hides the round trip. Every entry read is leased and handled in stream order; at most
/// `PIPELINE + 1` batches of `inline_read_count` are in memory.
async fn read_inline_until(pool: &Arc<Pool>, conn: &Redis, stop: &CancellationToken) {
    let mut streak = FailureStreak::default();
    let mut reads = FuturesOrdered::new();
    let mut batch = Vec::new();
    let mut backlog = false;
    let count = pool.config.inline_read_count;
    let block = pool.ordered.as_ref().map_or(BLOCK, |o| o.read_block(BLOCK));
    // An ordered pool reads only while it owns the lease (checked before every read).
    let owner_lost = || {
        pool.ordered
            .as_ref()
            .is_some_and(|o| o.owned_epoch().is_none())
    };
    loop {
        let reading = !stop.is_cancelled() && !pool.is_paused() && !owner_lost();
        let depth = if backlog { PIPELINE } else { 1 };
        while reading && reads.len() < depth {
            // A blocking read only on an otherwise idle connection: it would hold up the
            // reads pipelined behind it.
            let read = async move {
                if backlog {
                    conn.read_group_now(&pool.stream.name, &pool.name, &pool.consumer, count)
                        .await
                } else {
                    conn.read_group(&pool.stream.name, &pool.name, &pool.consumer, count, block)
                        .await
                }
            };
            reads.push_back(read);
        }
        if reads.is_empty() {
            let handed = run_inline(pool, std::mem::take(&mut batch)).await;
            if stop.is_cancelled() || owner_lost() || !handed {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        // Both run to completion: a read is never dropped once sent.
        let (read, handed) =
            tokio::join!(reads.next(), run_inline(pool, std::mem::take(&mut batch)));
        if !handed {
            stop_reading(reads).await;
            break;
        }
        match read {
            Some(Ok(entries)) => {
                streak.succeeded();
                backlog = entries.len() >= count;
                batch = entries;
            }
            Some(Err(e)) => {
                backlog = false;
                failed(pool, conn, &e, &mut streak, stop).await;
            }
            None => {}
        }
    }
    tracing::debug!(pool = %pool.name, "reader stopped");
}

/// How many entries to read: waits for a free worker, but does not hold permits through the
/// blocking read (the janitor needs them to hand out reclaimed entries meanwhile). `None`
/// when reading must stop: shutdown, or an ordered pool that no longer owns its lease.
async fn free_workers(pool: &Pool, stop: &CancellationToken) -> Option<usize> {
    let free = tokio::select! {
        permit = pool.permits.acquire() => permit.is_ok(),
        _ = stop.cancelled() => false,
    };
    let owner_lost = pool
        .ordered
        .as_ref()
        .is_some_and(|o| o.owned_epoch().is_none());
    if !free || owner_lost {
        return None;
    }
    Some(
        pool.permits
            .available_permits()
            .clamp(1, pool.config.read_count),
    )
}

/// Runs an inline handler on each entry read, in stream order, then sends the batch's
/// acknowledgements to the acker in one message. Leased first, like any entry read. False
/// when the pool is shutting down.
async fn run_inline(pool: &Arc<Pool>, entries: Vec<RawEntry>) -> bool {
    if !received(pool, &entries) {
        return true;
    }
    if let Some(ordered) = pool.ordered.as_ref() {
        return run_inline_ordered(pool, ordered, ordered.owned_epoch(), entries).await;
    }
    let mut batch = Batch::new(entries.len());
    for entry in &entries {
        batch.handle(pool, entry, 1, None).await;
    }
    batch.finish(pool);
    true
}

/// An ordered pool's batch, inline: each entry runs here, one at a time in stream order, so
/// keys keep their order trivially. Only an entry whose key is busy (an entry of it runs on
/// a worker, retries, or waits) waits in its lane, holding a worker slot as with workers, so
/// a slow key bounds what is read ahead; an entry that fails keeps its key busy through its
/// retry. `epoch`: the lease epoch the batch is handed out under; each entry is fenced again
/// as it runs.
async fn run_inline_ordered(
    pool: &Arc<Pool>,
    ordered: &Ordered,
    epoch: Option<u64>,
    entries: Vec<RawEntry>,
) -> bool {
    if epoch.is_none() {
        return true; // not the owner: they stay pending for the owner
    }
    let mut batch = Batch::new(entries.len());
    let mut handed = true;
    for entry in entries {
        // Only the reader makes keys busy, so with none busy (as long as nothing fails)
        // there is nothing to look up.
        if ordered.any_busy()
            && let Some(lane) = ordered.lane_of(&entry).filter(|&l| ordered.is_busy(l))
        {
            let Ok(permit) = pool.permits.clone().acquire_owned().await else {
                handed = false;
                break;
            };
            let job = Job::new(pool, entry, 1, permit, Some(lane), epoch);
            // Its key may have gone free while it waited for the slot: then it runs now.
            if let Some(job) = ordered.admit(job) {
                run_here(job, &mut batch).await;
            }
            continue;
        }
        if !ordered.may_run(epoch) {
            continue; // fenced: the lease was lost; it stays pending for the next owner
        }
        let (after, rate_wait) = match batch.handle(pool, &entry, 1, epoch).await {
            Done::RetryAfter(after) => (after, false),
            // Waiting for a rate token is not an attempt: queued again as it is.
            Done::RateLater(after) => (after, true),
            _ => continue,
        };
        let Ok(permit) = pool.permits.clone().acquire_owned().await else {
            handed = false;
            break;
        };
        let lane = ordered.lane_of(&entry);
        if let Some(lane) = lane {
            ordered.hold(lane);
        }
        let job = Job::new(pool, entry, 1, permit, lane, epoch);
        match rate_wait {
            true => requeue_after(job, after),
            false => retry_later(pool, job, after),
        }
    }
    batch.finish(pool);
    handed
}

/// Lets the reads in flight finish (a read is never dropped once sent); what they delivered
/// stays pending in this consumer, leased by no one, and is reclaimed after the visibility
/// timeout (or claimed by the next owner of an ordered pool).
async fn stop_reading<F: std::future::Future>(mut reads: FuturesOrdered<F>) {
    while reads.next().await.is_some() {}
}

/// What every read batch goes through first: the newest ID is noted (where a vanished group
/// is recreated) and every entry is leased. False for an empty batch.
fn received(pool: &Pool, entries: &[RawEntry]) -> bool {
    let Some(last) = entries.last() else {
        return false;
    };
    pool.note_delivered(last.id);
    pool.leases.hold(entries.iter().map(|e| e.id));
    true
}

/// Leases what was read and hands it to the workers, a slot each (the janitor may have taken
/// some slots meanwhile: then it waits). False when the pool is shutting down.
async fn hand_out(pool: &Arc<Pool>, entries: Vec<RawEntry>) -> bool {
    if !received(pool, &entries) {
        return true;
    }
    let Ok(mut permits) = pool
        .permits
        .clone()
        .acquire_many_owned(entries.len() as u32)
        .await
    else {
        return false;
    };
    for entry in entries {
        let Some(permit) = permits.split(1) else {
            break;
        };
        enqueue(pool, entry, 1, permit);
    }
    true
}

/// A failed read: recreate a vanished group, reset a confused connection, back off.
async fn failed(
    pool: &Pool,
    conn: &Redis,
    e: &RedisError,
    streak: &mut FailureStreak,
    stop: &CancellationToken,
) {
    if e.is(RedisErrorKind::NoGroup) {
        // Logged once, by the call that actually recreates the group.
        pool.recreate_group().await;
    } else if e.is(RedisErrorKind::Protocol) {
        conn.reset_connection();
    }
    if streak.failed() && !e.is(RedisErrorKind::NoGroup) {
        tracing::warn!(pool = %pool.name, error = %e, failures = streak.count(), "XREADGROUP failed; backing off");
    }
    streak.wait(stop).await;
}
