//! Stall detection (contract §15): a pool is stalled in this process when it runs (not
//! paused), has entries this process may hand out, and started nothing for `stall_seconds`.
//! The detector first heals a pool that is not reading (its readers start over on new
//! connections; running handlers are never touched), then reports what stays stalled to
//! `GET /readyz` and `weir_pool_stalled`.
//!
//! The rule, per pool (summed over its partitions), checked every [`TICK`]:
//! - Progress is a handler start or a read batch (`consumer::Progress`, one relaxed store
//!   on the hot path). A pool that progressed since the last tick is not stalled, and costs
//!   no round trip.
//! - Otherwise it waits if it has work: entries queued for its workers or behind a busy key
//!   here; or, on a partition it may read (an ordered pool's only while it owns it),
//!   undelivered entries (XINFO GROUPS `lag`, or one XRANGE where Redis has no lag) or
//!   pending entries the janitor should have reclaimed by now (idle past the visibility
//!   timeout plus a janitor interval).
//! - Waiting with no progress for `stall_seconds` is a stall: `busy` when every worker slot
//!   runs a handler, else `not_reading`. A `not_reading` pool is healed once per stall, and
//!   reported if it still does not move [`HEAL_GRACE`] later (at most `stall_seconds`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::consumer::Pool;
use crate::error::RedisError;
use crate::metrics;
use crate::redis::{GroupInfo, Redis};
use crate::sync::lock;

/// How often the detector looks: a stall is seen at most this long after `stall_seconds`.
const TICK: Duration = Duration::from_millis(500);

/// How long a healed pool has to move before it is reported stalled.
const HEAL_GRACE: Duration = Duration::from_secs(5);

/// Why a pool is stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reason {
    /// Every worker slot runs a handler that has not finished: slow or hung handlers.
    Busy,
    /// Worker slots are free, entries wait, and nothing starts: the reader does not read.
    NotReading,
}

/// A stalled pool, as `/readyz` names it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stall {
    pub name: String,
    pub reason: Reason,
    /// Since when it has waited with work and started nothing (RFC 3339).
    pub since: String,
}

/// The pools stalled now, as the detector last saw them: what `/readyz` answers from.
#[derive(Debug, Default)]
pub(crate) struct Stalls(Mutex<Vec<Stall>>);

impl Stalls {
    pub(crate) fn current(&self) -> Vec<Stall> {
        lock(&self.0).clone()
    }

    fn set(&self, stalls: Vec<Stall>) {
        *lock(&self.0) = stalls;
    }
}

/// A stretch of waiting with work and no progress.
struct Episode {
    /// The stall clock: when the waiting began (or, after a heal, its grace).
    clock: Instant,
    /// When the waiting began, in unix ms, for `since`.
    since_ms: u64,
    healed: bool,
    reported: Option<Reason>,
}

/// One pool's partitions in this process, and its current episode.
struct Watched {
    parts: Vec<Arc<Pool>>,
    episode: Option<Episode>,
}

/// XINFO GROUPS per stream, asked at most once per tick.
#[derive(Default)]
struct Groups(HashMap<String, Vec<GroupInfo>>);

impl Groups {
    async fn of(&mut self, redis: &Redis, stream: &str) -> Result<&[GroupInfo], RedisError> {
        if !self.0.contains_key(stream) {
            let groups = redis.groups(stream).await?;
            self.0.insert(stream.to_string(), groups);
        }
        Ok(self.0.get(stream).map(Vec::as_slice).unwrap_or_default())
    }
}

/// Watches every running pool until `stop`; `janitor` is the janitor's interval.
pub(crate) async fn watch_loop(
    pools: Vec<Arc<Pool>>,
    redis: Redis,
    janitor: Duration,
    stalls: Arc<Stalls>,
    stop: CancellationToken,
) {
    let mut watched: Vec<Watched> = Vec::new();
    for pool in pools {
        match watched.iter_mut().find(|w| w.parts[0].name == pool.name) {
            Some(w) => w.parts.push(pool),
            None => watched.push(Watched {
                parts: vec![pool],
                episode: None,
            }),
        }
    }
    let mut previous = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.cancelled() => break,
        }
        let mut groups = Groups::default();
        let mut now_stalled = Vec::new();
        for w in &mut watched {
            w.check(&redis, previous, janitor, &mut groups).await;
            let reported = w
                .episode
                .as_ref()
                .and_then(|e| Some((e.reported?, e.since_ms)));
            metrics::pool_stalled(&w.parts[0].name, reported.is_some());
            if let Some((reason, since_ms)) = reported {
                now_stalled.push(Stall {
                    name: w.parts[0].name.to_string(),
                    reason,
                    since: rfc3339(since_ms),
                });
            }
        }
        stalls.set(now_stalled);
        previous = Instant::now();
    }
    stalls.set(Vec::new());
}

