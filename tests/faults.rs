//! Fault injection against real processes: every published entry must end up handled at
//! least once or in the DLQ (duplicates are counted, never losses).

use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::proxy;
use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// `failed_calls` of a command in `INFO commandstats`.
fn failed_calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("failed_calls=")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_dlq_move_that_cannot_write_the_dlq_acknowledges_nothing() {
    let server = RedisServer::start();
    let stream = stream_name("dlqatomic");
    let dlq = format!("{stream}:dlq");
    // Someone broke the DLQ key: XADD to it fails with WRONGTYPE.
    server.cli(&["SET", &dlq, "not a stream"]);
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[retry]\nmax_attempts = 50\nvisibility_timeout_seconds = 0.5\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{}\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n",
        server.url(),
        0
    );
    let handler = Recorder::with(|_| Outcome::permanent("no"));
    let running = run(Engine::new(config(&text)).with_handler("p", handler.clone()));
    let redis = server.client().await;
    let id = publish(&redis, &stream, "job", "{not json").await;
    wait_for("the move was attempted at least twice", T, || async {
        let stats = server.cli(&["INFO", "commandstats"]);
        // Counted for XADD inside a script and inside MULTI alike.
        failed_calls(&stats, "xadd") >= 2
    })
    .await;
    assert_eq!(server.cli(&["TYPE", &dlq]), "string");
    let pending = server.cli(&["XPENDING", &stream, "p", "-", "+", "10"]);
    assert!(
        pending.contains(&id.to_string()),
        "the entry was acknowledged without a DLQ copy: {pending}"
    );
    // Repair the key: the next attempt moves it, once.
    server.cli(&["DEL", &dlq]);
    wait_for("dead-lettered after the repair", T, || async {
        redis.stream_len(&dlq).await.unwrap_or(0) == 1
            && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let entry = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(entry, "dlq_source_id"), id.to_string());
    assert_eq!(field(entry, "dlq_reason"), "invalid");
    assert_eq!(handler.count(), 0);
    running.stop().await;
}

fn engine_toml(url: &str, stream: &str, http: u16, extra: &str) -> String {
    format!(
        "shutdown_grace_seconds = 5\n[redis]\nurl = \"{url}\"\n[stream]\nname = \"{stream}\"\n[retry]\nmax_attempts = 10\nretry_seconds = 0.1\nvisibility_timeout_seconds = 1\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{http}\"\n[[pools]]\nname = \"p\"\nconcurrency = 8\ntypes = [\"*\"]\n{extra}"
    )
}

/// `engine_toml` (pool handler given) written to `dir/streams.toml`, for `weir` processes.
fn config_file(
    dir: &std::path::Path,
    server: &RedisServer,
    stream: &str,
    handler: &str,
) -> std::path::PathBuf {
    let path = dir.join("streams.toml");
    std::fs::write(&path, engine_toml(&server.url(), stream, 0, handler)).unwrap();
    path
}

/// An engine running pool `p` with `handler` against `url`, and a client of `server`, once
/// the pool's group exists.
async fn start_engine(
    server: &RedisServer,
    url: &str,
    stream: &str,
    handler: &Recorder,
) -> (Running, weir::redis::Redis) {
    let running =
        run(Engine::new(config(&engine_toml(url, stream, 0, "")))
            .with_handler("p", handler.clone()));
    let redis = server.client().await;
    wait_for("group created", T, || async {
        group_pending(&redis, stream, "p").await == 0
    })
    .await;
    (running, redis)
}

/// Publishes `{"n": …}` for `range` in the background; the task returns the accepted `n`s.
async fn spawn_publisher(
    server: &RedisServer,
    stream: &str,
    range: std::ops::Range<u64>,
    pause: Duration,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let redis = server.client().await;
    let stream = stream.to_string();
    tokio::spawn(async move { publish_numbered(&redis, &stream, range, pause).await })
}

