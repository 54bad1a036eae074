//! The telemetry writes (contract §12): the monitor hash replaced whole, the per-value
//! counters added in one pipeline per flush (each hash's expiry refreshed), and the bounded
//! upkeep of the value index (a set): scanned a page at a time with SSCAN, never SMEMBERS.
//! All best effort for their caller: it logs a failure and carries on; consumption never
//! waits for them.

use std::time::Duration;

use fred::interfaces::{ClientLike, TransactionInterface as _};
use fred::types::Value;

use super::Redis;
use super::command::{args, cmd, pipeline_replies};
use super::reply::{array, int, protocol, text};
use crate::error::RedisError;

/// One hash's share of a batched write: counters to add (HINCRBY) and fields to set (HSET).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HashDelta {
    pub key: String,
    /// Field → amount to add; zero amounts are not sent.
    pub add: Vec<(String, u64)>,
    /// Field → value, set after the counters.
    pub set: Vec<(&'static str, String)>,
}

impl HashDelta {
    /// How many commands [`Redis::apply_hash_deltas`] sends for it (the last is PEXPIRE).
    fn commands(&self) -> usize {
        self.add.iter().filter(|(_, n)| *n > 0).count() + usize::from(!self.set.is_empty()) + 1
    }
}

impl Redis {
    /// `MULTI; DEL key; HSET key fields…; PEXPIRE key ttl; EXEC`: the hash holds exactly
    /// `fields` (fields of an earlier write that are gone now, such as a removed pool's, go
    /// with it) and disappears `ttl` after the last write.
    pub async fn replace_hash(
        &self,
        key: &str,
        fields: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let trx = self.client.multi();
        let fail = |e| self.fail("MULTI", e);
        let _: () = trx.custom(cmd("DEL"), args([key])).await.map_err(fail)?;
        if !fields.is_empty() {
            let mut a = args([key]);
            a.reserve(fields.len() * 2);
            for (k, v) in fields {
                a.push(Value::from(k.as_str()));
                a.push(Value::from(v.as_str()));
            }
            let _: () = trx.custom(cmd("HSET"), a).await.map_err(fail)?;
        }
        let ttl = ttl.as_millis().max(1).to_string();
        let _: () = trx
            .custom(cmd("PEXPIRE"), args([key, &ttl]))
            .await
            .map_err(fail)?;
        let _: Value = trx.exec(true).await.map_err(|e| self.fail("EXEC", e))?;
        Ok(())
    }

    /// One pipeline: per delta an HINCRBY per counter, one HSET of its fields and a PEXPIRE
    /// of `ttl` (an idle value's hash disappears), then one SADD of `members` to the set
    /// `index`. Not a transaction: on a cluster the hashes live in different slots; each
    /// command is routed to its key's node.
    pub async fn apply_hash_deltas(
        &self,
        deltas: &[HashDelta],
        index: &str,
        members: &[&str],
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let pipeline = self.client.pipeline();
        let fail = |e| self.fail("HINCRBY", e);
        let ttl = ttl.as_millis().max(1).to_string();
        let mut sent = 0;
        for delta in deltas {
            for (field, n) in delta.add.iter().filter(|(_, n)| *n > 0) {
                let n = n.to_string();
                let _: () = pipeline
                    .custom(cmd("HINCRBY"), args([&delta.key, field, &n]))
                    .await
                    .map_err(fail)?;
            }
            if !delta.set.is_empty() {
                let mut a = args([&delta.key]);
                for (k, v) in &delta.set {
                    a.push(Value::from(*k));
                    a.push(Value::from(v.as_str()));
                }
                let _: () = pipeline.custom(cmd("HSET"), a).await.map_err(fail)?;
            }
            let _: () = pipeline
                .custom(cmd("PEXPIRE"), args([&delta.key, &ttl]))
                .await
                .map_err(fail)?;
            sent += delta.commands();
        }
        if !members.is_empty() {
            let mut a = args([index]);
            a.extend(members.iter().map(|m| Value::from(*m)));
            let _: () = pipeline.custom(cmd("SADD"), a).await.map_err(fail)?;
            sent += 1;
        }
        if sent == 0 {
            return Ok(());
        }
        // `all` fails with the first error a command answered (WRONGTYPE on a key that
        // someone else uses for something else).
        pipeline_replies(
            "HINCRBY",
            pipeline.all().await.map_err(|e| self.fail("HINCRBY", e)),
            sent,
        )?;
        Ok(())
    }

    /// `SSCAN set cursor COUNT count`: the next cursor (0 when the scan is complete) and a
    /// page of members (about `count`; Redis may answer a few more or fewer).
    pub async fn scan_members(
        &self,
        set: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<String>), RedisError> {
        let (cursor, count) = (cursor.to_string(), count.to_string());
        let reply = self
            .call("SSCAN", args([set, &cursor, "COUNT", &count]))
            .await?;
        let mut parts = array(reply).unwrap_or_default().into_iter();
        let (Some(next), Some(page)) = (parts.next(), parts.next()) else {
            return Err(protocol("SSCAN", "reply is not [cursor, members]"));
        };
        let next = text(&next)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| protocol("SSCAN", "cursor is not a number"))?;
        let members = array(page)
            .unwrap_or_default()
            .iter()
            .filter_map(text)
            .collect();
        Ok((next, members))
    }

    /// `SCARD set`.
    pub async fn set_len(&self, set: &str) -> Result<u64, RedisError> {
        let reply = self.call("SCARD", args([set])).await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// Which of `keys` exist: one EXISTS each, in one pipeline (a cluster routes each to its
    /// node).
    pub async fn keys_exist(&self, keys: &[String]) -> Result<Vec<bool>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.client.pipeline();
        let fail = |e| self.fail("EXISTS", e);
        for key in keys {
            let _: () = pipeline
                .custom(cmd("EXISTS"), args([key]))
                .await
                .map_err(fail)?;
        }
        let replies = pipeline_replies("EXISTS", pipeline.all().await.map_err(fail), keys.len())?;
        Ok(replies.iter().map(|r| int(r) == Some(1)).collect())
    }

    /// `SREM set members…`, then `DEL` of `keys` (the members' hashes) in the same pipeline.
    pub async fn forget_values(
        &self,
        set: &str,
        members: &[String],
        keys: &[String],
    ) -> Result<(), RedisError> {
        if members.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let pipeline = self.client.pipeline();
        let fail = |e| self.fail("SREM", e);
        let mut sent = 0;
        if !members.is_empty() {
            let mut a = args([set]);
            a.extend(members.iter().map(|m| Value::from(m.as_str())));
            let _: () = pipeline.custom(cmd("SREM"), a).await.map_err(fail)?;
            sent += 1;
        }
        for key in keys {
            let _: () = pipeline
                .custom(cmd("DEL"), args([key]))
                .await
                .map_err(fail)?;
            sent += 1;
        }
        pipeline_replies("SREM", pipeline.all().await.map_err(fail), sent)?;
        Ok(())
    }

    /// `SPOP set n`: up to `n` members taken out of the set, chosen by Redis at random.
    pub async fn pop_members(&self, set: &str, n: usize) -> Result<Vec<String>, RedisError> {
        let n = n.to_string();
        let reply = self.call("SPOP", args([set, &n])).await?;
        Ok(array(reply)
            .unwrap_or_default()
            .iter()
            .filter_map(text)
            .collect())
    }
}
