//! Contract §15's trace context end to end: the entry's `traceparent` handed to webhooks,
//! commands and Rust handlers, one exported span per delivery attempt received by a real
//! OTLP/HTTP receiver started here (the protobuf decoded with opentelemetry-proto), a
//! collector that is not there, and the publishing side (CLI, NDJSON, replay, reprocess).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use weir::{Delivery, Engine, Handler, Outcome, TraceContext};

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn toml(server: &RedisServer, stream: &str, tracing: &str, pools: &str) -> String {
    format!(
        r#"
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 2
retry_seconds = 0.05
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
{tracing}
{pools}
"#,
        url = server.url()
    )
}

/// XADDs an entry of text fields.
async fn add(redis: &weir::redis::Redis, stream: &str, fields: &[(&str, &str)]) -> weir::StreamId {
    let fields: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    redis.add(stream, &fields).await.unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Requests = Arc<Mutex<Vec<HeaderMap>>>;

/// A webhook that records the headers of each request: type `bad` gets 400 (rejected, so
/// dead-lettered at once), anything else 200.
async fn webhook() -> (u16, Requests) {
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let bad = headers.get("x-weir-type").is_some_and(|t| t == "bad");
                seen.lock().unwrap().push(headers);
                match bad {
                    true => (StatusCode::BAD_REQUEST, "no such customer").into_response(),
                    false => StatusCode::OK.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, requests)
}

type Spans = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver: POST /v1/traces, protobuf decoded; records each span with its
/// resource's `service.name`.
async fn collector() -> (u16, Spans) {
    let spans: Spans = Arc::default();
    let seen = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            Value::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            seen.lock().unwrap().push((service.clone(), span));
                        }
                    }
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, spans)
}

fn attribute(span: &Span, key: &str) -> String {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone());
    match value {
        Some(Value::StringValue(s)) => s,
        Some(Value::IntValue(i)) => i.to_string(),
        other => panic!("attribute {key}: {other:?} in {span:?}"),
    }
}

#[tokio::test]
async fn export_off_hands_the_entrys_own_context_to_webhooks_and_commands() {
    let server = RedisServer::start();
    let stream = stream_name("trace-off");
    let (port, requests) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let script = format!(
        "cat >/dev/null; echo \"$TRACEPARENT|$TRACESTATE\" >> {}",
        out.display()
    );
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\ntypes = [\"ok\"]\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:{port}/hook\" }}\n\
         [[pools]]\nname = \"cmd\"\ntypes = [\"ok\"]\nhandler = {{ kind = \"exec\", command = [\"sh\", \"-c\", {script:?}] }}\n"
    );
    let running = run(Engine::new(config(&toml(&server, &stream, "", &pools))));
    let redis = server.client().await;
    let with = [
        ("type", "ok"),
        ("data", "{}"),
        ("traceparent", PARENT),
        ("tracestate", "congo=t61rcWkgMzE"),
    ];
    add(&redis, &stream, &with).await;
    let invalid = [
        ("type", "ok"),
        ("data", "{}"),
        ("traceparent", "00-zzzz-01"),
    ];
    add(&redis, &stream, &invalid).await;
    publish(&redis, &stream, "ok", "{}").await;
    wait_for("3 webhook calls and 3 commands", T, || async {
        let lines = std::fs::read_to_string(&out).unwrap_or_default();
        requests.lock().unwrap().len() == 3 && lines.lines().count() == 3
    })
    .await;
    let requests = requests.lock().unwrap().clone();
    let traced: Vec<_> = requests
        .iter()
        .filter_map(|h| h.get("traceparent"))
        .collect();
    assert_eq!(traced, [PARENT], "only the valid traceparent, unchanged");
    let with_state = requests
        .iter()
        .find(|h| h.contains_key("traceparent"))
        .unwrap();
    assert_eq!(with_state["tracestate"], "congo=t61rcWkgMzE");
    let mut lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [&format!("{PARENT}|congo=t61rcWkgMzE"), "|", "|"],
        "TRACEPARENT/TRACESTATE set only for the valid context"
    );
    running.stop().await;
}

