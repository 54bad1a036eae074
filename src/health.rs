//! `/healthz`, `/readyz` and `/metrics`, plus the loops that keep their inputs fresh: the
//! paused-pool set and the gauges (one XINFO GROUPS per interval, not per scrape). The stall
//! detector behind `/readyz` is `crate::liveness`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::{Activity, Pool};
use crate::liveness::{Stall, Stalls};
use crate::metrics;
use crate::redis::Redis;
use crate::status::{self, PoolStatus, UnreadCounts};

/// A health check never waits longer than this on Redis.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the endpoints read.
pub struct Health {
    pub redis: Redis,
    pub config: Arc<Config>,
    pub pools: watch::Receiver<Vec<Arc<Pool>>>,
    pub activity: Arc<Activity>,
    pub prometheus: Option<PrometheusHandle>,
    /// The engine's counts of undelivered entries where Redis has no lag: `/healthz`, the
    /// gauges and the monitor hash share them.
    pub unread: Arc<UnreadCounts>,
    /// The stalled pools, kept by the stall detector.
    pub stalls: Arc<Stalls>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    status: &'static str,
    stream_length: Option<u64>,
    dlq_length: Option<u64>,
    consumer_groups: Option<u64>,
    /// Delayed events waiting (contract §13), every partition's.
    scheduled: Option<u64>,
    /// How late the most overdue delayed event is (0 when none is).
    scheduled_overdue_seconds: Option<f64>,
    last_processed_at: Option<String>,
    pools: Vec<PoolReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A pool in `/healthz`: the shared [`PoolStatus`] plus what only this process knows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolReport {
    name: String,
    paused: bool,
    consumers: u64,
    pending: u64,
    lag: Option<u64>,
    /// Undelivered plus pending, counted where Redis has no lag: `weir_pool_backlog`.
    backlog: u64,
    in_flight: usize,
    /// Stalled in this process (see `/readyz`).
    stalled: bool,
    /// Ordered pools: the owner and epoch of each stream or partition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    owners: Vec<crate::status::OwnerStatus>,
    /// Rate-limited pools (contract §14): the limit, and entries waiting for a start token
    /// in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<crate::status::RateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_waiting: Option<u64>,
}

impl PoolReport {
    fn new(view: PoolStatus, in_flight: usize, stalled: bool) -> PoolReport {
        PoolReport {
            name: view.name,
            paused: view.paused,
            consumers: view.consumers,
            pending: view.pending,
            lag: view.lag,
            backlog: view.backlog,
            in_flight,
            stalled,
            owners: view.owners,
            rate_limit: view.rate_limit,
            rate_waiting: view.rate_waiting,
        }
    }
}

/// Handlers running for pool `name` in this process, over its partitions.
fn in_flight(running: &[Arc<Pool>], name: &str) -> usize {
    running
        .iter()
        .filter(|p| *p.name == *name)
        .map(|p| p.in_flight.load(Ordering::Relaxed))
        .sum()
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

impl Health {
    async fn report(&self) -> Result<Report, crate::error::RedisError> {
        let stream = &self.config.stream;
        self.redis.ping(CHECK_TIMEOUT).await?;
        let check = async {
            let totals = status::totals_with(&self.redis, stream, &self.unread).await?;
            let paused = status::paused(&self.redis, stream).await?;
            let scheduled = crate::schedule::delayed::summary(&self.redis, stream).await?;
            Ok::<_, crate::error::RedisError>((totals, paused, scheduled))
        };
        let (totals, paused, scheduled) = tokio::time::timeout(CHECK_TIMEOUT * 2, check)
            .await
            .map_err(|_| crate::error::RedisError {
            command: "healthz",
            message: "Redis did not answer in time".into(),
            kind: crate::error::RedisErrorKind::Connection,
        })??;
        let running = self.pools.borrow().clone();
        let stalls = self.stalls.current();
        let mut owners = std::collections::HashMap::new();
        for p in self.config.pools.iter().filter(|p| p.order_key.is_some()) {
            let found = crate::status::owners(&self.redis, &self.config, &p.name).await?;
            owners.insert(p.name.clone(), found);
        }
        let pools: Vec<PoolReport> = self
            .config
            .pools
            .iter()
            .map(|p| {
                let mut view = PoolStatus::of(&p.name, &totals, &paused);
                view.owners = owners.remove(&p.name).unwrap_or_default();
                view.rate_limit = p.rate.as_ref().map(crate::status::RateStatus::of);
                view.rate_waiting = crate::consumer::rate_waiting(&running, &p.name);
                let stalled = stalls.iter().any(|s| s.name == p.name);
                PoolReport::new(view, in_flight(&running, &p.name), stalled)
            })
            .collect();
        let dlq = totals.dlq_length;
        let degraded = dlq > self.config.health.degraded_dlq_length
            || pools
                .iter()
                .any(|p| p.lag.unwrap_or(0) > self.config.health.degraded_lag);
        Ok(Report {
            status: if degraded { "degraded" } else { "healthy" },
            stream_length: Some(totals.stream_length),
            dlq_length: Some(dlq),
            consumer_groups: Some(totals.groups.len() as u64),
            scheduled: Some(scheduled.scheduled),
            scheduled_overdue_seconds: Some(scheduled.overdue_seconds),
            last_processed_at: self.activity.last_ms().map(rfc3339),
            pools,
            error: None,
        })
    }
}

async fn healthz(State(health): State<Arc<Health>>) -> Response {
    match health.report().await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(e) => {
            let report = Report {
                status: "unhealthy",
                stream_length: None,
                dlq_length: None,
                consumer_groups: None,
                scheduled: None,
                scheduled_overdue_seconds: None,
                last_processed_at: health.activity.last_ms().map(rfc3339),
                pools: Vec::new(),
                error: Some(format!(
                    "Redis at {} unreachable: {}",
                    health.redis.url(),
                    e.message
                )),
            };
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(report)).into_response()
        }
    }
}

