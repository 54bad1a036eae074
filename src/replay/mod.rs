//! Replaying history: copies entries of a time range back onto the main stream, with
//! `replay_of`, `replay_job` and (optionally) `replay_group`. Progress lives in the hash
//! `<stream>:replay:<job>` and each batch's XADDs and its progress update are one script,
//! so a killed replay resumes exactly at its cursor: no duplicates, no gaps.

mod job;
mod partitions;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use job::Job;
pub use partitions::{JobStatus, Replay, read_status};

use crate::clock;
use crate::conditions::Conditions;
use crate::config::Config;
use crate::error::{InputError, OpError, RedisError};
use crate::timespec;
use crate::vocab::{REPLAY_OF, RawEntry, StreamId, TYPE};

/// The status of a job stopped before its end (cancelled over the API, or the engine shut
/// down): it stays resumable. The other statuses are `running` and `done`.
pub const INTERRUPTED: &str = "interrupted";

/// The status a run reports when another run resumed its job meanwhile (two engines, or the
/// CLI and the API): it stopped at once, and the other carries on from the job's cursor.
/// Never written to the progress hash, which belongs to the other run.
pub const TAKEN_OVER: &str = "taken_over";

/// What to replay. Stored in the job hash so `--resume` needs nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The first entry ID to copy (inclusive).
    pub start: StreamId,
    /// Inclusive; clamped to the stream's last ID when the job starts, so a replay never
    /// reads its own output.
    pub end: StreamId,
    /// Event types to copy; empty copies all.
    pub types: Vec<String>,
    /// Set `replay_group` so only this pool handles the copies; `None` sends them to all.
    pub group: Option<String>,
    /// At most this many entries published, over all partitions together.
    pub limit: Option<u64>,
    /// Entries per script call, and so per progress update.
    pub batch_size: usize,
    /// Entries published per second at most.
    pub rate: Option<u64>,
    /// Copy entries that are themselves replays (`replay_of` set); off so that replaying a
    /// range twice does not copy copies.
    pub include_replays: bool,
    /// `--where` conditions: every one must hold (tenant boundaries).
    pub conditions: Conditions,
}

/// Where a job stands; the fields of the job hash. The one progress type of the CLI, the
/// library and the API (`GET /api/v1/replay/{job}`, which adds where it lives).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The job ID, which `--resume` takes.
    pub job: String,
    /// `running`, `done` or [`INTERRUPTED`] (resumable); a job whose process died mid-run
    /// still says `running` (resume it). A run that finds its job resumed elsewhere reports
    /// [`TAKEN_OVER`] to its caller (never written to the hash).
    pub status: String,
    /// The next entry ID to read (of the first unfinished partition); a resumed job starts
    /// there.
    pub cursor: String,
    /// Entries read from the range.
    pub scanned: u64,
    /// Entries that passed the filters.
    pub matched: u64,
    /// Copies written to the stream.
    pub published: u64,
    /// Copies per event type (counted by the run that reports it; not kept in the hash).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_type: BTreeMap<String, u64>,
}

/// Why a replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Redis failed; the job can be resumed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// `--resume` named a job whose progress hash does not exist.
    #[error("replay job `{0}` not found (its progress hash does not exist)")]
    UnknownJob(String),
    /// Resuming a finished job would copy nothing; start a new one.
    #[error("replay job `{0}` already finished; start a new one")]
    Finished(String),
    /// The progress hash was edited or damaged: resuming could duplicate or skip entries.
    #[error("replay job `{job}` has an unreadable field `{field}`")]
    Corrupt {
        /// The job ID.
        job: String,
        /// The hash field that did not parse.
        field: &'static str,
    },
}

impl From<ReplayError> for OpError {
    fn from(e: ReplayError) -> OpError {
        match e {
            ReplayError::Redis(e) => OpError::Redis(e),
            ReplayError::UnknownJob(_) => OpError::NotFound(e.to_string()),
            ReplayError::Finished(_) | ReplayError::Corrupt { .. } => {
                OpError::Conflict(e.to_string())
            }
        }
    }
}

/// A replay as a user asks for it (CLI flags, API body), checked by [`Spec::parse`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SpecInput<'a> {
    /// TIME: start of the range, inclusive.
    pub since: Option<&'a str>,
    /// TIME: end of the range, inclusive.
    pub until: Option<&'a str>,
    /// Only these types (none: all).
    pub types: &'a [String],
    /// Only this pool handles the copies.
    pub group: Option<&'a str>,
    /// Stop after this many matching entries.
    pub limit: Option<u64>,
    /// Entries per page and per write.
    pub batch_size: usize,
    /// Entries published per second, at most.
    pub rate: Option<u64>,
    /// Also replay entries that are replays themselves.
    pub include_replays: bool,
    /// `FIELD=VALUE` / `/pointer=VALUE` conditions, all of which must hold.
    pub conditions: &'a [String],
}

