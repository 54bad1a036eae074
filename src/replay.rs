//! Replaying history: copies entries of a time range back onto the main stream, with
//! `replay_of`, `replay_job` and (optionally) `replay_group`. Progress lives in the hash
//! `<stream>:replay:<job>` and each batch's XADDs and its progress update are one MULTI/EXEC,
//! so a killed replay resumes exactly at its cursor: no duplicates, no gaps.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::clock;
use crate::envelope::{REPLAY_GROUP, REPLAY_JOB, REPLAY_OF};
use crate::error::RedisError;
use crate::redis::{RawEntry, Redis, StreamId};

/// What to replay. Stored in the job hash so `--resume` needs nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub start: StreamId,
    /// Inclusive; clamped to the stream's last ID when the job starts, so a replay never
    /// reads its own output.
    pub end: StreamId,
    pub types: Vec<String>,
    pub group: Option<String>,
    pub limit: Option<u64>,
    pub batch_size: usize,
    /// Entries published per second at most.
    pub rate: Option<u64>,
    pub include_replays: bool,
}

/// Where a job stands; the fields of the job hash.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub job: String,
    pub status: String,
    pub cursor: String,
    pub scanned: u64,
    pub matched: u64,
    pub published: u64,
    pub by_type: BTreeMap<String, u64>,
}

/// Why a replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("replay job `{0}` not found (its progress hash does not exist)")]
    UnknownJob(String),
    #[error("replay job `{0}` already finished; start a new one")]
    Finished(String),
    #[error("replay job `{job}` has an unreadable field `{field}`")]
    Corrupt { job: String, field: &'static str },
}

pub fn job_key(stream: &str, job: &str) -> String {
    format!("{stream}:replay:{job}")
}

pub fn new_job_id() -> String {
    format!("{}-{:04x}", clock::now_ms(), rand::random::<u16>())
}

impl Spec {
    fn matches(&self, entry: &RawEntry) -> bool {
        if !self.include_replays && entry.field(REPLAY_OF).is_some() {
            return false;
        }
        self.types.is_empty()
            || self.types.iter().any(|t| {
                entry
                    .field("type")
                    .is_some_and(|v| v.as_ref() == t.as_bytes())
            })
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
        })
    }
}

/// The copy of `entry` to publish: original fields without old replay markers, plus ours.
fn replayed(entry: &RawEntry, job: &str, group: Option<&str>) -> Vec<(Bytes, Bytes)> {
    let marker = |k: &[u8]| {
        k == REPLAY_OF.as_bytes() || k == REPLAY_GROUP.as_bytes() || k == REPLAY_JOB.as_bytes()
    };
    let mut fields: Vec<(Bytes, Bytes)> = entry
        .fields
        .iter()
        .flatten()
        .filter(|(k, _)| !marker(k))
        .cloned()
        .collect();
    fields.push((
        Bytes::from_static(REPLAY_OF.as_bytes()),
        Bytes::from(entry.id.to_string()),
    ));
    fields.push((
        Bytes::from_static(REPLAY_JOB.as_bytes()),
        Bytes::from(job.to_string()),
    ));
    if let Some(g) = group {
        fields.push((
            Bytes::from_static(REPLAY_GROUP.as_bytes()),
            Bytes::from(g.to_string()),
        ));
    }
    fields
}

/// A job ready to run: a new one, or one read back for `--resume`.
pub struct Job {
    pub id: String,
    pub spec: Spec,
    pub progress: Progress,
    key: String,
}

impl Job {
    /// Creates the job hash (not for dry runs). The end is clamped to the newest entry now.
    pub async fn create(
        redis: &Redis,
        stream: &str,
        spec: Spec,
        dry_run: bool,
    ) -> Result<Job, ReplayError> {
        Self::create_as(redis, stream, spec, dry_run, new_job_id()).await
    }

