//! `GET /telemetry`: the `<stream>:monitor` hash and the `<stream>:telemetry:<value>` hashes
//! (contract §12) as the engine wrote them, for tools that speak HTTP rather than Redis.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::input::Params;
use super::read::PairsQuery;
use super::{Api, ApiError};
use crate::telemetry::{self, View};

/// Query parameters of `GET /telemetry`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TelemetryQuery {
    /// Only these telemetry values (repeat, or comma separate); default: every value of the
    /// index `<stream>:telemetry`, sorted.
    value: Option<String>,
    /// Values shown at most, 1 to 1000 (default 50); `more` counts the rest.
    limit: Option<u32>,
}

/// The monitor hash and the telemetry hashes.
#[utoipa::path(get, path = "/telemetry", operation_id = "telemetry", tag = "status", params(TelemetryQuery),
    responses((status = 200, body = View), (status = 400, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)))]
pub async fn show(State(api): State<Arc<Api>>, query: PairsQuery) -> Result<Json<View>, ApiError> {
    let p = Params::read(query, &["value", "limit"])?;
    let view = telemetry::view(&api.redis, &api.config, &p.all("value"), p.limit()?).await?;
    Ok(Json(view))
}
