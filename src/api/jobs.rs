//! Replay jobs run inside the engine: each on the API's task tracker with its own
//! cancellation token. Progress is the CLI's (`<stream>:replay:<job>`), so a job started here
//! can be resumed by `weir replay --resume` and the other way round. Cancel and shutdown stop
//! a job between batches with status `interrupted`: it stays resumable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{Access, audit};
use super::input::body;
use super::{Api, ApiError};
use crate::replay::{self, Replay, Spec, SpecInput};

/// How long shutdown (and a cancel call) waits for jobs to stop between batches.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The jobs this engine runs.
#[derive(Default)]
pub struct Jobs {
    tracker: TaskTracker,
    /// Parent of every job's token: cancelled at shutdown.
    root: CancellationToken,
    /// Per running job: its token, and a receiver that closes when the job's task ends.
    running: Mutex<HashMap<String, (CancellationToken, watch::Receiver<()>)>>,
}

/// A job slot taken before the job starts, so two resumes of one job cannot both run it.
struct Slot {
    token: CancellationToken,
    done: watch::Sender<()>,
}

impl Jobs {
    fn reserve(&self, job: &str) -> Result<Slot, ApiError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(job) {
            return Err(ApiError::conflict(format!(
                "replay job `{job}` is running; cancel it first (DELETE /api/v1/replay/{job})"
            )));
        }
        let token = self.root.child_token();
        let (done, rx) = watch::channel(());
        running.insert(job.to_string(), (token.clone(), rx));
        Ok(Slot { token, done })
    }

    fn release(&self, job: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(job);
    }

    fn get(&self, job: &str) -> Option<(CancellationToken, watch::Receiver<()>)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(job).cloned()
    }

    /// Runs `replay` in the background until its end, a cancel, or shutdown.
    fn spawn(&self, api: Arc<Api>, mut replay: Replay, slot: Slot) {
        self.tracker.spawn(async move {
            let job = replay.id.clone();
            match replay.run(&api.redis, &slot.token, |_| {}).await {
                Ok(p) => tracing::info!(
                    job = %job, status = %p.status, scanned = p.scanned, matched = p.matched,
                    published = p.published, "replay job stopped"
                ),
                Err(e) => tracing::warn!(
                    job = %job, error = %e,
                    "replay job failed; its progress is saved: POST /api/v1/replay/{job}/resume"
                ),
            }
            api.jobs.release(&job);
            drop(slot.done);
        });
    }

    pub async fn shutdown(&self) {
        self.root.cancel();
        self.tracker.close();
        if tokio::time::timeout(STOP_WAIT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("replay jobs did not stop within 10 s; they stay resumable");
        }
    }
}

/// A replay, as `weir replay`'s flags.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayBody {
    /// TIME: start of the range, inclusive (required).
    pub since: Option<String>,
    /// TIME: end of the range, inclusive (required).
    pub until: Option<String>,
    /// Only these types (none: all).
    pub types: Option<Vec<String>>,
    /// Only this pool handles the copies (`replay_group`).
    pub group: Option<String>,
    /// Stop after this many matching entries.
    pub limit: Option<u64>,
    /// Entries per page and per write (default 500).
    pub batch_size: Option<usize>,
    /// Entries published per second, at most.
    pub rate: Option<u64>,
    /// Count only (answered at once with 200); write nothing.
    pub dry_run: Option<bool>,
    /// Also replay entries that are replays themselves.
    pub include_replays: Option<bool>,
    /// `FIELD=VALUE` (an entry field) or `/pointer=VALUE` (into `data`) conditions, all of
    /// which must hold, as `weir replay --where`.
    #[serde(rename = "where")]
    pub where_: Option<Vec<String>>,
}

/// A job the engine now runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Started {
    /// The job ID: `GET /api/v1/replay/{job}` for progress.
    pub job: String,
}

/// What a dry run would replay.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub job: String,
    pub dry_run: bool,
    pub scanned: u64,
    pub matched: u64,
    pub by_type: BTreeMap<String, u64>,
}

/// A job's progress, summed over its partitions ([`replay::Progress`]), and where it lives.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    #[serde(flatten)]
    pub progress: replay::Progress,
    /// Progress hashes: one per partition.
    pub partitions: usize,
    /// Whether this engine is running the job right now.
    pub active: bool,
    /// The first partition's progress hash (`redis-cli HGETALL` it).
    pub key: String,
}

