//! A snapshot of the stream, the DLQ and every pool, for `weir status` and scripts. A few
//! round trips per pool; nothing is loaded whole.

use std::collections::HashSet;

use serde::Serialize;

use crate::clock;
use crate::config::{Config, StreamConfig};
use crate::error::RedisError;
use crate::redis::{GroupInfo, Redis, StreamId};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub stream: String,
    /// How many stream keys the stream is spread over.
    pub partitions: usize,
    pub stream_length: u64,
    pub dlq: String,
    pub dlq_length: u64,
    pub pools: Vec<PoolStatus>,
    /// Groups on the stream that no configured pool owns (other consumers, old pools).
    pub other_groups: Vec<String>,
    /// Redis settings that could lose accepted entries.
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub name: String,
    /// False when the pool's consumer group does not exist (yet).
    pub exists: bool,
    pub paused: bool,
    pub consumers: u64,
    pub pending: u64,
    /// Entries not yet delivered to the group; `None` when Redis cannot tell.
    pub lag: Option<u64>,
    /// Age of the oldest unacknowledged entry, from its ID's timestamp.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Ordered pools: the `order_key` (a field name or a JSON pointer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// Ordered pools: who owns each stream or partition, from `<stream>:owner:<pool>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<OwnerStatus>,
}

/// The ownership lease of an ordered pool on one stream or partition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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

/// The stream, its DLQ and its groups summed over the partitions.
pub struct Totals {
    pub stream_length: u64,
    pub dlq_length: u64,
    /// Per group: consumers is the most any partition has (a process is one consumer in
    /// each), pending and lag are sums (lag `None` if any partition cannot tell).
    pub groups: Vec<GroupInfo>,
}

pub async fn totals(redis: &Redis, stream: &StreamConfig) -> Result<Totals, RedisError> {
    let mut totals = Totals {
        stream_length: 0,
        dlq_length: 0,
        groups: Vec::new(),
    };
    for part in stream.partitions() {
        let len = redis.stream_len(&part.stream).await?;
        totals.stream_length += len;
        totals.dlq_length += redis.stream_len(&part.dlq).await?;
        if len == 0 && !redis.exists(&part.stream).await? {
            continue;
        }
        for g in redis.groups(&part.stream).await? {
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

pub async fn status(redis: &Redis, config: &Config) -> Result<Status, RedisError> {
    let stream = &config.stream;
    let Totals {
        stream_length,
        dlq_length,
        groups,
    } = totals(redis, stream).await?;
    let paused: HashSet<String> = redis
        .members(&stream.paused_key())
        .await?
        .into_iter()
        .collect();
    let mut pools = Vec::new();
    for pool in &config.pools {
        let group = groups.iter().find(|g| g.name == pool.name);
        let oldest = match group {
            Some(g) if g.pending > 0 => oldest_pending(redis, stream, &g.name).await?,
            _ => None,
        };
        pools.push(PoolStatus {
            name: pool.name.clone(),
            exists: group.is_some(),
            paused: paused.contains(&pool.name),
            consumers: group.map_or(0, |g| g.consumers),
            pending: group.map_or(0, |g| g.pending),
            lag: group.and_then(|g| g.lag),
            oldest_pending_age_seconds: oldest
                .map(|id| clock::now_ms().saturating_sub(id.ms) as f64 / 1000.0),
            order_key: pool.order_key.as_ref().map(|k| k.as_str().to_string()),
            owners: match pool.order_key {
                Some(_) => owners(redis, config, &pool.name).await?,
                None => Vec::new(),
            },
        });
    }
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
    Ok(Status {
        stream: stream.name.clone(),
        partitions: stream.partitions,
        stream_length,
        dlq: stream.dlq.clone(),
        dlq_length,
        pools,
        other_groups,
        warnings,
    })
}
