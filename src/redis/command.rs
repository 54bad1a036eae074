//! What every command family shares: sending a command routed to its key's node, timeouts,
//! turning client errors into [`RedisError`]s, running Lua scripts by SHA, and building
//! argument lists.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::Redis;
use super::reply::{array, protocol, text};
use crate::error::{RedisError, RedisErrorKind};

/// Lua 5.1's `unpack` handles ~8000 values; entries with more fields than this are moved
/// with MULTI/EXEC instead of a script.
pub(super) const SCRIPT_MAX_FIELDS: usize = 3500;

/// How long any single command may take before it counts as a connection failure.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster hash slot of a key (hash tags honoured): keys that one script or transaction
/// touches must share it on Redis Cluster.
pub fn key_slot(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}

/// A command routed by its first key.
pub(super) fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// A command routed to the node that holds `key`.
pub(super) fn cmd_for_key(name: &'static str, key: &str, blocking: bool) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::Custom(key_slot(key)), blocking)
}

pub(super) fn map_err(command: &'static str, e: fred::error::Error) -> RedisError {
    let details = e.details().to_string();
    let kind = error_kind(&e, &details);
    RedisError {
        command,
        message: if details.is_empty() {
            format!("{:?}", e.kind())
        } else {
            details
        },
        kind,
    }
}

/// What a caller can do about `e`: a server reply by its error code (the all-caps first
/// word: `NOGROUP`, `OOM`, `BUSY`…), never by words inside its text (an `ERR` from a script
/// may well mention a "closed" thing); the client's own failures by the driver's kind.
fn error_kind(e: &fred::error::Error, details: &str) -> RedisErrorKind {
    use fred::error::ErrorKind as K;
    if *e.kind() == K::Auth {
        return RedisErrorKind::NoPermission;
    }
    if let Some(code) = reply_code(details) {
        return match code {
            "NOGROUP" => RedisErrorKind::NoGroup,
            "OOM" => RedisErrorKind::OutOfMemory,
            "NOPERM" | "WRONGPASS" | "NOAUTH" => RedisErrorKind::NoPermission,
            // The server cannot serve now but will: loading, a slow script, a failover.
            "LOADING" | "BUSY" | "MASTERDOWN" | "READONLY" | "TRYAGAIN" | "CLUSTERDOWN"
            | "NOREPLICAS" => RedisErrorKind::Connection,
            _ => RedisErrorKind::Server,
        };
    }
    match e.kind() {
        K::IO | K::Timeout | K::Canceled | K::Backpressure | K::Routing | K::Cluster => {
            RedisErrorKind::Connection
        }
        K::Protocol | K::Parse => RedisErrorKind::Protocol,
        _ => RedisErrorKind::Server,
    }
}

/// The error code a server reply starts with: an all-caps first word (`ERR`, `WRONGTYPE`).
fn reply_code(details: &str) -> Option<&str> {
    let code = details.split_whitespace().next()?;
    let caps = code.len() >= 2 && code.bytes().all(|b| b.is_ascii_uppercase());
    caps.then_some(code)
}

pub(super) fn args<const N: usize>(items: [&str; N]) -> Vec<Value> {
    items.iter().map(|s| Value::from(*s)).collect()
}

/// Appends field/value pairs as command arguments.
pub(super) fn push_pairs(args: &mut Vec<Value>, fields: &[(Bytes, Bytes)]) {
    args.reserve(fields.len() * 2);
    for (k, v) in fields {
        args.push(Value::Bytes(k.clone()));
        args.push(Value::Bytes(v.clone()));
    }
}

pub(super) fn push_text_pairs(args: &mut Vec<Value>, fields: &[(String, String)]) {
    args.reserve(fields.len() * 2);
    for (k, v) in fields {
        args.push(Value::from(k.as_str()));
        args.push(Value::from(v.as_str()));
    }
}

