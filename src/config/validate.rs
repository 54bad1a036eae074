//! Phase two: from [`RawConfig`] to [`Config`]: defaults, durations, and every rule that
//! needs more than a type. Pure: paths arrive resolved and are not looked at here (that is
//! [`super::load`]'s job), so each rule can be tested from a TOML snippet alone.

use std::time::Duration;

use super::model::{
    Config, HandlerConfig, HealthConfig, HttpConfig, JanitorConfig, OrderKey, PoolConfig,
    RedisConfig, RetryPolicy, Scaling, StreamConfig, TelemetryConfig,
};
use super::raw::{RawConcurrency, RawConfig, RawPool, RawRetry};
use super::url::{is_cluster_url, key_slot, normalize_url, validate_url};
use crate::error::ConfigError;
use crate::keys;

/// The most handlers one pool may run at once in one process.
const MAX_CONCURRENCY: usize = 10_000;

pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
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

impl RawConfig {
    /// Every rule that needs more than one key. Relative paths must already be resolved
    /// against the file's folder; whether they exist is checked by the loader.
    pub fn into_config(mut self) -> Result<Config, ConfigError> {
        let redis = self.validate_redis()?;
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
        let listen = self.http.listen.as_deref().unwrap_or("127.0.0.1:9464");
        let http_listen = listen.parse().map_err(|_| {
            invalid(
                "http.listen",
                format!("`{listen}` is not an address like 127.0.0.1:9464"),
            )
        })?;
        let http = self.validate_http()?;
        let shutdown_grace = seconds(
            "shutdown_grace_seconds",
            self.shutdown_grace_seconds.unwrap_or(30.0),
            false,
        )?;
        let pools = self.validate_pools()?;
        let telemetry = self.validate_telemetry()?;
        Ok(Config {
            redis,
            stream,
            janitor,
            align: self.validate_align()?,
            schemas_dir: self.schemas.and_then(|s| s.dir),
            http_listen,
            http,
            health: HealthConfig {
                degraded_dlq_length: self.health.degraded_dlq_length.unwrap_or(100),
                degraded_lag: self.health.degraded_lag.unwrap_or(1000),
            },
            telemetry,
            shutdown_grace,
            pools,
        })
    }

    /// `[telemetry]`: the key in the forms `order_key` takes (not `data`, which is the body
    /// itself), an interval between 50 ms and 60 s, a bound on distinct values.
    fn validate_telemetry(&self) -> Result<TelemetryConfig, ConfigError> {
        let raw = &self.telemetry;
        let defaults = TelemetryConfig::default();
        let key = match raw.key.as_deref() {
            Some(crate::vocab::DATA) => {
                return Err(invalid(
                    "telemetry.key",
                    "`data` is the whole body: name a field inside it with a JSON pointer, e.g. \"/connectorKey\"",
                ));
            }
            Some(k) => Some(order_key("telemetry.key", k)?),
            None => None,
        };
        let interval_ms = raw
            .interval_ms
            .unwrap_or(defaults.interval.as_millis() as u64);
        if !(50..=60_000).contains(&interval_ms) {
            return Err(invalid(
                "telemetry.interval_ms",
                format!("{interval_ms} must be between 50 and 60000 (milliseconds)"),
            ));
        }
        let max_values = raw.max_values.unwrap_or(defaults.max_values as u64);
        if !(1..=1_000_000).contains(&max_values) {
            return Err(invalid(
                "telemetry.max_values",
                format!("{max_values} must be between 1 and 1000000"),
            ));
        }
        Ok(TelemetryConfig {
            key,
            interval: Duration::from_millis(interval_ms),
            max_values: max_values as usize,
            monitor: raw.monitor.unwrap_or(defaults.monitor),
        })
    }

