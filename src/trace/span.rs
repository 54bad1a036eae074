//! A finished delivery span and its OTLP encoding: the protobuf of an
//! `ExportTraceServiceRequest` (opentelemetry-proto's `collector/trace/v1`), written by hand.
//! The message is small and fixed (one resource, one scope, spans with a handful of
//! attributes), so a 60-line writer replaces prost, its code generation and the
//! OpenTelemetry SDK; the integration tests decode what it writes with opentelemetry-proto.

use std::sync::Arc;

use crate::vocab::StreamId;

/// `Span.SpanKind` CONSUMER.
const KIND_CONSUMER: u64 = 5;
/// `Status.StatusCode` ERROR.
const STATUS_ERROR: u64 = 2;

/// One delivery attempt, ended: everything the exporter writes, owned, so the background
/// task encodes it off the hot path.
#[derive(Debug)]
pub struct Finished {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The entry's span (its `traceparent`'s parent id); `None` for a new root.
    pub parent: Option<[u8; 8]>,
    pub tracestate: Option<String>,
    pub flags: u8,
    pub pool: Arc<str>,
    pub stream: String,
    pub entry_id: StreamId,
    pub attempt: u64,
    /// `weir.outcome`: the settlement's label (`processed`, `retry`, `rejected`,
    /// `dead_lettered`).
    pub outcome: &'static str,
    /// The failure, already truncated like the log line's: the status message.
    pub error: Option<String>,
    /// Why it was dead-lettered: the `dead_lettered` event's `weir.dlq_reason`.
    pub dead_lettered: Option<&'static str>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The request body posted to `<endpoint>/v1/traces`: `spans` under one resource named
/// `service`.
pub fn encode_request(service: &str, spans: &[Finished]) -> Vec<u8> {
    let mut scope_spans = Vec::with_capacity(spans.len() * 256);
    // InstrumentationScope { name = 1, version = 2 }
    let mut scope = Vec::new();
    string(&mut scope, 1, "weir");
    string(&mut scope, 2, env!("CARGO_PKG_VERSION"));
    bytes(&mut scope_spans, 1, &scope);
    for span in spans {
        bytes(&mut scope_spans, 2, &encode_span(span));
    }
    // Resource { attributes = 1 }
    let mut resource = Vec::new();
    bytes(&mut resource, 1, &attribute_str("service.name", service));
    // ResourceSpans { resource = 1, scope_spans = 2 }
    let mut resource_spans = Vec::with_capacity(scope_spans.len() + 64);
    bytes(&mut resource_spans, 1, &resource);
    bytes(&mut resource_spans, 2, &scope_spans);
    // ExportTraceServiceRequest { resource_spans = 1 }
    let mut request = Vec::with_capacity(resource_spans.len() + 8);
    bytes(&mut request, 1, &resource_spans);
    request
}

/// `Span`, field numbers of opentelemetry/proto/trace/v1/trace.proto.
fn encode_span(s: &Finished) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    bytes(&mut out, 1, &s.trace_id);
    bytes(&mut out, 2, &s.span_id);
    if let Some(state) = &s.tracestate {
        string(&mut out, 3, state);
    }
    if let Some(parent) = &s.parent {
        bytes(&mut out, 4, parent);
    }
    string(&mut out, 5, &format!("{} process", s.pool));
    varint_field(&mut out, 6, KIND_CONSUMER);
    fixed64(&mut out, 7, s.start_ns);
    fixed64(&mut out, 8, s.end_ns);
    let attributes = [
        attribute_str("messaging.system", "redis"),
        attribute_str("messaging.destination.name", &s.stream),
        attribute_str("messaging.consumer.group.name", &s.pool),
        attribute_str("messaging.message.id", &s.entry_id.to_string()),
        attribute_str("messaging.operation.type", "process"),
        attribute_int("weir.attempt", s.attempt as i64),
        attribute_str("weir.outcome", s.outcome),
    ];
    for a in &attributes {
        bytes(&mut out, 9, a);
    }
    if let Some(reason) = s.dead_lettered {
        // Span.Event { time_unix_nano = 1, name = 2, attributes = 3 }
        let mut event = Vec::new();
        fixed64(&mut event, 1, s.end_ns);
        string(&mut event, 2, "dead_lettered");
        bytes(&mut event, 3, &attribute_str("weir.dlq_reason", reason));
        bytes(&mut out, 11, &event);
    }
    if let Some(error) = &s.error {
        // Status { message = 2, code = 3 }
        let mut status = Vec::new();
        string(&mut status, 2, error);
        varint_field(&mut status, 3, STATUS_ERROR);
        bytes(&mut out, 15, &status);
    }
    // flags = 16 (fixed32): the W3C trace flags in the low byte.
    key(&mut out, 16, 5);
    out.extend_from_slice(&u32::from(s.flags).to_le_bytes());
    out
}

/// `KeyValue { key = 1, value = 2: AnyValue { string_value = 1 } }`.
fn attribute_str(name: &str, value: &str) -> Vec<u8> {
    let mut any = Vec::with_capacity(value.len() + 2);
    string(&mut any, 1, value);
    let mut kv = Vec::with_capacity(name.len() + any.len() + 4);
    string(&mut kv, 1, name);
    bytes(&mut kv, 2, &any);
    kv
}

/// `KeyValue { key = 1, value = 2: AnyValue { int_value = 3 } }`.
fn attribute_int(name: &str, value: i64) -> Vec<u8> {
    let mut any = Vec::with_capacity(11);
    varint_field(&mut any, 3, value as u64);
    let mut kv = Vec::with_capacity(name.len() + any.len() + 4);
    string(&mut kv, 1, name);
    bytes(&mut kv, 2, &any);
    kv
}

/// A field's key: its number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5
/// fixed32).
fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, 0);
    varint(out, value);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn string(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes(out, field, value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut out = Vec::new();
        varint(&mut out, 1);
        varint(&mut out, 300);
        varint(&mut out, u64::MAX);
        assert_eq!(&out[..3], &[0x01, 0xac, 0x02]);
        assert_eq!(out.len(), 3 + 10);
    }

    #[test]
    fn a_span_carries_its_ids_name_and_kind() {
        let span = Finished {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent: Some([3; 8]),
            tracestate: None,
            flags: 1,
            pool: "billing".into(),
            stream: "events".into(),
            entry_id: StreamId { ms: 1, seq: 2 },
            attempt: 1,
            outcome: "processed",
            error: None,
            dead_lettered: None,
            start_ns: 1,
            end_ns: 2,
        };
        let encoded = encode_span(&span);
        // trace_id: field 1, length 16
        assert_eq!(&encoded[..2], &[0x0a, 16]);
        assert_eq!(&encoded[2..18], &[7; 16]);
        let name = b"billing process";
        assert!(encoded.windows(name.len()).any(|w| w == name));
        // kind: field 6 varint 5
        assert!(encoded.windows(2).any(|w| w == [0x30, 5]));
    }
}
