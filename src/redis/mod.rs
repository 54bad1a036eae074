//! The only module that talks to the Redis client. Every command weir sends is a plain,
//! non-generic method here, so the rest of the crate speaks in [`StreamId`]s and
//! [`RawEntry`]s and fred's generic API is compiled once.

mod id;
mod reply;
mod reverse;
mod tls;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::{ClientLike, TransactionInterface as _};
use fred::types::config::{
    Config as FredConfig, ConnectionConfig, Options, PerformanceConfig, ReconnectPolicy,
    UnresponsiveConfig,
};
use fred::types::{CustomCommand, Value};

pub use id::StreamId;
pub use reply::RawEntry;
use reply::{array, int, pairs, protocol, text};

use crate::config::RedisConfig;
use crate::error::{RedisError, RedisErrorKind};

/// Lua 5.1's `unpack` handles ~8000 values; entries with more fields than this are moved
/// with MULTI/EXEC instead of a script.
const SCRIPT_MAX_FIELDS: usize = 3500;

/// How long any single command may take before it counts as a connection failure.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection (with automatic, jittered reconnects) to the configured Redis.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    /// The URL with any password replaced, for messages.
    url: String,
    /// When the connection was last reset on purpose (unix ms), to rate-limit resets.
    last_reset: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// One consumer group as XINFO GROUPS reports it.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub name: String,
    pub consumers: u64,
    pub pending: u64,
    pub last_delivered: StreamId,
    /// `None` when Redis cannot compute it (after deletions, or right after a restart).
    pub lag: Option<u64>,
    /// The group's logical read counter (`entries-read`), when Redis knows it.
    pub entries_read: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

/// What XINFO STREAM says about the main stream.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    pub length: u64,
    pub first: Option<StreamId>,
    pub last_generated: StreamId,
    pub max_deleted: StreamId,
    pub recorded_first: StreamId,
    /// Entries ever added (`entries-added`).
    pub entries_added: u64,
}

/// The reply of one XAUTOCLAIM page.
#[derive(Debug)]
pub struct AutoClaim {
    pub next: StreamId,
    pub entries: Vec<RawEntry>,
    /// IDs that were pending but whose entries no longer exist (Redis removed them from the PEL).
    pub deleted: Vec<StreamId>,
}

/// What a dead-letter sweep works on.
pub struct IdleSweep<'a> {
    pub stream: &'a str,
    pub dlq: &'a str,
    pub group: &'a str,
    pub min_idle: Duration,
    pub max_attempts: u32,
    /// `dlq_error`, with `{n}` standing for the delivery count.
    pub error: &'a str,
}

/// One entry a sweep moved to the DLQ.
#[derive(Debug)]
pub struct SweptEntry {
    pub id: StreamId,
    pub event_type: String,
    pub dlq_id: String,
    pub attempts: u64,
}

#[derive(Debug, Default)]
pub struct SweepResult {
    pub moved: Vec<SweptEntry>,
    /// Pending entries that no longer existed in the stream (acknowledged).
    pub lost: Vec<StreamId>,
}

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, fred::types::ClusterHash::FirstKey, false)
}

