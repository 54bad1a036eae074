//! Processed and failed per pool over the last 15 minutes (the dashboard's chart): every
//! [`INTERVAL`] the sampler reads each pool's counters ([`crate::metrics::PoolMetrics`]) and
//! keeps the differences in a ring of [`BUCKETS`] per pool. Memory only: a restart starts
//! the chart afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Api, ApiError};
use crate::clock;
use crate::config::Config;

pub const INTERVAL: Duration = Duration::from_secs(10);
pub const BUCKETS: usize = 90;

/// One interval of one pool.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the interval, unix milliseconds.
    pub at: u64,
    pub processed: u64,
    /// Failed handler calls (every failed attempt).
    pub failed: u64,
}

#[derive(Default)]
struct Ring {
    /// Counter values at the last sample, and when it was taken.
    last: (u64, u64),
    points: VecDeque<Point>,
}

/// Every configured pool's ring.
pub struct History {
    started: u64,
    last_sample: Mutex<u64>,
    rings: Mutex<HashMap<String, Ring>>,
}

impl History {
    pub fn new(config: &Config) -> History {
        let rings = config
            .pools
            .iter()
            .map(|p| (p.name.clone(), Ring::default()))
            .collect();
        let now = clock::now_ms();
        History {
            started: now,
            last_sample: Mutex::new(now),
            rings: Mutex::new(rings),
        }
    }
}

/// Each pool's counters now, summed over its partitions.
fn counters(api: &Api) -> HashMap<String, (u64, u64)> {
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for pool in api.pools.borrow().iter() {
        let c = out.entry(pool.name.to_string()).or_default();
        c.0 += pool.metrics.processed_total.load(Ordering::Relaxed);
        c.1 += pool.metrics.failed_total.load(Ordering::Relaxed);
    }
    out
}

/// Closes the current interval: one point per pool.
fn sample(api: &Api) {
    let now = counters(api);
    let at = {
        let mut last = api
            .history
            .last_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *last, clock::now_ms())
    };
    let mut rings = api.history.rings.lock().unwrap_or_else(|e| e.into_inner());
    for (name, ring) in rings.iter_mut() {
        let (p, f) = now.get(name).copied().unwrap_or_default();
        ring.points.push_back(Point {
            at,
            processed: p.saturating_sub(ring.last.0),
            failed: f.saturating_sub(ring.last.1),
        });
        ring.last = (p, f);
        while ring.points.len() >= BUCKETS {
            ring.points.pop_front();
        }
    }
}

pub async fn sample_loop(api: Arc<Api>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => sample(&api),
            _ = cancel.cancelled() => break,
        }
    }
}

/// One pool's chart.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PoolHistory {
    pub name: String,
    /// Oldest first; the last point is the interval in progress.
    pub points: Vec<Point>,
}

/// The chart of every pool.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsHistory {
    /// Length of one interval.
    pub interval_seconds: u64,
    /// When the engine (and so the history) started, unix milliseconds.
    pub since: u64,
    pub pools: Vec<PoolHistory>,
}

/// Per pool, processed and failed per 10-second interval over the last 15 minutes.
#[utoipa::path(get, path = "/stats/history", operation_id = "statsHistory", tag = "status",
    responses((status = 200, body = StatsHistory)))]
pub async fn show(State(api): State<Arc<Api>>) -> Result<Json<StatsHistory>, ApiError> {
    let now = counters(&api);
    let at = *api
        .history
        .last_sample
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let rings = api.history.rings.lock().unwrap_or_else(|e| e.into_inner());
    let pools = api
        .config
        .pools
        .iter()
        .map(|pool| {
            let ring = rings.get(&pool.name);
            let mut points: Vec<Point> = ring
                .map(|r| r.points.iter().copied().collect())
                .unwrap_or_default();
            let last = ring.map_or((0, 0), |r| r.last);
            let (p, f) = now.get(&pool.name).copied().unwrap_or_default();
            points.push(Point {
                at,
                processed: p.saturating_sub(last.0),
                failed: f.saturating_sub(last.1),
            });
            PoolHistory {
                name: pool.name.clone(),
                points,
            }
        })
        .collect();
    Ok(Json(StatsHistory {
        interval_seconds: INTERVAL.as_secs(),
        since: api.history.started,
        pools,
    }))
}
