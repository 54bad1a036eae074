//! Where an adaptive pool's current concurrency is readable from other processes:
//! `<stream>:concurrency:<pool>`, a hash of consumer → `{"current","min","max","at"}`,
//! written by each process's controller once per cooldown and read by `weir status`. A
//! process that stops removes its field; one that crashed leaves a field that readers skip
//! once it is stale, and the key expires when no process writes it any more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::Pool;
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

fn stale_after(cooldown: Duration) -> Duration {
    (cooldown * STALE_COOLDOWNS).max(STALE_FLOOR)
}

/// Writes this process's field of the hash.
pub(super) struct Reporter {
    redis: Redis,
    key: String,
    consumer: String,
    bounds: (usize, usize),
    cooldown: Duration,
    /// Set after a failed write was reported at WARN: the next ones go to DEBUG until a
    /// write succeeds, so a missing ACL grant is said once, not every cooldown.
    failing: AtomicBool,
}

impl Reporter {
    pub(super) fn new(pool: &Pool, stream: &str, cooldown: Duration) -> Reporter {
        let bounds = pool.scale.bounds();
        Reporter {
            redis: pool.redis.clone(),
            key: keys::concurrency(stream, &pool.name),
            consumer: pool.consumer.clone(),
            bounds,
            cooldown,
            failing: AtomicBool::new(false),
        }
    }

    /// Records `current`; a failure only makes `weir status` show this process as stale.
    pub(super) async fn publish(&self, current: usize) {
        let value = Reported {
            consumer: String::new(),
            current,
            min: self.bounds.0,
            max: self.bounds.1,
            at: clock::now_ms(),
        };
        let json = serde_json::json!({"current": value.current, "min": value.min, "max": value.max, "at": value.at});
        let written = async {
            self.redis
                .hash_set(&self.key, &[(&self.consumer, json.to_string())])
                .await?;
            // Nobody writing for a while: the whole key goes.
            self.redis
                .expire_in(&self.key, stale_after(self.cooldown) * 2)
                .await
        };
        match written.await {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) if self.failing.swap(true, Ordering::Relaxed) => {
                tracing::debug!(key = %self.key, error = %e, "could not publish the pool's concurrency");
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not publish the pool's concurrency, so `weir status` will not show it (the pool adapts all the same); an ACL user needs HSET, HDEL and PEXPIRE on this key (ops/redis/users.acl)");
            }
        }
    }

    /// Removes this process's field (shutdown).
    pub(super) async fn withdraw(&self) {
        if let Err(e) = self
            .redis
            .forget_members(&self.key, &[&self.consumer])
            .await
        {
            tracing::warn!(key = %self.key, error = %e, "could not remove this process's concurrency at shutdown; `weir status` skips it once stale");
        }
    }
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
