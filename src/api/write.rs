//! The write endpoints on the DLQ and the pools. Each logs an audit line.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::auth::{Access, Caller, audit};
use super::input::body;
use super::read::{dead_letter_id, filter};
use super::{Api, ApiError, MAX_IDS, REQUEST_TIMEOUT};
use crate::dlq::{self, Filter, FilterInput, Reprocessed, Selection};
use crate::vocab::LetterId;

/// How long a reprocess or purge works before it stops between pages and answers what it
/// did: well inside [`REQUEST_TIMEOUT`], so the answer, not a 503, says exactly what moved.
const WORK_BUDGET: Duration = REQUEST_TIMEOUT.saturating_sub(Duration::from_secs(5));

/// What to reprocess: `ids`, or a filter, or `all`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ReprocessBody {
    /// These dead letters (at most 10 000 per call).
    pub ids: Option<Vec<String>>,
    /// Filter: only these types.
    pub types: Option<Vec<String>>,
    /// Filter: a `dlq_reason`.
    pub reason: Option<String>,
    /// Filter: only dead letters of this pool.
    pub pool: Option<String>,
    /// Filter: TIME, failed at or after.
    pub since: Option<String>,
    /// Filter: TIME, failed at or before.
    pub until: Option<String>,
    /// Filter: `FIELD=VALUE` (an original entry field) or `/pointer=VALUE` (into `data`)
    /// conditions, all of which must hold, as `weir dlq reprocess --where`.
    #[serde(rename = "where")]
    pub where_: Option<Vec<String>>,
    /// Every dead letter (the filter fields, if any, still narrow it).
    pub all: Option<bool>,
    /// Count what would move, by type; change nothing.
    pub dry_run: Option<bool>,
}

impl ReprocessBody {
    fn has_filter(&self) -> bool {
        self.types.as_ref().is_some_and(|t| !t.is_empty())
            || self.reason.is_some()
            || self.pool.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.where_.as_ref().is_some_and(|w| !w.is_empty())
    }

    /// The filter as the audit line shows it (`all` for none).
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.types.as_ref().filter(|t| !t.is_empty()) {
            parts.push(format!("types={}", t.join(",")));
        }
        for (name, value) in [
            ("reason", &self.reason),
            ("pool", &self.pool),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = value {
                parts.push(format!("{name}={v}"));
            }
        }
        for w in self.where_.iter().flatten() {
            parts.push(format!("where {w}"));
        }
        if parts.is_empty() {
            "all".into()
        } else {
            parts.join(" ")
        }
    }

    /// What the audit line names as the target: the IDs (the first few), or the filter.
    fn target(&self) -> String {
        match &self.ids {
            Some(ids) => {
                let shown: Vec<&str> = ids.iter().take(10).map(String::as_str).collect();
                let more = if ids.len() > 10 { ", …" } else { "" };
                format!("ids ({}): {}{more}", ids.len(), shown.join(", "))
            }
            None => self.describe(),
        }
    }

    fn selection(&self, api: &Api) -> Result<Selection, ApiError> {
        if let Some(ids) = &self.ids {
            if self.has_filter() || self.all == Some(true) {
                return Err(ApiError::input(
                    "ids",
                    "give either ids, or a filter / all, not both",
                ));
            }
            return ids_of(ids).map(Selection::Ids);
        }
        if !self.has_filter() && self.all != Some(true) {
            return Err(ApiError::input(
                "ids",
                "say what to reprocess: {\"ids\": [...]}, a filter (types, reason, pool, since, until, where), or {\"all\": true}",
            ));
        }
        Ok(Selection::Matching(self.matching(api)?))
    }

    /// The filter fields as a DLQ filter (none: every dead letter).
    fn matching(&self, api: &Api) -> Result<Filter, ApiError> {
        let types = self.types.clone().unwrap_or_default();
        let conditions = self.where_.clone().unwrap_or_default();
        filter(
            api,
            FilterInput {
                conditions: &conditions,
                types: &types,
                reason: self.reason.as_deref(),
                since: self.since.as_deref(),
                until: self.until.as_deref(),
                grep: None,
                group: self.pool.as_deref(),
            },
        )
    }
}

fn ids_of(ids: &[String]) -> Result<Vec<LetterId>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::input("ids", "ids is empty"));
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::input(
            "ids",
            format!(
                "at most {MAX_IDS} ids per call ({} given); split the call",
                ids.len()
            ),
        ));
    }
    ids.iter()
        .map(|id| id.parse().map_err(|e: String| ApiError::input("ids", e)))
        .collect()
}

/// The audit of a DLQ write that may take long: one line as it starts, one as it ends with
/// exactly what it did. When the request's timeout drops it midway, the line is written on
/// drop, with the counts of the last finished page.
struct Audit {
    caller: Caller,
    action: &'static str,
    /// What it applies to: the IDs (the first few) or the filter (`filter` in the log lines;
    /// `target` would clash with the log's own target).
    target: String,
    /// The counts so far: entries, skipped, missing, by type.
    last: (u64, usize, usize, BTreeMap<String, u64>),
    ended: bool,
}

