//! `[[schedules]]` (contract §13): each recurring schedule's timetable, zone, event and
//! `catch_up`. Every error is keyed `schedules[i].<key>` and names the schedule, so an
//! operator finds it in a file with many. Whether `data` fits the schemas is checked when
//! the engine starts (the schemas are compiled there): `schedule::recurring::check_events`.

use jiff::tz::TimeZone;

use super::invalid;
use crate::config::model::{PoolConfig, ScheduleConfig};
use crate::config::raw::RawSchedule;
use crate::error::ConfigError;
use crate::schedule::cron::{CatchUp, Timetable};

/// The longest schedule name: it is part of a Redis key, an event id and a URL path.
const MAX_NAME: usize = 100;

/// Every schedule, in file order; names unique, each type taken by some pool.
pub(super) fn validate(
    raw: &[RawSchedule],
    pools: &[PoolConfig],
) -> Result<Vec<ScheduleConfig>, ConfigError> {
    let mut schedules: Vec<ScheduleConfig> = Vec::with_capacity(raw.len());
    for (index, raw) in raw.iter().enumerate() {
        let schedule = raw.validate(index, pools)?;
        if schedules.iter().any(|s| s.name == schedule.name) {
            return Err(invalid(
                format!("schedules[{index}].name"),
                format!("schedule `{}` is defined twice", schedule.name),
            ));
        }
        schedules.push(schedule);
    }
    Ok(schedules)
}

