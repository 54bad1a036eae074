//! A snapshot of the stream, the DLQ and every pool, for `weir status` and scripts. A few
//! round trips per pool; nothing is loaded whole.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock;
pub use crate::concurrency::Reported;
use crate::concurrency::read_reported;
use crate::config::{Config, PoolConfig, StreamConfig};
use crate::error::RedisError;
use crate::redis::{GroupInfo, Redis, StreamInfo};
use crate::sync::lock;
use crate::vocab::StreamId;

/// What `weir status` prints: enough to tell at a glance whether events flow, pile up or fail.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The stream key (the partitions' prefix when partitioned).
    pub stream: String,
    /// How many stream keys the stream is spread over.
    pub partitions: usize,
    /// Entries on the stream, over all partitions; grows when trimming is held back.
    pub stream_length: u64,
    /// The DLQ key.
    pub dlq: String,
    /// Entries waiting for an operator, over all partitions.
    pub dlq_length: u64,
    /// Delayed events waiting in the scheduled sets, over all partitions (contract §13).
    pub scheduled: u64,
    /// How late the most overdue delayed event is, by Redis's clock; 0 when none is.
    pub scheduled_overdue_seconds: f64,
    /// Every configured pool, in config order.
    pub pools: Vec<PoolStatus>,
    /// Groups on the stream that no configured pool owns (other consumers, old pools).
    pub other_groups: Vec<String>,
    /// Redis settings that could lose accepted entries.
    pub warnings: Vec<String>,
}

/// One configured pool as every report shows it — `weir status`, `/healthz` and the gauges —
/// built in one place (`PoolStatus::of`): its group summed over the partitions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// The pool, and its consumer group.
    pub name: String,
    /// False when the pool's consumer group does not exist (yet).
    pub exists: bool,
    /// In the paused set: its readers stop, in-flight work finishes.
    pub paused: bool,
    /// Processes reading (the most any partition has).
    pub consumers: u64,
    /// Delivered, not yet acknowledged: in flight or waiting for a retry.
    pub pending: u64,
    /// Entries not yet delivered to the group; `None` when Redis cannot tell.
    pub lag: Option<u64>,
    /// Entries not yet handled: not yet delivered plus pending. Where Redis cannot tell the
    /// lag (after XDEL or trimming) weir counts the undelivered entries itself: exact up to
    /// 100,000 per stream or partition, a lower bound beyond.
    pub backlog: u64,
    /// Age of the oldest unacknowledged entry, from its ID's timestamp.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Handlers at once per process: the configured bounds and, for an adaptive pool, what
    /// each running process uses now. Only in `weir status` (and the API's status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyStatus>,
    /// Ordered pools: the `order_key` (a field name or a JSON pointer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// Ordered pools: who owns each stream or partition, from `<stream>:owner:<pool>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<OwnerStatus>,
    /// Rate-limited pools (contract §14): the configured limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateStatus>,
    /// Rate-limited pools: entries waiting for a start token in the engine that answers
    /// (`/healthz`, the API); absent from `weir status`, which runs no engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_waiting: Option<u64>,
}

/// A pool's `rate` and `rate_key` (contract §14).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateStatus {
    /// Handler starts per `per`, across all processes.
    pub limit: u32,
    /// The period, ms.
    pub per_ms: u64,
    /// `rate_key`: the limit holds per value of this field or pointer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl RateStatus {
    /// The status of a configured limit.
    pub fn of(rate: &crate::config::RateLimit) -> RateStatus {
        RateStatus {
            limit: rate.limit,
            per_ms: rate.per.as_millis() as u64,
            key: rate.key.as_ref().map(|k| k.as_str().to_string()),
        }
    }
}

/// A pool's concurrency (contract §12): fixed (`min` = `max`), or adaptive between them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyStatus {
    /// `concurrency = { min, max }`: each process adapts between the two.
    pub adaptive: bool,
    /// The least it runs at (the fixed concurrency when not adaptive).
    pub min: usize,
    /// The most it runs at.
    pub max: usize,
    /// Adaptive pools: each running process's current concurrency, from
    /// `<stream>:concurrency:<pool>` (stale entries of stopped processes left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Reported>,
}

