//! Consumer-group commands: create, read, acknowledge, claim, and what the pending list and
//! the consumers look like.

use std::collections::HashMap;
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::types::Value;
use fred::types::config::Options;

use super::Redis;
use super::command::{COMMAND_TIMEOUT, Script, args, cmd, cmd_for_key, pipeline_replies};
use super::reply::{self, array, int, pairs, protocol, text};
use crate::error::RedisError;
use crate::vocab::{RawEntry, StreamId};

static DELETE_IDLE_CONSUMER: Script = Script::new(
    "EVAL (delete idle consumer)",
    include_str!("lua/delete_idle_consumer.lua"),
);

/// The reply of one XAUTOCLAIM page.
#[derive(Debug)]
pub struct AutoClaim {
    pub next: StreamId,
    pub entries: Vec<RawEntry>,
    /// IDs that were pending but whose entries no longer exist (Redis removed them from the PEL).
    pub deleted: Vec<StreamId>,
}

#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

/// Stream IDs as command arguments: written into one buffer and sliced, one allocation for
/// a whole XACK or XCLAIM rather than one per ID.
fn id_args(a: &mut Vec<Value>, ids: &[StreamId]) {
    use std::io::Write as _;
    let mut buf = Vec::with_capacity(ids.len() * 24);
    let mut ends = Vec::with_capacity(ids.len());
    for id in ids {
        // Writing to a Vec cannot fail.
        let _ = write!(buf, "{}-{}", id.ms, id.seq);
        ends.push(buf.len());
    }
    let buf = bytes::Bytes::from(buf);
    a.reserve(ids.len());
    let mut start = 0;
    for end in ends {
        a.push(Value::Bytes(buf.slice(start..end)));
        start = end;
    }
}

/// An XPENDING extended-form row, `[id, consumer, idle, count]`: its ID and delivery count.
fn pending_row(row: Value) -> Result<Option<(StreamId, u64)>, RedisError> {
    let row = array(row).ok_or_else(|| protocol("XPENDING", "row is not an array"))?;
    Ok(
        match (row.first().and_then(reply::id), row.get(3).and_then(int)) {
            (Some(id), Some(count)) => Some((id, count.max(0) as u64)),
            _ => None,
        },
    )
}

impl Redis {
    /// `XGROUP CREATE … MKSTREAM`; `Ok(false)` when the group already exists.
    pub async fn create_group(
        &self,
        stream: &str,
        group: &str,
        start: &str,
    ) -> Result<bool, RedisError> {
        match self
            .call("XGROUP", args(["CREATE", stream, group, start, "MKSTREAM"]))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.message.starts_with("BUSYGROUP") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `XREADGROUP … COUNT n BLOCK ms STREAMS stream >`. An empty vector when the block timed out.
    pub async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let block_ms = block.as_millis().to_string();
        let count = count.to_string();
        let a = args([
            "GROUP", group, consumer, "COUNT", &count, "BLOCK", &block_ms, "STREAMS", stream, ">",
        ]);
        self.xreadgroup(stream, a, Some(block)).await
    }

    /// `XREADGROUP … COUNT n STREAMS stream >` without BLOCK: answers at once (empty when
    /// nothing is new), so several can be pipelined on one connection while a backlog lasts.
    pub async fn read_group_now(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let count = count.to_string();
        let a = args([
            "GROUP", group, consumer, "COUNT", &count, "STREAMS", stream, ">",
        ]);
        self.xreadgroup(stream, a, None).await
    }

    /// Sends an XREADGROUP and parses the reply straight from the raw frame. `block`: the
    /// command blocks the connection that long at most.
    async fn xreadgroup(
        &self,
        stream: &str,
        args: Vec<Value>,
        block: Option<Duration>,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let options = Options {
            timeout: Some(block.unwrap_or_default() + COMMAND_TIMEOUT),
            ..Default::default()
        };
        let frame = self
            .client
            .with_options(&options)
            .custom_raw(cmd_for_key("XREADGROUP", stream, block.is_some()), args)
            .await
            .map_err(|e| self.fail("XREADGROUP", e))?;
        if let Some(message) = reply::frame_error(&frame) {
            let error = fred::error::Error::new(fred::error::ErrorKind::Unknown, message);
            return Err(self.fail("XREADGROUP", error));
        }
        reply::xread_frame(frame)
    }

    /// `XACK` of many IDs in one command; returns how many were still pending.
    pub async fn ack(
        &self,
        stream: &str,
        group: &str,
        ids: &[StreamId],
    ) -> Result<u64, RedisError> {
        let mut a = args([stream, group]);
        id_args(&mut a, ids);
        let reply = self.call("XACK", a).await?;
        int(&reply)
            .map(|n| n.max(0) as u64)
            .ok_or_else(|| protocol("XACK", "not an integer"))
    }

    /// `XCLAIM stream group consumer 0 ids… IDLE ms JUSTID`: keeps `ids` pending under
    /// `consumer` with their idle time set to `idle`, without counting a delivery. Zero keeps
    /// a lease alive; more schedules an earlier redelivery (by the reclaimer). Not Redis's
    /// TOUCH, which refreshes a key's LRU clock.
    pub async fn set_pending_idle(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[StreamId],
        idle: Duration,
    ) -> Result<(), RedisError> {
        let mut a = args([stream, group, consumer, "0"]);
        id_args(&mut a, ids);
        a.push(Value::from("IDLE"));
        a.push(Value::from(idle.as_millis().to_string()));
        a.push(Value::from("JUSTID"));
        self.call("XCLAIM", a).await.map(|_| ())
    }

