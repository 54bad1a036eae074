//! The blocking XREADGROUP loop of one pool, on its own connection. It reads only as many
//! entries as there are free workers, so nothing waits unleased in memory.

use std::sync::Arc;
use std::time::Duration;

use super::{Pool, enqueue};
use crate::backoff::FailureStreak;
use crate::error::RedisErrorKind;
use crate::redis::Redis;
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
        if !free {
            break;
        }
        let count = pool
            .permits
            .available_permits()
            .clamp(1, pool.config.read_count);
        if pool
            .ordered
            .as_ref()
            .is_some_and(|o| o.owned_epoch().is_none())
        {
            break; // an ordered pool reads only while it owns the lease
        }
        // Never dropped mid-flight: a read cancelled after Redis answered would strand entries.
        let read = conn
            .read_group(&pool.stream.name, &pool.name, &pool.consumer, count, block)
            .await;
        let entries = match read {
            Ok(entries) => {
                streak.succeeded();
                entries
            }
            Err(e) if e.is(RedisErrorKind::NoGroup) => {
                // Logged once, by the call that actually recreates the group.
                pool.recreate_group().await;
                streak.failed();
                streak.wait(stop).await;
                continue;
            }
            Err(e) => {
                if e.is(RedisErrorKind::Protocol) {
                    conn.reset_connection();
                }
                if streak.failed() {
                    tracing::warn!(pool = %pool.name, error = %e, failures = streak.count(), "XREADGROUP failed; backing off");
                }
                streak.wait(stop).await;
                continue;
            }
        };
        if let Some(last) = entries.last() {
            pool.note_delivered(last.id);
        }
        pool.leases.hold(entries.iter().map(|e| e.id));
        if entries.is_empty() {
            continue;
        }
        // Slots for what was read (the janitor may have taken some meanwhile: then wait).
        let Ok(mut permits) = pool
            .permits
            .clone()
            .acquire_many_owned(entries.len() as u32)
            .await
        else {
            break;
        };
        for entry in entries {
            let Some(permit) = permits.split(1) else {
                break;
            };
            enqueue(pool, entry, 1, permit);
        }
    }
    tracing::debug!(pool = %pool.name, "reader stopped");
}
