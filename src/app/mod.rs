//! The composition root: [`Engine::run`] wires config → redis → consumers → dispatch →
//! handlers → settle, plus the janitor, trimming and the HTTP endpoints, and drains them on
//! shutdown.

mod http;
mod start;

use start::{dedicated, start};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, PoolConfig};
use crate::consumer::{self, Activity, Leases, Membership, Ordered, Pool};
use crate::dispatch::Router;
use crate::error::{ConfigError, EngineError};
use crate::handler::{self, Handler};
use crate::health::{self, Health};
use crate::janitor;
use crate::keys;
use crate::metrics;
use crate::redis::Redis;
use crate::schema::Schemas;
use crate::task::{Fatal, Tasks};
use crate::telemetry::{self, Telemetry};
use crate::vocab::StreamId;

/// A configured engine, ready to [`run`](Engine::run).
pub struct Engine {
    config: Config,
    handlers: HashMap<String, Arc<dyn Handler>>,
    only: Option<Vec<String>>,
    /// Set once the HTTP listener is bound: with `http.listen` on port 0 only the engine
    /// knows the port.
    bound: watch::Sender<Option<SocketAddr>>,
    /// The HTTP listener's limits: contract §8's, shorter only in tests.
    http_limits: crate::api::server::Limits,
}

/// Where a running engine's `/healthz` and `/metrics` listen; see [`Engine::http_addr`].
#[derive(Clone)]
pub struct HttpAddr(watch::Receiver<Option<SocketAddr>>);

impl HttpAddr {
    /// Waits until the engine has bound its listener; `None` if it stopped before that.
    pub async fn get(&mut self) -> Option<SocketAddr> {
        self.0.wait_for(Option::is_some).await.ok().and_then(|a| *a)
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable in XINFO CONSUMERS.
pub fn consumer_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host.chars().filter(|c| !c.is_whitespace()).collect();
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

impl Engine {
    /// An engine for `config`; nothing connects until [`run`](Engine::run).
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            handlers: HashMap::new(),
            only: None,
            bound: watch::Sender::new(None),
            http_limits: crate::api::server::Limits::default(),
        }
    }

    /// The HTTP listener's header-read and idle timeouts (contract §8: 10 s and 60 s), for
    /// tests that cannot wait that long. Not part of the supported API.
    #[doc(hidden)]
    pub fn with_http_timeouts(mut self, header_read: Duration, idle: Duration) -> Engine {
        self.http_limits.header_read = header_read;
        self.http_limits.idle = idle;
        self
    }

    /// Uses `handler` for `pool` instead of the handler its config names.
    pub fn with_handler(mut self, pool: &str, handler: impl Handler) -> Engine {
        self.handlers.insert(pool.to_string(), Arc::new(handler));
        self
    }

    /// The address the HTTP endpoints are bound to once [`run`](Engine::run) started them:
    /// how to reach them with `http.listen = "127.0.0.1:0"`.
    pub fn http_addr(&self) -> HttpAddr {
        HttpAddr(self.bound.subscribe())
    }

    /// Runs only these pools (the others are still known for routing).
    pub fn only_pools(mut self, names: &[String]) -> Result<Engine, ConfigError> {
        if let Some(unknown) = names.iter().find(|n| self.config.pool(n).is_none()) {
            let known: Vec<&str> = self.config.pools.iter().map(|p| p.name.as_str()).collect();
            return Err(ConfigError::Invalid {
                key: "--pool".into(),
                problem: format!(
                    "no pool named `{unknown}` (configured: {})",
                    known.join(", ")
                ),
            });
        }
        self.only = (!names.is_empty()).then(|| names.to_vec());
        Ok(self)
    }

    fn handlers(&mut self) -> Result<Vec<Arc<dyn Handler>>, EngineError> {
        let mut out = Vec::new();
        for pool in &self.config.pools {
            let handler = match (self.handlers.remove(&pool.name), &pool.handler) {
                (Some(h), _) => h,
                (None, Some(cfg)) => {
                    handler::from_config(cfg).map_err(|message| EngineError::Handler {
                        pool: pool.name.clone(),
                        message,
                    })?
                }
                (None, None) => {
                    return Err(EngineError::Handler {
                        pool: pool.name.clone(),
                        message: "no handler: set `handler = { kind = \"http\" | \"exec\" | \"log\" | \"noop\", … }` in the pool, or register one in code".into(),
                    });
                }
            };
            out.push(handler);
        }
        Ok(out)
    }

