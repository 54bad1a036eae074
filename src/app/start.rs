//! Getting a running engine's connections ready: the start-up sequence (connect, durability
//! warnings, consumer groups) and the readers' dedicated connections, each retried with
//! backoff while Redis is unreachable.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{RedisError, RedisErrorKind};
use crate::redis::Redis;
use crate::streak::FailureStreak;
use crate::vocab::StreamId;

/// A dedicated connection for a blocking reader, retried until `stop`.
pub(super) async fn dedicated(redis: &Redis, stop: &CancellationToken) -> Option<Redis> {
    let mut streak = FailureStreak::default();
    loop {
        match redis.dedicated().await {
            Ok(conn) => return Some(conn),
            Err(e) => {
                if streak.failed() {
                    tracing::warn!(error = %e, "reader connection failed; retrying");
                }
            }
        }
        streak.wait(stop).await;
        if stop.is_cancelled() {
            return None;
        }
    }
}

/// Connects (retrying while Redis is unreachable), warns about durability, ensures every
/// group exists, and returns each group's last-delivered ID.
pub(super) async fn start(
    redis: &Redis,
    config: &Config,
    only: &Option<Vec<String>>,
) -> Result<HashMap<(String, String), StreamId>, RedisError> {
    let never = CancellationToken::new();
    let mut streak = FailureStreak::default();
    loop {
        match redis.connect().await {
            Ok(()) => break,
            Err(e) if e.is(RedisErrorKind::NoPermission) => return Err(e),
            Err(e) => {
                if streak.failed() {
                    tracing::warn!(error = %e, failures = streak.count(), "Redis unreachable; retrying (healthz reports unhealthy meanwhile)");
                }
                streak.wait(&never).await;
            }
        }
    }
    warn_durability(redis).await;
    let mut streak = FailureStreak::default();
    loop {
        match ensure_groups(redis, config, only).await {
            Ok(positions) => return Ok(positions),
            Err(e) if e.is(RedisErrorKind::Connection) => {
                if streak.failed() {
                    tracing::warn!(error = %e, "creating consumer groups failed; retrying");
                }
                streak.wait(&never).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn ensure_groups(
    redis: &Redis,
    config: &Config,
    only: &Option<Vec<String>>,
) -> Result<HashMap<(String, String), StreamId>, RedisError> {
    let mut positions = HashMap::new();
    for part in config.partitions() {
        let stream = &part.stream;
        for pool in &config.pools {
            if only.as_ref().is_none_or(|o| o.contains(&pool.name))
                && redis.create_group(stream, &pool.name, &pool.start).await?
            {
                tracing::info!(pool = %pool.name, start = %pool.start, stream = %stream, "created consumer group");
            }
        }
        for g in redis.groups(stream).await? {
            positions.insert((stream.clone(), g.name), g.last_delivered);
        }
    }
    Ok(positions)
}

async fn warn_durability(redis: &Redis) {
    match redis.durability().await {
        Ok((aof, policy)) => {
            for (_, risk) in crate::preflight::durability_risks(aof, &policy) {
                tracing::warn!(maxmemory_policy = %policy, "{risk}");
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not read Redis persistence settings"),
    }
}
