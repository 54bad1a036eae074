//! `streams.toml` in two phases: [`RawConfig`] is exactly what serde reads (unknown keys are
//! errors), [`Config`] is what the engine runs on — durations parsed, paths resolved, cross-field
//! rules checked. Every error names the key it is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

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
    pub pools: Vec<RawPool>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
}

/// When `/healthz` says `degraded` (the seeds' warning levels by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub degraded_dlq_length: Option<u64>,
    pub degraded_lag: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Option<String>,
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub types: Vec<String>,
    pub timeout_seconds: Option<f64>,
    pub handler: Option<HandlerConfig>,
    pub start: Option<String>,
    /// Entries fetched per XREADGROUP; more means fewer round trips under load.
    pub read_count: Option<u32>,
    // The `[retry]` keys a pool may override. Listed, not flattened: serde cannot combine
    // `flatten` with `deny_unknown_fields`.
    pub max_attempts: Option<u32>,
    pub retry_seconds: Option<f64>,
    pub backoff_exp: Option<f64>,
    pub max_backoff_seconds: Option<f64>,
    pub visibility_timeout_seconds: Option<f64>,
}

impl RawPool {
    fn retry_overrides(&self) -> RawRetry {
        RawRetry {
            max_attempts: self.max_attempts,
            retry_seconds: self.retry_seconds,
            backoff_exp: self.backoff_exp,
            max_backoff_seconds: self.max_backoff_seconds,
            visibility_timeout_seconds: self.visibility_timeout_seconds,
        }
    }
}

/// A built-in handler, chosen per pool with `handler = { kind = "…", … }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HandlerConfig {
    /// POST `data` to `url`.
    Http {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Run `command` (argv, no shell) with `data` on stdin.
    Exec {
        command: Vec<String>,
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
    pub redis: RedisConfig,
    pub stream: StreamConfig,
    pub janitor: JanitorConfig,
    /// `None`: `data` is only checked to be JSON.
    pub schemas_dir: Option<PathBuf>,
    pub http_listen: SocketAddr,
    pub health: HealthConfig,
    pub shutdown_grace: Duration,
    pub pools: Vec<PoolConfig>,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub name: String,
    pub dlq: String,
    pub max_len: u64,
    pub max_entry_bytes: usize,
    pub dedup_window: Duration,
    /// How many stream keys the main stream is spread over; 1 is the plain layout.
    pub partitions: usize,
}

/// The text inside the first `{…}` of a key, if non-empty: what Redis Cluster hashes.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')? + open + 1;
    Some(&key[open + 1..close]).filter(|t| !t.is_empty())
}

/// Partition `i`'s name for `key`, a key of the stream `name`'s family: the hash tag gets
/// `:i` appended (`{bus}:events` → `{bus:0}:events`); without a tag, the stream name
/// becomes the tag (`integration-bus:dlq` → `{integration-bus:0}:dlq`). `None` when `key`
/// has neither the stream's tag nor its name in front.
fn partition_key(name: &str, key: &str, i: usize) -> Option<String> {
    match hash_tag(name) {
        Some(tag) => {
            let braced = format!("{{{tag}}}");
            key.contains(&braced)
                .then(|| key.replacen(&braced, &format!("{{{tag}:{i}}}"), 1))
        }
        None => key
            .strip_prefix(name)
            .map(|rest| format!("{{{name}:{i}}}{rest}")),
    }
}

impl StreamConfig {
    /// The set whose members are paused pools (one for all partitions).
    pub fn paused_key(&self) -> String {
        format!("{}:paused", self.name)
    }