fn map_err(command: &'static str, e: fred::error::Error) -> RedisError {
    use fred::error::ErrorKind as K;
    let details = e.details().to_string();
    let kind = if details.starts_with("NOGROUP") || details.contains("NOGROUP") {
        RedisErrorKind::NoGroup
    } else if details.starts_with("OOM") {
        RedisErrorKind::OutOfMemory
    } else if details.starts_with("NOPERM")
        || details.starts_with("WRONGPASS")
        || *e.kind() == K::Auth
    {
        RedisErrorKind::NoPermission
    } else {
        match e.kind() {
            K::IO | K::Timeout | K::Canceled | K::Backpressure | K::Routing => {
                RedisErrorKind::Connection
            }
            K::Protocol | K::Parse => RedisErrorKind::Protocol,
            _ if details.contains("onnection") || details.contains("losed") => {
                RedisErrorKind::Connection
            }
            _ => RedisErrorKind::Server,
        }
    };
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

fn args<const N: usize>(items: [&str; N]) -> Vec<Value> {
    items.iter().map(|s| Value::from(*s)).collect()
}

impl Redis {
    /// Builds a client for `config` without connecting; see [`Redis::connect`].
    pub fn new(config: &RedisConfig) -> Result<Redis, RedisError> {
        let url = crate::redact_url(&config.url);
        let mut fred_config = FredConfig::from_url(&config.url).map_err(|e| RedisError {
            command: "connect",
            message: format!("{url}: {}", e.details()),
            kind: RedisErrorKind::Server,
        })?;
        fred_config.tls = if config.url.starts_with("rediss://") {
            let tls = tls::client_config(config).map_err(|(key, message)| RedisError {
                command: "connect",
                message: format!("TLS setup ({key}): {message}"),
                kind: RedisErrorKind::Server,
            })?;
            Some(fred::types::config::TlsConnector::from(tls).into())
        } else {
            None
        };
        let mut policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
        policy.set_jitter(250);
        let performance = PerformanceConfig {
            default_command_timeout: COMMAND_TIMEOUT,
            ..Default::default()
        };
        let connection = ConnectionConfig {
            connection_timeout: Duration::from_secs(3),
            internal_command_timeout: Duration::from_secs(3),
            // A reply lost with its connection is not resent blindly: a resent XADD would make
            // two entries. Callers retry what is safe to retry.
            max_command_attempts: 1,
            unresponsive: UnresponsiveConfig {
                // Below COMMAND_TIMEOUT: a silent connection is replaced before commands on
                // it time out one by one.
                max_timeout: Some(Duration::from_secs(3)),
                interval: Duration::from_millis(500),
            },
            ..Default::default()
        };
        let client = fred::types::Builder::from_config(fred_config)
            .set_policy(policy)
            .set_performance_config(performance)
            .set_connection_config(connection)
            .build()
            .map_err(|e| map_err("connect", e))?;
        Ok(Redis {
            client,
            url,
            last_reset: Default::default(),
        })
    }

    /// Connects; from then on reconnects happen in the background (capped, jittered backoff).
    /// Fails when the first attempt fails, so callers can report and retry at their pace.
    pub async fn connect(&self) -> Result<(), RedisError> {
        match self.client.init().await {
            Ok(_task) => Ok(()),
            Err(e) => Err(RedisError {
                command: "connect",
                message: format!("cannot reach Redis at {}: {}", self.url, e.details()),
                kind: if matches!(e.kind(), fred::error::ErrorKind::Auth)
                    || e.details().contains("WRONGPASS")
                    || e.details().contains("NOAUTH")
                {
                    RedisErrorKind::NoPermission
                } else {
                    RedisErrorKind::Connection
                },
            }),
        }
    }

    /// A second, independent connection: blocking reads hold their connection, so each reader
    /// gets its own.
    pub async fn dedicated(&self) -> Result<Redis, RedisError> {
        let other = Redis {
            client: self.client.clone_new(),
            url: self.url.clone(),
            last_reset: Default::default(),
        };
        other.connect().await?;
        Ok(other)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }

    /// `EVAL script`, routed by the hash slot of `key` (every key of one script shares it).
    async fn eval(
        &self,
        name: &'static str,
        key: &str,
        args: Vec<Value>,
    ) -> Result<Value, RedisError> {
        self.client
            .custom::<Value, Value>(eval_command(key), args)
            .await
            .map_err(|e| self.fail(name, e))
    }

    /// Maps a client error; after a timeout the connection may hold a reply that will be
    /// matched to the next command, so it is reset.
    fn fail(&self, command: &'static str, e: fred::error::Error) -> RedisError {
        if matches!(e.kind(), fred::error::ErrorKind::Timeout) {
            self.reset_connection();
        }
        map_err(command, e)
    }

    /// Drops the connection and reconnects (at most once a second). Callers use it when a
    /// reply did not fit its command: requests and replies are out of step.
    pub fn reset_connection(&self) {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let last = self.last_reset.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .last_reset
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::warn!(redis = %self.url, "resetting the Redis connection after a timeout or an out-of-step reply");
        let client = self.client.clone();
        tokio::spawn(async move {
            let _ = client.force_reconnection().await;
        });
    }

    async fn call(&self, name: &'static str, args: Vec<Value>) -> Result<Value, RedisError> {
        // On a cluster the command goes to the node of its key: the first argument, or the
        // second for commands with a subcommand.
        let key = match name {
            "XINFO" | "XGROUP" => args.get(1),
            _ => args.first(),
        };
        let command = match key.and_then(|k| k.as_bytes()) {
            Some(key) => CustomCommand::new_static(
                name,
                fred::types::ClusterHash::Custom(fred::util::redis_keyslot(key)),
                false,
            ),
            None => cmd(name),
        };
        self.client
            .custom::<Value, Value>(command, args)
            .await
            .map_err(|e| self.fail(name, e))
    }

    async fn call_timeout(
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
            .custom::<Value, Value>(
                CustomCommand::new_static(name, fred::types::ClusterHash::FirstKey, false),
                args,
            )
            .await
            .map_err(|e| self.fail(name, e))
    }

    pub async fn ping(&self, timeout: Duration) -> Result<(), RedisError> {
        self.call_timeout("PING", Vec::new(), timeout)
            .await
            .map(|_| ())
    }

    /// `XGROUP CREATE … MKSTREAM`; `Ok(false)` when the group already exists.
    pub async fn create_group(
        &self,
        stream: &str,
        group: &str,
        start: &str,
    ) -> Result<bool, RedisError> {
        match self
            .call("XGROUP", args(["CREATE", stream, group, start, "MKSTREAM"]))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.message.starts_with("BUSYGROUP") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `XREADGROUP … COUNT n BLOCK ms STREAMS stream >`. An empty vector when the block timed out.
    pub async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let block_ms = block.as_millis().to_string();
        let count = count.to_string();
        let options = Options {
            timeout: Some(block + COMMAND_TIMEOUT),
            ..Default::default()
        };
        let reply: Value = self
            .client
            .with_options(&options)
            .custom(
                CustomCommand::new_static(
                    "XREADGROUP",
                    fred::types::ClusterHash::Custom(stream_slot(stream)),
                    true,
                ),
                args([
                    "GROUP", group, consumer, "COUNT", &count, "BLOCK", &block_ms, "STREAMS",
                    stream, ">",
                ]),
            )
            .await
            .map_err(|e| self.fail("XREADGROUP", e))?;
        reply::xread(reply)
    }

    /// `XACK` of many IDs in one command; returns how many were still pending.
    pub async fn ack(
        &self,
        stream: &str,
        group: &str,
        ids: &[StreamId],
    ) -> Result<u64, RedisError> {
        let mut a = args([stream, group]);
        a.extend(ids.iter().map(|id| Value::from(id.to_string())));
        let reply = self.call("XACK", a).await?;
        int(&reply)
            .map(|n| n.max(0) as u64)
            .ok_or_else(|| protocol("XACK", "not an integer"))
    }

    /// Re-claims `ids` to `consumer` with `JUSTID` (no delivery counted), setting their idle
    /// time to `idle`: zero keeps a lease alive, more schedules an earlier redelivery.
    pub async fn touch(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[StreamId],
        idle: Duration,
    ) -> Result<(), RedisError> {
        let mut a = args([stream, group, consumer, "0"]);
        a.extend(ids.iter().map(|id| Value::from(id.to_string())));
        a.push(Value::from("IDLE"));
        a.push(Value::from(idle.as_millis().to_string()));
        a.push(Value::from("JUSTID"));
        self.call("XCLAIM", a).await.map(|_| ())
    }

    /// One page of `XAUTOCLAIM stream group consumer min_idle start COUNT n`.
    pub async fn autoclaim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: StreamId,
        count: usize,
    ) -> Result<AutoClaim, RedisError> {
        let min_idle = min_idle.as_millis().to_string();
        let start = start.to_string();
        let count = count.to_string();
        let reply = self
            .call(
                "XAUTOCLAIM",
                args([stream, group, consumer, &min_idle, &start, "COUNT", &count]),
            )
            .await?;
        let mut parts = array(reply)
            .ok_or_else(|| protocol("XAUTOCLAIM", "expected an array"))?
            .into_iter();
        let next = parts
            .next()
            .as_ref()
            .and_then(reply::id)
            .ok_or_else(|| protocol("XAUTOCLAIM", "no cursor"))?;
        let entries = reply::entries("XAUTOCLAIM", parts.next().unwrap_or(Value::Null))?;
        let deleted = reply::ids("XAUTOCLAIM", parts.next().unwrap_or(Value::Null))?;
        Ok(AutoClaim {
            next,
            entries,
            deleted,
        })
    }

    /// Delivery counts of `ids` in the group's pending list, one pipelined XPENDING per ID.
    /// IDs that are no longer pending are absent from the map.
    pub async fn delivery_counts(
        &self,
        stream: &str,
        group: &str,
        ids: &[StreamId],
    ) -> Result<HashMap<StreamId, u64>, RedisError> {
        let pipeline = self.client.pipeline();
        for id in ids {
            let id = id.to_string();
            let _: () = pipeline
                .custom(cmd("XPENDING"), args([stream, group, &id, &id, "1"]))
                .await
                .map_err(|e| self.fail("XPENDING", e))?;
        }
        let replies = pipeline_replies(
            "XPENDING",
            pipeline.all().await.map_err(|e| self.fail("XPENDING", e)),
            ids.len(),
        )?;
        let mut counts = HashMap::with_capacity(ids.len());
        for reply in replies {
            // Each reply is `[[id, consumer, idle, count]]` or empty.
            let rows = array(reply).ok_or_else(|| protocol("XPENDING", "expected an array"))?;
            for row in rows {
                let row = array(row).ok_or_else(|| protocol("XPENDING", "row is not an array"))?;
                if let (Some(id), Some(count)) =
                    (row.first().and_then(reply::id), row.get(3).and_then(int))
                {
                    counts.insert(id, count.max(0) as u64);
                }
            }
        }
        Ok(counts)
    }

    /// `XPENDING stream group IDLE min_idle start + count`: pending entries idle at least
    /// `min_idle`, with their delivery counts, without claiming them.
    pub async fn idle_pending(
        &self,
        stream: &str,
        group: &str,
        min_idle: Duration,
        start: StreamId,
        count: usize,
    ) -> Result<Vec<(StreamId, u64)>, RedisError> {
        let min_idle = min_idle.as_millis().to_string();
        let (start, count) = (start.to_string(), count.to_string());
        let reply = self
            .call(
                "XPENDING",
                args([stream, group, "IDLE", &min_idle, &start, "+", &count]),
            )
            .await?;
        let rows = array(reply).ok_or_else(|| protocol("XPENDING", "expected an array"))?;
        rows.into_iter()
            .map(|row| {
                let row = array(row).ok_or_else(|| protocol("XPENDING", "row is not an array"))?;
                match (row.first().and_then(reply::id), row.get(3).and_then(int)) {
                    (Some(id), Some(count)) => Ok((id, count.max(0) as u64)),
                    _ => Err(protocol(
                        "XPENDING",
                        "row without an ID and a delivery count",
                    )),
                }
            })
            .collect()
    }

    /// Dead-letters, in one script, those of `ids` that are still pending in `group`, idle
    /// at least `min_idle` and delivered at least `max_attempts` times: each is copied to
    /// `dlq` with the `dlq_*` fields (reason `max_attempts`, `error` with `{n}` replaced by
    /// the delivery count) and acknowledged. Entries deleted from the stream meanwhile are
    /// acknowledged and reported as lost; entries too wide for a script are left alone.
    pub async fn dead_letter_idle(
        &self,
        sweep: &IdleSweep<'_>,
        ids: &[StreamId],
    ) -> Result<SweepResult, RedisError> {
        let min_idle = sweep.min_idle.as_millis().to_string();
        let max = sweep.max_attempts.to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let limit = (SCRIPT_MAX_FIELDS * 2).to_string();
        let mut a = args([
            SWEEP,
            "2",
            sweep.stream,
            sweep.dlq,
            sweep.group,
            &min_idle,
            &max,
            &now,
            sweep.error,
            &limit,
        ]);
        a.extend(ids.iter().map(|id| Value::from(id.to_string())));
        let reply: Value = self.eval("EVAL (dead-letter sweep)", sweep.dlq, a).await?;
        let mut parts = array(reply)
            .ok_or_else(|| protocol("EVAL", "expected an array"))?
            .into_iter();
        let mut moved = Vec::new();
        for row in array(parts.next().unwrap_or(Value::Null)).unwrap_or_default() {
            let row = array(row).ok_or_else(|| protocol("EVAL", "row is not an array"))?;
            let id = row.first().and_then(reply::id);
            let attempts = row.get(3).and_then(int);
            match (id, attempts) {
                (Some(id), Some(attempts)) => moved.push(SweptEntry {
                    id,
                    event_type: row.get(1).and_then(text).unwrap_or_default(),
                    dlq_id: row.get(2).and_then(text).unwrap_or_default(),
                    attempts: attempts.max(0) as u64,
                }),
                _ => return Err(protocol("EVAL", "moved entry without an ID")),
            }
        }
        let lost = reply::ids("EVAL", parts.next().unwrap_or(Value::Null))?;
        Ok(SweepResult { moved, lost })
    }

    /// Moves an entry to the DLQ: XADD to `dlq`, then XACK in `group`, in one script. A
    /// failing XADD (say the DLQ key holds a string) stops the script before the XACK, so
    /// an entry is never acknowledged without its DLQ copy. (MULTI/EXEC would not do: Redis
    /// does not roll back, and the XACK would still run.) Returns the DLQ entry's ID.
    pub async fn dead_letter(
        &self,
        stream: &str,
        group: &str,
        dlq: &str,
        id: StreamId,
        fields: &[(Bytes, Bytes)],
    ) -> Result<String, RedisError> {
        const SCRIPT: &str = "local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3)) \
            redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]) return id";
        if fields.len() > SCRIPT_MAX_FIELDS {
            return self.dead_letter_multi(stream, group, dlq, id, fields).await;
        }
        let mut a = args([SCRIPT, "2", dlq, stream, group, &id.to_string()]);
        push_pairs(&mut a, fields);
        let reply: Value = self.eval("EVAL (dead letter)", dlq, a).await?;
        text(&reply).ok_or_else(|| protocol("EVAL", "XADD returned no ID"))
    }

    /// The same move for entries with more fields than a script can pass to one command:
    /// MULTI/EXEC, atomic except that a runtime XADD error would not stop the XACK.
    async fn dead_letter_multi(
        &self,
        stream: &str,
        group: &str,
        dlq: &str,
        id: StreamId,
        fields: &[(Bytes, Bytes)],
    ) -> Result<String, RedisError> {
        let trx = self.client.multi();
        let mut xadd = args([dlq, "*"]);
        push_pairs(&mut xadd, fields);
        let _: () = trx
            .custom(cmd("XADD"), xadd)
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let _: () = trx
            .custom(cmd("XACK"), args([stream, group, &id.to_string()]))
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let reply: Value = trx.exec(true).await.map_err(|e| self.fail("EXEC", e))?;
        let items = array(reply).ok_or_else(|| protocol("EXEC", "expected an array"))?;
        items
            .first()
            .and_then(text)
            .ok_or_else(|| protocol("EXEC", "XADD returned no ID"))
    }

    pub async fn groups(&self, stream: &str) -> Result<Vec<GroupInfo>, RedisError> {
        let reply = self.call("XINFO", args(["GROUPS", stream])).await?;
        let mut out = Vec::new();
        for group in array(reply).ok_or_else(|| protocol("XINFO GROUPS", "expected an array"))? {
            let fields: HashMap<String, Value> =
                pairs("XINFO GROUPS", group)?.into_iter().collect();
            let get_int = |k: &str| fields.get(k).and_then(int);
            out.push(GroupInfo {
                name: fields.get("name").and_then(text).unwrap_or_default(),
                consumers: get_int("consumers").unwrap_or(0).max(0) as u64,
                pending: get_int("pending").unwrap_or(0).max(0) as u64,
                last_delivered: fields
                    .get("last-delivered-id")
                    .and_then(reply::id)
                    .unwrap_or(StreamId::ZERO),
                lag: get_int("lag").map(|l| l.max(0) as u64),
                entries_read: get_int("entries-read").map(|l| l.max(0) as u64),
            });
        }
        Ok(out)
    }

    pub async fn consumers(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Vec<ConsumerInfo>, RedisError> {
        let reply = self
            .call("XINFO", args(["CONSUMERS", stream, group]))
            .await?;
        let mut out = Vec::new();
        for consumer in
            array(reply).ok_or_else(|| protocol("XINFO CONSUMERS", "expected an array"))?
        {
            let fields: HashMap<String, Value> =
                pairs("XINFO CONSUMERS", consumer)?.into_iter().collect();
            out.push(ConsumerInfo {
                name: fields.get("name").and_then(text).unwrap_or_default(),
                pending: fields.get("pending").and_then(int).unwrap_or(0).max(0) as u64,
                idle_ms: fields.get("idle").and_then(int).unwrap_or(0).max(0) as u64,
            });
        }
        Ok(out)
    }

    pub async fn delete_consumer(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
    ) -> Result<u64, RedisError> {
        let reply = self
            .call("XGROUP", args(["DELCONSUMER", stream, group, consumer]))
            .await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    pub async fn stream_info(&self, stream: &str) -> Result<StreamInfo, RedisError> {
        let reply = self.call("XINFO", args(["STREAM", stream])).await?;
        let fields: HashMap<String, Value> = pairs("XINFO STREAM", reply)?.into_iter().collect();
        let get_id = |k: &str| fields.get(k).and_then(reply::id).unwrap_or(StreamId::ZERO);
        let first = fields
            .get("first-entry")
            .cloned()
            .and_then(|v| reply::entry("XINFO STREAM", v).ok())
            .map(|e| e.id);
        Ok(StreamInfo {
            length: fields.get("length").and_then(int).unwrap_or(0).max(0) as u64,
            first,
            last_generated: get_id("last-generated-id"),
            max_deleted: get_id("max-deleted-entry-id"),
            recorded_first: get_id("recorded-first-entry-id"),
            entries_added: fields
                .get("entries-added")
                .and_then(int)
                .unwrap_or(0)
                .max(0) as u64,
        })
    }

    pub async fn exists(&self, key: &str) -> Result<bool, RedisError> {
        let reply = self.call("EXISTS", args([key])).await?;
        Ok(int(&reply) == Some(1))
    }

    pub async fn len(&self, key: &str) -> Result<u64, RedisError> {
        let reply = self.call("XLEN", args([key])).await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// Members of a set (the paused pools).
    pub async fn members(&self, key: &str) -> Result<Vec<String>, RedisError> {
        let reply = self.call("SMEMBERS", args([key])).await?;
        Ok(array(reply)
            .unwrap_or_default()
            .iter()
            .filter_map(text)
            .collect())
    }

    /// `XPENDING stream group` summary: how many are pending and the smallest pending ID.
    pub async fn pending_summary(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<(u64, Option<StreamId>), RedisError> {
        let reply = self.call("XPENDING", args([stream, group])).await?;
        let items = array(reply).ok_or_else(|| protocol("XPENDING", "expected an array"))?;
        let count = items.first().and_then(int).unwrap_or(0).max(0) as u64;
        let min = items.get(1).and_then(reply::id);
        Ok((count, min))
    }

    /// The ID of the `n`th entry from the start (1-based), if the stream is that long. Runs as
    /// a script so the entries' bodies never cross the network.
    pub async fn nth_id(&self, stream: &str, n: u64) -> Result<Option<StreamId>, RedisError> {
        const SCRIPT: &str = "local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1]) \
            if #r < tonumber(ARGV[1]) then return false end return r[#r][1]";
        let count = n.to_string();
        let reply: Value = self
            .eval("EVAL", stream, args([SCRIPT, "1", stream, &count]))
            .await?;
        Ok(reply::id(&reply))
    }

    /// `XTRIM stream MINID ~ id`: removes whole nodes of entries older than `id` only.
    pub async fn trim_before(&self, stream: &str, id: StreamId) -> Result<u64, RedisError> {
        let reply = self
            .call("XTRIM", args([stream, "MINID", "~", &id.to_string()]))
            .await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// Appends an entry; used by tests and the publisher.
    pub async fn add(
        &self,
        stream: &str,
        fields: &[(&str, &[u8])],
    ) -> Result<StreamId, RedisError> {
        let mut a = args([stream, "*"]);
        for (k, v) in fields {
            a.push(Value::from(*k));
            a.push(Value::Bytes(Bytes::copy_from_slice(v)));
        }
        let reply = self.call("XADD", a).await?;
        reply::id(&reply).ok_or_else(|| protocol("XADD", "no ID"))
    }

    /// `XRANGE key start end COUNT n`, bodies included.
    pub async fn range(
        &self,
        key: &str,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, RedisError> {
        let count = count.to_string();
        let reply = self
            .call("XRANGE", args([key, start, end, "COUNT", &count]))
            .await?;
        reply::entries("XRANGE", reply)
    }

    /// Appends many entries, in one script; returns their IDs in order.
    pub async fn add_many(
        &self,
        stream: &str,
        entries: &[Vec<(String, String)>],
    ) -> Result<Vec<StreamId>, RedisError> {
        // One script per batch: fred's cost is per command, so a pipeline of XADDs costs the
        // client ~7 µs an entry, a script's arguments well under 1 µs; Redis runs the XADDs
        // at ~1.4 µs each. A single entry or very wide entries go as plain XADDs.
        const SCRIPT: &str = "local ids, i = {}, 1 \
            while i <= #ARGV do local c = tonumber(ARGV[i]) \
              ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + c)) \
              i = i + c + 1 end return ids";
        if entries.len() < 2 || entries.iter().any(|e| e.len() > SCRIPT_MAX_FIELDS) {
            return self.add_many_pipelined(stream, entries).await;
        }
        let mut a = args([SCRIPT, "1", stream]);
        a.reserve(entries.iter().map(|e| 1 + e.len() * 2).sum());
        for fields in entries {
            a.push(Value::from((fields.len() * 2).to_string()));
            push_text_pairs(&mut a, fields);
        }
        let reply = self.eval("EVAL (XADD batch)", stream, a).await?;
        let ids = reply::ids("XADD", reply)?;
        if ids.len() != entries.len() {
            return Err(protocol(
                "XADD",
                format!("{} IDs for {} entries", ids.len(), entries.len()),
            ));
        }
        Ok(ids)
    }

    async fn add_many_pipelined(
        &self,
        stream: &str,
        entries: &[Vec<(String, String)>],
    ) -> Result<Vec<StreamId>, RedisError> {
        let pipeline = self.client.pipeline();
        for fields in entries {
            let mut a = args([stream, "*"]);
            push_text_pairs(&mut a, fields);
            let _: () = pipeline
                .custom(cmd("XADD"), a)
                .await
                .map_err(|e| self.fail("XADD", e))?;
        }
        let replies = pipeline_replies(
            "XADD",
            pipeline.all().await.map_err(|e| self.fail("XADD", e)),
            entries.len(),
        )?;
        replies
            .iter()
            .map(|r| reply::id(r).ok_or_else(|| protocol("XADD", "no ID")))
            .collect()
    }

    /// XADD unless `dedup_key` exists; then remembers the new ID under `dedup_key` for
    /// `ttl`. Atomic (one script), so a failed XADD never reserves the key. Returns the entry
    /// ID and whether it was added now (`false`: an earlier publish with this key).
    pub async fn add_once(
        &self,
        stream: &str,
        dedup_key: &str,
        ttl: Duration,
        fields: &[(String, String)],
    ) -> Result<(StreamId, bool), RedisError> {
        const SCRIPT: &str = "local seen = redis.call('GET', KEYS[2]) \
            if seen then return {seen, 0} end \
            local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2)) \
            redis.call('SET', KEYS[2], id, 'PX', ARGV[1]) return {id, 1}";
        let ttl = ttl.as_millis().max(1).to_string();
        let mut a = args([SCRIPT, "2", stream, dedup_key, &ttl]);
        push_text_pairs(&mut a, fields);
        let reply: Value = self.eval("EVAL", stream, a).await?;
        let items = array(reply).ok_or_else(|| protocol("EVAL", "expected [id, added]"))?;
        let id = items
            .first()
            .and_then(reply::id)
            .ok_or_else(|| protocol("EVAL", "no ID"))?;
        Ok((id, items.get(1).and_then(int) == Some(1)))
    }

    /// `XDEL key ids…`; returns how many existed.
    pub async fn delete(&self, key: &str, ids: &[StreamId]) -> Result<u64, RedisError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut a = args([key]);
        a.extend(ids.iter().map(|id| Value::from(id.to_string())));
        let reply = self.call("XDEL", a).await?;
        Ok(int(&reply).unwrap_or(0).max(0) as u64)
    }

    /// Moves DLQ entries back to `stream`, each in one script (see [`REPROCESS`]), pipelined.
    /// One result per ID: the new entry's ID, or `None` if it was no longer in the DLQ
    /// (already reprocessed or forgotten).
    pub async fn reprocess(
        &self,
        dlq: &str,
        stream: &str,
        ids: &[StreamId],
    ) -> Result<Vec<Option<StreamId>>, RedisError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.client.pipeline();
        for id in ids {
            let _: () = pipeline
                .custom(
                    eval_command(dlq),
                    args([REPROCESS, "2", dlq, stream, &id.to_string()]),
                )
                .await
                .map_err(|e| self.fail("EVAL", e))?;
        }
        let replies = pipeline_replies(
            "EVAL",
            pipeline.all().await.map_err(|e| self.fail("EVAL", e)),
            ids.len(),
        )?;
        Ok(replies.iter().map(reply::id).collect())
    }

    /// Appends `entries` to `stream`, then sets `progress` on the hash `job`, in one script:
    /// a failing XADD stops it before the progress moves, so a resumed job never skips
    /// entries. (Entries with more than `SCRIPT_MAX_FIELDS` fields fall back to MULTI.)
    pub async fn add_with_progress(
        &self,
        stream: &str,
        entries: &[Vec<(Bytes, Bytes)>],
        job: &str,
        progress: &[(&str, String)],
    ) -> Result<(), RedisError> {
        const SCRIPT: &str = "local i, n = 2, tonumber(ARGV[1]) \
            for e = 1, n do local c = tonumber(ARGV[i]) \
              redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + c)) i = i + c + 1 end \
            redis.call('HSET', KEYS[2], unpack(ARGV, i)) return n";
        if entries.iter().any(|e| e.len() > SCRIPT_MAX_FIELDS) {
            return self
                .add_with_progress_multi(stream, entries, job, progress)
                .await;
        }
        let mut a = args([SCRIPT, "2", stream, job]);
        a.push(Value::from(entries.len().to_string()));
        for fields in entries {
            a.push(Value::from((fields.len() * 2).to_string()));
            push_pairs(&mut a, fields);
        }
        for (k, v) in progress {
            a.push(Value::from(*k));
            a.push(Value::from(v.as_str()));
        }
        let _: Value = self.eval("EVAL (replay batch)", stream, a).await?;
        Ok(())
    }

    async fn add_with_progress_multi(
        &self,
        stream: &str,
        entries: &[Vec<(Bytes, Bytes)>],
        job: &str,
        progress: &[(&str, String)],
    ) -> Result<(), RedisError> {
        let trx = self.client.multi();
        for fields in entries {
            let mut a = args([stream, "*"]);
            push_pairs(&mut a, fields);
            let _: () = trx
                .custom(cmd("XADD"), a)
                .await
                .map_err(|e| self.fail("MULTI", e))?;
        }
        let mut h = args([job]);
        for (k, v) in progress {
            h.push(Value::from(*k));
            h.push(Value::from(v.as_str()));
        }
        let _: () = trx
            .custom(cmd("HSET"), h)
            .await
            .map_err(|e| self.fail("MULTI", e))?;
        let _: Value = trx.exec(true).await.map_err(|e| self.fail("EXEC", e))?;
        Ok(())
    }

    pub async fn hash_set(&self, key: &str, fields: &[(&str, String)]) -> Result<(), RedisError> {
        let mut a = args([key]);
        for (k, v) in fields {
            a.push(Value::from(*k));
            a.push(Value::from(v.as_str()));
        }
        self.call("HSET", a).await.map(|_| ())
    }

    pub async fn hash_get_all(&self, key: &str) -> Result<HashMap<String, String>, RedisError> {
        let reply = self.call("HGETALL", args([key])).await?;
        Ok(pairs("HGETALL", reply)?
            .into_iter()
            .map(|(k, v)| (k, text(&v).unwrap_or_default()))
            .collect())
    }

    /// The ID of the newest entry, if any.
    pub async fn last_id(&self, stream: &str) -> Result<Option<StreamId>, RedisError> {
        let reply = self
            .call("XREVRANGE", args([stream, "+", "-", "COUNT", "1"]))
            .await?;
        Ok(reply::entries("XREVRANGE", reply)?.first().map(|e| e.id))
    }

    /// `SADD`/`SREM` of one member; returns whether the set changed.
    pub async fn set_member(
        &self,
        key: &str,
        member: &str,
        present: bool,
    ) -> Result<bool, RedisError> {
        let reply = self
            .call(if present { "SADD" } else { "SREM" }, args([key, member]))
            .await?;
        Ok(int(&reply) == Some(1))
    }

    /// `INFO` fields that decide whether Redis can lose accepted entries.
    pub async fn durability(&self) -> Result<(bool, String), RedisError> {
        let reply = self.call("INFO", args(["persistence"])).await?;
        let persistence = text(&reply).unwrap_or_default();
        let aof = persistence.lines().any(|l| l.trim() == "aof_enabled:1");
        let reply = self.call("INFO", args(["memory"])).await?;
        let memory = text(&reply).unwrap_or_default();
        let policy = memory
            .lines()
            .find_map(|l| l.trim().strip_prefix("maxmemory_policy:"))
            .unwrap_or("unknown")
            .to_string();
        Ok((aof, policy))
    }
}

/// Moves one DLQ entry back to the main stream: the original fields without `dlq_*` (and
/// without old replay markers), plus `replay_of` = `dlq_source_id` and `replay_group` =
/// `dlq_group`; then deletes it from the DLQ. Nil if the entry is gone.
/// KEYS: stream, dlq. ARGV: group, min idle ms, max attempts, now ms, error template,
/// field limit, then IDs. Re-checks each ID with XPENDING so an entry another consumer
/// claimed or acknowledged since the scan is left alone.
const SWEEP: &str = r#"
local group, idle, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local before, after = string.match(ARGV[5], '^(.-){n}(.*)$')
local moved, lost = {}, {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], group, 'IDLE', idle, id, id, 1)
  if #p == 1 and p[1][4] >= max then
    local count = p[1][4]
    local n = tostring(count)
    local e = redis.call('XRANGE', KEYS[1], id, id)
    if #e == 0 then
      redis.call('XACK', KEYS[1], group, id)
      lost[#lost + 1] = id
    elseif #e[1][2] <= tonumber(ARGV[6]) then
      local f, out, k, ty = e[1][2], {}, 0, ''
      for j = 1, #f, 2 do
        local name = f[j]
        if string.byte(name, 1) ~= 100 or string.sub(name, 1, 4) ~= 'dlq_' then
          out[k + 1], out[k + 2], k = name, f[j + 1], k + 2
        end
        if name == 'type' then ty = f[j + 1] end
      end
      out[k + 1], out[k + 2] = 'dlq_source_id', id
      out[k + 3], out[k + 4] = 'dlq_group', group
      out[k + 5], out[k + 6] = 'dlq_reason', 'max_attempts'
      out[k + 7], out[k + 8] = 'dlq_error', before and (before .. n .. after) or ARGV[5]
      out[k + 9], out[k + 10] = 'dlq_attempts', n
      out[k + 11], out[k + 12] = 'dlq_failed_at', ARGV[4]
      local dlq_id = redis.call('XADD', KEYS[2], '*', unpack(out))
      redis.call('XACK', KEYS[1], group, id)
      moved[#moved + 1] = {id, ty, dlq_id, count}
    end
  end
end
return {moved, lost}
"#;

const REPROCESS: &str = r#"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local f, out, src, grp = e[1][2], {}, nil, nil
for i = 1, #f, 2 do
  local k, v = f[i], f[i + 1]
  if k == 'dlq_source_id' then src = v
  elseif k == 'dlq_group' then grp = v
  elseif string.sub(k, 1, 4) ~= 'dlq_' and k ~= 'replay_of' and k ~= 'replay_group' and k ~= 'replay_job' then
    out[#out + 1] = k; out[#out + 1] = v
  end
end
if src then out[#out + 1] = 'replay_of'; out[#out + 1] = src end
if grp then out[#out + 1] = 'replay_group'; out[#out + 1] = grp end
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return id"#;

fn eval_command(key: &str) -> CustomCommand {
    CustomCommand::new_static(
        "EVAL",
        fred::types::ClusterHash::Custom(stream_slot(key)),
        false,
    )
}

/// Appends field/value pairs as command arguments.
fn push_pairs(args: &mut Vec<Value>, fields: &[(Bytes, Bytes)]) {
    args.reserve(fields.len() * 2);
    for (k, v) in fields {
        args.push(Value::Bytes(k.clone()));
        args.push(Value::Bytes(v.clone()));
    }
}

fn push_text_pairs(args: &mut Vec<Value>, fields: &[(String, String)]) {
    args.reserve(fields.len() * 2);
    for (k, v) in fields {
        args.push(Value::from(k.as_str()));
        args.push(Value::from(v.as_str()));
    }
}

/// The replies of a pipeline of `n` commands, one per command.
fn pipeline_replies(
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

/// The cluster hash slot of a key (hash tags honoured).
fn stream_slot(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}
