//! `weir publish`: one event, or an NDJSON batch ([`ndjson`]: checked in full first, then
//! written in order, in flat memory).

mod ndjson;

use std::io::Read;
use std::sync::Arc;

use weir::Config;
use weir::publisher::{NewEvent, Published, Publisher, Rejection, Scheduled};
use weir::redis::Due;

use super::{Failure, Outcome, connect, print_json};

pub use ndjson::batch;

/// `JSON`, `@FILE` or `-` (stdin).
pub fn read_source(spec: &str) -> Result<String, Failure> {
    // Unreadable input is a usage error (2); input that is not UTF-8 is invalid data (1).
    let read_failure = |what: &str, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            Failure::runtime(format!(
                "{what} is not valid UTF-8 text; event data must be UTF-8 JSON. Nothing was written"
            ))
        } else {
            Failure::usage(format!("cannot read {what}: {e}"))
        }
    };
    let read_file = |path: &str| std::fs::read_to_string(path).map_err(|e| read_failure(path, e));
    match spec {
        "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| read_failure("stdin", e))?;
            Ok(text)
        }
        s if s.starts_with('@') => read_file(&s[1..]),
        s => Ok(s.to_string()),
    }
}

pub fn parse_field(text: &str) -> Result<(String, String), Failure> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Failure::usage(format!("--field `{text}` must look like name=value")))
}

async fn publisher(config: &Config, allow_unrouted: bool) -> Result<Publisher, Failure> {
    let schemas = weir::schema::Schemas::load(config.schemas_dir.as_deref())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let redis = connect(config).await?;
    Ok(Publisher::new(redis, config, Arc::new(schemas)).refuse_unrouted(!allow_unrouted))
}

fn rejected(rejection: &Rejection, where_: &str) -> Failure {
    Failure::runtime(format!(
        "{where_}: {rejection}{}; nothing was written",
        hint(rejection)
    ))
}

/// How to write an unrouted event anyway.
fn hint(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::Unrouted { .. } => " (--allow-unrouted writes it anyway)",
        _ => "",
    }
}

/// `--traceparent` (and `--tracestate`) as a trace context: a usage error when it is no
/// valid W3C `traceparent`.
fn trace_context(
    traceparent: &str,
    tracestate: Option<&str>,
) -> Result<weir::TraceContext, Failure> {
    weir::TraceContext::parse(traceparent, tracestate).ok_or_else(|| {
        Failure::usage(format!(
            "--traceparent `{traceparent}` is not a W3C traceparent: expected 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, lowercase, ids not all zero"
        ))
    })
}

/// `weir publish --type … --data …` as given on the command line.
pub struct Event {
    pub event_type: String,
    /// JSON text, `@FILE` or `-`.
    pub data: String,
    pub id: Option<String>,
    pub key: Option<String>,
    /// `--traceparent`/`--tracestate`: the caller's trace context, written as fields.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// `--delay DURATION`: a delayed event, due that long after now (Redis's clock).
    pub delay: Option<String>,
    /// `--at TIME`: a delayed event, due then.
    pub at: Option<String>,
    /// Write it even when no pool takes its type.
    pub allow_unrouted: bool,
}

/// When a delayed event given as `--delay` or `--at` is due; `None` for neither.
pub fn due(delay: Option<&str>, at: Option<&str>) -> Result<Option<Due>, String> {
    match (delay, at) {
        (Some(d), _) => weir::timespec::duration(d).map(|d| Some(Due::After(d))),
        (None, Some(t)) => weir::timespec::due_at(t).map(|ms| Some(Due::At(ms))),
        (None, None) => Ok(None),
    }
}

