//! Delayed events (contract §13): list soonest first, schedule one, cancel by id. The same
//! library calls as `weir scheduled` and `weir publish --delay|--at`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::auth::{Access, audit};
use super::input::{Params, body};
use super::read::PairsQuery;
use super::{Api, ApiError};
use crate::publisher::{NewEvent, Publisher, Rejection, Scheduled};
use crate::redis::Due;
use crate::schedule::delayed::{self, Cursor, Page, rfc3339};

/// Query parameters of `GET /scheduled`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ScheduledQuery {
    /// Only this type (repeat, or comma separate, for several).
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Delayed events, soonest first, each with its due time (as `weir scheduled list`).
#[utoipa::path(get, path = "/scheduled", operation_id = "listScheduled", tag = "scheduled", params(ScheduledQuery),
    responses((status = 200, body = Page), (status = 400, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)))]
pub async fn list(State(api): State<Arc<Api>>, query: PairsQuery) -> Result<Json<Page>, ApiError> {
    let p = Params::read(query, &["type", "limit", "cursor"])?;
    let types = p.all("type");
    let limit = p.limit()?;
    let after = p.one("cursor").map(str::parse::<Cursor>).transpose()?;
    Ok(Json(
        delayed::page(&api.redis, &api.config.stream, &types, limit, after).await?,
    ))
}

/// A delayed event to schedule: `type`, `data`, and `at` or `delay`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleBody {
    /// When it is due: a TIME (RFC 3339, unix ms as text, a stream ID, `now`, `-2h`) or
    /// unix ms as a number; a time past is due at once. Give this or `delay`.
    #[schema(value_type = Option<String>)]
    pub at: Option<serde_json::Value>,
    /// How long after now (Redis's clock) it is due: a number and a unit, `ms`, `s`, `m`,
    /// `h` or `d` (`1.5s`, `15m`). Give this or `at`.
    pub delay: Option<String>,
    /// The event type: one some pool takes.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// The event body: a JSON object, array, number or boolean (not a string, not null),
    /// checked against the type's schema.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// The event id: deduplicated as `weir publish --id`, and how to cancel it; generated
    /// when absent.
    pub id: Option<String>,
    /// Pass-through fields (`tenant`, `correlation_id`…); not `type`, `data`, `id`,
    /// `scheduled_for` nor `dlq_*`.
    pub fields: Option<BTreeMap<String, String>>,
    /// With partitions: events with one key go to one partition (default: the id).
    pub key: Option<String>,
}

impl ScheduleBody {
    /// The event and when it is due, or a 400 naming the field at fault.
    fn event(self) -> Result<(NewEvent, Due), ApiError> {
        let due = match (self.at, self.delay) {
            (Some(_), Some(_)) => {
                return Err(ApiError::input("at", "give `at` or `delay`, not both"));
            }
            (None, None) => {
                return Err(ApiError::input(
                    "at",
                    "say when: `at` (a TIME or unix ms) or `delay` (a duration such as 30s)",
                ));
            }
            (None, Some(delay)) => Due::After(
                crate::timespec::duration(&delay).map_err(|e| ApiError::input("delay", e))?,
            ),
            (Some(serde_json::Value::String(at)), None) => {
                Due::At(crate::timespec::due_at(&at).map_err(|e| ApiError::input("at", e))?)
            }
            (Some(at), None) => Due::At(at.as_u64().ok_or_else(|| {
                ApiError::input("at", "`at` is a TIME as text or a whole number of unix ms")
            })?),
        };
        let event_type = self
            .event_type
            .ok_or_else(|| ApiError::input("type", "`type` is required"))?;
        let data = match self.data {
            None => return Err(ApiError::input("data", "`data` is required")),
            Some(serde_json::Value::String(_)) => {
                return Err(ApiError::input(
                    "data",
                    "`data` is the JSON body itself (an object, array, number…), not a string",
                ));
            }
            Some(value) => value.to_string(),
        };
        if self.id.as_deref() == Some("") {
            return Err(ApiError::input(
                "id",
                "`id` must not be empty; leave it out to have one generated",
            ));
        }
        let event = NewEvent {
            event_type,
            data,
            id: self.id,
            fields: self.fields.unwrap_or_default(),
            key: self.key,
        };
        Ok((event, due))
    }
}