impl ConcurrencyStatus {
    /// `pool`'s bounds, and for an adaptive pool what its processes published.
    async fn of(
        redis: &Redis,
        stream: &StreamConfig,
        pool: &PoolConfig,
    ) -> Result<ConcurrencyStatus, RedisError> {
        let processes = match pool.scaling {
            Some(s) => read_reported(redis, &stream.name, &pool.name, s.cooldown).await?,
            None => Vec::new(),
        };
        Ok(ConcurrencyStatus {
            adaptive: pool.scaling.is_some(),
            min: pool.initial_concurrency(),
            max: pool.concurrency,
            processes,
        })
    }
}

/// The ownership lease of an ordered pool on one stream or partition.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerStatus {
    /// The stream (partition) key.
    pub stream: String,
    /// The owning consumer (`<host>-<pid>-<random>`); `None` when nobody owns it now.
    pub consumer: Option<String>,
    /// The fencing epoch of the current (or last) owner.
    pub epoch: Option<u64>,
    /// Since when the current owner holds it (unix ms).
    pub since: Option<u64>,
}

/// Every partition's owner lease of the ordered pool `pool`.
pub async fn owners(
    redis: &Redis,
    config: &Config,
    pool: &str,
) -> Result<Vec<OwnerStatus>, RedisError> {
    let mut owners = Vec::new();
    for part in config.partitions() {
        let lease = redis.lease(&part.owner_key(pool)).await?;
        let epoch = match lease.get("epoch") {
            Some(e) => e.parse().ok(),
            None => redis
                .get_text(&format!("{}:epoch", part.owner_key(pool)))
                .await?
                .and_then(|e| e.parse().ok()),
        };
        owners.push(OwnerStatus {
            stream: part.stream.clone(),
            consumer: lease.get("consumer").cloned(),
            epoch,
            since: lease.get("since").and_then(|s| s.parse().ok()),
        });
    }
    Ok(owners)
}

impl PoolStatus {
    /// Pool `name` as `totals` and `paused` say; a pool whose group does not exist yet shows
    /// zeros. The oldest pending entry costs round trips, so only `weir status` asks for it
    /// (`oldest_pending`).
    pub(crate) fn of(name: &str, totals: &Totals, paused: &HashSet<String>) -> PoolStatus {
        let group = totals.groups.iter().find(|g| g.name == name);
        let pending = group.map_or(0, |g| g.pending);
        PoolStatus {
            name: name.to_string(),
            exists: group.is_some(),
            paused: paused.contains(name),
            consumers: group.map_or(0, |g| g.consumers),
            pending,
            lag: group.and_then(|g| g.lag),
            backlog: pending + totals.unread.get(name).copied().unwrap_or(0),
            oldest_pending_age_seconds: None,
            concurrency: None,
            order_key: None,
            owners: Vec::new(),
            rate_limit: None,
            rate_waiting: None,
        }
    }

    /// The oldest entry the pool has not acknowledged; no round trip when nothing is pending.
    pub(crate) async fn oldest_pending(
        &self,
        redis: &Redis,
        stream: &StreamConfig,
    ) -> Result<Option<StreamId>, RedisError> {
        if self.pending == 0 {
            return Ok(None);
        }
        oldest_pending(redis, stream, &self.name).await
    }
}

/// The members of the paused set: pools an operator paused.
pub(crate) async fn paused(
    redis: &Redis,
    stream: &StreamConfig,
) -> Result<HashSet<String>, RedisError> {
    Ok(redis
        .members(&stream.paused_key())
        .await?
        .into_iter()
        .collect())
}

