//! The write endpoints on the DLQ and the pools. Each logs an audit line.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::auth::{Access, audit};
use super::input::body;
use super::read::{dead_letter_id, filter};
use super::{Api, ApiError, MAX_IDS};
use crate::dlq::{self, Filter, FilterInput, Reprocessed, Selection};
use crate::redis::StreamId;

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

fn ids_of(ids: &[String]) -> Result<Vec<StreamId>, ApiError> {
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
        .map(|id| {
            StreamId::parse(id)
                .ok_or_else(|| ApiError::input("ids", format!("`{id}` is not a stream ID")))
        })
        .collect()
}

/// Moves dead letters back onto the stream, atomically per entry (as `weir dlq reprocess`).
#[utoipa::path(post, path = "/dlq/reprocess", tag = "dlq", request_body = ReprocessBody,
    responses((status = 200, body = Reprocessed), (status = 400, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn reprocess(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Reprocessed>, ApiError> {
    let request: ReprocessBody = body(bytes)?;
    let selection = request.selection(&api)?;
    let dry_run = request.dry_run.unwrap_or(false);
    let done = dlq::reprocess(&api.redis, &api.config, &selection, dry_run, |_| {}).await?;
    if !dry_run {
        let what = match &selection {
            Selection::Ids(_) => "ids",
            Selection::Matching(_) => "filter",
        };
        audit(access, "dlq.reprocess", what, done.moved);
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
pub struct Purged {
    /// Dead letters deleted.
    pub purged: u64,
}

/// Deletes every dead letter the filter matches, for good (as `weir dlq purge`).
#[utoipa::path(post, path = "/dlq/purge", tag = "dlq", request_body = PurgeBody,
    responses((status = 200, body = Purged), (status = 400, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn purge(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
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
    let purged = dlq::purge(&api.redis, &api.config, &filter, |_| {}).await?;
    audit(access, "dlq.purge", "filter", purged);
    Ok(Json(Purged { purged }))
}

/// What a forget did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    /// The dead letter's ID.
    pub id: String,
    /// Always 1 (a missing dead letter answers 404).
    pub deleted: u64,
}

/// Deletes one dead letter for good (as `weir dlq forget`).
#[utoipa::path(delete, path = "/dlq/{id}", tag = "dlq",
    params(("id" = String, Path, description = "The dead letter's DLQ entry ID")),
    responses((status = 200, body = Forgotten), (status = 404, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)))]
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
#[utoipa::path(post, path = "/pools/{name}/pause", tag = "pools",
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
#[utoipa::path(post, path = "/pools/{name}/resume", tag = "pools",
    params(("name" = String, Path, description = "A configured pool")),
    responses((status = 200, body = PoolState), (status = 404, body = super::error::ErrorBody)))]
pub async fn resume(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<PoolState>, ApiError> {
    set_paused(&api, access, name, false).await
}
