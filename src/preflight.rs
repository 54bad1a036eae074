//! `weir check`: the start-up checks as findings an operator (or a script) can read before
//! `weir run` — Redis reachable, durability settings, the ACL user's permissions for every
//! command the engine sends, the stream/DLQ slot rule, and the clock against Redis's.
//!
//! The durability rule is written here once: `weir run` logs the same risks at start.

use std::time::Duration;

use serde::Serialize;

use crate::clock::now_ms;
use crate::config::Config;
use crate::config::url::is_cluster_url;
use crate::error::RedisErrorKind;
use crate::keys;
use crate::redis::{Redis, key_slot};

/// How much a finding matters: a `Fail` makes `weir check` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The check passed.
    Ok,
    /// Worth a look, but weir runs correctly.
    Warn,
    /// weir would lose entries, fail commands or not start.
    Fail,
}

/// One line of `weir check`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Which check: `config`, `slots`, `redis`, `aof`, `maxmemory-policy`, `acl`, `clock`.
    pub check: &'static str,
    /// Whether it passed.
    pub level: Level,
    /// What was found, and how to fix it when it is not ok.
    pub message: String,
}

impl Finding {
    fn new(check: &'static str, level: Level, message: impl Into<String>) -> Finding {
        Finding {
            check,
            level,
            message: message.into(),
        }
    }
}

/// Clock skew between this host and Redis above which `check` warns, and fails.
const SKEW_WARN: Duration = Duration::from_secs(1);
const SKEW_FAIL: Duration = Duration::from_secs(60);

/// How long reaching Redis may take before `check` reports it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The risks of Redis's durability settings (`appendonly`, `maxmemory-policy`), as
/// `(check, message)`: `weir run` logs each at WARN, `weir check` fails on each.
pub fn durability_risks(aof: bool, policy: &str) -> Vec<(&'static str, String)> {
    let mut risks = Vec::new();
    if !aof {
        risks.push(("aof", "Redis runs without AOF (appendonly no): entries accepted since the last snapshot are lost if Redis crashes; set appendonly yes and appendfsync always for durability".to_string()));
    }
    if policy != "noeviction" {
        risks.push(("maxmemory-policy", format!("Redis may evict keys under memory pressure, streams and groups included (maxmemory-policy {policy}); set maxmemory-policy noeviction")));
    }
    risks
}

/// Every check against the Redis `config` names, one finding per check (several for the ACL
/// when several commands are refused). The config itself is already loaded and valid.
pub async fn check(config: &Config) -> Vec<Finding> {
    let mut findings = vec![slots(config)];
    let redis = match connect(config).await {
        Ok(redis) => redis,
        Err(finding) => {
            findings.push(finding);
            return findings;
        }
    };
    findings.push(Finding::new(
        "redis",
        Level::Ok,
        format!("reached {}", redis.url()),
    ));
    findings.extend(durability(&redis).await);
    findings.extend(acl(&redis, config).await);
    findings.push(clock(&redis).await);
    redis.quit().await;
    findings
}

fn slots(config: &Config) -> Finding {
    if !is_cluster_url(&config.redis.url) {
        return Finding::new(
            "slots",
            Level::Ok,
            "not a cluster URL: no slot rule applies",
        );
    }
    match keys::slot_mismatch(config.partitions(), key_slot) {
        None => Finding::new(
            "slots",
            Level::Ok,
            format!(
                "every stream shares its DLQ's cluster slot ({} partition(s))",
                config.partitions().len()
            ),
        ),
        Some(m) => Finding::new(
            "slots",
            Level::Fail,
            format!(
                "the stream `{}` (slot {}) and its DLQ `{}` (slot {}) must hash to the same slot on Redis Cluster; give both one hash tag",
                m.partition.stream, m.stream_slot, m.partition.dlq, m.dlq_slot
            ),
        ),
    }
}

async fn connect(config: &Config) -> Result<Redis, Finding> {
    let unreachable = |message: String| Finding::new("redis", Level::Fail, message);
    let redis = Redis::new(&config.redis).map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, redis.connect()).await {
        Ok(Ok(())) => Ok(redis),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "cannot reach Redis at {} within {} s",
            redis.url(),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

async fn durability(redis: &Redis) -> Vec<Finding> {
    let (aof, policy) = match redis.durability().await {
        Ok(settings) => settings,
        Err(e) => {
            return vec![Finding::new(
                "aof",
                Level::Fail,
                format!("could not read INFO persistence/memory: {e}"),
            )];
        }
    };
    let risks = durability_risks(aof, &policy);
    let finding = |check: &'static str, fine: String| match risks.iter().find(|r| r.0 == check) {
        Some((_, risk)) => Finding::new(check, Level::Fail, risk.clone()),
        None => Finding::new(check, Level::Ok, fine),
    };
    vec![
        finding("aof", "appendonly yes".into()),
        finding("maxmemory-policy", format!("maxmemory-policy {policy}")),
    ]
}

/// One command the engine sends, with the key that routes it (and that its ACL key
/// patterns are checked against).
struct Probe {
    command: Vec<String>,
    route: String,
}

