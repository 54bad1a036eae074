//! Ordered pools (contract §9): entries with the same key are handled one at a time, in
//! stream order, by the one process that holds the pool's ownership lease for this stream
//! or partition.
//!
//! - **Lanes.** Each key has a lane: while one entry of a key is being handled (or waits out
//!   a retry's backoff), later entries of that key wait in memory behind it, holding their
//!   worker slot permit. Keyless entries are not ordered and go straight to the workers.
//!   Read-ahead is bounded by the pool's permits (`concurrency + read_count`): when that many
//!   entries are in flight or waiting, the reader stops until one settles, so a hot key can
//!   hold back other keys by at most that many of its own entries, and memory stays flat.
//! - **Retries stay in place.** A failed entry keeps its lane: it is retried in-process after
//!   its backoff (its delivery count updated in Redis), never handed to the janitor.
//! - **One owner.** The lease `<stream>:owner:<pool>` (`consumer`, `epoch`, `since`) expires
//!   after `visibility_timeout_seconds` unless renewed. Others stand by. A new owner first
//!   claims every pending entry of the group (all consumers') and handles them in ID order,
//!   then reads new ones. `epoch` (the fencing token) grows with every takeover; each job
//!   carries the epoch it was handed out under, and a worker runs it only while this process
//!   still owns the lease at that epoch and renewed it recently (a process that slept past
//!   the expiry hands out nothing when it wakes).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Pool;
use super::worker::Job;
use crate::clock;
use crate::config::OrderKey;
use crate::redis::{LeaseClaim, RawEntry, Redis, StreamId};
use crate::sync::lock;
use crate::vocab::{DATA, DlqReason};

/// Claimed pending entries per XAUTOCLAIM page at takeover.
const TAKEOVER_PAGE: usize = 100;

/// An ordered pool's state on one stream or partition.
pub struct Ordered {
    key: OrderKey,
    /// `<stream>:owner:<pool>`.
    pub lease_key: String,
    ttl: Duration,
    /// The epoch we hold the lease at; 0 when we do not.
    epoch: AtomicU64,
    /// Until when hand-outs are allowed: the last confirmed renewal plus a margin that ends
    /// before the lease can expire in Redis. `None` when not owning.
    valid_until: Mutex<Option<Instant>>,
    lanes: Mutex<HashMap<u64, VecDeque<Job>>>,
    waiting: AtomicUsize,
}

impl Ordered {
    /// The state for one partition; `lease_key` from [`crate::keys::owner`].
    pub fn new(key: OrderKey, lease_key: String, ttl: Duration) -> Ordered {
        Ordered {
            key,
            lease_key,
            ttl,
            epoch: AtomicU64::new(0),
            valid_until: Mutex::new(None),
            lanes: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// How often the lease is renewed (and standbys try to take it).
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 6).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// How long a confirmed renewal allows hand-outs and reads: half the lease. A read
    /// issued just before that ends blocks at most [`Ordered::read_block`] on the server,
    /// so it is over before the lease can expire and a successor claim what it delivered.
    fn validity(&self) -> Duration {
        self.ttl / 2
    }

    /// The BLOCK of an ordered pool's reads: at most a quarter of the lease.
    pub fn read_block(&self, default: Duration) -> Duration {
        default.min(self.ttl / 4)
    }

    /// How long a new owner waits when Redis had no lease state at all: a previous owner
    /// (Redis restarted without persistence) notices at its next renewal.
    fn fresh_wait(&self) -> Duration {
        (self.renew_every() * 3).min(self.validity())
    }

    /// The epoch we own the lease at, if we own it and renewed it recently.
    pub fn owned_epoch(&self) -> Option<u64> {
        let valid = lock(&self.valid_until).is_some_and(|until| Instant::now() < until);
        valid.then(|| self.epoch.load(Ordering::Acquire))
    }

    /// Whether a job handed out under `epoch` may run now.
    pub fn may_run(&self, epoch: Option<u64>) -> bool {
        epoch.is_some() && self.owned_epoch() == epoch
    }

    /// Entries waiting behind a busy key.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The lane of `entry`: a hash of its key, or `None` when it has none (not ordered).
    pub fn lane_of(&self, entry: &RawEntry) -> Option<u64> {
        lane_of(&self.key, entry)
    }

    fn confirm(&self, sent: Instant) {
        *lock(&self.valid_until) = Some(sent + self.validity());
    }

    fn disown(&self) {
        *lock(&self.valid_until) = None;
    }

    /// Queues `job` behind its key, or returns it when its key is free (now busy).
    fn admit(&self, job: Job) -> Option<Job> {
        let Some(lane) = job.lane else {
            return Some(job);
        };
        let mut lanes = lock(&self.lanes);
        match lanes.get_mut(&lane) {
            Some(queue) => {
                queue.push_back(job);
                self.waiting.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                lanes.insert(lane, VecDeque::new());
                Some(job)
            }
        }
    }

    /// The entry of `lane` that settled is done: the next one of that key, if any.
    fn next(&self, lane: u64) -> Option<Job> {
        let mut lanes = lock(&self.lanes);
        let queue = lanes.get_mut(&lane)?;
        match queue.pop_front() {
            Some(job) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Some(job)
            }
            None => {
                lanes.remove(&lane);
                None
            }
        }
    }

