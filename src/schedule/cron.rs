//! When a recurring schedule fires (contract §13): its timetable — a cron expression in an
//! IANA time zone, or `every` interval — and which due ticks to publish after the scheduler
//! did not run for a while (`catch_up`). Pure functions over unix milliseconds, so every
//! rule, DST included, is tested with fixed instants.
//!
//! Cron and DST: croner matches the expression against wall-clock (civil) times only; this
//! module maps each matching wall-clock time to one instant in the zone, the way cron users
//! expect across a DST change:
//! - a wall-clock time that does not exist (the hour skipped in spring) fires once, at the
//!   first instant after the gap (every skipped match lands on that one instant);
//! - a wall-clock time that happens twice (the hour repeated in autumn) fires once, at its
//!   first occurrence.
//!
//! So the ticks are the matches mapped this way, in order, without repeats; the mapping
//! never goes backwards, which is what lets [`Timetable::ticks_desc`] walk back from "now".

use std::cmp::Ordering;

use croner::parser::{CronParser, Seconds, Year};
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// `catch_up = "all"` publishes at most this many missed ticks (the most recent ones).
pub const MAX_CATCH_UP: usize = 100;

/// A due tick at most this late counts as on time: it is fired whatever `catch_up` says
/// (a slow start, a Redis failover or a long pause of the process is not downtime). Later
/// than this, or with a later tick due as well, it was missed.
pub const ON_TIME_MS: i64 = 60_000;

/// How many wall-clock matches one search looks at before it gives up: a per-second cron
/// walks through at most 3,600 inside a repeated hour.
const SEARCH_LIMIT: usize = 20_000;

/// What a schedule does with the ticks it missed while no scheduler ran (`catch_up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Missed ticks are dropped.
    None,
    /// The most recent missed tick is published (the default: "one event").
    Last,
    /// Each missed tick is published, the most recent [`MAX_CATCH_UP`] of them.
    All,
}

impl CatchUp {
    /// The word in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
            CatchUp::All => "all",
        }
    }
}

/// When a schedule's ticks are.
#[derive(Debug, Clone)]
pub enum Timetable {
    /// A cron expression read in a time zone.
    Cron {
        /// The expression as written.
        text: String,
        /// The parsed expression.
        cron: Box<Cron>,
        /// The zone its wall-clock times are read in.
        tz: TimeZone,
    },
    /// Every multiple of this many milliseconds since the Unix epoch.
    Every {
        /// The interval, a whole number of seconds in ms.
        ms: i64,
    },
}

impl Timetable {
    /// `cron` (5 fields, or 6 with seconds first) in the IANA zone `tz`. The message says what
    /// is wrong, for a config error.
    pub fn cron(text: &str, tz: TimeZone) -> Result<Timetable, String> {
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "`{text}` has {fields} fields; write 5 (minute hour day month weekday) or 6 (second first)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("`{text}` is not a cron expression: {e}"))?;
        let timetable = Timetable::Cron {
            text: text.to_string(),
            cron: Box::new(cron),
            tz,
        };
        // A day that never comes (`0 0 30 2 *`) would never fire: say so now.
        if timetable.next_after(0).is_none() {
            return Err(format!("`{text}` never matches a date"));
        }
        Ok(timetable)
    }

    /// Every `ms` milliseconds, on the multiples since the epoch; whole seconds of at least
    /// one, since a tick's event id names it to the second.
    pub fn every(ms: i64, written: &str) -> Result<Timetable, String> {
        if ms < 1000 || ms % 1000 != 0 {
            return Err(format!(
                "`{written}` must be a whole number of seconds, at least 1s (an event's id names its tick to the second)"
            ));
        }
        Ok(Timetable::Every { ms })
    }

