//! Ownership leases of ordered pools (contract §9): one process at a time reads an ordered
//! pool's stream or partition. The lease is a hash `<stream>:owner:<pool>` (`consumer`,
//! `epoch`, `since`) with an expiry; the epoch counter beside it never expires, so every
//! takeover gets a larger fencing token.

use std::collections::HashMap;
use std::time::Duration;

use fred::types::Value;

use super::Redis;
use super::command::{Script, args};
use super::reply::{array, int, protocol, text};
use crate::error::RedisError;
use crate::vocab::StreamId;

static ACQUIRE: Script = Script::new("EVAL (owner lease)", include_str!("lua/owner_acquire.lua"));
static RENEW: Script = Script::new("EVAL (owner renew)", include_str!("lua/owner_renew.lua"));

/// What an attempt to take a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClaim {
    /// Ours now, at this epoch. `fresh`: the epoch counter did not exist (first start, or
    /// Redis lost its data), so a previous owner may not know yet that it lost the lease.
    Taken { epoch: u64, fresh: bool },
    /// Another consumer holds it.
    Held { holder: String, epoch: u64 },
}

/// The epoch counter beside an owner hash.
fn epoch_key(owner_key: &str) -> String {
    format!("{owner_key}:epoch")
}

impl Redis {
    /// Takes the lease at `key` for `consumer` unless someone else holds it.
    pub async fn take_lease(
        &self,
        key: &str,
        consumer: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<LeaseClaim, RedisError> {
        let epoch_key = epoch_key(key);
        let ttl = ttl.as_millis().max(1).to_string();
        let now = now_ms.to_string();
        let reply = self
            .run_script(&ACQUIRE, &[key, &epoch_key], |a| {
                a.extend(args([consumer, &ttl, &now]));
            })
            .await?;
        let bad = || protocol("EVAL (owner lease)", "unexpected reply");
        let items = array(reply).ok_or_else(bad)?;
        let number = |v: Option<&Value>| -> Option<u64> {
            v.and_then(|v| {
                int(v)
                    .map(|n| n.max(0) as u64)
                    .or_else(|| text(v)?.parse().ok())
            })
        };
        match items.first().and_then(int) {
            Some(1) => Ok(LeaseClaim::Taken {
                epoch: number(items.get(1)).ok_or_else(bad)?,
                fresh: number(items.get(2)) == Some(1),
            }),
            Some(0) => Ok(LeaseClaim::Held {
                holder: items.get(1).and_then(text).ok_or_else(bad)?,
                epoch: number(items.get(2)).unwrap_or(0),
            }),
            _ => Err(bad()),
        }
    }

    /// Extends our lease by `ttl`; `Ok(false)` when it is no longer ours at `epoch`.
    pub async fn renew_lease(
        &self,
        key: &str,
        consumer: &str,
        epoch: u64,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let ttl = ttl.as_millis().max(1).to_string();
        self.lease_script(key, consumer, epoch, &ttl).await
    }

    /// Gives our lease up at once (graceful stop), if it is still ours at `epoch`.
    pub async fn release_lease(
        &self,
        key: &str,
        consumer: &str,
        epoch: u64,
    ) -> Result<bool, RedisError> {
        self.lease_script(key, consumer, epoch, "0").await
    }

    async fn lease_script(
        &self,
        key: &str,
        consumer: &str,
        epoch: u64,
        ttl: &str,
    ) -> Result<bool, RedisError> {
        let epoch = epoch.to_string();
        let reply = self
            .run_script(&RENEW, &[key], |a| a.extend(args([consumer, &epoch, ttl])))
            .await?;
        Ok(int(&reply) == Some(1))
    }

    /// Records `consumer`'s heartbeat in the members hash `key` and returns every member with
    /// its last heartbeat (unix ms).
    pub async fn heartbeat(
        &self,
        key: &str,
        consumer: &str,
        now_ms: u64,
    ) -> Result<Vec<(String, u64)>, RedisError> {
        self.hash_set(key, &[(consumer, now_ms.to_string())])
            .await?;
        Ok(self
            .hash_get_all(key)
            .await?
            .into_iter()
            .map(|(c, at)| (c, at.parse().unwrap_or(0)))
            .collect())
    }

    /// Removes members from the members hash (a stopped process, or long-dead ones).
    pub async fn forget_members(&self, key: &str, consumers: &[&str]) -> Result<(), RedisError> {
        let mut a = args([key]);
        a.extend(consumers.iter().map(|c| Value::from(*c)));
        self.call("HDEL", a).await.map(|_| ())
    }

    /// A string key's value (the epoch counter), if it exists.
    pub async fn get_text(&self, key: &str) -> Result<Option<String>, RedisError> {
        let reply = self.call("GET", args([key])).await?;
        Ok(text(&reply))
    }

    /// The lease hash as stored (`consumer`, `epoch`, `since`); empty when nobody owns it.
    pub async fn lease(&self, key: &str) -> Result<HashMap<String, String>, RedisError> {
        self.hash_get_all(key).await
    }

    /// `XCLAIM … RETRYCOUNT n JUSTID`: records that `id` has been handed out `count` times,
    /// for retries an ordered pool runs in-process, so a takeover sees the true attempt.
    pub async fn set_delivery_count(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        id: StreamId,
        count: u64,
    ) -> Result<(), RedisError> {
        let (id, count) = (id.to_string(), count.to_string());
        self.call(
            "XCLAIM",
            args([
                stream,
                group,
                consumer,
                "0",
                &id,
                "RETRYCOUNT",
                &count,
                "JUSTID",
            ]),
        )
        .await
        .map(|_| ())
    }
}
