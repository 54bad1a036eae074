//! weir on a real local Redis Cluster (three masters joined with `redis-cli --cluster
//! create`): the slot check at start, routing, retries and the DLQ, the CLI, a `kill -9`
//! handed over to another process, and a master failover.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir::{Config, Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// Keys with one hash tag, so the stream and its DLQ share a slot.
fn stream_keys(test: &str) -> (String, String) {
    let tag = stream_name(test);
    (format!("{{{tag}}}:events"), format!("{{{tag}}}:dlq"))
}

/// `weir -c CONFIG ARGS…`, which must succeed; its standard output.
fn weir_ok(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "weir {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Unix milliseconds a minute ahead: a `--until` past every entry written so far.
fn a_minute_from_now() -> String {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string()
}

fn cluster_toml(cluster: &RedisCluster, stream: &str, dlq: &str, pools: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 5
[redis]
url = "{url}"
[stream]
name = "{stream}"
dlq = "{dlq}"
[retry]
max_attempts = 2
retry_seconds = 0.1
visibility_timeout_seconds = 1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
{pools}"#,
        url = cluster.url(),
    )
}

#[test]
fn a_stream_and_dlq_in_different_slots_are_refused_with_the_fix() {
    let toml = |name: &str, dlq: &str| {
        format!(
            "[redis]\nurl = \"redis-cluster://127.0.0.1:7000,127.0.0.1:7001\"\n[stream]\nname = \"{name}\"\ndlq = \"{dlq}\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"noop\" }}\n"
        )
    };
    let err = Config::from_toml(
        &toml("integration-bus", "integration-bus:dlq"),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("stream.dlq"), "{err}");
    assert!(err.contains("same slot"), "{err}");
    assert!(err.contains("{bus}:events"), "{err}");
    // With one hash tag the same config is accepted, and the node list is read.
    let config = Config::from_toml(&toml("{bus}:events", "{bus}:dlq"), Path::new(".")).unwrap();
    assert_eq!(
        config.redis.url,
        "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001"
    );
    // A cluster URL without a usable node is a config error naming the key, not a panic.
    let bad = toml("{bus}:events", "{bus}:dlq").replace(
        "redis-cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis-cluster://127.0.0.1:notaport,",
    );
    let err = Config::from_toml(&bad, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis.url"), "{err}");
    // A single server has no slots: any names go.
    let single = toml("integration-bus", "integration-bus:dlq").replace(
        "redis-cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis://127.0.0.1:7000",
    );
    assert!(Config::from_toml(&single, Path::new(".")).is_ok());
}

#[tokio::test]
async fn routing_retries_dlq_and_the_cli_work_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let (stream, dlq) = stream_keys("cluster");
    let pools = "[[pools]]\nname = \"ok\"\nconcurrency = 4\ntypes = [\"a\"]\n\
                 [[pools]]\nname = \"failing\"\nconcurrency = 4\ntypes = [\"b\"]\n";
    let toml = cluster_toml(&cluster, &stream, &dlq, pools);
    let (ok, failing) = (
        Recorder::ok(),
        Recorder::with(|_| Outcome::retry("upstream down")),
    );
    let running = run(Engine::new(config(&toml))
        .with_handler("ok", ok.clone())
        .with_handler("failing", failing.clone()));
    let redis = cluster.client().await;
    wait_for("both groups created", T, || async {
        redis.groups(&stream).await.is_ok_and(|g| g.len() == 2)
    })
    .await;
    for i in 0..20 {
        publish(&redis, &stream, "a", &format!("{{\"i\":{i}}}")).await;
    }
    for i in 0..3 {
        publish(&redis, &stream, "b", &format!("{{\"i\":{i}}}")).await;
    }
    wait_for("a handled, b dead-lettered", T, || async {
        ok.per_entry().len() == 20 && redis.stream_len(&dlq).await.unwrap_or(0) == 3
    })
    .await;
    assert!(ok.per_entry().values().all(|n| *n == 1));
    assert_eq!(failing.count(), 6, "two attempts each");
    let dead = redis.range(&dlq, "-", "+", 10).await.unwrap();
    assert!(dead.iter().all(|e| field(e, "dlq_reason") == "max_attempts"
        && field(e, "dlq_group") == "failing"
        && field(e, "type") == "b"));
    // The DLQ lives on the node that serves the stream.
    let node = cluster.node_for(&stream);
    assert_eq!(node.cli(&["XLEN", &dlq]), "3");
    for g in ["ok", "failing"] {
        wait_for("nothing pending", T, || async {
            group_pending(&redis, &stream, g).await == 0
        })
        .await;
    }

    // The CLI against the cluster: the DLQ, and a replay of type `a`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(
        &path,
        toml.replace(
            "[[pools]]\nname = \"ok\"",
            "[[pools]]\nhandler = { kind = \"log\" }\nname = \"ok\"",
        )
        .replace(
            "[[pools]]\nname = \"failing\"",
            "[[pools]]\nhandler = { kind = \"log\" }\nname = \"failing\"",
        ),
    )
    .unwrap();
    let text = weir_ok(&path, &["dlq", "list", "--json"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines.iter().all(|l| l.contains("\"group\":\"failing\"")),
        "{text}"
    );
    weir_ok(&path, &["status", "--json"]);
    let until = a_minute_from_now();
    weir_ok(
        &path,
        &[
            "replay", "--since", "0", "--until", &until, "--type", "a", "--json",
        ],
    );
    wait_for("the replayed entries handled", T, || async {
        ok.count() == 40
    })
    .await;
    assert!(
        ok.seen()
            .iter()
            .skip(20)
            .all(|s| s.fields.iter().any(|(k, _)| k == "replay_of")),
        "replayed entries carry replay_of"
    );
    running.stop().await;
}

