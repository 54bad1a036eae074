//! The blocking XREADGROUP loop of one pool, on its own connection. It reads only as many
//! entries as there are free workers, so nothing waits unleased in memory.

use std::sync::Arc;
use std::time::Duration;

use super::{Pool, backoff, spawn_worker};
use crate::error::RedisErrorKind;
use crate::redis::Redis;

/// Short enough that pausing and shutdown take effect within a second.
const BLOCK: Duration = Duration::from_millis(500);

pub(crate) async fn read_loop(pool: Arc<Pool>, conn: Redis) {
    let mut failures = 0u32;
    let mut nogroup_logged = false;
    while !pool.stop.is_cancelled() {
        if pool.is_paused() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = pool.stop.cancelled() => {}
            }
            continue;
        }
        let first = tokio::select! {
            permit = pool.permits.clone().acquire_owned() => permit,
            _ = pool.stop.cancelled() => break,
        };
        let Ok(mut permits) = first else { break };
        let extra = pool
            .permits
            .available_permits()
            .min(pool.config.read_count - 1);
        if extra > 0
            && let Ok(more) = pool.permits.clone().try_acquire_many_owned(extra as u32)
        {
            permits.merge(more);
        }
        let count = permits.num_permits();
        // Never dropped mid-flight: a read cancelled after Redis answered would strand entries.
        let read = conn
            .read_group(&pool.stream.name, &pool.name, &pool.consumer, count, BLOCK)
            .await;
        let entries = match read {
            Ok(entries) => {
                failures = 0;
                nogroup_logged = false;
                entries
            }
            Err(e) if e.is(RedisErrorKind::NoGroup) => {
                if !nogroup_logged {
                    nogroup_logged = true;
                    pool.recreate_group().await;
                }
                failures += 1;
                backoff(failures, &pool.stop).await;
                continue;
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(pool = %pool.name, error = %e, failures, "XREADGROUP failed; backing off");
                }
                backoff(failures, &pool.stop).await;
                continue;
            }
        };
        if let Some(last) = entries.last() {
            pool.note_delivered(last.id);
        }
        pool.leases.hold(entries.iter().map(|e| e.id));
        for entry in entries {
            let Some(permit) = permits.split(1) else {
                break;
            };
            spawn_worker(&pool, entry, 1, permit);
        }
    }
    tracing::debug!(pool = %pool.name, "reader stopped");
}