/// A Rust handler recording the trace context it was given.
#[derive(Clone, Default)]
struct Contexts(Arc<Mutex<Vec<Option<TraceContext>>>>);

#[async_trait::async_trait]
impl Handler for Contexts {
    async fn handle(&self, d: &Delivery) -> Outcome {
        self.0.lock().unwrap().push(d.trace_context.clone());
        Outcome::Success
    }
}

#[tokio::test]
async fn each_delivery_is_an_exported_consumer_span_whose_context_the_handler_gets() {
    let server = RedisServer::start();
    let stream = stream_name("trace-export");
    let (hook_port, requests) = webhook().await;
    let (otlp_port, spans) = collector().await;
    let tracing = format!(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:{otlp_port}\"\nservice_name = \"bus-test\"\n"
    );
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\ntypes = [\"ok\", \"bad\"]\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:{hook_port}/hook\" }}\n\
         [[pools]]\nname = \"rust\"\ntypes = [\"ok\"]\n"
    );
    let contexts = Contexts::default();
    let engine = Engine::new(config(&toml(&server, &stream, &tracing, &pools)))
        .with_handler("rust", contexts.clone());
    let running = run(engine);
    let redis = server.client().await;
    let with = [
        ("type", "ok"),
        ("data", "{}"),
        ("traceparent", PARENT),
        ("tracestate", "congo=t61rcWkgMzE"),
    ];
    let traced = add(&redis, &stream, &with).await;
    let bad = [("type", "bad"), ("data", "{}"), ("traceparent", PARENT)];
    let bad = add(&redis, &stream, &bad).await;
    let root = publish(&redis, &stream, "ok", "{}").await;
    // hooks: the traced, the bad and the root entry; rust: the traced and the root one.
    wait_for("5 spans exported", T, || async {
        spans.lock().unwrap().len() == 5
    })
    .await;
    let spans = spans.lock().unwrap().clone();
    let find = |pool: &str, id: weir::StreamId| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| {
                attribute(s, "messaging.consumer.group.name") == pool
                    && attribute(s, "messaging.message.id") == id.to_string()
            })
            .unwrap_or_else(|| panic!("no span of {pool} for {id} in {spans:?}"))
            .clone()
    };
    assert!(spans.iter().all(|(service, _)| service == "bus-test"));

    let span = find("hooks", traced);
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_SPAN);
    assert_ne!(hex(&span.span_id), PARENT_SPAN);
    assert_eq!(span.name, "hooks process");
    assert_eq!(span.kind, 5, "SPAN_KIND_CONSUMER");
    assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(attribute(&span, "messaging.system"), "redis");
    assert_eq!(attribute(&span, "messaging.destination.name"), stream);
    assert_eq!(attribute(&span, "messaging.operation.type"), "process");
    assert_eq!(attribute(&span, "weir.attempt"), "1");
    assert_eq!(attribute(&span, "weir.outcome"), "processed");
    assert!(span.status.as_ref().is_none_or(|s| s.code == 0));
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert!(span.start_time_unix_nano > 0);

    // The webhook's traceparent names the exported span.
    let requests = requests.lock().unwrap().clone();
    let header = |id: weir::StreamId| {
        requests
            .iter()
            .find(|h| h["x-weir-entry-id"] == id.to_string().as_str())
            .map(|h| h["traceparent"].to_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        header(traced),
        format!("00-{TRACE_ID}-{}-01", hex(&span.span_id))
    );

    // A rejected delivery: error status with the webhook's answer, a dead_lettered event.
    let failed = find("hooks", bad);
    assert_eq!(hex(&failed.trace_id), TRACE_ID);
    assert_eq!(attribute(&failed, "weir.outcome"), "rejected");
    let status = failed.status.clone().expect("an error status");
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert!(status.message.contains("no such customer"), "{status:?}");
    let event = failed
        .events
        .iter()
        .find(|e| e.name == "dead_lettered")
        .expect("a dead_lettered event");
    assert_eq!(
        event.attributes[0].value.clone().and_then(|v| v.value),
        Some(Value::StringValue("rejected".into()))
    );

    // No traceparent: a new root, and the Rust handler gets its context.
    let rooted = find("rust", root);
    assert!(rooted.parent_span_id.is_empty());
    let given: Vec<TraceContext> = contexts
        .0
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(
        given.len(),
        2,
        "both deliveries of the rust pool have a context"
    );
    assert!(
        given
            .iter()
            .any(|c| c.span_id.as_slice() == rooted.span_id.as_slice()
                && c.trace_id.as_slice() == rooted.trace_id.as_slice())
    );
    let child = find("rust", traced);
    assert!(given.iter().any(|c| c.traceparent()
        == format!("00-{TRACE_ID}-{}-01", hex(&child.span_id))
        && c.tracestate.as_deref() == Some("congo=t61rcWkgMzE")));
    running.stop().await;
}

