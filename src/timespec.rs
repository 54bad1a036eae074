//! TIME arguments of the CLI: RFC 3339 (`2025-12-01T00:00:00Z`, `2026-11-22T10:00:00+02:00`;
//! without an offset, UTC), unix milliseconds, a stream ID (`1700000000000-3`), `now`, or
//! relative to now (`-2h`, `-15m`, `-30s`, `-1d`). Ranges include both ends, so a bound
//! without a sequence covers its whole millisecond.

use std::time::Duration;

use crate::clock;
use crate::error::InputError;
use crate::vocab::StreamId;

/// Which end of a range a TIME is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Since,
    Until,
}

fn relative(text: &str) -> Option<Duration> {
    let body = text.strip_prefix('-')?;
    let split = body.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = body.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Parses `text` as the `bound` end of a range, relative times against `now_ms`.
pub fn parse_at(text: &str, bound: Bound, now_ms: u64) -> Result<StreamId, String> {
    let text = text.trim();
    let whole_ms = |ms: u64| match bound {
        Bound::Since => StreamId { ms, seq: 0 },
        Bound::Until => StreamId { ms, seq: u64::MAX },
    };
    if let Some(ago) = relative(text) {
        return Ok(whole_ms(now_ms.saturating_sub(ago.as_millis() as u64)));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(whole_ms)
            .map_err(|_| format!("`{text}` is too large for unix milliseconds"));
    }
    if let Some((ms, seq)) = text.split_once('-')
        && !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit())
    {
        return StreamId::parse(text).ok_or_else(|| format!("`{text}` is not a valid stream ID"));
    }
    if text == "now" {
        return Ok(whole_ms(now_ms));
    }
    let ms = rfc3339_ms(text).ok_or_else(|| {
        format!(
            "`{text}` is not a time: use RFC 3339 (2025-12-01T00:00:00Z, 2026-11-22T10:00:00+02:00), unix milliseconds, a stream ID (1700000000000-0), now, or a relative time (-2h, -15m, -30s, -1d)"
        )
    })?;
    // A time with a fraction names one millisecond; without, the whole second.
    Ok(match (bound, text.contains('.')) {
        (Bound::Until, false) => StreamId {
            ms: ms + 999,
            seq: u64::MAX,
        },
        _ => whole_ms(ms),
    })
}

/// RFC 3339 (with `Z` or an offset; without one, UTC) as unix milliseconds, parsed by jiff.
/// Times before 1970 are not stream times.
fn rfc3339_ms(text: &str) -> Option<u64> {
    let timestamp = text.parse::<jiff::Timestamp>().ok().or_else(|| {
        let civil = text.parse::<jiff::civil::DateTime>().ok()?;
        jiff::tz::Offset::UTC.to_timestamp(civil).ok()
    })?;
    u64::try_from(timestamp.as_millisecond()).ok()
}

/// A DURATION (contract §13: `--delay`, `every`, `per`, NDJSON `delay`): a decimal number
/// and a unit, `ms`, `s`, `m`, `h` or `d` (`1.5s`, `15m`, `250ms`). Whole milliseconds;
/// a fraction below one is dropped.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a duration: use a number and a unit, ms, s, m, h or d (250ms, 1.5s, 15m, 2h, 1d)"
        )
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let well_formed = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.matches('.').count() <= 1;
    let n: f64 = number
        .parse()
        .ok()
        .filter(|_| well_formed)
        .ok_or_else(bad)?;
    let unit_ms: f64 = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(bad()),
    };
    let ms = n * unit_ms;
    // Far beyond any schedule (~270 years), and exact in the f64 a Redis score is.
    if !ms.is_finite() || ms > 100_000.0 * 86_400_000.0 {
        return Err(format!("`{text}` is too long a duration (at most 100000d)"));
    }
    Ok(Duration::from_millis(ms as u64))
}

/// A due time (`--at`, NDJSON `at`) in unix ms: a TIME as the CLI reads it (RFC 3339,
/// unix ms, a stream ID's time, `now`, `-2h`); a time in the past is due at once.
pub fn due_at(text: &str) -> Result<u64, String> {
    parse(text, Bound::Since).map(|id| id.ms)
}