impl Spec {
    /// Checks a user's replay request against `config`; errors name the field at fault.
    /// `since` defaults to the stream's start and `until` to now, so `--type T` alone
    /// replays that type's history.
    pub fn parse(config: &Config, a: SpecInput<'_>) -> Result<Spec, InputError> {
        let (start, end) = timespec::range(a.since, Some(a.until.unwrap_or("now")))?;
        let conditions = Conditions::parse(a.conditions)?;
        if let Some(g) = a.group
            && config.pool(g).is_none()
        {
            return Err(InputError::new(
                "group",
                format!("--group `{g}` is not a configured pool"),
            ));
        }
        if a.batch_size == 0 || a.batch_size > 10_000 {
            return Err(InputError::new(
                "batchSize",
                "--batch-size must be between 1 and 10000",
            ));
        }
        if a.rate == Some(0) {
            return Err(InputError::new(
                "rate",
                "--rate must be at least 1 entry per second",
            ));
        }
        let batch_size = a
            .rate
            .map_or(a.batch_size, |r| a.batch_size.min(r.max(1) as usize));
        Ok(Spec {
            start,
            end,
            types: a.types.to_vec(),
            group: a.group.map(String::from),
            limit: a.limit,
            batch_size,
            rate: a.rate,
            include_replays: a.include_replays,
            conditions,
        })
    }
}

/// The progress hash of `job` beside `stream` (a partition's stream with partitions).
pub fn job_key(stream: &str, job: &str) -> String {
    crate::keys::replay_job(stream, job)
}

/// A fresh job ID: the start time in ms (so IDs sort by age) and a random suffix (so two
/// replays started in the same ms differ).
pub fn new_job_id() -> String {
    format!("{}-{:04x}", clock::now_ms(), rand::random::<u16>())
}

impl Spec {
    fn matches(&self, entry: &RawEntry) -> bool {
        if !self.include_replays && entry.field(REPLAY_OF).is_some() {
            return false;
        }
        let typed = self.types.is_empty()
            || self.types.iter().any(|t| {
                entry
                    .field(TYPE)
                    .is_some_and(|v| v.as_ref() == t.as_bytes())
            });
        typed && self.conditions.matches(entry)
    }

    fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("since", self.start.to_string()),
            ("until", self.end.to_string()),
            ("types", self.types.join(",")),
            ("group", self.group.clone().unwrap_or_default()),
            (
                "limit",
                self.limit.map(|l| l.to_string()).unwrap_or_default(),
            ),
            ("batch_size", self.batch_size.to_string()),
            ("rate", self.rate.map(|r| r.to_string()).unwrap_or_default()),
            ("include_replays", self.include_replays.to_string()),
            // A JSON list: values may hold any character.
            (
                "where",
                serde_json::to_string(&self.conditions.texts()).unwrap_or_default(),
            ),
        ]
    }

    fn from_fields(job: &str, f: &HashMap<String, String>) -> Result<Spec, ReplayError> {
        let corrupt = |field| ReplayError::Corrupt {
            job: job.to_string(),
            field,
        };
        let id = |field: &'static str| {
            f.get(field)
                .and_then(|v| StreamId::parse(v))
                .ok_or_else(|| corrupt(field))
        };
        let opt_num = |field: &'static str| -> Result<Option<u64>, ReplayError> {
            match f.get(field).map(String::as_str) {
                None | Some("") => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| corrupt(field)),
            }
        };
        Ok(Spec {
            start: id("since")?,
            end: id("until")?,
            types: f
                .get("types")
                .map(|t| {
                    t.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            group: f.get("group").filter(|g| !g.is_empty()).cloned(),
            limit: opt_num("limit")?,
            batch_size: opt_num("batch_size")?.unwrap_or(500).clamp(1, 10_000) as usize,
            rate: opt_num("rate")?,
            include_replays: f.get("include_replays").is_some_and(|v| v == "true"),
            conditions: match f.get("where").map(String::as_str) {
                None | Some("") => Conditions::default(),
                Some(list) => serde_json::from_str::<Vec<String>>(list)
                    .ok()
                    .and_then(|texts| Conditions::parse(&texts).ok())
                    .ok_or_else(|| corrupt("where"))?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_conditions_survive_the_job_hash_for_resume() {
        let texts = ["tenant=t,1".to_string(), "/a/b=x=y".to_string()];
        let spec = Spec {
            start: StreamId::ZERO,
            end: StreamId { ms: 9, seq: 0 },
            types: vec!["a".into()],
            group: None,
            limit: None,
            batch_size: 500,
            rate: None,
            include_replays: false,
            conditions: Conditions::parse(&texts).expect("conditions"),
        };
        let fields: HashMap<String, String> = spec
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(Spec::from_fields("j", &fields).ok(), Some(spec));
    }
}