    /// One page of `XAUTOCLAIM stream group consumer min_idle start COUNT n`.
    pub async fn autoclaim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: StreamId,
        count: usize,
    ) -> Result<AutoClaim, RedisError> {
        let min_idle = min_idle.as_millis().to_string();
        let start = start.to_string();
        let count = count.to_string();
        let reply = self
            .call(
                "XAUTOCLAIM",
                args([stream, group, consumer, &min_idle, &start, "COUNT", &count]),
            )
            .await?;
        let mut parts = array(reply)
            .ok_or_else(|| protocol("XAUTOCLAIM", "expected an array"))?
            .into_iter();
        let next = parts
            .next()
            .as_ref()
            .and_then(reply::id)
            .ok_or_else(|| protocol("XAUTOCLAIM", "no cursor"))?;
        let entries = reply::entries("XAUTOCLAIM", parts.next().unwrap_or(Value::Null))?;
        let deleted = reply::ids("XAUTOCLAIM", parts.next().unwrap_or(Value::Null))?;
        Ok(AutoClaim {
            next,
            entries,
            deleted,
        })
    }

    /// Delivery counts of `ids` in the group's pending list, one pipelined XPENDING per ID.
    /// IDs that are no longer pending are absent from the map.
    pub async fn delivery_counts(
        &self,
        stream: &str,
        group: &str,
        ids: &[StreamId],
    ) -> Result<HashMap<StreamId, u64>, RedisError> {
        let pipeline = self.client.pipeline();
        for id in ids {
            let id = id.to_string();
            let _: () = pipeline
                .custom(cmd("XPENDING"), args([stream, group, &id, &id, "1"]))
                .await
                .map_err(|e| self.fail("XPENDING", e))?;
        }
        let replies = pipeline_replies(
            "XPENDING",
            pipeline.all().await.map_err(|e| self.fail("XPENDING", e)),
            ids.len(),
        )?;
        let mut counts = HashMap::with_capacity(ids.len());
        for reply in replies {
            // Each reply is `[[id, consumer, idle, count]]` or empty.
            let rows = array(reply).ok_or_else(|| protocol("XPENDING", "expected an array"))?;
            for row in rows {
                if let Some((id, count)) = pending_row(row)? {
                    counts.insert(id, count);
                }
            }
        }
        Ok(counts)
    }

    /// `XPENDING stream group IDLE min_idle start + count`: pending entries idle at least
    /// `min_idle`, with their delivery counts, without claiming them.
    pub async fn idle_pending(
        &self,
        stream: &str,
        group: &str,
        min_idle: Duration,
        start: StreamId,
        count: usize,
    ) -> Result<Vec<(StreamId, u64)>, RedisError> {
        let min_idle = min_idle.as_millis().to_string();
        let (start, count) = (start.to_string(), count.to_string());
        let reply = self
            .call(
                "XPENDING",
                args([stream, group, "IDLE", &min_idle, &start, "+", &count]),
            )
            .await?;
        let rows = array(reply).ok_or_else(|| protocol("XPENDING", "expected an array"))?;
        rows.into_iter()
            .map(|row| {
                pending_row(row)?
                    .ok_or_else(|| protocol("XPENDING", "row without an ID and a delivery count"))
            })
            .collect()
    }

    /// `XPENDING stream group` summary: how many are pending and the smallest pending ID.
    pub async fn pending_summary(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<(u64, Option<StreamId>), RedisError> {
        let reply = self.call("XPENDING", args([stream, group])).await?;
        let items = array(reply).ok_or_else(|| protocol("XPENDING", "expected an array"))?;
        let count = items.first().and_then(int).unwrap_or(0).max(0) as u64;
        let min = items.get(1).and_then(reply::id);
        Ok((count, min))
    }

    /// `XINFO CONSUMERS stream group`.
    pub async fn consumers(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Vec<ConsumerInfo>, RedisError> {
        let reply = self
            .call("XINFO", args(["CONSUMERS", stream, group]))
            .await?;
        let mut out = Vec::new();
        for consumer in
            array(reply).ok_or_else(|| protocol("XINFO CONSUMERS", "expected an array"))?
        {
            let fields: HashMap<String, Value> =
                pairs("XINFO CONSUMERS", consumer)?.into_iter().collect();
            out.push(ConsumerInfo {
                name: fields.get("name").and_then(text).unwrap_or_default(),
                pending: fields.get("pending").and_then(int).unwrap_or(0).max(0) as u64,
                idle_ms: fields.get("idle").and_then(int).unwrap_or(0).max(0) as u64,
            });
        }
        Ok(out)
    }

    /// Deletes `consumer` from `group` if it owns nothing and has been idle at least
    /// `min_idle`, checked and deleted in one script (`lua/delete_idle_consumer.lua`).
    /// `None`: kept. `Some(n)`: deleted, dropping `n` pending entries from the group (0 by
    /// the check; a caller treats anything else as lost entries).
    pub async fn delete_idle_consumer(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
    ) -> Result<Option<u64>, RedisError> {
        let idle = min_idle.as_millis().to_string();
        let reply = self
            .run_script(&DELETE_IDLE_CONSUMER, &[stream], |a| {
                a.extend(args([group, consumer, &idle]))
            })
            .await?;
        let n = int(&reply)
            .ok_or_else(|| protocol("EVAL (delete idle consumer)", "expected an integer"))?;
        Ok(u64::try_from(n).ok())
    }
}
