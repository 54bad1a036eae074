//! Recurring schedules (contract §13): the state hash `<stream>:schedule:<name>` (`last_tick`,
//! `since`, `paused`) read with Redis's clock, the one script that claims ticks and publishes
//! their events together, and pause/resume.

use std::time::Duration;

use fred::types::Value;

use super::Redis;
use super::command::{Script, args};
use super::reply::{array, int, protocol, text};
use crate::error::RedisError;
use crate::vocab::{DATA, EVENT_ID, SCHEDULE, SCHEDULED_FOR, TYPE};

static STATE: Script = Script::new(
    "EVAL (schedule state)",
    include_str!("lua/schedule_state.lua"),
);
static FIRE: Script = Script::new(
    "EVAL (schedule fire)",
    include_str!("lua/schedule_fire.lua"),
);
static PAUSE: Script = Script::new(
    "EVAL (schedule pause)",
    include_str!("lua/schedule_pause.lua"),
);

/// A schedule's hash as one process read it, with Redis's clock at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    /// Redis's `TIME`, unix ms: the clock every process's ticks follow.
    pub now: i64,
    /// The last tick published (unix ms); `None` before the first.
    pub last_tick: Option<i64>,
    /// Ticks at or before this are never caught up: the schedule's first start, or its last
    /// resume.
    pub since: Option<i64>,
    /// Paused schedules publish nothing.
    pub paused: bool,
    /// `last_tick` as stored, the value the claim compares against.
    pub last_tick_raw: String,
}

impl ScheduleState {
    /// Where due ticks are counted from: the last published tick or the start, the later.
    pub fn cursor(&self) -> i64 {
        self.last_tick
            .into_iter()
            .chain(self.since)
            .max()
            .unwrap_or(self.now)
    }
}

/// The events of one claim: every tick's event shares the type, data and schedule name.
#[derive(Debug, Clone)]
pub struct TickClaim<'a> {
    /// The `last_tick` the claimer read (`ScheduleState::last_tick_raw`).
    pub expected: &'a str,
    /// How long each event id's dedup key lives.
    pub dedup_window: Duration,
    /// The events' `type`.
    pub event_type: &'a str,
    /// The events' `data`.
    pub data: &'a str,
    /// The schedule's name (the `schedule` field).
    pub name: &'a str,
    /// Per tick, in order: (tick unix ms, event id, dedup key of that id).
    pub ticks: &'a [(i64, String, String)],
}

/// What a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// The ticks are ours: `added` events were written (fewer when an id was published
    /// before), and `last_tick` is the last of them.
    Fired { added: u64 },
    /// The schedule is paused: nothing written.
    Paused,
    /// Another process claimed first (`last_tick` moved): nothing written.
    Moved,
}

fn number(value: Option<&Value>) -> Option<i64> {
    let v = value?;
    if text(v).is_some_and(|t| t.is_empty()) {
        return None;
    }
    int(v)
}

impl Redis {
    /// The schedule hash at `key` and Redis's clock; with `start`, a schedule that never ran
    /// gets `since` = now.
    pub async fn schedule_state(
        &self,
        key: &str,
        start: bool,
    ) -> Result<ScheduleState, RedisError> {
        let flag = if start { "1" } else { "0" };
        let reply = self
            .run_script(&STATE, &[key], |a| a.extend(args([flag])))
            .await?;
        let bad = || {
            protocol(
                "EVAL (schedule state)",
                "not {now, last_tick, since, paused}",
            )
        };
        let items = array(reply).ok_or_else(bad)?;
        Ok(ScheduleState {
            now: number(items.first()).ok_or_else(bad)?,
            last_tick: number(items.get(1)),
            since: number(items.get(2)),
            paused: items.get(3).and_then(text).as_deref() == Some("1"),
            last_tick_raw: items.get(1).and_then(text).unwrap_or_default(),
        })
    }

    /// Claims `claim.ticks` for the schedule at `key` and writes their events to `stream`, in
    /// one script (`lua/schedule_fire.lua`).
    pub async fn schedule_fire(
        &self,
        key: &str,
        stream: &str,
        claim: &TickClaim<'_>,
    ) -> Result<Fired, RedisError> {
        let mut keys = vec![key, stream];
        keys.extend(claim.ticks.iter().map(|(_, _, dedup)| dedup.as_str()));
        let ttl = claim.dedup_window.as_millis().max(1).to_string();
        let reply = self
            .run_script(&FIRE, &keys, |a| {
                a.extend(args([
                    claim.expected,
                    &ttl,
                    claim.event_type,
                    claim.data,
                    claim.name,
                    TYPE,
                    DATA,
                    EVENT_ID,
                    SCHEDULE,
                    SCHEDULED_FOR,
                ]));
                for (tick, id, _) in claim.ticks {
                    a.push(Value::from(tick.to_string()));
                    a.push(Value::from(id.as_str()));
                }
            })
            .await?;
        let bad = || protocol("EVAL (schedule fire)", "not {'fired'|'paused'|'moved', …}");
        let items = array(reply).ok_or_else(bad)?;
        match items.first().and_then(text).as_deref() {
            Some("fired") => Ok(Fired::Fired {
                added: number(items.get(1)).ok_or_else(bad)?.max(0) as u64,
            }),
            Some("paused") => Ok(Fired::Paused),
            Some("moved") => Ok(Fired::Moved),
            _ => Err(bad()),
        }
    }

    /// Pauses (`true`) or resumes the schedule at `key`; a resume skips the ticks missed while
    /// paused. Returns whether the state changed.
    pub async fn schedule_pause(&self, key: &str, paused: bool) -> Result<bool, RedisError> {
        let flag = if paused { "1" } else { "0" };
        let reply = self
            .run_script(&PAUSE, &[key], |a| a.extend(args([flag])))
            .await?;
        Ok(int(&reply).ok_or_else(|| protocol("EVAL (schedule pause)", "not 0 or 1"))? == 1)
    }
}