impl Audit {
    fn start(caller: Caller, action: &'static str, target: String) -> Audit {
        tracing::info!(
            target: "weir::audit",
            token = caller.access.as_str(),
            client = caller.client(),
            action,
            filter = target,
            "admin API write started"
        );
        Audit {
            caller,
            action,
            target,
            last: (0, 0, 0, BTreeMap::new()),
            ended: false,
        }
    }

    fn progress(
        &mut self,
        entries: u64,
        skipped: usize,
        missing: usize,
        by_type: &BTreeMap<String, u64>,
    ) {
        self.last = (entries, skipped, missing, by_type.clone());
    }

    fn end(mut self, stopped: Option<&str>) {
        self.ended = true;
        self.line(stopped);
    }

    fn line(&self, stopped: Option<&str>) {
        let (entries, skipped, missing, by_type) = &self.last;
        let by_type = serde_json::to_string(by_type).unwrap_or_default();
        tracing::info!(
            target: "weir::audit",
            token = self.caller.access.as_str(),
            client = self.caller.client(),
            action = self.action,
            filter = self.target,
            entries,
            skipped,
            missing,
            by_type,
            complete = stopped.is_none(),
            stopped,
            "admin API write"
        );
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.ended {
            self.line(Some(
                "the request timed out or was dropped; a page in flight when it stopped may have moved too",
            ));
        }
    }
}

/// Goes on until the work budget is spent, noting progress in the audit.
fn paced<T>(
    audit: &mut Audit,
    counts: impl Fn(&T) -> (u64, usize, usize, &BTreeMap<String, u64>) + Send + 'static,
) -> impl FnMut(&T) -> ControlFlow<String> + Send + '_
where
    T: 'static,
{
    let deadline = Instant::now() + WORK_BUDGET;
    move |done: &T| {
        let (entries, skipped, missing, by_type) = counts(done);
        audit.progress(entries, skipped, missing, by_type);
        if Instant::now() < deadline {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!(
                "stopped after {} s to answer within the request timeout; send it again for the rest",
                WORK_BUDGET.as_secs()
            ))
        }
    }
}

