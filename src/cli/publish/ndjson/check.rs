//! Pass 1: every line checked, counts and the first invalid lines kept, nothing written.

use std::io::{BufReader, BufWriter, Write};

use weir::publisher::{NewEvent, Publisher};
use weir::redis::Due;

use super::input::{Input, Lines, content};
use super::{READ_BUFFER, SHOWN_ERRORS};
use crate::cli::publish::hint;
use crate::cli::{Failure, progress};

/// One NDJSON line: an event, and for a delayed one its `delay` or `at`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(deserialize_with = "weir::publisher::json_text")]
    data: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    key: Option<String>,
    /// The publisher's W3C trace context, written as the `traceparent` field.
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
    /// A DURATION (`1.5s`, `15m`).
    #[serde(default)]
    delay: Option<String>,
    /// A TIME: text as `--at` reads it, or a number of unix ms.
    #[serde(default)]
    at: Option<At>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum At {
    Ms(u64),
    Text(String),
}

/// A line's event, and when it is due if it is a delayed one.
pub(super) struct Parsed {
    pub(super) event: NewEvent,
    pub(super) due: Option<Due>,
}

/// Why a line is no event line: its JSON, or its `delay`/`at`.
pub(super) enum BadLine {
    Json(serde_json::Error),
    When(String),
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadLine::Json(e) => write!(
                f,
                "not an event line ({{\"type\",\"data\",\"id\"?,\"fields\"?,\"key\"?,\"traceparent\"?,\"tracestate\"?,\"delay\"?|\"at\"?}}): {e}"
            ),
            BadLine::When(e) => f.write_str(e),
        }
    }
}

pub(super) fn parse(line: &[u8]) -> Result<Parsed, BadLine> {
    let line: Line = serde_json::from_slice(line).map_err(BadLine::Json)?;
    let due = match (line.delay, line.at) {
        (Some(_), Some(_)) => {
            return Err(BadLine::When("give `delay` or `at`, not both".to_string()));
        }
        (Some(d), None) => Some(Due::After(
            weir::timespec::duration(&d).map_err(|e| BadLine::When(format!("delay: {e}")))?,
        )),
        (None, Some(At::Ms(ms))) => Some(Due::At(ms)),
        (None, Some(At::Text(t))) => Some(Due::At(
            weir::timespec::due_at(&t).map_err(|e| BadLine::When(format!("at: {e}")))?,
        )),
        (None, None) => None,
    };
    let event = NewEvent {
        event_type: line.event_type,
        data: line.data,
        id: line.id,
        fields: line.fields,
        key: line.key,
    };
    let event = match line.traceparent.as_deref() {
        Some(tp) => {
            let context = weir::TraceContext::parse(tp, line.tracestate.as_deref()).ok_or_else(|| {
                BadLine::When(format!(
                    "traceparent `{tp}` is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all zero)"
                ))
            })?;
            event.with_trace_context(&context)
        }
        None if line.tracestate.is_some() => {
            return Err(BadLine::When(
                "`tracestate` needs a `traceparent`".to_string(),
            ));
        }
        None => event,
    };
    Ok(Parsed { event, due })
}

/// What pass 1 counted.
pub(super) struct Checked {
    pub(super) lines: usize,
    pub(super) events: usize,
}

/// The first [`SHOWN_ERRORS`] invalid lines' messages, and how many there were.
#[derive(Default)]
pub(super) struct Errors {
    shown: Vec<String>,
    count: usize,
}

impl Errors {
    /// Counts an invalid line; `message` is only formatted for the ones shown.
    pub(super) fn add(&mut self, message: impl FnOnce() -> String) {
        self.count += 1;
        if self.shown.len() < SHOWN_ERRORS {
            self.shown.push(message());
        }
    }

    pub(super) fn into_failure(self, name: &str) -> Failure {
        for e in &self.shown {
            eprintln!("{e}");
        }
        let more = self.count - self.shown.len();
        if more > 0 {
            eprintln!("… and {more} more invalid line(s) not shown");
        }
        Failure::runtime(format!(
            "{} invalid line(s) in {name}; nothing was written",
            self.count
        ))
    }
}

/// Pass 1: checks every line, copying the input to the spool when there is one.
pub(super) fn check_all(input: &mut Input, publisher: &Publisher) -> Result<Checked, Failure> {
    let name = input.name.clone();
    let mut spool = match &input.spooled {
        Some(s) => Some(BufWriter::with_capacity(READ_BUFFER, s.file()?)),
        None => None,
    };
    let spool_failed = |e: std::io::Error| {
        Failure::runtime(format!(
            "cannot copy {name} to the spool file in {}: {e} (disk full? set TMPDIR elsewhere); nothing was written",
            std::env::temp_dir().display()
        ))
    };
    let bar = progress(None, "check");
    let mut lines = Lines::new(BufReader::with_capacity(READ_BUFFER, &mut input.first));
    let (mut events, mut errors) = (0, Errors::default());
    loop {
        let upcoming = lines.n + 1;
        let line = lines
            .next()
            .map_err(|e| Failure::usage(format!("{name}:{upcoming}: cannot read: {e}")))?;
        let Some((n, line)) = line else { break };
        if let Some(spool) = spool.as_mut() {
            spool.write_all(line).map_err(spool_failed)?;
        }
        if n % 4096 == 0 {
            bar.set_position(n as u64);
        }
        let Some(text) = content(line) else { continue };
        match check_line(text, publisher) {
            Ok(()) => events += 1,
            Err(why) => errors.add(|| format!("{name}:{n}: {}", why())),
        }
    }
    bar.finish_and_clear();
    if let Some(mut spool) = spool {
        spool.flush().map_err(spool_failed)?;
    }
    if errors.count > 0 {
        return Err(errors.into_failure(&name));
    }
    Ok(Checked {
        lines: lines.n,
        events,
    })
}

/// Whether one line is a valid event; the error is formatted only when asked for.
pub(super) fn check_line(
    text: &[u8],
    publisher: &Publisher,
) -> Result<(), Box<dyn FnOnce() -> String>> {
    match parse(text) {
        Err(e) => Err(Box::new(move || e.to_string())),
        Ok(Parsed { event, due }) => {
            let checked = match due {
                Some(_) => publisher.check_scheduled(&event),
                None => publisher.check(&event),
            };
            checked.map_err(|r| Box::new(move || format!("{r}{}", hint(&r))) as _)
        }
    }
}
