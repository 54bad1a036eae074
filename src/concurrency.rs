//! The `<stream>:concurrency:<pool>` hash: a hash of consumer → `{"current","min","max","at"}`
//! where each process running an adaptive pool publishes its current concurrency (written by
//! `consumer::scale`), read by `weir status`. A process that stops removes its field; one that
//! crashed leaves a field that readers skip once it is stale, and the key expires when no
//! process writes it any more. Its own module so the writer (the consumer) and the reader
//! (status) both depend on it, not on each other.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::keys;
use crate::redis::Redis;

/// One process's published concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    /// The process (its consumer name in the group).
    #[serde(default)]
    pub consumer: String,
    /// Handlers it lets run at once now.
    pub current: usize,
    /// The least it runs at (the fixed concurrency when not adaptive).
    pub min: usize,
    /// The most it runs at.
    pub max: usize,
    /// When it wrote this (unix ms).
    pub at: u64,
}

/// A field older than this many cooldowns is from a process that stopped writing.
const STALE_COOLDOWNS: u32 = 3;
/// …and never younger than this, so a short cooldown on a busy Redis is not misread.
const STALE_FLOOR: Duration = Duration::from_secs(10);

pub(crate) fn stale_after(cooldown: Duration) -> Duration {
    (cooldown * STALE_COOLDOWNS).max(STALE_FLOOR)
}

/// What the running processes of adaptive pool `pool` published, skipping stale fields
/// (their process stopped writing: crashed, or cut off from Redis), by consumer name.
pub(crate) async fn read_reported(
    redis: &Redis,
    stream: &str,
    pool: &str,
    cooldown: Duration,
) -> Result<Vec<Reported>, crate::error::RedisError> {
    let fields = redis.hash_get_all(&keys::concurrency(stream, pool)).await?;
    Ok(fresh(fields, clock::now_ms(), stale_after(cooldown)))
}

/// The fields that parse and were written within `stale` of `now_ms`, by consumer name.
fn fresh(fields: HashMap<String, String>, now_ms: u64, stale: Duration) -> Vec<Reported> {
    let mut out: Vec<Reported> = fields
        .into_iter()
        .filter_map(|(consumer, json)| {
            let r: Reported = serde_json::from_str(&json).ok()?;
            Some(Reported { consumer, ..r })
        })
        .filter(|r| now_ms.saturating_sub(r.at) <= stale.as_millis() as u64)
        .collect();
    out.sort_by(|a, b| a.consumer.cmp(&b.consumer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_unreadable_fields_are_skipped() {
        let fields = HashMap::from([
            (
                "b".to_string(),
                r#"{"current":4,"min":1,"max":8,"at":100000}"#.to_string(),
            ),
            (
                "a".to_string(),
                r#"{"current":2,"min":1,"max":8,"at":95000}"#.to_string(),
            ),
            (
                "dead".to_string(),
                r#"{"current":8,"min":1,"max":8,"at":80000}"#.to_string(),
            ),
            ("junk".to_string(), "4".to_string()),
        ]);
        let got = fresh(fields, 100_000, Duration::from_secs(10));
        let names: Vec<(&str, usize)> = got
            .iter()
            .map(|r| (r.consumer.as_str(), r.current))
            .collect();
        assert_eq!(names, [("a", 2), ("b", 4)]);
        assert_eq!(stale_after(Duration::from_secs(1)), STALE_FLOOR);
        assert_eq!(stale_after(Duration::from_secs(5)), Duration::from_secs(15));
    }
}
