//! Trimming of the main stream (each partition) toward `max_len` and `max_age_seconds`,
//! never past an entry a configured group has not read or not acknowledged; entries someone
//! else trimmed before a group read them are reported as lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, StreamConfig};
use crate::error::RedisErrorKind;
use crate::metrics;
use crate::redis::Redis;
use crate::streak::FailureStreak;
use crate::vocab::StreamId;

/// Trims the main stream toward `max_len` and `max_age_seconds`, never past an entry a group
/// has not read or not acknowledged.
pub(crate) async fn trim_loop(redis: Redis, config: Arc<Config>, cancel: CancellationToken) {
    let every = config.janitor.interval.max(Duration::from_secs(1));
    let mut streak = FailureStreak::default();
    let mut reported = HashMap::new();
    // Both series exist from the start, so dashboards and alerts see 0 rather than nothing.
    metrics::trimmed(metrics::TRIM_MAX_LEN, 0);
    metrics::trimmed(metrics::TRIM_MAX_AGE, 0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => break,
        }
        let mut trimmed = Ok(0);
        for part in config.stream.partition_list() {
            if let Err(e) = detect_unread_deletions(&redis, &config, &part, &mut reported).await {
                tracing::debug!(error = %e, "could not check for entries deleted before they were read");
            }
            trimmed = trim_once(&redis, &config, &part).await;
            if trimmed.is_err() {
                break;
            }
        }
        match trimmed {
            Ok(_) => streak.succeeded(),
            Err(e) => {
                if e.is(RedisErrorKind::Protocol) {
                    redis.reset_connection();
                }
                if streak.failed() {
                    tracing::warn!(error = %e, "trimming failed");
                }
                streak.wait(&cancel).await;
            }
        }
    }
}

/// Entries removed from the stream before a configured pool read them (XTRIM or XDEL by
/// hand, or `MAXLEN` on publish): the stream's first recorded entry is newer than the
/// group's last-delivered ID. Logged at WARN with the ID range and counted as lost, each
/// entry once. The count is estimated from Redis's counters: entries added, minus entries still
/// there, minus entries the group had read.
async fn detect_unread_deletions(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
    reported: &mut HashMap<(String, String), u64>,
) -> Result<(), crate::error::RedisError> {
    let stream = &part.name;
    let info = redis.stream_info(stream).await?;
    if info.recorded_first == StreamId::ZERO {
        return Ok(());
    }
    for group in redis.groups(stream).await? {
        // A group that never read anything (a pool added to an old, trimmed stream) missed
        // nothing that existed in its lifetime.
        if config.pool(&group.name).is_none() || group.last_delivered == StreamId::ZERO {
            continue;
        }
        // IDs are sparse, so the counters decide: more entries removed than the group had
        // read means some were removed unread. Without a read counter (after a restart),
        // a deletion past the group's position is the sign, count unknown.
        let removed = info.entries_added.saturating_sub(info.length);
        let missed = match group.entries_read {
            Some(read) => removed.saturating_sub(read),
            None if info.max_deleted > group.last_delivered => 1,
            None => 0,
        };
        // Count each missed entry once: only what grew since the last report.
        let key = (stream.clone(), group.name.clone());
        let already = reported.get(&key).copied().unwrap_or(0);
        if missed <= already {
            if missed == 0 {
                reported.remove(&key);
            }
            continue;
        }
        reported.insert(key, missed);
        metrics::lost(&group.name, missed - already);
        tracing::warn!(
            pool = %group.name,
            after = %group.last_delivered,
            before = %info.recorded_first,
            missed = if group.entries_read.is_some() { (missed - already).to_string() } else { "unknown".to_string() },
            "entries were deleted from the stream before this pool read them (XTRIM/XDEL by hand, or MAXLEN on publish); counted as lost"
        );
    }
    Ok(())
}

