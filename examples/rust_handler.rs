//! A Rust handler for one pool, in place of the pool's configured `http`/`exec`/`log` one.
//!
//! ```text
//! cargo run --example rust_handler -- [streams.toml] [pool]
//! ```
//!
//! Loads the config (default `./streams.toml`; `WEIR_*` variables override it as for
//! `weir run`), registers [`Greeter`] for the pool (default `bus-general`) and runs until
//! Ctrl-C, then drains in-flight deliveries like `weir run` does on SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use weir::{Config, Delivery, Engine, Handler, Outcome};

/// Succeeds on events it understands, rejects malformed ones for good (they go to the DLQ
/// with reason `rejected`), and asks for a retry when a dependency is down.
struct Greeter;

#[async_trait::async_trait]
impl Handler for Greeter {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let Ok(data) = serde_json::from_str::<serde_json::Value>(&d.data) else {
            return Outcome::permanent("data is not JSON");
        };
        if data.get("unavailable").is_some() {
            // Redelivered after the pool's backoff; after max_attempts it is dead-lettered.
            return Outcome::retry("downstream unavailable");
        }
        // `attempt` > 1 means this may have run before: a real handler would dedupe on
        // `event_id` here.
        tracing::info!(entry = %d.entry_id, r#type = %d.event_type, attempt = d.attempt, "handled");
        Outcome::Success
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().unwrap_or_else(|| "streams.toml".into()));
    let pool = args.next().unwrap_or_else(|| "bus-general".into());
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let engine = Engine::new(config).with_handler(&pool, Greeter);
    let shutdown = async {
        // If the signal cannot be watched, stop at once rather than run unstoppable.
        let _ = tokio::signal::ctrl_c().await;
    };
    match engine.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}
