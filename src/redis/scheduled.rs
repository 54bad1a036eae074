//! Delayed events (contract §13): the sorted set `<stream>:scheduled` beside each stream,
//! scored by due time in unix ms, one JSON member per event. Adding (with publish dedup),
//! moving what is due (one script per batch), reading pages soonest first, cancelling by id,
//! and the count with the soonest due time: every time here is Redis's (`TIME`).

use std::time::Duration;

use fred::types::Value;

use super::Redis;
use super::command::{SCRIPT_MAX_FIELDS, Script, args};
use super::reply::{self, array, int, protocol, text};
use crate::error::RedisError;
use crate::vocab::DLQ_ERROR_LIMIT;

static SCHEDULE_ADD: Script = Script::new(
    "EVAL (schedule events)",
    include_str!("lua/schedule_add.lua"),
);
static MOVE_DUE: Script = Script::new(
    "EVAL (move due scheduled events)",
    include_str!("lua/move_due.lua"),
);
static CANCEL_SCHEDULED: Script = Script::new(
    "EVAL (cancel scheduled events)",
    include_str!("lua/cancel_scheduled.lua"),
);
static SCHEDULED_SUMMARY: Script = Script::new(
    "EVAL (scheduled summary)",
    include_str!("lua/scheduled_summary.lua"),
);

/// When a delayed event is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// At this unix ms.
    At(u64),
    /// This long after Redis's now, when the event is added.
    After(Duration),
}

impl Due {
    fn push(self, a: &mut Vec<Value>) {
        let (kind, ms) = match self {
            Due::At(ms) => ("at", ms),
            Due::After(d) => ("after", d.as_millis() as u64),
        };
        a.push(Value::from_static_str(kind));
        a.push(Value::from(ms.to_string()));
    }
}

/// What [`Redis::schedule_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledOnce {
    /// Added, due at this unix ms.
    Added(u64),
    /// The dedup key existed: its value (an entry ID, or `scheduled:<due ms>`).
    Seen(String),
}

/// The keys one partition's mover works on: all in one hash slot.
#[derive(Debug, Clone)]
pub struct MoveKeys {
    pub scheduled: String,
    pub stream: String,
    pub dlq: String,
}

/// What one batch of the mover did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovedBatch {
    /// Members added to the stream.
    pub moved: u64,
    /// Members dead-lettered `malformed`.
    pub dead_lettered: u64,
    /// When the soonest member left is due (unix ms), if any.
    pub next_due: Option<u64>,
    /// Redis's clock when the batch ran (unix ms).
    pub now: u64,
}

/// A scheduled set's size and its soonest due time, by Redis's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduledSummary {
    pub members: u64,
    /// The soonest member's due time (unix ms), if any.
    pub first_due: Option<u64>,
    /// Redis's clock (unix ms).
    pub now: u64,
}

/// A unix ms; `-1` (none) reads as `None`.
fn optional_ms(value: Option<&Value>) -> Option<u64> {
    value.and_then(int).and_then(|n| u64::try_from(n).ok())
}

/// Members and scores of a WITHSCORES reply, flat (RESP2) or as pairs (RESP3).
fn scored(command: &'static str, reply: Value) -> Result<Vec<(String, f64)>, RedisError> {
    let items = array(reply).ok_or_else(|| protocol(command, "not an array"))?;
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Array(pair) => flat.extend(pair),
            other => flat.push(other),
        }
    }
    flat.chunks(2)
        .map(|pair| {
            let member = pair.first().and_then(reply::bytes);
            let score = pair.get(1).and_then(|s| match s {
                Value::Double(d) => Some(*d),
                other => text(other).and_then(|t| t.parse::<f64>().ok()),
            });
            match (member, score) {
                (Some(m), Some(s)) => Ok((String::from_utf8_lossy(&m).into_owned(), s)),
                _ => Err(protocol(command, "a member without a score")),
            }
        })
        .collect()
}

/// The reply of `lua/schedule_add.lua`: `{1, due times}` when added, `{0, the dedup key's
/// value}` when the id was taken.
enum AddReply {
    Added(String),
    Seen(String),
}

