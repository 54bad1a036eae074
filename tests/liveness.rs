//! Liveness (contract §15): `/readyz` and `weir_pool_stalled` for a pool that waits with work
//! and starts nothing (busy behind slow handlers, or not reading), paused pools never stalled,
//! readers healed after their connection is killed or Redis pauses writes, and a backlog
//! gauge that stays true when XINFO GROUPS reports `lag` as nil.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use weir::{Delivery, Engine, Handler, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// A config for `stream` on `server`: one pool `p` of `concurrency` with `stall_seconds`.
fn toml(server: &RedisServer, stream: &str, concurrency: usize, stall: f64) -> String {
    format!(
        r#"
shutdown_grace_seconds = 1
[redis]
url = "{url}"
[stream]
name = "{stream}"
[janitor]
interval_seconds = 0.2
[http]
listen = "127.0.0.1:0"
[[pools]]
name = "p"
types = ["*"]
concurrency = {concurrency}
stall_seconds = {stall}
"#,
        url = server.url(),
    )
}

/// A handler that records when each call started and holds every call while `hold` is true.
#[derive(Clone)]
struct Gate {
    hold: watch::Receiver<bool>,
    started: Arc<Mutex<Vec<Instant>>>,
}

impl Gate {
    fn new(hold: bool) -> (Gate, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(hold);
        let gate = Gate {
            hold: rx,
            started: Arc::default(),
        };
        (gate, tx)
    }

