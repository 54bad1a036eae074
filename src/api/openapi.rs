//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and the response types, then made exact for this engine in [`document`]:
//!
//! - what every parameter accepts, written once per parameter name as [`Params`] reads it
//!   (TIME, cursors, conditions, dead-letter IDs with this stream's partitions, this config's
//!   pool names, the DLQ reasons), and the bodies' rules serde alone cannot state ("IDs, or a
//!   filter, or all");
//! - the statuses the layers around every handler answer: 401 (auth), 403 (a write with the
//!   read token), 503 (Redis unreachable, or the request timeout), 400/413 for bodies, with
//!   the headers every answer carries.
//!
//! tests/openapi.rs holds it to the truth: a validator over the served document, and
//! requests generated from it against a live engine, every check on.
//!
//! [`Params`]: super::input::Params

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::input::MAX_LIMIT;
use super::{Api, MAX_IDS, error, history, jobs, read, scheduled, schedules, telemetry, write};
use crate::config::Config;
use crate::vocab::DlqReason;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "weir admin API", description = "Status, DLQ, replay jobs and pause/resume of a weir engine (contract §10). Every call needs `Authorization: Bearer <token>`: the admin token for everything, the read token for GET only. An empty query value is the same as none. TIME values: RFC 3339 (`2025-12-01T00:00:00Z`; without an offset, UTC), unix milliseconds, a stream ID, `now`, or relative to now (`-2h`, `-15m`, `-30s`, `-1d`); `since` must not be after `until`."),
    servers((url = "/api/v1")),
    paths(
        read::status, read::events, read::dlq_list, read::dlq_stats, read::dlq_show,
        write::reprocess, write::purge, write::forget, write::pause, write::resume,
        jobs::start, jobs::show, jobs::cancel, jobs::resume,
        scheduled::list, scheduled::schedule, scheduled::cancel,
        history::show, telemetry::show, schedules::list, schedules::pause,
        schedules::resume, show,
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
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the admin token (everything) or the read token (GET only)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document for this engine's config, as `GET /openapi.json` serves it.
pub fn document(config: &Config) -> Value {
    let mut doc = serde_json::to_value(<Doc as utoipa::OpenApi>::openapi()).unwrap_or_default();
    let grammar = Grammar::new(config);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                grammar.parameters(path, operation);
                statuses(path, method, operation);
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        grammar.bodies(schemas);
    }
    // An empty body is `{}`: a replay of everything up to now.
    if let Some(body) = doc.pointer_mut("/paths/~1replay/post/requestBody") {
        body["required"] = json!(false);
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openApiDocument", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn show(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(document(&api.config))
}

/// TIME as [`crate::timespec`] reads it, in its common forms; a calendar date in the
/// pattern is one every month has (days 1 to 28), from 1980 on. The server also takes every
/// other RFC 3339 date.
const TIME: &str = concat!(
    "now|-[0-9]{1,9}[smhd]|[0-9]{1,13}|[0-9]{1,13}-[0-9]{1,19}",
    "|(19[89][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
    "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?",
);
/// A `where` condition: `FIELD=VALUE` or `/json/pointer=VALUE` (no empty pointer segment).
const CONDITION: &str = "([^/=][^=]*|(/[^/=]+)+)=[\\s\\S]*";
/// A page cursor: the `next` of a previous page.
const CURSOR: &str = "[0-9]{1,5}-[0-9]{1,19}(-[0-9]{1,19})?";

/// What this engine's parameters and bodies accept.
struct Grammar {
    /// The configured pools' names.
    pools: Vec<Value>,
    /// A dead-letter ID (pattern, without anchors): bare, or qualified with a partition.
    letter_id: String,
    /// An event type some pool takes (`POST /scheduled` refuses others).
    routed_type: Value,
}

fn anchored(pattern: &str) -> String {
    format!("^({pattern})$")
}

/// `schema`, or an empty value (a query parameter given empty is not given).
fn or_empty(pattern: &str) -> String {
    format!("^(|{pattern})$")
}

impl Grammar {
    fn new(config: &Config) -> Grammar {
        let partitions: Vec<String> = (0..config.partitions().len().max(1))
            .map(|p| p.to_string())
            .collect();
        let routed: Vec<Value> = config
            .pools
            .iter()
            .flat_map(|p| p.types.iter())
            .map(|t| json!(t))
            .collect();
        let any_type = config
            .pools
            .iter()
            .any(|p| p.types.iter().any(|t| t == "*"));
        Grammar {
            routed_type: match any_type {
                true => json!({"type": "string", "minLength": 1}),
                false => json!({"type": "string", "enum": routed}),
            },
            pools: config.pools.iter().map(|p| json!(p.name)).collect(),
            letter_id: format!(
                "(({})/)?[0-9]{{1,19}}(-[0-9]{{1,19}})?",
                partitions.join("|")
            ),
        }
    }

    fn reasons() -> Vec<Value> {
        DlqReason::ALL.iter().map(|r| json!(r.as_str())).collect()
    }

    /// The schema of a parameter named `name` `where` (`query`, `path`), as the handlers
    /// read it; `None` leaves the annotation's.
    fn parameter(&self, name: &str, place: &str) -> Option<Value> {
        let with_empty = |mut values: Vec<Value>| {
            values.insert(0, json!(""));
            values
        };
        Some(match (place, name) {
            ("query", "limit") => json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
            ("query", "cursor") => json!({"type": "string", "pattern": or_empty(CURSOR)}),
            ("query", "since" | "until") => json!({"type": "string", "pattern": or_empty(TIME)}),
            ("query", "reason") => json!({"type": "string", "enum": with_empty(Self::reasons())}),
            ("query", "pool") => json!({"type": "string", "enum": with_empty(self.pools.clone())}),
            ("query", "where") => json!({
                "type": "array",
                "items": {"type": "string", "pattern": or_empty(CONDITION)},
            }),
            ("path", "id") => json!({"type": "string", "pattern": anchored(&self.letter_id)}),
            ("path", "name") => json!({"type": "string", "enum": self.pools}),
            ("path", "job") => json!({"type": "string", "minLength": 1}),
            _ => return None,
        })
    }

    fn parameters(&self, path: &str, operation: &mut Value) {
        let Some(params) = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for param in params {
            let name = param["name"].as_str().unwrap_or_default().to_string();
            let place = param["in"].as_str().unwrap_or_default().to_string();
            let own = match path.starts_with("/scheduled") {
                true => scheduled_parameter(&name, &place),
                false => None,
            };
            if let Some(schema) = own.or_else(|| self.parameter(&name, &place)) {
                param["schema"] = schema;
            }
        }
    }

    /// The bodies' rules: value grammars, and which fields go together.
    fn bodies(&self, schemas: &mut Map<String, Value>) {
        let nullable = |schema: Value| json!({"oneOf": [{"type": "null"}, schema]});
        let time = nullable(json!({"type": "string", "pattern": anchored(TIME)}));
        let conditions = nullable(json!({
            "type": "array",
            "items": {"type": "string", "pattern": anchored(CONDITION)},
        }));
        let reason = nullable(json!({"type": "string", "enum": Self::reasons()}));
        let pool = nullable(json!({"type": "string", "enum": self.pools}));
        let ids = nullable(json!({
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_IDS,
            "items": {"type": "string", "pattern": anchored(&self.letter_id)},
        }));
        for name in ["ReprocessBody", "PurgeBody", "ReplayBody"] {
            let Some(body) = schemas.get_mut(name) else {
                continue;
            };
            body["additionalProperties"] = json!(false);
            let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut set = |field: &str, schema: &Value| {
                if let Some(p) = props.get_mut(field) {
                    let description = p.get("description").cloned();
                    *p = schema.clone();
                    if let Some(d) = description {
                        p["description"] = d;
                    }
                }
            };
            set("since", &time);
            set("until", &time);
            set("where", &conditions);
            set("reason", &reason);
            set("pool", &pool);
            set("group", &pool);
            set("ids", &ids);
            // Whole numbers as far as the engine counts (u64), never a float's rounding.
            set(
                "limit",
                &nullable(json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})),
            );
            set(
                "rate",
                &nullable(json!({"type": "integer", "minimum": 1, "maximum": u64::MAX})),
            );
            set(
                "batchSize",
                &nullable(json!({"type": "integer", "minimum": 1, "maximum": 10_000})),
            );
        }
        for name in ["ReprocessBody", "PurgeBody"] {
            if let Some(body) = schemas.get_mut(name) {
                body["anyOf"] = selections(name == "ReprocessBody");
            }
        }
        if let Some(body) = schemas.get_mut("ScheduleBody") {
            let time = json!({"type": "string", "pattern": anchored(TIME)});
            schedule_body(body, &self.routed_type, &time);
        }
    }
}

