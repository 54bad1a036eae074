//! `weir publish`: one event, or an NDJSON batch. Batches are checked in full first: if any
//! line is invalid, every bad line is reported with its number and nothing is written. Valid
//! batches are written in pipelined chunks, in order.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Instant;

use weir::Config;
use weir::publisher::{NewEvent, Published, Publisher, Rejection};

use super::{Failure, Outcome, connect, print_json};

/// Events per pipeline.
const CHUNK: usize = 1000;

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

/// `weir publish --type … --data …` as given on the command line.
pub struct Event {
    pub event_type: String,
    /// JSON text, `@FILE` or `-`.
    pub data: String,
    pub id: Option<String>,
    pub key: Option<String>,
    /// Write it even when no pool takes its type.
    pub allow_unrouted: bool,
}

pub async fn one(config: &Config, given: Event, fields: &[String], json: bool) -> Outcome {
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
    let publisher = publisher(config, given.allow_unrouted).await?;
    let partition = publisher.partition(&event);
    let result = publisher
        .publish_to(&event, partition)
        .await
        .map_err(super::redis_failure)?;
    let published = result.map_err(|r| rejected(&r, "event"))?;
    let dedup_id = publisher.dedup_id(&event).unwrap_or_default();
    let (entry, duplicate) = match published {
        Published::Added(id) => (id, false),
        Published::Duplicate(id) => (id, true),
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

/// Parses and checks every line; returns the events or every error with its line number.
fn read_batch(source: &str, publisher: &Publisher) -> Result<Vec<(usize, NewEvent)>, Failure> {
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(source)
            .map_err(|e| Failure::usage(format!("cannot read {source}: {e}")))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Failure::usage(format!("{source}:{n}: cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<NewEvent>(&line) {
            Err(e) => errors.push(format!(
                "{source}:{n}: not an event line ({{\"type\",\"data\",\"id\"?,\"fields\"?}}): {e}"
            )),
            Ok(event) => match publisher.check(&event) {
                Err(r) => errors.push(format!("{source}:{n}: {r}{}", hint(&r))),
                Ok(()) => events.push((n, event)),
            },
        }
    }
    if errors.is_empty() {
        return Ok(events);
    }
    for e in &errors {
        eprintln!("{e}");
    }
    Err(Failure::runtime(format!(
        "{} invalid line(s) in {source}; nothing was written",
        errors.len()
    )))
}

/// Events without an id, written a pipeline at a time, and what has been written so far.
struct Batch<'a> {
    publisher: &'a Publisher,
    pending: Vec<NewEvent>,
    published: usize,
    duplicates: usize,
    /// The first input line not yet written, for the error message.
    first_unwritten: usize,
}

impl Batch<'_> {
    fn failure(&self, line: usize, e: weir::error::RedisError) -> Failure {
        let base = super::redis_failure(e).message;
        Failure::runtime(format!(
            "{base}; {} event(s) were written, lines from {line} on were not",
            self.published
        ))
    }

    /// Writes what is pending; `next` is the first line after it.
    async fn flush(&mut self, next: usize) -> Outcome {
        if !self.pending.is_empty() {
            if let Err(e) = self.publisher.publish_batch(&self.pending).await {
                return Err(self.failure(self.first_unwritten, e));
            }
            self.published += self.pending.len();
            self.pending.clear();
        }
        self.first_unwritten = next;
        Ok(())
    }

    /// Adds line `n`: events without an id (not even one in the body, with `[stream]
    /// event_id`) are batched, events with one go alone (in order) through the dedup script.
    async fn add(&mut self, n: usize, event: NewEvent, source: &str) -> Outcome {
        if self.publisher.dedup_id(&event).is_none() {
            self.pending.push(event);
            if self.pending.len() >= CHUNK {
                self.flush(n + 1).await?;
            }
            return Ok(());
        }
        self.flush(n).await?;
        match self.publisher.publish(&event).await {
            Err(e) => return Err(self.failure(n, e)),
            Ok(Ok(Published::Added(_))) => self.published += 1,
            Ok(Ok(Published::Duplicate(_))) => self.duplicates += 1,
            Ok(Err(r)) => return Err(rejected(&r, &format!("{source}:{n}"))),
        }
        self.first_unwritten = n + 1;
        Ok(())
    }
}

pub async fn batch(config: &Config, source: &str, allow_unrouted: bool, json: bool) -> Outcome {
    let publisher = publisher(config, allow_unrouted).await?;
    let events = read_batch(source, &publisher)?;
    let started = Instant::now();
    let bar = super::progress(Some(events.len() as u64), "publish");
    let mut batch = Batch {
        publisher: &publisher,
        pending: Vec::new(),
        published: 0,
        duplicates: 0,
        first_unwritten: events.first().map_or(0, |(n, _)| *n),
    };
    let last = events.last().map_or(0, |(n, _)| *n);
    for (n, event) in events {
        bar.inc(1);
        batch.add(n, event, source).await?;
    }
    batch.flush(last + 1).await?;
    let (published, duplicates) = (batch.published, batch.duplicates);
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if json {
        print_json(
            &serde_json::json!({"published": published, "duplicates": duplicates, "seconds": secs}),
        );
    } else {
        println!(
            "published {published} event(s), {duplicates} duplicate(s) skipped, to {} in {secs:.2}s",
            config.stream.name
        );
    }
    Ok(())
}