async fn healthz(addr: std::net::SocketAddr) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits until every accepted entry is handled or dead-lettered, then checks the ledger.
async fn settle_and_check(
    handler: &Recorder,
    redis: &weir::redis::Redis,
    stream: &str,
    accepted: &[u64],
    within: Duration,
) -> usize {
    let dlq = format!("{stream}:dlq");
    wait_for(
        "every accepted entry handled or dead-lettered",
        within,
        || async { ledger(handler, redis, &dlq, accepted).await.0.is_empty() },
    )
    .await;
    wait_for("nothing left pending in any group", within, || async {
        redis
            .groups(stream)
            .await
            .is_ok_and(|groups| !groups.is_empty() && groups.iter().all(|g| g.pending == 0))
    })
    .await;
    let (lost, duplicates) = ledger(handler, redis, &dlq, accepted).await;
    assert!(lost.is_empty(), "lost entries: {lost:?}");
    duplicates
}

#[tokio::test]
async fn lost_replies_for_two_seconds_lose_nothing() {
    lost_replies_for_two_seconds(Recorder::ok()).await;
}

/// The same with the reader handling each batch itself, its reads pipelined.
#[tokio::test]
async fn lost_replies_for_two_seconds_lose_nothing_with_an_inline_handler() {
    lost_replies_for_two_seconds(Recorder::ok().inline()).await;
}