/// A DURATION as [`crate::timespec::duration`] reads it, up to 99999 hours or 9999 days.
const DURATION: &str = "[0-9]{1,5}(\\.[0-9]{1,3})?(ms|s|m|h)|[0-9]{1,4}(\\.[0-9]{1,3})?d";
/// A cursor of `GET /scheduled`: `<due ms>-<seen>`.
const SCHEDULED_CURSOR: &str = "[0-9]{1,19}-[0-9]{1,19}";
/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LAST_MS: u64 = 253_402_300_799_999;

/// The parameters of `/scheduled…` that differ from the same names elsewhere.
fn scheduled_parameter(name: &str, place: &str) -> Option<Value> {
    Some(match (place, name) {
        ("query", "cursor") => json!({"type": "string", "pattern": or_empty(SCHEDULED_CURSOR)}),
        ("path", "id") => json!({"type": "string", "minLength": 1}),
        _ => return None,
    })
}

/// `POST /scheduled`'s body: `type` one some pool takes, `data` any JSON but a string,
/// `at` or `delay` (exactly one), fields that are not weir's own.
fn schedule_body(body: &mut Value, event_type: &Value, time: &Value) {
    body["additionalProperties"] = json!(false);
    body["required"] = json!(["type", "data"]);
    let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    let mut set = |field: &str, schema: Value| {
        if let Some(p) = props.get_mut(field) {
            let description = p.get("description").cloned();
            *p = schema;
            if let Some(d) = description {
                p["description"] = d;
            }
        }
    };
    set("type", event_type.clone());
    set(
        "data",
        json!({"type": ["object", "array", "number", "boolean"]}),
    );
    set(
        "at",
        json!({"oneOf": [{"type": "null"}, time,
            {"type": "integer", "minimum": 0, "maximum": LAST_MS}]}),
    );
    set(
        "delay",
        json!({"oneOf": [{"type": "null"}, {"type": "string", "pattern": anchored(DURATION)}]}),
    );
    set(
        "id",
        json!({"oneOf": [{"type": "null"}, {"type": "string", "minLength": 1}]}),
    );
    set(
        "fields",
        json!({"oneOf": [{"type": "null"}, {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {"not": {"anyOf": [
                {"enum": ["type", "data", "id", "scheduled_for"]},
                {"pattern": "^dlq_"},
            ]}},
        }]}),
    );
    body["oneOf"] = json!([
        {"required": ["at"], "properties": {"at": {"not": {"type": "null"}}, "delay": {"type": "null"}}},
        {"required": ["delay"], "properties": {"delay": {"type": "string"}, "at": {"type": "null"}}},
    ]);
}