    /// Runs until `shutdown` resolves, then drains per contract §2 and returns.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), EngineError> {
        let handlers = self.handlers()?;
        let config = Arc::new(self.config.clone());
        let schemas = Arc::new(Schemas::load(config.schemas_dir.as_deref())?);
        let router = Arc::new(Router::new(&config, schemas.clone()));
        let redis = Redis::new(&config.redis)?;
        // A schedule whose event the publisher would refuse is a config error (exit 2).
        crate::schedule::recurring::check_events(
            &config,
            &crate::Publisher::new(redis.clone(), &config, schemas),
        )?;
        let activity = Arc::new(Activity::default());
        let (pools_tx, pools_rx) = watch::channel(Vec::new());
        let health = Arc::new(Health {
            redis: redis.clone(),
            config: config.clone(),
            pools: pools_rx,
            activity: activity.clone(),
            prometheus: metrics::install(),
            unread: Arc::default(),
            stalls: Arc::default(),
        });
        let api = crate::api::Api::new(redis.clone(), config.clone(), health.pools.clone());
        let http_cancel = CancellationToken::new();
        let (addr, http) = http::serve(
            config.http_listen,
            health.clone(),
            api.clone(),
            self.http_limits,
            http_cancel.clone(),
        )
        .await
        .map_err(|source| EngineError::Listen {
            addr: config.http_listen,
            source,
        })?;
        self.bound.send_replace(Some(addr));
        tracing::info!(listen = %addr, redis = %redis.url(), stream = %config.stream.name, "weir starting");
        tracing::info!("listening on {addr}");

        let mut shutdown = std::pin::pin!(shutdown);
        let started = tokio::select! {
            r = start(&redis, &config, &self.only) => Some(r),
            _ = &mut shutdown => None,
        };
        let positions = match started {
            Some(Ok(positions)) => positions,
            Some(Err(e)) => {
                http_cancel.cancel();
                return Err(e.into());
            }
            None => {
                http_cancel.cancel();
                return Ok(());
            }
        };

        let (paused_tx, paused_rx) = watch::channel(Arc::new(HashSet::new()));
        let fatal = Arc::new(Fatal::default());
        // The exporter outlives the drain: it posts what the last handlers finish, then stops.
        let trace_stop = CancellationToken::new();
        let (tracer, exporter) = crate::trace::Tracer::new(&config.tracing, trace_stop.clone())
            .map_err(|problem| ConfigError::Invalid {
                key: "tracing.otlp_endpoint".into(),
                problem,
            })?;
        let shared = Shared {
            config: config.clone(),
            redis: redis.clone(),
            router,
            activity,
            consumer: consumer_name(),
            paused: paused_rx,
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            background: Tasks::new(fatal.clone()),
            feeders: Tasks::new(fatal.clone()),
            telemetry: Arc::new(Telemetry::new(&config)),
            tracer: Arc::new(tracer),
            trace_stop,
        };
        if let Some(exporter) = exporter {
            crate::metrics::trace_spans_dropped(0);
            shared.background.spawn("trace export", exporter.run());
        }
        let mut pools = Vec::new();
        for (index, (pool_config, handler)) in config.pools.iter().zip(handlers).enumerate() {
            if self
                .only
                .as_ref()
                .is_none_or(|o| o.contains(&pool_config.name))
            {
                pools.extend(shared.spawn_pool(index, pool_config, handler, &positions));
            }
        }
        pools_tx.send_replace(pools.clone());
        shared.spawn_background(&health, paused_tx, api.as_ref());
        shared.background.spawn(
            "stall detector",
            crate::liveness::watch_loop(
                pools.clone(),
                redis.clone(),
                config.janitor.interval,
                health.stalls.clone(),
                shared.stop.clone(),
            ),
        );