    /// Forgets every lane (ownership lost): waiting jobs are dropped, their entries stay
    /// pending for whoever owns the lease next.
    fn clear(&self) {
        let dropped: Vec<Job> = lock(&self.lanes).drain().flat_map(|(_, q)| q).collect();
        self.waiting.store(0, Ordering::Relaxed);
        drop(dropped);
    }
}

/// The lane of an entry under `key`: strings and numbers are keys; a missing key, another
/// JSON type or a body that is not JSON means "not ordered".
fn lane_of(key: &OrderKey, entry: &RawEntry) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match key {
        OrderKey::Field(name) => entry.field(name)?.hash(&mut h),
        OrderKey::Pointer(pointer) => {
            let data: serde_json::Value = serde_json::from_slice(entry.field(DATA)?).ok()?;
            match data.pointer(pointer)? {
                serde_json::Value::String(s) => s.as_bytes().hash(&mut h),
                // 7 and "7" are one key: both hash as their text.
                serde_json::Value::Number(n) => n.to_string().as_bytes().hash(&mut h),
                _ => return None,
            }
        }
    }
    Some(h.finish())
}

/// Hands `job` to the workers through its key's lane (the consumer's `enqueue` for ordered
/// pools).
pub(super) fn admit(pool: &Arc<Pool>, ordered: &Ordered, job: Job) {
    if let Some(job) = ordered.admit(job) {
        super::worker::send(pool, job);
    }
}

/// After an entry of `lane` settled (acknowledged or dead-lettered): the next one of its key.
pub(super) fn settled(pool: &Arc<Pool>, ordered: &Ordered, lane: Option<u64>) {
    if let Some(next) = lane.and_then(|l| ordered.next(l)) {
        if pool.stop.is_cancelled() {
            return; // shutting down: it stays pending, in order, for the next owner
        }
        super::worker::send(pool, next);
    }
}

/// A failed entry keeps its lane and runs again after `after`, in this process.
pub(super) fn retry_later(pool: &Arc<Pool>, mut job: Job, after: Duration) {
    let pool = pool.clone();
    job.attempt += 1;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(after) => {}
            _ = pool.stop.cancelled() => return,
        }
        // The delivery count in Redis follows, so a takeover sees the true attempt number.
        let recorded = pool
            .redis
            .set_delivery_count(
                &pool.stream.name,
                &pool.name,
                &pool.consumer,
                job.entry.id,
                job.attempt,
            )
            .await;
        if let Err(e) = recorded {
            tracing::debug!(pool = %pool.name, entry_id = %job.entry.id, error = %e, "could not record the delivery count of a retry");
        }
        super::worker::send(&pool, job);
    });
}

