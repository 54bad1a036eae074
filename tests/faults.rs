//! Fault injection against real processes: every published entry must end up handled at
//! least once or in the DLQ (duplicates are counted, never losses).

use std::time::Duration;

use weir::{Engine, Outcome};

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
        free_port()
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
        redis.len(&dlq).await.unwrap_or(0) == 1 && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let entry = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(entry, "dlq_source_id"), id.to_string());
    assert_eq!(field(entry, "dlq_reason"), "invalid");
    assert_eq!(handler.count(), 0);
    running.stop().await;
}
