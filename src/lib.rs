//! weir: a Redis Streams consumer-group engine.
//!
//! Services XADD events (`type` + JSON `data`) to a stream; weir runs worker pools — one
//! consumer group each — that hand every event to a handler, acknowledge successes, retry
//! failures with exponential backoff, reclaim entries from crashed workers, and dead-letter
//! what cannot succeed. All state is plain Redis data an operator can read with `redis-cli`.
//!
//! # Layout
//!
//! The flow goes one way: `config → redis → consumer → dispatch → handler → settle`.
//!
//! - [`config`]: `streams.toml` read in two phases (raw serde form, then validated `Config`).
//! - [`error`]: one error enum per layer.
//! - [`keys`]: the Redis key layout (partitions, DLQ, paused set, replay, dedup, owner leases).
//! - [`vocab`]: the shared words (`StreamId`, `RawEntry`); imports nothing of the crate.
//! - [`redis`]: the only module that talks to Redis; typed stream commands.
//! - [`envelope`]: decodes a raw entry into an event (`type`, `data`, pass-through fields).
//! - [`schema`]: JSON Schema validation of `data`, compiled once.
//! - [`consumer`]: a pool's reader, workers, leases (visibility timeout and retry schedule)
//!   and batched acknowledgements.
//! - [`dispatch`]: which pool is responsible for an entry and whether it can be handled.
//! - [`handler`]: the [`Handler`] trait and the `http`, `exec`, `log` and `noop` handlers.
//! - [`settle`]: turns an outcome into XACK, a scheduled redelivery, or an atomic DLQ move.
//! - [`publisher`]: the only path that writes new entries; validates before writing.
//! - [`dlq`]: filtered, paged scans of the DLQ; stats; reprocess is one script per entry.
//! - [`janitor`]: reclaims idle entries, dead-letters exhausted ones, trims the stream safely.
//! - [`status`]: a snapshot of stream, DLQ and pools for `weir status`.
//! - [`timespec`]: TIME arguments (RFC 3339, unix ms, stream IDs, relative, `now`).
//! - [`conditions`]: `--where FIELD=VALUE` / `/pointer=VALUE` filters of replay and the DLQ.
//! - [`replay`]: copies a time range back onto the stream, resumable via its progress hash.
//! - [`metrics`]: every metric name and its recording helper.
//! - [`health`]: `/healthz` and `/metrics`.
//! - [`api`]: the admin HTTP API (`/api/v1`): the CLI's operations over HTTP, with tokens.
//! - [`app`]: the composition root, [`Engine::run`].
//! - `sync`: the one way to take a lock, which survives a poisoned mutex.

pub mod api;
pub mod app;
pub(crate) mod backoff;
pub(crate) mod clock;
pub mod conditions;
pub mod config;
pub mod consumer;
pub mod dispatch;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod health;
pub mod janitor;
pub mod keys;
pub mod metrics;
pub mod publisher;
pub mod redis;
pub mod replay;
pub mod schema;
pub mod settle;
pub mod status;
mod sync;
pub mod timespec;
pub mod vocab;

pub use app::{Engine, HttpAddr};
pub use config::Config;
pub use handler::{Delivery, Handler, Outcome};

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://***@{host}{tail}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(super::redact_url("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(super::redact_url("redis://secret@h"), "redis://***@h");
        assert_eq!(super::redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(super::redact_url("redis://u:p@ss@h/0"), "redis://u:***@h/0");
    }
}
