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
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Pool;
use super::job::{self, Job};
use crate::config::OrderKey;
use crate::pointer::Place;
use crate::sync::lock;
use crate::vocab::{DATA, RawEntry};

/// How many of an ordered pool's partitions this process may own: its fair share among the
/// live processes serving the pool, so that with `partitions = N` the partitions spread
/// over up to N processes instead of all going to whoever started first.
#[derive(Debug)]
pub struct Membership {
    partitions: usize,
    /// Partitions this process owns now.
    owned: AtomicUsize,
    /// Processes with a recent heartbeat in the members hash (this one included).
    live: AtomicUsize,
}

impl Membership {
    /// A pool spread over `partitions` partitions, seen alone until the first heartbeat.
    pub fn new(partitions: usize) -> Membership {
        Membership {
            partitions,
            owned: AtomicUsize::new(0),
            live: AtomicUsize::new(1),
        }
    }

    fn fair_share(&self) -> usize {
        self.partitions
            .div_ceil(self.live.load(Ordering::Relaxed).max(1))
    }

    /// Whether this process may take one more partition.
    pub(super) fn may_take(&self) -> bool {
        self.owned.load(Ordering::Acquire) < self.fair_share()
    }

    pub(super) fn took(&self) {
        self.owned.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn gave_up(&self) {
        let _ = self
            .owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Claims the right to hand one partition over because this process owns more than its
    /// share (one partition at a time, so the count never drops below the share).
    pub(super) fn should_yield(&self) -> bool {
        let fair = self.fair_share();
        self.owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > fair).then(|| n - 1)
            })
            .is_ok()
    }

    /// Records how many processes are live.
    pub(super) fn set_live(&self, live: usize) {
        self.live.store(live.max(1), Ordering::Relaxed);
    }
}

/// How often a lease of `ttl` is renewed, standbys try to take it and processes send their
/// heartbeat: a sixth of the lease, at most a second.
pub fn renew_period(ttl: Duration) -> Duration {
    (ttl / 6).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// An ordered pool's state on one stream or partition.
pub struct Ordered {
    /// Shared by the pool's partitions in this process.
    pub(super) members: Arc<Membership>,
    key: Place,
    /// `<stream>:owner:<pool>`.
    pub lease_key: String,
    pub(super) ttl: Duration,
    /// The epoch we hold the lease at; 0 when we do not.
    pub(super) epoch: AtomicU64,
    /// Until when hand-outs are allowed: the last confirmed renewal plus a margin that ends
    /// before the lease can expire in Redis, in nanoseconds after `since`; 0 when not owning.
    /// An atomic, not a lock: every job reads it as it runs.
    valid_until: AtomicU64,
    since: Instant,
    /// The busy keys, by lane (the lane is already a hash of the key, so it is its own
    /// hash): what waits behind the entry of the key that runs or retries. Lanes are only
    /// ever added by the partition's reader task (its takeover, then its reads, one after
    /// the other); workers remove them as keys go free.
    lanes: Mutex<HashMap<u64, VecDeque<Job>, BuildHasherDefault<LaneHasher>>>,
    /// How many lanes there are: a reader that sees none needs no lookup (only the reader
    /// adds lanes, so none can appear behind its back).
    busy: AtomicUsize,
    waiting: AtomicUsize,
}

impl Ordered {
    /// The state for one partition; `lease_key` from [`crate::keys::owner`].
    pub fn new(
        key: OrderKey,
        lease_key: String,
        ttl: Duration,
        members: Arc<Membership>,
    ) -> Ordered {
        Ordered {
            members,
            key: Place::new(&key),
            lease_key,
            ttl,
            epoch: AtomicU64::new(0),
            valid_until: AtomicU64::new(0),
            since: Instant::now(),
            lanes: Mutex::default(),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// How often the lease is renewed (and standbys try to take it).
    pub fn renew_every(&self) -> Duration {
        renew_period(self.ttl)
    }

    /// How long a confirmed renewal allows hand-outs and reads: half the lease. A read
    /// issued just before that ends blocks at most [`Ordered::read_block`] on the server,
    /// so it is over before the lease can expire and a successor claim what it delivered.
    pub(super) fn validity(&self) -> Duration {
        self.ttl / 2
    }

    /// The BLOCK of an ordered pool's reads: at most a quarter of the lease.
    pub fn read_block(&self, default: Duration) -> Duration {
        default.min(self.ttl / 4)
    }

    /// How long a new owner waits when Redis had no lease state at all: a previous owner
    /// (Redis restarted without persistence) notices at its next renewal.
    pub(super) fn fresh_wait(&self) -> Duration {
        (self.renew_every() * 3).min(self.validity())
    }

    /// The epoch we own the lease at, if we own it and renewed it recently.
    pub fn owned_epoch(&self) -> Option<u64> {
        let until = self.valid_until.load(Ordering::Acquire);
        let valid = until != 0 && self.nanos(Instant::now()) < until;
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

    pub(super) fn confirm(&self, sent: Instant) {
        let until = self.nanos(sent + self.validity()).max(1);
        self.valid_until.store(until, Ordering::Release);
    }

    pub(super) fn disown(&self) {
        self.valid_until.store(0, Ordering::Release);
    }

    /// `at` as nanoseconds after `since` (0 for anything before it).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.since).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Queues `job` behind its key, or returns it when its key is free (now busy).
    pub(super) fn admit(&self, job: Job) -> Option<Job> {
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
                self.busy.fetch_add(1, Ordering::Release);
                Some(job)
            }
        }
    }

    /// Whether any key is busy (a quick look, without the lock).
    pub(super) fn any_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    /// Whether an entry of `lane` runs on a worker, retries or waits.
    pub(super) fn is_busy(&self, lane: u64) -> bool {
        self.any_busy() && lock(&self.lanes).contains_key(&lane)
    }

    /// Makes a free `lane` busy: its entry that ran on the reader is kept for a retry, and
    /// later entries of its key wait behind it.
    pub(super) fn hold(&self, lane: u64) {
        if let Entry::Vacant(free) = lock(&self.lanes).entry(lane) {
            free.insert(VecDeque::new());
            self.busy.fetch_add(1, Ordering::Release);
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
                self.busy.fetch_sub(1, Ordering::Release);
                None
            }
        }
    }

    /// Forgets every lane (ownership lost): waiting jobs are dropped, their entries stay
    /// pending for whoever owns the lease next.
    pub(super) fn clear(&self) {
        let dropped: Vec<Job> = {
            let mut lanes = lock(&self.lanes);
            self.busy.store(0, Ordering::Release);
            lanes.drain().flat_map(|(_, q)| q).collect()
        };
        self.waiting.store(0, Ordering::Relaxed);
        drop(dropped);
    }
}

/// The hasher of the lanes map: a lane is a 64-bit hash already.
#[derive(Default)]
struct LaneHasher(u64);

impl Hasher for LaneHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 lanes are hashed; anything else still spreads.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, lane: u64) {
        self.0 = lane;
    }
}

