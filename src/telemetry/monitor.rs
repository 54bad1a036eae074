//! `<stream>:monitor`: the queue depth and lag of the Integration Bus runbook, as a hash any
//! `redis-cli` can read. Built from the same calls as `weir status` ([`status::totals`],
//! [`PoolStatus::of`], the pending summary), summed over partitions, and written whole
//! with an expiry so a hash nobody refreshes any more disappears.

use std::time::Duration;

use crate::clock;
use crate::config::Config;
use crate::error::RedisError;
use crate::keys;
use crate::redis::Redis;
use crate::status::{self, PoolStatus, UnreadCounts};

/// The monitor hash outlives its last refresh by this much (or ten intervals, if longer):
/// long enough to ride out a slow Redis, short enough that a stopped engine shows as gone.
const MONITOR_TTL: Duration = Duration::from_secs(60);

/// How long the hash lives after a write at `interval`.
pub(crate) fn ttl(interval: Duration) -> Duration {
    MONITOR_TTL.max(interval * 10)
}

/// The monitor hash's fields now: `stream_length`, `dlq_length`, per configured pool
/// `<pool>:lag` (left out when Redis cannot tell), `<pool>:pending`, `<pool>:backlog`
/// (undelivered plus pending, counted through `counts` where Redis cannot tell the lag),
/// `<pool>:oldest_pending_age_s` (0 when nothing is pending), `<pool>:consumers`,
/// `<pool>:paused` (1 or 0), then `updated_at` (unix ms) and `updated_by` (the writing
/// process's consumer name).
pub(crate) async fn fields(
    redis: &Redis,
    config: &Config,
    counts: &UnreadCounts,
    writer: &str,
) -> Result<Vec<(String, String)>, RedisError> {
    let stream = &config.stream;
    let totals = status::totals_with(redis, stream, counts).await?;
    let paused = status::paused(redis, stream).await?;
    let mut out = vec![
        (
            "stream_length".to_string(),
            totals.stream_length.to_string(),
        ),
        ("dlq_length".to_string(), totals.dlq_length.to_string()),
    ];
    for pool in &config.pools {
        let view = PoolStatus::of(&pool.name, &totals, &paused);
        let oldest = view.oldest_pending(redis, stream).await?;
        let age = oldest.map_or(0.0, status::age_seconds);
        let name = &view.name;
        if let Some(lag) = view.lag {
            out.push((format!("{name}:lag"), lag.to_string()));
        }
        out.push((format!("{name}:pending"), view.pending.to_string()));
        out.push((format!("{name}:backlog"), view.backlog.to_string()));
        out.push((format!("{name}:oldest_pending_age_s"), format!("{age:.3}")));
        out.push((format!("{name}:consumers"), view.consumers.to_string()));
        out.push((format!("{name}:paused"), u8::from(view.paused).to_string()));
    }
    out.push(("updated_at".into(), clock::now_ms().to_string()));
    out.push(("updated_by".into(), writer.to_string()));
    Ok(out)
}

/// Rebuilds `<stream>:monitor` from Redis's view now.
pub(crate) async fn refresh(
    redis: &Redis,
    config: &Config,
    counts: &UnreadCounts,
    writer: &str,
) -> Result<(), RedisError> {
    let fields = fields(redis, config, counts, writer).await?;
    let key = keys::monitor(&config.stream.name);
    redis
        .replace_hash(&key, &fields, ttl(config.telemetry.interval))
        .await
}