fn spec(api: &Api, b: &ReplayBody) -> Result<Spec, ApiError> {
    let conditions = b.where_.clone().unwrap_or_default();
    let types = b.types.clone().unwrap_or_default();
    Ok(Spec::parse(
        &api.config,
        SpecInput {
            since: b.since.as_deref(),
            until: b.until.as_deref(),
            types: &types,
            group: b.group.as_deref(),
            limit: b.limit,
            batch_size: b.batch_size.unwrap_or(500),
            rate: b.rate,
            include_replays: b.include_replays.unwrap_or(false),
            conditions: &conditions,
        },
    )?)
}

/// Starts a replay in the engine: 202 with its job ID (a dry run answers 200 with counts).
#[utoipa::path(post, path = "/replay", operation_id = "startReplay", tag = "replay", request_body = ReplayBody,
    responses((status = 202, body = Started), (status = 200, body = DryRun),
        (status = 400, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn start(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ReplayBody = body(bytes)?;
    let spec = spec(&api, &request)?;
    if request.dry_run.unwrap_or(false) {
        let mut replay = Replay::start(&api.redis, &api.config, spec, true).await?;
        let p = replay.run(&api.redis, &api.jobs.root, |_| {}).await?;
        let dry = DryRun {
            job: replay.id,
            dry_run: true,
            scanned: p.scanned,
            matched: p.matched,
            by_type: p.by_type,
        };
        return Ok(Json(dry).into_response());
    }
    let replay = Replay::start(&api.redis, &api.config, spec, false).await?;
    let job = replay.id.clone();
    let slot = api.jobs.reserve(&job)?;
    api.jobs.spawn(api.clone(), replay, slot);
    audit(access, "replay.start", &job, 0);
    Ok((StatusCode::ACCEPTED, Json(Started { job })).into_response())
}

/// Resumes an interrupted job, as `weir replay --resume`: 202; 409 if it runs or is done.
#[utoipa::path(post, path = "/replay/{job}/resume", operation_id = "resumeReplay", tag = "replay",
    params(("job" = String, Path, description = "The job ID")),
    responses((status = 202, body = Started), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn resume(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    let slot = api.jobs.reserve(&job)?;
    let replay = match Replay::resume(&api.redis, &api.config, &job).await {
        Ok(replay) => replay,
        Err(e) => {
            api.jobs.release(&job);
            return Err(e.into());
        }
    };
    api.jobs.spawn(api.clone(), replay, slot);
    audit(access, "replay.resume", &job, 0);
    Ok((StatusCode::ACCEPTED, Json(Started { job })).into_response())
}

/// A job's progress over its partitions; `None` when it has no progress hash.
async fn progress(api: &Api, job: &str) -> Result<Option<JobProgress>, ApiError> {
    let status = replay::read_status(&api.redis, &api.config, job).await?;
    Ok(status.map(|s| JobProgress {
        progress: s.progress,
        partitions: s.partitions,
        active: api.jobs.get(job).is_some(),
        key: s.key,
    }))
}

/// A job's progress (status, scanned, matched, published, cursor), over every partition.
#[utoipa::path(get, path = "/replay/{job}", operation_id = "showReplay", tag = "replay",
    params(("job" = String, Path, description = "The job ID")),
    responses((status = 200, body = JobProgress), (status = 404, body = super::error::ErrorBody)))]
pub async fn show(
    State(api): State<Arc<Api>>,
    Path(job): Path<String>,
) -> Result<Json<JobProgress>, ApiError> {
    match progress(&api, &job).await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError::not_found(format!("no replay job `{job}`"))),
    }
}

/// Cancels a job this engine runs: it stops between batches, `interrupted` and resumable.
#[utoipa::path(delete, path = "/replay/{job}", operation_id = "cancelReplay", tag = "replay",
    params(("job" = String, Path, description = "The job ID")),
    responses((status = 200, body = JobProgress), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(job): Path<String>,
) -> Result<Json<JobProgress>, ApiError> {
    let Some((token, mut done)) = api.jobs.get(&job) else {
        return match progress(&api, &job).await? {
            None => Err(ApiError::not_found(format!("no replay job `{job}`"))),
            Some(p) => Err(ApiError::conflict(format!(
                "replay job `{job}` is not running in this engine (status {})",
                p.progress.status
            ))),
        };
    };
    token.cancel();
    // The sender is dropped when the job's task ends.
    let _ = tokio::time::timeout(STOP_WAIT, async { while done.changed().await.is_ok() {} }).await;
    audit(access, "replay.cancel", &job, 0);
    match progress(&api, &job).await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError::not_found(format!("no replay job `{job}`"))),
    }
}