    /// The keys of each partition: one `StreamConfig` per partition, with its own stream
    /// and DLQ keys and its share of `max_len`. With one partition, this stream as it is.
    pub fn partition_list(&self) -> Vec<StreamConfig> {
        if self.partitions <= 1 {
            return vec![self.clone()];
        }
        (0..self.partitions)
            .map(|i| StreamConfig {
                name: partition_key(&self.name, &self.name, i).unwrap_or_default(),
                dlq: partition_key(&self.name, &self.dlq, i).unwrap_or_default(),
                max_len: self.max_len.div_ceil(self.partitions as u64).max(1),
                partitions: 1,
                ..self.clone()
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// `degraded` when the DLQ holds more entries than this.
    pub degraded_dlq_length: u64,
    /// `degraded` when any pool's lag is above this.
    pub degraded_lag: u64,
}

#[derive(Debug, Clone)]
pub struct JanitorConfig {
    pub interval: Duration,
    pub consumer_gc: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub retry: Duration,
    pub backoff_exp: f64,
    pub max_backoff: Duration,
    pub visibility_timeout: Duration,
}

impl RetryPolicy {
    /// How long to wait after failed attempt `attempt` (1-based): `retry * exp^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let secs = self.retry.as_secs_f64() * self.backoff_exp.powi(exponent);
        if !secs.is_finite() || secs >= self.max_backoff.as_secs_f64() {
            self.max_backoff
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub concurrency: usize,
    pub types: Vec<String>,
    pub timeout: Duration,
    /// `None` when the handler is supplied in code ([`crate::Engine::with_handler`]).
    pub handler: Option<HandlerConfig>,
    /// Where a newly created group starts: `0` (everything) or `$` (only new entries).
    pub start: String,
    pub read_count: usize,
    pub retry: RetryPolicy,
}

pub const DEFAULT_CONFIG_PATH: &str = "streams.toml";

/// `WEIR_…` variables that are not config overrides.
const NOT_CONFIG: &[&str] = &[
    "WEIR_LOG",
    "WEIR_LOG_FORMAT",
    "WEIR_CONFIG",
    "WEIR_TEST_LOG",
];

impl Config {
    /// Reads `path` (it must exist) and `WEIR_…` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing {
                path: path.to_path_buf(),
            });
        }
        // WEIR_LOG, WEIR_CONFIG… configure the binary, not streams.toml.
        let overrides: config::Map<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("WEIR_") && !NOT_CONFIG.contains(&k.as_str()))
            .collect();
        let names: Vec<String> = overrides.keys().cloned().collect();
        let env = config::Environment::with_prefix("WEIR")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(overrides));
        Self::load_with(path, env).map_err(|e| match e {
            ConfigError::Parse { path, message } if !names.is_empty() => ConfigError::Parse {
                path,
                message: format!(
                    "{message} (environment overrides in effect: {})",
                    names.join(", ")
                ),
            },
            other => other,
        })
    }

    fn load_with(path: &Path, env: config::Environment) -> Result<Config, ConfigError> {
        let source = config::File::from(path).format(config::FileFormat::Toml);
        let raw: RawConfig = config::Config::builder()
            .add_source(source)
            .add_source(env)
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        raw.validate(base)
    }

    /// Parses TOML text directly (no environment), resolving relative paths against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse {
                path: base.join("<inline>"),
                message: e.to_string(),
            })?;
        raw.validate(base)
    }

    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A `*_seconds` value: finite, not negative, and above zero when `positive`.
fn seconds(key: &str, value: f64, positive: bool) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value < 0.0 || (positive && value == 0.0) {
        let want = if positive { "above 0" } else { "0 or more" };
        return Err(invalid(
            key,
            format!("{value} is not a number of seconds {want}"),
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|e| invalid(key, e.to_string()))
}

impl RawRetry {
    /// Layers `self` over `base` and validates, naming keys under `prefix`.
    fn resolve(&self, base: &RawRetry, prefix: &str) -> Result<RetryPolicy, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        let max_attempts = self.max_attempts.or(base.max_attempts).unwrap_or(5);
        if max_attempts == 0 {
            return Err(invalid(key("max_attempts"), "must be at least 1"));
        }
        let pick = |own: Option<f64>, inherited: Option<f64>, default: f64| {
            own.or(inherited).unwrap_or(default)
        };
        let backoff_exp = pick(self.backoff_exp, base.backoff_exp, 2.0);
        if !backoff_exp.is_finite() || backoff_exp < 1.0 {
            return Err(invalid(key("backoff_exp"), "must be a number of 1 or more"));
        }
        Ok(RetryPolicy {
            max_attempts,
            retry: seconds(
                &key("retry_seconds"),
                pick(self.retry_seconds, base.retry_seconds, 120.0),
                false,
            )?,
            backoff_exp,
            max_backoff: seconds(
                &key("max_backoff_seconds"),
                pick(self.max_backoff_seconds, base.max_backoff_seconds, 3600.0),
                false,
            )?,
            visibility_timeout: seconds(
                &key("visibility_timeout_seconds"),
                pick(
                    self.visibility_timeout_seconds,
                    base.visibility_timeout_seconds,
                    900.0,
                ),
                true,
            )?,
        })
    }
}

