//! A careless publisher inventing event types or telemetry values (issue 22 item 3, contract
//! §7): `/metrics` stays bounded — one `type="(unrouted)"` series for every type no pool
//! takes, at most 100 type labels then `type="(other)"` for a `"*"` pool — and so do the
//! telemetry hashes (`kind:` fields), their index and the number of hashes in Redis.
//!
//! Before the fix: 3,000 unrouted types made 3,000 dead-lettered series; 2,000 types through
//! a `"*"` pool made 500 type labels per metric; telemetry kept a `kind:` field per type and
//! an index (and a hash without expiry) per value ever seen.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(60);

/// Publishes one entry per `(type, data)` with one script per 500 entries.
async fn publish_all(redis: &weir::redis::Redis, stream: &str, entries: Vec<(String, String)>) {
    for chunk in entries.chunks(500) {
        let fields: Vec<Vec<(String, String)>> = chunk
            .iter()
            .map(|(ty, data)| vec![("type".into(), ty.clone()), ("data".into(), data.clone())])
            .collect();
        redis.add_many(stream, &fields).await.unwrap();
    }
}

/// The `type` label of every sample of `metric` for `pool`, with its value.
fn type_labels(metrics: &str, metric: &str, pool: &str) -> HashMap<String, f64> {
    let pool = format!("pool=\"{pool}\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
            if !rest.contains(&pool) {
                return None;
            }
            let ty = rest.split("type=\"").nth(1)?.split('"').next()?.to_string();
            Some((ty, rest.rsplit(' ').next()?.parse::<f64>().ok()?))
        })
        .fold(HashMap::new(), |mut all: HashMap<String, f64>, (ty, n)| {
            *all.entry(ty).or_insert(0.0) += n;
            all
        })
}

fn engine_text(server: &RedisServer, stream: &str, rest: &str) -> String {
    format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[retry]\nmax_attempts = 1\n\
         [http]\nlisten = \"127.0.0.1:0\"\n{rest}",
        server.url()
    )
}

#[tokio::test]
async fn three_thousand_unrouted_types_make_one_dead_letter_series() {
    let server = RedisServer::start();
    let stream = stream_name("labels-unrouted");
    let text = engine_text(
        &server,
        &stream,
        "[[pools]]\nname = \"labels-unrouted\"\ntypes = [\"known\"]\nhandler = { kind = \"noop\" }\n",
    );
    let running = run(Engine::new(config(&text)));
    let redis = server.client().await;
    let entries = (0..3000)
        .map(|i| (format!("invented.{i}"), "{}".to_string()))
        .collect();
    publish_all(&redis, &stream, entries).await;
    let dlq = format!("{stream}:dlq");
    wait_for("3,000 unrouted dead letters", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 3000
    })
    .await;
    let metrics = get_text(running.url("/metrics").await).await;
    let series = type_labels(
        &metrics,
        "weir_messages_dead_lettered_total",
        "labels-unrouted",
    );
    assert_eq!(
        series.len(),
        1,
        "one series for every type no pool takes, not {}",
        series.len()
    );
    assert_eq!(series.get("(unrouted)"), Some(&3000.0));
    assert!(
        !metrics.contains("invented."),
        "no invented type is a label"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_star_pool_labels_a_hundred_types_then_other() {
    let server = RedisServer::start();
    let stream = stream_name("labels-star");
    let text = engine_text(
        &server,
        &stream,
        "[[pools]]\nname = \"labels-star\"\nconcurrency = 8\ntypes = [\"*\"]\n",
    );
    // Even types succeed, odd ones fail for good: processed, failed, dead-lettered and the
    // duration histogram all see new types.
    let handler = Recorder::with(|d| {
        let n: u64 = d.event_type.rsplit('.').next().unwrap().parse().unwrap();
        if n.is_multiple_of(2) {
            Outcome::Success
        } else {
            Outcome::permanent("odd")
        }
    });
    let running = run(Engine::new(config(&text)).with_handler("labels-star", handler.clone()));
    let redis = server.client().await;
    let entries = (0..2000)
        .map(|i| (format!("star.{i}"), "{}".to_string()))
        .collect();
    publish_all(&redis, &stream, entries).await;
    let dlq = format!("{stream}:dlq");
    wait_for("2,000 handled, the odd ones dead-lettered", T, || async {
        handler.count() == 2000 && redis.stream_len(&dlq).await.unwrap() == 1000
    })
    .await;
    let metrics = get_text(running.url("/metrics").await).await;
    let mut every = BTreeSet::new();
    for (metric, total) in [
        ("weir_messages_processed_total", 1000.0),
        ("weir_messages_failed_total", 1000.0),
        ("weir_messages_dead_lettered_total", 1000.0),
        ("weir_handler_duration_seconds_count", 2000.0),
    ] {
        let series = type_labels(&metrics, metric, "labels-star");
        assert!(
            series.len() <= 101,
            "{metric}: {} type labels",
            series.len()
        );
        assert!(series.contains_key("(other)"), "{metric}: {series:?}");
        assert_eq!(
            series.values().sum::<f64>(),
            total,
            "{metric}: nothing lost"
        );
        every.extend(series.into_keys());
    }
    assert_eq!(
        every.len(),
        101,
        "100 types over every metric of the pool, then (other): {every:?}"
    );
    let buckets = metrics
        .lines()
        .filter(|l| l.contains("pool=\"labels-star\""))
        .count();
    assert!(buckets < 101 * 30, "{buckets} series lines for the pool");
    running.stop().await;
}

#[tokio::test]
async fn a_publisher_labels_what_it_publishes_by_the_same_rule() {
    let server = RedisServer::start();
    let stream = stream_name("labels-publisher");
    let text = engine_text(
        &server,
        &stream,
        "[[pools]]\nname = \"labels-publisher\"\ntypes = [\"known\"]\nhandler = { kind = \"noop\" }\n",
    );
    let running = run(Engine::new(config(&text)));
    let cfg = config(&text);
    let schemas = std::sync::Arc::new(weir::schema::Schemas::load(None).unwrap());
    let publisher = weir::publisher::Publisher::new(server.client().await, &cfg, schemas);
    let events: Vec<weir::NewEvent> = (0..1000)
        .map(|i| weir::NewEvent {
            event_type: format!("pubinvented.{i}"),
            data: "{}".into(),
            id: None,
            fields: Default::default(),
            key: None,
        })
        .collect();
    publisher.publish_batch(&events).await.unwrap();
    let metrics = get_text(running.url("/metrics").await).await;
    assert!(
        !metrics.contains("pubinvented."),
        "no invented type is a label"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_messages_published_total{type=\"(unrouted)\"}")),
        "unrouted publishes count under (unrouted)"
    );
    running.stop().await;
}

