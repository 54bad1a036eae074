//! One error enum per layer. Only the binary turns them into messages and exit codes.

use std::path::PathBuf;

/// A configuration problem: always exit code 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No file at `path`: the usual first-run mistake, so the message says what to do.
    #[error("config file {path} not found; pass -c PATH or create streams.toml (see README)")]
    Missing {
        /// The path tried.
        path: PathBuf,
    },
    /// Not TOML, a wrong type or an unknown key.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Parsed, but breaks a rule (a range, a cross-field check).
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// The key as a path, e.g. `pools[0].concurrency`.
        key: String,
        /// What is wrong and what would be right.
        problem: String,
    },
    /// A JSON Schema in the schemas folder does not load or compile.
    #[error("schema {path}: {message}")]
    Schema {
        /// The schema file.
        path: PathBuf,
        /// Why it was refused.
        message: String,
    },
}

/// A Redis command failed. The message never contains a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis {command}: {}", self.reason())]
pub struct RedisError {
    /// Which command failed (`XREADGROUP`, `dead_letter` for a script…), for the log.
    pub command: &'static str,
    /// What Redis or the client said, passwords redacted.
    pub message: String,
    /// What the caller can do about it; decides retry, recreate or give up.
    pub kind: RedisErrorKind,
}

/// What a caller can do about a Redis error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisErrorKind {
    /// The consumer group (or its stream) is gone: recreate it.
    NoGroup,
    /// The connection is down or timed out: back off and retry.
    Connection,
    /// Redis refused for lack of memory (`maxmemory` with `noeviction`).
    OutOfMemory,
    /// The ACL user lacks a permission.
    NoPermission,
    /// A reply weir could not make sense of.
    Protocol,
    /// Anything else the server said.
    Server,
}

impl RedisError {
    /// Whether it is of `kind` (reads better than comparing the field in a condition).
    pub fn is(&self, kind: RedisErrorKind) -> bool {
        self.kind == kind
    }

    /// The message for people: the Redis client reports I/O errors in their debug form
    /// (`Os { code: 111, kind: ConnectionRefused, … }`), which becomes what `std::io::Error`
    /// displays (`connection refused (os error 111)`).
    pub fn reason(&self) -> String {
        readable(&self.message)
    }
}

/// `text` with every debug-formatted `std::io::Error` in it replaced by readable words.
fn readable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, end, words)) = first_io_debug(rest) {
        out.push_str(&rest[..start]);
        out.push_str(&words);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The first debug form of an `io::Error` in `text`: its byte range and its readable words.
fn first_io_debug(text: &str) -> Option<(usize, usize, String)> {
    ["Os { ", "Custom { ", "Error { kind: ", "Kind("]
        .iter()
        .filter_map(|opener| text.find(opener).map(|at| (at, *opener)))
        .min_by_key(|(at, _)| *at)
        .and_then(|(at, opener)| {
            let body = &text[at + opener.len()..];
            let (inner, len) = if opener == "Kind(" {
                let close = body.find(')')?;
                (&body[..close], close + 1)
            } else {
                let close = body.find(" }")?;
                (&body[..close], close + 2)
            };
            let words = io_words(opener, inner)?;
            Some((at, at + opener.len() + len, words))
        })
}

/// Readable words for the inside of one debug form (`code: 111, kind: K, message: "M"`).
fn io_words(opener: &str, inner: &str) -> Option<String> {
    let words = match opener {
        "Os { " => {
            let message = lowercase_first(debug_field(inner, "message")?);
            format!("{message} (os error {})", debug_field(inner, "code")?)
        }
        "Custom { " => match debug_field(inner, "error") {
            Some(error) => error.to_string(),
            None => words_of_camel(debug_field(inner, "kind")?)?,
        },
        "Error { kind: " => debug_field(inner, "message")?.to_string(),
        _ => words_of_camel(inner)?,
    };
    Some(words.replace("\\\"", "\""))
}

/// The value of `name: value` in a debug form's fields; quoted strings lose their quotes.
fn debug_field<'a>(inner: &'a str, name: &str) -> Option<&'a str> {
    let start = inner.find(&format!("{name}: "))? + name.len() + 2;
    let value = &inner[start..];
    match value.strip_prefix('"') {
        Some(quoted) => Some(&quoted[..quoted.rfind('"')?]),
        None => value.split(", ").next(),
    }
}

/// `ConnectionRefused` → `connection refused`.
fn words_of_camel(camel: &str) -> Option<String> {
    if camel.is_empty() || !camel.chars().all(char::is_alphanumeric) {
        return None;
    }
    let mut words = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    Some(words)
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why the engine could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The config (or a schema) is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis failed at start-up (later failures are retried, not returned).
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The HTTP port is taken: a start-up error rather than a silently missing `/healthz`.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `http.listen`.
        addr: std::net::SocketAddr,
        /// Why the bind failed.
        source: std::io::Error,
    },
    /// A pool has no handler, or its configured handler cannot be built.
    #[error("handler for pool `{pool}`: {message}")]
    Handler {
        /// The pool.
        pool: String,
        /// What is missing or wrong.
        message: String,
    },
    /// An engine task (a reader, janitor, acker…) panicked: the engine shut down rather
    /// than run on with a pool silently stalled. Restart the process (exit code 70).
    #[error("the engine's {task} task panicked ({message}); it shut down so it can be restarted")]
    TaskPanicked {
        /// Which task.
        task: String,
        /// The panic message.
        message: String,
    },
}

/// Bad input to an operation (a CLI flag, an API field): exit code 2, HTTP 400.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// The flag or field at fault, as the API names it (`since`, `reason`, `ids`…).
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl InputError {
    /// `field` is wrong: `message` says how.
    pub fn new(field: &'static str, message: impl Into<String>) -> InputError {
        InputError {
            field,
            message: message.into(),
        }
    }
}

/// Why a DLQ or replay operation failed. The CLI maps these to exit codes, the HTTP API to
/// statuses, in one place each.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Bad input: exit 2, HTTP 400.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The named thing does not exist: exit 1, HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// The operation cannot run in the current state (a finished job, a running one): exit
    /// 2, HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// Bare dead-letter IDs that more than one partition's DLQ holds: exit 2, HTTP 409 with
    /// the qualified candidates, so the caller names exactly the letter meant.
    #[error("{message}")]
    Ambiguous {
        /// Which IDs, where each is, and how to name one.
        message: String,
        /// Every qualified ID (`<partition>/<entry ID>`) the bare ones could mean.
        candidates: Vec<String>,
    },
    /// Redis failed: exit 1, HTTP 503 when unreachable.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn io_errors_in_debug_form_read_as_words() {
        assert_eq!(
            readable(
                r#"cannot reach Redis at redis://h:1: Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#
            ),
            "cannot reach Redis at redis://h:1: connection refused (os error 111)"
        );
        assert_eq!(readable("Kind(TimedOut)"), "timed out");
        assert_eq!(
            readable(
                r#"Custom { kind: InvalidData, error: "invalid peer certificate: UnknownIssuer" }"#
            ),
            "invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            readable(r#"Error { kind: UnexpectedEof, message: "failed to fill whole buffer" }"#),
            "failed to fill whole buffer"
        );
        assert_eq!(readable("NOGROUP No such key"), "NOGROUP No such key");
        assert_eq!(readable("odd Os { and no end"), "odd Os { and no end");
    }
}