    fn started(&self) -> Vec<Instant> {
        self.started.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Handler for Gate {
    async fn handle(&self, _: &Delivery) -> Outcome {
        self.started.lock().unwrap().push(Instant::now());
        let mut hold = self.hold.clone();
        let _ = hold.wait_for(|held| !held).await;
        Outcome::Success
    }
}

/// `/readyz`: its status code and body.
async fn readyz(running: &Running) -> (u16, Value) {
    let response = reqwest::get(running.url("/readyz").await).await.unwrap();
    let code = response.status().as_u16();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (code, body)
}

/// The value of `name{pool="p"}` in `/metrics`.
async fn pool_gauge(running: &Running, name: &str) -> Option<f64> {
    let text = get_text(running.url("/metrics").await).await;
    let prefix = format!("{name}{{pool=\"p\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Pool `p` in `/healthz`.
async fn healthz_pool(running: &Running) -> Value {
    let body: Value = serde_json::from_str(&get_text(running.url("/healthz").await).await).unwrap();
    body["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p")
        .cloned()
        .unwrap()
}

async fn wait_ready(running: &Running) {
    wait_for("/readyz answers 200 ready", T, || async {
        readyz(running).await == (200, serde_json::json!({"status": "ready"}))
    })
    .await;
}

async fn publish_n(redis: &weir::redis::Redis, stream: &str, n: usize) {
    for i in 0..n {
        publish(redis, stream, "t.any", &format!("{{\"n\":{i}}}")).await;
    }
}

#[tokio::test]
async fn a_pool_behind_a_slow_handler_is_reported_busy_in_time_and_ready_again_once_entries_flow() {
    let server = RedisServer::start();
    let stream = stream_name("stall-busy");
    let (gate, hold) = Gate::new(true);
    let engine =
        Engine::new(config(&toml(&server, &stream, 1, 1.0))).with_handler("p", gate.clone());
    let running = run(engine);
    wait_ready(&running).await;
    assert_eq!(pool_gauge(&running, "weir_pool_stalled").await, Some(0.0));
    let redis = server.client().await;
    publish_n(&redis, &stream, 5).await;
    wait_for("the first handler started", T, || async {
        !gate.started().is_empty()
    })
    .await;
    let first = gate.started()[0];

    // Not before stall_seconds: the handler started less than a second ago.
    let (code, _) = readyz(&running).await;
    assert!(
        code == 200 || first.elapsed() >= Duration::from_secs(1),
        "stalled {:?} after the last start, before stall_seconds = 1",
        first.elapsed()
    );
    wait_for("/readyz answers 503", T, || async {
        readyz(&running).await.0 == 503
    })
    .await;
    let detected = first.elapsed();
    // stall_seconds + 1 s, plus the 20 ms poll and one HTTP round trip.
    assert!(
        detected >= Duration::from_secs(1) && detected <= Duration::from_millis(2_150),
        "stall seen {detected:?} after the last handler start; stall_seconds = 1"
    );
    let (code, body) = readyz(&running).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "stalled", "{body}");
    let pools = body["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{body}");
    assert_eq!(pools[0]["name"], "p");
    assert_eq!(
        pools[0]["reason"], "busy",
        "one slot, taken by a running handler: {body}"
    );
    let since = humantime::parse_rfc3339(pools[0]["since"].as_str().unwrap()).unwrap();
    assert!(since <= std::time::SystemTime::now(), "{body}");
    assert_eq!(pool_gauge(&running, "weir_pool_stalled").await, Some(1.0));
    let p = healthz_pool(&running).await;
    assert_eq!(p["stalled"], true, "{p}");
    assert_eq!(p["inFlight"], 1, "{p}");
    assert_eq!(
        gate.started().len(),
        1,
        "nothing else started while the slot was taken"
    );

    hold.send_replace(false);
    wait_for("all five handled", T, || async {
        gate.started().len() == 5
    })
    .await;
    wait_ready(&running).await;
    wait_for("weir_pool_stalled back to 0", T, || async {
        pool_gauge(&running, "weir_pool_stalled").await == Some(0.0)
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn a_paused_pool_with_a_backlog_stays_ready() {
    let server = RedisServer::start();
    let stream = stream_name("stall-paused");
    server.cli(&["SADD", &format!("{stream}:paused"), "p"]);
    let recorder = Recorder::ok();
    let engine =
        Engine::new(config(&toml(&server, &stream, 2, 1.0))).with_handler("p", recorder.clone());
    let running = run(engine);
    wait_ready(&running).await;
    let redis = server.client().await;
    publish_n(&redis, &stream, 20).await;
    wait_for("/healthz shows the backlog of 20", T, || async {
        healthz_pool(&running).await["backlog"] == 20
    })
    .await;
    // Three times stall_seconds, every answer ready: a paused pool is never stalled.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        let (code, body) = readyz(&running).await;
        assert_eq!(
            (code, &body),
            (200, &serde_json::json!({"status": "ready"}))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pool_gauge(&running, "weir_pool_stalled").await, Some(0.0));
    assert_eq!(healthz_pool(&running).await["stalled"], false);
    assert_eq!(recorder.count(), 0, "the pool stayed paused");

    server.cli(&["SREM", &format!("{stream}:paused"), "p"]);
    wait_for("all 20 handled after resuming", T, || async {
        recorder.count() == 20
    })
    .await;
    wait_ready(&running).await;
    running.stop().await;
}

/// The engine's connection blocked in XREADGROUP, from CLIENT LIST.
fn reader_id(server: &RedisServer) -> Option<String> {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .find(|l| l.contains(" cmd=xreadgroup"))
        .and_then(|l| l.split(' ').find_map(|kv| kv.strip_prefix("id=")))
        .map(str::to_string)
}

#[tokio::test]
async fn a_reader_whose_connection_is_killed_is_healed_without_a_restart() {
    let server = RedisServer::start();
    let stream = stream_name("stall-kill");
    let recorder = Recorder::ok();
    let engine =
        Engine::new(config(&toml(&server, &stream, 2, 1.0))).with_handler("p", recorder.clone());
    let running = run(engine);
    wait_ready(&running).await;
    let redis = server.client().await;
    for round in 1..=3usize {
        let mut id = None;
        wait_for("the reader blocks in XREADGROUP", T, || {
            id = reader_id(&server);
            let found = id.is_some();
            async move { found }
        })
        .await;
        let id = id.unwrap();
        assert_eq!(
            server.cli(&["CLIENT", "KILL", "ID", &id]),
            "1",
            "killed {id}"
        );
        publish_n(&redis, &stream, 4).await;
        wait_for(&format!("round {round}: 4 more handled"), T, || async {
            recorder.count() == 4 * round
        })
        .await;
        assert_ne!(reader_id(&server), Some(id), "a new connection reads");
    }
    assert_eq!(recorder.per_entry().values().max(), Some(&1), "each once");
    wait_ready(&running).await;
    running.stop().await;
}

#[tokio::test]
async fn a_write_pause_of_redis_delays_reading_but_nothing_is_stalled_or_lost() {
    let server = RedisServer::start();
    let stream = stream_name("stall-pause");
    let recorder = Recorder::ok();
    let engine =
        Engine::new(config(&toml(&server, &stream, 2, 1.0))).with_handler("p", recorder.clone());
    let running = run(engine);
    wait_ready(&running).await;
    let redis = server.client().await;
    publish_n(&redis, &stream, 2).await;
    wait_for("2 handled", T, || async { recorder.count() == 2 }).await;

    assert_eq!(server.cli(&["CLIENT", "PAUSE", "60000", "WRITE"]), "OK");
    // Published while writes are paused: the XADDs wait for the pause to end. By redis-cli,
    // which waits as long as it takes (the engine's client would give up on a connection
    // silent for 3 s, and a loaded machine can stretch the pause past that).
    let publishers: Vec<std::process::Child> = (0..3)
        .map(|i| {
            std::process::Command::new("redis-cli")
                .args(server.cli_target())
                .args(["XADD", &stream, "*", "type", "t.any", "data"])
                .arg(format!("{{\"n\":{i}}}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-cli")
        })
        .collect();
    // The pause outlasts stall_seconds twice over. With nothing undelivered no pool waits,
    // so no pool is stalled; the engine's shared connection may stop answering (a paused
    // write holds up what follows it on the connection): then Redis counts as unreachable.
    let paused = Instant::now();
    let mut answers = std::collections::BTreeSet::new();
    while paused.elapsed() < Duration::from_millis(2_500) {
        let (code, body) = readyz(&running).await;
        let status = body["status"].as_str().unwrap().to_string();
        let answer = (code, status.as_str());
        assert!(
            answer == (200, "ready") || answer == (503, "unhealthy"),
            "a write pause is not a stall: {code} {body}"
        );
        answers.insert(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("/readyz during the write pause: {answers:?}");
    assert_eq!(server.cli(&["CLIENT", "UNPAUSE"]), "OK");
    for mut p in publishers {
        assert!(p.wait().expect("redis-cli").success());
    }
    wait_for("3 published during the pause handled", T, || async {
        recorder.count() == 5
    })
    .await;
    publish_n(&redis, &stream, 2).await;
    wait_for("2 more handled after it", T, || async {
        recorder.count() == 7
    })
    .await;
    assert_eq!(recorder.per_entry().values().max(), Some(&1), "each once");
    wait_ready(&running).await;
    running.stop().await;
}

#[tokio::test]
async fn a_pool_that_cannot_read_is_healed_then_reported_not_reading_until_it_reads_again() {
    let server = RedisServer::start();
    let stream = stream_name("stall-noread");
    let recorder = Recorder::ok();
    let engine =
        Engine::new(config(&toml(&server, &stream, 2, 1.0))).with_handler("p", recorder.clone());
    let running = run(engine);
    wait_ready(&running).await;
    // The engine's user may no longer read the group: its reader fails and backs off.
    assert_eq!(
        server.cli(&["ACL", "SETUSER", "default", "-xreadgroup"]),
        "OK"
    );
    let redis = server.client().await;
    publish_n(&redis, &stream, 3).await;
    let published = Instant::now();
    wait_for("/readyz answers 503", T, || async {
        readyz(&running).await.0 == 503
    })
    .await;
    // stall_seconds, then the heal's grace (stall_seconds here), less one detector tick.
    assert!(
        published.elapsed() >= Duration::from_millis(1_400),
        "reported {:?} after the entries came: before the heal had its grace",
        published.elapsed()
    );
    let (_, body) = readyz(&running).await;
    assert_eq!(body["status"], "stalled", "{body}");
    assert_eq!(body["pools"][0]["name"], "p", "{body}");
    assert_eq!(
        body["pools"][0]["reason"], "not_reading",
        "free slots: {body}"
    );
    assert_eq!(pool_gauge(&running, "weir_pool_stalled").await, Some(1.0));
    assert_eq!(recorder.count(), 0);

    assert_eq!(
        server.cli(&["ACL", "SETUSER", "default", "+xreadgroup"]),
        "OK"
    );
    wait_for("the 3 entries handled", T, || async {
        recorder.count() == 3
    })
    .await;
    wait_ready(&running).await;
    running.stop().await;
}

#[tokio::test]
async fn the_backlog_is_exact_when_xinfo_reports_no_lag_after_xdel() {
    let server = RedisServer::start();
    let stream = stream_name("backlog-xdel");
    let redis = server.client().await;
    server.cli(&["XGROUP", "CREATE", &stream, "p", "0", "MKSTREAM"]);
    server.cli(&["SADD", &format!("{stream}:paused"), "p"]);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(publish(&redis, &stream, "t.any", &format!("{{\"n\":{i}}}")).await);
    }
    // Two delivered to another consumer (pending), then three of the undelivered deleted.
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "p",
        "elsewhere",
        "COUNT",
        "2",
        "STREAMS",
        &stream,
        ">",
    ]);
    for id in &ids[4..7] {
        assert_eq!(server.cli(&["XDEL", &stream, &id.to_string()]), "1");
    }
    let group = redis.groups(&stream).await.unwrap().remove(0);
    assert_eq!(
        (group.pending, group.lag),
        (2, None),
        "Redis cannot tell the lag now"
    );
    // 5 undelivered + 2 pending.
    let want = 7;

    let engine =
        Engine::new(config(&toml(&server, &stream, 2, 1.0))).with_handler("p", Recorder::ok());
    let running = run(engine);
    wait_for("weir_pool_backlog = 7", T, || async {
        pool_gauge(&running, "weir_pool_backlog").await == Some(want as f64)
    })
    .await;
    assert_eq!(healthz_pool(&running).await["backlog"], want);
    wait_for("the monitor hash's p:backlog = 7", T, || async {
        server.cli(&["HGET", &format!("{stream}:monitor"), "p:backlog"]) == want.to_string()
    })
    .await;
    let config = config(&toml(&server, &stream, 2, 1.0));
    let status = weir::status::status(&redis, &config).await.unwrap();
    assert_eq!(status.pools[0].backlog, want);
    assert_eq!(status.pools[0].lag, None);

    // The count follows the stream while the lag stays unknown: one more published, then
    // two more undelivered entries deleted.
    publish(&redis, &stream, "t.any", "{}").await;
    wait_for("weir_pool_backlog = 8 after one more XADD", T, || async {
        pool_gauge(&running, "weir_pool_backlog").await == Some(8.0)
            && healthz_pool(&running).await["backlog"] == 8
    })
    .await;
    for id in &ids[8..10] {
        assert_eq!(server.cli(&["XDEL", &stream, &id.to_string()]), "1");
    }
    wait_for("weir_pool_backlog = 6 after two more XDELs", T, || async {
        pool_gauge(&running, "weir_pool_backlog").await == Some(6.0)
            && healthz_pool(&running).await["backlog"] == 6
    })
    .await;
    assert_eq!(redis.groups(&stream).await.unwrap()[0].lag, None);
    running.stop().await;
}

#[tokio::test]
async fn undelivered_entries_are_counted_across_pages_and_capped_as_a_lower_bound() {
    let server = RedisServer::start();
    let stream = stream_name("count-after");
    let redis = server.client().await;
    let mut ids = Vec::new();
    for i in 0..2_345 {
        ids.push(publish(&redis, &stream, "t.any", &format!("{{\"n\":{i}}}")).await);
    }
    let zero = weir::StreamId::ZERO;
    assert_eq!(
        redis.count_after(&stream, zero, 100_000).await.unwrap(),
        (2_345, true)
    );
    assert_eq!(
        redis.count_after(&stream, ids[999], 100_000).await.unwrap(),
        (1_345, true)
    );
    assert_eq!(
        redis
            .count_after(&stream, ids[2_344], 100_000)
            .await
            .unwrap(),
        (0, true)
    );
    assert_eq!(
        redis.count_after(&stream, zero, 1_500).await.unwrap(),
        (1_500, false)
    );
    assert_eq!(
        redis.count_after(&stream, zero, 2_345).await.unwrap(),
        (2_345, false)
    );
    assert_eq!(
        redis.count_after(&stream, zero, 2_346).await.unwrap(),
        (2_345, true)
    );
}
