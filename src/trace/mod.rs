//! Contract §15's trace context: the W3C `traceparent`/`tracestate` an entry carries,
//! continued into one span per delivery attempt, handed on to the handler, and exported over
//! OTLP/HTTP when `[tracing] otlp_endpoint` is set.
//!
//! The consumer calls it through [`Tracer::start`] (before the handler) and
//! [`Tracer::finish`] (once the outcome is settled). With export off and no `traceparent` on
//! the entry, `start` is one scan of the entry's fields and allocates nothing; ids are drawn
//! only when a span is exported.
//!
//! - `context.rs`: parsing and writing `traceparent`, new ids, ratio sampling (pure).
//! - `span.rs`: a finished span and the protobuf of the OTLP request (written by hand).
//! - `export.rs`: the bounded queue and the background task that posts batches.

mod context;
mod export;
mod span;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use context::{SAMPLED, TraceContext, parse_traceparent, valid_tracestate};
pub use export::Exporter;
pub use span::{Finished, encode_request};

use crate::config::TracingConfig;
use crate::vocab::{StreamId, TRACEPARENT, TRACESTATE};

/// The engine's tracing: which context a delivery gets, and where its span goes. One per
/// engine, shared by every pool.
#[derive(Debug, Default)]
pub struct Tracer {
    /// Set when spans are exported.
    export: Option<Export>,
}

#[derive(Debug)]
struct Export {
    spans: tokio::sync::mpsc::Sender<Finished>,
    sample_ratio: f64,
}

/// A delivery's span, started: what [`Tracer::finish`] needs besides the outcome.
#[derive(Debug)]
pub struct Started {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    flags: u8,
    tracestate: Option<String>,
    start_ns: u64,
}

/// How a delivery ended, for its span.
#[derive(Debug)]
pub struct Ending<'a> {
    pub pool: &'a Arc<str>,
    pub stream: &'a str,
    pub entry_id: StreamId,
    pub attempt: u64,
    /// The settlement's label: `weir.outcome`.
    pub outcome: &'static str,
    /// The failure's text, if it failed (truncated here like the log line's).
    pub error: Option<&'a str>,
    /// The DLQ reason, if it was dead-lettered.
    pub dead_lettered: Option<&'static str>,
}

/// Longest status message exported: the same cap as the `entry settled` log line's error.
const ERROR_MAX: usize = 200;

impl Tracer {
    /// No export: handlers get the entry's own context.
    pub fn off() -> Tracer {
        Tracer::default()
    }

    /// The tracer for `config`, and the export task to spawn when export is on (it ends when
    /// `stop` is cancelled, after one last post of what is queued).
    pub fn new(
        config: &TracingConfig,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<(Tracer, Option<Exporter>), String> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok((Tracer::off(), None));
        };
        let (spans, exporter) = Exporter::new(endpoint, &config.service_name, stop)?;
        let tracer = Tracer {
            export: Some(Export {
                spans,
                sample_ratio: config.sample_ratio,
            }),
        };
        Ok((tracer, Some(exporter)))
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.export.is_some()
    }

    /// The context a delivery of an entry with `fields` hands its handler, and its span when
    /// one is exported. Export off: the entry's own valid `traceparent`/`tracestate`, or
    /// nothing (no allocation then). Export on: a new span, the child of the entry's context
    /// or a new root, recorded when sampled.
    pub fn start(&self, fields: &[(String, String)]) -> (Option<TraceContext>, Option<Started>) {
        let parent = entry_context(fields);
        let Some(export) = &self.export else {
            return (parent, None);
        };
        let (trace_id, parent_id, parent_sampled, tracestate) = match parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.is_sampled(), p.tracestate),
            None => (context::new_trace_id(), None, true, None),
        };
        let sampled = parent_sampled && context::ratio_samples(&trace_id, export.sample_ratio);
        let flags = if sampled { SAMPLED } else { 0 };
        let handed = TraceContext {
            trace_id,
            span_id: context::new_span_id(),
            flags,
            tracestate,
        };
        let started = sampled.then(|| Started {
            trace_id,
            span_id: handed.span_id,
            parent: parent_id,
            flags,
            tracestate: handed.tracestate.clone(),
            start_ns: now_ns(),
        });
        (Some(handed), started)
    }

    /// Ends a delivery's span and queues it for export. Never waits: when the queue is full
    /// (the collector is down or slow) the span is dropped and counted.
    pub fn finish(&self, started: Started, ending: Ending<'_>) {
        let Some(export) = &self.export else {
            return;
        };
        let span = Finished {
            trace_id: started.trace_id,
            span_id: started.span_id,
            parent: started.parent,
            tracestate: started.tracestate,
            flags: started.flags,
            pool: ending.pool.clone(),
            stream: ending.stream.to_string(),
            entry_id: ending.entry_id,
            attempt: ending.attempt,
            outcome: ending.outcome,
            error: ending
                .error
                .map(|e| crate::vocab::truncate(e, ERROR_MAX).to_string()),
            dead_lettered: ending.dead_lettered,
            start_ns: started.start_ns,
            end_ns: now_ns().max(started.start_ns),
        };
        if export.spans.try_send(span).is_err() {
            crate::metrics::trace_spans_dropped(1);
        }
    }
}

