//! Moving entries to the dead-letter stream and back: one entry at a time (settle), a sweep
//! of used-up pending entries (janitor), and reprocessing (the dlq tools).

use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{ClientLike, TransactionInterface as _};
use fred::types::Value;

use super::Redis;
use super::command::{SCRIPT_MAX_FIELDS, Script, args, cmd, cmd_for_key, push_pairs};
use super::reply::{self, array, int, protocol, text};
use crate::error::{RedisError, RedisErrorKind};
use crate::vocab::StreamId;

static DEAD_LETTER: Script = Script::new("EVAL (dead letter)", include_str!("lua/dead_letter.lua"));
static SWEEP: Script = Script::new(
    "EVAL (dead-letter sweep)",
    include_str!("lua/dead_letter_sweep.lua"),
);
/// Run inside MULTI by [`Redis::dead_letter`] for wide entries, as EVAL.
const ACK_IF_COPIED: &str = include_str!("lua/ack_if_copied.lua");
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
    /// MULTI/EXEC with the XADD of the copy, then `lua/ack_if_copied.lua`, which acknowledges
    /// only when that XADD took effect. Redis runs the rest of a transaction after a run-time
    /// error, so a bare XACK there would drop an entry whose copy failed (the DLQ key of
    /// another type): as atomic as the script path.
    async fn dead_letter_multi(
        &self,
        stream: &str,
        group: &str,
        dlq: &str,
        id: StreamId,
        fields: &[(Bytes, Bytes)],
    ) -> Result<String, RedisError> {
        let id = id.to_string();
        let trx = self.client.multi();
        let mut xadd = args([dlq, "*"]);
        push_pairs(&mut xadd, fields);
        let _: () = trx
            .custom(cmd("XADD"), xadd)
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        // EVAL, not EVALSHA: a NOSCRIPT inside EXEC would come after the XADD ran.
        let _: () = trx
            .custom(
                cmd("EVAL"),
                args([ACK_IF_COPIED, "2", dlq, stream, group, id.as_str()]),
            )
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let reply: Value = trx.exec(false).await.map_err(|e| self.fail("EXEC", e))?;
        let items = array(reply).ok_or_else(|| protocol("EXEC", "expected an array"))?;
        let copied = items.first().and_then(text);
        let acked = items.get(1).and_then(int) == Some(1);
        match copied {
            Some(dlq_id) if acked => Ok(dlq_id),
            _ => Err(RedisError {
                command: "EXEC",
                message: format!(
                    "the DLQ copy of {id} was not added to {dlq}, so it was not acknowledged; it stays pending"
                ),
                kind: RedisErrorKind::Server,
            }),
        }
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
    /// pipelined. One result per ID, in order: each letter stands alone, so one that cannot
    /// be copied (nothing to copy, too wide, a server error) is [`Reprocessing::Refused`]
    /// while the others move. A connection failure fails the call: which scripts of the
    /// batch ran is then unknown. The pipeline sends EVAL: a NOSCRIPT reply in the middle of
    /// a pipeline would need a per-reply fallback.
    pub async fn reprocess(
        &self,
        dlq: &str,
        stream: &str,
        ids: &[StreamId],
    ) -> Result<Vec<Reprocessing>, RedisError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let limit = (SCRIPT_MAX_FIELDS * 2).to_string();
        let pipeline = self.client.pipeline();
        for id in ids {
            let _: () = pipeline
                .custom(
                    cmd_for_key("EVAL", dlq, false),
                    args([REPROCESS.lua, "2", dlq, stream, &id.to_string(), &limit]),
                )
                .await
                .map_err(|e| self.fail(REPROCESS.name, e))?;
        }
        let replies = pipeline.try_all::<Value>().await;
        if replies.len() != ids.len() {
            return Err(protocol(
                REPROCESS.name,
                format!("{} replies for {} commands", replies.len(), ids.len()),
            ));
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                Ok(value) => Ok(reply::id(&value).map_or(Reprocessing::Gone, Reprocessing::Moved)),
                Err(e) => {
                    let e = self.fail(REPROCESS.name, e);
                    if e.is(RedisErrorKind::Server) {
                        let message = e.message.strip_prefix("ERR ").unwrap_or(&e.message);
                        Ok(Reprocessing::Refused(message.to_string()))
                    } else {
                        Err(e)
                    }
                }
            })
            .collect()
    }
}

/// What became of one dead letter [`Redis::reprocess`] was asked to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reprocessing {
    /// Copied onto the stream under this ID and deleted from the DLQ.
    Moved(StreamId),
    /// No longer in the DLQ (reprocessed or forgotten meanwhile).
    Gone,
    /// Left in the DLQ: why it could not be copied.
    Refused(String),
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
