//! weir: a Redis Streams consumer-group engine.
//!
//! Services XADD events (`type` + JSON `data`) to a stream; weir runs worker pools — one
//! consumer group each — that hand every event to a handler, acknowledge successes, retry
//! failures with exponential backoff, reclaim entries from crashed workers, and dead-letter
//! what cannot succeed. All state is plain Redis data an operator can read with `redis-cli`.
//!
//! # Using the library
//!
//! The supported API is what this page documents: [`Engine`] runs pools from a [`Config`]
//! (`Engine::new(config).with_handler("pool", h).run(shutdown)`); a [`Handler`] turns a
//! [`Delivery`] into an [`Outcome`]; a [`Publisher`] writes [`NewEvent`]s; [`dlq`] and
//! [`replay`] are the operator operations `weir dlq` and `weir replay` (and the HTTP API) run;
//! [`status`] is the snapshot behind `weir status`; [`error`] holds the error types; [`vocab`]
//! the words of the contract ([`StreamId`], [`DlqReason`], field names). The hidden modules
//! (`redis`, `schema`, `align`, `timespec`, `dispatch`, `envelope`, `telemetry`) are public only
//! for the binary, the tests and the benches, and may change in any release. `examples/rust_handler.rs` is a
//! complete program.
//!
//! # Layout
//!
//! The flow goes one way: `config → redis → consumer → dispatch → handler → settle`; the
//! janitor, replay, the DLQ operations, the publisher and the scheduler sit beside it on the
//! same Redis layer, and `app` (the composition root) and the edges (`cli/`, `api`,
//! `dashboard`, `health`) sit on top. Every import points down those layers: no two files
//! import each other and no module cycle exists (`consumer/job.rs` and `concurrency` exist
//! to keep it so). Check with any import-graph tool over `src/`.
//!
//! - `app`: the composition root, [`Engine::run`]: builds pools, starts readers, workers,
//!   janitors and the HTTP server, and shuts them down as stop → drain → abandon.
//! - `task`: the engine's long-running tasks in trackers that turn a panic into a clean
//!   shutdown and exit code 70, never a silent stall.
//! - `streak`: the one "retry a failing loop with capped backoff and throttled logs" helper.
//! - `clock`: the wall clock in unix ms for everything the engine decides by; a few edges
//!   read the system clock themselves for what is only shown or sent (the DLQ sweep's
//!   `dlq_failed_at`, the webhook `Retry-After` date, span timestamps, TLS checks).
//! - `concurrency`: the `<stream>:concurrency:<pool>` hash adaptive pools publish and
//!   `weir status` reads.
//! - [`config`]: `streams.toml` in two phases — `config/raw.rs` (serde form, unknown keys are
//!   errors), `model.rs` (the validated [`Config`]), `load.rs` (file, environment, filesystem
//!   checks), `validate/` (pure rules, errors keyed like `pools[0].concurrency`: `pool.rs`,
//!   `schedule.rs`, `pointer.rs`), `url.rs` (Redis and webhook URLs, their redaction).
//! - `keys`: the Redis key layout (partitions, DLQ, paused set, replay jobs, dedup, owner
//!   leases) and the cluster slot check.
//! - [`vocab`]: the contract's words: [`StreamId`], [`RawEntry`], [`DlqReason`] and every field
//!   name (`type`, `data`, `id`, `replay_*`, `dlq_*`). Imports nothing of the crate.
//! - `redis/`: the only module that talks to Redis, one file per command family:
//!   `connection.rs` (client, TLS, reconnects), `command.rs` (argument and script helpers),
//!   `group.rs` (reads, acks, claims), `dead_letter.rs`, `write.rs` (XADD paths),
//!   `inspect.rs` (XINFO, XPENDING, lengths, XRANGE/XREVRANGE), `lease.rs` (ownership
//!   leases of ordered pools), `reply.rs` (reply parsing without panics),
//!   `tls.rs`; each Lua script is a file in `redis/lua/` with a
//!   KEYS/ARGV header, run by SHA.
//! - `consumer/`: one pool on one partition: its reader (blocking XREADGROUP), the job an
//!   entry travels as (`job.rs`), workers, leases (visibility timeout and retry schedule),
//!   batched acks, each pool's summary log line (`summary.rs`), the progress the stall
//!   detector reads (`progress.rs`), and for ordered pools
//!   (`ordered.rs`) the key lanes and the ownership lease with its fencing epoch;
//!   `scale/`: adaptive concurrency, a slot gate for the workers and a controller per pool
//!   whose rule (`decide.rs`) is a pure function of one window's numbers.
//! - `flow/`: flow control (contract §14) the workers ask before a handler starts:
//!   `rate.rs`, rate limits shared through Redis (a token bucket taken in batches).
//! - `dispatch`: which pool is responsible for an entry and whether it can be handled — pure.
//! - `handler/`: the [`Handler`] trait and the built-in `http`, `exec`, `log`, `noop`.
//! - `settle/`: `decide(outcome, attempt, &policy) -> Settlement` (pure), `policy.rs` (backoff
//!   and "attempts used up?", written once) and the executor that acks, schedules a retry or
//!   moves to the DLQ (`dead_letter.rs`), recording the metrics.
//! - [`dlq`]: paged, filtered scans of the DLQ and, in `dlq/ops.rs`, the operations across
//!   partitions: reprocess (by IDs, filter or all), forget, purge, stats, list pages.
//! - [`replay`]: copies a time range back onto the stream (`job.rs`: one resumable job on one
//!   stream; `partitions.rs`: across partitions with one limit).
//! - [`publisher`]: the only path that writes new entries; validates, dedups, partitions.
//! - `janitor`: reclaims idle entries, dead-letters exhausted ones, deletes idle consumers,
//!   trims the stream without passing an unacknowledged entry.
//! - [`status`]: the stream, DLQ and per-pool view, built once for `weir status`, `/healthz`
//!   and the gauges.
//! - `api`: the admin HTTP API (`/api/v1`, OpenAPI, tokens, TLS): the CLI's operations over
//!   HTTP, with replay jobs run inside the engine.
//! - `dashboard`: the operator web page (`index.html`, `app.js`, `app.css`) embedded with
//!   `include_str!` and served at `/` beside the API, with a strict Content-Security-Policy.
//! - `health`: `/healthz`, `/readyz` and `/metrics` (mounted with the API and the dashboard
//!   by `app/http.rs`, the one place the HTTP routes are composed), and the loop that refreshes the paused
//!   set the readers watch and the gauges.
//! - `liveness`: stall detection per pool (contract §15): heals a pool that stopped reading,
//!   reports what stays stalled to `/readyz` and `weir_pool_stalled`.
//! - `metrics`: every metric name and its recording helper; `histogram`: the fixed-bucket
//!   histograms behind the per-entry metrics.
//! - `telemetry`: the `<stream>:monitor` hash and the per-value `<stream>:telemetry:<value>`
//!   hashes of `[telemetry] key` (contract §12): counted in memory by two hooks (the worker's
//!   settle step, the DLQ path), written once per interval in one pipeline.
//! - `preflight`: `weir check`'s findings (Redis reachable, durability, the ACL user's
//!   permission for every command the engine sends, slots, clock skew); the durability rule
//!   `weir run` also logs at start.
//! - `schedule`: contract §13: `cron.rs` (when a recurring schedule's ticks are, DST and
//!   `catch_up`: pure) and `recurring.rs` (the scheduler and `weir schedules`' operations).
//! - `trace`: contract §15's W3C trace context: a delivery's span (the child of the entry's
//!   `traceparent`), handed to the handler and exported over OTLP/HTTP off the hot path.
//! - `schema`, `envelope`, `timespec`: JSON Schema validation of `data`; decoding a raw entry
//!   into an event; the CLI's TIME arguments (RFC 3339 with offsets, unix ms, IDs, `-2h`, `now`).
//! - `align`: `[schemas] align`, entry fields that must carry the same value as the body
//!   (the Integration Bus headers): checked by dispatch, the publisher and `weir validate`.
//! - [`conditions`]: `--where FIELD=VALUE` / `/pointer=VALUE` filters of replay and the DLQ.
//! - `sync`: the one way to take a lock, which survives a poisoned mutex.
//! - `main.rs` + `cli/` (binary only): parse the command line, call the library, print.
//!
//! # Errors
//!
//! One enum per layer, in [`error`]: [`error::ConfigError`] (the file), [`error::RedisError`]
//! with a [`error::RedisErrorKind`] that says what a caller can do (retry, recreate the group,
//! give up), [`error::EngineError`] for [`Engine::run`], and [`error::OpError`] for the DLQ
//! and replay operations ([`error::InputError`] for bad arguments). Long-running loops never
//! return Redis errors: they back off and log. Only the edges turn errors into words and
//! numbers: `OpError` is mapped to exit codes and hints once in `src/cli/mod.rs`, and to HTTP
//! statuses once in the admin API; `EngineError` to an exit code in `src/main.rs`.
//!
//! # Where to change what
//!
//! - A new DLQ reason: `vocab.rs` ([`DlqReason`]; the Lua scripts take it as an argument).
//! - A new handler kind: a file in `handler/` (built in `handler::from_config`) and its
//!   `HandlerConfig` variant, which `config/raw.rs` reads as it is (defined in
//!   `config/model.rs`).
//! - How backoff or "attempts used up" works: `settle/policy.rs`.
//! - A new Redis command: the family file under `redis/` (a script: a `.lua` file beside it).
//! - A new API endpoint: the operation in the library (`dlq/`, `replay/`, `schedule/`…), a
//!   thin handler in `api/` (read.rs, write.rs or a file per area) with its `utoipa::path`
//!   annotation, its route in `api/mod.rs` and its path in `api/openapi.rs`; CI checks the
//!   served document with openapi-spec-validator and schemathesis (`tests/openapi.rs`), and
//!   `tests/api.rs` lists every route.
//! - A new dashboard panel: its markup in `dashboard/index.html`, one ES module in
//!   `dashboard/` (text-only DOM helpers from `shared.js`; never `innerHTML`), one line in
//!   `SECTIONS` (`app.js`) and one in `MODULES` (`dashboard/mod.rs`).
//! - A new metric: a constant and a recording helper in `metrics.rs`; a `type` label goes
//!   through `metrics::TypeLabels` so publishers cannot grow it.
//! - A new recurring schedule or scheduled-event rule: `schedule/` (`cron.rs` is pure);
//!   its scripts in `redis/schedule.rs`.
//! - A rate limit or other "may this entry start now?" rule: `flow/`, asked by the worker
//!   right before the handler.