async fn lost_replies_for_two_seconds(handler: Recorder) {
    let server = RedisServer::start_tcp();
    let proxy = proxy::Proxy::start(server.port()).await;
    let stream = stream_name("dropreplies");
    let running = run(
        Engine::new(config(&engine_toml(&proxy.url(), &stream, 0, "")))
            .with_handler("p", handler.clone()),
    );
    let redis = server.client().await;
    wait_for("group created", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let publisher = spawn_publisher(&server, &stream, 0..400, Duration::from_millis(5)).await;
    wait_for("the engine consuming", T, || async {
        handler.count() >= 20
    })
    .await;
    // XREADGROUP replies (entries delivered but never seen) and XACK replies vanish. The two
    // seconds are the fault's length, the scenario itself.
    proxy.set(proxy::Mode::DropReplies);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(proxy::Mode::Pass);
    let accepted = publisher.await.unwrap();
    assert_eq!(accepted.len(), 400);
    let duplicates = settle_and_check(
        &handler,
        &redis,
        &stream,
        &accepted,
        Duration::from_secs(40),
    )
    .await;
    eprintln!("lost replies: 0 lost, {duplicates} duplicate deliveries");
    running.stop().await;
}

#[tokio::test]
async fn a_black_holed_connection_turns_health_to_503_and_recovers() {
    let server = RedisServer::start_tcp();
    let proxy = proxy::Proxy::start(server.port()).await;
    let stream = stream_name("blackhole");
    let handler = Recorder::ok();
    let running = run(
        Engine::new(config(&engine_toml(&proxy.url(), &stream, 0, "")))
            .with_handler("p", handler.clone()),
    );
    let http = running.http().await;
    let redis = server.client().await;
    wait_for("healthy", T, || async { healthz(http).await == 200 }).await;
    let before = publish_numbered(&redis, &stream, 0..50, Duration::ZERO).await;
    proxy.set(proxy::Mode::BlackHole);
    let during = publish_numbered(&redis, &stream, 50..100, Duration::ZERO).await;
    wait_for("503 while black-holed", T, || async {
        healthz(http).await == 503
    })
    .await;
    proxy.set(proxy::Mode::Pass);
    wait_for("healthy again", Duration::from_secs(30), || async {
        healthz(http).await == 200
    })
    .await;
    let after = publish_numbered(&redis, &stream, 100..150, Duration::ZERO).await;
    let accepted: Vec<u64> = before.into_iter().chain(during).chain(after).collect();
    settle_and_check(
        &handler,
        &redis,
        &stream,
        &accepted,
        Duration::from_secs(40),
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn client_kill_every_500ms_under_load_loses_nothing() {
    client_kill_every_500ms_under_load(Recorder::ok()).await;
}

#[tokio::test]
async fn client_kill_every_500ms_under_load_loses_nothing_with_an_inline_handler() {
    client_kill_every_500ms_under_load(Recorder::ok().inline()).await;
}

async fn client_kill_every_500ms_under_load(handler: Recorder) {
    let server = RedisServer::start();
    let stream = stream_name("clientkill");
    let (running, redis) = start_engine(&server, &server.url(), &stream, &handler).await;
    let publisher = spawn_publisher(&server, &stream, 0..600, Duration::from_millis(5)).await;
    let mut kills = 0;
    while !publisher.is_finished() {
        server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        kills += 1;
        // The kill rate is the scenario.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(kills >= 4, "the load ended before the kills began");
    let accepted = publisher.await.unwrap();
    let duplicates = settle_and_check(
        &handler,
        &redis,
        &stream,
        &accepted,
        Duration::from_secs(40),
    )
    .await;
    eprintln!("CLIENT KILL x{kills}: 0 lost, {duplicates} duplicate deliveries");
    running.stop().await;
}

#[tokio::test]
async fn redis_stalls_client_pause_and_debug_sleep_lose_nothing() {
    let server = RedisServer::start();
    let stream = stream_name("stalls");
    let handler = Recorder::ok();
    let (running, redis) = start_engine(&server, &server.url(), &stream, &handler).await;
    let publisher = spawn_publisher(&server, &stream, 0..300, Duration::from_millis(10)).await;
    wait_for("the engine consuming", T, || async {
        handler.count() >= 10
    })
    .await;
    assert_eq!(server.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]), "OK");
    // A write of our own waits out the pause; then the engine must be handling again.
    redis
        .add(
            &format!("{stream}:probe"),
            &[("after", b"pause".as_slice())],
        )
        .await
        .unwrap();
    let handled = handler.count();
    wait_for("the engine consuming after the pause", T, || async {
        handler.count() > handled
    })
    .await;
    assert_eq!(server.cli(&["DEBUG", "SLEEP", "1.5"]), "OK");
    let accepted = publisher.await.unwrap();
    settle_and_check(
        &handler,
        &redis,
        &stream,
        &accepted,
        Duration::from_secs(40),
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn out_of_memory_refuses_publishes_clearly_while_consumers_keep_acking() {
    let server = RedisServer::start();
    let stream = stream_name("oom");
    let handler = Recorder::ok().slow(Duration::from_millis(800));
    let (running, redis) = start_engine(&server, &server.url(), &stream, &handler).await;
    let accepted = publish_numbered(&redis, &stream, 0..8, Duration::ZERO).await;
    wait_for("eight in flight", T, || async { handler.count() == 8 }).await;
    let used: u64 = server
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", &(used / 2).to_string()]);
    // Publishing fails with a clear error and writes nothing…
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &server,
        &stream,
        "handler = { kind = \"log\" }\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&path)
        .args(["publish", "--type", "job", "--data", "{\"n\":99}"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("out of memory") && stderr.contains("maxmemory"),
        "{stderr}"
    );
    // …while the entries in flight are still acknowledged.
    settle_and_check(&handler, &redis, &stream, &accepted, T).await;
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    running.stop().await;
}

#[tokio::test]
async fn sigstop_past_the_visibility_timeout_then_sigcont_corrupts_nothing() {
    let server = RedisServer::start();
    let stream = stream_name("sigstop");
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done-by-a");
    // Process A: appends each payload to a file after 2 s of work.
    let handler = format!(
        r#"{{ kind = "exec", command = ["sh", "-c", "sleep 2; cat >> {}; echo >> {}"] }}"#,
        done.display(),
        done.display()
    );
    let path = dir.path().join("a.toml");
    std::fs::write(
        &path,
        engine_toml(&server.url(), &stream, 0, &format!("handler = {handler}\n"))
            .replace("concurrency = 8", "concurrency = 20"),
    )
    .unwrap();
    let mut a = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&path)
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(a.id());
    let redis = server.client().await;
    wait_for("A's group", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let accepted = publish_numbered(&redis, &stream, 0..20, Duration::ZERO).await;
    wait_for("all 20 in flight in A", T, || async {
        group_pending(&redis, &stream, "p").await == 20
    })
    .await;
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &a.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(signal("-STOP").success());

    // Process B takes over after the visibility timeout (1 s): A renews no leases while stopped.
    let b = Recorder::ok();
    let running = run(
        Engine::new(config(&engine_toml(&server.url(), &stream, 0, "")))
            .with_handler("p", b.clone()),
    );
    settle_and_check(&b, &redis, &stream, &accepted, T).await;
    assert!(b.seen().iter().all(|s| s.attempt == 2));

    // A wakes up: its handlers finish, its XACKs find nothing, its lease renewals find nothing.
    let acks_before = command_calls(&server, "xack");
    assert!(signal("-CONT").success());
    let finished = || {
        std::fs::read_to_string(&done)
            .map(|t| t.matches("\"n\":").count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + T;
    while finished() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "A finished {} of 20: {:?}",
            finished(),
            std::fs::read_to_string(&done)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A's late XACKs reach Redis (B is idle, so any new XACK is A's); then A drains and exits,
    // after which nothing of A's can still change the group.
    wait_for("A's acknowledgements", T, || async {
        command_calls(&server, "xack") > acks_before
    })
    .await;
    assert!(signal("-TERM").success());
    assert_eq!(
        a.wait().unwrap().code(),
        Some(0),
        "A did not drain and exit cleanly"
    );
    assert_eq!(
        group_pending(&redis, &stream, "p").await,
        0,
        "A's late work left entries pending"
    );
    assert_eq!(redis.stream_len(&format!("{stream}:dlq")).await.unwrap(), 0);
    assert_eq!(b.count(), 20, "nothing was delivered a third time");
    running.stop().await;
}

#[tokio::test]
async fn a_restart_without_persistence_recreates_groups_at_the_last_delivered_id() {
    let mut server = RedisServer::start();
    let stream = stream_name("nopersist");
    let handler = Recorder::ok();
    let (running, redis) = start_engine(&server, &server.url(), &stream, &handler).await;
    let first = publish_numbered(&redis, &stream, 0..50, Duration::ZERO).await;
    settle_and_check(&handler, &redis, &stream, &first, T).await;
    let last_delivered = redis.groups(&stream).await.unwrap()[0].last_delivered;

    server.restart(); // no AOF, no RDB: everything is gone
    let redis = server.client().await;
    // Published before weir notices: a group recreated at `$` would skip these, at `0`…
    // there would be nothing older to re-handle, but at the right cursor they are handled once.
    let after = publish_numbered(&redis, &stream, 50..80, Duration::ZERO).await;
    settle_and_check(&handler, &redis, &stream, &after, Duration::from_secs(30)).await;
    let per_entry = handler.per_entry();
    assert_eq!(per_entry.len(), 80);
    assert!(
        per_entry.values().all(|n| *n == 1),
        "an entry was handled twice"
    );
    let group = redis
        .groups(&stream)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.name == "p")
        .unwrap();
    assert!(
        group.last_delivered > last_delivered,
        "the group moved on from where it was recreated"
    );
    running.stop().await;
}

#[tokio::test]
async fn entries_trimmed_before_a_pool_read_them_are_reported_and_counted_once() {
    let server = RedisServer::start();
    let stream = stream_name("trimmedunread");
    let handler = Recorder::ok();
    let text =
        engine_toml(&server.url(), &stream, 0, "").replace("name = \"p\"", "name = \"unread\"");
    let running = run(Engine::new(config(&text)).with_handler("unread", handler.clone()));
    let redis = server.client().await;
    wait_for("group created", T, || async {
        group_pending(&redis, &stream, "unread").await == 0
    })
    .await;
    publish_numbered(&redis, &stream, 0..3, Duration::ZERO).await;
    wait_for("first three handled", T, || async { handler.count() == 3 }).await;
    server.cli(&["SADD", &format!("{stream}:paused"), "unread"]);
    wait_readers_parked(&server, 0).await;
    publish_numbered(&redis, &stream, 3..13, Duration::ZERO).await;
    // Someone trims by hand past the ten unread entries, then more arrive.
    assert_eq!(server.cli(&["XTRIM", &stream, "MAXLEN", "0"]), "13");
    let late = publish_numbered(&redis, &stream, 13..15, Duration::ZERO).await;
    let metrics_url = running.url("/metrics").await;
    let lost = || async {
        let text = get_text(&metrics_url).await;
        text.lines()
            .find(|l| l.starts_with("weir_entries_lost_total{pool=\"unread\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    wait_for("the ten unread entries counted as lost", T, || async {
        lost().await == Some(10.0)
    })
    .await;
    wait_trim_ticks(&server, 2).await; // two more trim passes: not counted again
    assert_eq!(lost().await, Some(10.0));
    server.cli(&["SREM", &format!("{stream}:paused"), "unread"]);
    settle_and_check(&handler, &redis, &stream, &late, T).await;
    running.stop().await;
}

#[tokio::test]
async fn deleting_the_stream_or_the_consumer_while_running_causes_no_error_storm() {
    let server = RedisServer::start();
    let stream = stream_name("deletions");
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &server,
        &stream,
        "handler = { kind = \"noop\" }\n",
    );
    let log = std::fs::File::create(dir.path().join("weir.log")).unwrap();
    let mut weir = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&path)
        .args(["run", "--log-format", "json"])
        .env("WEIR_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    let _reaper = Reaper(weir.id());
    let redis = server.client().await;
    let caught_up = |last: weir::redis::StreamId| {
        let redis = &redis;
        let stream = &stream;
        async move {
            redis
                .groups(stream)
                .await
                .is_ok_and(|g| g.len() == 1 && g[0].last_delivered == last && g[0].pending == 0)
        }
    };
    let mut last = weir::redis::StreamId::ZERO;
    for _ in 0..5 {
        last = publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("first five handled", T, || caught_up(last)).await;

    // The stream disappears under the engine.
    assert_eq!(server.cli(&["DEL", &stream]), "1");
    // The engine notices and recreates its group (and with it the stream).
    wait_for("the group recreated", T, || async {
        redis.groups(&stream).await.is_ok_and(|g| g.len() == 1)
    })
    .await;
    for _ in 0..5 {
        last = publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("handled after the stream was deleted", T, || {
        caught_up(last)
    })
    .await;

    // The engine's consumer is deleted (with its pending list).
    let consumers = redis.consumers(&stream, "p").await.unwrap();
    assert_eq!(
        server.cli(&["XGROUP", "DELCONSUMER", &stream, "p", &consumers[0].name]),
        "0"
    );
    for _ in 0..5 {
        last = publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("handled after the consumer was deleted", T, || {
        caught_up(last)
    })
    .await;
    // A storm builds over time: the quiet period (a few reader and janitor cycles) is the
    // scenario.
    tokio::time::sleep(Duration::from_secs(2)).await;

    std::process::Command::new("kill")
        .args(["-TERM", &weir.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(weir.wait().unwrap().code(), Some(0));
    let text = std::fs::read_to_string(dir.path().join("weir.log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let loud: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .collect();
    let recreated = loud
        .iter()
        .filter(|l| l["message"].as_str().unwrap_or("").contains("recreated"))
        .count();
    assert_eq!(
        recreated, 1,
        "the group recreation is logged once: {loud:#?}"
    );
    assert!(
        loud.iter().any(|l| l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .unwrap_or("")
                .contains("Redis lost data")),
        "the deleted stream is reported"
    );
    // Besides the start-up durability warning and those two lines, a few transient errors at most.
    assert!(
        loud.len() <= 8,
        "error storm: {} WARN/ERROR lines: {loud:#?}",
        loud.len()
    );
}

/// Memory stays flat under steady load. Long, so it runs only with WEIR_SOAK_SECONDS set
/// (e.g. 300); CI runs the other scenarios. Prints RSS at start and end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_memory_stays_flat_under_steady_load() {
    let Some(seconds) = std::env::var("WEIR_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        eprintln!("soak skipped: set WEIR_SOAK_SECONDS=300 to run it");
        return;
    };
    let server = RedisServer::start();
    let stream = stream_name("soak");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    let text = engine_toml(&server.url(), &stream, 0, "handler = { kind = \"noop\" }\n")
        .replace("[stream]\n", "[stream]\nmax_len = 10000\n");
    std::fs::write(&path, text).unwrap();
    let mut weir = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&path)
        .arg("run")
        .env("WEIR_LOG", "warn")
        .env_remove("WEIR_SOAK_SECONDS") // a WEIR_* variable would read as a config key
        .spawn()
        .unwrap();
    let _reaper = Reaper(weir.id());
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap()
    };
    let redis = server.client().await;
    let load = |secs: u64| {
        let redis = redis.clone();
        let stream = stream.clone();
        async move {
            let end = std::time::Instant::now() + Duration::from_secs(secs);
            let mut n = 0u64;
            while std::time::Instant::now() < end {
                for _ in 0..100 {
                    let _ = redis
                        .add(
                            &stream,
                            &[
                                ("type", b"job"),
                                ("data", format!("{{\"n\":{n}}}").as_bytes()),
                            ],
                        )
                        .await;
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await; // ~2000 entries/s
            }
            n
        }
    };
    load(10).await; // warm-up
    let start = rss(weir.id());
    let published = load(seconds).await;
    wait_for("caught up", T, || async {
        redis
            .groups(&stream)
            .await
            .is_ok_and(|g| g[0].pending == 0 && g[0].lag == Some(0))
    })
    .await;
    let end = rss(weir.id());
    eprintln!("soak {seconds}s, {published} entries: RSS {start} kB at start, {end} kB at end");
    std::process::Command::new("kill")
        .args(["-TERM", &weir.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(weir.wait().unwrap().code(), Some(0));
    assert!(
        end < start * 3 / 2 + 8 * 1024,
        "RSS grew from {start} kB to {end} kB"
    );
}

/// `calls` of a command in `INFO commandstats`.
fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split(',').find_map(|kv| kv.split_once("calls=")))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn scripts_run_by_sha_and_survive_a_flushed_script_cache() {
    let server = RedisServer::start();
    let redis = server.client().await;
    let stream = stream_name("evalsha");
    let batch: Vec<Vec<(String, String)>> = (0..3)
        .map(|i| vec![("n".to_string(), i.to_string())])
        .collect();
    // (EVAL, EVALSHA) calls so far; the SHA may be known from another test's server.
    let counts = || {
        let stats = server.cli(&["INFO", "commandstats"]);
        (calls(&stats, "eval"), calls(&stats, "evalsha"))
    };
    redis.add_many(&stream, &batch).await.unwrap();
    let before = counts();
    redis.add_many(&stream, &batch).await.unwrap();
    assert_eq!(
        counts(),
        (before.0, before.1 + 1),
        "a known script goes by SHA"
    );

    // The server forgets every script (as after a restart): NOSCRIPT, then EVAL, once.
    server.cli(&["SCRIPT", "FLUSH"]);
    let before = counts();
    redis.add_many(&stream, &batch).await.unwrap();
    let flushed = counts();
    assert_eq!(flushed.0, before.0 + 1, "the lost script went as EVAL");
    redis.add_many(&stream, &batch).await.unwrap();
    assert_eq!(counts(), (flushed.0, flushed.1 + 1), "and by SHA again");
    assert_eq!(
        redis.stream_len(&stream).await.unwrap(),
        12,
        "no batch twice"
    );
}