/// The oldest entry any group still needs, or `None` when trimming must not happen at all
/// (a configured group is missing, so its position is unknown).
pub async fn safe_trim_point(
    redis: &Redis,
    config: &Config,
    stream: &str,
) -> Result<Option<StreamId>, crate::error::RedisError> {
    let groups = redis.groups(stream).await?;
    let by_name: HashMap<&str, _> = groups.iter().map(|g| (g.name.as_str(), g)).collect();
    if config
        .pools
        .iter()
        .any(|p| !by_name.contains_key(p.name.as_str()))
    {
        return Ok(None);
    }
    let mut safe: Option<StreamId> = None;
    for g in &groups {
        let needed = if g.pending > 0 {
            match redis.pending_summary(stream, &g.name).await?.1 {
                Some(min) => min,
                None => g.last_delivered.next(),
            }
        } else {
            g.last_delivered.next()
        };
        safe = Some(safe.map_or(needed, |s| s.min(needed)));
    }
    Ok(safe)
}

/// One trimming step on one partition: toward `max_len`, then (with `max_age_seconds`) up
/// to the age limit; returns how many entries were removed.
pub async fn trim_once(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
) -> Result<u64, crate::error::RedisError> {
    let mut removed = trim_to_length(redis, config, part).await?;
    if let Some(max_age) = part.max_age {
        removed += trim_by_age(redis, config, part, max_age).await?;
    }
    Ok(removed)
}

/// Trims toward `max_len`, never past [`safe_trim_point`].
async fn trim_to_length(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
) -> Result<u64, crate::error::RedisError> {
    let stream = &part.name;
    let mut removed = 0;
    for _ in 0..10 {
        let len = redis.stream_len(stream).await?;
        if len <= part.max_len {
            break;
        }
        let Some(safe) = safe_trim_point(redis, config, stream).await? else {
            break;
        };
        let excess = (len - part.max_len).min(10_000);
        let Some(cut) = redis.nth_id(stream, excess).await? else {
            break;
        };
        let n = redis.trim_before(stream, cut.next().min(safe)).await?;
        removed += n;
        if n == 0 {
            break;
        }
    }
    report_trimmed(stream, metrics::TRIM_MAX_LEN, removed, None);
    Ok(removed)
}

/// Trims entries whose ID is older than `max_age` (XTRIM MINID), never past
/// [`safe_trim_point`]: whole nodes first (`~`, at most 10 000 entries a call), then, once
/// only the boundary node is left, exactly, so a quiet stream is trimmed too.
async fn trim_by_age(
    redis: &Redis,
    config: &Config,
    part: &StreamConfig,
    max_age: Duration,
) -> Result<u64, crate::error::RedisError> {
    let stream = &part.name;
    let oldest_allowed = StreamId {
        ms: crate::clock::now_ms().saturating_sub(max_age.as_millis() as u64),
        seq: 0,
    };
    let first = redis.range(stream, "-", "+", 1).await?;
    if first.first().is_none_or(|e| e.id >= oldest_allowed) {
        return Ok(0);
    }
    let Some(safe) = safe_trim_point(redis, config, stream).await? else {
        return Ok(0);
    };
    let cut = oldest_allowed.min(safe);
    let mut removed = 0;
    let mut whole_nodes_gone = false;
    for _ in 0..10 {
        let n = redis.trim_before(stream, cut).await?;
        removed += n;
        if n == 0 {
            whole_nodes_gone = true;
            break;
        }
    }
    if whole_nodes_gone {
        removed += redis.trim_before_exactly(stream, cut).await?;
    }
    report_trimmed(stream, metrics::TRIM_MAX_AGE, removed, Some(cut));
    Ok(removed)
}

/// Counts trimmed entries by rule (`weir_entries_trimmed_total{rule}`) and logs them at
/// DEBUG (a busy stream is trimmed every second).
fn report_trimmed(stream: &str, rule: &'static str, removed: u64, cut: Option<StreamId>) {
    if removed == 0 {
        return;
    }
    metrics::trimmed(rule, removed);
    match cut {
        Some(before) => {
            tracing::debug!(stream = %stream, removed, rule, %before, "trimmed the main stream")
        }
        None => tracing::debug!(stream = %stream, removed, rule, "trimmed the main stream"),
    }
}