/// `/readyz`'s body: ready, stalled (naming the pools), or unhealthy (Redis unreachable).
#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pools: Vec<Stall>,
}

/// 200 while every running pool makes progress; 503 naming the stalled pools, or when Redis
/// is unreachable (contract §15).
async fn readyz(State(health): State<Arc<Health>>) -> Response {
    if health.redis.ping(CHECK_TIMEOUT).await.is_err() {
        let body = Readiness {
            status: "unhealthy",
            pools: Vec::new(),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let pools = health.stalls.current();
    let (code, status) = if pools.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stalled")
    };
    (code, axum::Json(Readiness { status, pools })).into_response()
}

async fn metrics_text(State(health): State<Arc<Health>>) -> Response {
    match &health.prometheus {
        Some(handle) => crate::metrics::render(handle).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics recorder owned by the embedding application\n",
        )
            .into_response(),
    }
}

/// `/healthz`, `/readyz` and `/metrics`; the composition root (`app/http.rs`) serves them
/// beside the admin API and the dashboard.
pub(crate) fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health)
}

/// Refreshes the paused set every 250 ms and the gauges every `every`.
pub(crate) async fn watch_loop(
    health: Arc<Health>,
    paused: watch::Sender<Arc<HashSet<String>>>,
    every: Duration,
    cancel: CancellationToken,
) {
    let key = health.config.stream.paused_key();
    let mut since_gauges = Duration::MAX;
    let tick = Duration::from_millis(250);
    loop {
        if let Ok(members) = health.redis.members(&key).await {
            let set: HashSet<String> = members.into_iter().collect();
            if **paused.borrow() != set {
                tracing::info!(paused = ?set, "paused pools changed");
                paused.send_replace(Arc::new(set));
            }
        }
        if since_gauges >= every {
            since_gauges = Duration::ZERO;
            let current = paused.borrow().clone();
            refresh_gauges(&health, &current).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => since_gauges = since_gauges.saturating_add(tick),
            _ = cancel.cancelled() => break,
        }
    }
}

async fn refresh_gauges(health: &Health, paused: &HashSet<String>) {
    let stream = &health.config.stream;
    let Ok(totals) = status::totals_with(&health.redis, stream, &health.unread).await else {
        return;
    };
    metrics::stream_lengths(totals.stream_length, totals.dlq_length);
    if let Ok(s) = crate::schedule::delayed::summary(&health.redis, stream).await {
        metrics::scheduled(s.scheduled, s.overdue_seconds);
    }
    let running = health.pools.borrow().clone();
    let mut seen = HashSet::new();
    for pool in running.iter() {
        // One report per pool, not per partition.
        if !seen.insert(pool.name.clone()) {
            continue;
        }
        let view = PoolStatus::of(&pool.name, &totals, paused);
        metrics::pool_backlog(&view.name, view.backlog);
        let oldest = view
            .oldest_pending(&health.redis, stream)
            .await
            .ok()
            .flatten();
        metrics::oldest_pending(&view.name, oldest);
        metrics::group_consumers(&view.name, view.consumers);
        let ordered: Vec<_> = running
            .iter()
            .filter(|p| p.name == pool.name)
            .filter_map(|p| p.ordered.as_ref())
            .collect();
        if !ordered.is_empty() {
            metrics::ordered(
                &pool.name,
                ordered.iter().map(|o| o.waiting()).sum(),
                ordered.iter().filter(|o| o.owned_epoch().is_some()).count(),
            );
        }
        metrics::pool_state(
            &view.name,
            view.pending,
            view.lag,
            in_flight(&running, &view.name),
            view.paused,
        );
    }
}