        tokio::select! {
            _ = shutdown => {}
            _ = fatal.fired() => {}
        }
        if let Some(api) = &api {
            // Replay jobs stop between batches, `interrupted` and resumable.
            api.shutdown().await;
        }
        shared.shut_down(&pools).await;
        http_cancel.cancel();
        let _ = http.await;
        redis.quit().await;
        if let Some((task, message)) = fatal.first() {
            tracing::error!(task, "weir stopped after a task panicked");
            return Err(EngineError::TaskPanicked { task, message });
        }
        tracing::info!("weir stopped");
        Ok(())
    }
}

/// What every pool of a running engine shares, and the trackers of its tasks.
struct Shared {
    config: Arc<Config>,
    redis: Redis,
    router: Arc<Router>,
    activity: Arc<Activity>,
    /// This process's consumer name in every group.
    consumer: String,
    paused: consumer::Paused,
    /// Cancelled when reading must stop (shutdown begins).
    stop: CancellationToken,
    /// Cancelled when the drain grace is over.
    abandon: CancellationToken,
    /// Ackers, lease keepers, trimming, gauges: stopped last.
    background: Tasks,
    /// Readers and janitors: everything that hands entries to workers.
    feeders: Tasks,
    /// Counted by every pool's hooks, flushed by the telemetry loop and once at shutdown.
    telemetry: Arc<Telemetry>,
    /// Every delivery's trace context and span (contract §15).
    tracer: Arc<crate::trace::Tracer>,
    /// Cancelled once the pools have drained: the span exporter's last post, then its end.
    trace_stop: CancellationToken,
}

impl Shared {
    /// One pool: its worker slots, queue and workers, shared by its partitions, and per
    /// partition a reader, a janitor, leases and an acker.
    fn spawn_pool(
        &self,
        index: usize,
        pool_config: &PoolConfig,
        handler: Arc<dyn Handler>,
        positions: &HashMap<(String, String), StreamId>,
    ) -> Vec<Arc<Pool>> {
        // Running plus queued: the reader may read one batch ahead of the workers, so a round
        // trip to Redis is never waited for while workers sit idle.
        let permits = Arc::new(Semaphore::new(
            pool_config.concurrency + pool_config.read_count,
        ));
        let (jobs_tx, jobs_rx) = async_channel::unbounded();
        let workers = TaskTracker::new();
        metrics::register_pool(&pool_config.name);
        let type_labels = Arc::new(metrics::TypeLabels::for_pool(&self.config, pool_config));
        let members = Arc::new(Membership::new(self.config.stream.partitions));
        let scale = Arc::new(consumer::scale::Scale::new(pool_config));
        let handler_runs_inline = handler.runs_inline();
        let rate = pool_config.rate.as_ref().map(|limit| {
            metrics::register_rate(&pool_config.name);
            Arc::new(crate::flow::RateLimiter::new(
                self.redis.clone(),
                &self.config.stream.name,
                &pool_config.name,
                limit,
                pool_config.concurrency,
            ))
        });
        let progress = Arc::new(consumer::Progress::default());
        if pool_config.order_key.is_some() {
            self.background.spawn(
                "ordered members",
                consumer::ownership::members_loop(
                    self.redis.clone(),
                    keys::members(&self.config.stream.name, &pool_config.name),
                    self.consumer.clone(),
                    consumer::ordered::renew_period(pool_config.retry.visibility_timeout),
                    members.clone(),
                    self.stop.clone(),
                ),
            );
        }
        let mut pools = Vec::new();
        for part in self.config.stream.partition_list() {
            let (acks_tx, acks_rx) = mpsc::unbounded_channel();
            let last = positions
                .get(&(part.name.clone(), pool_config.name.clone()))
                .copied()
                .unwrap_or(StreamId::ZERO);
            let ordered = pool_config.order_key.clone().map(|key| {
                let lease = keys::owner(&part.name, &pool_config.name);
                Ordered::new(
                    key,
                    lease,
                    pool_config.retry.visibility_timeout,
                    members.clone(),
                )
            });
            let pool = Arc::new(Pool {
                index,
                name: pool_config.name.as_str().into(),
                config: pool_config.clone(),
                stream: part,
                consumer: self.consumer.clone(),
                redis: self.redis.clone(),
                router: self.router.clone(),
                handler: handler.clone(),
                leases: Leases::default(),
                acks: acks_tx,
                permits: permits.clone(),
                jobs: jobs_tx.clone(),
                scale: scale.clone(),
                metrics: metrics::PoolMetrics::new(&pool_config.name, type_labels.clone()),
                in_flight: AtomicUsize::new(0),
                last_delivered: Mutex::new(last),
                paused: self.paused.clone(),
                activity: self.activity.clone(),
                stop: self.stop.child_token(),
                abandon: self.abandon.child_token(),
                workers: workers.clone(),
                ordered,
                telemetry: self.telemetry.clone(),
                log_each_entry: self.config.logging.each_entry,
                tracer: self.tracer.clone(),
                rate: rate.clone(),
                progress: progress.clone(),
            });
            consumer::spawn_pool_tasks(&pool, acks_rx, &self.background);
            self.spawn_reader(pool.clone());
            self.feeders.spawn(
                "janitor",
                janitor::reclaim_loop(
                    pool.clone(),
                    self.config.janitor.interval,
                    self.config.janitor.consumer_gc,
                ),
            );
            pools.push(pool);
        }
        // An adaptive pool has `max` workers; its slots decide how many run at once.
        for _ in 0..pool_config.concurrency {
            workers.spawn(consumer::worker_loop(jobs_rx.clone()));
        }
        if pool_config.scaling.is_some() && handler_runs_inline {
            tracing::warn!(pool = %pool_config.name, "concurrency = {{ min, max }} has no effect with a handler that runs inline (the reader calls it one entry at a time); retries and reclaimed entries run on `min` workers");
        } else if pool_config.scaling.is_some() {
            self.background.spawn(
                "scale controller",
                consumer::scale::control_loop(
                    scale,
                    pools.clone(),
                    self.config.stream.name.clone(),
                    self.stop.clone(),
                ),
            );
        }
        if let Some(every) = self.config.logging.summary {
            self.background.spawn(
                "pool summary",
                consumer::summary::run(pools.clone(), every, self.stop.clone()),
            );
        }
        tracing::info!(pool = %pool_config.name, consumer = %self.consumer, concurrency = pool_config.initial_concurrency(), max_concurrency = pool_config.concurrency, adaptive = pool_config.scaling.is_some(), partitions = self.config.stream.partitions, types = ?pool_config.types, ordered_by = pool_config.order_key.as_ref().map(|k| k.as_str()), "pool running");
        pools
    }