/// Whether `url` names a Redis Cluster (`redis-cluster://` or `rediss-cluster://`).
pub fn is_cluster_url(url: &str) -> bool {
    url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://")
}

/// `redis-cluster://[user:pass@]h1:p1,h2:p2[/…]` in the form the client reads:
/// `redis-cluster://[user:pass@]h1:p1?node=h2:p2`. Other URLs are returned as they are.
pub fn normalize_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if !is_cluster_url(url) {
        return url.to_string();
    }
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let mut nodes = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
    let Some(first) = nodes.next() else {
        return url.to_string();
    };
    let extra: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
    if extra.is_empty() {
        return url.to_string();
    }
    let tail = tail
        .trim_start_matches('/')
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let query = tail.trim_start_matches('?');
    let mut params = extra;
    if !query.is_empty() {
        params.push(query.to_string());
    }
    format!("{scheme}://{userinfo}{first}?{}", params.join("&"))
}

fn validate_url(url: &str) -> Result<(), ConfigError> {
    let scheme_ok = [
        "redis://",
        "rediss://",
        "redis-cluster://",
        "rediss-cluster://",
        "unix://",
    ]
    .iter()
    .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(invalid(
            "redis.url",
            format!(
                "`{}` is not a Redis URL; write it like redis://127.0.0.1:6379/0",
                crate::redact_url(url)
            ),
        ));
    }
    crate::redis::validate_url(url)
        .map_err(|e| invalid("redis.url", format!("{}: {e}", crate::redact_url(url))))
}

/// On Redis Cluster, keys that one script or transaction touches together must hash to the
/// same slot: the stream and its DLQ (the DLQ move), replay progress and dedup keys (their
/// names start with the stream's, so they follow its hash tag).
fn check_slots(stream: &StreamConfig) -> Result<(), ConfigError> {
    let slot = crate::redis::key_slot;
    for part in stream.partition_list() {
        if slot(&part.name) != slot(&part.dlq) {
            return Err(invalid(
                "stream.dlq",
                format!(
                    "on Redis Cluster the stream `{}` (slot {}) and its DLQ `{}` (slot {}) must hash to the same slot, because moving an entry to the DLQ is one atomic step; give the stream and the DLQ one hash tag, e.g. name = \"{{bus}}:events\" and dlq = \"{{bus}}:dlq\"",
                    part.name,
                    slot(&part.name),
                    part.dlq,
                    slot(&part.dlq)
                ),
            ));
        }
    }
    Ok(())
}