/// The replies of a pipeline of `n` commands, one per command.
pub(super) fn pipeline_replies(
    command: &'static str,
    reply: Result<Value, RedisError>,
    n: usize,
) -> Result<Vec<Value>, RedisError> {
    let items = array(reply?).ok_or_else(|| protocol(command, "pipeline reply is not an array"))?;
    if items.len() != n {
        return Err(protocol(
            command,
            format!("{} replies for {n} commands", items.len()),
        ));
    }
    Ok(items)
}

/// A Lua script of `lua/`, with its SHA1 once a server has told it (SCRIPT LOAD): Redis
/// computes the same digest everywhere, so one per process serves every server.
pub(super) struct Script {
    /// How errors name the command, e.g. `EVAL (dead letter)`.
    pub(super) name: &'static str,
    pub(super) lua: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    pub(super) const fn new(name: &'static str, lua: &'static str) -> Script {
        Script {
            name,
            lua,
            sha: OnceLock::new(),
        }
    }
}

/// A refusal that proves the script did not run, so sending it again as EVAL is safe:
/// the server has no script with that SHA, or the user may not send EVALSHA at all. (Errors
/// raised while a script runs start with `ERR`; those are never retried.)
enum ShaRefusal {
    NoScript,
    NotAllowed,
}

fn sha_refusal(e: &fred::error::Error) -> Option<ShaRefusal> {
    let details = e.details();
    if details.starts_with("NOSCRIPT") {
        Some(ShaRefusal::NoScript)
    } else if details.starts_with("NOPERM") && details.contains("'evalsha'") {
        Some(ShaRefusal::NotAllowed)
    } else {
        None
    }
}

impl Redis {
    /// Sends `name args…`. On a cluster the command goes to the node of its key: the first
    /// argument, or the second for commands with a subcommand.
    pub(super) async fn call(
        &self,
        name: &'static str,
        args: Vec<Value>,
    ) -> Result<Value, RedisError> {
        let key = match name {
            "XINFO" | "XGROUP" => args.get(1),
            _ => args.first(),
        };
        let command = match key.and_then(|k| k.as_bytes()) {
            Some(key) => CustomCommand::new_static(
                name,
                ClusterHash::Custom(fred::util::redis_keyslot(key)),
                false,
            ),
            None => cmd(name),
        };
        self.client
            .custom::<Value, Value>(command, args)
            .await
            .map_err(|e| self.fail(name, e))
    }

    /// [`Redis::call`] with its own timeout instead of `COMMAND_TIMEOUT`.
    pub(super) async fn call_timeout(
        &self,
        name: &'static str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, RedisError> {
        let options = Options {
            timeout: Some(timeout),
            ..Default::default()
        };
        self.client
            .with_options(&options)
            .custom::<Value, Value>(cmd(name), args)
            .await
            .map_err(|e| self.fail(name, e))
    }

    /// Maps a client error; after a timeout the connection may hold a reply that will be
    /// matched to the next command, so it is reset.
    pub(super) fn fail(&self, command: &'static str, e: fred::error::Error) -> RedisError {
        if matches!(e.kind(), fred::error::ErrorKind::Timeout) {
            self.reset_connection();
        }
        map_err(command, e)
    }

    /// Runs `script` on `keys` (every key of one script shares a hash slot; the first routes
    /// it) with the arguments `argv` appends. EVALSHA when the script's SHA is known, so the
    /// body crosses the network once per server; EVAL when the server lost the script
    /// (restart, failover, SCRIPT FLUSH: NOSCRIPT) or the user may only send EVAL. `argv` may
    /// run twice: the arguments are rebuilt rather than cloned on the rare fallback.
    pub(super) async fn run_script(
        &self,
        script: &Script,
        keys: &[&str],
        argv: impl Fn(&mut Vec<Value>) + Send + Sync,
    ) -> Result<Value, RedisError> {
        let route = keys.first().copied().unwrap_or_default();
        if let Some(sha) = self.script_sha(script, route).await {
            let command = cmd_for_key("EVALSHA", route, false);
            let sent = self
                .client
                .custom::<Value, Value>(command, script_args(sha, keys, &argv))
                .await;
            match sent.as_ref().err().and_then(sha_refusal) {
                Some(ShaRefusal::NoScript) => {}
                Some(ShaRefusal::NotAllowed) => self.scripts_by_sha.store(false, Ordering::Relaxed),
                None => return sent.map_err(|e| self.fail(script.name, e)),
            }
        }
        self.client
            .custom::<Value, Value>(
                cmd_for_key("EVAL", route, false),
                script_args(script.lua, keys, &argv),
            )
            .await
            .map_err(|e| self.fail(script.name, e))
    }

