//! The blocking XREADGROUP loop of one pool, on its own connection. It reads only as many
//! entries as there are free workers, so nothing waits unleased in memory.

use std::sync::Arc;
use std::time::Duration;

use super::{Pool, enqueue};
use crate::backoff::FailureStreak;
use crate::error::{RedisError, RedisErrorKind};
use crate::redis::{RawEntry, Redis};
use tokio_util::sync::CancellationToken;

/// Short enough that pausing and shutdown take effect within a second.
const BLOCK: Duration = Duration::from_millis(500);

pub(crate) async fn read_loop(pool: Arc<Pool>, conn: Redis) {
    read_until(&pool, &conn, &pool.stop).await;
}

/// Reads and hands out entries until `stop` (shutdown, or an ordered pool losing its lease).
pub(crate) async fn read_until(pool: &Arc<Pool>, conn: &Redis, stop: &CancellationToken) {
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
        // Wait for a free worker, but do not hold permits through the blocking read: the
        // janitor needs them to hand out reclaimed entries meanwhile.
        let free = tokio::select! {
            permit = pool.permits.acquire() => permit.is_ok(),
            _ = stop.cancelled() => break,
        };
        let owner_lost = pool
            .ordered
            .as_ref()
            .is_some_and(|o| o.owned_epoch().is_none());
        if !free || owner_lost {
            break; // an ordered pool reads only while it owns the lease
        }
        let count = pool
            .permits
            .available_permits()
            .clamp(1, pool.config.read_count);
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

/// Leases what was read and hands it to the workers, a slot each (the janitor may have taken
/// some slots meanwhile: then it waits). False when the pool is shutting down.
async fn hand_out(pool: &Arc<Pool>, entries: Vec<RawEntry>) -> bool {
    if let Some(last) = entries.last() {
        pool.note_delivered(last.id);
    }
    pool.leases.hold(entries.iter().map(|e| e.id));
    if entries.is_empty() {
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
