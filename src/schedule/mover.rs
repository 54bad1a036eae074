//! The mover every `weir run` runs: delayed events go from `<stream>:scheduled` to the
//! stream when they are due (contract §13).
//!
//! One loop per partition. Each round is one script (`redis/lua/move_due.lua`) that reads
//! Redis's clock, moves up to [`BATCH`] due members soonest first (XADD with
//! `scheduled_for`, or to the DLQ when a member is no event, then ZREM) and answers when the
//! next member is due. Because the add and the remove happen in one script, any number of
//! processes can run the mover and a kill -9 between two rounds loses or doubles nothing.
//!
//! Pacing: when nothing is due the loop sleeps until the soonest due time, at most
//! [`POLL`] (a member added meanwhile is seen within it); when a round was full (a backlog
//! after downtime), the next starts after a pause as long as the round took, so the mover
//! holds Redis at most about half the time and the consume path keeps its share. Paused
//! pools do not stop it: their events wait on the stream like any other.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::redis::{MoveKeys, Redis};
use crate::streak::FailureStreak;

/// Members moved per script: ~1-3 ms of Redis time for small events.
pub(crate) const BATCH: usize = 500;
/// The longest sleep while nothing is due: how late a member added meanwhile can be moved.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// The longest pause between two full rounds.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Moves due members of every partition's set until `stop`.
pub(crate) async fn run(redis: Redis, config: &Config, stop: CancellationToken) {
    let first_pool = config
        .pools
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let loops = config.partitions().iter().map(|part| {
        let keys = MoveKeys {
            scheduled: part.scheduled_key(),
            stream: part.stream.clone(),
            dlq: part.dlq.clone(),
        };
        move_loop(redis.clone(), keys, first_pool.clone(), stop.clone())
    });
    futures::future::join_all(loops).await;
}

/// One partition's loop.
async fn move_loop(redis: Redis, keys: MoveKeys, first_pool: String, stop: CancellationToken) {
    let mut failures = FailureStreak::default();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let wait = match redis.move_due(&keys, BATCH, &first_pool).await {
            Ok(batch) => {
                failures.succeeded();
                if batch.moved + batch.dead_lettered > 0 {
                    metrics::scheduled_moved(batch.moved, batch.dead_lettered);
                    tracing::debug!(set = %keys.scheduled, moved = batch.moved, dead_lettered = batch.dead_lettered, "scheduled events moved");
                }
                if batch.dead_lettered > 0 {
                    tracing::warn!(set = %keys.scheduled, dlq = %keys.dlq, count = batch.dead_lettered, "scheduled members that were no event (not a JSON object of strings with `type`) dead-lettered as malformed; their raw text is in `scheduled_member`");
                }
                next_wait(
                    batch.moved + batch.dead_lettered,
                    started.elapsed(),
                    batch.next_due,
                    batch.now,
                )
            }
            Err(e) => {
                if failures.failed() {
                    tracing::warn!(set = %keys.scheduled, error = %e, failures = failures.count(), "moving due scheduled events failed; retrying with backoff");
                }
                failures.wait(&stop).await;
                continue;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// How long to wait after a round that moved `moved` members in `took`, with the soonest
/// member left due at `next_due` and Redis's clock at `now` (both unix ms).
fn next_wait(moved: u64, took: Duration, next_due: Option<u64>, now: u64) -> Duration {
    if moved >= BATCH as u64 {
        // Behind: give Redis back as much time as the round took.
        return took.min(MAX_PAUSE);
    }
    match next_due {
        Some(due) => Duration::from_millis(due.saturating_sub(now)).min(POLL),
        None => POLL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_round_pauses_as_long_as_it_took() {
        let ms = Duration::from_millis;
        assert_eq!(next_wait(500, ms(3), Some(0), 10), ms(3));
        assert_eq!(next_wait(500, ms(400), None, 10), MAX_PAUSE);
    }

    #[test]
    fn otherwise_it_sleeps_until_the_next_due_time_at_most_the_poll() {
        let ms = Duration::from_millis;
        assert_eq!(next_wait(3, ms(1), Some(1_030), 1_000), ms(30));
        assert_eq!(next_wait(0, ms(1), Some(9_000), 1_000), POLL);
        assert_eq!(next_wait(0, ms(1), None, 1_000), POLL);
        // Due already (added while the round ran): at once.
        assert_eq!(next_wait(0, ms(1), Some(900), 1_000), ms(0));
    }
}
