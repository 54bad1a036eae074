//! Recurring schedules (contract §13): list them, pause and resume one. Thin callers of
//! [`crate::schedule::recurring`], the functions `weir schedules` calls too.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;

use super::auth::{Access, audit};
use super::{Api, ApiError};
use crate::schedule::recurring::{self, ScheduleView};

/// Every configured schedule.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    /// In config order.
    pub schedules: Vec<ScheduleView>,
}

/// A schedule after pause or resume.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleChange {
    /// Its state now.
    pub schedule: ScheduleView,
    /// False when it already was in that state.
    pub changed: bool,
}

/// Every recurring schedule: its timetable, last and next tick (RFC 3339, UTC, by Redis's
/// clock), and whether it is paused (as `weir schedules --json`).
#[utoipa::path(get, path = "/schedules", operation_id = "listSchedules", tag = "schedules",
    responses((status = 200, body = ScheduleList)))]
pub async fn list(State(api): State<Arc<Api>>) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = recurring::list(&api.redis, &api.config).await?;
    Ok(Json(ScheduleList { schedules }))
}

async fn set_paused(
    api: &Api,
    access: Access,
    name: &str,
    paused: bool,
) -> Result<Json<ScheduleChange>, ApiError> {
    let (schedule, changed) = recurring::set_paused(&api.redis, &api.config, name, paused).await?;
    let action = if paused {
        "schedule.pause"
    } else {
        "schedule.resume"
    };
    audit(access, action, name, u64::from(changed));
    Ok(Json(ScheduleChange { schedule, changed }))
}

/// Stops a schedule publishing (as `weir schedules pause NAME`).
#[utoipa::path(post, path = "/schedules/{schedule}/pause", operation_id = "pauseSchedule", tag = "schedules",
    params(("schedule" = String, Path, min_length = 1, description = "A configured schedule's name")),
    responses((status = 200, body = ScheduleChange), (status = 404, description = "No schedule of that name", body = super::error::ErrorBody)))]
pub async fn pause(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleChange>, ApiError> {
    set_paused(&api, access, &name, true).await
}

/// Lets a paused schedule publish again; the ticks missed while paused are skipped (as
/// `weir schedules resume NAME`).
#[utoipa::path(post, path = "/schedules/{schedule}/resume", operation_id = "resumeSchedule", tag = "schedules",
    params(("schedule" = String, Path, min_length = 1, description = "A configured schedule's name")),
    responses((status = 200, body = ScheduleChange), (status = 404, description = "No schedule of that name", body = super::error::ErrorBody)))]
pub async fn resume(
    State(api): State<Arc<Api>>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleChange>, ApiError> {
    set_paused(&api, access, &name, false).await
}
