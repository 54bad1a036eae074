//! Telemetry readable in Redis (contract §12), beside the pipeline: the `<stream>:monitor`
//! hash (`monitor.rs`) and, per value of `[telemetry] key` (a connector key, a tenant…), the
//! hash `<stream>:telemetry:<value>` with delivery counters and the last delivery's
//! identifiers.
//!
//! The hot path only counts, in memory. Dispatch finds each entry's value as it checks the
//! body (an entry field, or a JSON pointer walked in the same pass as the syntax check:
//! [`Pointer`]); the settle step counts the delivery into the batch's own [`Counts`], with
//! no lock and no clock read, and the batch joins the shared per-value [`Tally`]s at once
//! ([`Telemetry::add`]: a lock of one of [`SHARDS`] per value, one clock read). The DLQ
//! path counts its entries the same way ([`Telemetry::dead_lettered`]). Every `interval_ms`
//! (and once at shutdown) `run` takes the tallies and writes them as one pipeline —
//! HINCRBY for the counters, one HSET for the `last_*` fields per value — so a busy
//! connector costs Redis a handful of commands per second, not per entry.
//!
//! Counters, per value, over every pool and process (each process adds its own):
//!
//! - `total_received`: deliveries taken in hand — every handler call (a retried entry counts
//!   once per attempt) and every entry dead-lettered before a handler saw it (`invalid`,
//!   `malformed`, `too_large`, `unrouted`); so `total_received = processed + errored +` those.
//! - `processed`: handler calls that succeeded; `errored`: handler calls that failed
//!   (retryable, permanent, timeout, panic), as `weir_messages_failed_total` counts them.
//! - `dead_lettered`: entries moved to the DLQ by a worker (the janitor's sweep of entries
//!   whose last worker died moves them without reading their bodies and is not counted).
//! - `kind:<type>`: `total_received` by event type, under the type's bounded label (the rule of
//!   `/metrics`, `metrics::TypeLabels`: listed types, with a `"*"` pool at most 100 more, then
//!   `(other)`; `(unrouted)`, `(missing)`), so inventing types cannot grow a hash.
//!
//! The `last_*` fields describe the last delivery this process counted (last writer wins
//! between processes): `last_entry_id`, `last_event_id` ("" without one), `last_type`,
//! `last_status` (`processed`, `errored` or `dead_lettered`), `last_pool`, and
//! `last_received_at` (unix ms, when it was counted: the connector's heartbeat).
//!
//! Values come from publishers and name keys verbatim (no escaping, no rewriting): a value
//! longer than [`MAX_VALUE_BYTES`] is not written but counted and logged, an empty one is
//! no value, and at most `max_values` distinct values are tracked per interval (deliveries
//! of further values are counted and logged as dropped).
//!
//! What is in Redis is bounded too, so publishers inventing values cannot fill it:
//!
//! - each value's hash expires [`VALUE_TTL`] after its last write (every write refreshes it);
//! - the index `<stream>:telemetry` (a set of the values written) is kept near `max_values`
//!   members: after each flush one page of it (SSCAN, [`TIDY_PAGE`] members, resuming where
//!   the last flush stopped) is checked and members whose hash expired are removed, then while
//!   it holds more than `max_values` members random ones are evicted with their hashes
//!   (SPOP + DEL; logged at WARN). A value evicted or expired starts again from zero when it
//!   is next counted. Between processes this is best effort: a member may briefly outlive
//!   its hash or the other way round; an orphaned hash still expires.
//! - readers scan the index a page at a time (`view`: at most `VIEW_SCAN` members), never
//!   SMEMBERS.

mod monitor;
mod tally;

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::pointer::{Place, Pointer};
use tally::Mark;
pub use tally::{Counts, Last, Status, Tally};

use crate::clock;
use crate::config::Config;
use crate::envelope;
use crate::error::RedisError;
use crate::keys;
use crate::metrics::TypeLabels;
use crate::redis::{HashDelta, Redis};
use crate::sync::lock;
use crate::vocab::{DATA, DlqReason, EVENT_ID, RawEntry};

/// Locks the tallies are spread over, so workers on different values rarely wait.
pub const SHARDS: usize = 8;
/// The longest value (in bytes) that names a telemetry hash.
pub const MAX_VALUE_BYTES: usize = 200;
/// Values per pipeline at most: a flush of thousands of values goes in a few round trips.
const PIPELINE_VALUES: usize = 500;
/// Dropped values are logged at most this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long a value's hash outlives its last write.
pub const VALUE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Index members checked for an expired hash after each flush.
pub const TIDY_PAGE: usize = 200;
/// Index members evicted per flush at most (the rest go with the next flushes).
const EVICT_PER_FLUSH: usize = 20 * PIPELINE_VALUES;
/// Index members a reader scans at most.
pub const VIEW_SCAN: usize = 10_000;

