//! Commands that write: appending entries (one, many, at most once, with a job's progress),
//! deleting and trimming them, and the small hashes and sets weir keeps beside the stream.

use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{ClientLike, TransactionInterface as _};
use fred::types::Value;

use super::Redis;
use super::command::{
    SCRIPT_MAX_FIELDS, Script, args, cmd, cmd_for_key, pipeline_replies, push_pairs,
    push_text_pairs,
};
use super::reply::{self, array, int, protocol};
use crate::error::RedisError;
use crate::vocab::StreamId;

static ADD_BATCH: Script = Script::new("EVAL (XADD batch)", include_str!("lua/add_batch.lua"));
static ADD_LED: Script = Script::new("EVAL (XADD batch)", include_str!("lua/add_led.lua"));
static ADD_ONCE: Script = Script::new("EVAL", include_str!("lua/add_once.lua"));
static ADD_WITH_PROGRESS: Script = Script::new(
    "EVAL (replay batch)",
    include_str!("lua/add_with_progress.lua"),
);

/// An entry for [`Redis::add_led`]: the values of the two fields every entry of the call
/// starts with, then its own `(name, value)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedEntry {
    /// The values of the two leading fields.
    pub lead: [String; 2],
    /// Further fields, written after the leading two.
    pub rest: Vec<(String, String)>,
}

/// `(name, value)` pairs (progress, hash fields) as command arguments.
fn push_str_pairs(a: &mut Vec<Value>, progress: &[(&str, String)]) {
    for (k, v) in progress {
        a.push(Value::from(*k));
        a.push(Value::from(v.as_str()));
    }
}

/// Which run of a replay job writes, and the cursor it read: see
/// [`Redis::add_with_progress`].
#[derive(Debug, Clone, Copy)]
pub struct JobOwner<'a> {
    /// The run's token, the hash's `runner` field.
    pub runner: &'a str,
    /// The cursor the batch starts at.
    pub cursor: &'a str,
}

impl Redis {
    /// Appends an entry; used by tests and the publisher.
    pub async fn add(
        &self,
        stream: &str,
        fields: &[(&str, &[u8])],
    ) -> Result<StreamId, RedisError> {
        let mut a = args([stream, "*"]);
        for (k, v) in fields {
            a.push(Value::from(*k));
            a.push(Value::Bytes(Bytes::copy_from_slice(v)));
        }
        let reply = self.call("XADD", a).await?;
        reply::id(&reply).ok_or_else(|| protocol("XADD", "no ID"))
    }

    /// Appends many entries, in one script (`lua/add_batch.lua`); returns their IDs in order.
    pub async fn add_many(
        &self,
        stream: &str,
        entries: &[Vec<(String, String)>],
    ) -> Result<Vec<StreamId>, RedisError> {
        // One script per batch: fred's cost is per command, so a pipeline of XADDs costs the
        // client ~7 µs an entry, a script's arguments well under 1 µs; Redis runs the XADDs
        // at ~1.4 µs each. A single entry or very wide entries go as plain XADDs.
        if entries.len() < 2 || entries.iter().any(|e| e.len() > SCRIPT_MAX_FIELDS) {
            return self.add_many_pipelined(stream, entries).await;
        }
        let reply = self
            .run_script(&ADD_BATCH, &[stream], |a| {
                a.reserve(entries.iter().map(|e| 1 + e.len() * 2).sum());
                for fields in entries {
                    a.push(Value::from((fields.len() * 2).to_string()));
                    push_text_pairs(a, fields);
                }
            })
            .await?;
        let ids = reply::id_list("XADD", &reply)?;
        if ids.len() != entries.len() {
            return Err(protocol(
                "XADD",
                format!("{} IDs for {} entries", ids.len(), entries.len()),
            ));
        }
        Ok(ids)
    }

