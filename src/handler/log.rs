//! Handlers for demos and benchmarks.

use super::{Delivery, Handler, Outcome};

/// Logs each event at INFO (the payload only at DEBUG) and succeeds.
pub struct LogHandler;

#[async_trait::async_trait]
impl Handler for LogHandler {
    async fn handle(&self, d: &Delivery) -> Outcome {
        tracing::info!(
            pool = %d.pool,
            r#type = %d.event_type,
            entry_id = %d.entry_id,
            event_id = d.event_id.as_deref().unwrap_or(""),
            attempt = d.attempt,
            bytes = d.data.len(),
            "event received"
        );
        tracing::debug!(entry_id = %d.entry_id, data = %d.data, "event payload");
        Outcome::Success
    }

    fn runs_inline(&self) -> bool {
        true
    }
}

/// Succeeds without doing anything.
pub struct NoopHandler;

#[async_trait::async_trait]
impl Handler for NoopHandler {
    async fn handle(&self, _: &Delivery) -> Outcome {
        Outcome::Success
    }

    fn runs_inline(&self) -> bool {
        true
    }
}
