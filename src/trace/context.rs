//! W3C trace context (<https://www.w3.org/TR/trace-context/>): the `traceparent` an entry
//! carries, parsed and written back, and the ids of new spans. Pure: no I/O, no clock.

use std::fmt::Write as _;

/// The `sampled` bit of `trace-flags`.
pub const SAMPLED: u8 = 0x01;

/// A span's place in a trace, as a handler sees it: the trace it belongs to, its own id, the
/// flags and the vendors' `tracestate`. [`TraceContext::traceparent`] writes it as the
/// `traceparent` header/field a downstream call should carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, never all zero: the span the handler's own spans should be children of.
    pub span_id: [u8; 8],
    /// `trace-flags`: bit 0 is `sampled`.
    pub flags: u8,
    /// The entry's `tracestate` field, passed on unchanged (`None` when it had none).
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context a `traceparent` (and optional `tracestate`) names; `None` when the
    /// `traceparent` is not a valid W3C one. An invalid `tracestate` is left out.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let (trace_id, span_id, flags) = parse_traceparent(traceparent)?;
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && valid_tracestate(s))
            .map(str::to_owned);
        Some(TraceContext {
            trace_id,
            span_id,
            flags,
            tracestate,
        })
    }

    /// The `traceparent` value: `00-<trace id>-<span id>-<flags>`, lowercase hex.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        hex(&mut out, &self.trace_id);
        out.push('-');
        hex(&mut out, &self.span_id);
        let _ = write!(out, "-{:02x}", self.flags);
        out
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id in hex (32 characters), as trace backends show it.
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        hex(&mut out, &self.trace_id);
        out
    }

    /// The span id in hex (16 characters).
    pub fn span_id_hex(&self) -> String {
        let mut out = String::with_capacity(16);
        hex(&mut out, &self.span_id);
        out
    }
}

/// The parts of a valid `traceparent`: trace id, parent span id, flags. `None` for anything
/// else (wrong length or version, upper-case or non-hex digits, an all-zero id): an invalid
/// value is treated as absent, never as an error of the entry.
pub fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = value.trim();
    let bytes = value.as_bytes();
    // Version 00 is exactly 55 characters; a later version may append fields after a `-`.
    let version = from_hex::<1>(bytes.get(0..2)?)?[0];
    let fits = match version {
        0x00 => bytes.len() == 55,
        0xff => false,
        _ => bytes.len() == 55 || (bytes.len() > 55 && bytes[55] == b'-'),
    };
    if !fits || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = from_hex::<16>(&bytes[3..35])?;
    let span_id = from_hex::<8>(&bytes[36..52])?;
    let flags = from_hex::<1>(&bytes[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags))
}

/// A `tracestate` worth passing on: at most 512 characters of printable ASCII (the W3C
/// limit), else dropped.
pub fn valid_tracestate(value: &str) -> bool {
    value.len() <= 512 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A new random trace id (never all zero).
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A new random span id (never all zero).
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// Whether a trace is sampled at `ratio` (0..=1): decided by the trace id alone, like
/// OpenTelemetry's `TraceIdRatioBased`, so every service that samples the same trace at the
/// same ratio agrees.
pub fn ratio_samples(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let value = u64::from_be_bytes(low) >> 1;
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    value < bound
}

fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
}

/// `N` bytes from `2 * N` lowercase hex digits (the W3C format allows no upper case).
fn from_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_a_valid_traceparent_and_writes_it_back() {
        let (trace_id, span_id, flags) = parse_traceparent(VALID).expect("valid");
        assert_eq!(trace_id[0], 0x4b);
        assert_eq!(span_id[7], 0xb7);
        assert_eq!(flags, 1);
        let context = TraceContext {
            trace_id,
            span_id,
            flags,
            tracestate: None,
        };
        assert_eq!(context.traceparent(), VALID);
        assert!(context.is_sampled());
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "00f067aa0ba902b7");
    }

    #[test]
    fn invalid_traceparents_are_absent() {
        for bad in [
            "",
            "00",
            "garbage",
            // all-zero trace id, all-zero parent id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // upper case, wrong separators, too long for version 00, version ff
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
        // A later version may carry more fields after a dash.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(parse_traceparent(future).is_some());
    }

    #[test]
    fn tracestate_is_kept_only_when_printable_and_bounded() {
        assert!(valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert!(!valid_tracestate("a=b\nc=d"));
        assert!(!valid_tracestate(&"x".repeat(513)));
    }

    #[test]
    fn new_ids_are_random_and_never_zero() {
        assert_ne!(new_trace_id(), [0; 16]);
        assert_ne!(new_span_id(), [0; 8]);
        assert_ne!(new_span_id(), new_span_id());
    }

    #[test]
    fn ratio_sampling_follows_the_trace_id() {
        let ids: Vec<[u8; 16]> = (0..10_000).map(|_| new_trace_id()).collect();
        assert!(ids.iter().all(|id| ratio_samples(id, 1.0)));
        assert!(ids.iter().all(|id| !ratio_samples(id, 0.0)));
        let kept = ids.iter().filter(|id| ratio_samples(id, 0.25)).count();
        assert!((2_000..3_000).contains(&kept), "{kept} of 10000 at 0.25");
        // The same trace id gets the same answer every time.
        assert_eq!(ratio_samples(&ids[0], 0.5), ratio_samples(&ids[0], 0.5));
    }
}