#[tokio::test]
async fn kill_9_on_a_cluster_hands_entries_to_another_process() {
    let cluster = RedisCluster::start(3, 0);
    let (stream, dlq) = stream_keys("cluster-kill");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 20\ntypes = [\"*\"]\n\
                 handler = { kind = \"exec\", command = [\"sleep\", \"30\"] }\n";
    let toml = cluster_toml(&cluster, &stream, &dlq, pools)
        .replace("max_attempts = 2", "max_attempts = 5");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&path)
        .arg("run")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(first.id());
    let redis = cluster.client().await;
    wait_for("the group", T, || async {
        redis.groups(&stream).await.is_ok_and(|g| g.len() == 1)
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(publish(&redis, &stream, "job", &format!("{{\"i\":{i}}}")).await);
    }
    wait_for("all 20 in flight in the first process", T, || async {
        group_pending(&redis, &stream, "p").await == 20
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();

    let handler = Recorder::ok();
    let second = run(Engine::new(config(&toml)).with_handler("p", handler.clone()));
    wait_for("all 20 redelivered to the second process", T, || async {
        handler.per_entry().len() == 20
    })
    .await;
    let mut got: Vec<_> = handler.per_entry().into_keys().collect();
    got.sort();
    assert_eq!(got, ids);
    assert!(handler.seen().iter().all(|s| s.attempt == 2));
    wait_for("all acknowledged", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    second.stop().await;
}

#[tokio::test]
async fn a_master_failover_loses_nothing_acknowledged_with_wait() {
    // Three masters with one replica each. Entries are published with WAIT 1 (each reached
    // a replica); then the stream's master is killed, its replica takes over, and weir must
    // carry on: every entry published before and after is handled or dead-lettered.
    let mut cluster = RedisCluster::start(3, 1);
    let (stream, dlq) = stream_keys("failover");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 8\ntypes = [\"*\"]\n";
    let toml = cluster_toml(&cluster, &stream, &dlq, pools)
        .replace("max_attempts = 2", "max_attempts = 50");
    let handler = Recorder::ok();
    let running = run(Engine::new(config(&toml)).with_handler("p", handler.clone()));
    let redis = cluster.client().await;
    wait_for("the group", T, || async {
        redis.groups(&stream).await.is_ok_and(|g| g.len() == 1)
    })
    .await;

    // Before: 100 entries, each acknowledged by a replica (XADD then WAIT, one connection).
    let master = cluster.node_for(&stream).port();
    let mut script = String::new();
    for n in 0..100 {
        script.push_str(&format!(
            "XADD {stream} * type job data '{{\"n\":{n}}}'\nWAIT 1 2000\n"
        ));
    }
    let mut cli = Command::new("redis-cli")
        .args(["-p", &master.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    cli.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let replies = String::from_utf8_lossy(&out.stdout);
    let waited = replies.lines().filter(|l| l.trim() == "1").count();
    assert_eq!(waited, 100, "every XADD reached a replica: {replies}");

    let killed = cluster.kill9_master_of(&stream);
    wait_for("a replica took over the stream's slot", T, || async {
        cluster.is_ok() && cluster.node_for(&stream).port() != killed
    })
    .await;

    // After: 100 more through weir's own client, retried until the new master accepts them.
    let mut published: Vec<u64> = (0..100).collect();
    published.extend(publish_numbered(&redis, &stream, 100..200, Duration::ZERO).await);
    assert_eq!(published.len(), 200);
    wait_for("every entry handled or dead-lettered", T, || async {
        ledger(&handler, &redis, &dlq, &published)
            .await
            .0
            .is_empty()
    })
    .await;
    let (lost, duplicates) = ledger(&handler, &redis, &dlq, &published).await;
    assert!(lost.is_empty(), "lost: {lost:?}");
    eprintln!("failover: {duplicates} duplicate deliveries (at-least-once)");
    running.stop().await;
}

#[tokio::test]
async fn two_engines_share_a_pool_on_a_cluster_and_a_stopped_ones_consumer_is_removed() {
    let cluster = RedisCluster::start(3, 0);
    let (stream, dlq) = stream_keys("cluster-share");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 4\ntypes = [\"*\"]\n";
    let toml = cluster_toml(&cluster, &stream, &dlq, pools)
        .replace("[janitor]\n", "[janitor]\nconsumer_gc_seconds = 1\n");
    let (a, b) = (
        Recorder::ok().slow(Duration::from_millis(10)),
        Recorder::ok().slow(Duration::from_millis(10)),
    );
    let first = run(Engine::new(config(&toml)).with_handler("p", a.clone()));
    // The same file: `listen` on port 0 gives the second engine its own HTTP port, as a
    // second process would have.
    let second = run(Engine::new(config(&toml)).with_handler("p", b.clone()));
    let redis = cluster.client().await;
    wait_for("the group", T, || async {
        redis.groups(&stream).await.is_ok_and(|g| g.len() == 1)
    })
    .await;
    let published = publish_numbered(&redis, &stream, 0..200, Duration::ZERO).await;
    wait_for("all 200 handled", T, || async {
        a.per_entry().len() + b.per_entry().len() >= 200
    })
    .await;
    wait_for("nothing pending", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    // Each entry was handled by exactly one of the two, and both took part.
    let mut all: Vec<u64> = a
        .seen()
        .iter()
        .chain(b.seen().iter())
        .filter_map(|s| n_of(&s.data))
        .collect();
    all.sort_unstable();
    assert_eq!(all, published, "each entry handled once in total");
    assert!(
        a.count() > 0 && b.count() > 0,
        "both engines handled entries"
    );
    assert_eq!(
        redis.consumers(&stream, "p").await.unwrap().len(),
        2,
        "one consumer per engine"
    );

    // The second stops with nothing pending: the first removes its consumer.
    second.stop().await;
    wait_for("the stopped engine's consumer removed", T, || async {
        redis
            .consumers(&stream, "p")
            .await
            .is_ok_and(|c| c.len() == 1)
    })
    .await;
    first.stop().await;
}

#[test]
fn partition_keys_follow_the_hash_tag_or_the_stream_name() {
    let toml = |stream: &str, extra: &str| {
        format!(
            "[redis]\nurl = \"redis-cluster://127.0.0.1:7000\"\n[stream]\n{stream}{extra}[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"noop\" }}\n"
        )
    };
    let names = |config: &Config| -> Vec<(String, String)> {
        config
            .stream
            .partition_list()
            .into_iter()
            .map(|p| (p.name, p.dlq))
            .collect()
    };
    // Untagged names: the stream name becomes each partition's tag, the DLQ follows.
    let config = Config::from_toml(
        &toml("name = \"integration-bus\"\n", "partitions = 3\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(
        names(&config),
        (0..3)
            .map(|i| (
                format!("{{integration-bus:{i}}}"),
                format!("{{integration-bus:{i}}}:dlq")
            ))
            .collect::<Vec<_>>()
    );
    // Tagged names: the tag gets the partition number.
    let config = Config::from_toml(
        &toml(
            "name = \"{bus}:events\"\ndlq = \"{bus}:dlq\"\n",
            "partitions = 2\n",
        ),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(
        names(&config),
        vec![
            ("{bus:0}:events".to_string(), "{bus:0}:dlq".to_string()),
            ("{bus:1}:events".to_string(), "{bus:1}:dlq".to_string()),
        ]
    );
    // One partition is today's layout.
    let config = Config::from_toml(
        &toml("name = \"{bus}:events\"\ndlq = \"{bus}:dlq\"\n", ""),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(
        names(&config),
        vec![("{bus}:events".to_string(), "{bus}:dlq".to_string())]
    );
    // A DLQ that cannot follow the partitions, and a partition count out of range.
    let err = Config::from_toml(
        &toml(
            "name = \"{bus}:events\"\ndlq = \"dead\"\n",
            "partitions = 2\n",
        ),
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("stream.dlq") && err.contains("{bus}"), "{err}");
    let err = Config::from_toml(&toml("", "partitions = 0\n"), Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("stream.partitions"), "{err}");
}

#[tokio::test]
async fn a_partitioned_stream_spreads_over_the_shards_and_every_tool_sees_all_of_it() {
    let cluster = RedisCluster::start(3, 0);
    let base = stream_name("parts");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 8\ntypes = [\"a\", \"b\"]\n";
    let toml = cluster_toml(&cluster, &base, &format!("{base}:dlq"), pools)
        .replace("[retry]", "partitions = 3\n[retry]");
    let cfg = config(&toml);
    let parts = cfg.stream.partition_list();
    assert_eq!(parts.len(), 3);
    let handler = Recorder::with(|d| {
        if d.event_type == "b" {
            Outcome::permanent("rejected on purpose")
        } else {
            Outcome::Success
        }
    });
    let running = run(Engine::new(cfg.clone()).with_handler("p", handler.clone()));
    let redis = cluster.client().await;
    for part in &parts {
        wait_for("the group on every partition", T, || async {
            redis.groups(&part.name).await.is_ok_and(|g| g.len() == 1)
        })
        .await;
    }
    // Published through the library: by id, and 20 with one key (they must keep order).
    let schemas = std::sync::Arc::new(weir::schema::Schemas::load(None).unwrap());
    let publisher = weir::publisher::Publisher::new(redis.clone(), &cfg, schemas);
    let event =
        |ty: &str, n: u64, id: Option<String>, key: Option<String>| weir::publisher::NewEvent {
            event_type: ty.into(),
            data: format!("{{\"n\":{n}}}"),
            id,
            fields: Default::default(),
            key,
        };
    for n in 0..120 {
        publisher
            .publish(&event("a", n, Some(format!("evt-{n}")), None))
            .await
            .unwrap()
            .unwrap();
    }
    for n in 120..140 {
        publisher
            .publish(&event("a", n, None, Some("order-42".into())))
            .await
            .unwrap()
            .unwrap();
    }
    for n in 140..146 {
        publisher
            .publish(&event("b", n, None, None))
            .await
            .unwrap()
            .unwrap();
    }
    // Spread: every partition got some, and they live on more than one node.
    let mut nodes = std::collections::HashSet::new();
    for part in &parts {
        assert!(
            redis.stream_len(&part.name).await.unwrap() > 0,
            "{} is empty",
            part.name
        );
        nodes.insert(cluster.node_for(&part.name).port());
    }
    assert!(nodes.len() > 1, "partitions on one node only");
    wait_for("all a handled, all b dead-lettered", T, || async {
        handler.count() == 146
    })
    .await;
    let seen = handler.seen();
    let mut ns: Vec<u64> = seen.iter().filter_map(|s| n_of(&s.data)).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..146).collect::<Vec<_>>(), "each handled once");
    // The keyed events share a partition, in publish order.
    let keyed: Vec<StreamIdOf> = seen
        .iter()
        .filter(|s| (120..140).contains(&n_of(&s.data).unwrap()))
        .map(|s| (s.entry_id, n_of(&s.data).unwrap()))
        .collect();
    let mut by_id = keyed.clone();
    by_id.sort();
    assert!(
        by_id.windows(2).all(|w| w[0].1 < w[1].1),
        "same key, same partition, publish order: {by_id:?}"
    );

    // The CLI across partitions.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(
        &path,
        toml.replace(
            "types = [\"a\", \"b\"]\n",
            "types = [\"a\", \"b\"]\nhandler = { kind = \"log\" }\n",
        ),
    )
    .unwrap();
    let weir = |args: &[&str]| weir_ok(&path, args);
    wait_for("every DLQ move done", T, || async {
        let mut total = 0;
        for part in &parts {
            total += redis.stream_len(&part.dlq).await.unwrap_or(0);
        }
        total == 6
    })
    .await;
    assert_eq!(weir(&["dlq", "list", "--json"]).lines().count(), 6);
    let stats: serde_json::Value =
        serde_json::from_str(&weir(&["dlq", "stats", "--json"])).unwrap();
    assert_eq!(stats["total"], 6);
    let status: serde_json::Value = serde_json::from_str(&weir(&["status", "--json"])).unwrap();
    assert_eq!(status["partitions"], 3);
    assert_eq!(status["streamLength"], 146);
    assert_eq!(status["dlqLength"], 6);
    let reprocessed: serde_json::Value =
        serde_json::from_str(&weir(&["dlq", "reprocess", "--all", "--json"])).unwrap();
    assert_eq!(reprocessed["reprocessed"], 6);
    wait_for("reprocessed entries rejected again", T, || async {
        handler.count() == 152
    })
    .await;
    let until = a_minute_from_now();
    let replay: serde_json::Value = serde_json::from_str(&weir(&[
        "replay", "--since", "0", "--until", &until, "--type", "a", "--json",
    ]))
    .unwrap();
    assert_eq!(replay["published"], 140);
    assert_eq!(replay["partitions"], 3);
    wait_for("the replayed entries handled", T, || async {
        handler.count() == 292
    })
    .await;
    running.stop().await;
}

type StreamIdOf = (weir::redis::StreamId, u64);

#[tokio::test]
async fn partitions_work_on_a_single_server_and_publish_keeps_a_keys_order() {
    let server = RedisServer::start();
    let base = stream_name("single-parts");
    let toml = format!(
        "shutdown_grace_seconds = 5\n[redis]\nurl = \"{}\"\n[stream]\nname = \"{base}\"\npartitions = 2\n\
         [janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [[pools]]\nname = \"p\"\nconcurrency = 4\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n",
        server.url(),
        0
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, &toml).unwrap();
    let publish = |n: u64, key: &str| {
        let data = format!("{{\"n\":{n}}}");
        let args = [
            "publish", "--type", "job", "--data", &data, "--key", key, "--json",
        ];
        let v: serde_json::Value = serde_json::from_str(&weir_ok(&path, &args)).unwrap();
        v["stream"].as_str().unwrap().to_string()
    };
    // One key always lands in one partition; two different keys can use both.
    let first = publish(0, "tenant-a");
    let streams: Vec<String> = (1..6).map(|n| publish(n, "tenant-a")).collect();
    assert!(
        streams.iter().all(|s| *s == first),
        "{first} vs {streams:?}"
    );
    let parts: Vec<String> = config(&toml)
        .stream
        .partition_list()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(parts, [format!("{{{base}:0}}"), format!("{{{base}:1}}")]);
    assert!(parts.contains(&first));
    let other = (0..20)
        .map(|i| publish(100 + i, &format!("tenant-{i}")))
        .find(|s| *s != first);
    assert!(
        other.is_some(),
        "20 keys all hashed to one of two partitions"
    );

    let handler = Recorder::ok();
    let running = run(Engine::new(config(&toml)).with_handler("p", handler.clone()));
    wait_for("every published entry handled", T, || async {
        handler.count() >= 7
    })
    .await;
    let redis = server.client().await;
    wait_for("nothing pending on either partition", T, || async {
        let mut pending = 0;
        for p in &parts {
            pending += group_pending(&redis, p, "p").await;
        }
        pending == 0
            && handler.per_entry().len() as u64
                == redis.stream_len(&parts[0]).await.unwrap()
                    + redis.stream_len(&parts[1]).await.unwrap()
    })
    .await;
    // The key's events sit in its partition in publish order (handling runs concurrently).
    let keyed: Vec<u64> = redis
        .range(&first, "-", "+", 1000)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| n_of(&field(e, "data")))
        .filter(|n| *n < 6)
        .collect();
    assert_eq!(
        keyed,
        [0, 1, 2, 3, 4, 5],
        "one key, one partition, in order"
    );
    running.stop().await;
}