impl RawSchedule {
    fn validate(&self, index: usize, pools: &[PoolConfig]) -> Result<ScheduleConfig, ConfigError> {
        let key = |k: &str| format!("schedules[{index}].{k}");
        let name = self.name.clone().unwrap_or_default();
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                key("name"),
                format!(
                    "`{name}` is not a schedule name: use 1 to {MAX_NAME} letters, digits, `.`, `_` or `-` (it names a Redis key, the events' ids and an API path)"
                ),
            ));
        }
        // Every later message names the schedule.
        let bad =
            |k: &str, problem: String| invalid(key(k), format!("schedule `{name}`: {problem}"));
        let (timetable, timezone) = match (&self.cron, &self.every) {
            (Some(_), Some(_)) => {
                return Err(bad("cron", "set `cron` or `every`, not both".into()));
            }
            (None, None) => {
                return Err(bad(
                    "cron",
                    "needs `cron = \"*/15 * * * *\"` or `every = \"15m\"`".into(),
                ));
            }
            (Some(cron), None) => {
                let zone = self.timezone.clone().unwrap_or_else(|| "UTC".into());
                let tz = TimeZone::get(&zone).map_err(|_| {
                    bad(
                        "timezone",
                        format!("unknown time zone `{zone}`: use an IANA name like \"Europe/Berlin\" or \"UTC\""),
                    )
                })?;
                (Timetable::cron(cron, tz).map_err(|p| bad("cron", p))?, zone)
            }
            (None, Some(every)) => {
                if self.timezone.is_some() {
                    return Err(bad(
                        "timezone",
                        "applies to `cron` only; `every` ticks on multiples of the interval since the Unix epoch".into(),
                    ));
                }
                let interval = crate::timespec::duration(every).map_err(|p| bad("every", p))?;
                let ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
                (
                    Timetable::every(ms, every).map_err(|p| bad("every", p))?,
                    "UTC".into(),
                )
            }
        };
        let event_type = self.event_type.clone().unwrap_or_default();
        if event_type.is_empty() {
            return Err(bad("type", "needs `type`, the events' type".into()));
        }
        if !pools
            .iter()
            .any(|p| p.types.iter().any(|t| t == "*" || *t == event_type))
        {
            let mut routed: Vec<&str> = pools
                .iter()
                .flat_map(|p| p.types.iter().map(String::as_str))
                .collect();
            routed.sort_unstable();
            routed.dedup();
            return Err(bad(
                "type",
                format!(
                    "no pool takes type `{event_type}`, so every event would be dead-lettered `unrouted`; routed types: {}",
                    routed.join(", ")
                ),
            ));
        }
        let data = self.data.clone().unwrap_or_else(|| "{}".into());
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&data) {
            return Err(bad("data", format!("`data` is not JSON: {e}")));
        }
        let catch_up = match self.catch_up.as_deref().unwrap_or("last") {
            "none" => CatchUp::None,
            "last" => CatchUp::Last,
            "all" => CatchUp::All,
            other => {
                return Err(bad(
                    "catch_up",
                    format!("`{other}` is not one of \"none\", \"last\" (the default) or \"all\""),
                ));
            }
        };
        Ok(ScheduleConfig {
            name,
            timetable,
            timezone,
            event_type,
            data,
            catch_up,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::error::ConfigError;

    /// A config with one pool taking `report.daily` and one schedule of `lines`.
    fn load(lines: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[[pools]]\nname = \"p\"\ntypes = [\"report.daily\"]\nhandler = {{ kind = \"log\" }}\n\n[[schedules]]\n{lines}\n"
        );
        Config::from_toml(&text, Path::new("."))
    }

    #[test]
    fn a_good_schedule_loads_with_its_defaults() {
        let config = load("name = \"daily\"\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\ntype = \"report.daily\"")
            .expect("valid");
        let s = &config.schedules[0];
        assert_eq!(s.name, "daily");
        assert_eq!(s.timezone, "Europe/Berlin");
        assert_eq!(s.data, "{}");
        assert_eq!(s.catch_up, crate::schedule::cron::CatchUp::Last);
        let every =
            load("name = \"tick\"\nevery = \"15m\"\ntype = \"report.daily\"\ncatch_up = \"all\"")
                .expect("valid");
        assert_eq!(every.schedules[0].timetable.describe(), "every 900s");
    }

    #[test]
    fn each_bad_schedule_is_named_by_its_key_and_name() {
        let base = "name = \"nightly\"\ntype = \"report.daily\"\n";
        for (lines, key, fragment) in [
            (
                "cron = \"61 * * * *\"",
                "schedules[0].cron",
                "is not a cron expression",
            ),
            ("cron = \"* * * *\"", "schedules[0].cron", "has 4 fields"),
            (
                "cron = \"0 0 30 2 *\"",
                "schedules[0].cron",
                "never matches",
            ),
            (
                "cron = \"0 3 * * *\"\nevery = \"1h\"",
                "schedules[0].cron",
                "not both",
            ),
            ("timezone = \"UTC\"", "schedules[0].cron", "needs `cron"),
            (
                "cron = \"0 3 * * *\"\ntimezone = \"Mars/Olympus\"",
                "schedules[0].timezone",
                "unknown time zone `Mars/Olympus`",
            ),
            (
                "every = \"1h\"\ntimezone = \"Europe/Berlin\"",
                "schedules[0].timezone",
                "applies to `cron` only",
            ),
            (
                "every = \"soon\"",
                "schedules[0].every",
                "is not a duration",
            ),
            (
                "every = \"500ms\"",
                "schedules[0].every",
                "whole number of seconds",
            ),
            (
                "cron = \"0 3 * * *\"\ndata = '{\"a\": '",
                "schedules[0].data",
                "is not JSON",
            ),
            (
                "cron = \"0 3 * * *\"\ncatch_up = \"some\"",
                "schedules[0].catch_up",
                "is not one of",
            ),
        ] {
            let err = load(&format!("{base}{lines}")).expect_err(lines);
            let ConfigError::Invalid { key: got, problem } = &err else {
                panic!("{lines}: {err}");
            };
            assert_eq!(got, key, "{lines}: {problem}");
            assert!(problem.contains("schedule `nightly`"), "{lines}: {problem}");
            assert!(problem.contains(fragment), "{lines}: {problem}");
        }
    }

    #[test]
    fn an_unrouted_type_a_bad_name_and_a_repeated_name_are_refused() {
        let err =
            load("name = \"n\"\nevery = \"1h\"\ntype = \"nobody.takes\"").expect_err("unrouted");
        assert!(
            matches!(&err, ConfigError::Invalid { key, problem } if key == "schedules[0].type" && problem.contains("no pool takes type `nobody.takes`") && problem.contains("report.daily")),
            "{err}"
        );
        let err =
            load("name = \"a b\"\nevery = \"1h\"\ntype = \"report.daily\"").expect_err("name");
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "schedules[0].name"),
            "{err}"
        );
        let err = load("name = \"n\"\nevery = \"1h\"\ntype = \"report.daily\"\n\n[[schedules]]\nname = \"n\"\nevery = \"2h\"\ntype = \"report.daily\"")
            .expect_err("twice");
        assert!(
            matches!(&err, ConfigError::Invalid { key, problem } if key == "schedules[1].name" && problem.contains("`n` is defined twice")),
            "{err}"
        );
    }
}