impl Watched {
    /// Moves the episode on: ended by progress, a pause or no work; begun, healed or
    /// reported while the pool waits. A failed look at Redis changes nothing (`/readyz`
    /// answers `unhealthy` meanwhile).
    async fn check(
        &mut self,
        redis: &Redis,
        previous: Instant,
        janitor: Duration,
        groups: &mut Groups,
    ) {
        let pool = self.parts[0].clone();
        let progressed = pool.progress.last().is_some_and(|t| t >= previous);
        if pool.stop.is_cancelled() || pool.is_paused() || progressed {
            return self.end();
        }
        match self.has_work(redis, janitor, groups).await {
            Ok(true) => {}
            Ok(false) => return self.end(),
            Err(e) => {
                tracing::debug!(pool = %pool.name, error = %e, "stall check: Redis did not answer");
                return;
            }
        }
        let now = Instant::now();
        let episode = self.episode.get_or_insert_with(|| Episode {
            clock: previous,
            since_ms: crate::clock::now_ms()
                .saturating_sub(now.duration_since(previous).as_millis() as u64),
            healed: false,
            reported: None,
        });
        let stall = pool.config.stall;
        if episode.clock.elapsed() < stall {
            return;
        }
        let running: usize = self
            .parts
            .iter()
            .map(|p| p.in_flight.load(Ordering::Relaxed))
            .sum();
        let reason = if running >= pool.scale.current() {
            Reason::Busy
        } else {
            Reason::NotReading
        };
        if reason == Reason::NotReading && !episode.healed {
            episode.healed = true;
            let grace = HEAL_GRACE.min(stall);
            episode.clock = now.checked_sub(stall - grace).unwrap_or(now);
            tracing::warn!(pool = %pool.name, stall_seconds = stall.as_secs_f64(), partitions = self.parts.len(), "pool stalled: entries wait and worker slots are free, but no handler started; dropped its readers' connections and read loops and started new ones (running handlers keep running)");
            pool.progress.heal();
            return;
        }
        if episode.reported != Some(reason) {
            episode.reported = Some(reason);
            tracing::warn!(pool = %pool.name, reason = ?reason, running, stall_seconds = stall.as_secs_f64(), "pool stalled: entries wait and no handler started; /readyz answers 503 until it moves");
        }
    }

    fn end(&mut self) {
        if let Some(Episode {
            reported: Some(_), ..
        }) = self.episode.take()
        {
            tracing::info!(pool = %self.parts[0].name, "pool moves again; no longer stalled");
        }
    }

    /// Whether the pool has entries this process may hand out now.
    async fn has_work(
        &self,
        redis: &Redis,
        janitor: Duration,
        groups: &mut Groups,
    ) -> Result<bool, RedisError> {
        let pool = &self.parts[0];
        if !pool.jobs.is_empty() {
            return Ok(true); // queued for the workers
        }
        for part in &self.parts {
            if let Some(ordered) = &part.ordered {
                if ordered.owned_epoch().is_none() {
                    continue; // another process's to hand out
                }
                if ordered.waiting() > 0 {
                    return Ok(true);
                }
            }
            if part_has_work(redis, part, janitor, groups).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Undelivered entries, or pending ones overdue for the janitor, on `part`'s stream.
async fn part_has_work(
    redis: &Redis,
    part: &Pool,
    janitor: Duration,
    groups: &mut Groups,
) -> Result<bool, RedisError> {
    let stream = &part.stream.name;
    let Some(group) = groups
        .of(redis, stream)
        .await?
        .iter()
        .find(|g| *g.name == *part.name)
        .cloned()
    else {
        return Ok(false);
    };
    let unread = match group.lag {
        Some(lag) => lag > 0,
        None => redis.any_after(stream, group.last_delivered).await?,
    };
    if unread || group.pending == 0 {
        return Ok(unread);
    }
    let overdue = part.config.retry.visibility_timeout + janitor;
    redis.any_idle_pending(stream, &part.name, overdue).await
}

fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}
