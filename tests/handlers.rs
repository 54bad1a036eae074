//! The built-in handlers end to end (a real webhook server, real child processes), panics, and
//! entries deleted behind weir's back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn toml(server: &RedisServer, stream: &str, http_port: u16, pools: &str) -> String {
    format!(
        r#"
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 3
retry_seconds = 0.1
visibility_timeout_seconds = 2
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:{http_port}"
{pools}
"#,
        url = server.url()
    )
}

type Requests = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook answering by the `x-weir-type` header: `ok` 200, `bad` 400, `busy` 503 with
/// Retry-After: 1 the first time then 200.
async fn webhook() -> (u16, Requests) {
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let ty = headers
                    .get("x-weir-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let busy_before = seen
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(h, _)| h.get("x-weir-type").is_some_and(|v| v == "busy"))
                    .count();
                seen.lock().unwrap().push((headers, body));
                match ty.as_str() {
                    "bad" => (StatusCode::BAD_REQUEST, "unknown customer 42").into_response(),
                    "busy" if busy_before == 0 => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "1")],
                        "later",
                    )
                        .into_response(),
                    _ => StatusCode::OK.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, requests)
}

#[tokio::test]
async fn http_handler_sends_headers_and_maps_statuses() {
    let server = RedisServer::start();
    let stream = stream_name("http");
    let (port, requests) = webhook().await;
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\nconcurrency = 2\ntypes = [\"ok\", \"bad\", \"busy\"]\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:{port}/hook\" }}\n"
    );
    let running = run(Engine::new(config(&toml(&server, &stream, 0, &pools))));
    let redis = server.client().await;
    let ok = redis
        .add(
            &stream,
            &[
                ("type", b"ok"),
                ("data", b"{\"a\":1}"),
                ("id", b"EV-1"),
                ("tenant", b"acme"),
            ],
        )
        .await
        .unwrap();
    publish(&redis, &stream, "bad", "{}").await;
    publish(&redis, &stream, "busy", "{}").await;
    let dlq = format!("{stream}:dlq");
    wait_for("busy retried and 400 dead-lettered", T, || async {
        requests.lock().unwrap().len() == 4
            && redis.stream_len(&dlq).await.unwrap() == 1
            && group_pending(&redis, &stream, "hooks").await == 0
    })
    .await;
    let all = requests.lock().unwrap().clone();
    let (headers, body) = all
        .iter()
        .find(|(h, _)| h.get("x-weir-type").unwrap() == "ok")
        .unwrap();
    assert_eq!(body, "{\"a\":1}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-weir-entry-id"], ok.to_string().as_str());
    assert_eq!(headers["x-weir-attempt"], "1");
    assert_eq!(headers["x-weir-pool"], "hooks");
    assert_eq!(headers["x-weir-event-id"], "EV-1");
    assert_eq!(headers["x-weir-field-tenant"], "acme");
    let busy: Vec<_> = all
        .iter()
        .filter(|(h, _)| h.get("x-weir-type").unwrap() == "busy")
        .collect();
    assert_eq!(busy.len(), 2);
    assert_eq!(busy[1].0["x-weir-attempt"], "2");
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(dead, "dlq_reason"), "rejected");
    assert!(
        field(dead, "dlq_error").contains("unknown customer 42"),
        "{}",
        field(dead, "dlq_error")
    );
    running.stop().await;
}

#[tokio::test]
async fn exec_handler_gets_stdin_and_env_and_exit_65_is_permanent() {
    let server = RedisServer::start();
    let stream = stream_name("exec");
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("seen");
    // Appends "type attempt pool data" per call; exits 65 for type `poison`.
    let script = format!(
        "read -r data; echo \"$WEIR_TYPE $WEIR_ATTEMPT $WEIR_POOL $WEIR_EVENT_ID $data\" >> {}; [ \"$WEIR_TYPE\" = poison ] && {{ echo 'cannot parse order' >&2; exit 65; }}; exit 0",
        log.display()
    );
    let pools = format!(
        "[[pools]]\nname = \"cmd\"\ntypes = [\"*\"]\nhandler = {{ kind = \"exec\", command = [\"sh\", \"-c\", {script:?}] }}\n"
    );
    let running = run(Engine::new(config(&toml(&server, &stream, 0, &pools))));
    let redis = server.client().await;
    redis
        .add(
            &stream,
            &[("type", b"good"), ("data", b"{\"x\":1}"), ("id", b"E7")],
        )
        .await
        .unwrap();
    publish(&redis, &stream, "poison", "{}").await;
    let dlq = format!("{stream}:dlq");
    wait_for("both handled", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 1
            && group_pending(&redis, &stream, "cmd").await == 0
    })
    .await;
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("good 1 cmd E7 {\"x\":1}"), "{seen}");
    assert_eq!(
        seen.lines().filter(|l| l.starts_with("poison")).count(),
        1,
        "exit 65 is not retried: {seen}"
    );
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(dead, "dlq_reason"), "rejected");
    assert!(field(dead, "dlq_error").contains("cannot parse order"));
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered_while_the_pool_keeps_serving() {
    let server = RedisServer::start();
    let stream = stream_name("panic");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 2\ntypes = [\"*\"]\n";
    let handler = Recorder::with(|d| {
        if d.event_type == "poison" {
            panic!("bad input {}", d.attempt);
        }
        Outcome::Success
    });
    let running =
        run(Engine::new(config(&toml(&server, &stream, 0, pools)))
            .with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish(&redis, &stream, "poison", "{}").await;
    for _ in 0..20 {
        publish(&redis, &stream, "fine", "{}").await;
    }
    let dlq = format!("{stream}:dlq");
    wait_for("poison dead-lettered", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 1
    })
    .await;
    assert_eq!(
        handler
            .seen()
            .iter()
            .filter(|s| s.event_type == "fine")
            .count(),
        20
    );
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(dead, "dlq_reason"), "max_attempts");
    assert_eq!(field(dead, "dlq_attempts"), "3");
    assert!(
        field(dead, "dlq_error").contains("handler panicked: bad input 3"),
        "{}",
        field(dead, "dlq_error")
    );
    running.stop().await;
}

#[tokio::test]
async fn pending_entries_deleted_by_hand_are_acknowledged_and_counted_as_lost() {
    let server = RedisServer::start();
    let stream = stream_name("lost");
    let pools = "[[pools]]\nname = \"lostpool\"\ntypes = [\"*\"]\nretry_seconds = 0.5\n";
    let handler = Recorder::with(|_| Outcome::retry("not yet"));
    let running = run(Engine::new(config(&toml(&server, &stream, 0, pools)))
        .with_handler("lostpool", handler.clone()));
    let redis = server.client().await;
    let id = publish(&redis, &stream, "job", "{}").await;
    wait_for("first attempt failed", T, || async { handler.count() == 1 }).await;
    assert_eq!(server.cli(&["XDEL", &stream, &id.to_string()]), "1");
    wait_for("the deleted entry left the PEL", T, || async {
        group_pending(&redis, &stream, "lostpool").await == 0
    })
    .await;
    let metrics = reqwest::get(running.url("/metrics").await)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weir_entries_lost_total{pool=\"lostpool\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        handler.count(),
        1,
        "a deleted entry is not handed to the handler again"
    );
    running.stop().await;
}