/// The entry's valid context, if it has one: `traceparent` parsed (an invalid one is absent)
/// with its `tracestate`. A scan of the field names; allocates only when there is one.
fn entry_context(fields: &[(String, String)]) -> Option<TraceContext> {
    let value = fields.iter().find(|(n, _)| n == TRACEPARENT)?;
    let (trace_id, span_id, flags) = parse_traceparent(&value.1)?;
    let tracestate = fields
        .iter()
        .find(|(n, v)| n == TRACESTATE && valid_tracestate(v) && !v.is_empty())
        .map(|(_, v)| v.clone());
    Some(TraceContext {
        trace_id,
        span_id,
        flags,
        tracestate,
    })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn exporting(ratio: f64) -> (Tracer, tokio::sync::mpsc::Receiver<Finished>) {
        let (spans, rx) = tokio::sync::mpsc::channel(8);
        let tracer = Tracer {
            export: Some(Export {
                spans,
                sample_ratio: ratio,
            }),
        };
        (tracer, rx)
    }

    #[test]
    fn export_off_hands_on_the_entrys_context_unchanged() {
        let tracer = Tracer::off();
        let f = fields(&[("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")]);
        let (context, started) = tracer.start(&f);
        let context = context.expect("the entry's context");
        assert_eq!(context.traceparent(), PARENT);
        assert_eq!(context.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert!(started.is_none());
        // No traceparent, or an invalid one: nothing.
        assert_eq!(tracer.start(&fields(&[("tenant", "a")])).0, None);
        assert_eq!(tracer.start(&fields(&[("traceparent", "00-zz")])).0, None);
    }

    #[test]
    fn export_on_makes_a_child_span_of_the_entrys_context() {
        let (tracer, _rx) = exporting(1.0);
        let (context, started) = tracer.start(&fields(&[("traceparent", PARENT)]));
        let context = context.expect("a context");
        let started = started.expect("sampled");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(context.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(started.span_id, context.span_id);
        assert_eq!(started.parent, parse_traceparent(PARENT).map(|p| p.1));
        assert!(context.is_sampled());
    }

    #[test]
    fn export_on_without_a_context_starts_a_root_sampled_by_ratio() {
        let (tracer, _rx) = exporting(1.0);
        let (context, started) = tracer.start(&[]);
        assert!(context.is_some());
        assert_eq!(started.expect("sampled").parent, None);
        let (never, _rx) = exporting(0.0);
        let (context, started) = never.start(&[]);
        assert_eq!(context.expect("still propagated").flags, 0);
        assert!(started.is_none());
        // A parent that is not sampled is respected.
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(
            tracer
                .start(&fields(&[("traceparent", unsampled)]))
                .1
                .is_none()
        );
    }

    #[test]
    fn a_full_queue_drops_and_never_waits() {
        let (tracer, mut rx) = exporting(1.0);
        let pool: Arc<str> = "p".into();
        for _ in 0..20 {
            let (_, started) = tracer.start(&[]);
            tracer.finish(
                started.expect("sampled"),
                Ending {
                    pool: &pool,
                    stream: "s",
                    entry_id: StreamId::ZERO,
                    attempt: 1,
                    outcome: "retry",
                    error: Some(&"x".repeat(1000)),
                    dead_lettered: None,
                },
            );
        }
        let mut queued = 0;
        while let Ok(span) = rx.try_recv() {
            assert_eq!(span.error.as_deref().map(str::len), Some(ERROR_MAX));
            queued += 1;
        }
        assert_eq!(queued, 8, "the queue's capacity, the rest dropped");
    }
}