/// "Say what": `ids` alone (reprocess only), or `all: true`, or at least one filter field
/// (an empty list is no filter); never `ids` with a filter or `all`.
fn selections(with_ids: bool) -> Value {
    let absent = json!({"type": "null"});
    let absent_list = json!({"oneOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]});
    let not_all = json!({"enum": [false, null]});
    let no_ids = |mut shape: Value| {
        if with_ids {
            shape["properties"]["ids"] = absent.clone();
        }
        shape
    };
    let mut shapes = Vec::new();
    if with_ids {
        shapes.push(json!({
            "required": ["ids"],
            "properties": {
                "ids": {"type": "array"},
                "types": absent_list, "where": absent_list,
                "reason": absent, "pool": absent, "since": absent, "until": absent,
                "all": not_all,
            },
        }));
    }
    shapes.push(no_ids(json!({
        "required": ["all"],
        "properties": {"all": {"const": true}},
    })));
    for field in ["types", "where"] {
        shapes.push(no_ids(json!({
            "required": [field],
            "properties": {field: {"type": "array", "minItems": 1}, "all": not_all},
        })));
    }
    for field in ["reason", "pool", "since", "until"] {
        shapes.push(no_ids(json!({
            "required": [field],
            "properties": {field: {"type": "string"}, "all": not_all},
        })));
    }
    Value::Array(shapes)
}

/// An error answer's description, in the document.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// The statuses every handler can answer through the layers around it, and the headers
/// every answer carries.
fn statuses(path: &str, method: &str, operation: &mut Value) {
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut add = |status: &str, response: Value| {
        responses.entry(status).or_insert(response);
    };
    let mut unauthorized = error_response("No token, or a wrong one");
    unauthorized["headers"] = json!({"WWW-Authenticate": {"schema": {"const": "Bearer"}}});
    add("401", unauthorized);
    add(
        "503",
        error_response("Redis is unreachable, or the request took longer than 30 s"),
    );
    if method != "get" {
        add("403", error_response("A write with the read token"));
    }
    let has_body = operation.get("requestBody").is_some();
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if has_body {
        responses
            .entry("400")
            .or_insert(error_response("The body is not what the schema says"));
        responses
            .entry("413")
            .or_insert(error_response("The body is larger than 1 MiB"));
    }
    let letter = path.starts_with("/dlq");
    if letter && path.contains("{id}") {
        responses
            .entry("400")
            .or_insert(error_response("Not a dead-letter ID"));
    }
    if (letter && path.contains("{id}")) || path == "/dlq/reprocess" {
        responses.entry("409").or_insert(error_response(
            "A bare ID that several partitions' DLQs hold; `candidates` lists the qualified IDs",
        ));
    }
    let headers = json!({
        "Cache-Control": {"schema": {"const": "no-store"}},
        "X-Content-Type-Options": {"schema": {"const": "nosniff"}},
    });
    for response in responses.values_mut() {
        let own = response
            .get_mut("headers")
            .and_then(Value::as_object_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut all = headers.as_object().cloned().unwrap_or_default();
        all.extend(own);
        response["headers"] = Value::Object(all);
    }
}