impl RawConfig {
    /// Phase two: every rule that needs more than one key, or the file's location.
    pub fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        let url = self
            .redis
            .url
            .clone()
            .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_string());
        let url = normalize_url(&url);
        validate_url(&url)?;
        let resolve = |p: &PathBuf| base.join(p);
        for (key, path) in [
            ("redis.ca_file", &self.redis.ca_file),
            ("redis.cert_file", &self.redis.cert_file),
            ("redis.key_file", &self.redis.key_file),
        ] {
            if let Some(path) = path.as_ref().map(resolve)
                && !path.is_file()
            {
                return Err(invalid(key, format!("{} does not exist", path.display())));
            }
        }
        let tls_keys = self.redis.ca_file.is_some()
            || self.redis.cert_file.is_some()
            || self.redis.insecure_skip_verify == Some(true);
        if tls_keys && !url.starts_with("rediss://") && !url.starts_with("rediss-cluster://") {
            return Err(invalid(
                "redis.url",
                "TLS options are set but the URL is not rediss://; use rediss://host:port for TLS",
            ));
        }
        let redis = RedisConfig {
            url,
            ca_file: self.redis.ca_file.as_ref().map(resolve),
            cert_file: self.redis.cert_file.as_ref().map(resolve),
            key_file: self.redis.key_file.as_ref().map(resolve),
            insecure_skip_verify: self.redis.insecure_skip_verify.unwrap_or(false),
        };
        let stream = self.validate_stream()?;
        if is_cluster_url(&redis.url) {
            check_slots(&stream)?;
        }
        let janitor = JanitorConfig {
            interval: seconds(
                "janitor.interval_seconds",
                self.janitor.interval_seconds.unwrap_or(1.0),
                true,
            )?,
            consumer_gc: seconds(
                "janitor.consumer_gc_seconds",
                self.janitor.consumer_gc_seconds.unwrap_or(3600.0),
                true,
            )?,
        };
        let schemas_dir = validate_schemas_dir(self.schemas.as_ref(), base)?;
        let listen = self.http.listen.as_deref().unwrap_or("127.0.0.1:9464");
        let http_listen = listen.parse().map_err(|_| {
            invalid(
                "http.listen",
                format!("`{listen}` is not an address like 127.0.0.1:9464"),
            )
        })?;
        let shutdown_grace = seconds(
            "shutdown_grace_seconds",
            self.shutdown_grace_seconds.unwrap_or(30.0),
            false,
        )?;
        let pools = self.validate_pools()?;
        Ok(Config {
            redis,
            stream,
            janitor,
            schemas_dir,
            http_listen,
            health: HealthConfig {
                degraded_dlq_length: self.health.degraded_dlq_length.unwrap_or(100),
                degraded_lag: self.health.degraded_lag.unwrap_or(1000),
            },
            shutdown_grace,
            pools,
        })
    }

    fn validate_stream(&self) -> Result<StreamConfig, ConfigError> {
        let name = self
            .stream
            .name
            .clone()
            .unwrap_or_else(|| "integration-bus".into());
        if name.is_empty() {
            return Err(invalid("stream.name", "must not be empty"));
        }
        let dlq = self
            .stream
            .dlq
            .clone()
            .unwrap_or_else(|| format!("{name}:dlq"));
        if dlq.is_empty() || dlq == name {
            return Err(invalid(
                "stream.dlq",
                "must be a key other than the main stream",
            ));
        }
        let max_len = self.stream.max_len.unwrap_or(1_000_000);
        if max_len == 0 {
            return Err(invalid("stream.max_len", "must be at least 1"));
        }
        let max_entry_bytes = self.stream.max_entry_bytes.unwrap_or(1_048_576);
        if max_entry_bytes == 0 {
            return Err(invalid("stream.max_entry_bytes", "must be at least 1"));
        }
        let partitions = self.stream.partitions.unwrap_or(1);
        if !(1..=1024).contains(&partitions) {
            return Err(invalid("stream.partitions", "must be between 1 and 1024"));
        }
        if partitions > 1 && partition_key(&name, &dlq, 0).is_none() {
            return Err(invalid(
                "stream.dlq",
                format!(
                    "with partitions > 1 each partition's DLQ must share its stream's slot: the DLQ `{dlq}` must {}",
                    match hash_tag(&name) {
                        Some(tag) => format!(
                            "carry the stream's hash tag {{{tag}}}, e.g. dlq = \"{{{tag}}}:dlq\""
                        ),
                        None => format!(
                            "start with the stream name, e.g. dlq = \"{name}:dlq\" (the default)"
                        ),
                    }
                ),
            ));
        }
        Ok(StreamConfig {
            name,
            dlq,
            max_len,
            partitions: partitions as usize,
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
            dedup_window: seconds(
                "stream.dedup_window_seconds",
                self.stream.dedup_window_seconds.unwrap_or(86_400.0),
                true,
            )?,
        })
    }

    fn validate_pools(&self) -> Result<Vec<PoolConfig>, ConfigError> {
        if self.pools.is_empty() {
            return Err(invalid(
                "pools",
                "no [[pools]] configured; add at least one pool with a name, types and a handler",
            ));
        }
        // The defaults must be valid on their own, so errors name `retry.…` when they are wrong.
        self.retry.resolve(&RawRetry::default(), "retry")?;
        let mut pools: Vec<PoolConfig> = Vec::with_capacity(self.pools.len());
        let mut wildcard: Option<String> = None;
        for (i, raw) in self.pools.iter().enumerate() {
            let pool = raw.validate(i, &self.retry)?;
            if pools.iter().any(|p| p.name == pool.name) {
                return Err(invalid(
                    format!("pools[{i}].name"),
                    format!("pool `{}` is defined twice", pool.name),
                ));
            }
            if pool.types.iter().any(|t| t == "*") {
                if let Some(other) = &wildcard {
                    return Err(invalid(
                        format!("pools[{i}].types"),
                        format!(
                            "`*` is already taken by pool `{other}`; only one pool may list it"
                        ),
                    ));
                }
                wildcard = Some(pool.name.clone());
            }
            pools.push(pool);
        }
        Ok(pools)
    }
}