/// The reader of an ordered pool on one stream or partition: stands by until it owns the
/// lease, takes over the pending entries, reads new ones while it owns, and starts over when
/// it loses the lease. Returns at shutdown; the lease is released after the drain
/// ([`release`]).
pub(crate) async fn run(pool: Arc<Pool>, conn: Redis) {
    let Some(ordered) = pool.ordered.as_ref() else {
        return;
    };
    while !pool.stop.is_cancelled() {
        let Some(epoch) = acquire(&pool, ordered).await else {
            break;
        };
        let lost = pool.stop.child_token();
        let renewer = tokio::spawn(renew_loop(pool.clone(), epoch, lost.clone()));
        if takeover(&pool, ordered, epoch, &lost).await {
            super::reader::read_until(&pool, &conn, &lost).await;
        }
        lost.cancel();
        let _ = renewer.await;
        if pool.stop.is_cancelled() {
            break;
        }
        // Lost the lease: forget what is queued and wait for what runs, so the next
        // takeover (ours or another's) never overlaps a handler of the same key.
        ordered.disown();
        ordered.clear();
        pool.leases.clear();
        while pool.in_flight.load(Ordering::Acquire) > 0 && !pool.stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until this process owns the lease; `None` at shutdown.
async fn acquire(pool: &Pool, ordered: &Ordered) -> Option<u64> {
    let mut holder_seen = String::new();
    loop {
        if pool.stop.is_cancelled() {
            return None;
        }
        let sent = Instant::now();
        let claim = pool
            .redis
            .take_lease(
                &ordered.lease_key,
                &pool.consumer,
                ordered.ttl,
                clock::now_ms(),
            )
            .await;
        match claim {
            Ok(LeaseClaim::Taken { epoch, fresh }) => {
                if fresh {
                    // Nothing in Redis says who owned before: a previous owner (Redis restarted
                    // without persistence) notices within one validity period; wait it out.
                    let wait = ordered.fresh_wait();
                    tracing::warn!(pool = %pool.name, stream = %pool.stream.name, epoch, wait_ms = wait.as_millis() as u64, "no earlier owner lease state (first start, or Redis lost its data); waiting before handing out work so two owners never overlap");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = pool.stop.cancelled() => return None,
                    }
                    if !renew(pool, ordered, epoch).await {
                        continue;
                    }
                } else {
                    ordered.confirm(sent);
                }
                ordered.epoch.store(epoch, Ordering::Release);
                tracing::info!(pool = %pool.name, stream = %pool.stream.name, consumer = %pool.consumer, epoch, "took ownership of the ordered pool");
                return Some(epoch);
            }
            Ok(LeaseClaim::Held { holder, epoch }) => {
                if holder != holder_seen {
                    tracing::info!(pool = %pool.name, stream = %pool.stream.name, owner = %holder, epoch, "standing by: another process owns this ordered pool");
                    holder_seen = holder;
                }
            }
            Err(e) => {
                tracing::debug!(pool = %pool.name, error = %e, "could not check the owner lease");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ordered.renew_every()) => {}
            _ = pool.stop.cancelled() => return None,
        }
    }
}

/// One renewal; true when the lease is still ours at `epoch`.
async fn renew(pool: &Pool, ordered: &Ordered, epoch: u64) -> bool {
    let sent = Instant::now();
    match pool
        .redis
        .renew_lease(&ordered.lease_key, &pool.consumer, epoch, ordered.ttl)
        .await
    {
        Ok(true) => {
            ordered.confirm(sent);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::debug!(pool = %pool.name, error = %e, "owner lease renewal failed; retrying");
            ordered.owned_epoch().is_some()
        }
    }
}

/// Renews the lease until `lost` fires; fires it when the lease is no longer ours or could
/// not be renewed in time.
async fn renew_loop(pool: Arc<Pool>, epoch: u64, lost: CancellationToken) {
    let Some(ordered) = pool.ordered.as_ref() else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ordered.renew_every()) => {}
            _ = lost.cancelled() => return,
        }
        // A process stopped past its validity must not renew its way back: it lost.
        let lapsed = ordered.owned_epoch().is_none();
        if lapsed || !renew(&pool, ordered, epoch).await {
            tracing::warn!(pool = %pool.name, stream = %pool.stream.name, epoch, lapsed, "lost ownership of the ordered pool; handing out nothing more");
            ordered.disown();
            lost.cancel();
            return;
        }
    }
}

/// Claims every pending entry of the group (any consumer's) and hands them out in ID order,
/// before anything new is read. False when ownership was lost or shutdown began meanwhile.
async fn takeover(
    pool: &Arc<Pool>,
    ordered: &Ordered,
    epoch: u64,
    lost: &CancellationToken,
) -> bool {
    let mut cursor = StreamId::ZERO;
    let mut taken = 0usize;
    loop {
        if lost.is_cancelled() {
            return false;
        }
        let page = pool
            .redis
            .autoclaim(
                &pool.stream.name,
                &pool.name,
                &pool.consumer,
                Duration::ZERO,
                cursor,
                TAKEOVER_PAGE,
            )
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(pool = %pool.name, error = %e, "taking over pending entries failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(ordered.renew_every()) => continue,
                    _ = lost.cancelled() => return false,
                }
            }
        };
        pool.lost(&page.deleted).await;
        taken += page.entries.len();
        if !hand_over_claimed(pool, epoch, page.entries, lost).await {
            return false;
        }
        cursor = page.next;
        if cursor == StreamId::ZERO {
            break;
        }
    }
    if taken > 0 {
        tracing::info!(pool = %pool.name, stream = %pool.stream.name, entries = taken, epoch, "took over pending entries; handling them first, in order");
    }
    true
}

