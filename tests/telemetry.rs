//! Telemetry readable in Redis (contract §12): the `<stream>:monitor` hash and the
//! `<stream>:telemetry:<value>` hashes, read back with plain HGETALL after scripted runs.

use std::collections::HashMap;
use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

async fn hash(redis: &weir::redis::Redis, key: &str) -> HashMap<String, String> {
    redis.hash_get_all(key).await.unwrap_or_default()
}

/// The counters of a telemetry hash: every field but the `last_*` ones.
async fn counters(redis: &weir::redis::Redis, key: &str) -> HashMap<String, String> {
    let mut all = hash(redis, key).await;
    all.retain(|k, _| !k.starts_with("last_"));
    all
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Two pools: `main` (3 attempts; a body with `"fail":1` fails its first attempt) and
/// `strict` (1 attempt, always fails: every entry is dead-lettered `max_attempts`).
fn scripted_config(server: &RedisServer, stream: &str, interval_ms: u64) -> String {
    format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\nevent_id = \"/id\"\n\
         [retry]\nmax_attempts = 3\nretry_seconds = 0.05\nvisibility_timeout_seconds = 1\n\
         [janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [telemetry]\nkey = \"/connectorKey\"\ninterval_ms = {interval_ms}\n\
         [[pools]]\nname = \"main\"\nconcurrency = 4\ntypes = [\"asset.discovery\", \"incident.event\"]\n\
         [[pools]]\nname = \"strict\"\ntypes = [\"cyber.metric\"]\nmax_attempts = 1\n",
        server.url()
    )
}

fn scripted_engine(text: &str) -> (Engine, Recorder, Recorder) {
    let main = Recorder::with(|d| {
        if d.data.contains("\"fail\":1") && d.attempt == 1 {
            Outcome::retry("first attempt fails")
        } else {
            Outcome::Success
        }
    });
    let strict = Recorder::with(|_| Outcome::retry("always fails"));
    let engine = Engine::new(config(text))
        .with_handler("main", main.clone())
        .with_handler("strict", strict.clone());
    (engine, main, strict)
}