    /// The SHA of `script`, loading it on the node of `route` the first time; `None` when
    /// scripts go as EVAL on this connection or the load failed (EVAL will say why).
    async fn script_sha<'s>(&self, script: &'s Script, route: &str) -> Option<&'s str> {
        if !self.scripts_by_sha.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(sha) = script.sha.get() {
            return Some(sha);
        }
        let loaded = self
            .client
            .custom::<Value, Value>(
                cmd_for_key("SCRIPT", route, false),
                args(["LOAD", script.lua]),
            )
            .await;
        match loaded {
            Ok(reply) => text(&reply).map(|sha| script.sha.get_or_init(|| sha).as_str()),
            Err(e) => {
                if e.details().starts_with("NOPERM") {
                    self.scripts_by_sha.store(false, Ordering::Relaxed);
                } else {
                    let _ = self.fail("SCRIPT LOAD", e);
                }
                None
            }
        }
    }
}

/// `script numkeys keys… argv…` for EVAL or EVALSHA.
fn script_args(
    script: &str,
    keys: &[&str],
    argv: &(impl Fn(&mut Vec<Value>) + Send + Sync),
) -> Vec<Value> {
    let mut a = Vec::with_capacity(2 + keys.len());
    a.push(Value::from(script));
    a.push(Value::from(keys.len().to_string()));
    a.extend(keys.iter().map(|k| Value::from(*k)));
    argv(&mut a);
    a
}

#[cfg(test)]
mod tests {
    use fred::error::{Error, ErrorKind};

    use super::*;

    fn kind_of(kind: ErrorKind, details: &str) -> RedisErrorKind {
        error_kind(&Error::new(kind, details.to_string()), details)
    }

    #[test]
    fn server_replies_are_classified_by_their_code_not_their_words() {
        let cases = [
            (
                "NOGROUP No such key 's' or consumer group 'g'",
                RedisErrorKind::NoGroup,
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                RedisErrorKind::OutOfMemory,
            ),
            (
                "NOPERM this user has no permissions to run the 'xadd' command",
                RedisErrorKind::NoPermission,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                RedisErrorKind::Connection,
            ),
            (
                "BUSY Redis is busy running a script.",
                RedisErrorKind::Connection,
            ),
            (
                "READONLY You can't write against a read only replica.",
                RedisErrorKind::Connection,
            ),
            // Words that once made a server error look like a lost connection.
            (
                "ERR user_script:1: the connection pool is closed",
                RedisErrorKind::Server,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                RedisErrorKind::Server,
            ),
        ];
        for (details, want) in cases {
            assert_eq!(kind_of(ErrorKind::Unknown, details), want, "{details}");
        }
    }

    #[test]
    fn client_failures_are_classified_by_the_drivers_kind() {
        assert_eq!(
            kind_of(ErrorKind::IO, "Connection closed."),
            RedisErrorKind::Connection
        );
        assert_eq!(
            kind_of(ErrorKind::Canceled, "Connection closed unexpectedly."),
            RedisErrorKind::Connection
        );
        assert_eq!(
            kind_of(ErrorKind::Timeout, "Request timed out."),
            RedisErrorKind::Connection
        );
        assert_eq!(
            kind_of(ErrorKind::Auth, "WRONGPASS invalid username-password pair"),
            RedisErrorKind::NoPermission
        );
        assert_eq!(
            kind_of(ErrorKind::Parse, "Could not convert"),
            RedisErrorKind::Protocol
        );
    }
}