/// Counts entries; answers at once.
#[derive(Clone, Default)]
struct Count(Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl Handler for Count {
    async fn handle(&self, _: &Delivery) -> Outcome {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Outcome::Success
    }
}

/// Handles `n` traced entries with `tracing`; how long it took and the engine's metrics.
async fn handle_traced(server: &RedisServer, n: usize, tracing: &str) -> (Duration, String) {
    let stream = stream_name("trace-load");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 8\ntypes = [\"job\"]\n";
    let count = Count::default();
    let engine = Engine::new(config(&toml(server, &stream, tracing, pools)))
        .with_handler("p", count.clone());
    let redis = server.client().await;
    let entries: Vec<Vec<(String, String)>> = (0..n)
        .map(|i| {
            vec![
                ("type".to_string(), "job".to_string()),
                ("data".to_string(), format!("{{\"n\":{i}}}")),
                ("traceparent".to_string(), PARENT.to_string()),
            ]
        })
        .collect();
    for chunk in entries.chunks(1000) {
        redis.add_many(&stream, chunk).await.unwrap();
    }
    let started = Instant::now();
    let running = run(engine);
    wait_for("every entry handled", Duration::from_secs(60), || async {
        count.0.load(std::sync::atomic::Ordering::Relaxed) >= n
            && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let took = started.elapsed();
    let url = running.url("/metrics").await;
    let mut metrics = get_text(url.as_str()).await;
    let deadline = Instant::now() + T;
    while !tracing.is_empty() && dropped(&metrics) == 0.0 {
        assert!(
            Instant::now() < deadline,
            "no span counted as dropped:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = get_text(url.as_str()).await;
    }
    running.stop().await;
    (took, metrics)
}

/// `weir_trace_spans_dropped_total` in a scrape (0 when absent).
fn dropped(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with("weir_trace_spans_dropped_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn an_unreachable_collector_drops_spans_and_never_slows_handling() {
    let server = RedisServer::start();
    // A port nothing listens on: every post is refused.
    let closed = free_port();
    let tracing = format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{closed}\"\n");
    let (off, _) = handle_traced(&server, 5_000, "").await;
    let (on, metrics) = handle_traced(&server, 5_000, &tracing).await;
    assert!(dropped(&metrics) > 0.0, "{metrics}");
    // Noise on a shared machine is large; a handler waiting on the collector would take
    // seconds per batch.
    assert!(
        on < off * 3 + Duration::from_secs(2),
        "5,000 entries took {on:?} with an unreachable collector, {off:?} without export"
    );
}

/// `weir …` with `config`; its exit code, stdout and stderr.
async fn weir_cli(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn publish_writes_the_callers_context_and_copies_keep_it() {
    let server = RedisServer::start();
    let stream = stream_name("trace-publish");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    let pools = "[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = { kind = \"log\" }\n";
    std::fs::write(&path, toml(&server, &stream, "", pools)).unwrap();
    let redis = server.client().await;

    let (code, _, stderr) = weir_cli(
        &path,
        &[
            "publish",
            "--type",
            "a",
            "--data",
            "{}",
            "--traceparent",
            PARENT,
            "--tracestate",
            "k=v",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = weir_cli(
        &path,
        &[
            "publish",
            "--type",
            "a",
            "--data",
            "{}",
            "--traceparent",
            "00-bad-01",
        ],
    )
    .await;
    assert_eq!(code, Some(2), "an invalid --traceparent is a usage error");
    assert!(stderr.contains("--traceparent"), "{stderr}");
    let ndjson = dir.path().join("events.ndjson");
    std::fs::write(
        &ndjson,
        format!("{{\"type\":\"b\",\"data\":{{}},\"traceparent\":\"{PARENT}\"}}\n"),
    )
    .unwrap();
    let (code, _, stderr) =
        weir_cli(&path, &["publish", "--ndjson", ndjson.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let written = redis.range(&stream, "-", "+", 10).await.unwrap();
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|e| field(e, "traceparent") == PARENT));
    assert_eq!(field(&written[0], "tracestate"), "k=v");

    // The library: the caller's context as fields.
    let context = TraceContext::parse(PARENT, None).unwrap();
    let event = weir::NewEvent {
        event_type: "c".into(),
        data: "{}".into(),
        id: None,
        fields: Default::default(),
        key: None,
    }
    .with_trace_context(&context);
    assert_eq!(event.field("traceparent"), Some(PARENT));

    // A replayed copy keeps the original's traceparent.
    let (code, _, stderr) = weir_cli(&path, &["replay", "--since", "0", "--until", "-0s"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let copies: Vec<_> = redis
        .range(&stream, "-", "+", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !field(e, "replay_of").is_empty())
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|e| field(e, "traceparent") == PARENT));

    // A reprocessed dead letter keeps it too.
    let dlq = format!("{stream}:dlq");
    let letter = [
        ("type", "a"),
        ("data", "{}"),
        ("traceparent", PARENT),
        ("dlq_source_id", "1-1"),
        ("dlq_group", "p"),
        ("dlq_reason", "rejected"),
        ("dlq_error", "no"),
        ("dlq_attempts", "1"),
        ("dlq_failed_at", "1"),
    ];
    add(&redis, &dlq, &letter).await;
    let (code, _, stderr) = weir_cli(&path, &["dlq", "reprocess", "--all"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let back: Vec<_> = redis
        .range(&stream, "-", "+", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| field(e, "replay_of") == "1-1")
        .collect();
    assert_eq!(back.len(), 1);
    assert_eq!(field(&back[0], "traceparent"), PARENT);
}

#[tokio::test]
async fn the_span_of_a_handler_that_ends_during_shutdown_is_still_exported() {
    let server = RedisServer::start();
    let stream = stream_name("trace-drain");
    let (otlp_port, spans) = collector().await;
    let tracing = format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{otlp_port}\"\n");
    let pools = "[[pools]]\nname = \"slow\"\ntypes = [\"job\"]\n";
    let slow = Recorder::ok().slow(Duration::from_millis(500));
    let engine = Engine::new(config(&toml(&server, &stream, &tracing, pools)))
        .with_handler("slow", slow.clone());
    let running = run(engine);
    let redis = server.client().await;
    let id = add(
        &redis,
        &stream,
        &[("type", "job"), ("data", "{}"), ("traceparent", PARENT)],
    )
    .await;
    wait_for("the handler started", T, || async { slow.count() == 1 }).await;
    running.stop().await;
    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "the drained delivery's span: {spans:?}");
    assert_eq!(
        attribute(&spans[0].1, "messaging.message.id"),
        id.to_string()
    );
}
