//! Phase two: from [`RawConfig`] to [`Config`]: defaults, durations, and every rule that
//! needs more than a type. Pure: paths arrive resolved and are not looked at here (that is
//! [`super::load`]'s job), so each rule can be tested from a TOML snippet alone. One
//! exception: the standard `OTEL_EXPORTER_OTLP_ENDPOINT`/`OTEL_SERVICE_NAME` variables fill
//! in absent `[tracing]` keys (their rule takes the lookup as an argument, for its tests).

use std::time::Duration;

use super::model::{
    Config, HealthConfig, HttpConfig, JanitorConfig, LogConfig, PoolConfig, RedisConfig,
    StreamConfig, TelemetryConfig, TracingConfig,
};
use super::raw::{RawConfig, RawRetry};
use super::url::{is_cluster_url, key_slot, normalize_url, validate_url};
use crate::error::ConfigError;
use crate::keys;

mod pointer;
mod pool;
mod schedule;

use pointer::{event_id_pointer, json_pointer, order_key};

pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The longest any `*_seconds` key may be: ten years. Durations are added to clocks (timers,
/// deadlines, retry schedules), and a value past what a clock can hold would panic there.
pub(super) const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// A `*_seconds` value: finite, not negative, above zero when `positive`, at most
/// [`MAX_SECONDS`].
pub(super) fn seconds(key: &str, value: f64, positive: bool) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value < 0.0 || (positive && value == 0.0) {
        let want = if positive { "above 0" } else { "0 or more" };
        return Err(invalid(
            key,
            format!("{value} is not a number of seconds {want}"),
        ));
    }
    at_most(key, value, MAX_SECONDS, "10 years")?;
    Duration::try_from_secs_f64(value).map_err(|e| invalid(key, e.to_string()))
}

/// `value` seconds must not pass `max` (`words` says it for people).
pub(super) fn at_most(key: &str, value: f64, max: f64, words: &str) -> Result<(), ConfigError> {
    if value > max {
        return Err(invalid(
            key,
            format!("{value} seconds is more than the {max} ({words}) allowed"),
        ));
    }
    Ok(())
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
        let schedules = schedule::validate(&self.schedules, &pools)?;
        let telemetry = self.validate_telemetry()?;
        let logging = self.validate_log()?;
        let tracing = self.validate_tracing(|name| std::env::var(name).ok())?;
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
            logging,
            tracing,
            shutdown_grace,
            pools,
            schedules,
        })
    }

    /// `[logging]`: a summary interval of 0 (off) or at least one second.
    fn validate_log(&self) -> Result<LogConfig, ConfigError> {
        let defaults = LogConfig::default();
        let summary = match self.logging.summary_seconds {
            None => defaults.summary,
            Some(0.0) => None,
            Some(s) => {
                let d = seconds("logging.summary_seconds", s, true)?;
                if d < Duration::from_secs(1) {
                    return Err(invalid(
                        "logging.summary_seconds",
                        format!("{s} is under a second: use 1 or more, or 0 for no summary"),
                    ));
                }
                Some(d)
            }
        };
        Ok(LogConfig {
            each_entry: self.logging.each_entry.unwrap_or(defaults.each_entry),
            summary,
        })
    }

    /// `[tracing]`: an http(s) endpoint, a ratio in 0..=1 and a service name; the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`/`OTEL_SERVICE_NAME` (read through `env`) fill in keys
    /// that are absent.
    fn validate_tracing(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TracingConfig, ConfigError> {
        let raw = &self.tracing;
        let defaults = TracingConfig::default();
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let endpoint =
            set(raw.otlp_endpoint.clone()).or_else(|| set(env("OTEL_EXPORTER_OTLP_ENDPOINT")));
        if let Some(endpoint) = &endpoint {
            let scheme_ok = ["http://", "https://"]
                .iter()
                .any(|s| endpoint.starts_with(s));
            if !scheme_ok || endpoint.parse::<http::Uri>().is_err() {
                return Err(invalid(
                    "tracing.otlp_endpoint",
                    format!(
                        "`{}` is not an OTLP/HTTP endpoint: use http://host:4318 or https://host:4318 (spans go to <endpoint>/v1/traces; gRPC export is not supported)",
                        crate::config::url::redact_url(endpoint)
                    ),
                ));
            }
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(defaults.sample_ratio);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(invalid(
                "tracing.sample_ratio",
                format!("{sample_ratio} must be between 0 and 1 (1 samples every trace)"),
            ));
        }
        let service_name = set(raw.service_name.clone())
            .or_else(|| set(env("OTEL_SERVICE_NAME")))
            .unwrap_or(defaults.service_name);
        Ok(TracingConfig {
            otlp_endpoint: endpoint,
            sample_ratio,
            service_name,
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
        validate_url(&url).map_err(|problem| invalid("redis.url", problem))?;
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

#[cfg(test)]
mod tracing_tests {
    use super::*;

    fn raw(tracing: serde_json::Value) -> RawConfig {
        serde_json::from_value(serde_json::json!({ "tracing": tracing })).expect("raw config")
    }

    #[test]
    fn tracing_keys_win_over_the_otel_variables_which_fill_in_absent_ones() {
        let env = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".to_string()),
            "OTEL_SERVICE_NAME" => Some("from-env".to_string()),
            _ => None,
        };
        let off = raw(serde_json::json!({}))
            .validate_tracing(|_| None)
            .expect("valid");
        assert_eq!(off, TracingConfig::default());
        let from_env = raw(serde_json::json!({}))
            .validate_tracing(env)
            .expect("valid");
        assert_eq!(
            from_env.otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(from_env.service_name, "from-env");
        let keys = raw(serde_json::json!({
            "otlp_endpoint": "https://otel.example:4318", "service_name": "bus", "sample_ratio": 0.25
        }));
        let keys = keys.validate_tracing(env).expect("valid");
        assert_eq!(
            keys.otlp_endpoint.as_deref(),
            Some("https://otel.example:4318")
        );
        assert_eq!(
            (keys.service_name.as_str(), keys.sample_ratio),
            ("bus", 0.25)
        );
    }

    #[test]
    fn a_ratio_outside_0_to_1_or_a_non_http_endpoint_is_refused() {
        for bad in [
            serde_json::json!({ "sample_ratio": 1.5 }),
            serde_json::json!({ "sample_ratio": -0.1 }),
            serde_json::json!({ "otlp_endpoint": "grpc://collector:4317" }),
            serde_json::json!({ "otlp_endpoint": "collector:4318" }),
        ] {
            let error = raw(bad.clone())
                .validate_tracing(|_| None)
                .expect_err("refused");
            assert!(error.to_string().contains("tracing."), "{bad}: {error}");
        }
    }
}
