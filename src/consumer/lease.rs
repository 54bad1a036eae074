//! Leases on pending entries. An entry this process holds (queued, running, or waiting to be
//! acknowledged) is re-claimed to ourselves with `JUSTID` every tick, which resets its idle
//! time without counting a delivery, so the visibility timeout measures whether this process
//! is alive, not how long a handler runs. A failed entry is *scheduled* rather than held: its
//! idle time is set so it becomes reclaimable exactly when its backoff ends.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Pool;
use crate::sync::lock;
use crate::vocab::StreamId;

#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Being worked on: keep it alive.
    Working,
    /// Failed: redeliverable at this instant.
    RetryAt(Instant),
}

/// Hashes a [`StreamId`] (two `u64`s) with FxHash's multiply-rotate: the held map is touched
/// two or three times per entry, where SipHash (built to resist chosen keys; these IDs come
/// from Redis, not from a publisher) was named by the last consume profile (issue 24).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<StreamId, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<StreamId, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub struct Leases {
    held: Mutex<IdMap<Hold>>,
    /// Retries this process handed over to the PEL schedule: when the janitor claims one
    /// back it is a retry, not a reclaim from a dead worker.
    scheduled: Mutex<IdSet>,
    wake: Notify,
}

/// IDs per XCLAIM.
const CHUNK: usize = 1000;

impl Leases {
    pub fn hold(&self, ids: impl IntoIterator<Item = StreamId>) {
        lock(&self.held).extend(ids.into_iter().map(|id| (id, Hold::Working)));
    }

    /// Stop caring about `ids` (acknowledged or dead-lettered).
    pub fn release(&self, ids: &[StreamId]) {
        let mut held = lock(&self.held);
        for id in ids {
            held.remove(id);
        }
    }

    /// Schedule a redelivery of `id` at `at`; the keeper writes it to Redis right away.
    pub fn retry_at(&self, id: StreamId, at: Instant) {
        lock(&self.held).insert(id, Hold::RetryAt(at));
        self.wake.notify_one();
    }

    /// Whether `id` is a retry this process scheduled (forgets it).
    pub fn was_scheduled(&self, id: StreamId) -> bool {
        lock(&self.scheduled).remove(&id)
    }

    /// Lets go of everything (an ordered pool lost its lease): the keeper must not claim
    /// back entries that now belong to the new owner.
    pub fn clear(&self) {
        lock(&self.held).clear();
        lock(&self.scheduled).clear();
    }

    pub fn len(&self) -> usize {
        lock(&self.held).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What to write now: IDs to keep alive, and IDs to hand over with an idle time.
    /// `finish` hands everything over (shutdown).
    fn plan(
        &self,
        visibility: Duration,
        finish: bool,
    ) -> (Vec<StreamId>, Vec<(StreamId, Duration)>) {
        let now = Instant::now();
        let mut keep = Vec::new();
        let mut hand_over = Vec::new();
        lock(&self.held).retain(|id, hold| match *hold {
            Hold::Working if !finish => {
                keep.push(*id);
                true
            }
            Hold::Working => false,
            Hold::RetryAt(at) => {
                let remaining = at.saturating_duration_since(now);
                if remaining > visibility && !finish {
                    keep.push(*id);
                    true
                } else {
                    hand_over.push((*id, visibility.saturating_sub(remaining)));
                    false
                }
            }
        });
        (keep, hand_over)
    }
}

/// How often leases are renewed: well inside the visibility timeout.
fn tick(visibility: Duration) -> Duration {
    (visibility / 4).clamp(Duration::from_millis(20), Duration::from_secs(5))
}

/// Renewal failures in a row before they are logged at WARN: one can be a blip, three mean
/// entries are drifting toward the visibility timeout (and a takeover by another process).
const RENEWAL_STREAK_WARN: u32 = 3;

/// Renews `keep` and schedules `hand_over`; returns whether every renewal went through.
async fn write(pool: &Pool, keep: &[StreamId], hand_over: &[(StreamId, Duration)]) -> bool {
    let (stream, group, me) = (&pool.stream.name, &*pool.name, &pool.consumer);
    let mut renewed = true;
    for chunk in keep.chunks(CHUNK) {
        if let Err(e) = pool
            .redis
            .set_pending_idle(stream, group, me, chunk, Duration::ZERO)
            .await
        {
            tracing::debug!(pool = group, error = %e, "lease renewal failed; will retry next tick");
            renewed = false;
        }
    }
    for (id, idle) in hand_over {
        if let Err(e) = pool
            .redis
            .set_pending_idle(stream, group, me, &[*id], *idle)
            .await
        {
            tracing::debug!(pool = group, entry_id = %id, error = %e, "could not schedule the retry; it follows the visibility timeout");
        }
    }
    renewed
}

/// Counts renewal ticks that failed in a row, and says so at WARN from the
/// [`RENEWAL_STREAK_WARN`]th on (and once more when renewals go through again).
fn track_renewals(pool: &Pool, renewed: bool, streak: &mut u32) {
    if renewed {
        if *streak >= RENEWAL_STREAK_WARN {
            tracing::warn!(pool = %pool.name, failed_in_a_row = *streak, "lease renewals go through again");
        }
        *streak = 0;
        return;
    }
    *streak += 1;
    crate::metrics::lease_renewal_failed(&pool.name);
    if *streak >= RENEWAL_STREAK_WARN {
        tracing::warn!(pool = %pool.name, failed_in_a_row = *streak, "lease renewals keep failing (Redis unreachable or slow?); entries in flight pass the visibility timeout and may be reclaimed by another process");
    }
}

pub(super) async fn keep_loop(pool: Arc<Pool>) {
    let visibility = pool.config.retry.visibility_timeout;
    let every = tick(visibility);
    let mut streak = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = pool.leases.wake.notified() => {}
            _ = pool.abandon.cancelled() => break,
        }
        if pool
            .ordered
            .as_ref()
            .is_some_and(|o| o.owned_epoch().is_none())
        {
            continue; // not the owner: what we held belongs to whoever owns the lease now
        }
        let (keep, hand_over) = pool.leases.plan(visibility, false);
        lock(&pool.leases.scheduled).extend(hand_over.iter().map(|(id, _)| *id));
        tracing::trace!(pool = %pool.name, keep = keep.len(), hand_over = ?hand_over, "leases");
        let renewed = write(&pool, &keep, &hand_over).await;
        track_renewals(&pool, renewed, &mut streak);
    }
    // Shutdown: scheduled retries keep their schedule; the rest follows the visibility timeout.
    let (_, hand_over) = pool.leases.plan(visibility, true);
    write(&pool, &[], &hand_over).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::poison;

    #[test]
    fn leases_still_work_after_a_panic_poisoned_their_lock() {
        let leases = Leases::default();
        let (a, b) = (StreamId { ms: 1, seq: 0 }, StreamId { ms: 2, seq: 0 });
        poison(&leases.held);
        poison(&leases.scheduled);
        leases.hold([a, b]);
        assert_eq!(leases.len(), 2, "held despite the poisoned lock");
        leases.release(&[a]);
        leases.retry_at(b, Instant::now());
        let (keep, hand_over) = leases.plan(Duration::from_secs(30), false);
        assert!(keep.is_empty());
        assert_eq!(hand_over.len(), 1);
        assert_eq!(hand_over[0].0, b);
        assert!(leases.is_empty());
        lock(&leases.scheduled).insert(b);
        assert!(leases.was_scheduled(b));
    }
}
