//! Recurring schedules at run time (contract §13): the scheduler every `weir run` runs, and
//! the operations behind `weir schedules` and `/api/v1/schedules` (list, pause, resume).
//!
//! # Each tick exactly once, across any number of processes
//!
//! Every process runs the same loop over the same config. Per schedule it reads the state
//! hash `<stream>:schedule:<name>` together with Redis's `TIME` in one script (so ticks
//! follow Redis's clock, never a skewed host's), works out the due ticks with the pure rules
//! of [`super::cron`], and then claims *and* publishes them in one more script
//! (`redis/lua/schedule_fire.lua`): it writes the events and moves `last_tick` only if
//! `last_tick` is still what it read. Of several processes that read the same state, the
//! first claim wins and the others find `last_tick` moved and write nothing.
//!
//! Because claim and publish are one script, Redis runs them as one step: a process killed
//! with `kill -9` at any moment has either claimed and published a tick or done neither, in
//! which case the next process (or the restarted one) finds the tick still due. There is no
//! window between claim and publish, so no `pending` state to recover. Each event carries
//! `id = <name>@<tick>` and the script records it under the publisher's dedup key
//! (`<stream>:dedup:<id>`, as `weir publish --id` does) and skips an id already there: a
//! script that failed halfway (an XADD refused under OOM after an earlier one succeeded;
//! scripts do not roll back) is retried without doubling the events written before.
//!
//! With partitions, a schedule's events all go to one partition, the one `weir publish
//! --key <name>` would pick, so its ticks stay in order; its state hash sits beside that
//! partition's stream so the script's keys share a slot on Redis Cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::cron::{self, Timetable};
use crate::config::{Config, ScheduleConfig};
use crate::error::{ConfigError, OpError, RedisError};
use crate::keys;
use crate::metrics;
use crate::publisher::{NewEvent, Publisher};
use crate::redis::{Fired, Redis, ScheduleState, TickClaim};
use crate::streak::FailureStreak;
use crate::vocab::{SCHEDULE, SCHEDULED_FOR};

/// The longest the scheduler sleeps between two looks at Redis, whatever the next tick.
const MAX_NAP: Duration = Duration::from_secs(5);

/// Woken this long after a tick's time, so Redis's clock has surely reached it.
const MARGIN_MS: i64 = 5;

/// One configured schedule with the keys it uses.
#[derive(Debug, Clone)]
struct Plan {
    schedule: ScheduleConfig,
    /// The state hash.
    key: String,
    /// The stream (partition) its events go to.
    stream: String,
}

/// Where each schedule publishes and keeps its state: its partition is the one `weir
/// publish --key <name>` picks.
fn plans(config: &Config) -> Vec<Plan> {
    let parts = config.partitions();
    config
        .schedules
        .iter()
        .map(|s| {
            let partition = if parts.len() > 1 {
                usize::from(crate::redis::key_slot(&s.name)) % parts.len()
            } else {
                0
            };
            let stream = parts
                .get(partition)
                .map_or_else(|| config.stream.name.clone(), |p| p.stream.clone());
            Plan {
                key: keys::schedule(&stream, &s.name),
                stream,
                schedule: s.clone(),
            }
        })
        .collect()
}

/// The event of `schedule`'s tick at `tick`, as the publisher sees it.
fn event(schedule: &ScheduleConfig, tick: i64) -> NewEvent {
    NewEvent {
        event_type: schedule.event_type.clone(),
        data: schedule.data.clone(),
        id: Some(cron::tick_id(&schedule.name, tick)),
        fields: BTreeMap::from([
            (SCHEDULE.to_string(), schedule.name.clone()),
            (SCHEDULED_FOR.to_string(), tick.to_string()),
        ]),
        key: Some(schedule.name.clone()),
    }
}

/// At start: every schedule's event passes the checks `weir publish` makes (its `data`
/// against the schemas, `[schemas] align`, size, reserved fields); a config error naming
/// the schedule otherwise.
pub fn check_events(config: &Config, publisher: &Publisher) -> Result<(), ConfigError> {
    for (index, schedule) in config.schedules.iter().enumerate() {
        let now = crate::clock::now_ms().min(i64::MAX as u64) as i64;
        if let Err(rejection) = publisher.check(&event(schedule, now)) {
            return Err(ConfigError::Invalid {
                key: format!("schedules[{index}].data"),
                problem: format!(
                    "schedule `{}`: its event would be refused: {rejection}",
                    schedule.name
                ),
            });
        }
    }
    Ok(())
}