/// Waits until the engine has refreshed `<stream>:monitor` twice more: a telemetry flush ran
/// after everything counted before the call (each interval refreshes the monitor, then
/// flushes).
async fn two_intervals(redis: &weir::redis::Redis, stream: &str) {
    let key = format!("{stream}:monitor");
    for _ in 0..2 {
        let before = updated_at(redis, &key).await;
        wait_for("the next telemetry interval", T, || async {
            updated_at(redis, &key).await > before
        })
        .await;
    }
}

async fn updated_at(redis: &weir::redis::Redis, key: &str) -> u64 {
    let hash = redis.hash_get_all(key).await.unwrap_or_default();
    hash.get("updated_at")
        .and_then(|u| u.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn telemetry_stays_bounded_in_values_kinds_and_keys() {
    let server = RedisServer::start();
    let stream = stream_name("labels-telemetry");
    let text = engine_text(
        &server,
        &stream,
        "[telemetry]\nkey = \"/k\"\ninterval_ms = 50\nmax_values = 20\n\
         [[pools]]\nname = \"labels-telemetry\"\nconcurrency = 4\ntypes = [\"t\"]\n",
    );
    let handler = Recorder::ok();
    let running = run(Engine::new(config(&text)).with_handler("labels-telemetry", handler.clone()));
    let redis = server.client().await;
    let index = format!("{stream}:telemetry");
    // A member whose hash is gone (expired): the tidy scan removes it.
    server.cli(&["SADD", &index, "ghost"]);
    wait_for("the member without a hash removed", T, || async {
        server.cli(&["SISMEMBER", &index, "ghost"]) == "0"
    })
    .await;

    // One value, 300 types no pool takes: one `kind:` field.
    let entries = (0..300)
        .map(|i| (format!("made.up.{i}"), r#"{"k":"steady"}"#.to_string()))
        .collect();
    publish_all(&redis, &stream, entries).await;
    let key = format!("{stream}:telemetry:steady");
    wait_for("300 unrouted counted for `steady`", T, || async {
        let hash = redis.hash_get_all(&key).await.unwrap_or_default();
        hash.get("total_received").map(String::as_str) == Some("300")
    })
    .await;
    let hash = redis.hash_get_all(&key).await.unwrap();
    let kinds: Vec<(&String, &String)> = hash
        .iter()
        .filter(|(k, _)| k.starts_with("kind:"))
        .collect();
    assert_eq!(
        kinds,
        [(&"kind:(unrouted)".to_string(), &"300".to_string())],
        "types no pool takes share one field"
    );

    // Ten waves of 20 new values, each flushed before the next: the index and the hashes
    // stay within max_values, and every hash expires.
    for wave in 0..10 {
        let entries = (0..20)
            .map(|i| ("t".to_string(), format!(r#"{{"k":"v{wave}-{i}"}}"#)))
            .collect();
        publish_all(&redis, &stream, entries).await;
        wait_for("the wave handled", T, || async {
            handler.count() == 20 * (wave + 1)
        })
        .await;
        two_intervals(&redis, &stream).await;
        let members: u64 = server.cli(&["SCARD", &index]).parse().unwrap();
        assert!(members <= 20, "wave {wave}: {members} index members");
    }
    let hashes = server.cli(&["--scan", "--pattern", &format!("{stream}:telemetry:*")]);
    assert!(
        hashes.lines().count() <= 20,
        "{} telemetry hashes",
        hashes.lines().count()
    );
    for key in hashes.lines() {
        let ttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 7 * 24 * 3600 * 1000, "{key}: PTTL {ttl}");
    }
    running.stop().await;
}