/// A delayed event just scheduled.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleAnswer {
    /// The event id (generated when the body had none): how to cancel it.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it is due, RFC 3339.
    pub due_at: String,
    /// When it is due, unix ms.
    pub due_ms: u64,
}

/// The refusal of an event as a 400 naming its field.
fn refused(rejection: Rejection) -> ApiError {
    let field = match &rejection {
        Rejection::Invalid(_) => "data",
        Rejection::Unrouted { .. } => "type",
        Rejection::Bad(m) if m.contains("field `") => "fields",
        Rejection::Bad(_) => "type",
    };
    ApiError::input(field, rejection.to_string())
}

/// Schedules one delayed event (as `weir publish --delay|--at`): validated as a publish is
/// (schema, alignment, routing, size), deduplicated by id: an id published or scheduled
/// within the dedup window answers 409 and adds nothing.
#[utoipa::path(post, path = "/scheduled", operation_id = "scheduleEvent", tag = "scheduled", request_body = ScheduleBody,
    responses((status = 201, body = ScheduleAnswer, description = "Scheduled"),
        (status = 400, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "The id was published or scheduled within the dedup window: nothing added"),
        (status = 403, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn schedule(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ScheduleAnswer>), ApiError> {
    let request: ScheduleBody = body(bytes)?;
    let (event, due) = request.event()?;
    let publisher = api.publisher()?;
    let partition = publisher.partition(&event);
    let dedup = publisher.dedup_id(&event).unwrap_or_default();
    let done = publisher
        .schedule_to(&event, due, partition)
        .await?
        .map_err(refused)?;
    let added = matches!(done, Scheduled::Added { .. });
    audit(access, "scheduled.add", &dedup, u64::from(added));
    match done {
        Scheduled::Added { due_ms, id } => Ok((
            StatusCode::CREATED,
            Json(ScheduleAnswer {
                id,
                event_type: event.event_type,
                due_at: rfc3339(due_ms),
                due_ms,
            }),
        )),
        Scheduled::Duplicate(entry) => Err(ApiError::conflict(format!(
            "id `{dedup}` was already published as {entry} within the dedup window; nothing scheduled"
        ))),
        Scheduled::DuplicateScheduled(due_ms) => Err(ApiError::conflict(format!(
            "id `{dedup}` is already scheduled (for {}) within the dedup window; nothing scheduled",
            rfc3339(due_ms)
        ))),
    }
}

/// What a cancel did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelAnswer {
    /// Delayed events removed (at least 1; none answers 404).
    pub cancelled: u64,
}

/// Cancels the delayed event with this id (as `weir scheduled cancel`), in whichever
/// partition holds it; its id may be scheduled again afterwards.
#[utoipa::path(delete, path = "/scheduled/{id}", operation_id = "cancelScheduled", tag = "scheduled",
    params(("id" = String, Path, description = "The event id (`id` in the listing)")),
    responses((status = 200, body = CancelAnswer), (status = 404, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn cancel(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> Result<Json<CancelAnswer>, ApiError> {
    let done = delayed::cancel(&api.redis, &api.config, std::slice::from_ref(&id)).await?;
    audit(access, "scheduled.cancel", &id, done.cancelled);
    if done.cancelled == 0 {
        return Err(ApiError::not_found(format!(
            "no delayed event with id `{id}` is scheduled (moved to the stream already, cancelled, or never scheduled)"
        )));
    }
    Ok(Json(CancelAnswer {
        cancelled: done.cancelled,
    }))
}

impl Api {
    /// The publisher behind `POST /scheduled`, built on first use with the engine's schemas
    /// and refusing unrouted types as `weir publish` does.
    fn publisher(&self) -> Result<&Publisher, ApiError> {
        if let Some(p) = self.publisher.get() {
            return Ok(p);
        }
        let schemas =
            crate::schema::Schemas::load(self.config.schemas_dir.as_deref()).map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot load the schemas to validate the event: {e}"),
                )
            })?;
        let publisher = Publisher::new(self.redis.clone(), &self.config, Arc::new(schemas))
            .refuse_unrouted(true);
        Ok(self.publisher.get_or_init(|| publisher))
    }
}
