//! The `weir` binary: parse the command line, call the library, map errors to exit codes
//! (0 success, 1 runtime failure, 2 usage or config error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use weir::config::{Config, DEFAULT_CONFIG_PATH};
use weir::error::EngineError;

#[derive(Parser)]
#[command(name = "weir", version, about = "Redis Streams consumer-group engine")]
struct Cli {
    /// Config file.
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "WEIR_CONFIG")]
    config: PathBuf,
    /// Log format: text on a terminal, json for log pipelines.
    #[arg(long, global = true, value_enum, env = "WEIR_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pools, the janitor, /metrics and /healthz until SIGTERM or SIGINT.
    Run {
        /// Run only this pool (repeatable); default: every pool.
        #[arg(long = "pool", value_name = "NAME")]
        pools: Vec<String>,
    },
}

fn init_logging(format: Option<LogFormat>) {
    use std::io::IsTerminal;
    let filter = std::env::var("WEIR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Some(LogFormat::Json) => builder.json().flatten_event(true).init(),
        _ => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn report(error: &dyn std::error::Error) {
    eprintln!("weir: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

fn exit_code(e: &EngineError) -> ExitCode {
    match e {
        EngineError::Config(_) | EngineError::Handler { .. } | EngineError::Listen { .. } => {
            ExitCode::from(2)
        }
        _ => ExitCode::from(1),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&e);
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Run { pools } => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    report(&e);
                    return ExitCode::from(2);
                }
            };
            let engine = match weir::Engine::new(config).only_pools(&pools) {
                Ok(engine) => engine,
                Err(e) => {
                    report(&e);
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(engine.run(signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    report(&e);
                    exit_code(&e)
                }
            }
        }
    }
}
