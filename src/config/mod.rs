//! `streams.toml` in two phases: `RawConfig` is exactly what serde reads (unknown keys are
//! errors), [`Config`] is what the engine runs on — durations parsed, paths resolved,
//! cross-field rules checked. Every error names the key it is about, as a path like
//! `pools[0].concurrency`.
//!
//! - `raw`: the serde form.
//! - `model`: the validated types.
//! - `load`: reading file and environment; every filesystem check.
//! - `parse_error`: phase-one errors (types, unknown keys) as keyed, human messages.
//! - `validate`: the pure rules, raw → model.
//! - `url`: Redis URL handling (the one spot that uses the Redis client library) and the
//!   redaction of Redis and webhook URLs for display.

mod load;
mod model;
mod parse_error;
mod raw;
pub(crate) mod url;
mod validate;

#[cfg(test)]
mod tests;

pub use load::DEFAULT_CONFIG_PATH;
pub use model::{
    Config, HandlerConfig, HealthConfig, HttpConfig, JanitorConfig, LogConfig, OrderKey,
    PoolConfig, RateLimit, RedisConfig, RetryPolicy, Scaling, ScheduleConfig, Secret, StreamConfig,
    TelemetryConfig, TracingConfig,
};

pub use crate::keys::Partition;