    /// The reader of one pool on one partition, on its own connection: the blocking read
    /// loop, or for an ordered pool the owner loop around it.
    fn spawn_reader(&self, reader: Arc<Pool>) {
        let redis = self.redis.clone();
        let feeders = self.feeders.clone();
        self.feeders
            .spawn("reader", supervise_reader(redis, reader, feeders));
    }

    /// Trimming, metric upkeep, the paused-set and gauge watcher, the API's history sampler,
    /// the scheduled events' mover (every process runs it, whatever pools it runs or has
    /// paused), the telemetry writer.
    fn spawn_background(
        &self,
        health: &Arc<Health>,
        paused: watch::Sender<Arc<HashSet<String>>>,
        api: Option<&Arc<crate::api::Api>>,
    ) {
        let (config, stop) = (&self.config, &self.stop);
        self.background.spawn(
            "trimming",
            janitor::trim_loop(self.redis.clone(), config.clone(), stop.clone()),
        );
        if let Some(handle) = health.prometheus.clone() {
            // Histograms keep raw samples until upkeep folds them into buckets: without this,
            // an engine nobody scrapes would grow without bound.
            let cancel = stop.clone();
            self.background.spawn("metrics upkeep", async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
                        _ = cancel.cancelled() => break,
                    }
                }
            });
        }
        self.background.spawn(
            "health watcher",
            health::watch_loop(
                health.clone(),
                paused,
                config.janitor.interval.max(Duration::from_secs(1)),
                stop.clone(),
            ),
        );
        if let Some(api) = api {
            self.background
                .spawn("api history", api.clone().sample_loop(stop.clone()));
        }
        self.background.spawn(
            "schedules",
            crate::schedule::recurring::run(self.redis.clone(), config.clone(), stop.clone()),
        );
        let (mover_redis, mover_config, mover_stop) =
            (self.redis.clone(), config.clone(), stop.clone());
        self.background.spawn("scheduled mover", async move {
            crate::schedule::mover::run(mover_redis, &mover_config, mover_stop).await;
        });
        self.background.spawn(
            "telemetry",
            telemetry::run(
                self.telemetry.clone(),
                self.redis.clone(),
                config.clone(),
                health.unread.clone(),
                self.consumer.clone(),
                stop.clone(),
            ),
        );
    }

    /// Stop → drain → abandon, then ordered pools give their leases up at once and the
    /// background tasks stop.
    async fn shut_down(&self, pools: &[Arc<Pool>]) {
        let grace = self.config.shutdown_grace;
        drain(
            pools,
            &self.feeders.tracker,
            &self.stop,
            &self.abandon,
            grace,
        )
        .await;
        for pool in pools {
            consumer::ownership::release(pool).await;
        }
        // What the drained workers counted since the last interval.
        if let Err(e) = self.telemetry.flush(&self.redis).await {
            tracing::warn!(error = %e, "telemetry: the final flush failed; the counts of the last interval are lost");
        }
        self.trace_stop.cancel();
        self.background.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.background.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within 10 s");
        }
    }
}