/// The stream, its DLQ and its groups summed over the partitions.
pub struct Totals {
    /// Entries on the stream keys.
    pub stream_length: u64,
    /// Entries on the DLQ keys.
    pub dlq_length: u64,
    /// Per group: consumers is the most any partition has (a process is one consumer in
    /// each), pending and lag are sums (lag `None` if any partition cannot tell).
    pub groups: Vec<GroupInfo>,
    /// Per group, entries not yet delivered, summed over the partitions: Redis's lag, or
    /// where it has none the count of [`UnreadCounts`].
    pub unread: HashMap<String, u64>,
}

/// The most undelivered entries weir counts itself for one group on one stream; past it
/// the count is a lower bound (contract §15).
pub const UNREAD_COUNT_LIMIT: u64 = 100_000;

/// A count is redone at most this often per stream and group, however many reports ask…
const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// …and no sooner than this many times as long as it took: counting then costs Redis at
/// most 2 % of its time (100,000 entries take ~0.4 s, so a full count is redone every 20 s).
const RECOUNT_SPACING: u32 = 50;

/// Undelivered entries that weir counted itself where XINFO GROUPS has no `lag` (after XDEL
/// or trimming, Redis cannot tell), remembered per stream and group so that the reports of
/// one engine (gauges, `/healthz`, the monitor hash, the API) share one count. A count stays
/// exact while the stream and the group stand still (same length, same entries ever added,
/// same last-delivered ID: nothing was added, deleted or read); once they moved it is
/// redone, at most once per `RECOUNT_EVERY` and `RECOUNT_SPACING` times its cost.
#[derive(Debug, Default)]
pub struct UnreadCounts {
    counted: Mutex<HashMap<(String, String), Counted>>,
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    /// Last-delivered ID, length, entries ever added: what the count was made for.
    at: (StreamId, u64, u64),
    when: Instant,
    /// How long counting took: the next count waits [`RECOUNT_SPACING`] times as long.
    took: Duration,
    unread: u64,
}

impl UnreadCounts {
    /// `group`'s undelivered entries on `stream`: its lag, or counted (see the type).
    /// `info` is the stream's XINFO STREAM, fetched once per stream when first needed.
    async fn unread(
        &self,
        redis: &Redis,
        stream: &str,
        group: &GroupInfo,
        info: &mut Option<StreamInfo>,
    ) -> Result<u64, RedisError> {
        if let Some(lag) = group.lag {
            return Ok(lag);
        }
        let info = match info {
            Some(info) => info,
            None => info.insert(redis.stream_info(stream).await?),
        };
        let at = (group.last_delivered, info.length, info.entries_added);
        let key = (stream.to_string(), group.name.clone());
        let known = lock(&self.counted).get(&key).copied();
        if let Some(known) = known
            && (known.at == at
                || known.when.elapsed() < RECOUNT_EVERY.max(known.took * RECOUNT_SPACING))
        {
            return Ok(known.unread);
        }
        let started = Instant::now();
        let (unread, _exact) = redis
            .count_after(stream, group.last_delivered, UNREAD_COUNT_LIMIT)
            .await?;
        let (when, took) = (Instant::now(), started.elapsed());
        let counted = Counted {
            at,
            when,
            took,
            unread,
        };
        lock(&self.counted).insert(key, counted);
        Ok(unread)
    }
}

/// Sums the stream, the DLQ and the groups over the partitions: what every report starts
/// from. Undelivered entries Redis cannot tell are counted afresh; an engine passes its
/// [`UnreadCounts`] to [`totals_with`] instead.
pub async fn totals(redis: &Redis, stream: &StreamConfig) -> Result<Totals, RedisError> {
    totals_with(redis, stream, &UnreadCounts::default()).await
}

