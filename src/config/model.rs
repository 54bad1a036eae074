//! The validated configuration the engine runs on: durations parsed, paths resolved,
//! defaults filled in, and the partition key list computed once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::keys::{self, Partition};

/// A built-in handler, chosen per pool with `handler = { kind = "…", … }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HandlerConfig {
    /// POST `data` to `url`.
    Http {
        /// The endpoint; one POST per delivery.
        url: String,
        /// Sent with every request, e.g. `authorization` (kept out of logs).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// `https://` only: trust the CA certificates in this PEM file instead of the
        /// system's (a webhook behind a private CA). Relative to the config file.
        #[serde(default)]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Run `command` (argv, no shell) with `data` on stdin.
    Exec {
        /// argv: the program, then its arguments; no shell, so nothing is interpolated.
        command: Vec<String>,
        /// Added to the child's environment, beside the `WEIR_*` variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// Log the entry at INFO and succeed.
    Log,
    /// Succeed without doing anything.
    Noop,
}

/// The validated configuration the engine runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the engine, the CLI and the operations connect.
    pub redis: RedisConfig,
    /// The stream every pool reads, with its DLQ and partitions.
    pub stream: StreamConfig,
    /// The pace of reclaim, dead-letter sweeps, trimming and consumer clean-up.
    pub janitor: JanitorConfig,
    /// `None`: `data` is only checked to be JSON.
    pub schemas_dir: Option<PathBuf>,
    /// `[schemas] align`: (entry field, JSON pointer into `data`) pairs that must carry the
    /// same value when the field is present, in field-name order. Publishers that repeat body
    /// values as fields (headers) cannot let the two drift apart.
    pub align: Vec<(String, String)>,
    /// Where `/healthz` and `/metrics` listen; port 0 picks one (see [`crate::Engine::http_addr`]).
    pub http_listen: SocketAddr,
    /// The admin API's tokens and the listener's TLS (`[http]`).
    pub http: HttpConfig,
    /// When `/healthz` says `degraded` instead of `healthy`.
    pub health: HealthConfig,
    /// The monitor hash and the per-value telemetry hashes in Redis (`[telemetry]`).
    pub telemetry: TelemetryConfig,
    /// What is logged about settled entries (`[logging]`).
    pub logging: LogConfig,
    /// `[tracing]`: whether and where delivery spans are exported (contract §15).
    pub tracing: TracingConfig,
    /// After the stop signal, how long in-flight handlers may finish before they are abandoned
    /// (their entries stay pending and are redelivered).
    pub shutdown_grace: Duration,
    /// One consumer group each; an event goes to every pool whose `types` match it.
    pub pools: Vec<PoolConfig>,
    /// `[[schedules]]`: events published on a timetable by whichever `weir run` claims each
    /// tick first (contract §13).
    pub schedules: Vec<ScheduleConfig>,
}

/// A recurring schedule: one event per tick of its timetable.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Names the state hash, the events' `schedule` field and their ids (`<name>@<tick>`).
    pub name: String,
    /// When it ticks: cron in a zone, or `every`.
    pub timetable: crate::schedule::cron::Timetable,
    /// The IANA zone `cron` is read in, as written (`UTC` by default, and for `every`).
    pub timezone: String,
    /// The events' type: some pool takes it (checked by validation).
    pub event_type: String,
    /// The events' JSON body; checked against the schemas when the engine starts.
    pub data: String,
    /// What happens to ticks missed while no engine ran.
    pub catch_up: crate::schedule::cron::CatchUp,
}

/// How to reach Redis: defined beside the connection code that reads it, so the Redis layer
/// never imports `config` (config → redis, one direction).
pub use crate::redis::RedisConfig;

/// The stream and its DLQ; with partitions, the key prefix of each partition's pair.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The stream key (or, partitioned, the prefix of the partitions' keys).
    pub name: String,
    /// Where entries that cannot succeed go, with `dlq_*` fields saying why.
    pub dlq: String,
    /// Trimming target; approximate, and never past an entry a group still needs.
    pub max_len: u64,
    /// `[stream] max_age_seconds`: entries whose ID is older than this are trimmed (XTRIM
    /// MINID), with the same limit as `max_len`: never past an entry a group still needs.
    pub max_age: Option<Duration>,
    /// Larger publishes are refused: one huge entry would stall every reader.
    pub max_entry_bytes: usize,
    /// How long a publisher's event `id` is remembered so a resent event is written once.
    pub dedup_window: Duration,
    /// How many stream keys the main stream is spread over; 1 is the plain layout.
    pub partitions: usize,
    /// `[stream] event_id`: a JSON pointer into `data` that names the event id when an entry
    /// has no `id` field (envelopes that carry their id in the body). Handlers, logs and
    /// `weir publish`'s dedup use it.
    pub event_id: Option<String>,
    /// Each partition's stream and DLQ keys, computed once by validation so every caller
    /// agrees on them.
    pub(super) parts: Vec<Partition>,
}

