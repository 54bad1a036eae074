//! What `weir check` asks Redis beyond the start-up sequence: whether this connection's ACL
//! user may send a command (without running it), and the server's clock.

use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::Redis;
use super::command::{args, key_slot};
use super::reply::text;
use crate::error::{RedisError, RedisErrorKind};

impl Redis {
    /// Whether this connection's user may send `command` (name, then arguments, keys where
    /// the command takes them: ACLs check key patterns too). The command is queued inside
    /// `MULTI` and thrown away with `DISCARD`, so it never runs: Redis checks a command's ACL
    /// before it queues it, and queuing needs no admin rights (unlike `ACL DRYRUN`).
    /// `Ok(Some(refusal))` when it is refused for lack of permission; `MULTI` itself refused
    /// is an error of kind [`RedisErrorKind::NoPermission`].
    pub async fn may_send(
        &self,
        command: &[&str],
        route: &str,
    ) -> Result<Option<String>, RedisError> {
        let Some((name, rest)) = command.split_first() else {
            return Ok(None);
        };
        let routed = |name: &str| {
            CustomCommand::new(
                name.to_string(),
                ClusterHash::Custom(key_slot(route)),
                false,
            )
        };
        self.client
            .custom::<Value, Value>(routed("MULTI"), Vec::new())
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let queued = self
            .client
            .custom::<Value, Value>(routed(name), rest.iter().map(|a| Value::from(*a)).collect())
            .await;
        self.client
            .custom::<Value, Value>(routed("DISCARD"), Vec::new())
            .await
            .map_err(|e| self.fail("DISCARD", e))?;
        match queued.map_err(|e| self.fail("MULTI", e)) {
            Ok(_) => Ok(None),
            Err(e) if e.is(RedisErrorKind::NoPermission) => Ok(Some(e.message)),
            Err(e) => Err(e),
        }
    }

    /// Whether this connection's user may send `EXEC` or `DISCARD` (`name`): sent outside
    /// a transaction, where a permitted one only answers "without MULTI". Checked before
    /// [`Redis::may_send`] relies on `DISCARD`. `Some(refusal)` when it may not.
    pub async fn may_send_alone(
        &self,
        name: &'static str,
        route: &str,
    ) -> Result<Option<String>, RedisError> {
        let command = CustomCommand::new_static(name, ClusterHash::Custom(key_slot(route)), false);
        match self
            .client
            .custom::<Value, Value>(command, Vec::new())
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => match self.fail(name, e) {
                e if e.is(RedisErrorKind::NoPermission) => Ok(Some(e.message)),
                e if e.is(RedisErrorKind::Connection) => Err(e),
                _ => Ok(None),
            },
        }
    }

    /// The server's clock in unix milliseconds, from `INFO server` (`server_time_usec`): the
    /// engine's ACL grants INFO but not TIME.
    pub async fn server_time_ms(&self) -> Result<u64, RedisError> {
        let reply = self.call("INFO", args(["server"])).await?;
        text(&reply)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.trim().strip_prefix("server_time_usec:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|usec| usec / 1000)
            .ok_or_else(|| RedisError {
                command: "INFO",
                message: "INFO server has no server_time_usec (Redis before 6.2?)".into(),
                kind: RedisErrorKind::Server,
            })
    }
}