    /// [`Job::create`] under a given job id: one job per partition shares the id.
    pub async fn create_as(
        redis: &Redis,
        stream: &str,
        mut spec: Spec,
        dry_run: bool,
        id: String,
    ) -> Result<Job, ReplayError> {
        let last = redis.last_id(stream).await?.unwrap_or(StreamId::ZERO);
        spec.end = spec.end.min(last);
        let key = job_key(stream, &id);
        let cursor = spec.start;
        if !dry_run {
            let mut fields = spec.to_fields();
            fields.extend([
                ("status", "running".to_string()),
                ("cursor", cursor.to_string()),
                ("scanned", "0".into()),
                ("matched", "0".into()),
                ("published", "0".into()),
                ("started_at", clock::now_ms().to_string()),
            ]);
            redis.hash_set(&key, &fields).await?;
        }
        let progress = Progress {
            job: id.clone(),
            status: "running".into(),
            cursor: cursor.to_string(),
            ..Progress::default()
        };
        Ok(Job {
            id,
            spec,
            progress,
            key,
        })
    }

    pub async fn resume(redis: &Redis, stream: &str, id: &str) -> Result<Job, ReplayError> {
        let key = job_key(stream, id);
        let f = redis.hash_get_all(&key).await?;
        if f.is_empty() {
            return Err(ReplayError::UnknownJob(id.to_string()));
        }
        if f.get("status").is_some_and(|s| s == "done") {
            return Err(ReplayError::Finished(id.to_string()));
        }
        let spec = Spec::from_fields(id, &f)?;
        let num = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let progress = Progress {
            job: id.to_string(),
            status: "running".into(),
            cursor: f.get("cursor").cloned().unwrap_or_default(),
            scanned: num("scanned"),
            matched: num("matched"),
            published: num("published"),
            by_type: BTreeMap::new(),
        };
        StreamId::parse(&progress.cursor).ok_or(ReplayError::Corrupt {
            job: id.to_string(),
            field: "cursor",
        })?;
        redis
            .hash_set(
                &key,
                &[
                    ("status", "running".to_string()),
                    ("resumed_at", clock::now_ms().to_string()),
                ],
            )
            .await?;
        Ok(Job {
            id: id.to_string(),
            spec,
            progress,
            key,
        })
    }

    /// Runs to the end of the range (or the limit), calling `report` after every batch.
    pub async fn run(
        &mut self,
        redis: &Redis,
        stream: &str,
        dry_run: bool,
        mut report: impl FnMut(&Progress),
    ) -> Result<(), RedisError> {
        let mut cursor = StreamId::parse(&self.progress.cursor).unwrap_or(self.spec.start);
        let end = self.spec.end.to_string();
        let started = Instant::now();
        let published_before = self.progress.published;
        loop {
            let room = self
                .spec
                .limit
                .map_or(u64::MAX, |l| l.saturating_sub(self.progress.matched));
            if room == 0 || cursor > self.spec.end {
                break;
            }
            let batch = redis
                .range(stream, &cursor.to_string(), &end, self.spec.batch_size)
                .await?;
            let Some(last) = batch.last().map(|e| e.id) else {
                break;
            };
            let mut out = Vec::new();
            let mut scanned_to = last;
            for entry in &batch {
                scanned_to = entry.id;
                self.progress.scanned += 1;
                if !self.spec.matches(entry) {
                    continue;
                }
                self.progress.matched += 1;
                let ty = entry
                    .field("type")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                *self.progress.by_type.entry(ty).or_default() += 1;
                out.push(replayed(entry, &self.id, self.spec.group.as_deref()));
                if out.len() as u64 >= room {
                    break;
                }
            }
            cursor = scanned_to.next();
            if !dry_run {
                let published = self.progress.published + out.len() as u64;
                let progress = [
                    ("cursor", cursor.to_string()),
                    ("scanned", self.progress.scanned.to_string()),
                    ("matched", self.progress.matched.to_string()),
                    ("published", published.to_string()),
                ];
                redis
                    .add_with_progress(stream, &out, &self.key, &progress)
                    .await?;
                self.progress.published = published;
            }
            self.progress.cursor = cursor.to_string();
            report(&self.progress);
            if batch.len() < self.spec.batch_size {
                break;
            }
            if let Some(rate) = self.spec.rate.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(
                    (self.progress.published - published_before) as f64 / rate as f64,
                );
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.progress.status = "done".into();
        if !dry_run {
            redis
                .hash_set(
                    &self.key,
                    &[
                        ("status", "done".to_string()),
                        ("finished_at", clock::now_ms().to_string()),
                    ],
                )
                .await?;
        }
        Ok(())
    }
}