fn validate_schemas_dir(
    raw: Option<&RawSchemas>,
    base: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    match raw.and_then(|s| s.dir.as_ref()) {
        Some(dir) => {
            let dir = base.join(dir);
            if dir.is_dir() {
                Ok(Some(dir))
            } else {
                Err(invalid(
                    "schemas.dir",
                    format!("{} is not a directory", dir.display()),
                ))
            }
        }
        None => {
            let beside = base.join("schemas");
            Ok(beside.is_dir().then_some(beside))
        }
    }
}

impl RawPool {
    fn validate(&self, index: usize, defaults: &RawRetry) -> Result<PoolConfig, ConfigError> {
        let key = |k: &str| format!("pools[{index}].{k}");
        let name = self
            .name
            .clone()
            .ok_or_else(|| invalid(key("name"), "every pool needs a name"))?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !name_ok {
            return Err(invalid(
                key("name"),
                format!("`{name}` must be non-empty and use only letters, digits, - _ . :"),
            ));
        }
        let concurrency = self.concurrency.unwrap_or(1);
        if concurrency == 0 || concurrency > 10_000 {
            return Err(invalid(key("concurrency"), "must be between 1 and 10000"));
        }
        if self.types.is_empty() {
            return Err(invalid(
                key("types"),
                "list the event types this pool handles, or [\"*\"] for every unlisted type",
            ));
        }
        if let Some(t) = self.types.iter().find(|t| t.is_empty()) {
            return Err(invalid(key("types"), format!("`{t}` is not a type name")));
        }
        let start = self.start.clone().unwrap_or_else(|| "0".into());
        if start != "0" && start != "$" && crate::redis::StreamId::parse(&start).is_none() {
            return Err(invalid(
                key("start"),
                format!("`{start}` must be \"0\", \"$\" or a stream ID like 1700000000000-0"),
            ));
        }
        if let Some(HandlerConfig::Exec { command, .. }) = &self.handler
            && command.is_empty()
        {
            return Err(invalid(
                key("handler.command"),
                "must list the program and its arguments",
            ));
        }
        if let Some(HandlerConfig::Http { url, .. }) = &self.handler
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                key("handler.url"),
                format!("`{url}` must start with http:// or https://"),
            ));
        }
        let read_count = self.read_count.unwrap_or(0) as usize;
        Ok(PoolConfig {
            name,
            concurrency: concurrency as usize,
            types: self.types.clone(),
            timeout: seconds(
                &key("timeout_seconds"),
                self.timeout_seconds.unwrap_or(120.0),
                true,
            )?,
            handler: self.handler.clone(),
            start,
            read_count: if read_count == 0 {
                (concurrency as usize * 2).clamp(64, 512)
            } else {
                read_count
            },
            retry: self
                .retry_overrides()
                .resolve(defaults, &format!("pools[{index}]"))?,
        })
    }
}