    /// Appends entries that all start with the fields `names` (`lua/add_led.lua`); returns
    /// how many were added, not their IDs. One command, sent when the future is first polled
    /// (see `eval_at_once`), so batches keep their order with several unanswered. Cheaper than [`Redis::add_many`] on both sides:
    /// the strings move into the command without a copy, the names are sent once, and
    /// Redis builds no reply per entry. Very wide entries go as plain XADDs.
    pub async fn add_led(
        &self,
        stream: &str,
        names: [&'static str; 2],
        entries: Vec<LedEntry>,
    ) -> Result<usize, RedisError> {
        let n = entries.len();
        if n == 0 {
            return Ok(0);
        }
        if entries
            .iter()
            .any(|e| 2 + e.rest.len() * 2 > SCRIPT_MAX_FIELDS)
        {
            let plain: Vec<Vec<(String, String)>> = entries
                .into_iter()
                .map(|e| {
                    let [first, second] = e.lead;
                    let mut fields = vec![
                        (names[0].to_string(), first),
                        (names[1].to_string(), second),
                    ];
                    fields.extend(e.rest);
                    fields
                })
                .collect();
            return self
                .add_many_pipelined(stream, &plain)
                .await
                .map(|ids| ids.len());
        }
        let reply = self
            .eval_at_once(&ADD_LED, stream, led_args(names, entries))
            .await?;
        match int(&reply) {
            Some(added) if added == n as i64 => Ok(n),
            _ => Err(protocol("XADD", format!("{reply:?} for {n} entries"))),
        }
    }

    /// `EVAL script 1 key argv…` as one command, handed to the connection when the future is
    /// first polled, with nothing after it (unlike `run_script`, no SCRIPT LOAD before and no
    /// EVAL after a NOSCRIPT). So callers can keep several unanswered and still have Redis run
    /// them in the order they were first polled ([`Redis::add_led`] in `weir publish
    /// --ndjson`). The body (~1 KB) is sent each time: nothing next to thousands of entries.
    async fn eval_at_once(
        &self,
        script: &Script,
        key: &str,
        argv: Vec<Value>,
    ) -> Result<Value, RedisError> {
        let mut a = Vec::with_capacity(3 + argv.len());
        a.push(Value::from_static_str(script.lua));
        a.push(Value::from_static_str("1"));
        a.push(Value::from(key));
        a.extend(argv);
        self.client
            .custom::<Value, Value>(cmd_for_key("EVAL", key, false), a)
            .await
            .map_err(|e| self.fail(script.name, e))
    }

    async fn add_many_pipelined(
        &self,
        stream: &str,
        entries: &[Vec<(String, String)>],
    ) -> Result<Vec<StreamId>, RedisError> {
        let pipeline = self.client.pipeline();
        for fields in entries {
            let mut a = args([stream, "*"]);
            push_text_pairs(&mut a, fields);
            let _: () = pipeline
                .custom(cmd("XADD"), a)
                .await
                .map_err(|e| self.fail("XADD", e))?;
        }
        let replies = pipeline_replies(
            "XADD",
            pipeline.all().await.map_err(|e| self.fail("XADD", e)),
            entries.len(),
        )?;
        replies
            .iter()
            .map(|r| reply::id(r).ok_or_else(|| protocol("XADD", "no ID")))
            .collect()
    }

    /// XADD unless `dedup_key` exists; then remembers the new ID under `dedup_key` for
    /// `ttl`. Atomic (one script, `lua/add_once.lua`), so a failed XADD never reserves the
    /// key. Returns the key's value and whether the entry was added now: the new entry ID,
    /// or (`false`) what an earlier publish left there — its entry ID, or
    /// `scheduled:<due ms>` for an event scheduled with that id (`lua/schedule_add.lua`).
    pub async fn add_once(
        &self,
        stream: &str,
        dedup_key: &str,
        ttl: Duration,
        fields: &[(String, String)],
    ) -> Result<(String, bool), RedisError> {
        let ttl = ttl.as_millis().max(1).to_string();
        let reply = self
            .run_script(&ADD_ONCE, &[stream, dedup_key], |a| {
                a.push(Value::from(ttl.as_str()));
                push_text_pairs(a, fields);
            })
            .await?;
        let items = array(reply).ok_or_else(|| protocol("EVAL", "expected [id, added]"))?;
        let seen = items
            .first()
            .and_then(reply::text)
            .ok_or_else(|| protocol("EVAL", "no ID"))?;
        Ok((seen, items.get(1).and_then(int) == Some(1)))
    }

    /// Appends `entries` to `stream`, then sets `progress` on the hash `job`, in one script
    /// (`lua/add_with_progress.lua`): a failing XADD stops it before the progress moves, so a
    /// resumed job never skips entries. Only while the hash's `runner` is `owner.runner` and
    /// its `cursor` is `owner.cursor`: `Ok(false)` (nothing written) when another run took
    /// the job. Entries with more than `SCRIPT_MAX_FIELDS` fields go through MULTI/EXEC
    /// after the same check (then a failing XADD would not stop the HSET).
    pub async fn add_with_progress(
        &self,
        stream: &str,
        entries: &[Vec<(Bytes, Bytes)>],
        job: &str,
        owner: JobOwner<'_>,
        progress: &[(&str, String)],
    ) -> Result<bool, RedisError> {
        let wide = entries.iter().any(|e| e.len() > SCRIPT_MAX_FIELDS);
        let batch: &[Vec<(Bytes, Bytes)>] = if wide { &[] } else { entries };
        let reply = self
            .run_script(&ADD_WITH_PROGRESS, &[stream, job], |a| {
                a.extend(args([owner.runner, owner.cursor]));
                a.push(Value::from(batch.len().to_string()));
                for fields in batch {
                    a.push(Value::from((fields.len() * 2).to_string()));
                    push_pairs(a, fields);
                }
                if !wide {
                    push_str_pairs(a, progress);
                }
            })
            .await?;
        if int(&reply) == Some(-1) {
            return Ok(false);
        }
        if wide {
            self.add_with_progress_multi(stream, entries, job, progress)
                .await?;
        }
        Ok(true)
    }

    /// The batch of [`Redis::add_with_progress`] with entries too wide for one script.
    async fn add_with_progress_multi(
        &self,
        stream: &str,
        entries: &[Vec<(Bytes, Bytes)>],
        job: &str,
        progress: &[(&str, String)],
    ) -> Result<(), RedisError> {
        let trx = self.client.multi();
        for fields in entries {
            let mut a = args([stream, "*"]);
            push_pairs(&mut a, fields);
            let _: () = trx
                .custom(cmd("XADD"), a)
                .await
                .map_err(|e| self.fail("MULTI", e))?;
        }
        let mut h = args([job]);
        push_str_pairs(&mut h, progress);
        let _: () = trx
            .custom(cmd("HSET"), h)
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let _: Value = trx.exec(true).await.map_err(|e| self.fail("EXEC", e))?;
        Ok(())
    }

    /// `XDEL key ids…`; returns how many existed. (Not DEL: the stream itself stays.)
    pub async fn delete_entries(&self, key: &str, ids: &[StreamId]) -> Result<u64, RedisError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut a = args([key]);
        a.extend(ids.iter().map(|id| Value::from(id.to_string())));
        let reply = self.call("XDEL", a).await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// `XTRIM stream MINID ~ id`: removes whole nodes of entries older than `id` only.
    pub async fn trim_before(&self, stream: &str, id: StreamId) -> Result<u64, RedisError> {
        let reply = self
            .call("XTRIM", args([stream, "MINID", "~", &id.to_string()]))
            .await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// `XTRIM stream MINID id` (exact): removes every entry older than `id`. Call it once
    /// `~` trimming has removed the whole nodes, so it only edits the boundary node.
    pub async fn trim_before_exactly(&self, stream: &str, id: StreamId) -> Result<u64, RedisError> {
        let reply = self
            .call("XTRIM", args([stream, "MINID", &id.to_string()]))
            .await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// `HSET key field value…` (a replay job's progress).
    pub async fn hash_set(&self, key: &str, fields: &[(&str, String)]) -> Result<(), RedisError> {
        let mut a = args([key]);
        push_str_pairs(&mut a, fields);
        self.call("HSET", a).await.map(|_| ())
    }

    /// `PEXPIRE key ms`: the key goes away unless written again within `ttl`.
    pub async fn expire_in(&self, key: &str, ttl: std::time::Duration) -> Result<(), RedisError> {
        let ms = ttl.as_millis().max(1).to_string();
        self.call("PEXPIRE", args([key, &ms])).await.map(|_| ())
    }

    /// `SADD`/`SREM` of one member; returns whether the set changed.
    pub async fn set_member(
        &self,
        key: &str,
        member: &str,
        present: bool,
    ) -> Result<bool, RedisError> {
        let reply = self
            .call(if present { "SADD" } else { "SREM" }, args([key, member]))
            .await?;
        Ok(int(&reply) == Some(1))
    }
}

/// `lua/add_led.lua`'s arguments: the names, the shape flag, then each entry, its strings
/// moved into the arguments.
fn led_args(names: [&'static str; 2], entries: Vec<LedEntry>) -> Vec<Value> {
    let plain = entries.iter().all(|e| e.rest.is_empty());
    let per_entry = if plain { 2 } else { 3 };
    let extra: usize = entries.iter().map(|e| e.rest.len() * 2).sum();
    let mut a = Vec::with_capacity(3 + entries.len() * per_entry + extra);
    a.push(Value::from_static_str(names[0]));
    a.push(Value::from_static_str(names[1]));
    a.push(Value::from_static_str(if plain { "0" } else { "1" }));
    for LedEntry {
        lead: [first, second],
        rest,
    } in entries
    {
        a.push(Value::from(first));
        a.push(Value::from(second));
        if !plain {
            a.push(Value::from((rest.len() * 2).to_string()));
            for (k, v) in rest {
                a.push(Value::from(k));
                a.push(Value::from(v));
            }
        }
    }
    a
}
