//! Read-only inspection: what XINFO says about the stream and its groups, lengths, ranges,
//! and the plain keys weir keeps beside the stream.

use std::collections::HashMap;

use fred::types::Value;

use super::Redis;
use super::command::{Script, args};
use super::reply::{self, array, int, pairs, protocol, text};
use crate::error::RedisError;
use crate::vocab::{RawEntry, StreamId};

static NTH_ID: Script = Script::new("EVAL", include_str!("lua/nth_id.lua"));
static COUNT_AFTER: Script = Script::new("EVAL (count after)", include_str!("lua/count_after.lua"));

/// Entries per call of `lua/count_after.lua`. XRANGE in a script still builds every entry,
/// about 4 ms of Redis per 1,000 (Redis 7.0 here): other clients wait at most that long
/// behind one call.
const COUNT_PAGE: u64 = 1_000;

/// One consumer group as XINFO GROUPS reports it.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub name: String,
    pub consumers: u64,
    pub pending: u64,
    pub last_delivered: StreamId,
    /// `None` when Redis cannot compute it (after deletions, or right after a restart).
    pub lag: Option<u64>,
    /// The group's logical read counter (`entries-read`), when Redis knows it.
    pub entries_read: Option<u64>,
}

/// What XINFO STREAM says about the main stream.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    pub length: u64,
    pub first: Option<StreamId>,
    pub last_generated: StreamId,
    pub max_deleted: StreamId,
    pub recorded_first: StreamId,
    /// Entries ever added (`entries-added`).
    pub entries_added: u64,
}

/// A reply's fields by name (XINFO replies are flat `[name, value, …]` lists).
fn fields_by_name(
    command: &'static str,
    value: Value,
) -> Result<HashMap<String, Value>, RedisError> {
    Ok(pairs(command, value)?.into_iter().collect())
}

fn count(value: Option<&Value>) -> Option<u64> {
    value.and_then(int).map(|n| n.max(0) as u64)
}

impl Redis {
    /// `XINFO GROUPS stream`.
    pub async fn groups(&self, stream: &str) -> Result<Vec<GroupInfo>, RedisError> {
        let reply = self.call("XINFO", args(["GROUPS", stream])).await?;
        let mut out = Vec::new();
        for group in array(reply).ok_or_else(|| protocol("XINFO GROUPS", "expected an array"))? {
            let fields = fields_by_name("XINFO GROUPS", group)?;
            out.push(GroupInfo {
                name: fields.get("name").and_then(text).unwrap_or_default(),
                consumers: count(fields.get("consumers")).unwrap_or(0),
                pending: count(fields.get("pending")).unwrap_or(0),
                last_delivered: fields
                    .get("last-delivered-id")
                    .and_then(reply::id)
                    .unwrap_or(StreamId::ZERO),
                lag: count(fields.get("lag")),
                entries_read: count(fields.get("entries-read")),
            });
        }
        Ok(out)
    }

    /// `XINFO STREAM stream`.
    pub async fn stream_info(&self, stream: &str) -> Result<StreamInfo, RedisError> {
        let reply = self.call("XINFO", args(["STREAM", stream])).await?;
        let fields = fields_by_name("XINFO STREAM", reply)?;
        let get_id = |k: &str| fields.get(k).and_then(reply::id).unwrap_or(StreamId::ZERO);
        let first = fields
            .get("first-entry")
            .cloned()
            .and_then(|v| reply::entry("XINFO STREAM", v).ok())
            .map(|e| e.id);
        Ok(StreamInfo {
            length: count(fields.get("length")).unwrap_or(0),
            first,
            last_generated: get_id("last-generated-id"),
            max_deleted: get_id("max-deleted-entry-id"),
            recorded_first: get_id("recorded-first-entry-id"),
            entries_added: count(fields.get("entries-added")).unwrap_or(0),
        })
    }

    pub async fn exists(&self, key: &str) -> Result<bool, RedisError> {
        let reply = self.call("EXISTS", args([key])).await?;
        Ok(int(&reply) == Some(1))
    }