pub async fn one(config: &Config, given: Event, fields: &[String], json: bool) -> Outcome {
    let due = due(given.delay.as_deref(), given.at.as_deref()).map_err(|e| {
        let flag = if given.delay.is_some() {
            "--delay"
        } else {
            "--at"
        };
        Failure::usage(format!("{flag}: {e}"))
    })?;
    let event = NewEvent {
        event_type: given.event_type,
        data: read_source(&given.data)?,
        id: given.id,
        key: given.key,
        fields: fields
            .iter()
            .map(|f| parse_field(f))
            .collect::<Result<_, _>>()?,
    };
    let event = match given.traceparent.as_deref() {
        Some(tp) => event.with_trace_context(&trace_context(tp, given.tracestate.as_deref())?),
        None => event,
    };
    let publisher = publisher(config, given.allow_unrouted).await?;
    let partition = publisher.partition(&event);
    if let Some(due) = due {
        return scheduled(&publisher, &event, due, partition, json).await;
    }
    let result = publisher
        .publish_to(&event, partition)
        .await
        .map_err(super::redis_failure)?;
    let published = result.map_err(|r| rejected(&r, "event"))?;
    let dedup_id = publisher.dedup_id(&event).unwrap_or_default();
    let (entry, duplicate) = match published {
        Published::Added(id) => (id, false),
        Published::Duplicate(id) => (id, true),
        Published::DuplicateScheduled(due_ms) => {
            return duplicate_scheduled(&dedup_id, due_ms, json);
        }
    };
    if json {
        print_json(
            &serde_json::json!({"entryId": entry.to_string(), "duplicate": duplicate, "type": event.event_type, "stream": publisher.stream(partition)}),
        );
    } else if duplicate {
        println!(
            "duplicate: id {dedup_id} was already published as {entry} within the dedup window; nothing written"
        );
    } else {
        println!(
            "published {entry} ({}) to {}",
            event.event_type,
            publisher.stream(partition)
        );
    }
    Ok(())
}

/// `id` was scheduled as a delayed event: nothing written.
fn duplicate_scheduled(id: &str, due_ms: u64, json: bool) -> Outcome {
    let due_at = weir::schedule::delayed::rfc3339(due_ms);
    if json {
        print_json(&serde_json::json!({"duplicate": true, "id": id, "scheduledFor": due_at}));
    } else {
        println!(
            "duplicate: id {id} was scheduled for {due_at} within the dedup window; nothing written (weir scheduled list shows it while it waits)"
        );
    }
    Ok(())
}

/// `weir publish --delay|--at`: the event goes to its partition's scheduled set.
async fn scheduled(
    publisher: &Publisher,
    event: &NewEvent,
    due: Due,
    partition: usize,
    json: bool,
) -> Outcome {
    let result = publisher
        .schedule_to(event, due, partition)
        .await
        .map_err(super::redis_failure)?;
    let dedup_id = publisher.dedup_id(event).unwrap_or_default();
    let set = weir::schedule::delayed::scheduled_key(publisher.stream(partition));
    match result.map_err(|r| rejected(&r, "event"))? {
        Scheduled::Added { due_ms, id } => {
            let due_at = weir::schedule::delayed::rfc3339(due_ms);
            if json {
                print_json(&serde_json::json!({
                    "scheduled": true, "duplicate": false, "id": id, "type": event.event_type,
                    "dueAt": due_at, "dueMs": due_ms, "set": set,
                }));
            } else {
                println!(
                    "scheduled {id} ({}) for {due_at} in {set}; cancel with: weir scheduled cancel {id}",
                    event.event_type
                );
            }
            Ok(())
        }
        Scheduled::Duplicate(entry) => {
            if json {
                print_json(
                    &serde_json::json!({"scheduled": false, "duplicate": true, "id": dedup_id, "entryId": entry.to_string()}),
                );
            } else {
                println!(
                    "duplicate: id {dedup_id} was already published as {entry} within the dedup window; nothing scheduled"
                );
            }
            Ok(())
        }
        Scheduled::DuplicateScheduled(due_ms) => duplicate_scheduled(&dedup_id, due_ms, json),
    }
}