impl StreamConfig {
    /// The set whose members are paused pools (one for all partitions).
    pub fn paused_key(&self) -> String {
        keys::paused(&self.name)
    }

    /// Each partition's stream and DLQ keys; one entry, these keys, when unpartitioned.
    pub fn partitions(&self) -> &[Partition] {
        &self.parts
    }

    /// One `StreamConfig` per partition, with its own stream and DLQ keys and its share of
    /// `max_len`: what a pool's reader, janitor and settle work on. With one partition,
    /// this stream as it is.
    pub fn partition_list(&self) -> Vec<StreamConfig> {
        if self.partitions <= 1 {
            return vec![self.clone()];
        }
        let max_len = self.max_len.div_ceil(self.partitions as u64).max(1);
        self.parts
            .iter()
            .map(|part| StreamConfig {
                name: part.stream.clone(),
                dlq: part.dlq.clone(),
                max_len,
                partitions: 1,
                parts: vec![part.clone()],
                ..self.clone()
            })
            .collect()
    }
}

/// A token: compared in constant time by the API, never printed (`Debug` shows `***`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token read from the config or the environment.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The token itself: only for comparing it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[http]` beyond `listen`: the admin API is off unless a token is set.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Full access to `/api/v1` (and the dashboard's write controls).
    pub admin_token: Option<Secret>,
    /// GET endpoints only: for dashboards on a wall and read-only operators.
    pub read_token: Option<Secret>,
    /// PEM certificate chain and key: with both, the listener speaks HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl HttpConfig {
    /// Whether `/api/v1` is served.
    pub fn api_enabled(&self) -> bool {
        self.admin_token.is_some() || self.read_token.is_some()
    }
}

/// Thresholds that turn `/healthz` from `healthy` to `degraded` (still 200: alert, not restart).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// `degraded` when the DLQ holds more entries than this.
    pub degraded_dlq_length: u64,
    /// `degraded` when any pool's lag is above this.
    pub degraded_lag: u64,
}

/// `[logging]`: at 500k entries/s a line per processed entry costs a third of the throughput and
/// makes a log nobody reads, so by default a success is logged only at DEBUG and each pool
/// logs a summary line instead. Failures, retries, dead letters, reclaims and losses are
/// logged one by one either way.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LogConfig {
    /// `each_entry = true`: the `entry settled` line of every success at INFO again.
    pub each_entry: bool,
    /// How often each pool logs its summary (processed, failed, retried, dead-lettered,
    /// p50/p99 handler time) when anything happened; `None` (0 in the file): never.
    pub summary: Option<Duration>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            each_entry: false,
            summary: Some(Duration::from_secs(10)),
        }
    }
}

/// `[tracing]` (contract §15). The keys win over `OTEL_EXPORTER_OTLP_ENDPOINT` and
/// `OTEL_SERVICE_NAME`, which apply when they are absent.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans are posted (`<endpoint>/v1/traces`); `None`: no export, handlers get the
    /// entry's own `traceparent`.
    pub otlp_endpoint: Option<String>,
    /// The share of traces sampled (0 to 1), decided by the trace id; a parent that is not
    /// sampled is respected.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute of the exported spans.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> TracingConfig {
        TracingConfig {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "weir".into(),
        }
    }
}

/// `[telemetry]` (contract §12): what the engine writes to Redis for operators who read
/// `redis-cli` rather than `/metrics`.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Where an entry's telemetry value is (the same forms as a pool's `order_key`: an entry
    /// field, or a JSON pointer into `data`); `None` writes no `<stream>:telemetry:*` hashes.
    pub key: Option<OrderKey>,
    /// How often `<stream>:monitor` is refreshed and the counters are flushed: one batch per
    /// interval, never a write per entry.
    pub interval: Duration,
    /// Distinct values tracked between two flushes; entries of further values are counted
    /// as dropped (and logged) so untrusted values cannot grow memory without bound.
    pub max_values: usize,
    /// Whether the `<stream>:monitor` hash is written.
    pub monitor: bool,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            key: None,
            interval: Duration::from_secs(1),
            max_values: 10_000,
            monitor: true,
        }
    }
}

/// The janitor's pace.
#[derive(Debug, Clone)]
pub struct JanitorConfig {
    /// Between reclaim passes and trim passes (trimming runs at most once a second).
    pub interval: Duration,
    /// A consumer idle this long with nothing pending is deleted (crashed processes leave
    /// their names behind).
    pub consumer_gc: Duration,
}