pub fn parse(text: &str, bound: Bound) -> Result<StreamId, String> {
    parse_at(text, bound, clock::now_ms())
}

/// Both ends of a range, checked to be in order. Errors name the end at fault (`since`,
/// `until`) for the caller's error report.
pub fn range(since: Option<&str>, until: Option<&str>) -> Result<(StreamId, StreamId), InputError> {
    let start = since
        .map(|s| parse(s, Bound::Since))
        .transpose()
        .map_err(|e| InputError::new("since", e))?
        .unwrap_or(StreamId::ZERO);
    let end = until
        .map(|s| parse(s, Bound::Until))
        .transpose()
        .map_err(|e| InputError::new("until", e))?
        .unwrap_or(StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        });
    if start > end {
        return Err(InputError::new(
            "since",
            format!("--since ({start}) is after --until ({end})"),
        ));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Bound::*;

    #[test]
    fn parses_every_form_inclusively() {
        let now = 1_700_000_000_000;
        assert_eq!(
            parse_at("1700000000123", Since, now),
            Ok(StreamId {
                ms: 1_700_000_000_123,
                seq: 0
            })
        );
        assert_eq!(
            parse_at("1700000000123", Until, now),
            Ok(StreamId {
                ms: 1_700_000_000_123,
                seq: u64::MAX
            })
        );
        assert_eq!(
            parse_at("1700000000123-7", Until, now),
            Ok(StreamId {
                ms: 1_700_000_000_123,
                seq: 7
            })
        );
        assert_eq!(
            parse_at("-2h", Since, now),
            Ok(StreamId {
                ms: now - 7_200_000,
                seq: 0
            })
        );
        assert_eq!(
            parse_at("-15m", Since, now),
            Ok(StreamId {
                ms: now - 900_000,
                seq: 0
            })
        );
        assert_eq!(
            parse_at("2023-11-14T22:13:20Z", Since, now),
            Ok(StreamId {
                ms: 1_700_000_000_000,
                seq: 0
            })
        );
        assert_eq!(
            parse_at("2023-11-14T22:13:20Z", Until, now),
            Ok(StreamId {
                ms: 1_700_000_000_999,
                seq: u64::MAX
            })
        );
        assert_eq!(
            parse_at("2023-11-14T22:13:20.250Z", Until, now),
            Ok(StreamId {
                ms: 1_700_000_000_250,
                seq: u64::MAX
            })
        );
        assert_eq!(
            parse_at("2023-11-15T00:13:20+02:00", Since, now),
            parse_at("2023-11-14T22:13:20Z", Since, now)
        );
        assert_eq!(
            parse_at("2023-11-14T22:13:20", Until, now),
            parse_at("2023-11-14T22:13:20Z", Until, now)
        );
        assert_eq!(
            parse_at("now", Until, now),
            Ok(StreamId {
                ms: now,
                seq: u64::MAX
            })
        );
        for bad in [
            "1969-12-31T23:59:59Z",
            "2023-13-14T22:13:20Z",
            "",
            "yesterday",
            "-2x",
            "12-",
            "99999999999999999999999",
        ] {
            assert!(parse_at(bad, Since, now).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations_are_a_decimal_and_a_unit() {
        let ms = |t: &str| duration(t).map(|d| d.as_millis() as u64);
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("15m"), Ok(900_000));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(ms(" 30s "), Ok(30_000));
        for bad in [
            "", "s", "10", "1.s", ".5s", "1..5s", "-1s", "1e3s", "5 s", "5sec", "1.2.3m", "100001d",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(duration("5x").unwrap_err().contains("ms, s, m, h or d"));
    }

    #[test]
    fn a_range_must_be_in_order() {
        assert!(range(Some("2000"), Some("1000")).is_err());
        assert!(range(Some("1000"), Some("1000")).is_ok());
        assert_eq!(range(None, None).map(|r| r.0).ok(), Some(StreamId::ZERO));
        assert_eq!(
            range(Some("soon"), None).map_err(|e| e.field).err(),
            Some("since")
        );
        assert_eq!(
            range(None, Some("later")).map_err(|e| e.field).err(),
            Some("until")
        );
    }
}
