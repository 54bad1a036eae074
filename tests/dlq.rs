//! `weir dlq …` against a real redis-server, with and without a running engine.

use std::process::Output;
use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

/// Runs the CLI without blocking the test's runtime, so an in-process engine keeps consuming.
async fn weir_cli(config: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_config(dir: &std::path::Path, server: &RedisServer, stream: &str) -> std::path::PathBuf {
    let path = dir.join("streams.toml");
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[retry]\nvisibility_timeout_seconds = 2\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{}\"\n[[pools]]\nname = \"p\"\nconcurrency = 8\ntypes = [\"job\", \"a\", \"b\"]\nhandler = {{ kind = \"log\" }}\n[[pools]]\nname = \"q\"\ntypes = [\"job\"]\nhandler = {{ kind = \"log\" }}\n",
        server.url(),
        "0"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A dead letter as settle writes it.
fn dead_letter(ty: &str, reason: &str, error: &str, source: &str) -> Vec<(String, String)> {
    [
        ("type", ty),
        ("data", "{}"),
        ("dlq_source_id", source),
        ("dlq_group", "p"),
        ("dlq_reason", reason),
        ("dlq_error", error),
        ("dlq_attempts", "1"),
        ("dlq_failed_at", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn list_show_stats_forget_and_purge() {
    let server = RedisServer::start();
    let stream = stream_name("dlqtools");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, &stream);
    let dlq = format!("{stream}:dlq");
    let redis = server.client().await;
    let entries = vec![
        dead_letter("a", "invalid", "at /payload: missing", "1-1"),
        dead_letter("a", "max_attempts", "HTTP 503 upstream down", "1-2"),
        dead_letter("b", "invalid", "at /id: required", "1-3"),
        dead_letter("b", "rejected", "HTTP 422 no such customer", "1-4"),
        dead_letter("a", "rejected", "HTTP 422 no such customer", "1-5"),
    ];
    let ids = redis.add_many(&dlq, &entries).await.unwrap();

    let out = weir_cli(&config, &["dlq", "list", "--type", "a", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["type"] == "a"));
    assert_eq!(lines[0]["sourceId"], "1-1");
    let count = |out: Output| stdout(&out).lines().count();
    assert_eq!(
        count(weir_cli(&config, &["dlq", "list", "--reason", "rejected", "--json"]).await),
        2
    );
    assert_eq!(
        count(
            weir_cli(
                &config,
                &["dlq", "list", "--grep", "no such customer", "--json"]
            )
            .await
        ),
        2
    );
    assert_eq!(
        count(weir_cli(&config, &["dlq", "list", "--limit", "2", "--json"]).await),
        2
    );
    assert_eq!(
        count(
            weir_cli(
                &config,
                &["dlq", "list", "--since", &ids[3].to_string(), "--json"]
            )
            .await
        ),
        2
    );
    assert_eq!(
        count(
            weir_cli(
                &config,
                &["dlq", "list", "--until", &ids[0].to_string(), "--json"]
            )
            .await
        ),
        1
    );
    assert_eq!(
        weir_cli(&config, &["dlq", "list", "--reason", "bogus"])
            .await
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        weir_cli(
            &config,
            &["dlq", "list", "--since", "-1h", "--until", "-2h"]
        )
        .await
        .status
        .code(),
        Some(2)
    );
    let human = stdout(&weir_cli(&config, &["dlq", "list"]).await);
    assert!(
        human.contains("DLQ ID") && human.contains("HTTP 503 upstream down"),
        "{human}"
    );

    let show: serde_json::Value = serde_json::from_str(&stdout(
        &weir_cli(&config, &["dlq", "show", &ids[1].to_string(), "--json"]).await,
    ))
    .unwrap();
    assert_eq!(show["reason"], "max_attempts");
    assert_eq!(show["fields"]["dlq_error"], "HTTP 503 upstream down");
    assert_eq!(
        weir_cli(&config, &["dlq", "show", "9-9"])
            .await
            .status
            .code(),
        Some(1)
    );

    let stats: serde_json::Value = serde_json::from_str(&stdout(
        &weir_cli(&config, &["dlq", "stats", "--json"]).await,
    ))
    .unwrap();
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["by_type"]["a"], 3);
    assert_eq!(stats["by_reason"]["invalid"], 2);

    assert_eq!(
        weir_cli(&config, &["dlq", "forget", &ids[0].to_string()])
            .await
            .status
            .code(),
        Some(0)
    );
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 4);
    let refused = weir_cli(&config, &["dlq", "purge", "--type", "b"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        redis.stream_len(&dlq).await.unwrap(),
        4,
        "purge without --yes deleted something"
    );
    assert_eq!(
        weir_cli(&config, &["dlq", "purge", "--type", "b", "--yes"])
            .await
            .status
            .code(),
        Some(0)
    );
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 2);
    assert_eq!(
        weir_cli(&config, &["dlq", "purge", "--yes"])
            .await
            .status
            .code(),
        Some(0)
    );
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 0);
}

#[tokio::test]
async fn reprocess_sends_entries_back_to_the_pool_that_failed_them_only() {
    let server = RedisServer::start();
    let stream = stream_name("reprocess");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server, &stream);
    // p rejects first-time entries and accepts reprocessed ones; q accepts everything.
    let p = Recorder::with(|d| {
        if d.fields.iter().any(|(k, _)| k == "replay_of") {
            Outcome::Success
        } else {
            Outcome::permanent("fix me")
        }
    });
    let q = Recorder::ok();
    let config = weir::Config::load(&path).unwrap();
    let running = run(Engine::new(config)
        .with_handler("p", p.clone())
        .with_handler("q", q.clone()));
    let redis = server.client().await;
    let mut originals = Vec::new();
    for i in 0..5 {
        originals.push(
            publish(&redis, &stream, "job", &format!("{{\"i\":{i}}}"))
                .await
                .to_string(),
        );
    }
    let dlq = format!("{stream}:dlq");
    wait_for("5 dead letters", Duration::from_secs(15), || async {
        redis.stream_len(&dlq).await.unwrap() == 5
    })
    .await;
    wait_for("q handled all 5", Duration::from_secs(15), || async {
        q.count() == 5
    })
    .await;

    let dry: serde_json::Value = serde_json::from_str(&stdout(
        &weir_cli(&path, &["dlq", "reprocess", "--all", "--dry-run", "--json"]).await,
    ))
    .unwrap();
    assert_eq!(
        (dry["matched"].as_u64(), dry["byType"]["job"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(
        redis.stream_len(&dlq).await.unwrap(),
        5,
        "a dry run moved entries"
    );
    assert_eq!(
        weir_cli(&path, &["dlq", "reprocess"]).await.status.code(),
        Some(2)
    );

    let out = weir_cli(&path, &["dlq", "reprocess", "--type", "job", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["reprocessed"], 5);
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 0);
    wait_for(
        "p handled the reprocessed entries",
        Duration::from_secs(15),
        || async {
            p.seen()
                .iter()
                .filter(|s| s.attempt == 1 && s.fields.iter().any(|(k, _)| k == "replay_of"))
                .count()
                == 5
        },
    )
    .await;
    let mut replay_of: Vec<String> = p
        .seen()
        .iter()
        .flat_map(|s| {
            s.fields
                .iter()
                .filter(|(k, _)| k == "replay_of")
                .map(|(_, v)| v.clone())
        })
        .collect();
    replay_of.sort();
    assert_eq!(replay_of, originals);
    let replayed = p
        .seen()
        .into_iter()
        .find(|s| s.fields.iter().any(|(k, _)| k == "replay_of"))
        .unwrap();
    assert!(
        replayed
            .fields
            .contains(&("replay_group".into(), "p".into()))
    );
    assert!(
        !replayed.fields.iter().any(|(k, _)| k.starts_with("dlq_")),
        "dlq_* fields were re-published"
    );
    // q has read and settled everything on the stream: its count is final.
    wait_for("q caught up", Duration::from_secs(15), || {
        caught_up(&server, &redis, &stream, "q")
    })
    .await;
    assert_eq!(q.count(), 5, "q handled entries meant only for p");
    running.stop().await;
}

#[tokio::test]
async fn reprocessing_10k_while_the_engine_consumes_loses_and_doubles_nothing() {
    let server = RedisServer::start();
    let stream = stream_name("reprocess10k");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &server, &stream);
    let redis = server.client().await;
    let dlq = format!("{stream}:dlq");
    let letters: Vec<Vec<(String, String)>> = (0..10_000)
        .map(|i| dead_letter("job", "rejected", "x", &format!("1-{i}")))
        .collect();
    for chunk in letters.chunks(1000) {
        redis.add_many(&dlq, chunk).await.unwrap();
    }
    let p = Recorder::ok();
    let running = run(Engine::new(weir::Config::load(&path).unwrap())
        .with_handler("p", p.clone())
        .with_handler("q", Recorder::ok()));
    // Keep the engine busy with fresh traffic meanwhile.
    for _ in 0..200 {
        publish(&redis, &stream, "job", "{}").await;
    }
    let out = weir_cli(&path, &["dlq", "reprocess", "--all", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["reprocessed"], 10_000);
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 0);
    wait_for(
        "all 10k reprocessed entries handled",
        Duration::from_secs(60),
        || async { p.count() >= 10_200 },
    )
    .await;
    // p has read and settled everything on the stream: a doubled entry would be counted now.
    wait_for("p caught up", Duration::from_secs(60), || {
        caught_up(&server, &redis, &stream, "p")
    })
    .await;
    let mut sources: Vec<String> = p
        .seen()
        .iter()
        .flat_map(|s| {
            s.fields
                .iter()
                .filter(|(k, _)| k == "replay_of")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(sources.len(), 10_000, "lost or doubled");
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 10_000, "a dead letter was reprocessed twice");
    running.stop().await;
}