/// Deliveries not written and values evicted since the last report, and when that was.
#[derive(Default)]
struct Drops {
    over_limit: AtomicU64,
    too_long: AtomicU64,
    evicted: AtomicU64,
    reported: Mutex<Option<Instant>>,
}

/// The in-memory tallies of one engine, shared by every pool.
pub struct Telemetry {
    /// `[telemetry] key`; `None`: not set, and the hooks return at once.
    source: Option<Place>,
    /// `[stream] event_id`: for `last_event_id` of dead letters without an `id` field.
    event_id: Option<Pointer>,
    /// `[stream] name`: the prefix of the telemetry keys (not a partition's key).
    stream: String,
    max_values: usize,
    shards: [Mutex<HashMap<String, Tally>>; SHARDS],
    /// Distinct values in the shards now.
    tracked: AtomicUsize,
    drops: Drops,
    hasher: std::collections::hash_map::RandomState,
    /// The `kind:<type>` fields' labels (the engine-wide rule of `/metrics`).
    kinds: TypeLabels,
    /// Where the next flush's SSCAN of the index resumes (0: from the start).
    tidy_cursor: AtomicU64,
}

impl Telemetry {
    /// The tallies for `config` (off, counting nothing, without `[telemetry] key`).
    pub fn new(config: &Config) -> Telemetry {
        Telemetry {
            source: config.telemetry.key.as_ref().map(Place::new),
            event_id: config.stream.event_id.as_deref().map(Pointer::new),
            stream: config.stream.name.clone(),
            max_values: config.telemetry.max_values,
            shards: std::array::from_fn(|_| Mutex::default()),
            tracked: AtomicUsize::new(0),
            drops: Drops::default(),
            hasher: Default::default(),
            kinds: TypeLabels::for_engine(config),
            tidy_cursor: AtomicU64::new(0),
        }
    }

    /// Hook of the DLQ path: `entry` of `pool` is in the DLQ now, counted into `counts`, the
    /// batch it was settled in. Reasons a handler never saw (`invalid`, `malformed`,
    /// `too_large`, `unrouted`) count as received too.
    pub fn dead_lettered(
        &self,
        counts: &mut Counts,
        pool: &Arc<str>,
        entry: &RawEntry,
        reason: DlqReason,
    ) {
        let Some(source) = &self.source else { return };
        let text = |name: &str| {
            entry
                .field(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let value = match source {
            Place::Field(name) => text(name),
            Place::Pointer(p) => text(DATA).and_then(|data| p.text_in(&data)),
        };
        let Some(value) = value else { return };
        let event_id = text(EVENT_ID).or_else(|| {
            let pointer = self.event_id.as_ref()?;
            pointer.text_in(&text(DATA)?)
        });
        let handled = matches!(reason, DlqReason::Rejected | DlqReason::MaxAttempts);
        counts.count(
            &value,
            &Mark {
                pool,
                entry_id: entry.id,
                event_id: event_id.as_deref(),
                event_type: &envelope::event_type(entry).unwrap_or_default(),
                status: Status::DeadLettered,
                received: !handled,
            },
        );
    }

    fn shard(&self, value: &str) -> &Mutex<HashMap<String, Tally>> {
        &self.shards[(self.hasher.hash_one(value) as usize) % SHARDS]
    }

    /// Adds a batch's counts to the shared tallies (and empties it): one shard lock per
    /// value, and one clock read that dates every value's last delivery. Values that would
    /// name no key (empty), too long a key, or one beyond `max_values` are dropped here.
    pub fn add(&self, counts: &mut Counts) {
        if counts.is_empty() {
            return;
        }
        let at_ms = clock::now_ms();
        for (value, mut tally) in counts.tallies.drain(..) {
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_VALUE_BYTES {
                let lost = tally.deliveries();
                self.drops.too_long.fetch_add(lost, Ordering::Relaxed);
                continue;
            }
            tally.stamp(at_ms);
            tally.relabel(&self.kinds);
            self.join(value, tally, Tally::merge);
        }
    }

    /// Puts `tally` under `value`: combined with what is there (`combine(shared, tally)`),
    /// or as a new value while fewer than `max_values` are tracked, else counted as dropped.
    fn join(&self, value: String, tally: Tally, combine: fn(&mut Tally, Tally)) {
        let mut tallies = lock(self.shard(&value));
        if let Some(shared) = tallies.get_mut(&value) {
            combine(shared, tally);
        } else if self.tracked.fetch_add(1, Ordering::Relaxed) < self.max_values {
            tallies.insert(value, tally);
        } else {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
            let lost = tally.deliveries();
            self.drops.over_limit.fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Everything counted since the last take; the shards start empty again.
    pub fn take(&self) -> Vec<(String, Tally)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let taken = std::mem::take(&mut *lock(shard));
            self.tracked.fetch_sub(taken.len(), Ordering::Relaxed);
            out.extend(taken);
        }
        out
    }

    /// Puts a batch that could not be written back under what was counted since, so an
    /// outage delays counts instead of losing them (within `max_values`).
    fn restore(&self, batch: Vec<(String, Tally)>) {
        for (value, older) in batch {
            self.join(value, older, Tally::absorb);
        }
    }

    /// Writes what was counted since the last flush: one pipeline per [`PIPELINE_VALUES`]
    /// values. On failure the counts go back to be written with the next flush. (A pipeline
    /// cut off half-way may then count some of them twice: telemetry errs on the side of
    /// counting.) Then keeps the index bounded ([`Telemetry::tidy`]).
    pub async fn flush(&self, redis: &Redis) -> Result<(), RedisError> {
        self.report_drops();
        if self.source.is_none() {
            return Ok(());
        }
        self.write(redis).await?;
        self.tidy(redis).await
    }

    async fn write(&self, redis: &Redis) -> Result<(), RedisError> {
        let mut batch = self.take();
        let index = keys::telemetry_index(&self.stream);
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(PIPELINE_VALUES));
            let deltas: Vec<HashDelta> = batch
                .iter()
                .map(|(v, t)| t.delta(keys::telemetry(&self.stream, v)))
                .collect();
            let members: Vec<&str> = batch.iter().map(|(v, _)| v.as_str()).collect();
            let written = redis
                .apply_hash_deltas(&deltas, &index, &members, VALUE_TTL)
                .await;
            if let Err(e) = written {
                self.restore(batch);
                self.restore(rest);
                return Err(e);
            }
            batch = rest;
        }
        Ok(())
    }

