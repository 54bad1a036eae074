//! Moving entries to the dead-letter stream and back: one entry at a time (settle), a sweep
//! of used-up pending entries (janitor), and reprocessing (the dlq tools).

use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{ClientLike, TransactionInterface as _};
use fred::types::Value;

use super::command::{
    SCRIPT_MAX_FIELDS, Script, args, cmd, cmd_for_key, pipeline_replies, push_pairs,
};
use super::reply::{self, array, int, protocol, text};
use super::{Redis, StreamId};
use crate::error::RedisError;

static DEAD_LETTER: Script = Script::new("EVAL (dead letter)", include_str!("lua/dead_letter.lua"));
static SWEEP: Script = Script::new(
    "EVAL (dead-letter sweep)",
    include_str!("lua/dead_letter_sweep.lua"),
);
static REPROCESS: Script = Script::new("EVAL", include_str!("lua/reprocess.lua"));

/// What a dead-letter sweep works on.
pub struct IdleSweep<'a> {
    pub stream: &'a str,
    pub dlq: &'a str,
    pub group: &'a str,
    pub min_idle: Duration,
    pub max_attempts: u32,
    /// `dlq_error`, with `{n}` standing for the delivery count.
    pub error: &'a str,
}

/// One entry a sweep moved to the DLQ.
#[derive(Debug)]
pub struct SweptEntry {
    pub id: StreamId,
    pub event_type: String,
    pub dlq_id: String,
    pub attempts: u64,
}

#[derive(Debug, Default)]
pub struct SweepResult {
    pub moved: Vec<SweptEntry>,
    /// Pending entries that no longer existed in the stream (acknowledged).
    pub lost: Vec<StreamId>,
}

impl Redis {
    /// Moves an entry to the DLQ: XADD to `dlq`, then XACK in `group`, in one script (see
    /// `lua/dead_letter.lua`): an entry is never acknowledged without its DLQ copy. Entries
    /// too wide for a script go through MULTI/EXEC. Returns the DLQ entry's ID.
    pub async fn dead_letter(
        &self,
        stream: &str,
        group: &str,
        dlq: &str,
        id: StreamId,
        fields: &[(Bytes, Bytes)],
    ) -> Result<String, RedisError> {
        if fields.len() > SCRIPT_MAX_FIELDS {
            return self.dead_letter_multi(stream, group, dlq, id, fields).await;
        }
        let id = id.to_string();
        let reply = self
            .run_script(&DEAD_LETTER, &[dlq, stream], |a| {
                a.push(Value::from(group));
                a.push(Value::from(id.as_str()));
                push_pairs(a, fields);
            })
            .await?;
        text(&reply).ok_or_else(|| protocol("EVAL", "XADD returned no ID"))
    }

    /// The same move for entries with more fields than a script can pass to one command:
    /// MULTI/EXEC, atomic except that a runtime XADD error would not stop the XACK.
    async fn dead_letter_multi(
        &self,
        stream: &str,
        group: &str,
        dlq: &str,
        id: StreamId,
        fields: &[(Bytes, Bytes)],
    ) -> Result<String, RedisError> {
        let trx = self.client.multi();
        let mut xadd = args([dlq, "*"]);
        push_pairs(&mut xadd, fields);
        let _: () = trx
            .custom(cmd("XADD"), xadd)
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let _: () = trx
            .custom(cmd("XACK"), args([stream, group, &id.to_string()]))
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let reply: Value = trx.exec(true).await.map_err(|e| self.fail("EXEC", e))?;
        let items = array(reply).ok_or_else(|| protocol("EXEC", "expected an array"))?;
        items
            .first()
            .and_then(text)
            .ok_or_else(|| protocol("EXEC", "XADD returned no ID"))
    }

    /// Dead-letters, in one script (`lua/dead_letter_sweep.lua`), those of `ids` that are
    /// still pending in `group`, idle at least `min_idle` and delivered at least
    /// `max_attempts` times: each is copied to `dlq` with the `dlq_*` fields (reason
    /// `max_attempts`, `error` with `{n}` replaced by the delivery count) and acknowledged.
    /// Entries deleted from the stream meanwhile are acknowledged and reported as lost;
    /// entries too wide for a script are left alone.
    pub async fn dead_letter_idle(
        &self,
        sweep: &IdleSweep<'_>,
        ids: &[StreamId],
    ) -> Result<SweepResult, RedisError> {
        let min_idle = sweep.min_idle.as_millis().to_string();
        let max = sweep.max_attempts.to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let limit = (SCRIPT_MAX_FIELDS * 2).to_string();
        let head = [sweep.group, &min_idle, &max, &now, sweep.error, &limit];
        let reply = self
            .run_script(&SWEEP, &[sweep.stream, sweep.dlq], |a| {
                a.extend(head.iter().map(|s| Value::from(*s)));
                a.extend(ids.iter().map(|id| Value::from(id.to_string())));
            })
            .await?;
        sweep_result(reply)
    }

    /// Moves DLQ entries back to `stream`, each in one script (`lua/reprocess.lua`),
    /// pipelined. One result per ID: the new entry's ID, or `None` if it was no longer in the
    /// DLQ (already reprocessed or forgotten). The pipeline sends EVAL: a NOSCRIPT reply in
    /// the middle of a pipeline would need a per-reply fallback.
    pub async fn reprocess(
        &self,
        dlq: &str,
        stream: &str,
        ids: &[StreamId],
    ) -> Result<Vec<Option<StreamId>>, RedisError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.client.pipeline();
        for id in ids {
            let _: () = pipeline
                .custom(
                    cmd_for_key("EVAL", dlq, false),
                    args([REPROCESS.lua, "2", dlq, stream, &id.to_string()]),
                )
                .await
                .map_err(|e| self.fail(REPROCESS.name, e))?;
        }
        let replies = pipeline_replies(
            REPROCESS.name,
            pipeline
                .all()
                .await
                .map_err(|e| self.fail(REPROCESS.name, e)),
            ids.len(),
        )?;
        Ok(replies.iter().map(reply::id).collect())
    }
}

/// The sweep script's `{moved, lost}` reply.
fn sweep_result(reply: Value) -> Result<SweepResult, RedisError> {
    let mut parts = array(reply)
        .ok_or_else(|| protocol("EVAL", "expected an array"))?
        .into_iter();
    let mut moved = Vec::new();
    for row in array(parts.next().unwrap_or(Value::Null)).unwrap_or_default() {
        let row = array(row).ok_or_else(|| protocol("EVAL", "row is not an array"))?;
        let id = row.first().and_then(reply::id);
        let attempts = row.get(3).and_then(int);
        match (id, attempts) {
            (Some(id), Some(attempts)) => moved.push(SweptEntry {
                id,
                event_type: row.get(1).and_then(text).unwrap_or_default(),
                dlq_id: row.get(2).and_then(text).unwrap_or_default(),
                attempts: attempts.max(0) as u64,
            }),
            _ => return Err(protocol("EVAL", "moved entry without an ID")),
        }
    }
    let lost = reply::ids("EVAL", parts.next().unwrap_or(Value::Null))?;
    Ok(SweepResult { moved, lost })
}
