//! Phase one: `streams.toml` exactly as serde reads it. Unknown keys are errors; the only
//! checks here are types. Everything else is [`super::validate`]'s job.

use std::path::PathBuf;

use serde::Deserialize;

use super::model::HandlerConfig;

/// The file as written, before any checking beyond types.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub shutdown_grace_seconds: Option<f64>,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub stream: RawStream,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub janitor: RawJanitor,
    #[serde(default)]
    pub schemas: Option<RawSchemas>,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub logging: RawLog,
    #[serde(default)]
    pub tracing: RawTracing,
    #[serde(default)]
    pub pools: Vec<RawPool>,
    #[serde(default)]
    pub schedules: Vec<RawSchedule>,
}

impl RawConfig {
    /// The top-level keys, in the struct's order: a `WEIR_…` variable is an override only
    /// when its path starts with one of them (a unit test keeps the list in step with serde).
    pub const KEYS: &'static [&'static str] = &[
        "shutdown_grace_seconds",
        "redis",
        "stream",
        "retry",
        "janitor",
        "schemas",
        "http",
        "health",
        "telemetry",
        "logging",
        "tracing",
        "pools",
        "schedules",
    ];
}

/// `[logging]`: what the engine logs about settled entries (not `[log]`: `WEIR_LOG` is the
/// log filter, and would read as an override of it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// An INFO line per successfully handled entry (off: one line per pool every
    /// `summary_seconds`; failures, retries and dead letters are logged either way).
    pub each_entry: Option<bool>,
    pub summary_seconds: Option<f64>,
}

/// `[tracing]` (contract §15): OTLP export of the delivery spans.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// `http://host:4318`: spans are posted to `<otlp_endpoint>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces sampled, 0 to 1.
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub name: Option<String>,
    pub dlq: Option<String>,
    pub max_len: Option<u64>,
    pub max_entry_bytes: Option<u64>,
    /// How long `weir publish --id` remembers an id.
    pub dedup_window_seconds: Option<f64>,
    /// Stream keys the main stream is spread over (Redis Cluster scale-out).
    pub partitions: Option<u32>,
    /// A JSON pointer into `data` (`/id`): the event id of entries without an `id` field.
    pub event_id: Option<String>,
    /// Entries older than this (by their ID's time) are trimmed, as far as every pool allows.
    pub max_age_seconds: Option<f64>,
}

/// Retry keys: the `[retry]` defaults, and the per-pool overrides.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<u32>,
    pub retry_seconds: Option<f64>,
    pub backoff_exp: Option<f64>,
    pub max_backoff_seconds: Option<f64>,
    pub visibility_timeout_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJanitor {
    pub interval_seconds: Option<f64>,
    pub consumer_gc_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemas {
    pub dir: Option<PathBuf>,
    /// Entry field → JSON pointer into `data`: the two must carry the same value.
    pub align: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// Full access to `/api/v1` (better from `WEIR_HTTP__ADMIN_TOKEN`).
    pub admin_token: Option<super::model::Secret>,
    /// GET endpoints of `/api/v1` only.
    pub read_token: Option<super::model::Secret>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

/// When `/healthz` says `degraded` (the seeds' warning levels by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub degraded_dlq_length: Option<u64>,
    pub degraded_lag: Option<u64>,
}

/// `[telemetry]`: the `<stream>:monitor` hash and the per-value `<stream>:telemetry:<value>`
/// hashes (contract §12).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// An entry field name, or a JSON pointer into `data` (`/connectorKey`).
    pub key: Option<String>,
    /// How often the monitor hash is refreshed and the counters are flushed.
    pub interval_ms: Option<u64>,
    /// Distinct values tracked between two flushes at most.
    pub max_values: Option<u64>,
    /// Whether `<stream>:monitor` is written.
    pub monitor: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Option<String>,
    /// A whole number, or `{ min, max }` for concurrency that adapts to the backlog.
    pub concurrency: Option<RawConcurrency>,
    /// Adaptive pools: the least time between two changes of concurrency.
    pub scale_cooldown_seconds: Option<f64>,
    #[serde(default)]
    pub types: Vec<String>,
    pub timeout_seconds: Option<f64>,
    pub handler: Option<HandlerConfig>,
    pub start: Option<String>,
    /// Entries fetched per XREADGROUP; more means fewer round trips under load.
    pub read_count: Option<u32>,
    /// Per-key order: an entry field name, or a JSON pointer into `data` (`/payload/id`).
    pub order_key: Option<String>,
    /// `rate = { limit, per }`: handler starts per duration, across all processes (§14).
    pub rate: Option<RawRate>,
    /// The limit holds per value of this entry field or JSON pointer into `data`.
    pub rate_key: Option<String>,
    /// A pool with work that started no handler this long is stalled (`/readyz`).
    pub stall_seconds: Option<f64>,
    // The `[retry]` keys a pool may override. Listed, not flattened: serde cannot combine
    // `flatten` with `deny_unknown_fields`.
    pub max_attempts: Option<u32>,
    pub retry_seconds: Option<f64>,
    pub backoff_exp: Option<f64>,
    pub max_backoff_seconds: Option<f64>,
    pub visibility_timeout_seconds: Option<f64>,
}