/// The scheduler of one engine: publishes each schedule's due ticks until `stop`. Redis
/// failures are logged (throttled) and retried; they never end the loop.
pub(crate) async fn run(redis: Redis, config: Arc<Config>, stop: CancellationToken) {
    let plans = plans(&config);
    if plans.is_empty() {
        return;
    }
    let published = metrics::Published::new(metrics::TypeLabels::for_engine(&config));
    let dedup_window = config.stream.dedup_window;
    let mut streak = FailureStreak::default();
    tracing::info!(
        schedules = plans.len(),
        "recurring schedules running (each tick is published by whichever process claims it first)"
    );
    while !stop.is_cancelled() {
        let mut nap = MAX_NAP;
        let mut failure: Option<RedisError> = None;
        for plan in &plans {
            match step(&redis, plan, dedup_window, &published).await {
                Ok(next) => nap = nap.min(next),
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            if streak.failed() {
                tracing::warn!(error = %e, failures = streak.count(), "schedules: Redis failed; retrying");
            }
            streak.wait(&stop).await;
            continue;
        }
        streak.succeeded();
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// One look at one schedule: publish what is due; returns how long until its next tick.
async fn step(
    redis: &Redis,
    plan: &Plan,
    dedup_window: Duration,
    published: &metrics::Published,
) -> Result<Duration, RedisError> {
    let s = &plan.schedule;
    let state = redis.schedule_state(&plan.key, true).await?;
    if !state.paused {
        let ticks = cron::due(&s.timetable, state.cursor(), state.now, s.catch_up);
        if !ticks.is_empty() {
            fire(redis, plan, &state, &ticks, dedup_window, published).await?;
        }
    }
    Ok(until_next(&s.timetable, state.now))
}

/// Claims and publishes `ticks` (one script); logs what a catch-up did.
async fn fire(
    redis: &Redis,
    plan: &Plan,
    state: &ScheduleState,
    ticks: &[i64],
    dedup_window: Duration,
    published: &metrics::Published,
) -> Result<(), RedisError> {
    let s = &plan.schedule;
    let claimed: Vec<(i64, String, String)> = ticks
        .iter()
        .map(|&tick| {
            let id = cron::tick_id(&s.name, tick);
            let dedup = keys::dedup(&plan.stream, &id);
            (tick, id, dedup)
        })
        .collect();
    let claim = TickClaim {
        expected: &state.last_tick_raw,
        dedup_window,
        event_type: &s.event_type,
        data: &s.data,
        name: &s.name,
        ticks: &claimed,
    };
    let outcome = redis.schedule_fire(&plan.key, &plan.stream, &claim).await?;
    if let Fired::Fired { added } = outcome {
        published.record(&s.event_type, added);
        let first = ticks.first().copied().unwrap_or_default();
        if ticks.len() > 1 || state.now - first > cron::ON_TIME_MS {
            tracing::info!(schedule = %s.name, ticks = ticks.len(), first = %cron::rfc3339(first), catch_up = s.catch_up.as_str(), "schedule caught up after downtime");
        } else {
            tracing::debug!(schedule = %s.name, tick = %cron::rfc3339(first), "schedule fired");
        }
    }
    Ok(())
}

/// From Redis time `now`, how long to sleep until the next tick (at most [`MAX_NAP`]).
fn until_next(timetable: &Timetable, now: i64) -> Duration {
    let Some(next) = timetable.next_after(now) else {
        return MAX_NAP;
    };
    let ms = (next - now + MARGIN_MS).clamp(0, MAX_NAP.as_millis() as i64);
    Duration::from_millis(ms as u64)
}

/// One schedule as `weir schedules`, `GET /api/v1/schedules` and the dashboard show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    /// The schedule's name.
    pub name: String,
    /// The cron expression, or `every <n>s`.
    pub timetable: String,
    /// The IANA zone the cron expression is read in.
    pub timezone: String,
    /// The events' type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `none`, `last` or `all`.
    pub catch_up: String,
    /// The last published tick, RFC 3339 in UTC; null before the first.
    pub last_tick: Option<String>,
    /// The next tick by Redis's clock, RFC 3339 in UTC (while paused: the next it would
    /// fire); null when the expression matches no later date.
    pub next_tick: Option<String>,
    /// Paused schedules publish nothing; on resume the ticks missed meanwhile are skipped.
    pub paused: bool,
    /// The state hash in Redis.
    pub key: String,
}

fn view(plan: &Plan, state: &ScheduleState) -> ScheduleView {
    let s = &plan.schedule;
    ScheduleView {
        name: s.name.clone(),
        timetable: s.timetable.describe(),
        timezone: s.timezone.clone(),
        event_type: s.event_type.clone(),
        catch_up: s.catch_up.as_str().into(),
        last_tick: state.last_tick.map(cron::rfc3339),
        next_tick: s.timetable.next_after(state.now).map(cron::rfc3339),
        paused: state.paused,
        key: plan.key.clone(),
    }
}

/// Every configured schedule with its state, in config order. Only reads.
pub async fn list(redis: &Redis, config: &Config) -> Result<Vec<ScheduleView>, OpError> {
    let mut views = Vec::with_capacity(config.schedules.len());
    for plan in plans(config) {
        let state = redis.schedule_state(&plan.key, false).await?;
        views.push(view(&plan, &state));
    }
    Ok(views)
}

/// Pauses or resumes schedule `name`; returns its state after, and whether it changed. A
/// resume skips the ticks missed while paused (they are not caught up).
pub async fn set_paused(
    redis: &Redis,
    config: &Config,
    name: &str,
    paused: bool,
) -> Result<(ScheduleView, bool), OpError> {
    let Some(plan) = plans(config).into_iter().find(|p| p.schedule.name == name) else {
        let known: Vec<&str> = config.schedules.iter().map(|s| s.name.as_str()).collect();
        let known = if known.is_empty() {
            "none configured".to_string()
        } else {
            format!("configured: {}", known.join(", "))
        };
        return Err(OpError::NotFound(format!(
            "no schedule named `{name}` ({known})"
        )));
    };
    let changed = redis.schedule_pause(&plan.key, paused).await?;
    let state = redis.schedule_state(&plan.key, false).await?;
    Ok((view(&plan, &state), changed))
}
