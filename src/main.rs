//! The `weir` binary: parse the command line, call the library, map errors to exit codes
//! (0 success, 1 runtime failure, 2 usage or config error).

use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

/// mimalloc: allocation was ~15% of the consume path's CPU with glibc malloc
/// (benches/consume.sh); see BENCHMARKS.md for the measured difference.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use weir::config::{Config, DEFAULT_CONFIG_PATH};
use weir::error::EngineError;

/// `weir --version`: the crate version, the git commit and the build day (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WEIR_GIT_COMMIT"),
    ", built ",
    env!("WEIR_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(name = "weir", version = VERSION, about = "Redis Streams consumer-group engine")]
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
    /// Validate and publish one event, or a batch of NDJSON lines.
    Publish {
        /// Event type (with --data).
        #[arg(
            long = "type",
            value_name = "T",
            required_unless_present = "ndjson",
            requires = "data"
        )]
        event_type: Option<String>,
        /// JSON text, @FILE, or - for stdin.
        #[arg(long, value_name = "JSON|@FILE|-", conflicts_with = "ndjson")]
        data: Option<String>,
        /// Publisher event id: a second publish of it within the dedup window is a no-op.
        #[arg(long, conflicts_with = "ndjson")]
        id: Option<String>,
        /// Pass-through field (repeatable).
        #[arg(long = "field", value_name = "NAME=VALUE", conflicts_with = "ndjson")]
        fields: Vec<String>,
        /// Partition key: with `[stream] partitions`, events with one key keep their order
        /// (default: the --id).
        #[arg(long, conflicts_with = "ndjson")]
        key: Option<String>,
        /// The caller's W3C trace context (`00-<trace id>-<span id>-<flags>`), written as the
        /// `traceparent` field: the delivery's span continues that trace.
        #[arg(long, value_name = "TRACEPARENT", conflicts_with = "ndjson")]
        traceparent: Option<String>,
        /// Vendors' trace state written beside --traceparent (`tracestate` field).
        #[arg(
            long,
            value_name = "TRACESTATE",
            requires = "traceparent",
            conflicts_with = "ndjson"
        )]
        tracestate: Option<String>,
        /// Hold the event this long before it reaches the stream (a number and a unit: 250ms,
        /// 1.5s, 15m, 2h, 1d), by Redis's clock; it waits in <stream>:scheduled.
        #[arg(long, value_name = "DURATION", conflicts_with_all = ["ndjson", "at"])]
        delay: Option<String>,
        /// Hold the event until TIME (RFC 3339, unix ms, a stream ID, now); a time past is
        /// due at once.
        #[arg(
            long,
            value_name = "TIME",
            conflicts_with = "ndjson",
            allow_hyphen_values = true
        )]
        at: Option<String>,
        /// One {"type","data","id"?,"fields"?,"key"?,"traceparent"?,"tracestate"?,
        /// "delay"?|"at"?} per line; - for stdin.
        #[arg(long, value_name = "FILE|-")]
        ndjson: Option<String>,
        /// Write events of a type no pool takes (they are dead-lettered `unrouted`); without
        /// it such events are refused with the list of routed types.
        #[arg(long)]
        allow_unrouted: bool,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Check a JSON document against the schemas for a type, and the fields an event would
    /// carry against `[schemas] align` (exit 0 valid, 1 invalid).
    Validate {
        #[arg(long = "type", value_name = "T")]
        event_type: String,
        /// JSON file, or - for stdin.
        file: String,
        /// An entry field the event would carry (repeatable), checked against
        /// `[schemas] align`.
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// See and cancel delayed events (publish --delay/--at), waiting in <stream>:scheduled.
    Scheduled {
        #[command(subcommand)]
        command: ScheduledCommand,
    },
    /// Stop a pool reading (adds it to <stream>:paused).
    Pause {
        pool: String,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Let a paused pool read again.
    Resume {
        pool: String,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Inspect and work the dead-letter stream.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Copy a time range of the main stream back onto it (resumable).
    Replay(cli::replay::Args),
    /// Recurring schedules ([[schedules]]): each one's last and next tick, and whether it is
    /// paused; `pause NAME` / `resume NAME` stop and restart one.
    Schedules {
        #[command(subcommand)]
        command: Option<cli::schedules::Command>,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long, global = true)]
        json: bool,
    },
    /// Stream and DLQ length; per pool: consumers, pending, lag, oldest pending, paused.
    Status {
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Write a starter streams.toml (one pool, a `log` handler) and
    /// schemas/envelope.schema.json into DIR; never overwrites a file.
    Init {
        /// Where to write them (created when missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// The start-up checks as a command: config valid, Redis reachable, AOF and
    /// maxmemory-policy safe, the ACL user allowed every command weir sends, stream/DLQ slots,
    /// clock skew. One line per finding; exit 0 when none fails, 1 otherwise.
    Check {
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `source <(weir completions bash)`.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (weir.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct Select {
    /// Only this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Only this dlq_reason.
    #[arg(long)]
    reason: Option<String>,
    /// From this time on (RFC 3339 with Z or an offset, unix ms, stream ID, now, or -2h);
    /// inclusive.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
    /// Up to this time; inclusive.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    until: Option<String>,
    /// Only entries whose field FIELD (or value at /json/pointer in data) is VALUE;
    /// repeatable, all must hold.
    #[arg(long = "where", value_name = "FIELD=VALUE")]
    conditions: Vec<String>,
}

impl Select {
    fn selection(self, grep: Option<String>) -> cli::dlq::Selection {
        cli::dlq::Selection {
            types: self.types,
            reason: self.reason,
            since: self.since,
            until: self.until,
            grep,
            conditions: self.conditions,
        }
    }
}

#[derive(Subcommand)]
enum ScheduledCommand {
    /// Delayed events, soonest first, with their due times (NDJSON with --json).
    List {
        /// Only this type (repeatable).
        #[arg(long = "type", value_name = "T")]
        types: Vec<String>,
        /// At most this many events.
        #[arg(long)]
        limit: Option<usize>,
        /// Print one JSON object per event (NDJSON) instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Cancel delayed events by their event id (exit 2 naming the ids not scheduled).
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters (NDJSON with --json), streaming page by page.
    List {
        #[command(flatten)]
        select: Select,
        /// Only entries containing this text.
        #[arg(long)]
        grep: Option<String>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u64>,
        /// Print one JSON object per entry (NDJSON) instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Every field of one dead letter.
    Show {
        id: String,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Counts by type, reason and pool.
    Stats {
        #[command(flatten)]
        select: Select,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to the main stream (replay_of, replay_group = the failed pool).
    Reprocess {
        /// DLQ entry IDs.
        ids: Vec<String>,
        /// Every dead letter (with --since/--until/--reason, the matching ones).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        select: Select,
        /// Report what would move, by type; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Delete dead letters by ID.
    Forget {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Delete every dead letter (or those of --type and --where) for good.
    Purge {
        /// Only this type (repeatable).
        #[arg(long = "type", value_name = "T")]
        types: Vec<String>,
        /// Only entries whose field FIELD (or value at /json/pointer in data) is VALUE;
        /// repeatable, all must hold.
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        conditions: Vec<String>,
        #[arg(long)]
        yes: bool,
        /// Print one JSON document instead of human text (for scripts).
        #[arg(long)]
        json: bool,
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
        // EX_SOFTWARE: an internal error; a supervisor (systemd Restart=on-failure) restarts.
        EngineError::TaskPanicked { .. } => ExitCode::from(70),
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
        Command::Run { pools } => run(&cli.config, &pools, &runtime),
        Command::Init { dir } => cli::finish(cli::init::init(&dir)),
        Command::Check { json } => cli::check::check(&cli.config, json, &runtime),
        Command::Completions { shell } => {
            cli::finish(cli::generate::completions(Cli::command(), shell))
        }
        Command::Man { dir } => cli::finish(cli::generate::man(Cli::command(), &dir)),
        Command::Validate {
            event_type,
            file,
            fields,
            json,
        } => {
            // The config only says where the schemas are; without one, ./schemas is used.
            let config = if cli.config.is_file() {
                match cli::load_config(&cli.config) {
                    Ok(c) => Some(c),
                    Err(f) => return cli::finish(Err(f)),
                }
            } else {
                None
            };
            let check = cli::Validation {
                event_type: &event_type,
                file: &file,
                fields: &fields,
            };
            cli::finish(cli::validate(config.as_ref(), &check, json))
        }
        command => {
            let config = match cli::load_config(&cli.config) {
                Ok(c) => c,
                Err(f) => return cli::finish(Err(f)),
            };
            cli::finish(runtime.block_on(operate(&config, command)))
        }
    }
}

async fn operate(config: &Config, command: Command) -> cli::Outcome {
    match command {
        Command::Publish {
            ndjson: Some(source),
            allow_unrouted,
            json,
            ..
        } => cli::publish::batch(config, &source, allow_unrouted, json).await,
        Command::Publish {
            event_type,
            data,
            id,
            fields,
            key,
            traceparent,
            tracestate,
            delay,
            at,
            allow_unrouted,
            json,
            ..
        } => {
            let (Some(event_type), Some(data)) = (event_type, data) else {
                return Err(cli::Failure::usage(
                    "publish needs --type and --data, or --ndjson",
                ));
            };
            let event = cli::publish::Event {
                event_type,
                data,
                id,
                key,
                traceparent,
                tracestate,
                delay,
                at,
                allow_unrouted,
            };
            cli::publish::one(config, event, &fields, json).await
        }
        Command::Pause { pool, json } => cli::pause(config, &pool, true, json).await,
        Command::Resume { pool, json } => cli::pause(config, &pool, false, json).await,
        Command::Status { json } => cli::status(config, json).await,
        Command::Schedules { command, json } => cli::schedules::run(config, command, json).await,
        Command::Dlq { command } => dlq(config, command).await,
        Command::Scheduled { command } => match command {
            ScheduledCommand::List { types, limit, json } => {
                cli::scheduled::list(config, &types, limit, json).await
            }
            ScheduledCommand::Cancel { ids, json } => {
                cli::scheduled::cancel(config, &ids, json).await
            }
        },
        Command::Replay(args) => cli::replay::replay(config, args).await,
        Command::Run { .. }
        | Command::Validate { .. }
        | Command::Init { .. }
        | Command::Check { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => Err(cli::Failure::usage("unreachable command")),
    }
}

async fn dlq(config: &Config, command: DlqCommand) -> cli::Outcome {
    use cli::dlq as d;
    match command {
        DlqCommand::List {
            select,
            grep,
            limit,
            json,
        } => d::list(config, &select.selection(grep), limit, json).await,
        DlqCommand::Show { id, json } => d::show(config, &id, json).await,
        DlqCommand::Stats { select, json } => d::stats(config, &select.selection(None), json).await,
        DlqCommand::Reprocess {
            ids,
            all,
            select,
            dry_run,
            json,
        } => d::reprocess(config, &ids, all, &select.selection(None), dry_run, json).await,
        DlqCommand::Forget { ids, json } => d::forget(config, &ids, json).await,
        DlqCommand::Purge {
            types,
            conditions,
            yes,
            json,
        } => d::purge(config, &types, &conditions, yes, json).await,
    }
}

fn run(path: &std::path::Path, pools: &[String], runtime: &tokio::runtime::Runtime) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return ExitCode::from(2);
        }
    };
    let engine = match weir::Engine::new(config).only_pools(pools) {
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