fn probe(route: &str, command: &[&str]) -> Probe {
    Probe {
        command: command.iter().map(|s| s.to_string()).collect(),
        route: route.to_string(),
    }
}

/// Every command `weir run` sends for `config`, on the keys it sends them to: the engine's
/// line of ops/redis/users.acl, plus ordered pools' lease keys and telemetry when configured.
/// Redis checks the commands a script runs against the caller's ACL too: the engine's other
/// scripts run only commands probed here directly on the same keys (XADD, XACK, XRANGE,
/// XREVRANGE, XPENDING, TYPE, XGROUP DELCONSUMER, XINFO CONSUMERS).
fn engine_commands(config: &Config) -> Vec<Probe> {
    let (g, c) = ("weir-check", "weir-check");
    let name = &config.stream.name;
    let mut probes = vec![
        probe(name, &["PING"]),
        probe(name, &["INFO", "persistence"]),
        probe(name, &["SMEMBERS", &keys::paused(name)]),
    ];
    for part in config.partitions() {
        let (s, d) = (part.stream.as_str(), part.dlq.as_str());
        probes.extend([
            probe(s, &["XGROUP", "CREATE", s, g, "$", "MKSTREAM"]),
            probe(s, &["XGROUP", "DELCONSUMER", s, g, c]),
            probe(
                s,
                &["XREADGROUP", "GROUP", g, c, "COUNT", "1", "STREAMS", s, ">"],
            ),
            probe(s, &["XACK", s, g, "0-1"]),
            probe(s, &["XCLAIM", s, g, c, "0", "0-1", "JUSTID"]),
            probe(s, &["XAUTOCLAIM", s, g, c, "0", "0-0", "COUNT", "1"]),
            probe(s, &["XPENDING", s, g, "IDLE", "0", "-", "+", "1"]),
            probe(s, &["XINFO", "GROUPS", s]),
            probe(s, &["XINFO", "STREAM", s]),
            probe(s, &["XINFO", "CONSUMERS", s, g]),
            probe(s, &["XTRIM", s, "MAXLEN", "~", "1"]),
            probe(s, &["EVAL", "return 1", "2", s, d]),
            probe(s, &["EXISTS", s]),
        ]);
        for key in [s, d] {
            probes.extend([
                probe(key, &["XADD", key, "*", "f", "v"]),
                probe(key, &["XLEN", key]),
                probe(key, &["XRANGE", key, "-", "+", "COUNT", "1"]),
                probe(key, &["XREVRANGE", key, "+", "-", "COUNT", "1"]),
            ]);
        }
        probes.push(probe(d, &["TYPE", d]));
        probes.extend(mover_commands(part));
    }
    for pool in &config.pools {
        let key = keys::concurrency(name, &pool.name);
        probes.extend([
            probe(&key, &["HSET", &key, "f", "v"]),
            probe(&key, &["HDEL", &key, "f"]),
            probe(&key, &["PEXPIRE", &key, "1000"]),
        ]);
        if pool.order_key.is_some() {
            probes.extend(ordered_commands(config, &pool.name));
        }
    }
    probes.extend(telemetry_commands(config));
    probes
}

/// An ordered pool's members hash, and per partition the lease scripts
/// (`owner_acquire.lua`, `owner_renew.lua`) with the commands they run inside: a script's
/// commands are checked against the same user's ACL.
/// The scheduled events' mover on one partition (contract §13): its script over the set, the
/// stream and the DLQ, and the commands inside it and the summary script.
fn mover_commands(part: &keys::Partition) -> Vec<Probe> {
    let (s, d) = (part.stream.as_str(), part.dlq.as_str());
    let z = part.scheduled_key();
    let z = z.as_str();
    vec![
        probe(z, &["EVAL", "return 1", "3", z, s, d]),
        probe(z, &["EVAL", "return 1", "1", z]),
        probe(z, &["TIME"]),
        probe(
            z,
            &[
                "ZRANGEBYSCORE",
                z,
                "-inf",
                "0",
                "WITHSCORES",
                "LIMIT",
                "0",
                "1",
            ],
        ),
        probe(z, &["ZRANGE", z, "0", "0", "WITHSCORES"]),
        probe(z, &["ZREM", z, "m"]),
        probe(z, &["ZCARD", z]),
    ]
}

fn ordered_commands(config: &Config, pool: &str) -> Vec<Probe> {
    let members = keys::members(&config.stream.name, pool);
    let mut probes = vec![
        probe(&members, &["HSET", &members, "c", "1"]),
        probe(&members, &["HGETALL", &members]),
        probe(&members, &["HDEL", &members, "c"]),
    ];
    for part in config.partitions() {
        let owner = part.owner_key(pool);
        let epoch = format!("{owner}:epoch");
        probes.extend([
            probe(&owner, &["EVAL", "return 1", "2", &owner, &epoch]),
            probe(&owner, &["HGET", &owner, "consumer"]),
            probe(&owner, &["HSET", &owner, "consumer", "c"]),
            probe(&owner, &["PEXPIRE", &owner, "1000"]),
            probe(&owner, &["DEL", &owner]),
            probe(&epoch, &["EXISTS", &epoch]),
            probe(&epoch, &["INCR", &epoch]),
        ]);
    }
    probes
}

