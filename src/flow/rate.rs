//! A pool's rate limit (`rate = { limit, per }`, optionally per `rate_key`): "may this entry
//! start now?".
//!
//! The budget is a token bucket per pool (or per key) in Redis (`redis/lua/rate_take.lua`),
//! refilled at `limit / per` by Redis's clock and holding at most [`capacity`] tokens: the
//! starts of a tenth of `per` (at most a second's worth), so a burst cannot overshoot a
//! 10 s window by more than a few percent. A process takes tokens in batches, sized by
//! the entries it has waiting (at most the capacity), keeps them for a short while
//! ([`hold`]) and hands them to its workers without another round trip; what it does not
//! use in time is dropped, never returned, so the shared limit is never exceeded.
//!
//! Waiting for a token is not an attempt: the entry stays leased (its lease is renewed like
//! any entry in flight) and its delivery count is untouched. Keyed limits bound the worker
//! slots waiting entries hold to half the pool's concurrency (at least 1); an entry that
//! finds them all taken leaves its worker and is queued again once its key's next token is
//! due, so one hot key cannot hold every worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::RateLimit;
use crate::pointer::Place;
use crate::redis::{Bucket, Redis};
use crate::sync::lock;
use crate::vocab::RawEntry;

/// Keys whose reservations are remembered before the expired ones are swept.
const SWEEP_AT: usize = 1024;
/// After a failed take (Redis unreachable), the next try.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);

/// The most tokens a bucket holds: the starts of a tenth of `per`, at most a second's
/// worth, and at least 1.
pub fn capacity(limit: u32, per: Duration) -> u32 {
    let window = (per / 10).min(Duration::from_secs(1));
    let per_ms = per.as_millis().max(1) as f64;
    let n = limit as f64 * window.as_millis() as f64 / per_ms;
    (n.floor() as u32).max(1)
}

/// How long a process keeps tokens it took and did not use yet: the bucket's refill time,
/// between 10 ms and 1 s.
pub fn hold(per: Duration) -> Duration {
    (per / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// What the worker does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Start the handler.
    Go,
    /// Every waiting slot is taken (keyed limits): queue the entry again after this long.
    Later(Duration),
    /// Shutdown while waiting: the entry stays pending.
    Stopped,
}

/// Tokens this process holds for one bucket.
#[derive(Default)]
struct Reserve {
    tokens: u32,
    until: Option<Instant>,
    /// No take before this (the bucket said when its next token is due).
    next_try: Option<Instant>,
}

/// One pool's limiter, shared by its partitions and workers.
pub struct RateLimiter {
    pool: String,
    bucket: Bucket,
    hold: Duration,
    /// `<stream>:rate:<pool>`; a key's bucket is `…:<key>`.
    prefix: String,
    key: Option<Place>,
    redis: Redis,
    reserves: Mutex<HashMap<Option<String>, Arc<tokio::sync::Mutex<Reserve>>>>,
    /// Entries waiting for a token now (in a worker or queued again).
    waiting: AtomicUsize,
    /// Keyed limits: the worker slots waiting entries may hold.
    waiters: Option<Arc<Semaphore>>,
    /// Entries that waited, since the last [`RateLimiter::take_waited`] (the scale controller).
    waited: AtomicUsize,
}

/// Counts an entry as waiting while it lives.
pub struct Waiting<'l>(&'l RateLimiter);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::rate_waiting(&self.0.pool, -1.0);
    }
}

impl RateLimiter {
    /// The limiter of pool `pool` on `stream` (the configured name: one budget for all
    /// partitions), with `concurrency` workers.
    pub fn new(
        redis: Redis,
        stream: &str,
        pool: &str,
        limit: &RateLimit,
        concurrency: usize,
    ) -> RateLimiter {
        RateLimiter {
            pool: pool.to_string(),
            bucket: Bucket {
                limit: limit.limit,
                per: limit.per,
                capacity: capacity(limit.limit, limit.per),
            },
            hold: hold(limit.per),
            prefix: bucket_key(stream, pool),
            key: limit.key.as_ref().map(Place::new),
            redis,
            reserves: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            waiters: limit
                .key
                .as_ref()
                .map(|_| Arc::new(Semaphore::new((concurrency / 2).max(1)))),
            waited: AtomicUsize::new(0),
        }
    }

    /// Entries waiting for a token in this process now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Entries that had to wait since the last call (the scale controller's window).
    pub fn take_waited(&self) -> usize {
        self.waited.swap(0, Ordering::Relaxed)
    }

