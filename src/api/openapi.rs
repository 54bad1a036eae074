//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and the response types, so it cannot drift from the code.

use axum::Json;

use super::{error, history, jobs, read, telemetry, write};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "weir admin API", description = "Status, DLQ, replay jobs and pause/resume of a weir engine (contract §10). Every call needs `Authorization: Bearer <token>`: the admin token for everything, the read token for GET only."),
    servers((url = "/api/v1")),
    paths(
        read::status, read::events, read::dlq_list, read::dlq_stats, read::dlq_show,
        write::reprocess, write::purge, write::forget, write::pause, write::resume,
        jobs::start, jobs::show, jobs::cancel, jobs::resume,
        history::show, telemetry::show, show,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct Doc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(<Doc as utoipa::OpenApi>::openapi()).unwrap_or_default()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn show() -> Json<serde_json::Value> {
    Json(document())
}