/// Moves dead letters back onto the stream, atomically per entry (as `weir dlq reprocess`).
/// A letter that cannot be moved is skipped and listed in `skipped`; the rest moves. A long
/// run stops between pages before the request timeout and says so (`complete: false`).
#[utoipa::path(post, path = "/dlq/reprocess", operation_id = "reprocessDeadLetters", tag = "dlq", request_body = ReprocessBody,
    responses((status = 200, body = Reprocessed), (status = 400, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "a bare ID that several partitions' DLQs hold; `candidates` lists the qualified IDs"),
        (status = 413, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn reprocess(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Reprocessed>, ApiError> {
    let request: ReprocessBody = body(bytes)?;
    let selection = request.selection(&api)?;
    let dry_run = request.dry_run.unwrap_or(false);
    let mut audit = (!dry_run).then(|| Audit::start(caller, "dlq.reprocess", request.target()));
    let done = match audit.as_mut() {
        Some(audit) => {
            let pace = paced(audit, |d: &Reprocessed| {
                (d.moved, d.skipped.len(), d.missing.len(), &d.by_type)
            });
            dlq::reprocess(&api.redis, &api.config, &selection, dry_run, pace).await?
        }
        None => {
            let pace = |_: &Reprocessed| ControlFlow::Continue(());
            dlq::reprocess(&api.redis, &api.config, &selection, dry_run, pace).await?
        }
    };
    if let Some(mut audit) = audit {
        audit.progress(
            done.moved,
            done.skipped.len(),
            done.missing.len(),
            &done.by_type,
        );
        audit.end(done.stopped.as_deref());
    }
    Ok(Json(done))
}

/// Which dead letters to delete for good: a filter, or `all`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PurgeBody {
    /// Filter: only these types.
    pub types: Option<Vec<String>>,
    /// Filter: a `dlq_reason`.
    pub reason: Option<String>,
    /// Filter: only dead letters of this pool.
    pub pool: Option<String>,
    /// Filter: TIME, failed at or after.
    pub since: Option<String>,
    /// Filter: TIME, failed at or before.
    pub until: Option<String>,
    /// Filter: `FIELD=VALUE` / `/pointer=VALUE` conditions, all of which must hold, as
    /// `weir dlq purge --where`.
    #[serde(rename = "where")]
    pub where_: Option<Vec<String>>,
    /// Every dead letter (the filter fields, if any, still narrow it): needed when no
    /// filter is given, so an empty body deletes nothing.
    pub all: Option<bool>,
}

/// What a purge did.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    /// Dead letters deleted (the same number as `deleted`, kept for older clients).
    pub purged: u64,
    /// Dead letters deleted.
    pub deleted: u64,
    /// Deleted per type.
    pub by_type: BTreeMap<String, u64>,
    /// False when it stopped before the end (the request's time budget, Redis failing): the
    /// counts say what was deleted; send it again for the rest.
    pub complete: bool,
    /// Why it stopped early (null when complete).
    pub stopped: Option<String>,
}

/// Deletes every dead letter the filter matches, for good (as `weir dlq purge`). A long run
/// stops between pages before the request timeout and says so (`complete: false`).
#[utoipa::path(post, path = "/dlq/purge", operation_id = "purgeDeadLetters", tag = "dlq", request_body = PurgeBody,
    responses((status = 200, body = Purged), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn purge(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Purged>, ApiError> {
    let request: PurgeBody = body(bytes)?;
    let as_reprocess = ReprocessBody {
        types: request.types,
        reason: request.reason,
        pool: request.pool,
        since: request.since,
        until: request.until,
        where_: request.where_,
        ..ReprocessBody::default()
    };
    if !as_reprocess.has_filter() && request.all != Some(true) {
        return Err(ApiError::input(
            "all",
            "say what to purge: a filter (types, reason, pool, since, until, where), or {\"all\": true}",
        ));
    }
    let filter = as_reprocess.matching(&api)?;
    let mut audit = Audit::start(caller, "dlq.purge", as_reprocess.describe());
    let pace = paced(&mut audit, |d: &dlq::Purged| (d.deleted, 0, 0, &d.by_type));
    let done = dlq::purge(&api.redis, &api.config, &filter, pace).await?;
    audit.progress(done.deleted, 0, 0, &done.by_type);
    audit.end(done.stopped.as_deref());
    Ok(Json(Purged {
        purged: done.deleted,
        deleted: done.deleted,
        by_type: done.by_type,
        complete: done.complete,
        stopped: done.stopped,
    }))
}

/// What a forget did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    /// The dead letter's ID, as given.
    pub id: String,
    /// Always 1 (a missing dead letter answers 404).
    pub deleted: u64,
}

/// Deletes one dead letter for good (as `weir dlq forget`): only the letter named, in the
/// one partition whose DLQ holds it.
#[utoipa::path(delete, path = "/dlq/{id}", operation_id = "forgetDeadLetter", tag = "dlq",
    params(("id" = String, Path, description = "The dead letter's ID as the listing gives it: `1700000000000-0`, or with partitions `<partition>/<entry ID>` with the `/` sent as `%2F` (`1%2F1700000000000-0`); a bare ID is taken only where one partition alone holds it")),
    responses((status = 200, body = Forgotten), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "a bare ID that several partitions' DLQs hold; `candidates` lists the qualified IDs")))]
pub async fn forget(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> Result<Json<Forgotten>, ApiError> {
    let parsed = dead_letter_id(&id)?;
    let deleted = dlq::forget(&api.redis, &api.config, &[parsed]).await?;
    audit(access, "dlq.forget", &id, deleted);
    if deleted == 0 {
        return Err(ApiError::not_found(format!("no dead letter {id}")));
    }
    Ok(Json(Forgotten { id, deleted }))
}

/// A pool's state after pause or resume.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PoolState {
    pub pool: String,
    /// `paused` or `running`.
    pub state: String,
    /// False when the pool already was in that state.
    pub changed: bool,
}

async fn set_paused(
    api: &Api,
    access: Access,
    pool: String,
    paused: bool,
) -> Result<Json<PoolState>, ApiError> {
    if api.config.pool(&pool).is_none() {
        return Err(ApiError::not_found(format!("no pool named `{pool}`")));
    }
    let key = api.config.stream.paused_key();
    let changed = api.redis.set_member(&key, &pool, paused).await?;
    let action = if paused { "pool.pause" } else { "pool.resume" };
    audit(access, action, &pool, u64::from(changed));
    let state = if paused { "paused" } else { "running" };
    Ok(Json(PoolState {
        pool,
        state: state.into(),
        changed,
    }))
}

/// Stops a pool reading (as `weir pause`): it joins `<stream>:paused`.
#[utoipa::path(post, path = "/pools/{name}/pause", operation_id = "pausePool", tag = "pools",
    params(("name" = String, Path, description = "A configured pool")),
    responses((status = 200, body = PoolState), (status = 404, body = super::error::ErrorBody)))]
pub async fn pause(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<PoolState>, ApiError> {
    set_paused(&api, access, name, true).await
}

/// Lets a paused pool read again (as `weir resume`).
#[utoipa::path(post, path = "/pools/{name}/resume", operation_id = "resumePool", tag = "pools",
    params(("name" = String, Path, description = "A configured pool")),
    responses((status = 200, body = PoolState), (status = 404, body = super::error::ErrorBody)))]
pub async fn resume(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<PoolState>, ApiError> {
    set_paused(&api, access, name, false).await
}