/// Runs a pool's reader on one partition until shutdown, and starts it over when the stall
/// detector finds the pool not reading (`crate::liveness`): a new connection and a new read
/// loop, while the old loop ends after the read it has in flight (a read is never dropped
/// once sent; on a dead connection it fails at its command timeout) and running handlers
/// are left alone. An ordered pool keeps its owner loop (and its lease); its reader's
/// connection is reset instead.
async fn supervise_reader(redis: Redis, reader: Arc<Pool>, feeders: Tasks) {
    loop {
        let Some(conn) = dedicated(&redis, &reader.stop).await else {
            tracing::debug!(pool = %reader.name, "stopped before the reader connected");
            return;
        };
        let generation = reader.stop.child_token();
        let mut read = Box::pin(read_on(reader.clone(), conn.clone(), generation.clone()));
        loop {
            tokio::select! {
                _ = &mut read => {
                    conn.quit().await;
                    return;
                }
                _ = reader.progress.heal_requested() => {}
            }
            if reader.ordered.is_none() {
                break;
            }
            conn.reset_connection();
        }
        generation.cancel();
        feeders.spawn("reader", async move {
            read.await;
            conn.quit().await;
        });
        tracing::debug!(pool = %reader.name, stream = %reader.stream.name, "reader starting over on a new connection");
    }
}

/// The read loop of `pool` on `conn` until `generation` is cancelled, or for an ordered
/// pool the owner loop around it (until shutdown).
async fn read_on(pool: Arc<Pool>, conn: Redis, generation: CancellationToken) {
    if pool.ordered.is_some() {
        consumer::ownership::run(pool, conn).await;
    } else {
        consumer::read_until(&pool, &conn, &generation).await;
    }
}

/// Stop reading, let in-flight and queued entries finish within `grace`, then abandon the
/// rest (they stay pending for another consumer).
async fn drain(
    pools: &[Arc<Pool>],
    feeders: &TaskTracker,
    stop: &CancellationToken,
    abandon: &CancellationToken,
    grace: Duration,
) {
    let in_flight: usize = pools.iter().map(|p| p.leases.len()).sum();
    tracing::info!(
        in_flight,
        grace_s = grace.as_secs_f64(),
        "shutting down: reading stopped, draining in-flight entries"
    );
    stop.cancel();
    let wait_all = async {
        // A read in progress finishes (≤ its BLOCK) and its entries are queued; then no one
        // feeds the workers any more and they drain the queue.
        feeders.close();
        feeders.wait().await;
        for pool in pools {
            pool.jobs.close();
            pool.workers.close();
            pool.workers.wait().await;
        }
    };
    if tokio::time::timeout(grace, wait_all).await.is_err() {
        tracing::warn!(
            "shutdown grace over with handlers still running; their entries stay pending for another consumer"
        );
    }
    abandon.cancel();
    for pool in pools {
        pool.jobs.close();
        pool.workers.close();
        pool.workers.wait().await;
    }
}
