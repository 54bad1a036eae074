//! Operator commands: thin wrappers that parse input, call the library, print a human line or
//! `--json`, and return an exit code (0 success, 1 runtime failure or invalid data, 2 usage
//! or config error).

pub mod check;
pub mod dlq;
pub mod generate;
pub mod init;
pub mod publish;
pub mod replay;
pub mod scheduled;
pub mod schedules;

use std::path::Path;
use std::process::ExitCode;

use weir::Config;
use weir::redis::Redis;

/// A failed command: the message to print and the exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// The one mapping from library errors to exit codes: bad input, unknown names and
/// impossible requests are usage errors (2), Redis failures runtime failures (1).
impl From<weir::error::OpError> for Failure {
    fn from(e: weir::error::OpError) -> Failure {
        use weir::error::OpError;
        match e {
            OpError::Input(e) => Failure::usage(e.message),
            // Naming something that does not exist, or asking for what its state forbids
            // (resuming a finished job), is the caller's mistake.
            OpError::Conflict(m) | OpError::NotFound(m) => Failure::usage(m),
            OpError::Ambiguous { message, .. } => Failure::usage(message),
            OpError::Redis(e) => Failure::from(e),
            other => Failure::runtime(other.to_string()),
        }
    }
}

impl From<weir::error::InputError> for Failure {
    fn from(e: weir::error::InputError) -> Failure {
        Failure::usage(e.message)
    }
}

impl From<weir::error::RedisError> for Failure {
    fn from(e: weir::error::RedisError) -> Failure {
        Failure::runtime(e.to_string())
    }
}

pub fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("weir: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

pub fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::usage(e.to_string()))
}

/// Connects once; an unreachable Redis is a runtime failure naming the (redacted) URL.
pub async fn connect(config: &Config) -> Result<Redis, Failure> {
    let redis = Redis::new(&config.redis).map_err(|e| Failure::usage(e.to_string()))?;
    redis.connect().await.map_err(|e| {
        let hint = if e.message.contains("Certificate") || e.message.contains("certificate") {
            "Redis's TLS certificate is not trusted: set redis.ca_file to the CA that signed it (or fix the host name in redis.url)"
        } else if e.is(weir::error::RedisErrorKind::NoPermission) {
            "check the user and password in redis.url (WEIR_REDIS__URL)"
        } else {
            "is redis-server running there (and is it the right scheme: redis:// or rediss://)? Start one with ./ops/run-local.sh or fix redis.url (WEIR_REDIS__URL)"
        };
        Failure::runtime(format!("{}\n  {hint}", e.reason()))
    })?;
    Ok(redis)
}

/// A progress bar on stderr when it is a terminal; hidden (and free) when piped.
pub fn progress(total: Option<u64>, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})"
    } else {
        "{spinner} {msg} {pos} ({per_sec})"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A Redis error as the operator should read it.
pub fn redis_failure(e: weir::error::RedisError) -> Failure {
    use weir::error::RedisErrorKind as K;
    let hint = if e.is(K::OutOfMemory) {
        "; Redis is out of memory (maxmemory reached with maxmemory-policy noeviction): free memory, trim or raise maxmemory. Nothing was written"
    } else if e.is(K::NoPermission) {
        "; the Redis user lacks a permission (see ops/redis/README.md)"
    } else {
        ""
    };
    Failure::runtime(format!("{e}{hint}"))
}

pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// `weir pause POOL` / `weir resume POOL`: membership of `<stream>:paused`.
pub async fn pause(config: &Config, pool: &str, paused: bool, json: bool) -> Outcome {
    if config.pool(pool).is_none() {
        let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        return Err(Failure::usage(format!(
            "no pool named `{pool}` (configured: {})",
            known.join(", ")
        )));
    }
    let redis = connect(config).await?;
    let key = config.stream.paused_key();
    let changed = redis
        .set_member(&key, pool, paused)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let state = if paused { "paused" } else { "running" };
    if json {
        print_json(
            &serde_json::json!({"pool": pool, "state": state, "changed": changed, "key": key}),
        );
    } else if changed {
        println!("{pool}: {state} (redis-cli SMEMBERS {key})");
    } else {
        println!("{pool}: already {state}; nothing changed");
    }
    Ok(())
}

/// `weir validate --type T FILE`: every schema violation with its JSON pointer.
/// What `weir validate` checks: a body for a type, with the fields an entry would carry.
pub struct Validation<'a> {
    pub event_type: &'a str,
    /// JSON file, or `-` for stdin.
    pub file: &'a str,
    /// `--field NAME=VALUE`, checked against `[schemas] align`.
    pub fields: &'a [String],
}

