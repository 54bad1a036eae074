//! Bearer tokens: `admin_token` may do everything, `read_token` only GET. Compared in
//! constant time; never logged, never echoed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{Api, ApiError};
use crate::config::Secret;

/// Which token a request carried; handlers name it in their audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    Read,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::Read => "read",
        }
    }
}

/// Whether `given` is `token`, in time independent of where they differ.
fn same(given: &[u8], token: &Option<Secret>) -> bool {
    token
        .as_ref()
        .is_some_and(|t| bool::from(given.ct_eq(t.expose().as_bytes())))
}

fn access(api: &Api, request: &Request) -> Option<Access> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let given = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    let http = &api.config.http;
    // Both compared, so the time does not tell which token matched.
    let admin = same(given, &http.admin_token);
    let read = same(given, &http.read_token);
    if admin {
        Some(Access::Admin)
    } else if read {
        Some(Access::Read)
    } else {
        None
    }
}

/// Who sent a request, for the audit lines: the token's kind and the client's address
/// (`None` when the listener did not record it).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub access: Access,
    pub client: Option<SocketAddr>,
}

impl Caller {
    /// The client's address as the audit lines show it.
    pub fn client(&self) -> String {
        self.client
            .map_or_else(|| "unknown".into(), |c| c.to_string())
    }
}

fn client_of(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// A refused request (401, 403) in the audit log: who, what, why — never the token sent.
fn refused(request: &Request, status: StatusCode, why: &str) {
    let client = client_of(request).map_or_else(|| "unknown".into(), |c| c.to_string());
    tracing::warn!(
        target: "weir::audit",
        client,
        method = %request.method(),
        path = request.uri().path(),
        status = status.as_u16(),
        why,
        "admin API refused"
    );
}

/// 401 without a valid token, 403 for a write with the read token (both in the audit log);
/// else the request goes on with its [`Access`] and [`Caller`] in its extensions.
pub async fn check(State(api): State<Arc<Api>>, mut request: Request, next: Next) -> Response {
    let Some(access) = access(&api, &request) else {
        refused(&request, StatusCode::UNAUTHORIZED, "missing or wrong token");
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <token>",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if access == Access::Read && !reads {
        refused(
            &request,
            StatusCode::FORBIDDEN,
            "a write with the read token",
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "the read token may only GET; writes need the admin token",
        )
        .into_response();
    }
    let caller = Caller {
        access,
        client: client_of(&request),
    };
    request.extensions_mut().insert(access);
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The audit line of a write: which token, what, on how many entries — never the token.
pub fn audit(access: Access, action: &str, target: &str, entries: u64) {
    tracing::info!(
        target: "weir::audit",
        token = access.as_str(),
        action,
        target,
        entries,
        "admin API write"
    );
}