#[derive(Debug, Clone, PartialEq)]
/// The retry rules of a pool; what they mean is in `settle/policy.rs` (`exhausted`, `backoff`).
pub struct RetryPolicy {
    /// Deliveries before an entry is dead-lettered with reason `max_attempts`.
    pub max_attempts: u32,
    /// The first backoff; attempt n waits `retry * backoff_exp^(n-1)`.
    pub retry: Duration,
    /// Growth of the backoff per attempt.
    pub backoff_exp: f64,
    /// Cap on one backoff, so a long-failing entry is still retried now and then.
    pub max_backoff: Duration,
    /// How long an entry stays leased to a process that stopped renewing it (crashed or
    /// frozen) before another process reclaims it.
    pub visibility_timeout: Duration,
}

/// One pool: a consumer group, its workers and its handler.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Also the consumer group's name, so `redis-cli` shows the same word.
    pub name: String,
    /// The most handlers running at once in this process: the fixed `concurrency`, or an
    /// adaptive pool's `max` (it has this many workers, and lets `scaling` decide how many
    /// may run).
    pub concurrency: usize,
    /// Set when `concurrency = { min, max }`: the pool adapts between `min` and
    /// [`concurrency`](Self::concurrency) to its backlog and its handler's latency.
    pub scaling: Option<Scaling>,
    /// Event types this pool handles (`*` for all, `prefix.*`); other entries are
    /// acknowledged unhandled.
    pub types: Vec<String>,
    /// A handler running longer is abandoned and the delivery counts as a retryable failure.
    pub timeout: Duration,
    /// `None` when the handler is supplied in code ([`crate::Engine::with_handler`]).
    pub handler: Option<HandlerConfig>,
    /// Where a newly created group starts: `0` (everything) or `$` (only new entries).
    pub start: String,
    /// Most entries per XREADGROUP: bigger batches, fewer round trips, more held per read.
    pub read_count: usize,
    /// Most entries per XREADGROUP when the handler runs inline (the reader handles the
    /// batch itself, no worker slot bounds it): `read_count` when set, else 512.
    pub inline_read_count: usize,
    /// This pool's retry rules (the `[retry]` defaults with its overrides).
    pub retry: RetryPolicy,
    /// Set for an ordered pool (contract §9): entries with the same key are handled one at a
    /// time in stream order, by one owning process per stream or partition.
    pub order_key: Option<OrderKey>,
    /// `rate` (contract §14): at most `limit` handler starts per `per` across all processes,
    /// per value of its `key` when set.
    pub rate: Option<RateLimit>,
    /// `stall_seconds`: a running pool with entries it could hand out that started no
    /// handler this long is stalled (contract §15): healed, then reported by `/readyz`.
    pub stall: Duration,
}

/// A pool's `rate` and `rate_key` (contract §14).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Handler starts allowed per `per`: at least 1.
    pub limit: u32,
    /// The period, at least 1 ms.
    pub per: Duration,
    /// `rate_key`: the limit holds per value of this field or pointer; an entry without it
    /// counts against the pool's own limit.
    pub key: Option<OrderKey>,
}

/// An adaptive pool's bounds below `max` and its pace (contract §12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// Where the pool starts, and the least it shrinks or backs off to.
    pub min: usize,
    /// `scale_cooldown_seconds`: the least time between two changes, so each step's effect
    /// on latency is measured over a whole window before the next one.
    pub cooldown: Duration,
}

impl PoolConfig {
    /// The concurrency a pool starts at: `min` when adaptive.
    pub fn initial_concurrency(&self) -> usize {
        self.scaling.map_or(self.concurrency, |s| s.min)
    }
}

/// Where an ordered pool finds an entry's key (and `[telemetry] key` an entry's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// An entry field (`key`, `correlation_id`…).
    Field(String),
    /// A JSON pointer into `data` (`/payload/incidentId`).
    Pointer(String),
}

impl OrderKey {
    /// How it is written in the config.
    pub fn as_str(&self) -> &str {
        match self {
            OrderKey::Field(s) | OrderKey::Pointer(s) => s,
        }
    }
}

impl Config {
    /// The pool named `name`, if configured.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Each partition's stream and DLQ keys (see [`StreamConfig::partitions`]).
    pub fn partitions(&self) -> &[Partition] {
        self.stream.partitions()
    }

    /// The schedule named `name`, if configured.
    pub fn schedule(&self, name: &str) -> Option<&ScheduleConfig> {
        self.schedules.iter().find(|s| s.name == name)
    }
}