    /// One page of the index checked for members whose hash expired (removed), then random
    /// members evicted with their hashes while the index holds more than `max_values`.
    async fn tidy(&self, redis: &Redis) -> Result<(), RedisError> {
        let index = keys::telemetry_index(&self.stream);
        let cursor = self.tidy_cursor.load(Ordering::Relaxed);
        let (next, page) = redis.scan_members(&index, cursor, TIDY_PAGE).await?;
        self.tidy_cursor.store(next, Ordering::Relaxed);
        let hashes: Vec<String> = page
            .iter()
            .map(|v| keys::telemetry(&self.stream, v))
            .collect();
        let exist = redis.keys_exist(&hashes).await?;
        let expired: Vec<String> = page
            .into_iter()
            .zip(exist)
            .filter_map(|(value, exists)| (!exists).then_some(value))
            .collect();
        redis.forget_values(&index, &expired, &[]).await?;
        let members = redis.set_len(&index).await?;
        let mut excess =
            (members.saturating_sub(self.max_values as u64) as usize).min(EVICT_PER_FLUSH);
        while excess > 0 {
            let popped = redis
                .pop_members(&index, excess.min(PIPELINE_VALUES))
                .await?;
            if popped.is_empty() {
                break;
            }
            let hashes: Vec<String> = popped
                .iter()
                .map(|v| keys::telemetry(&self.stream, v))
                .collect();
            redis.forget_values(&index, &[], &hashes).await?;
            excess = excess.saturating_sub(popped.len());
            self.drops
                .evicted
                .fetch_add(popped.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Logs deliveries whose value was not written, at most every [`DROP_LOG_EVERY`].
    fn report_drops(&self) {
        let mut reported = lock(&self.drops.reported);
        if reported.is_some_and(|at| at.elapsed() < DROP_LOG_EVERY) {
            return;
        }
        let over = self.drops.over_limit.swap(0, Ordering::Relaxed);
        let long = self.drops.too_long.swap(0, Ordering::Relaxed);
        let evicted = self.drops.evicted.swap(0, Ordering::Relaxed);
        if evicted > 0 {
            tracing::warn!(
                evicted,
                max_values = self.max_values,
                "telemetry: the index held more than [telemetry] max_values values; randomly chosen values were evicted with their hashes (their counters start again from zero); raise max_values, or check that [telemetry] key names a low-cardinality field"
            );
        }
        if over > 0 {
            tracing::warn!(
                dropped = over,
                max_values = self.max_values,
                "telemetry: deliveries of values beyond [telemetry] max_values distinct values per interval were not counted; raise max_values, or check that [telemetry] key names a low-cardinality field"
            );
        }
        if long > 0 {
            tracing::warn!(
                dropped = long,
                max_bytes = MAX_VALUE_BYTES,
                "telemetry: deliveries whose [telemetry] key value is longer than the limit were not counted (the value would name a Redis key)"
            );
        }
        if over > 0 || long > 0 || evicted > 0 {
            *reported = Some(Instant::now());
        }
    }
}

/// Logs a failing write once per streak of failures (later ones at DEBUG), and the recovery.
struct WriteLog {
    what: &'static str,
    failing: bool,
}

impl WriteLog {
    fn note(&mut self, result: Result<(), RedisError>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(what = self.what, "telemetry written again");
            }
            Ok(()) => {}
            Err(e) if self.failing => {
                tracing::debug!(what = self.what, error = %e, "telemetry write failed again")
            }
            Err(e) => {
                self.failing = true;
                tracing::warn!(what = self.what, error = %e, "telemetry write failed; consumption goes on, the next interval tries again (logged once until it works)");
            }
        }
    }
}

/// Every `[telemetry] interval_ms` until `stop`: refreshes `<stream>:monitor` (unless
/// `monitor = false`) and flushes the tallies. `writer` names this process in the monitor
/// hash. The final flush after the workers drained is the engine's (`Telemetry::flush`).
pub(crate) async fn run(
    telemetry: Arc<Telemetry>,
    redis: Redis,
    config: Arc<Config>,
    counts: Arc<crate::status::UnreadCounts>,
    writer: String,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.telemetry.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut monitor_log = WriteLog {
        what: "monitor",
        failing: false,
    };
    let mut flush_log = WriteLog {
        what: "telemetry",
        failing: false,
    };
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => break,
        }
        if config.telemetry.monitor {
            monitor_log.note(monitor::refresh(&redis, &config, &counts, &writer).await);
        }
        flush_log.note(telemetry.flush(&redis).await);
    }
}

