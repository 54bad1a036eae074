//! A snapshot of the stream, the DLQ and every pool, for `weir status` and scripts. A few
//! round trips per pool; nothing is loaded whole.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::error::RedisError;
use crate::redis::Redis;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub stream: String,
    pub stream_length: u64,
    pub dlq: String,
    pub dlq_length: u64,
    pub pools: Vec<PoolStatus>,
    /// Groups on the stream that no configured pool owns (other consumers, old pools).
    pub other_groups: Vec<String>,
    /// Redis settings that could lose accepted entries.
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub async fn status(redis: &Redis, config: &Config) -> Result<Status, RedisError> {
    let stream = &config.stream;
    let stream_length = redis.len(&stream.name).await?;
    let dlq_length = redis.len(&stream.dlq).await?;
    let groups = if stream_length > 0 || redis.exists(&stream.name).await? {
        redis.groups(&stream.name).await?
    } else {
        Vec::new()
    };
    let paused: HashSet<String> = redis
        .members(&stream.paused_key())
        .await?
        .into_iter()
        .collect();
    let mut pools = Vec::new();
    for pool in &config.pools {
        let group = groups.iter().find(|g| g.name == pool.name);
        let oldest = match group {
            Some(g) if g.pending > 0 => redis.pending_summary(&stream.name, &g.name).await?.1,
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
                .map(|id| now_ms().saturating_sub(id.ms) as f64 / 1000.0),
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
        stream_length,
        dlq: stream.dlq.clone(),
        dlq_length,
        pools,
        other_groups,
        warnings,
    })
}