// The supported API: documented, and changed only with a version bump.
pub mod conditions;
pub mod config;
pub mod dlq;
pub mod error;
pub mod publisher;
pub mod replay;
pub mod status;
pub mod vocab;

pub use app::{Engine, HttpAddr};
pub use config::Config;
pub use handler::{Delivery, Handler, Outcome};
pub use publisher::{NewEvent, Publisher};
pub use trace::TraceContext;
pub use vocab::{DlqReason, RawEntry, StreamId};

// Internal modules that the binary, the integration tests or the benches reach into. Not
// part of the supported API: hidden from the docs, and free to change in any release.
#[doc(hidden)]
pub mod align;
#[doc(hidden)]
pub mod dispatch;
#[doc(hidden)]
pub mod envelope;
#[doc(hidden)]
pub mod pointer;
#[doc(hidden)]
pub mod preflight;
#[doc(hidden)]
pub mod redis;
#[doc(hidden)]
pub mod schedule;
#[doc(hidden)]
pub mod schema;
#[doc(hidden)]
pub mod telemetry;
#[doc(hidden)]
pub mod timespec;
#[doc(hidden)]
pub mod trace;

// Internal modules.
pub(crate) mod api;
pub(crate) mod app;
pub(crate) mod clock;
pub(crate) mod concurrency;
pub(crate) mod consumer;
pub(crate) mod dashboard;
pub(crate) mod flow;
pub(crate) mod handler;
pub(crate) mod health;
mod histogram;
pub(crate) mod janitor;
pub(crate) mod keys;
pub(crate) mod liveness;
pub(crate) mod metrics;
mod pem;
pub(crate) mod settle;
pub(crate) mod streak;
mod sync;
pub(crate) mod task;

/// `url` with any password replaced by `***`: every log line and error that names a Redis URL
/// goes through here, so a password never reaches a log (a password holding `/`, `@`, `#`
/// or `?` included). Webhook URLs go through `config::url::redact_webhook_url`.
pub use config::url::redact_url;
