//! The API's one error type and the one place library errors become HTTP statuses (the CLI
//! maps the same [`OpError`] to exit codes in `cli/mod.rs`).

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{InputError, OpError, RedisError, RedisErrorKind};

/// An error answer: `{"error": "...", "field": "..."|null}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The query parameter or body field at fault, for 400s.
    pub field: Option<String>,
    /// For a 409 on a bare dead-letter ID: the qualified IDs it could mean.
    pub candidates: Option<Vec<String>>,
}

/// The JSON body of every error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and how to fix it when the caller can.
    pub error: String,
    /// The query parameter or body field at fault (400), else null.
    pub field: Option<String>,
    /// Only on a 409 for a bare dead-letter ID that several partitions' DLQs hold: every
    /// qualified ID (`<partition>/<entry ID>`) it could mean; send one of them instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            candidates: None,
        }
    }

    /// 400: `field` is wrong, `message` says how.
    pub fn input(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
            candidates: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        match e {
            OpError::Input(e) => e.into(),
            OpError::NotFound(m) => ApiError::not_found(m),
            OpError::Conflict(m) => ApiError::conflict(m),
            OpError::Ambiguous {
                message,
                candidates,
            } => ApiError {
                candidates: Some(candidates),
                ..ApiError::conflict(message)
            },
            OpError::Redis(e) => e.into(),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::input(e.field, e.message)
    }
}

impl From<RedisError> for ApiError {
    fn from(e: RedisError) -> ApiError {
        if e.is(RedisErrorKind::Connection) {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Redis unreachable: {}", e.message),
            )
        } else {
            tracing::warn!(error = %e, "admin API: Redis command failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

impl From<crate::replay::ReplayError> for ApiError {
    fn from(e: crate::replay::ReplayError) -> ApiError {
        OpError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            field: self.field,
            candidates: self.candidates,
        };
        (self.status, Json(body)).into_response()
    }
}

/// Unknown paths under `/api/v1`.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see GET /api/v1/openapi.json")
}

/// Every answer of the API is private and says what it is: no cache (or proxy) keeps a
/// copy, and no browser guesses another content type.
pub async fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Every request answers within [`super::REQUEST_TIMEOUT`]: 503 after that.
pub async fn timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(super::REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {} s (is Redis slow or unreachable?)",
                super::REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}