    /// The first tick after `t` (unix ms), if there is one.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Timetable::Every { ms } => t.div_euclid(*ms).checked_add(1)?.checked_mul(*ms),
            Timetable::Cron { cron, tz, .. } => {
                let mut civil = Civil(tz.to_datetime(timestamp(t)?));
                let mut inclusive = true;
                for _ in 0..SEARCH_LIMIT {
                    civil = cron.find_next_occurrence(&civil, inclusive).ok()?;
                    inclusive = false;
                    let tick = instant(tz, civil.0)?;
                    if tick > t {
                        return Some(tick);
                    }
                }
                None
            }
        }
    }

    /// The ticks in `(after, t]`, latest first, at most `limit` of them.
    pub fn ticks_desc(&self, t: i64, after: i64, limit: usize) -> Vec<i64> {
        let mut ticks = Vec::new();
        match self {
            Timetable::Every { ms } => {
                let mut tick = t.div_euclid(*ms) * ms;
                while tick > after && ticks.len() < limit {
                    ticks.push(tick);
                    tick -= ms;
                }
            }
            Timetable::Cron { cron, tz, .. } => {
                let Some(start) = timestamp(t) else {
                    return ticks;
                };
                let mut civil = Civil(latest_wall_clock(tz, start));
                let mut inclusive = true;
                for _ in 0..SEARCH_LIMIT {
                    let Ok(found) = cron.find_previous_occurrence(&civil, inclusive) else {
                        break;
                    };
                    civil = found;
                    inclusive = false;
                    let Some(tick) = instant(tz, civil.0) else {
                        break;
                    };
                    if tick <= after || ticks.len() >= limit {
                        break;
                    }
                    // Matches inside a repeated hour's later half map past `t`; matches in
                    // one gap map to one instant.
                    if tick <= t && ticks.last().is_none_or(|&last| tick < last) {
                        ticks.push(tick);
                    }
                }
            }
        }
        ticks
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: i64) -> Option<i64> {
        self.ticks_desc(t, i64::MIN, 1).first().copied()
    }

    /// How it is written: the cron expression, or `every <n>s`.
    pub fn describe(&self) -> String {
        match self {
            Timetable::Cron { text, .. } => text.clone(),
            Timetable::Every { ms } => format!("every {}s", ms / 1000),
        }
    }
}

/// The ticks to publish now, in order, for a schedule whose last fired tick (or start, for
/// one that never fired) is `cursor`, at Redis time `now`. The latest due tick is fired
/// when it is on time ([`ON_TIME_MS`]); the earlier ones were missed, and `catch_up` says
/// which of those go too.
pub fn due(timetable: &Timetable, cursor: i64, now: i64, catch_up: CatchUp) -> Vec<i64> {
    let recent = timetable.ticks_desc(now, cursor, MAX_CATCH_UP + 1);
    let Some(&latest) = recent.first() else {
        return Vec::new();
    };
    let on_time = now - latest <= ON_TIME_MS;
    let missed = if on_time { &recent[1..] } else { &recent[..] };
    let take = match catch_up {
        CatchUp::None => 0,
        CatchUp::Last => 1,
        CatchUp::All => MAX_CATCH_UP,
    };
    let mut fire: Vec<i64> = missed.iter().take(take).copied().collect();
    if on_time {
        fire.push(latest);
    }
    fire.sort_unstable();
    fire
}

/// `<name>@YYYY-MM-DDTHH:MM:SSZ`: the event id of `name`'s tick at `tick` (unix ms, UTC).
pub fn tick_id(name: &str, tick: i64) -> String {
    format!("{name}@{}", rfc3339(tick))
}

/// A tick as RFC 3339 in UTC, to the second.
pub fn rfc3339(tick: i64) -> String {
    timestamp(tick).map_or_else(
        || tick.to_string(),
        |ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn timestamp(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

/// The instant a matching wall-clock time `civil` fires at in `tz`: itself when it happens
/// once, its first occurrence when it happens twice, the end of the gap when it is skipped.
fn instant(tz: &TimeZone, civil: DateTime) -> Option<i64> {
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    let ts = match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
            ambiguous.earlier().ok()?
        }
        AmbiguousOffset::Gap { before, .. } => {
            // Read with the offset before the gap, the time lies after the transition; the
            // transition is the latest one at or before it.
            let past = before.to_timestamp(civil).ok()?;
            let probe = past.checked_add(SignedDuration::from_secs(1)).ok()?;
            tz.preceding(probe).next()?.timestamp()
        }
    };
    Some(ts.as_millisecond())
}

/// The latest wall-clock time whose first occurrence is at or before `t`: the clock at `t`,
/// except inside a repeated hour's second pass, where the whole first pass is already past
/// (then the clock as the offset before the change would show it).
fn latest_wall_clock(tz: &TimeZone, t: Timestamp) -> DateTime {
    let civil = tz.to_datetime(t);
    match tz.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Fold { before, .. } => before.to_datetime(t),
        _ => civil,
    }
}

/// A wall-clock time without a zone, as croner searches it: DST is this module's business.
#[derive(Debug, Clone, Copy)]
struct Civil(DateTime);

