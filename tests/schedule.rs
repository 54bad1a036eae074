//! Delayed events (contract §13): `<stream>:scheduled`, the mover in every `weir run`, and
//! the ways in (CLI, NDJSON, library, API, ZADD by hand) and out (list, cancel).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::Engine;

use crate::support::*;

const T: Duration = Duration::from_secs(30);
const ADMIN: &str = "adm-scheduled-token";

/// A config for stream `stream`: pool `p` takes `t` and `u` (noop handler unless a test
/// registers one), with the admin API on a free port when `api` is set.
fn toml(server: &RedisServer, stream: &str, api: Option<u16>) -> String {
    let http = match api {
        Some(port) => format!("[http]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{ADMIN}\"\n"),
        None => "[http]\nlisten = \"127.0.0.1:0\"\n".to_string(),
    };
    format!(
        "shutdown_grace_seconds = 2\n[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\ndedup_window_seconds = 60\n{http}[[pools]]\nname = \"p\"\ntypes = [\"t\", \"u\"]\nhandler = {{ kind = \"noop\" }}\n",
        server.url()
    )
}

/// The config written to a temp dir, for `weir` processes.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(text: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("streams.toml"), text).unwrap();
        Files { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("streams.toml")
    }

    fn weir(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn spawn_run(&self) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(self.config())
            .arg("run")
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn zcard(server: &RedisServer, key: &str) -> u64 {
    server.cli(&["ZCARD", key]).trim().parse().unwrap()
}

fn xlen(server: &RedisServer, key: &str) -> u64 {
    server.cli(&["XLEN", key]).trim().parse().unwrap()
}

/// `n` members `{"type":"t","data":"{\"n\":i}","id":"e-i"}` added by one script, due at
/// `due` unix ms (an overdue backlog when in the past).
fn zadd_many(server: &RedisServer, key: &str, n: u64, due: u64) {
    let script = "for i = 1, tonumber(ARGV[1]) do \
                  redis.call('ZADD', KEYS[1], ARGV[2], cjson.encode({type = 't', \
                  data = '{\"n\":' .. i .. '}', id = 'e-' .. i})) end \
                  return redis.call('ZCARD', KEYS[1])";
    let added = server.cli(&["EVAL", script, "1", key, &n.to_string(), &due.to_string()]);
    assert_eq!(added.trim(), n.to_string(), "{added}");
}

/// Every entry's `id` on `stream`, with how often each appears.
async fn ids_on(redis: &weir::redis::Redis, stream: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut start = "-".to_string();
    loop {
        let batch = redis.range(stream, &start, "+", 2_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        start = format!("({}", last.id);
        for e in &batch {
            *seen.entry(field(e, "id")).or_default() += 1;
        }
        if batch.len() < 2_000 {
            break;
        }
    }
    seen
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_event_reaches_the_stream_at_its_time_and_not_before() {
    let server = RedisServer::start();
    let stream = stream_name("delay");
    let text = toml(&server, &stream, None);
    let files = Files::new(&text);
    let handler = Recorder::ok();
    let running = run(Engine::new(config(&text)).with_handler("p", handler.clone()));
    running.http().await;

    let out = files.weir(&[
        "publish",
        "--type",
        "t",
        "--data",
        r#"{"n":1}"#,
        "--delay",
        "1s",
        "--json",
    ]);
    let published = Instant::now();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = answer["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sch-"), "an id is generated: {answer}");
    let due = answer["dueMs"].as_u64().unwrap();
    assert_eq!(zcard(&server, &format!("{stream}:scheduled")), 1);

    let redis = server.client().await;
    tokio::time::sleep(Duration::from_millis(500).saturating_sub(published.elapsed())).await;
    assert_eq!(
        redis.stream_len(&stream).await.unwrap(),
        0,
        "in the stream before its time"
    );

    wait_for(
        "the event on the stream",
        Duration::from_millis(1_500),
        || async { redis.stream_len(&stream).await.unwrap() == 1 },
    )
    .await;
    assert!(published.elapsed() <= Duration::from_millis(1_500));
    let entry = &redis.range(&stream, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(entry, "scheduled_for"), due.to_string());
    assert_eq!(field(entry, "id"), id);
    assert_eq!(field(entry, "type"), "t");
    assert_eq!(field(entry, "data"), r#"{"n":1}"#);
    // Moved within ~100 ms of due (the entry ID is Redis's clock when it was added).
    assert!(
        entry.id.ms >= due && entry.id.ms <= due + 250,
        "due {due}, added at {}",
        entry.id.ms
    );
    assert_eq!(zcard(&server, &format!("{stream}:scheduled")), 0);
    wait_for("handled", T, || async { handler.count() == 1 }).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_members_by_hand_with_two_engines_reach_the_stream_once_each() {
    let server = RedisServer::start();
    let stream = stream_name("by-hand");
    let key = format!("{stream}:scheduled");
    let text = toml(&server, &stream, None);
    let (a, b) = (Recorder::ok(), Recorder::ok());
    let one = run(Engine::new(config(&text)).with_handler("p", a.clone()));
    let two = run(Engine::new(config(&text)).with_handler("p", b.clone()));
    one.http().await;
    two.http().await;

    // Due shortly, so both movers are polling when the members fall due.
    let due = now_ms() + 700;
    zadd_many(&server, &key, 500, due);
    let broken = r#"{"type":"t","data":{"not":"a string"},"id":"bad-1"}"#;
    server.cli(&["ZADD", &key, &due.to_string(), broken]);
    server.cli(&["ZADD", &key, &due.to_string(), "not json at all"]);

    let redis = server.client().await;
    wait_for("500 entries and 2 dead letters", T, || async {
        redis.stream_len(&stream).await.unwrap() == 500
            && redis.stream_len(&format!("{stream}:dlq")).await.unwrap() == 2
    })
    .await;
    assert_eq!(zcard(&server, &key), 0);
    let ids = ids_on(&redis, &stream).await;
    assert_eq!(ids.len(), 500);
    assert!(ids.values().all(|&n| n == 1), "a member moved twice");
    wait_for("every event handled", T, || async {
        let mut handled: HashSet<String> = HashSet::new();
        for s in a.seen().into_iter().chain(b.seen()) {
            handled.insert(s.event_id.unwrap_or_default());
        }
        handled.len() == 500
    })
    .await;

    let letters = redis
        .range(&format!("{stream}:dlq"), "-", "+", 10)
        .await
        .unwrap();
    let raw: HashSet<String> = letters
        .iter()
        .map(|e| field(e, "scheduled_member"))
        .collect();
    assert_eq!(
        raw,
        HashSet::from([broken.to_string(), "not json at all".to_string()])
    );
    for letter in &letters {
        assert_eq!(field(letter, "dlq_reason"), "malformed");
        assert_eq!(field(letter, "dlq_group"), "p");
        assert_eq!(field(letter, "scheduled_for"), due.to_string());
        assert!(!field(letter, "dlq_error").is_empty());
    }
    one.stop().await;
    two.stop().await;
}

/// GET on the API with the admin token.
async fn api(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url).bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_events_are_listed_soonest_first_and_cancelled_from_the_cli_and_the_api() {
    let server = RedisServer::start();
    let stream = stream_name("list");
    let port = free_port();
    let text = toml(&server, &stream, Some(port));
    let files = Files::new(&text);
    let running = run(Engine::new(config(&text)));
    let base = format!("{}/api/v1", running.url("").await);

    // Three from the CLI, an hour and more away, given out of order.
    for (id, at, ty) in [("c", "+3", "t"), ("a", "+1", "u"), ("b", "+2", "t")] {
        let hours: u64 = at.trim_start_matches('+').parse().unwrap();
        let due = (now_ms() + hours * 3_600_000).to_string();
        let out = files.weir(&[
            "publish", "--type", ty, "--data", "{}", "--id", id, "--at", &due,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains(&format!("scheduled {id} ({ty}) for ")));
    }
    // The same id again: a duplicate, nothing added.
    let out = files.weir(&[
        "publish", "--type", "t", "--data", "{}", "--id", "a", "--delay", "1h",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("duplicate"), "{}", stdout(&out));
    // An immediate publish of a scheduled id: a duplicate too.
    let out = files.weir(&["publish", "--type", "t", "--data", "{}", "--id", "b"]);
    assert!(
        stdout(&out).contains("was scheduled for"),
        "{}",
        stdout(&out)
    );
    assert_eq!(xlen(&server, &stream), 0);
    // One from the API, due in 4 hours.
    let (status, answer) = api(
        reqwest::Method::POST,
        &format!("{base}/scheduled"),
        Some(json!({"delay": "4h", "type": "t", "data": {"n": 4}, "id": "d", "fields": {"tenant": "x"}})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["id"], "d");
    assert!(answer["dueAt"].as_str().unwrap().ends_with('Z'));
    // The same id again: 409, nothing added.
    let (status, answer) = api(
        reqwest::Method::POST,
        &format!("{base}/scheduled"),
        Some(json!({"delay": "1h", "type": "t", "data": {}, "id": "d"})),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    // Validation as for publish: an unrouted type, bad data, both times.
    for (body, field) in [
        (json!({"delay": "1s", "type": "nobody", "data": {}}), "type"),
        (json!({"delay": "1s", "type": "t", "data": "{oops"}), "data"),
        (
            json!({"delay": "1s", "at": "now", "type": "t", "data": {}}),
            "at",
        ),
        (json!({"delay": "soon", "type": "t", "data": {}}), "delay"),
    ] {
        let (status, answer) = api(
            reqwest::Method::POST,
            &format!("{base}/scheduled"),
            Some(body),
        )
        .await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }

    // CLI list: soonest first, with due times.
    let out = files.weir(&["scheduled", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let order: Vec<&str> = listed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    assert!(listed[0]["dueAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(listed[3]["fields"]["tenant"], "x");
    let out = files.weir(&["scheduled", "list", "--type", "u"]);
    assert!(
        stdout(&out).contains(" a ") && !stdout(&out).contains(" b "),
        "{}",
        stdout(&out)
    );

    // API list, paged by two.
    let (status, page) = api(
        reqwest::Method::GET,
        &format!("{base}/scheduled?limit=2"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["entries"][0]["id"], "a");
    let next = page["next"].as_str().unwrap();
    let (_, page) = api(
        reqwest::Method::GET,
        &format!("{base}/scheduled?limit=2&cursor={next}"),
        None,
    )
    .await;
    let ids: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "d"]);
    assert_eq!(page["next"], Value::Null);
    let (_, only) = api(
        reqwest::Method::GET,
        &format!("{base}/scheduled?type=u"),
        None,
    )
    .await;
    assert_eq!(only["entries"].as_array().unwrap().len(), 1);

    // Cancel: CLI (one known, exit 0; an unknown one, exit 2), API (200, then 404).
    let out = files.weir(&["scheduled", "cancel", "a"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("cancelled 1"));
    let out = files.weir(&["scheduled", "cancel", "b", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let (status, answer) = api(
        reqwest::Method::DELETE,
        &format!("{base}/scheduled/c"),
        None,
    )
    .await;
    assert_eq!(
        (status, answer.clone()),
        (200, json!({"cancelled": 1})),
        "{answer}"
    );
    let (status, _) = api(
        reqwest::Method::DELETE,
        &format!("{base}/scheduled/c"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, left) = api(reqwest::Method::GET, &format!("{base}/scheduled"), None).await;
    assert_eq!(left["entries"].as_array().unwrap().len(), 1);
    // A cancelled id may be scheduled again.
    let out = files.weir(&[
        "publish", "--type", "t", "--data", "{}", "--id", "a", "--delay", "1h",
    ]);
    assert!(stdout(&out).starts_with("scheduled a"), "{}", stdout(&out));

    // Status and /healthz count them.
    let out = files.weir(&["status", "--json"]);
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["scheduled"], 2);
    assert_eq!(status["scheduledOverdueSeconds"], 0.0);
    let health: Value =
        serde_json::from_str(&get_text(running.url("/healthz").await).await).unwrap();
    assert_eq!(health["scheduled"], 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_moving_a_backlog_loses_and_duplicates_nothing() {
    const N: u64 = 100_000;
    let server = RedisServer::start();
    let stream = stream_name("kill9");
    let key = format!("{stream}:scheduled");
    let files = Files::new(&toml(&server, &stream, None));
    // Overdue: the mover starts on them at once.
    zadd_many(&server, &key, N, now_ms() - 60_000);
    assert_eq!(zcard(&server, &key), N);

    let mut first = files.spawn_run();
    let reaper = Reaper(first.id());
    let redis = server.client().await;
    wait_for("the mover under way", T, || async {
        redis.stream_len(&stream).await.unwrap() > 0
    })
    .await;
    let _ = first.kill();
    let _ = first.wait();
    drop(reaper);
    let (moved, left) = (xlen(&server, &stream), zcard(&server, &key));
    assert!(
        left > 0,
        "the backlog was gone before the kill; nothing was tested"
    );
    assert_eq!(moved + left, N, "at the kill: {moved} moved + {left} left");

    let mut second = files.spawn_run();
    let _reaper = Reaper(second.id());
    wait_for("the backlog moved", T, || async {
        zcard(&server, &key) == 0
    })
    .await;
    let ids = ids_on(&redis, &stream).await;
    assert_eq!(ids.len() as u64, N, "lost some");
    assert!(ids.values().all(|&n| n == 1), "moved one twice");
    assert_eq!(xlen(&server, &stream), N);
    let _ = second.kill();
    let _ = second.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_overdue_members_move_in_seconds() {
    const N: u64 = 100_000;
    let server = RedisServer::start();
    let stream = stream_name("backlog");
    let key = format!("{stream}:scheduled");
    let text = toml(&server, &stream, None);
    zadd_many(&server, &key, N, now_ms() - 3_600_000);
    let started = Instant::now();
    let running = run(Engine::new(config(&text)));
    wait_for("the backlog moved", T, || async {
        zcard(&server, &key) == 0
    })
    .await;
    let took = started.elapsed();
    eprintln!(
        "moved {N} overdue scheduled members in {:.2} s ({:.0}/s, engine start included)",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
    assert_eq!(xlen(&server, &stream), N);
    // In due order: members of one due time go in the set's order, and entry IDs grow.
    assert!(took < Duration::from_secs(20), "{took:?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_lines_with_delay_or_at_wait_in_the_set() {
    let server = RedisServer::start();
    let stream = stream_name("ndjson");
    let key = format!("{stream}:scheduled");
    let text = toml(&server, &stream, None);
    let files = Files::new(&text);
    let past = now_ms() - 1_000;
    let lines = [
        r#"{"type":"t","data":{"n":1}}"#.to_string(),
        r#"{"type":"t","data":{"n":2},"delay":"1h"}"#.to_string(),
        format!(r#"{{"type":"t","data":{{"n":3}},"at":{past}}}"#),
        r#"{"type":"u","data":{"n":4},"delay":"2h","id":"n-4"}"#.to_string(),
        r#"{"type":"t","data":{"n":5},"at":"2099-01-01T00:00:00Z","fields":{"tenant":"x"}}"#
            .to_string(),
        r#"{"type":"t","data":{"n":6}}"#.to_string(),
    ];
    let file = files.dir.path().join("events.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = files.weir(&["publish", "--ndjson", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["published"], 6, "{answer}");
    assert_eq!(xlen(&server, &stream), 2);
    assert_eq!(zcard(&server, &key), 4);
    let score = |n: u64| -> u64 {
        let out = files.weir(&["scheduled", "list", "--json"]);
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| e["fields"]["data"] == format!("{{\"n\":{n}}}"))
            .map(|e| e["dueMs"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(score(3), past);
    assert_eq!(score(5), 4_070_908_800_000);
    let in_an_hour = score(2).abs_diff(now_ms() + 3_600_000);
    assert!(in_an_hour < 60_000, "{in_an_hour}");

    // A bad line: nothing written at all.
    let bad = files.dir.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        "{\"type\":\"t\",\"data\":{},\"delay\":\"1h\"}\n{\"type\":\"t\",\"data\":{},\"delay\":\"soon\"}\n",
    )
    .unwrap();
    let out = files.weir(&["publish", "--ndjson", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(":2: delay:"), "{}", stderr(&out));
    assert_eq!(zcard(&server, &key), 4);

    // The overdue one moves as soon as an engine runs; the others wait.
    let running = run(Engine::new(config(&text)));
    let redis = server.client().await;
    wait_for("the overdue line moved", T, || async {
        redis.stream_len(&stream).await.unwrap() == 3
    })
    .await;
    assert_eq!(zcard(&server, &key), 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_publishes_at_a_time_or_after_a_delay_with_dedup() {
    let server = RedisServer::start();
    let stream = stream_name("library");
    let cfg = config(&toml(&server, &stream, None));
    let schemas = std::sync::Arc::new(weir::schema::Schemas::load(None).unwrap());
    let publisher = weir::Publisher::new(server.client().await, &cfg, schemas);
    let event = |id: Option<&str>| weir::NewEvent {
        event_type: "t".into(),
        data: "{}".into(),
        id: id.map(String::from),
        fields: Default::default(),
        key: None,
    };
    let at = now_ms() + 60_000;
    let first = publisher
        .publish_at(&event(Some("x")), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        weir::publisher::Scheduled::Added {
            due_ms: at,
            id: "x".into()
        }
    );
    let again = publisher
        .publish_after(&event(Some("x")), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, weir::publisher::Scheduled::DuplicateScheduled(at));
    // Published first, scheduled after: refused as the entry it was published as.
    let weir::publisher::Published::Added(entry) =
        publisher.publish(&event(Some("y"))).await.unwrap().unwrap()
    else {
        panic!("not added")
    };
    let later = publisher
        .publish_at(&event(Some("y")), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later, weir::publisher::Scheduled::Duplicate(entry));
    // Without an id, two identical events are two members.
    for _ in 0..2 {
        publisher
            .publish_after(&event(None), Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(zcard(&server, &format!("{stream}:scheduled")), 3);
    // `scheduled_for` is weir's to write.
    let mut reserved = event(None);
    reserved.fields.insert("scheduled_for".into(), "1".into());
    assert!(publisher.publish_at(&reserved, at).await.unwrap().is_err());
}
