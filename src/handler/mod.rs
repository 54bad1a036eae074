//! What a pool does with an event. Handlers only see a [`Delivery`] and answer with an
//! [`Outcome`]; they never touch Redis — `settle` turns the outcome into Redis commands.

mod exec;
mod http;
mod log;

use std::sync::Arc;
use std::time::Duration;

pub use exec::ExecHandler;
pub use http::HttpHandler;
pub use log::{LogHandler, NoopHandler};

use crate::config::HandlerConfig;
use crate::trace::TraceContext;
use crate::vocab::StreamId;

/// One delivery of an event to a pool's handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The pool delivering it, for handlers shared by several pools.
    pub pool: Arc<str>,
    /// Unique on the stream; the same on every redelivery.
    pub entry_id: StreamId,
    /// The `type` field, already routed on.
    pub event_type: String,
    /// The event body, a JSON document that passed schema validation.
    pub data: String,
    /// The publisher's event id (`id` field), the natural idempotency key.
    pub event_id: Option<String>,
    /// Pass-through fields (`tenant`, `correlation_id`, `replay_of`…).
    pub fields: Vec<(String, String)>,
    /// 1 on first delivery; a handler that sees 2+ may have run before.
    pub attempt: u64,
    /// Ordered pools: the owner epoch this delivery was handed out under, a fencing token
    /// (a downstream can refuse writes carrying an epoch older than one it has seen).
    pub owner_epoch: Option<u64>,
    /// The trace context this delivery runs in (contract §15), for the handler's own spans
    /// and outgoing calls: with `[tracing]` export on, the delivery's span (the child of the
    /// entry's `traceparent`, or a new root); with export off, the entry's own
    /// `traceparent`/`tracestate` unchanged, `None` when it has none (or an invalid one).
    pub trace_context: Option<TraceContext>,
}

/// A handler's verdict. `settle` decides what it means in Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done: acknowledge.
    Success,
    /// Failed, may succeed later: redeliver after the backoff, or at least `after`.
    Retry {
        /// The earliest redelivery (e.g. from `Retry-After`); the backoff applies if longer.
        after: Option<Duration>,
        /// Logged, and kept as `dlq_error` if the attempts run out.
        error: String,
    },
    /// Failed because the handler's downstream is overloaded (HTTP 429/503, exec exit 75):
    /// settled exactly like [`Outcome::Retry`], and it also tells an adaptive pool
    /// (`concurrency = { min, max }`) to back off.
    Overloaded {
        /// The earliest redelivery (e.g. from `Retry-After`); the backoff applies if longer.
        after: Option<Duration>,
        /// Logged, and kept as `dlq_error` if the attempts run out.
        error: String,
    },
    /// Will never succeed: dead-letter now with reason `rejected`.
    Permanent {
        /// Kept as `dlq_error`, for whoever fixes the event.
        error: String,
    },
}

impl Outcome {
    /// Retry after the pool's backoff.
    pub fn retry(error: impl Into<String>) -> Outcome {
        Outcome::Retry {
            after: None,
            error: error.into(),
        }
    }

    /// Retry after the pool's backoff, and have an adaptive pool back off.
    pub fn overloaded(error: impl Into<String>) -> Outcome {
        Outcome::Overloaded {
            after: None,
            error: error.into(),
        }
    }

    /// Whether the handler signalled overload: what an adaptive pool backs off on.
    pub fn is_overload(&self) -> bool {
        matches!(self, Outcome::Overloaded { .. })
    }

    /// Dead-letter now.
    pub fn permanent(error: impl Into<String>) -> Outcome {
        Outcome::Permanent {
            error: error.into(),
        }
    }
}

/// Implement this to handle events in Rust; register it with [`crate::Engine::with_handler`].
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery. Called concurrently (up to the pool's `concurrency`) and possibly
    /// more than once per entry, so it should be idempotent; a panic counts as a retry.
    async fn handle(&self, delivery: &Delivery) -> Outcome;

    /// True for a handler that answers at once, never waiting on I/O or a timer. The pool's
    /// reader then calls it on each entry it reads, one after the other, without handing the
    /// entry to a worker task: no queue, no task switch. The pool's `concurrency` still
    /// bounds the workers that take retries and reclaimed entries. A handler that claims this
    /// and then waits stalls its pool's reading, so the default is false.
    fn runs_inline(&self) -> bool {
        false
    }
}

/// Builds the built-in handler a pool's config names.
pub fn from_config(config: &HandlerConfig) -> Result<Arc<dyn Handler>, String> {
    Ok(match config {
        HandlerConfig::Http {
            url,
            headers,
            ca_file,
        } => Arc::new(HttpHandler::new(url, headers, ca_file.as_deref())?),
        HandlerConfig::Exec { command, env } => {
            Arc::new(ExecHandler::new(command.clone(), env.clone()))
        }
        HandlerConfig::Log => Arc::new(LogHandler),
        HandlerConfig::Noop => Arc::new(NoopHandler),
    })
}
