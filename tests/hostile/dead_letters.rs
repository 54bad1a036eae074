//! Broken dead letters: a wide entry whose DLQ copy fails must stay pending (item 5), and the
//! consumer GC must never delete a consumer that owns entries (item 7).

use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// More fields than one script can pass to XADD (Lua's unpack stops near 8,000 values).
const WIDE: usize = 4_000;

/// Item 5: a wide entry goes through MULTI/EXEC. With the DLQ key of the wrong type, its
/// XADD fails at run time; the entry must not be acknowledged without its copy. It stays
/// pending, is delivered again, and reaches the DLQ whole once the key is fixed.
#[tokio::test]
async fn a_wide_entry_is_never_acknowledged_without_its_dlq_copy() {
    let server = RedisServer::start();
    let stream = stream_name("wide-dlq");
    let dlq = format!("{stream}:dlq");
    let text = format!(
        r#"
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 50
retry_seconds = 0.05
visibility_timeout_seconds = 1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
[[pools]]
name = "p"
types = ["job"]
"#,
        url = server.url()
    );
    let handler = Recorder::with(|_| Outcome::Permanent {
        error: "no such customer".into(),
    });
    server.cli(&["SET", &dlq, "not a stream"]);
    let redis = server.client().await;
    let names: Vec<String> = (0..WIDE).map(|i| format!("f{i}")).collect();
    let mut fields: Vec<(&str, &[u8])> = vec![("type", b"job"), ("data", b"{}")];
    fields.extend(names.iter().map(|n| (n.as_str(), n.as_bytes())));
    let id = redis.add(&stream, &fields).await.unwrap();

    let engine = run(Engine::new(config(&text)).with_handler("p", handler.clone()));
    // A second delivery proves the first failed move left the entry pending: acknowledged
    // without its copy, it would never come back.
    wait_for("the entry delivered a second time", T, || async {
        handler.per_entry().get(&id).copied().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(group_pending(&redis, &stream, "p").await, 1);
    assert_eq!(server.cli(&["TYPE", &dlq]).trim(), "string");

    server.cli(&["DEL", &dlq]);
    wait_for("the wide entry in the DLQ and acknowledged", T, || async {
        server.cli(&["XLEN", &dlq]).trim() == "1" && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let letter = redis.range(&dlq, "-", "+", 1).await.unwrap();
    assert_eq!(field(&letter[0], "dlq_source_id"), id.to_string());
    assert_eq!(field(&letter[0], "dlq_reason"), "rejected");
    assert_eq!(
        field(&letter[0], &format!("f{}", WIDE - 1)),
        format!("f{}", WIDE - 1)
    );
    engine.stop().await;
}

/// Item 7: the consumer GC checks "owns nothing, idle long enough" in the same script that
/// deletes, so a consumer that read after the janitor's XINFO is kept (XGROUP DELCONSUMER
/// would drop its pending entries from the PEL: lost without a trace).
#[tokio::test]
async fn the_consumer_gc_never_deletes_a_consumer_that_owns_entries() {
    let server = RedisServer::start();
    let stream = stream_name("gc-race");
    let redis = server.client().await;
    publish(&redis, &stream, "job", "{}").await;
    server.cli(&["XGROUP", "CREATE", &stream, "p", "0"]);
    server.cli(&["XGROUP", "CREATECONSUMER", &stream, "p", "idle"]);
    // Seen by XINFO as owning nothing; then it reads (a paused pool resuming).
    let before = redis.consumers(&stream, "p").await.unwrap();
    assert_eq!(before[0].pending, 0);
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "p",
        "idle",
        "COUNT",
        "1",
        "STREAMS",
        &stream,
        ">",
    ]);
    let deleted = redis
        .delete_idle_consumer(&stream, "p", "idle", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, None, "a consumer that owns an entry was deleted");
    assert_eq!(group_pending(&redis, &stream, "p").await, 1);

    server.cli(&["XACK", &stream, "p", &before_id(&server, &stream)]);
    let too_soon = redis
        .delete_idle_consumer(&stream, "p", "idle", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        too_soon, None,
        "a consumer idle for less than asked was deleted"
    );
    let deleted = redis
        .delete_idle_consumer(&stream, "p", "idle", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(deleted, Some(0));
    assert!(redis.consumers(&stream, "p").await.unwrap().is_empty());
}

/// The ID of the stream's only entry.
fn before_id(server: &RedisServer, stream: &str) -> String {
    server
        .cli(&["XRANGE", stream, "-", "+"])
        .lines()
        .next()
        .unwrap()
        .to_string()
}