/// `rate = { limit = 50, per = "1s" }` (contract §14).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub limit: Option<i64>,
    /// A DURATION: `1s`, `250ms`, `1.5m`.
    pub per: Option<String>,
}

impl RawPool {
    pub(super) fn retry_overrides(&self) -> RawRetry {
        RawRetry {
            max_attempts: self.max_attempts,
            retry_seconds: self.retry_seconds,
            backoff_exp: self.backoff_exp,
            max_backoff_seconds: self.max_backoff_seconds,
            visibility_timeout_seconds: self.visibility_timeout_seconds,
        }
    }
}

/// `concurrency` as written: `6`, or `{ min = 2, max = 16 }`. A hand-written `Deserialize`
/// rather than an untagged enum, so a wrong value says what was expected instead of "did not
/// match any variant".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawConcurrency {
    /// A fixed number of workers.
    Fixed(i64),
    /// Adaptive between `min` and `max` (both required; checked by validation).
    Range { min: Option<i64>, max: Option<i64> },
}

/// What a wrong `concurrency` value is told it should have been.
const CONCURRENCY_EXPECTED: &str = "a whole number or a table like { min = 2, max = 16 }";

impl<'de> Deserialize<'de> for RawConcurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ConcurrencyVisitor)
    }
}

struct ConcurrencyVisitor;

impl<'de> serde::de::Visitor<'de> for ConcurrencyVisitor {
    type Value = RawConcurrency;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(CONCURRENCY_EXPECTED)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawConcurrency, E> {
        Ok(RawConcurrency::Fixed(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawConcurrency, E> {
        Ok(RawConcurrency::Fixed(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    /// An environment override arrives as text: `WEIR_…=8` must work like `8` in the file.
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawConcurrency, E> {
        v.trim()
            .parse()
            .map(RawConcurrency::Fixed)
            .map_err(|_| E::invalid_type(serde::de::Unexpected::Str(v), &self))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<RawConcurrency, A::Error> {
        let (mut min, mut max) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "min" => min = Some(map.next_value::<i64>()?),
                "max" => max = Some(map.next_value::<i64>()?),
                other => return Err(serde::de::Error::unknown_field(other, &["min", "max"])),
            }
        }
        Ok(RawConcurrency::Range { min, max })
    }
}

/// `[[schedules]]`: a recurring schedule (contract §13): an event on a timetable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub name: Option<String>,
    /// 5 fields, or 6 with seconds first.
    pub cron: Option<String>,
    /// A DURATION (`15m`): ticks on its multiples since the Unix epoch.
    pub every: Option<String>,
    /// An IANA zone name for `cron` (default UTC).
    pub timezone: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// JSON text (default `{}`).
    pub data: Option<String>,
    /// `none`, `last` (default) or `all`.
    pub catch_up: Option<String>,
}
