//! One partition's replay job: its progress hash, created or read back, and the run that
//! copies its range batch by batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{INTERRUPTED, Progress, ReplayError, Spec, TAKEN_OVER, job_key, new_job_id};
use crate::clock;
use crate::error::RedisError;
use crate::redis::{JobOwner, Redis};
use crate::vocab::{REPLAY_GROUP, REPLAY_JOB, REPLAY_OF, RawEntry, StreamId, TYPE};

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
    /// Names the progress hash.
    pub id: String,
    /// What it copies.
    pub spec: Spec,
    /// Where it stands, as last written to the hash.
    pub progress: Progress,
    key: String,
    /// This run's token in the hash's `runner` field: a batch is written only while it is
    /// there (a later resume takes the job over; this run then stops, [`TAKEN_OVER`]).
    runner: String,
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
        let runner = new_job_id();
        if !dry_run {
            let mut fields = spec.to_fields();
            fields.extend([
                ("runner", runner.clone()),
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
            runner,
        })
    }

    /// Reads job `id` back from its progress hash beside `stream`, to continue after its
    /// cursor. Refuses finished and damaged jobs.
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
        // From here on a run that resumed it before writes nothing more (its batches fail
        // the compare-and-set on `runner`), so two resumes never publish a batch twice.
        let runner = new_job_id();
        redis
            .hash_set(
                &key,
                &[
                    ("runner", runner.clone()),
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
            runner,
        })
    }

    /// Runs to the end of the range (or the limit), calling `report` after every batch.
    /// `cancel` is looked at between batches (and during `rate` waits): the job then stops
    /// with status [`INTERRUPTED`], its cursor at the last batch written, resumable.
    pub async fn run(
        &mut self,
        redis: &Redis,
        stream: &str,
        dry_run: bool,
        cancel: &CancellationToken,
        mut report: impl FnMut(&Progress),
    ) -> Result<(), RedisError> {
        let mut cursor = StreamId::parse(&self.progress.cursor).unwrap_or(self.spec.start);
        let pace = Pace::new(self.spec.rate, self.progress.published);
        while let Some(room) = self.room(cursor) {
            if cancel.is_cancelled() {
                return self.interrupt(redis, dry_run).await;
            }
            let batch = redis
                .range(
                    stream,
                    &cursor.to_string(),
                    &self.spec.end.to_string(),
                    self.spec.batch_size,
                )
                .await?;
            let Some(out) = self.select(&batch, room, &mut cursor) else {
                break;
            };
            if !dry_run && !self.write(redis, stream, &out, cursor).await? {
                tracing::warn!(job = %self.id, stream, "replay job resumed by another run, which carries on from its cursor; this run stops (nothing published twice)");
                self.progress.status = TAKEN_OVER.into();
                return Ok(());
            }
            self.progress.cursor = cursor.to_string();
            report(&self.progress);
            if batch.len() < self.spec.batch_size {
                break;
            }
            tokio::select! {
                _ = pace.wait(self.progress.published) => {}
                _ = cancel.cancelled() => {}
            }
        }
        self.finish(redis, dry_run).await
    }

    /// Marks the job stopped before its end: `--resume` (or the API's resume) continues it.
    async fn interrupt(&mut self, redis: &Redis, dry_run: bool) -> Result<(), RedisError> {
        self.progress.status = INTERRUPTED.into();
        if !dry_run {
            redis
                .hash_set(
                    &self.key,
                    &[
                        ("status", INTERRUPTED.to_string()),
                        ("interrupted_at", clock::now_ms().to_string()),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// How many more entries may match, or `None` when the job is done.
    fn room(&self, cursor: StreamId) -> Option<u64> {
        let room = self
            .spec
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(self.progress.matched));
        (room > 0 && cursor <= self.spec.end).then_some(room)
    }

    /// The copies to publish from `batch` (at most `room`), counting what was scanned and
    /// matched; moves `cursor` past the last entry looked at. `None` for an empty batch.
    fn select(
        &mut self,
        batch: &[RawEntry],
        room: u64,
        cursor: &mut StreamId,
    ) -> Option<Vec<Vec<(Bytes, Bytes)>>> {
        let mut scanned_to = batch.last()?.id;
        let mut out = Vec::new();
        for entry in batch {
            scanned_to = entry.id;
            self.progress.scanned += 1;
            if !self.spec.matches(entry) {
                continue;
            }
            self.progress.matched += 1;
            let ty = entry
                .field(TYPE)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            *self.progress.by_type.entry(ty).or_default() += 1;
            out.push(replayed(entry, &self.id, self.spec.group.as_deref()));
            if out.len() as u64 >= room {
                break;
            }
        }
        *cursor = scanned_to.next();
        Some(out)
    }

    /// Publishes `out` and the progress up to `cursor` in one script: a killed replay
    /// resumes exactly there. False (nothing written) when another run took the job.
    async fn write(
        &mut self,
        redis: &Redis,
        stream: &str,
        out: &[Vec<(Bytes, Bytes)>],
        cursor: StreamId,
    ) -> Result<bool, RedisError> {
        let published = self.progress.published + out.len() as u64;
        let progress = [
            ("cursor", cursor.to_string()),
            ("scanned", self.progress.scanned.to_string()),
            ("matched", self.progress.matched.to_string()),
            ("published", published.to_string()),
        ];
        let owner = JobOwner {
            runner: &self.runner,
            cursor: &self.progress.cursor,
        };
        if !redis
            .add_with_progress(stream, out, &self.key, owner, &progress)
            .await?
        {
            return Ok(false);
        }
        self.progress.published = published;
        Ok(true)
    }

    async fn finish(&mut self, redis: &Redis, dry_run: bool) -> Result<(), RedisError> {
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

/// Keeps a job under its `rate`: after each batch, waits until the entries published so far
/// are due.
struct Pace {
    rate: Option<u64>,
    started: Instant,
    published_before: u64,
}

impl Pace {
    fn new(rate: Option<u64>, published_before: u64) -> Pace {
        Pace {
            rate: rate.filter(|r| *r > 0),
            started: Instant::now(),
            published_before,
        }
    }

    async fn wait(&self, published: u64) {
        let Some(rate) = self.rate else { return };
        let due = Duration::from_secs_f64((published - self.published_before) as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}