    /// `XLEN key`: how many entries the stream holds (0 when it does not exist).
    pub async fn stream_len(&self, key: &str) -> Result<u64, RedisError> {
        let reply = self.call("XLEN", args([key])).await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// Members of a set (the paused pools).
    pub async fn members(&self, key: &str) -> Result<Vec<String>, RedisError> {
        let reply = self.call("SMEMBERS", args([key])).await?;
        Ok(array(reply)
            .unwrap_or_default()
            .iter()
            .filter_map(text)
            .collect())
    }

    /// `XRANGE key start end COUNT n`, bodies included.
    pub async fn range(
        &self,
        key: &str,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let count = count.to_string();
        let reply = self
            .call("XRANGE", args([key, start, end, "COUNT", &count]))
            .await?;
        reply::entries("XRANGE", reply)
    }

    /// `XREVRANGE key end start COUNT n`: up to `count` entries from `end` down to `start`,
    /// newest first (`+`/`-` for the ends); the admin API's recent-events listing.
    pub async fn range_rev(
        &self,
        key: &str,
        end: &str,
        start: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let count = count.to_string();
        let reply = self
            .call("XREVRANGE", args([key, end, start, "COUNT", &count]))
            .await?;
        reply::entries("XREVRANGE", reply)
    }

    /// The ID of the `n`th entry from the start (1-based), if the stream is that long. Runs as
    /// a script (`lua/nth_id.lua`) so the entries' bodies never cross the network.
    pub async fn nth_id(&self, stream: &str, n: u64) -> Result<Option<StreamId>, RedisError> {
        let count = n.to_string();
        let reply = self
            .run_script(&NTH_ID, &[stream], |a| a.push(Value::from(count.as_str())))
            .await?;
        Ok(reply::id(&reply))
    }

    /// How many entries `stream` holds after `after` (exclusive), counting at most `limit`:
    /// `(n, true)` when exact, `(limit, false)` when there are at least that many. Paged
    /// ([`COUNT_PAGE`] per script call), and no entry body crosses the network.
    pub async fn count_after(
        &self,
        stream: &str,
        after: StreamId,
        limit: u64,
    ) -> Result<(u64, bool), RedisError> {
        let mut counted = 0;
        let mut from = after;
        while counted < limit {
            let page = COUNT_PAGE.min(limit - counted);
            let (start, count) = (format!("({from}"), page.to_string());
            let reply = self
                .run_script(&COUNT_AFTER, &[stream], |a| {
                    a.push(Value::from(start.as_str()));
                    a.push(Value::from(count.as_str()));
                })
                .await?;
            let items =
                array(reply).ok_or_else(|| protocol("EVAL (count after)", "expected an array"))?;
            let n = items.first().and_then(int).unwrap_or(0).max(0) as u64;
            counted += n;
            match items.get(1).and_then(reply::id) {
                Some(last) if n == page => from = last,
                _ => return Ok((counted, true)),
            }
        }
        Ok((counted, false))
    }

    /// Whether `stream` holds an entry after `after`: one `XRANGE (after + COUNT 1`.
    pub async fn any_after(&self, stream: &str, after: StreamId) -> Result<bool, RedisError> {
        let start = format!("({after}");
        Ok(!self.range(stream, &start, "+", 1).await?.is_empty())
    }

    /// Whether `group` has a pending entry idle at least `min_idle`: one `XPENDING … IDLE
    /// ms - + 1`.
    pub async fn any_idle_pending(
        &self,
        stream: &str,
        group: &str,
        min_idle: std::time::Duration,
    ) -> Result<bool, RedisError> {
        let idle = min_idle.as_millis().to_string();
        let reply = self
            .call(
                "XPENDING",
                args([stream, group, "IDLE", &idle, "-", "+", "1"]),
            )
            .await?;
        Ok(array(reply).is_some_and(|items| !items.is_empty()))
    }

    /// The ID of the newest entry, if any.
    pub async fn last_id(&self, stream: &str) -> Result<Option<StreamId>, RedisError> {
        let reply = self
            .call("XREVRANGE", args([stream, "+", "-", "COUNT", "1"]))
            .await?;
        Ok(reply::entries("XREVRANGE", reply)?.first().map(|e| e.id))
    }

    pub async fn hash_get_all(&self, key: &str) -> Result<HashMap<String, String>, RedisError> {
        let reply = self.call("HGETALL", args([key])).await?;
        Ok(pairs("HGETALL", reply)?
            .into_iter()
            .map(|(k, v)| (k, text(&v).unwrap_or_default()))
            .collect())
    }

    /// `INFO` fields that decide whether Redis can lose accepted entries: whether AOF is on,
    /// and the `maxmemory-policy`.
    pub async fn durability(&self) -> Result<(bool, String), RedisError> {
        let reply = self.call("INFO", args(["persistence"])).await?;
        let persistence = text(&reply).unwrap_or_default();
        let aof = persistence.lines().any(|l| l.trim() == "aof_enabled:1");
        let reply = self.call("INFO", args(["memory"])).await?;
        let memory = text(&reply).unwrap_or_default();
        let policy = memory
            .lines()
            .find_map(|l| l.trim().strip_prefix("maxmemory_policy:"))
            .unwrap_or("unknown")
            .to_string();
        Ok((aof, policy))
    }
}
