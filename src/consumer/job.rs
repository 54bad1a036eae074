//! A job: an entry on its way to a worker with the worker slot it holds, and the way in
//! (admission, for ordered pools behind its key) and onto the workers' queue. Its own file so
//! the workers (`worker.rs`) and the key lanes (`ordered.rs`) both use it without importing
//! each other.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::Pool;
use crate::vocab::RawEntry;

/// An entry on its way to a worker, with the worker slot it holds.
pub struct Job {
    /// The pool and partition the entry came from.
    pub pool: Arc<Pool>,
    pub entry: RawEntry,
    /// Delivery number: 1 from the reader, the delivery count from the janitor.
    pub attempt: u64,
    /// The worker slot: held while the job lives; dropping the job (settled, or fenced off)
    /// frees it.
    pub _permit: OwnedSemaphorePermit,
    /// Ordered pools: the entry's key lane (`None`: keyless, not ordered).
    pub lane: Option<u64>,
    /// Ordered pools: the owner epoch it was handed out under; it runs only at that epoch.
    pub epoch: Option<u64>,
}

impl Job {
    /// Delivery `attempt` of `entry` from `pool`, in its key `lane`, under `epoch`.
    pub(super) fn new(
        pool: &Arc<Pool>,
        entry: RawEntry,
        attempt: u64,
        permit: OwnedSemaphorePermit,
        lane: Option<u64>,
        epoch: Option<u64>,
    ) -> Job {
        Job {
            pool: pool.clone(),
            entry,
            attempt,
            _permit: permit,
            lane,
            epoch,
        }
    }
}

/// Hands `entry` to the pool's workers. The entry is leased already, so waiting in the
/// queue cannot get it reclaimed. At shutdown (queue closed) it stays pending. Ordered
/// pools queue it behind its key first.
pub(crate) fn enqueue(
    pool: &Arc<Pool>,
    entry: RawEntry,
    attempt: u64,
    permit: OwnedSemaphorePermit,
) {
    let epoch = pool.ordered.as_ref().and_then(|o| o.owned_epoch());
    enqueue_as(pool, entry, attempt, permit, epoch);
}

/// [`enqueue`] under a known owner epoch (an ordered pool's takeover).
pub(crate) fn enqueue_as(
    pool: &Arc<Pool>,
    entry: RawEntry,
    attempt: u64,
    permit: OwnedSemaphorePermit,
    epoch: Option<u64>,
) {
    if let Some(job) = admit(pool, entry, attempt, permit, epoch) {
        send(pool, job);
    }
}

/// The job for `entry` if it may run now. Ordered pools queue it behind its key instead
/// (`None`), or drop it when this process does not own the lease (it stays pending for the
/// owner).
fn admit(
    pool: &Arc<Pool>,
    entry: RawEntry,
    attempt: u64,
    permit: OwnedSemaphorePermit,
    epoch: Option<u64>,
) -> Option<Job> {
    let Some(ordered) = pool.ordered.as_ref() else {
        return Some(Job::new(pool, entry, attempt, permit, None, None));
    };
    epoch?;
    let lane = ordered.lane_of(&entry);
    ordered.admit(Job::new(pool, entry, attempt, permit, lane, epoch))
}

/// Puts `job` on the workers' queue.
pub(super) fn send(pool: &Arc<Pool>, job: Job) {
    let id = job.entry.id;
    if pool.jobs.try_send(job).is_err() {
        tracing::debug!(pool = %pool.name, entry_id = %id, "worker queue closed; the entry stays pending");
    }
}