    /// The entry's rate key: `None` without `rate_key`, or when the entry lacks it (then it
    /// counts against the pool's own limit).
    pub fn key_of(&self, entry: &RawEntry) -> Option<String> {
        match self.key.as_ref()? {
            Place::Field(name) => entry
                .field(name)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            Place::Pointer(pointer) => {
                let data = entry.field(crate::vocab::DATA)?;
                pointer.text_in(std::str::from_utf8(data).ok()?)
            }
        }
    }

    /// Waits until `entry` may start (a token of its bucket), or says to queue it again
    /// later, or that shutdown (`cancel`) came first. `queued`: entries behind it in this
    /// process, which size the batch taken.
    pub async fn admit(
        &self,
        entry: &RawEntry,
        queued: usize,
        cancel: &CancellationToken,
    ) -> Admit {
        let key = self.key_of(entry);
        let reserve = self.reserve(&key);
        let mut waiting: Option<Waiting<'_>> = None;
        let mut _slot: Option<OwnedSemaphorePermit> = None;
        loop {
            let wait = match self.try_take(&key, &reserve, queued).await {
                None => return Admit::Go,
                Some(wait) => wait,
            };
            if waiting.is_none() {
                self.waited.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rate_limited(&self.pool);
                if let Some(waiters) = &self.waiters {
                    match waiters.clone().try_acquire_owned() {
                        Ok(permit) => _slot = Some(permit),
                        Err(_) => return Admit::Later(wait),
                    }
                }
                waiting = Some(self.enter_waiting());
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Admit::Stopped,
            }
        }
    }

    /// Counts an entry as waiting (also one queued again by [`Admit::Later`]).
    pub fn enter_waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rate_waiting(&self.pool, 1.0);
        Waiting(self)
    }

    /// A token from this process's reserve or a fresh batch: `None` when taken, else how
    /// long until one may be.
    async fn try_take(
        &self,
        key: &Option<String>,
        reserve: &tokio::sync::Mutex<Reserve>,
        queued: usize,
    ) -> Option<Duration> {
        let mut r = reserve.lock().await;
        let now = Instant::now();
        if r.tokens > 0 && r.until.is_some_and(|until| now < until) {
            r.tokens -= 1;
            return None;
        }
        if let Some(next) = r.next_try.filter(|next| now < *next) {
            return Some(next - now);
        }
        let want = (queued + 1).min(self.bucket.capacity as usize) as u32;
        let bucket = match key {
            None => self.prefix.clone(),
            Some(k) => format!("{}:{k}", self.prefix),
        };
        match self.redis.rate_take(&bucket, self.bucket, want).await {
            Ok(taken) if taken.taken > 0 => {
                r.tokens = taken.taken - 1;
                r.until = Some(now + self.hold);
                r.next_try = None;
                None
            }
            Ok(taken) => {
                r.tokens = 0;
                r.next_try = Some(now + taken.next_in);
                Some(taken.next_in)
            }
            Err(e) => {
                tracing::warn!(pool = %self.pool, error = %e, "could not take a rate token; entries wait and try again");
                r.next_try = Some(now + RETRY_AFTER_ERROR);
                Some(RETRY_AFTER_ERROR)
            }
        }
    }

    /// The reserve of `key`'s bucket, created on first use; reserves of keys not seen for a
    /// while are swept once many are remembered.
    fn reserve(&self, key: &Option<String>) -> Arc<tokio::sync::Mutex<Reserve>> {
        let mut reserves = lock(&self.reserves);
        if let Some(r) = reserves.get(key) {
            return r.clone();
        }
        if reserves.len() >= SWEEP_AT {
            // Only reserves nobody is using (one reference: the map's).
            reserves.retain(|_, r| Arc::strong_count(r) > 1);
        }
        let r = Arc::new(tokio::sync::Mutex::new(Reserve::default()));
        reserves.insert(key.clone(), r.clone());
        r
    }
}

/// The bucket of pool `pool` on `stream` (a key's bucket adds `:<key>`).
pub fn bucket_key(stream: &str, pool: &str) -> String {
    format!("{stream}:rate:{pool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_holds_a_tenth_of_the_period_at_most_a_second() {
        let s = Duration::from_secs;
        assert_eq!(capacity(20, s(1)), 2);
        assert_eq!(capacity(1000, s(1)), 100);
        assert_eq!(capacity(5, s(1)), 1);
        assert_eq!(capacity(3600, s(3600)), 1);
        assert_eq!(capacity(600_000, s(60)), 10_000);
        assert_eq!(hold(s(1)), Duration::from_millis(100));
        assert_eq!(hold(Duration::from_millis(10)), Duration::from_millis(10));
        assert_eq!(hold(s(3600)), s(1));
    }
}