impl CronDateTime for Civil {
    fn to_civil(&self) -> CivilDateTime {
        let d = self.0;
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(i32::from(d.year()), d.month() as u32, d.day() as u32),
            CivilTime::from_parts_unchecked(d.hour() as u32, d.minute() as u32, d.second() as u32),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(self.0.weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(
        &self,
        civil: CivilDateTime,
    ) -> Result<Resolution<Self>, croner::errors::CronError> {
        let year =
            i16::try_from(civil.year()).map_err(|_| croner::errors::CronError::InvalidDate)?;
        DateTime::new(
            year,
            civil.month() as i8,
            civil.day() as i8,
            civil.hour() as i8,
            civil.minute() as i8,
            civil.second() as i8,
            0,
        )
        .map(|d| Resolution::Single(Civil(d)))
        .map_err(|_| croner::errors::CronError::InvalidDate)
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(Civil)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin(text: &str) -> Timetable {
        let tz = TimeZone::get("Europe/Berlin").expect("the tz database has Europe/Berlin");
        Timetable::cron(text, tz).expect("valid cron")
    }

    fn utc_ms(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("an RFC 3339 instant")
            .as_millisecond()
    }

    fn utc(ms: i64) -> String {
        rfc3339(ms)
    }

    /// The ticks after `from`, `n` of them, in UTC.
    fn next_n(t: &Timetable, from: &str, n: usize) -> Vec<String> {
        let mut at = utc_ms(from);
        (0..n)
            .map(|_| {
                at = t.next_after(at).expect("a next tick");
                utc(at)
            })
            .collect()
    }

    #[test]
    fn a_skipped_wall_clock_time_fires_once_just_after_the_gap() {
        // 2026-03-29, Berlin: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never happens.
        let t = berlin("30 2 * * *");
        assert_eq!(
            next_n(&t, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, just after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
        // Every quarter hour: the four skipped quarters are one tick at 03:00 CEST, the
        // same instant as the 03:00 match.
        let q = berlin("*/15 * * * *");
        assert_eq!(
            next_n(&q, "2026-03-29T00:30:00Z", 4),
            [
                "2026-03-29T00:45:00Z", // 01:45 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST
                "2026-03-29T01:15:00Z",
                "2026-03-29T01:30:00Z",
            ]
        );
        // An offset minute: the gap's matches (02:05…02:55) still fire once, at 03:00.
        let odd = berlin("5-55/10 * * * *");
        assert_eq!(
            next_n(&odd, "2026-03-29T00:50:00Z", 3),
            [
                "2026-03-29T00:55:00Z", // 01:55 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST: the skipped 02:05…02:55, once
                "2026-03-29T01:05:00Z", // 03:05 CEST
            ]
        );
    }

    #[test]
    fn a_repeated_wall_clock_time_fires_once_at_its_first_occurrence() {
        // 2026-10-25, Berlin: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00–02:59 twice.
        let t = berlin("30 2 * * *");
        assert_eq!(
            next_n(&t, "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first 02:30
                "2026-10-26T01:30:00Z", // 02:30 CET the next day; the second 02:30 is skipped
                "2026-10-27T01:30:00Z",
            ]
        );
        // From inside the second pass, the next tick is after it.
        assert_eq!(
            next_n(&t, "2026-10-25T01:40:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
        // Every 30 minutes: 02:00 and 02:30 fire in the first pass only.
        let h = berlin("0,30 * * * *");
        assert_eq!(
            next_n(&h, "2026-10-24T23:45:00Z", 5),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST
                "2026-10-25T02:00:00Z", // 03:00 CET (02:00 and 02:30 CET are repeats)
                "2026-10-25T02:30:00Z",
                "2026-10-25T03:00:00Z",
            ]
        );
    }

    #[test]
    fn walking_back_across_dst_gives_the_same_ticks_as_walking_forward() {
        for (text, from, to) in [
            ("30 2 * * *", "2026-03-26T00:00:00Z", "2026-04-02T00:00:00Z"),
            (
                "*/20 * * * *",
                "2026-03-28T22:00:00Z",
                "2026-03-29T03:00:00Z",
            ),
            ("30 2 * * *", "2026-10-22T00:00:00Z", "2026-10-29T00:00:00Z"),
            (
                "*/20 * * * *",
                "2026-10-24T22:00:00Z",
                "2026-10-25T04:00:00Z",
            ),
            (
                "15 * * * * *",
                "2026-10-25T00:58:00Z",
                "2026-10-25T02:02:00Z",
            ),
        ] {
            let t = berlin(text);
            let (from, to) = (utc_ms(from), utc_ms(to));
            let mut forward = Vec::new();
            let mut at = from;
            while let Some(next) = t.next_after(at).filter(|&n| n <= to) {
                forward.push(next);
                at = next;
            }
            let mut backward = t.ticks_desc(to, from, 10_000);
            backward.reverse();
            assert_eq!(
                backward.iter().map(|&m| utc(m)).collect::<Vec<_>>(),
                forward.iter().map(|&m| utc(m)).collect::<Vec<_>>(),
                "{text}"
            );
        }
        // From inside the repeated hour's second pass, the latest tick is the first pass's.
        let t = berlin("30 2 * * *");
        assert_eq!(
            t.latest_at_or_before(utc_ms("2026-10-25T01:40:00Z"))
                .map(utc),
            Some("2026-10-25T00:30:00Z".into())
        );
    }

    #[test]
    fn utc_is_the_default_reading_and_six_fields_start_with_seconds() {
        let t = Timetable::cron("*/15 * * * * *", TimeZone::UTC).expect("valid");
        assert_eq!(
            next_n(&t, "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-01T00:00:15Z",
                "2026-01-01T00:00:30Z",
                "2026-01-01T00:00:45Z"
            ]
        );
        let five = Timetable::cron("0 9 * * MON", TimeZone::UTC).expect("valid");
        assert_eq!(
            next_n(&five, "2026-01-01T00:00:00Z", 1),
            ["2026-01-05T09:00:00Z"]
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let err = |text: &str| Timetable::cron(text, TimeZone::UTC).expect_err(text);
        assert!(
            err("* * * *").contains("has 4 fields"),
            "{}",
            err("* * * *")
        );
        assert!(err("0 0 0 * * * *").contains("has 7 fields"));
        assert!(err("61 * * * *").contains("is not a cron expression"));
        assert!(err("0 0 30 2 *").contains("never matches"));
        assert!(Timetable::every(500, "500ms").is_err());
        assert!(Timetable::every(1500, "1.5s").is_err());
        assert!(Timetable::every(90_000, "1.5m").is_ok());
    }

    #[test]
    fn every_ticks_on_the_multiples_since_the_epoch() {
        let t = Timetable::every(15 * 60_000, "15m").expect("valid");
        assert_eq!(
            next_n(&t, "2026-01-01T10:07:12Z", 2),
            ["2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z"]
        );
        assert_eq!(
            t.ticks_desc(
                utc_ms("2026-01-01T10:30:00Z"),
                utc_ms("2026-01-01T10:00:00Z"),
                5
            )
            .into_iter()
            .map(utc)
            .collect::<Vec<_>>(),
            ["2026-01-01T10:30:00Z", "2026-01-01T10:15:00Z"]
        );
    }

    #[test]
    fn catch_up_decides_which_missed_ticks_fire() {
        let t = Timetable::every(1000, "1s").expect("valid");
        // Last fired at 10 s; now 13.4 s: 11 and 12 were missed, 13 is on time.
        let (cursor, now) = (10_000, 13_400);
        assert_eq!(due(&t, cursor, now, CatchUp::None), [13_000]);
        assert_eq!(due(&t, cursor, now, CatchUp::Last), [12_000, 13_000]);
        assert_eq!(due(&t, cursor, now, CatchUp::All), [11_000, 12_000, 13_000]);
        // Nothing due.
        assert!(due(&t, 13_000, 13_400, CatchUp::All).is_empty());
        // Down for 500 ticks: `all` gives the latest 100 missed and the on-time one.
        let fired = due(&t, 0, 500_400, CatchUp::All);
        assert_eq!(fired.len(), MAX_CATCH_UP + 1);
        assert_eq!(fired.first(), Some(&400_000));
        assert_eq!(fired.last(), Some(&500_000));
        // An hourly tick more than a minute late is missed, not on time.
        let hourly = Timetable::every(3_600_000, "1h").expect("valid");
        assert!(due(&hourly, 0, 3_600_000 + 61_000, CatchUp::None).is_empty());
        assert_eq!(
            due(&hourly, 0, 3_600_000 + 59_000, CatchUp::None),
            [3_600_000]
        );
    }

    #[test]
    fn tick_ids_name_the_tick_in_utc_to_the_second() {
        assert_eq!(
            tick_id("low-stock-check", utc_ms("2026-03-29T01:00:00Z")),
            "low-stock-check@2026-03-29T01:00:00Z"
        );
    }
}
