//! `weir init [DIR]`: a starter `streams.toml` and envelope schema for people who start from
//! scratch rather than from the Integration Bus topology. Never overwrites a file.

use std::io::Write;
use std::path::Path;

use super::{Failure, Outcome};

/// The starter config: one stream, one pool that logs every event. Loads and validates as
/// written (tests/packaging.rs checks it with `weir validate` and `weir check`).
pub const STREAMS_TOML: &str = r#"# weir configuration, written by `weir init`. The full reference is README.md
# ("Configuration"); `weir check -c streams.toml` checks it against your Redis.
# Every key can be overridden by environment: WEIR_ + the path joined with __, e.g.
# WEIR_REDIS__URL=redis://engine:secret@127.0.0.1:6379/0 (keep passwords out of this file).

shutdown_grace_seconds = 30               # in-flight handlers get this long after SIGTERM

[redis]
url = "redis://127.0.0.1:6379/0"          # redis://, rediss:// (TLS) or redis+unix://

[stream]
name = "events"                           # publishers XADD here: type=<type> data=<JSON>
# dlq = "events:dlq"                      # the default: <name>:dlq
max_len = 1000000                         # approximate; never drops unacknowledged entries

[retry]
max_attempts = 5                          # then the entry is dead-lettered
retry_seconds = 10                        # attempt n waits 10 s * 2^(n-1)
max_backoff_seconds = 3600
visibility_timeout_seconds = 300          # a crashed worker's entry is redelivered after this

[schemas]
dir = "schemas"                           # envelope.schema.json checks every event's data;
                                          # <type>.schema.json checks one type

[http]
listen = "127.0.0.1:9464"                 # /metrics and /healthz

# One pool = one consumer group. `types` lists the event types it takes ("*": all).
[[pools]]
name = "default"
concurrency = 4                           # or { min = 1, max = 16 } to adapt to the backlog
types = ["*"]
timeout_seconds = 60
handler = { kind = "log" }                # log each event; see README "Handlers" for
                                          # kind = "http" (a webhook) and kind = "exec"
"#;

/// The starter envelope schema: `data` must be a JSON object; tighten it to your events.
pub const ENVELOPE_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Event envelope",
  "description": "The JSON document in the `data` field of every stream entry. Written by `weir init`: tighten it to your events, or add <type>.schema.json files beside it for single types.",
  "type": "object",
  "properties": {
    "id": {
      "description": "The publisher's event id, if it sends one.",
      "type": "string",
      "minLength": 1
    }
  }
}
"#;

/// Writes `streams.toml` and `schemas/envelope.schema.json` into `dir` (created when
/// missing). Refuses, naming the file, when either exists; writes nothing then.
pub fn init(dir: &Path) -> Outcome {
    let config = dir.join("streams.toml");
    let schemas = dir.join("schemas");
    let schema = schemas.join("envelope.schema.json");
    for path in [&config, &schema] {
        if path.exists() {
            return Err(Failure::runtime(format!(
                "{} already exists; weir init never overwrites a file: move it away or pick another folder (weir init DIR)",
                path.display()
            )));
        }
    }
    let failed = |path: &Path, e: std::io::Error| {
        Failure::runtime(format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(&schemas).map_err(|e| failed(&schemas, e))?;
    write_new(&config, STREAMS_TOML).map_err(|e| failed(&config, e))?;
    write_new(&schema, ENVELOPE_SCHEMA).map_err(|e| failed(&schema, e))?;
    println!("wrote {}", config.display());
    println!("wrote {}", schema.display());
    println!(
        "next: weir check -c {0}   then: weir run -c {0}",
        config.display()
    );
    Ok(())
}

/// Creates `path`, failing if it exists (a file that appeared since the check included).
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}