fn telemetry_commands(config: &Config) -> Vec<Probe> {
    let name = &config.stream.name;
    let mut probes = Vec::new();
    if config.telemetry.monitor {
        let key = keys::monitor(name);
        probes.extend([
            probe(&key, &["DEL", &key]),
            probe(&key, &["HSET", &key, "f", "v"]),
            probe(&key, &["PEXPIRE", &key, "1000"]),
        ]);
    }
    if config.telemetry.key.is_some() {
        let index = keys::telemetry_index(name);
        let value = keys::telemetry(name, "weir-check");
        probes.extend([
            probe(&index, &["SADD", &index, "v"]),
            probe(&index, &["SSCAN", &index, "0"]),
            probe(&index, &["SCARD", &index]),
            probe(&index, &["SPOP", &index]),
            probe(&index, &["SREM", &index, "v"]),
            probe(&value, &["HINCRBY", &value, "f", "1"]),
            probe(&value, &["HSET", &value, "f", "v"]),
            probe(&value, &["PEXPIRE", &value, "1000"]),
            probe(&value, &["EXISTS", &value]),
            probe(&value, &["DEL", &value]),
            probe(&value, &["HGETALL", &value]),
        ]);
    }
    probes
}

/// Whether the connection's ACL user may send every command of [`engine_commands`]: one
/// finding per refused command, naming it and its key, or one `ok`.
async fn acl(redis: &Redis, config: &Config) -> Vec<Finding> {
    let route = config.stream.name.as_str();
    let mut refused = Vec::new();
    for name in ["DISCARD", "EXEC"] {
        match redis.may_send_alone(name, route).await {
            Ok(None) => {}
            Ok(Some(why)) => refused.push(refusal(&[name], route, &why)),
            Err(e) => return vec![unchecked(&e.to_string())],
        }
    }
    if !refused.is_empty() {
        refused.push(unchecked(
            "the other commands are checked inside MULTI … DISCARD",
        ));
        return refused;
    }
    let probes = engine_commands(config);
    for p in &probes {
        let command: Vec<&str> = p.command.iter().map(String::as_str).collect();
        match redis.may_send(&command, &p.route).await {
            Ok(None) => {}
            Ok(Some(why)) => refused.push(refusal(&command, &p.route, &why)),
            Err(e) if e.is(RedisErrorKind::NoPermission) && e.command == "MULTI" => {
                refused.push(refusal(&["MULTI"], route, &e.message));
                refused.push(unchecked(
                    "the other commands are checked inside MULTI … DISCARD",
                ));
                return refused;
            }
            Err(e) => refused.push(unchecked(&format!("{}: {e}", command.join(" ")))),
        }
    }
    if refused.is_empty() {
        vec![Finding::new(
            "acl",
            Level::Ok,
            format!(
                "the Redis user may send all {} commands weir run sends (MULTI, EXEC and DISCARD included)",
                probes.len()
            ),
        )]
    } else {
        refused
    }
}

fn refusal(command: &[&str], key: &str, why: &str) -> Finding {
    let name = match command {
        [first, sub, ..] if matches!(*first, "XGROUP" | "XINFO") => format!("{first} {sub}"),
        [first, ..] => first.to_string(),
        [] => String::new(),
    };
    Finding::new(
        "acl",
        Level::Fail,
        format!(
            "the Redis user may not send {name} (on key `{key}`): {}; grant +{} and the key (ops/redis/users.acl)",
            why.trim(),
            name.to_lowercase().replace(' ', "|")
        ),
    )
}

fn unchecked(why: &str) -> Finding {
    Finding::new(
        "acl",
        Level::Fail,
        format!("could not check the ACL: {why}"),
    )
}

/// This host's clock against Redis's (`INFO server`), the round trip's half taken off.
async fn clock(redis: &Redis) -> Finding {
    let before = now_ms();
    let server = match redis.server_time_ms().await {
        Ok(ms) => ms,
        Err(e) => {
            return Finding::new(
                "clock",
                Level::Warn,
                format!("could not read Redis's clock: {e}"),
            );
        }
    };
    let after = now_ms();
    let local = before + (after.saturating_sub(before)) / 2;
    let skew = Duration::from_millis(local.abs_diff(server));
    let ahead = if local >= server {
        "ahead of"
    } else {
        "behind"
    };
    let message = format!(
        "this host's clock is {} ms {ahead} Redis's",
        skew.as_millis()
    );
    let level = if skew > SKEW_FAIL {
        Level::Fail
    } else if skew > SKEW_WARN {
        Level::Warn
    } else {
        Level::Ok
    };
    let hint = if level == Level::Ok {
        ""
    } else {
        "; weir compares stream IDs (Redis time) with this host's time for retries, reclaim and --since/--until: run NTP on both"
    };
    Finding::new("clock", level, format!("{message}{hint}"))
}