/// What the telemetry hashes hold now, for the admin API: `<stream>:monitor` and up to
/// `limit` telemetry values (all of `values` when given, else the first of the index in name
/// order, among at most [`VIEW_SCAN`] members scanned).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct View {
    /// `<stream>:monitor` as stored; empty when no engine refreshed it within its expiry.
    pub monitor: BTreeMap<String, String>,
    /// `<stream>:telemetry:<value>` by value.
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Values in the index `<stream>:telemetry` not shown (beyond `limit`, or not scanned).
    pub more: usize,
}

/// Reads the monitor hash and the telemetry hashes of `values` (or of the first `limit`
/// values of the index in sorted order, scanning at most [`VIEW_SCAN`] of its members).
pub(crate) async fn view(
    redis: &Redis,
    config: &Config,
    values: &[String],
    limit: usize,
) -> Result<View, RedisError> {
    let stream = &config.stream.name;
    let sorted = |map: HashMap<String, String>| map.into_iter().collect::<BTreeMap<_, _>>();
    let monitor = sorted(redis.hash_get_all(&keys::monitor(stream)).await?);
    let (mut names, total) = if values.is_empty() {
        scan_index(redis, &keys::telemetry_index(stream)).await?
    } else {
        (values.to_vec(), values.len())
    };
    names.sort();
    names.dedup();
    names.truncate(limit);
    let more = total.saturating_sub(names.len());
    let mut out = BTreeMap::new();
    for name in names {
        let hash = redis.hash_get_all(&keys::telemetry(stream, &name)).await?;
        if !hash.is_empty() {
            out.insert(name, sorted(hash));
        }
    }
    Ok(View {
        monitor,
        values: out,
        more,
    })
}

/// Up to [`VIEW_SCAN`] members of the index (SSCAN pages) and how many it holds.
async fn scan_index(redis: &Redis, index: &str) -> Result<(Vec<String>, usize), RedisError> {
    let mut names = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, page) = redis.scan_members(index, cursor, 1000).await?;
        names.extend(page);
        if next == 0 || names.len() >= VIEW_SCAN {
            break;
        }
        cursor = next;
    }
    names.truncate(VIEW_SCAN);
    let total = (redis.set_len(index).await? as usize).max(names.len());
    Ok((names, total))
}

#[cfg(test)]
mod tests;