/// [`totals`], counting undelivered entries through `counts`.
pub async fn totals_with(
    redis: &Redis,
    stream: &StreamConfig,
    counts: &UnreadCounts,
) -> Result<Totals, RedisError> {
    let mut totals = Totals {
        stream_length: 0,
        dlq_length: 0,
        groups: Vec::new(),
        unread: HashMap::new(),
    };
    for part in stream.partitions() {
        let len = redis.stream_len(&part.stream).await?;
        totals.stream_length += len;
        totals.dlq_length += redis.stream_len(&part.dlq).await?;
        if len == 0 && !redis.exists(&part.stream).await? {
            continue;
        }
        let mut info = None;
        for g in redis.groups(&part.stream).await? {
            let unread = counts.unread(redis, &part.stream, &g, &mut info).await?;
            *totals.unread.entry(g.name.clone()).or_default() += unread;
            match totals.groups.iter_mut().find(|t| t.name == g.name) {
                None => totals.groups.push(g),
                Some(t) => {
                    t.consumers = t.consumers.max(g.consumers);
                    t.pending += g.pending;
                    t.lag = t.lag.zip(g.lag).map(|(a, b)| a + b);
                    t.last_delivered = t.last_delivered.max(g.last_delivered);
                    t.entries_read = t.entries_read.zip(g.entries_read).map(|(a, b)| a + b);
                }
            }
        }
    }
    Ok(totals)
}

/// How old an entry is, from its ID's timestamp, in seconds.
pub(crate) fn age_seconds(id: StreamId) -> f64 {
    clock::now_ms().saturating_sub(id.ms) as f64 / 1000.0
}

/// The oldest entry `group` has not acknowledged, over all partitions.
pub async fn oldest_pending(
    redis: &Redis,
    stream: &StreamConfig,
    group: &str,
) -> Result<Option<StreamId>, RedisError> {
    let mut oldest: Option<StreamId> = None;
    for part in stream.partitions() {
        if let (n, Some(min)) = redis.pending_summary(&part.stream, group).await?
            && n > 0
        {
            oldest = Some(oldest.map_or(min, |o| o.min(min)));
        }
    }
    Ok(oldest)
}

/// The snapshot behind `weir status`: a few round trips per pool and partition, never a scan
/// (but for counting undelivered entries where Redis cannot tell the lag: see
/// [`UnreadCounts`]).
pub async fn status(redis: &Redis, config: &Config) -> Result<Status, RedisError> {
    status_with(redis, config, &UnreadCounts::default()).await
}

/// [`status`], counting undelivered entries through `counts` (an engine's, shared by its
/// reports).
pub async fn status_with(
    redis: &Redis,
    config: &Config,
    counts: &UnreadCounts,
) -> Result<Status, RedisError> {
    let stream = &config.stream;
    let totals = totals_with(redis, stream, counts).await?;
    let paused = paused(redis, stream).await?;
    let mut pools = Vec::new();
    for pool in &config.pools {
        let mut view = PoolStatus::of(&pool.name, &totals, &paused);
        let oldest = view.oldest_pending(redis, stream).await?;
        view.oldest_pending_age_seconds = oldest.map(age_seconds);
        view.concurrency = Some(ConcurrencyStatus::of(redis, stream, pool).await?);
        view.rate_limit = pool.rate.as_ref().map(RateStatus::of);
        if let Some(key) = &pool.order_key {
            view.order_key = Some(key.as_str().to_string());
            view.owners = owners(redis, config, &pool.name).await?;
        }
        pools.push(view);
    }
    let Totals {
        stream_length,
        dlq_length,
        groups,
        ..
    } = totals;
    let other_groups = groups
        .iter()
        .filter(|g| config.pool(&g.name).is_none())
        .map(|g| g.name.clone())
        .collect();
    let mut warnings = Vec::new();
    if let Ok((aof, policy)) = redis.durability().await {
        if !aof {
            warnings.push("AOF is off (appendonly no): a Redis crash loses entries accepted since the last snapshot".to_string());
        }
        if policy != "noeviction" {
            warnings.push(format!("maxmemory-policy is {policy}: Redis may evict streams and groups under memory pressure"));
        }
    }
    let delayed = crate::schedule::delayed::summary(redis, stream).await?;
    Ok(Status {
        stream: stream.name.clone(),
        partitions: stream.partitions,
        stream_length,
        dlq: stream.dlq.clone(),
        dlq_length,
        scheduled: delayed.scheduled,
        scheduled_overdue_seconds: delayed.overdue_seconds,
        pools,
        other_groups,
        warnings,
    })
}