pub fn validate(config: Option<&Config>, check: &Validation<'_>, json: bool) -> Outcome {
    let Validation {
        event_type, file, ..
    } = *check;
    let dir = match config {
        Some(c) => c.schemas_dir.clone(),
        None => Some(std::path::PathBuf::from("schemas")).filter(|p| p.is_dir()),
    };
    let schemas =
        weir::schema::Schemas::load(dir.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    let align = weir::align::Alignment::new(config.map_or(&[][..], |c| &c.align));
    let fields = check
        .fields
        .iter()
        .map(|f| publish::parse_field(f))
        .collect::<Result<Vec<_>, _>>()?;
    let field = |name: &str| match name {
        weir::envelope::TYPE => Some(event_type),
        _ => fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str()),
    };
    let source = if file == "-" {
        file.to_string()
    } else {
        format!("@{file}")
    };
    let text = publish::read_source(&source)?;
    let errors = match weir::schema::parse_json(&text) {
        Ok(value) => {
            let mut errors = schemas.errors(event_type, &value);
            errors.extend(align.check(field, &value));
            errors
        }
        Err(e) => vec![e],
    };
    if json {
        let list: Vec<_> = errors
            .iter()
            .map(
                |e| serde_json::json!({"pointer": e.pointer, "rule": e.rule, "message": e.message}),
            )
            .collect();
        print_json(
            &serde_json::json!({"valid": errors.is_empty(), "type": event_type, "errors": list}),
        );
    } else if errors.is_empty() {
        let files: Vec<String> = schemas
            .files_for(event_type)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let against = if files.is_empty() {
            "JSON syntax only (no schema for this type)".to_string()
        } else {
            files.join(", ")
        };
        println!("{file}: valid {event_type} (checked against {against})");
    } else {
        for e in &errors {
            println!("{file}: {e}");
        }
        println!("{file}: {} error(s)", errors.len());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            message: format!("{file} is not a valid {event_type}"),
        })
    }
}

fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `adaptive pool p: concurrency 1-8, now 4 on host-1-abc, 2 on host-2-def`.
fn adaptive_line(pool: &str, c: &weir::status::ConcurrencyStatus) -> String {
    let now: Vec<String> = c
        .processes
        .iter()
        .map(|r| format!("{} on {}", r.current, r.consumer))
        .collect();
    let now = match now.is_empty() {
        true => "no process running it".to_string(),
        false => format!("now {}", now.join(", ")),
    };
    format!(
        "adaptive pool {pool}: concurrency {}-{}, {now}",
        c.min, c.max
    )
}

/// `weir status`: a table, or `--json`.
pub async fn status(config: &Config, json: bool) -> Outcome {
    let redis = connect(config).await?;
    let s = weir::status::status(&redis, config)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if json {
        print_json(&serde_json::to_value(&s).map_err(|e| Failure::runtime(e.to_string()))?);
        return Ok(());
    }
    println!(
        "stream {}: {} entries   dlq {}: {} entries   scheduled: {} delayed event(s){}",
        s.stream,
        s.stream_length,
        s.dlq,
        s.dlq_length,
        s.scheduled,
        match s.scheduled_overdue_seconds {
            late if late >= 1.0 =>
                format!(", the most overdue {late:.1}s late (is a weir run up?)"),
            _ => String::new(),
        }
    );
    println!(
        "{:<20} {:>6} {:>11} {:>9} {:>9} {:>9} {:>14}",
        "POOL", "STATE", "CONCURRENCY", "CONSUMERS", "PENDING", "LAG", "OLDEST PENDING"
    );
    for p in &s.pools {
        let state = if !p.exists {
            "no-group"
        } else if p.paused {
            "paused"
        } else {
            "active"
        };
        let age = p.oldest_pending_age_seconds.map(|a| format!("{a:.1}s"));
        let concurrency = p.concurrency.as_ref().map(|c| match c.adaptive {
            true => format!("{}-{}", c.min, c.max),
            false => c.max.to_string(),
        });
        println!(
            "{:<20} {:>6} {:>11} {:>9} {:>9} {:>9} {:>14}",
            p.name,
            state,
            or_dash(concurrency),
            p.consumers,
            p.pending,
            or_dash(p.lag),
            or_dash(age)
        );
    }
    for p in &s.pools {
        if let Some(c) = p.concurrency.as_ref().filter(|c| c.adaptive) {
            println!("{}", adaptive_line(&p.name, c));
        }
    }
    for p in &s.pools {
        if let Some(r) = &p.rate_limit {
            let key = r
                .key
                .as_deref()
                .map(|k| format!(" per value of {k}"))
                .unwrap_or_default();
            let waiting = match p.rate_waiting {
                Some(n) => format!("{n} waiting"),
                None => {
                    "waiting entries: rateWaiting in each process's /healthz, weir_rate_waiting"
                        .into()
                }
            };
            println!(
                "rate-limited pool {}: at most {} starts per {}ms{key}, across all processes; {waiting}",
                p.name, r.limit, r.per_ms
            );
        }
    }
    for p in s.pools.iter().filter(|p| p.order_key.is_some()) {
        for o in &p.owners {
            println!(
                "ordered pool {} on {}: owner {} epoch {}",
                p.name,
                o.stream,
                o.consumer
                    .as_deref()
                    .unwrap_or("none (standby processes take over)"),
                or_dash(o.epoch)
            );
        }
    }
    for g in &s.other_groups {
        println!(
            "note: group `{g}` on {} is not a configured pool; trimming waits for it too",
            s.stream
        );
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
    Ok(())
}
