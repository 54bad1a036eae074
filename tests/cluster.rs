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
listen = "127.0.0.1:{port}"
{pools}"#,
        url = cluster.url(),
        port = free_port(),
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
        ok.per_entry().len() == 20 && redis.len(&dlq).await.unwrap_or(0) == 3
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
    let weir = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let listed = weir(&["dlq", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8_lossy(&listed.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines.iter().all(|l| l.contains("\"group\":\"failing\"")),
        "{text}"
    );
    let status = weir(&["status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string();
    let replay = weir(&[
        "replay", "--since", "0", "--until", &until, "--type", "a", "--json",
    ]);
    assert!(replay.status.success(), "{replay:?}");
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
    let master = cluster.node_for(&stream).port;
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
        cluster.is_ok() && cluster.node_for(&stream).port != killed
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
    // The same file but its own HTTP port, as a second process would have.
    let port = toml
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let other = toml.replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let second = run(Engine::new(config(&other)).with_handler("p", b.clone()));
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
