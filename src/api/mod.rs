//! The admin HTTP API (`/api/v1`, contract §10): a thin layer over the library operations
//! the CLI calls too ([`crate::status`], [`crate::dlq`], [`crate::replay`]), so the two
//! cannot drift apart. Off unless a token is configured.
//!
//! - [`auth`]: bearer tokens (constant-time), admin vs read access, the audit line.
//! - [`error`]: the one mapping from [`OpError`](crate::error::OpError) to HTTP statuses.
//! - [`read`]: status, recent events, DLQ listing, stats and detail.
//! - [`telemetry`]: the monitor and telemetry hashes the engine writes to Redis.
//! - [`write`]: reprocess, forget, pause and resume.
//! - [`scheduled`]: delayed events: list, schedule one, cancel by id.
//! - [`schedules`]: recurring schedules: list, pause, resume.
//! - [`jobs`]: replay jobs run inside the engine, cancellable, stopped cleanly on shutdown.
//! - [`history`]: processed/failed per pool over the last 15 minutes, sampled in memory.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers' annotations.
//! - [`server`]: the engine's HTTP listener (plain or TLS): header and idle timeouts, the
//!   connection cap, a bounded shutdown.
//! - [`tls`]: the listener's optional TLS settings.

mod auth;
mod error;
mod history;
mod input;
mod jobs;
pub mod openapi;
mod read;
mod scheduled;
mod schedules;
pub mod server;
mod telemetry;
pub mod tls;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::Pool;
use crate::redis::Redis;

pub use error::ApiError;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 1024 * 1024;
/// Most dead-letter IDs one reprocess call takes (400 naming `ids` beyond).
pub const MAX_IDS: usize = 10_000;
/// A request that takes longer answers 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the API's handlers share: the engine's Redis and config, its running pools (for the
/// history), and the replay jobs it runs.
pub struct Api {
    redis: Redis,
    config: Arc<Config>,
    pools: watch::Receiver<Vec<Arc<Pool>>>,
    jobs: jobs::Jobs,
    history: history::History,
    /// The publisher of `POST /scheduled`, built on first use (it compiles the schemas).
    publisher: std::sync::OnceLock<crate::publisher::Publisher>,
}

impl Api {
    /// The API for this engine, or `None` when no token is configured (then `/api/*` is 404).
    pub fn new(
        redis: Redis,
        config: Arc<Config>,
        pools: watch::Receiver<Vec<Arc<Pool>>>,
    ) -> Option<Arc<Api>> {
        if !config.http.api_enabled() {
            return None;
        }
        Some(Arc::new(Api {
            history: history::History::new(&config),
            redis,
            config,
            pools,
            jobs: jobs::Jobs::default(),
            publisher: std::sync::OnceLock::new(),
        }))
    }

    /// The `/api/v1` routes, behind authentication, a body cap and a request timeout; every
    /// answer (401s included) with `Cache-Control: no-store` and `X-Content-Type-Options:
    /// nosniff`.
    pub fn router(self: &Arc<Api>) -> Router {
        let v1 = Router::new()
            .route("/status", get(read::status))
            .route("/events", get(read::events))
            .route("/dlq", get(read::dlq_list))
            .route("/dlq/stats", get(read::dlq_stats))
            .route("/dlq/reprocess", post(write::reprocess))
            .route("/dlq/purge", post(write::purge))
            .route("/dlq/{id}", get(read::dlq_show).delete(write::forget))
            .route("/scheduled", get(scheduled::list).post(scheduled::schedule))
            .route("/scheduled/{id}", axum::routing::delete(scheduled::cancel))
            .route("/replay", post(jobs::start))
            .route("/replay/{job}", get(jobs::show).delete(jobs::cancel))
            .route("/replay/{job}/resume", post(jobs::resume))
            .route("/stats/history", get(history::show))
            .route("/telemetry", get(telemetry::show))
            .route("/pools/{name}/pause", post(write::pause))
            .route("/pools/{name}/resume", post(write::resume))
            .route("/schedules", get(schedules::list))
            .route("/schedules/{schedule}/pause", post(schedules::pause))
            .route("/schedules/{schedule}/resume", post(schedules::resume))
            .route("/openapi.json", get(openapi::show))
            .fallback(error::not_found)
            .layer(axum::middleware::from_fn(error::timeout))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                auth::check,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(axum::middleware::map_response(error::no_store))
            .with_state(self.clone());
        Router::new().nest("/api/v1", v1)
    }

    /// Background work of the API: the history sampler, until `cancel`.
    pub async fn sample_loop(self: Arc<Api>, cancel: CancellationToken) {
        history::sample_loop(self, cancel).await;
    }

    /// Stops every replay job between batches (each stays resumable) and waits for them.
    pub async fn shutdown(&self) {
        self.jobs.shutdown().await;
    }
}
