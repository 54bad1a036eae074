//! Flow control (contract §14), rate limits: one limit held by two engines together, a hot
//! key waiting while other keys flow, waiting that is never an attempt, the metrics, and
//! the config errors.

use std::time::{Duration, Instant};

use weir::{Config, Engine};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

fn toml(server: &RedisServer, stream: &str, pool: &str, concurrency: usize, extra: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 5
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 3
retry_seconds = 0.05
visibility_timeout_seconds = 1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
[[pools]]
name = "{pool}"
concurrency = {concurrency}
types = ["job"]
{extra}
"#,
        url = server.url()
    )
}

/// Delivery counts of the group's pending entries, from XPENDING.
fn delivery_counts(server: &RedisServer, stream: &str, group: &str) -> Vec<u64> {
    let out = server.cli(&["XPENDING", stream, group, "-", "+", "10000"]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(4)
        .filter(|c| c.len() == 4)
        .map(|c| c[3].trim().parse().expect("delivery count"))
        .collect()
}

/// A metric's value for `pool` in a `/metrics` text.
fn metric(text: &str, name: &str, pool: &str) -> Option<f64> {
    let prefix = format!("{name}{{pool=\"{pool}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn two_engines_share_one_pool_wide_limit() {
    let server = RedisServer::start();
    let stream = stream_name("flow-shared");
    let pool = "rate-shared";
    let text = toml(
        &server,
        &stream,
        pool,
        4,
        "rate = { limit = 20, per = \"1s\" }",
    );
    let redis = server.client().await;
    for i in 0..400 {
        publish(&redis, &stream, "job", &format!("{{\"n\":{i}}}")).await;
    }
    let (a, b) = (Recorder::ok(), Recorder::ok());
    let first = run(Engine::new(config(&text)).with_handler(pool, a.clone()));
    let second = run(Engine::new(config(&text)).with_handler(pool, b.clone()));
    wait_for("a first start", T, || async { a.count() + b.count() > 0 }).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let window = Duration::from_secs(5);
    let starts: Vec<Instant> = a
        .seen()
        .iter()
        .chain(b.seen().iter())
        .map(|s| s.at)
        .collect();
    let origin = *starts.iter().min().unwrap();
    let in_window = starts
        .iter()
        .filter(|at| at.duration_since(origin) < window)
        .count();
    eprintln!(
        "starts in the first 5 s: {in_window} (engine a {}, engine b {}; limit 20/s → 100)",
        a.count(),
        b.count()
    );
    assert!(t0.elapsed() >= window);
    assert!(
        in_window <= 110,
        "{in_window} starts in 5 s at 20/s: over +10 %"
    );
    assert!(
        in_window >= 90,
        "{in_window} starts in 5 s at 20/s: under 0.9 of the limit"
    );
    assert!(
        a.count() > 0 && b.count() > 0,
        "both engines started handlers"
    );
    // Nobody's wait was an attempt.
    assert!(
        a.seen()
            .iter()
            .chain(b.seen().iter())
            .all(|s| s.attempt == 1)
    );
    assert!(
        delivery_counts(&server, &stream, pool)
            .iter()
            .all(|&n| n == 1)
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_hot_key_waits_while_other_keys_flow_and_waiting_is_not_an_attempt() {
    let server = RedisServer::start();
    let stream = stream_name("flow-keyed");
    let pool = "rate-keyed";
    let extra = "rate = { limit = 2, per = \"1s\" }\nrate_key = \"/k\"";
    let handler = Recorder::ok();
    let running = run(Engine::new(config(&toml(&server, &stream, pool, 4, extra)))
        .with_handler(pool, handler.clone()));
    let redis = server.client().await;
    let started = Instant::now();
    for i in 0..30 {
        publish(
            &redis,
            &stream,
            "job",
            &format!("{{\"k\":\"hot\",\"n\":{i}}}"),
        )
        .await;
    }
    for i in 0..20 {
        publish(
            &redis,
            &stream,
            "job",
            &format!("{{\"k\":\"cold-{i}\",\"n\":{i}}}"),
        )
        .await;
    }
    // Entries without the key share the pool's own bucket.
    publish(&redis, &stream, "job", "{\"n\":-1}").await;
    let hot = |h: &Recorder| {
        h.seen()
            .iter()
            .filter(|s| s.data.contains("\"hot\""))
            .count()
    };
    let cold = |h: &Recorder| h.seen().iter().filter(|s| s.data.contains("cold-")).count();
    wait_for("every cold key handled", Duration::from_secs(5), || async {
        cold(&handler) == 20
    })
    .await;
    let cold_done = started.elapsed();
    let metrics = get_text(running.url("/metrics").await).await;
    let waiting = metric(&metrics, "weir_rate_waiting", pool).unwrap_or(0.0);
    let limited = metric(&metrics, "weir_rate_limited_total", pool).unwrap_or(0.0);
    eprintln!(
        "20 cold keys in {cold_done:?} with {} hot handled; weir_rate_waiting {waiting}, weir_rate_limited_total {limited}",
        hot(&handler)
    );
    assert!(
        hot(&handler) <= 2 + 2 * (cold_done.as_secs() as usize + 1),
        "the hot key ran over its limit"
    );
    assert!(
        waiting >= 1.0,
        "hot entries wait, and the gauge says so:\n{metrics}"
    );
    assert!(limited >= 1.0);
    let health: serde_json::Value =
        serde_json::from_str(&get_text(running.url("/healthz").await).await).unwrap();
    let view = health["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap()
        .clone();
    assert_eq!(view["rateLimit"]["limit"], 2, "{view}");
    assert_eq!(view["rateLimit"]["perMs"], 1000, "{view}");
    assert_eq!(view["rateLimit"]["key"], "/k", "{view}");
    assert!(view["rateWaiting"].as_u64().unwrap() >= 1, "{view}");
    // Let the hot key wait past the visibility timeout (1 s): its entries stay leased, and
    // none was delivered twice or handed out as a new attempt.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = delivery_counts(&server, &stream, pool);
    assert!(!counts.is_empty(), "hot entries are still pending");
    assert!(counts.iter().all(|&n| n == 1), "delivery counts {counts:?}");
    assert!(handler.seen().iter().all(|s| s.attempt == 1));
    let per_entry = handler.per_entry();
    assert!(
        per_entry.values().all(|&n| n == 1),
        "an entry was handled twice"
    );
    assert!(
        handler.seen().iter().any(|s| s.data.contains("-1")),
        "the keyless entry ran"
    );
    let hot_now = hot(&handler);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        hot_now as f64 <= 2.0 + 2.0 * elapsed + 1.0,
        "{hot_now} hot in {elapsed:.1}s"
    );
    // Shutdown does not wait for the hot key's turn.
    let stopping = Instant::now();
    running.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        stopping.elapsed()
    );
}

#[test]
fn bad_rate_configs_are_errors_naming_the_pool() {
    let base = |extra: &str| {
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\n[stream]\nname = \"s\"\n[[pools]]\nname = \"bus-general\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n{extra}\n"
        )
    };
    let cases = [
        (
            "rate = { limit = 0, per = \"1s\" }",
            "pools[0].rate.limit",
            "0 is not a limit",
        ),
        (
            "rate = { limit = -3, per = \"1s\" }",
            "pools[0].rate.limit",
            "-3 is not a limit",
        ),
        (
            "rate = { limit = 5, per = \"-1s\" }",
            "pools[0].rate.per",
            "not a duration",
        ),
        (
            "rate = { limit = 5, per = \"soon\" }",
            "pools[0].rate.per",
            "not a duration",
        ),
        (
            "rate = { limit = 5, per = \"0s\" }",
            "pools[0].rate.per",
            "shorter than 1ms",
        ),
        ("rate = { limit = 5 }", "pools[0].rate.per", "is required"),
        (
            "rate = { limit = 5, per = \"1s\" }\nrate_key = \"/a//b\"",
            "pools[0].rate_key",
            "not a valid JSON pointer",
        ),
        (
            "rate = { limit = 5, per = \"1s\" }\nrate_key = \"/bad~pointer\"",
            "pools[0].rate_key",
            "not a valid JSON pointer",
        ),
        ("rate_key = \"/k\"", "pools[0].rate_key", "needs a limit"),
    ];
    for (extra, key, words) in cases {
        let err = Config::from_toml(&base(extra), &repo().join("tests/fixtures"))
            .expect_err(extra)
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
        assert!(err.contains(words), "{extra}: {err}");
        assert!(
            err.contains("bus-general"),
            "{extra}: the pool is named: {err}"
        );
    }
    let ok = Config::from_toml(
        &base("rate = { limit = 50, per = \"1.5s\" }\nrate_key = \"connector\""),
        &repo().join("tests/fixtures"),
    )
    .unwrap();
    let rate = ok.pools[0].rate.clone().unwrap();
    assert_eq!((rate.limit, rate.per), (50, Duration::from_millis(1500)));
}
