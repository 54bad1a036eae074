//! This process's field of `<stream>:concurrency:<pool>` (the format and its reader are in
//! `crate::concurrency`): written by the controller once per cooldown, removed at stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::super::Pool;
use crate::clock;
use crate::concurrency::{Reported, stale_after};
use crate::keys;
use crate::redis::Redis;

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