/// The lane of an entry under `key`: strings and numbers are keys; a missing key, another
/// JSON type or a body that is not JSON means "not ordered".
fn lane_of(key: &Place, entry: &RawEntry) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match key {
        Place::Field(name) => entry.field(name)?.hash(&mut h),
        Place::Pointer(pointer) => {
            // Walked, not parsed. Strings as they are, numbers as written (7 and "7" are one
            // key).
            let data = std::str::from_utf8(entry.field(DATA)?).ok()?;
            let found = pointer.checking(data).ok()??;
            found.text(data)?.as_bytes().hash(&mut h)
        }
    }
    Some(h.finish())
}

/// After an entry of `lane` settled (acknowledged or dead-lettered): the next one of its key.
pub(super) fn settled(pool: &Arc<Pool>, ordered: &Ordered, lane: Option<u64>) {
    if let Some(next) = lane.and_then(|l| ordered.next(l)) {
        if pool.stop.is_cancelled() {
            return; // shutting down: it stays pending, in order, for the next owner
        }
        job::send(pool, next);
    }
}

/// A failed entry keeps its lane and runs again after `after`, in this process.
/// On the pool's worker tracker, so nothing outlives shutdown.
pub(super) fn retry_later(pool: &Arc<Pool>, mut job: Job, after: Duration) {
    let pool = pool.clone();
    job.attempt += 1;
    let workers = pool.workers.clone();
    workers.spawn(async move {
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
        job::send(&pool, job);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> RawEntry {
        RawEntry::of_texts(fields)
    }

    #[test]
    fn keys_come_from_a_field_or_a_pointer_and_only_strings_and_numbers_count() {
        let field = Place::new(&OrderKey::Field("key".into()));
        let pointer = Place::new(&OrderKey::Pointer("/payload/id".into()));
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
    fn each_process_takes_its_fair_share_and_yields_the_rest_one_at_a_time() {
        let m = Membership::new(3);
        for _ in 0..3 {
            assert!(m.may_take(), "alone, every partition is ours");
            m.took();
        }
        assert!(!m.may_take());
        m.set_live(2);
        assert!(m.should_yield(), "3 owned, share 2: give one up");
        assert!(!m.should_yield(), "2 owned, share 2: keep them");
        m.set_live(3);
        assert!(m.should_yield());
        assert!(!m.should_yield());
        m.gave_up();
        assert!(m.may_take());
    }

    #[test]
    fn validity_never_outlasts_the_lease() {
        let o = Ordered::new(
            OrderKey::Field("k".into()),
            "k".into(),
            Duration::from_secs(2),
            Arc::new(Membership::new(1)),
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