/// Hands claimed entries out in order; those whose attempts are used up are dead-lettered.
async fn hand_over_claimed(
    pool: &Arc<Pool>,
    epoch: u64,
    entries: Vec<RawEntry>,
    lost: &CancellationToken,
) -> bool {
    if entries.is_empty() {
        return true;
    }
    let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
    pool.leases.hold(ids.iter().copied());
    let counts = pool
        .redis
        .delivery_counts(&pool.stream.name, &pool.name, &ids)
        .await
        .unwrap_or_default();
    for entry in entries {
        // XAUTOCLAIM counted a delivery; the handler has seen `count - 1`.
        let count = counts.get(&entry.id).copied().unwrap_or(1);
        let made = count.saturating_sub(1);
        if pool.config.retry.exhausted(made) {
            let error = format!(
                "no success after {made} deliveries; the last one timed out or its process stopped (ordered pool takeover)"
            );
            pool.dead_letter(&entry, made, DlqReason::MaxAttempts, &error)
                .await;
            continue;
        }
        let permit: Option<OwnedSemaphorePermit> = tokio::select! {
            permit = pool.permits.clone().acquire_owned() => permit.ok(),
            _ = lost.cancelled() => None,
        };
        let Some(permit) = permit else {
            return false;
        };
        super::enqueue_as(pool, entry, count.max(1), permit, Some(epoch));
    }
    true
}

/// Gives the lease up at once after the drain, so a standby takes over without waiting for
/// the expiry.
pub(crate) async fn release(pool: &Pool) {
    let Some(ordered) = pool.ordered.as_ref() else {
        return;
    };
    let Some(epoch) = ordered.owned_epoch() else {
        return;
    };
    ordered.disown();
    match pool
        .redis
        .release_lease(&ordered.lease_key, &pool.consumer, epoch)
        .await
    {
        Ok(true) => {
            tracing::info!(pool = %pool.name, stream = %pool.stream.name, epoch, "released ownership of the ordered pool")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(pool = %pool.name, error = %e, "could not release the owner lease; a standby takes over after it expires")
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entry(fields: &[(&str, &str)]) -> RawEntry {
        RawEntry {
            id: StreamId { ms: 1, seq: 0 },
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
                    .collect(),
            ),
        }
    }

    #[test]
    fn keys_come_from_a_field_or_a_pointer_and_only_strings_and_numbers_count() {
        let field = OrderKey::Field("key".into());
        let pointer = OrderKey::Pointer("/payload/id".into());
        let a = entry(&[("key", "A"), ("data", r#"{"payload":{"id":"A"}}"#)]);
        assert!(lane_of(&field, &a).is_some());
        assert_eq!(lane_of(&field, &a), lane_of(&pointer, &a));
        let n = entry(&[("data", r#"{"payload":{"id":7}}"#), ("key", "7")]);
        assert_eq!(lane_of(&pointer, &n), lane_of(&field, &n));
        for keyless in [
            entry(&[("data", r#"{"payload":{}}"#)]),
            entry(&[("data", r#"{"payload":{"id":null}}"#)]),
            entry(&[("data", r#"{"payload":{"id":{"x":1}}}"#)]),
            entry(&[("data", "not json")]),
        ] {
            assert_eq!(lane_of(&pointer, &keyless), None);
            assert_eq!(lane_of(&field, &keyless), None);
        }
        let b = entry(&[("key", "B")]);
        assert_ne!(lane_of(&field, &a), lane_of(&field, &b));
    }

    #[test]
    fn validity_never_outlasts_the_lease() {
        let o = Ordered::new(
            OrderKey::Field("k".into()),
            "k".into(),
            Duration::from_secs(2),
        );
        assert!(o.validity() <= Duration::from_secs(2));
        assert!(o.renew_every() < o.validity());
        assert_eq!(o.owned_epoch(), None);
        o.epoch.store(4, Ordering::Release);
        o.confirm(Instant::now());
        assert_eq!(o.owned_epoch(), Some(4));
        assert!(o.may_run(Some(4)));
        assert!(!o.may_run(Some(3)));
        assert!(!o.may_run(None));
        o.confirm(Instant::now() - Duration::from_secs(3));
        assert_eq!(o.owned_epoch(), None, "a stale renewal allows nothing");
    }
}
