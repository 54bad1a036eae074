//! A replay over every partition: one job ID, one progress hash per partition, run
//! partition by partition with one shared limit. The CLI and the HTTP API both drive this.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::{INTERRUPTED, Job, Progress, ReplayError, Spec, TAKEN_OVER, job_key, new_job_id};
use crate::config::Config;
use crate::error::{OpError, RedisError};
use crate::redis::Redis;

/// A replay job across partitions, ready to run.
pub struct Replay {
    /// The job ID, shared by every partition's progress hash.
    pub id: String,
    /// Count only; write nothing.
    pub dry_run: bool,
    /// Per partition: its stream and its job (`None`: that partition already finished).
    jobs: Vec<(String, Option<Job>)>,
}

impl Replay {
    /// Creates a new job on every partition (a progress hash each, unless dry).
    pub async fn start(
        redis: &Redis,
        config: &Config,
        spec: Spec,
        dry_run: bool,
    ) -> Result<Replay, OpError> {
        let id = new_job_id();
        let mut jobs = Vec::new();
        for part in config.partitions() {
            let job =
                Job::create_as(redis, &part.stream, spec.clone(), dry_run, id.clone()).await?;
            jobs.push((part.stream.clone(), Some(job)));
        }
        Ok(Replay { id, dry_run, jobs })
    }

    /// Reads back an interrupted job; partitions it finished are skipped.
    pub async fn resume(redis: &Redis, config: &Config, id: &str) -> Result<Replay, OpError> {
        let mut jobs = Vec::new();
        for part in config.partitions() {
            let job = match Job::resume(redis, &part.stream, id).await {
                Ok(job) => Some(job),
                Err(ReplayError::Finished(_)) => None,
                Err(e) => return Err(e.into()),
            };
            jobs.push((part.stream.clone(), job));
        }
        if jobs.iter().all(|(_, j)| j.is_none()) {
            return Err(ReplayError::Finished(id.to_string()).into());
        }
        Ok(Replay {
            id: id.to_string(),
            dry_run: false,
            jobs,
        })
    }

    /// The first partition's progress hash (`redis-cli HGETALL` it).
    pub fn key(&self) -> String {
        let first = self
            .jobs
            .first()
            .map(|(s, _)| s.as_str())
            .unwrap_or_default();
        job_key(first, &self.id)
    }

    /// How many partitions (and progress hashes) the job spans.
    pub fn partitions(&self) -> usize {
        self.jobs.len()
    }

    /// Runs every partition's job in turn; `report` gets the totals after each batch. One
    /// limit for the whole replay: what the partitions before used is gone. When `cancel`
    /// fires, the running partition stops between batches and the result's status is
    /// [`INTERRUPTED`] (the CLI passes a token that never fires).
    pub async fn run(
        &mut self,
        redis: &Redis,
        cancel: &CancellationToken,
        mut report: impl FnMut(&Progress),
    ) -> Result<Progress, RedisError> {
        let mut total = Progress {
            job: self.id.clone(),
            ..Progress::default()
        };
        let mut limit = self
            .jobs
            .iter()
            .find_map(|(_, j)| j.as_ref().and_then(|j| j.spec.limit));
        for (stream, job) in self.jobs.iter_mut() {
            let Some(job) = job else { continue };
            if let Some(left) = limit {
                job.spec.limit = Some(left);
            }
            let before = total.clone();
            job.run(redis, stream, self.dry_run, cancel, |p| {
                report(&add(&before, p))
            })
            .await?;
            total = add(&before, &job.progress);
            if job.progress.status == INTERRUPTED || job.progress.status == TAKEN_OVER {
                total.status = job.progress.status.clone();
                return Ok(total);
            }
            limit = limit.map(|l| l.saturating_sub(job.progress.matched));
            if limit == Some(0) {
                break;
            }
        }
        total.status = "done".into();
        Ok(total)
    }
}

/// `before` plus one partition's progress `p`.
fn add(before: &Progress, p: &Progress) -> Progress {
    let mut sum = before.clone();
    sum.scanned += p.scanned;
    sum.matched += p.matched;
    sum.published += p.published;
    sum.status = p.status.clone();
    sum.cursor = p.cursor.clone();
    for (t, n) in &p.by_type {
        *sum.by_type.entry(t.clone()).or_default() += n;
    }
    sum
}

/// A job as its progress hashes tell it, summed over the partitions.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// Status (`running` while any partition runs, else `interrupted` while any is, else
    /// `done`), counts, and the cursor of the first unfinished partition.
    pub progress: Progress,
    /// Progress hashes: one per partition.
    pub partitions: usize,
    /// The first partition's progress hash (`redis-cli HGETALL` it).
    pub key: String,
}

/// Reads job `job`'s progress hashes; `None` when it has none.
pub async fn read_status(
    redis: &Redis,
    config: &Config,
    job: &str,
) -> Result<Option<JobStatus>, RedisError> {
    let parts = config.partitions();
    let mut hashes = Vec::new();
    for part in parts {
        hashes.push(redis.hash_get_all(&job_key(&part.stream, job)).await?);
    }
    if hashes.iter().all(HashMap::is_empty) {
        return Ok(None);
    }
    let status_of = |h: &HashMap<String, String>| h.get("status").cloned().unwrap_or_default();
    let statuses: Vec<String> = hashes
        .iter()
        .filter(|h| !h.is_empty())
        .map(status_of)
        .collect();
    let status = ["running", INTERRUPTED]
        .into_iter()
        .find(|s| statuses.iter().any(|t| t == s))
        .unwrap_or("done");
    let num = |k: &str| -> u64 {
        hashes
            .iter()
            .filter_map(|h| h.get(k).and_then(|v| v.parse::<u64>().ok()))
            .sum()
    };
    let cursor = hashes
        .iter()
        .find(|h| !h.is_empty() && status_of(h) != "done")
        .or_else(|| hashes.iter().rev().find(|h| !h.is_empty()))
        .and_then(|h| h.get("cursor").cloned())
        .unwrap_or_default();
    Ok(Some(JobStatus {
        progress: Progress {
            job: job.to_string(),
            status: status.to_string(),
            cursor,
            scanned: num("scanned"),
            matched: num("matched"),
            published: num("published"),
            by_type: Default::default(),
        },
        partitions: parts.len(),
        key: job_key(&parts[0].stream, job),
    }))
}