    fn validate_redis(&self) -> Result<RedisConfig, ConfigError> {
        let raw = &self.redis;
        let url = raw.url.as_deref().unwrap_or("redis://127.0.0.1:6379/0");
        let url = normalize_url(url);
        validate_url(&url)?;
        let tls_keys = raw.ca_file.is_some()
            || raw.cert_file.is_some()
            || raw.insecure_skip_verify == Some(true);
        if tls_keys && !url.starts_with("rediss://") && !url.starts_with("rediss-cluster://") {
            return Err(invalid(
                "redis.url",
                "TLS options are set but the URL is not rediss://; use rediss://host:port for TLS",
            ));
        }
        Ok(RedisConfig {
            url,
            ca_file: raw.ca_file.clone(),
            cert_file: raw.cert_file.clone(),
            key_file: raw.key_file.clone(),
            insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
        })
    }

    /// Tokens must not be empty; TLS needs both files.
    fn validate_http(&mut self) -> Result<HttpConfig, ConfigError> {
        for (key, token) in [
            ("http.admin_token", &self.http.admin_token),
            ("http.read_token", &self.http.read_token),
        ] {
            if token.as_ref().is_some_and(|t| t.expose().trim().is_empty()) {
                return Err(invalid(
                    key,
                    "must not be empty (leave it out to turn the API off)",
                ));
            }
        }
        let tls = match (
            self.http.tls_cert_file.take(),
            self.http.tls_key_file.take(),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls_key_file",
                    "tls_cert_file needs tls_key_file too",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls_cert_file",
                    "tls_key_file needs tls_cert_file too",
                ));
            }
        };
        Ok(HttpConfig {
            admin_token: self.http.admin_token.take(),
            read_token: self.http.read_token.take(),
            tls,
        })
    }

    fn validate_stream(&self) -> Result<StreamConfig, ConfigError> {
        let raw = &self.stream;
        let name = raw.name.clone().unwrap_or_else(|| "integration-bus".into());
        if name.is_empty() {
            return Err(invalid("stream.name", "must not be empty"));
        }
        let dlq = raw.dlq.clone().unwrap_or_else(|| keys::default_dlq(&name));
        if dlq.is_empty() || dlq == name {
            return Err(invalid(
                "stream.dlq",
                "must be a key other than the main stream",
            ));
        }
        let max_len = raw.max_len.unwrap_or(1_000_000);
        if max_len == 0 {
            return Err(invalid("stream.max_len", "must be at least 1"));
        }
        let max_entry_bytes = raw.max_entry_bytes.unwrap_or(1_048_576);
        if max_entry_bytes == 0 {
            return Err(invalid("stream.max_entry_bytes", "must be at least 1"));
        }
        let partitions = raw.partitions.unwrap_or(1);
        if !(1..=1024).contains(&partitions) {
            return Err(invalid("stream.partitions", "must be between 1 and 1024"));
        }
        let parts = keys::partitions(&name, &dlq, partitions as usize)
            .map_err(|_| dlq_outside_stream(&name, &dlq))?;
        Ok(StreamConfig {
            dedup_window: seconds(
                "stream.dedup_window_seconds",
                raw.dedup_window_seconds.unwrap_or(86_400.0),
                true,
            )?,
            max_age: raw
                .max_age_seconds
                .map(|s| seconds("stream.max_age_seconds", s, true))
                .transpose()?,
            name,
            dlq,
            max_len,
            partitions: partitions as usize,
            event_id: raw
                .event_id
                .as_deref()
                .map(|p| event_id_pointer("stream.event_id", p))
                .transpose()?,
            max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
            parts,
        })
    }

    /// `[schemas] align`: each field named, each pointer a JSON pointer into `data`.
    fn validate_align(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let Some(align) = self.schemas.as_ref().and_then(|s| s.align.as_ref()) else {
            return Ok(Vec::new());
        };
        align
            .iter()
            .map(|(field, pointer)| {
                let key = format!("schemas.align.{field}");
                if field.is_empty() || field == crate::vocab::DATA {
                    return Err(invalid(
                        key,
                        "name an entry field other than `data`, e.g. \"x-phpgrc-kind\" = \"/kind\"",
                    ));
                }
                if !pointer.starts_with('/') {
                    return Err(invalid(
                        key,
                        format!(
                            "`{pointer}` is not a JSON pointer into data: write it like \"/kind\""
                        ),
                    ));
                }
                Ok((field.clone(), json_pointer(&key, pointer)?))
            })
            .collect()
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

/// With partitions, each partition's DLQ key is derived from the stream's hash tag or name;
/// a DLQ under neither cannot be.
fn dlq_outside_stream(name: &str, dlq: &str) -> ConfigError {
    let fix = match keys::hash_tag(name) {
        Some(tag) => {
            format!("carry the stream's hash tag {{{tag}}}, e.g. dlq = \"{{{tag}}}:dlq\"")
        }
        None => format!(
            "start with the stream name, e.g. dlq = \"{}\" (the default)",
            keys::default_dlq(name)
        ),
    };
    invalid(
        "stream.dlq",
        format!(
            "with partitions > 1 each partition's DLQ must share its stream's slot: the DLQ `{dlq}` must {fix}"
        ),
    )
}

/// On Redis Cluster, keys that one script or transaction touches together must hash to the
/// same slot: the stream and its DLQ (the DLQ move), replay progress and dedup keys (their
/// names start with the stream's, so they follow its hash tag).
fn check_slots(stream: &StreamConfig) -> Result<(), ConfigError> {
    let Some(m) = keys::slot_mismatch(stream.partitions(), key_slot) else {
        return Ok(());
    };
    Err(invalid(
        "stream.dlq",
        format!(
            "on Redis Cluster the stream `{}` (slot {}) and its DLQ `{}` (slot {}) must hash to the same slot, because moving an entry to the DLQ is one atomic step; give the stream and the DLQ one hash tag, e.g. name = \"{{bus}}:events\" and dlq = \"{{bus}}:dlq\"",
            m.partition.stream, m.stream_slot, m.partition.dlq, m.dlq_slot
        ),
    ))
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

/// `[stream] event_id`: a JSON pointer (the `id` field itself needs no setting).
fn event_id_pointer(key: &str, value: &str) -> Result<String, ConfigError> {
    if !value.starts_with('/') {
        return Err(invalid(
            key,
            format!("`{value}` is not a JSON pointer into data: write it like \"/id\""),
        ));
    }
    json_pointer(key, value)
}

/// An `order_key` value: a JSON pointer (`/a/b`, with `~0`/`~1` escapes) or a field name.
fn order_key(key: &str, value: &str) -> Result<OrderKey, ConfigError> {
    if value.is_empty() {
        return Err(invalid(
            key,
            "is empty: name an entry field (\"key\") or a JSON pointer into data (\"/payload/incidentId\")",
        ));
    }
    if !value.starts_with('/') {
        return Ok(OrderKey::Field(value.to_string()));
    }
    json_pointer(key, value).map(OrderKey::Pointer)
}

/// `value`, which starts with `/`, checked to be a JSON pointer (`~0`/`~1` escapes, no
/// empty segment).
fn json_pointer(key: &str, value: &str) -> Result<String, ConfigError> {
    let bad_escape = value
        .split('~')
        .skip(1)
        .any(|rest| !rest.starts_with('0') && !rest.starts_with('1'));
    if bad_escape {
        return Err(invalid(
            key,
            format!(
                "`{value}` is not a valid JSON pointer: `~` must be followed by 0 (for ~) or 1 (for /)"
            ),
        ));
    }
    if value.split('/').skip(1).any(str::is_empty) {
        return Err(invalid(
            key,
            format!(
                "`{value}` is not a valid JSON pointer: it has an empty segment (`//` or a trailing `/`)"
            ),
        ));
    }
    Ok(value.to_string())
}

impl RawPool {
    fn validate(&self, index: usize, defaults: &RawRetry) -> Result<PoolConfig, ConfigError> {
        let key = |k: &str| format!("pools[{index}].{k}");
        let name = self.validate_name(&key("name"))?;
        let (concurrency, scaling) = self.validate_concurrency(&key)?;
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
        self.validate_handler(index)?;
        let read_count = match self.read_count.unwrap_or(0) as usize {
            0 => (concurrency * 2).clamp(64, 512),
            n => n,
        };
        let inline_read_count = match self.read_count {
            Some(n) if n > 0 => n as usize,
            _ => 512,
        };
        let order_key = self
            .order_key
            .as_deref()
            .map(|k| order_key(&key("order_key"), k))
            .transpose()?;
        Ok(PoolConfig {
            order_key,
            name,
            concurrency,
            scaling,
            types: self.types.clone(),
            timeout: seconds(
                &key("timeout_seconds"),
                self.timeout_seconds.unwrap_or(120.0),
                true,
            )?,
            handler: self.handler.clone(),
            start,
            read_count,
            inline_read_count,
            retry: self
                .retry_overrides()
                .resolve(defaults, &format!("pools[{index}]"))?,
        })
    }

    /// `concurrency` (a number, or `{ min, max }`) and `scale_cooldown_seconds`: the most
    /// handlers at once, and the adaptive bounds if any.
    fn validate_concurrency(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(usize, Option<Scaling>), ConfigError> {
        let count = |k: &str, n: Option<i64>| -> Result<usize, ConfigError> {
            let n = n.ok_or_else(|| {
                invalid(
                    key(k),
                    "is required: write concurrency = { min = 2, max = 16 }",
                )
            })?;
            match usize::try_from(n) {
                Ok(n @ 1..=MAX_CONCURRENCY) => Ok(n),
                _ => Err(invalid(
                    key(k),
                    format!("{n} must be between 1 and {MAX_CONCURRENCY}"),
                )),
            }
        };
        let (min, max) = match self.concurrency.unwrap_or(RawConcurrency::Fixed(1)) {
            RawConcurrency::Fixed(n) => {
                if self.scale_cooldown_seconds.is_some() {
                    return Err(invalid(
                        key("scale_cooldown_seconds"),
                        "applies only to adaptive pools: write concurrency = { min = …, max = … }, or remove it",
                    ));
                }
                return Ok((count("concurrency", Some(n))?, None));
            }
            RawConcurrency::Range { min, max } => (
                count("concurrency.min", min)?,
                count("concurrency.max", max)?,
            ),
        };
        if min > max {
            return Err(invalid(
                key("concurrency"),
                format!(
                    "min {min} is above max {max}; min is where the pool starts and the least it shrinks to, max the most"
                ),
            ));
        }
        let cooldown = seconds(
            &key("scale_cooldown_seconds"),
            self.scale_cooldown_seconds.unwrap_or(3.0),
            true,
        )?;
        Ok((max, Some(Scaling { min, cooldown })))
    }

    fn validate_name(&self, key: &str) -> Result<String, ConfigError> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| invalid(key, "every pool needs a name"))?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !name_ok {
            return Err(invalid(
                key,
                format!("`{name}` must be non-empty and use only letters, digits, - _ . :"),
            ));
        }
        Ok(name)
    }

    fn validate_handler(&self, index: usize) -> Result<(), ConfigError> {
        match &self.handler {
            Some(HandlerConfig::Exec { command, .. }) if command.is_empty() => Err(invalid(
                format!("pools[{index}].handler.command"),
                "must list the program and its arguments",
            )),
            Some(HandlerConfig::Http { url, .. })
                if !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                Err(invalid(
                    format!("pools[{index}].handler.url"),
                    format!("`{url}` must start with http:// or https://"),
                ))
            }
            _ => Ok(()),
        }
    }
}