#[tokio::test]
async fn telemetry_hashes_have_exact_counters_and_the_last_delivery() {
    let server = RedisServer::start();
    let stream = stream_name("telemetry");
    let (engine, main, _strict) = scripted_engine(&scripted_config(&server, &stream, 100));
    let running = run(engine);
    let redis = server.client().await;
    let long = "x".repeat(201);
    for (ty, data) in [
        // aws: ok; fails once then ok; dead-lettered after its one attempt; unrouted.
        (
            "asset.discovery",
            r#"{"connectorKey":"aws","id":"A1"}"#.to_string(),
        ),
        (
            "asset.discovery",
            r#"{"connectorKey":"aws","id":"A2","fail":1}"#.into(),
        ),
        ("cyber.metric", r#"{"connectorKey":"aws","id":"A3"}"#.into()),
        ("nobody.takes", r#"{"connectorKey":"aws","id":"A4"}"#.into()),
        // gcp twice; a numeric key; no key; a key too long to name a hash.
        (
            "incident.event",
            r#"{"connectorKey":"gcp","id":"G1"}"#.into(),
        ),
        (
            "incident.event",
            r#"{"connectorKey":"gcp","id":"G2"}"#.into(),
        ),
        ("incident.event", r#"{"connectorKey":42,"id":"N1"}"#.into()),
        ("asset.discovery", r#"{"id":"X1"}"#.into()),
        (
            "asset.discovery",
            format!(r#"{{"connectorKey":"{long}","id":"L1"}}"#),
        ),
    ] {
        publish(&redis, &stream, ty, &data).await;
    }
    let key = |v: &str| format!("{stream}:telemetry:{v}");
    let aws = map(&[
        ("total_received", "5"),
        ("processed", "2"),
        ("errored", "2"),
        ("dead_lettered", "2"),
        ("kind:asset.discovery", "3"),
        ("kind:cyber.metric", "1"),
        ("kind:(unrouted)", "1"),
    ]);
    let gcp = map(&[
        ("total_received", "2"),
        ("processed", "2"),
        ("kind:incident.event", "2"),
    ]);
    let n42 = map(&[
        ("total_received", "1"),
        ("processed", "1"),
        ("kind:incident.event", "1"),
    ]);
    wait_for("exact telemetry counters", T, || async {
        counters(&redis, &key("aws")).await == aws
            && counters(&redis, &key("gcp")).await == gcp
            && counters(&redis, &key("42")).await == n42
    })
    .await;
    assert_eq!(main.count(), 8, "every main delivery reached the handler");
    let mut indexed: Vec<String> = redis.members(&format!("{stream}:telemetry")).await.unwrap();
    indexed.sort();
    assert_eq!(
        indexed,
        ["42", "aws", "gcp"],
        "no hash for a missing or too long value"
    );
    let written = server.cli(&["--scan", "--pattern", &format!("{stream}:telemetry:*")]);
    assert_eq!(written.lines().count(), 3, "{written}");

    // The last delivery of a value, once nothing else of it is in flight.
    let before = now_ms();
    let id = redis
        .add(
            &stream,
            &[
                ("type", b"incident.event".as_slice()),
                ("data", br#"{"connectorKey":"gcp","id":"G3"}"#.as_slice()),
            ],
        )
        .await
        .unwrap();
    wait_for("the third gcp delivery", T, || async {
        hash(&redis, &key("gcp")).await.get("total_received") == Some(&"3".to_string())
    })
    .await;
    let gcp = hash(&redis, &key("gcp")).await;
    assert_eq!(gcp["processed"], "3");
    assert_eq!(gcp["last_entry_id"], id.to_string());
    assert_eq!(
        gcp["last_event_id"], "G3",
        "the body's id ([stream] event_id)"
    );
    assert_eq!(gcp["last_type"], "incident.event");
    assert_eq!(gcp["last_status"], "processed");
    assert_eq!(gcp["last_pool"], "main");
    let at: u64 = gcp["last_received_at"].parse().unwrap();
    assert!(
        at >= before && at <= now_ms(),
        "{at} not in [{before}, now]"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_dead_letter_is_the_last_status_with_its_reason_counted_once() {
    let server = RedisServer::start();
    let stream = stream_name("telemetry-dlq");
    let (engine, _main, strict) = scripted_engine(&scripted_config(&server, &stream, 100));
    let running = run(engine);
    let redis = server.client().await;
    let id = publish(
        &redis,
        &stream,
        "cyber.metric",
        r#"{"connectorKey":"azure","id":"Z1"}"#,
    )
    .await;
    let key = format!("{stream}:telemetry:azure");
    wait_for("the dead letter counted", T, || async {
        hash(&redis, &key).await.get("dead_lettered") == Some(&"1".to_string())
    })
    .await;
    let azure = hash(&redis, &key).await;
    assert_eq!(strict.count(), 1);
    assert_eq!(
        (
            azure["total_received"].as_str(),
            azure["errored"].as_str(),
            azure["kind:cyber.metric"].as_str()
        ),
        ("1", "1", "1")
    );
    assert!(!azure.contains_key("processed"), "{azure:?}");
    assert_eq!(azure["last_status"], "dead_lettered");
    assert_eq!(azure["last_entry_id"], id.to_string());
    assert_eq!(azure["last_event_id"], "Z1");
    assert_eq!(azure["last_pool"], "strict");
    running.stop().await;
}

#[tokio::test]
async fn counts_of_the_last_interval_are_flushed_at_shutdown() {
    let server = RedisServer::start();
    let stream = stream_name("telemetry-stop");
    // One flush a minute: only the shutdown flush can write within this test.
    let (engine, main, _) = scripted_engine(&scripted_config(&server, &stream, 60_000));
    let running = run(engine);
    let redis = server.client().await;
    // The first interval (monitor, then a flush that takes the tallies at once) has run
    // before anything is published: the next flush is a minute away.
    let monitor = format!("{stream}:monitor");
    wait_for("the first interval", T, || async {
        hash(&redis, &monitor).await.contains_key("updated_at")
    })
    .await;
    for i in 0..3 {
        let data = format!(r#"{{"connectorKey":"oci","id":"O{i}"}}"#);
        publish(&redis, &stream, "asset.discovery", &data).await;
    }
    wait_for("three handled", T, || async { main.count() == 3 }).await;
    let key = format!("{stream}:telemetry:oci");
    running.stop().await;
    let oci = counters(&redis, &key).await;
    assert_eq!(
        oci,
        map(&[
            ("total_received", "3"),
            ("processed", "3"),
            ("kind:asset.discovery", "3"),
        ])
    );
}

#[tokio::test]
async fn the_monitor_hash_shows_depth_lag_and_pending_of_a_paused_pool() {
    let server = RedisServer::start();
    let stream = stream_name("monitor");
    let dlq = format!("{stream}:dlq");
    // Five entries; a worker that died holds two of them; the pool is paused.
    server.cli(&["XGROUP", "CREATE", &stream, "slow", "0", "MKSTREAM"]);
    for i in 0..5 {
        server.cli(&[
            "XADD",
            &stream,
            "*",
            "type",
            "x",
            "data",
            &format!("{{\"n\":{i}}}"),
        ]);
    }
    let args = ["XREADGROUP", "GROUP", "slow", "dead-worker", "COUNT", "2"];
    server.cli(&[&args[..], &["STREAMS", &stream, ">"]].concat());
    server.cli(&["XADD", &dlq, "*", "type", "x", "data", "{}"]);
    server.cli(&["SADD", &format!("{stream}:paused"), "slow"]);
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [telemetry]\ninterval_ms = 100\n\
         [[pools]]\nname = \"slow\"\ntypes = [\"*\"]\nhandler = {{ kind = \"noop\" }}\n",
        server.url()
    );
    let running = run(Engine::new(config(&text)));
    let redis = server.client().await;
    let key = format!("{stream}:monitor");
    wait_for("the monitor hash", T, || async {
        hash(&redis, &key).await.contains_key("updated_at")
    })
    .await;
    let first = hash(&redis, &key).await;
    assert_eq!(first["stream_length"], "5", "{first:?}");
    assert_eq!(first["dlq_length"], "1");
    assert_eq!(first["slow:lag"], "3");
    assert_eq!(first["slow:pending"], "2");
    assert_eq!(first["slow:paused"], "1");
    let age: f64 = first["slow:oldest_pending_age_s"].parse().unwrap();
    assert!(age > 0.0 && age < 60.0, "{age}");
    assert!(first["updated_by"].contains(&std::process::id().to_string()));
    let ttl: i64 = server.cli(&["PTTL", &key]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "expires: {ttl}");
    let updated: u64 = first["updated_at"].parse().unwrap();
    wait_for("updated_at to advance", T, || async {
        let now = hash(&redis, &key).await;
        now.get("updated_at")
            .and_then(|u| u.parse::<u64>().ok())
            .is_some_and(|u| u > updated)
    })
    .await;
    // Resumed, the pool drains: lag and pending fall to 0 in the hash.
    server.cli(&["SREM", &format!("{stream}:paused"), "slow"]);
    wait_for("lag 0 in the monitor", T, || async {
        let now = hash(&redis, &key).await;
        now.get("slow:lag").map(String::as_str) == Some("0")
            && now.get("slow:paused").map(String::as_str) == Some("0")
    })
    .await;
    running.stop().await;
}

/// The shipped `streams.toml` turns telemetry on by connector: an Integration Bus envelope
/// shows up under its `connectorKey`, and the monitor lists the four pools.
#[tokio::test]
async fn the_shipped_config_counts_per_connector() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("streams.toml"))
        .unwrap()
        .replace("redis://127.0.0.1:6379/0", &server.url())
        .replace("127.0.0.1:9464", "127.0.0.1:0")
        .replace(
            "dir = \"schemas\"",
            &format!("dir = {:?}", repo().join("schemas")),
        );
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let running = run(Engine::new(weir::Config::load(&path).unwrap()));
    let redis = server.client().await;
    let id = publish(
        &redis,
        "integration-bus",
        "incident.event",
        &envelope("incident.event"),
    )
    .await;
    let key = "integration-bus:telemetry:servicenow";
    wait_for("servicenow's telemetry", T, || async {
        hash(&redis, key).await.get("processed").map(String::as_str) == Some("1")
    })
    .await;
    let servicenow = hash(&redis, key).await;
    assert_eq!(servicenow["last_entry_id"], id.to_string());
    assert_eq!(servicenow["last_pool"], "bus-incident");
    assert_eq!(servicenow["kind:incident.event"], "1");
    let monitor = hash(&redis, "integration-bus:monitor").await;
    for pool in ["bus-general", "bus-incident", "bus-auth", "bus-cyber"] {
        assert!(
            monitor.contains_key(&format!("{pool}:pending")),
            "{monitor:?}"
        );
    }
    running.stop().await;
}

#[test]
fn a_bad_telemetry_key_is_a_keyed_config_error() {
    let base = "[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = { kind = \"log\" }\n";
    for (key, fragment) in [
        ("/connector~Key", "`~` must be followed by 0"),
        ("/a//b", "empty segment"),
        ("", "is empty"),
        ("data", "JSON pointer"),
    ] {
        let text = format!("[telemetry]\nkey = {key:?}\n{base}");
        let err = weir::Config::from_toml(&text, &repo())
            .err()
            .unwrap_or_else(|| panic!("accepted key {key:?}"))
            .to_string();
        assert!(err.contains("telemetry.key"), "{err}");
        assert!(err.contains(fragment), "{key:?}: {err}");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