fn add_reply(reply: Value) -> Result<AddReply, RedisError> {
    let items = array(reply).ok_or_else(|| protocol(SCHEDULE_ADD.name, "not an array"))?;
    let flag = items.first().and_then(int);
    let body = items.get(1).and_then(text);
    match (flag, body) {
        (Some(1), Some(dues)) => Ok(AddReply::Added(dues)),
        (Some(0), Some(seen)) => Ok(AddReply::Seen(seen)),
        _ => Err(protocol(SCHEDULE_ADD.name, "expected [flag, text]")),
    }
}

fn due_times(dues: &str) -> Result<Vec<u64>, RedisError> {
    dues.split_ascii_whitespace()
        .map(|d| d.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| protocol(SCHEDULE_ADD.name, "a due time that is no number"))
}

impl Redis {
    /// Adds members (no dedup) to `key` in one script; returns each one's due time (unix
    /// ms) in order.
    pub async fn schedule_many(
        &self,
        key: &str,
        members: &[(Due, String)],
    ) -> Result<Vec<u64>, RedisError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self
            .run_script(&SCHEDULE_ADD, &[key], |a| {
                a.reserve(1 + members.len() * 3);
                a.push(Value::from_static_str("0"));
                for (due, member) in members {
                    due.push(a);
                    a.push(Value::from(member.as_str()));
                }
            })
            .await?;
        let dues = match add_reply(reply)? {
            AddReply::Added(dues) => due_times(&dues)?,
            AddReply::Seen(_) => Vec::new(),
        };
        if dues.len() != members.len() {
            return Err(protocol(
                SCHEDULE_ADD.name,
                format!("{} due times for {} members", dues.len(), members.len()),
            ));
        }
        Ok(dues)
    }

    /// Adds one member to `key` unless `dedup_key` exists; then holds the key until the due
    /// time plus `window` (see `lua/schedule_add.lua`).
    pub async fn schedule_once(
        &self,
        key: &str,
        dedup_key: &str,
        window: Duration,
        due: Due,
        member: &str,
    ) -> Result<ScheduledOnce, RedisError> {
        let window = window.as_millis().max(1).to_string();
        let reply = self
            .run_script(&SCHEDULE_ADD, &[key, dedup_key], |a| {
                a.push(Value::from(window.as_str()));
                due.push(a);
                a.push(Value::from(member));
            })
            .await?;
        match add_reply(reply)? {
            AddReply::Seen(seen) => Ok(ScheduledOnce::Seen(seen)),
            AddReply::Added(dues) => match due_times(&dues)?.as_slice() {
                [due] => Ok(ScheduledOnce::Added(*due)),
                _ => Err(protocol(SCHEDULE_ADD.name, "not one due time")),
            },
        }
    }

    /// Moves up to `limit` due members of `keys.scheduled` to the stream, soonest first,
    /// each exactly once (`lua/move_due.lua`); a member that is no event is dead-lettered
    /// `malformed` with `dlq_group` = `first_pool`.
    pub async fn move_due(
        &self,
        keys: &MoveKeys,
        limit: usize,
        first_pool: &str,
    ) -> Result<MovedBatch, RedisError> {
        let limit = limit.to_string();
        let max_fields = SCRIPT_MAX_FIELDS.to_string();
        let error_limit = DLQ_ERROR_LIMIT.to_string();
        let reply = self
            .run_script(
                &MOVE_DUE,
                &[&keys.scheduled, &keys.stream, &keys.dlq],
                |a| a.extend(args([&limit, first_pool, &max_fields, &error_limit])),
            )
            .await?;
        let items = array(reply).ok_or_else(|| protocol(MOVE_DUE.name, "not an array"))?;
        let number = |i: usize| items.get(i).and_then(int);
        match (number(0), number(1), number(3)) {
            (Some(moved), Some(dead), Some(now)) => Ok(MovedBatch {
                moved: moved.max(0) as u64,
                dead_lettered: dead.max(0) as u64,
                next_due: optional_ms(items.get(2)),
                now: now.max(0) as u64,
            }),
            _ => Err(protocol(MOVE_DUE.name, "expected [moved, dead, next, now]")),
        }
    }

    /// Members of `key` with a score of at least `min` ms (all when `None`), soonest first,
    /// skipping the first `skip`: `ZRANGEBYSCORE key min +inf WITHSCORES LIMIT skip count`.
    pub async fn scheduled_page(
        &self,
        key: &str,
        min: Option<u64>,
        skip: usize,
        count: usize,
    ) -> Result<Vec<(String, f64)>, RedisError> {
        let min = min.map_or_else(|| "-inf".to_string(), |m| m.to_string());
        let (skip, count) = (skip.to_string(), count.to_string());
        let reply = self
            .call(
                "ZRANGEBYSCORE",
                args([key, &min, "+inf", "WITHSCORES", "LIMIT", &skip, &count]),
            )
            .await?;
        scored("ZRANGEBYSCORE", reply)
    }

    /// One ZSCAN page of `key` with every member whose `id` is one of `ids` removed
    /// (`lua/cancel_scheduled.lua`; `dedup_keys[i]` is `ids[i]`'s). Returns the next cursor
    /// (`0` at the end) and the id of each member removed.
    pub async fn cancel_scheduled_page(
        &self,
        key: &str,
        dedup_keys: &[String],
        ids: &[String],
        cursor: &str,
    ) -> Result<(String, Vec<String>), RedisError> {
        // An id JSON may write escaped (a quote, a backslash, a slash, a control character)
        // might not appear verbatim in a member: then every member is decoded.
        let decode_all = ids.iter().any(|id| {
            id.chars()
                .any(|c| matches!(c, '"' | '\\' | '/') || c.is_control())
        });
        let mut keys: Vec<&str> = vec![key];
        keys.extend(dedup_keys.iter().map(String::as_str));
        let reply = self
            .run_script(&CANCEL_SCHEDULED, &keys, |a| {
                a.extend(args([cursor, "1000", if decode_all { "1" } else { "0" }]));
                a.extend(ids.iter().map(|id| Value::from(id.as_str())));
            })
            .await?;
        let items = array(reply).ok_or_else(|| protocol(CANCEL_SCHEDULED.name, "not an array"))?;
        let mut items = items.iter().map(text);
        let next = items
            .next()
            .flatten()
            .ok_or_else(|| protocol(CANCEL_SCHEDULED.name, "no cursor"))?;
        Ok((next, items.flatten().collect()))
    }

    /// How many members `key` holds and when the soonest is due, by Redis's clock.
    pub async fn scheduled_summary(&self, key: &str) -> Result<ScheduledSummary, RedisError> {
        let reply = self.run_script(&SCHEDULED_SUMMARY, &[key], |_| {}).await?;
        let items = array(reply).ok_or_else(|| protocol(SCHEDULED_SUMMARY.name, "not an array"))?;
        match (items.first().and_then(int), items.get(2).and_then(int)) {
            (Some(members), Some(now)) => Ok(ScheduledSummary {
                members: members.max(0) as u64,
                first_due: optional_ms(items.get(1)),
                now: now.max(0) as u64,
            }),
            _ => Err(protocol(
                SCHEDULED_SUMMARY.name,
                "expected [members, first, now]",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_read_flat_or_in_pairs() {
        let flat = Value::Array(vec![
            Value::from("a"),
            Value::from("1700000000000"),
            Value::from("b"),
            Value::from("5"),
        ]);
        assert_eq!(
            scored("Z", flat).unwrap(),
            [("a".to_string(), 1.7e12), ("b".to_string(), 5.0)]
        );
        let pairs = Value::Array(vec![Value::Array(vec![
            Value::from("a"),
            Value::Double(7.0),
        ])]);
        assert_eq!(scored("Z", pairs).unwrap(), [("a".to_string(), 7.0)]);
        assert!(scored("Z", Value::Array(vec![Value::from("a")])).is_err());
    }

    #[test]
    fn the_add_reply_is_a_flag_and_text() {
        let added = Value::Array(vec![Value::Integer(1), Value::from("5 6")]);
        assert!(matches!(add_reply(added), Ok(AddReply::Added(d)) if d == "5 6"));
        let seen = Value::Array(vec![Value::Integer(0), Value::from("scheduled:9")]);
        assert!(matches!(add_reply(seen), Ok(AddReply::Seen(s)) if s == "scheduled:9"));
        assert!(add_reply(Value::Integer(1)).is_err());
        assert_eq!(due_times("5 6").unwrap(), [5, 6]);
        assert!(due_times("5 x").is_err());
    }
}
