//! One error enum per layer. Only the binary turns them into messages and exit codes.

use std::path::PathBuf;

/// A configuration problem: always exit code 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {path} not found; pass -c PATH or create streams.toml (see README)")]
    Missing { path: PathBuf },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
    #[error("schema {path}: {message}")]
    Schema { path: PathBuf, message: String },
}

/// A Redis command failed. The message never contains a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis {command}: {message}")]
pub struct RedisError {
    pub command: &'static str,
    pub message: String,
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
    pub fn is(&self, kind: RedisErrorKind) -> bool {
        self.kind == kind
    }
}

/// Why the engine could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("handler for pool `{pool}`: {message}")]
    Handler { pool: String, message: String },
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
    /// Redis failed: exit 1, HTTP 503 when unreachable.
    #[error(transparent)]
    Redis(#[from] RedisError),
}
