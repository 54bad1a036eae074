//! The telemetry writes (contract §12): the monitor hash replaced whole, and the per-value
//! counters added in one pipeline per flush. Both are best effort for their caller: it logs a
//! failure and carries on; consumption never waits for them.

use std::time::Duration;

use fred::interfaces::{ClientLike, TransactionInterface as _};
use fred::types::Value;

use super::Redis;
use super::command::{args, cmd, pipeline_replies};
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
    /// How many commands [`Redis::apply_hash_deltas`] sends for it.
    fn commands(&self) -> usize {
        self.add.iter().filter(|(_, n)| *n > 0).count() + usize::from(!self.set.is_empty())
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

    /// One pipeline: per delta an HINCRBY per counter and one HSET of its fields, then one
    /// SADD of `members` to the set `index`. Not a transaction: on a cluster the hashes live
    /// in different slots; each command is routed to its key's node.
    pub async fn apply_hash_deltas(
        &self,
        deltas: &[HashDelta],
        index: &str,
        members: &[&str],
    ) -> Result<(), RedisError> {
        let pipeline = self.client.pipeline();
        let fail = |e| self.fail("HINCRBY", e);
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
}
