//! The admin HTTP API (`/api/v1`) against a real engine and redis-server: every endpoint's
//! happy path, the error statuses, tokens, replay jobs across a shutdown, OpenAPI, TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const ADMIN: &str = "adm-5ecret-token-XYZ";
const READ: &str = "rd-5ecret-token-QRS";

fn toml(server: &RedisServer, stream: &str, port: u16, http: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 5
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 1
retry_seconds = 0.1
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:{port}"
{http}
[[pools]]
name = "p"
concurrency = 4
types = ["t.ok", "t.bad"]
handler = {{ kind = "noop" }}
[[pools]]
name = "q"
types = ["t.q", "t.r", "t.x"]
handler = {{ kind = "noop" }}
"#,
        url = server.url(),
    )
}

fn tokens() -> String {
    format!("admin_token = \"{ADMIN}\"\nread_token = \"{READ}\"\n")
}

/// Fails `t.bad` for good (straight to the DLQ), succeeds otherwise.
fn engine(config: weir::Config) -> Engine {
    let handler = Recorder::with(|d| {
        if d.event_type == "t.bad" {
            Outcome::permanent("bad on purpose")
        } else {
            Outcome::Success
        }
    });
    Engine::new(config)
        .with_handler("p", handler)
        .with_handler("q", Recorder::ok())
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    async fn up(&self) {
        let url = format!("{}/healthz", self.base);
        wait_for("the engine's HTTP listener", T, || async {
            reqwest::get(&url).await.is_ok()
        })
        .await;
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(ADMIN), None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(ADMIN), Some(body.to_string()))
            .await
    }
}

/// A running engine with the API on, `n_bad` dead letters and `n_ok` handled entries.
async fn setup(
    server: &RedisServer,
    name: &str,
    n_ok: usize,
    n_bad: usize,
) -> (String, Api, Running) {
    let stream = stream_name(name);
    let port = free_port();
    let config = config(&toml(server, &stream, port, &tokens()));
    let running = run(engine(config));
    let api = Api::new(port);
    api.up().await;
    let redis = server.client().await;
    for i in 0..n_ok {
        publish(&redis, &stream, "t.ok", &format!("{{\"n\":{i}}}")).await;
    }
    for i in 0..n_bad {
        publish(&redis, &stream, "t.bad", &format!("{{\"n\":{i}}}")).await;
    }
    let dlq = format!("{stream}:dlq");
    wait_for("dead letters", T, || async {
        redis.stream_len(&dlq).await.unwrap() == n_bad as u64
            && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    (stream, api, running)
}

/// `value` against the schema the OpenAPI document gives for `path` `method` `status`.
fn validate(doc: &Value, path: &str, method: &str, status: u16, value: &Value) {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        !schema.is_null(),
        "no schema for {method} {path} {status} in the OpenAPI document"
    );
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its schema: {errors:?}\n{value:#}"
    );
}

#[tokio::test]
async fn without_a_token_the_api_is_off() {
    let server = RedisServer::start();
    let stream = stream_name("api-off");
    let port = free_port();
    let running = run(engine(config(&toml(&server, &stream, port, ""))));
    let api = Api::new(port);
    api.up().await;
    let (status, _) = api.call("GET", "/api/v1/status", Some(ADMIN), None).await;
    assert_eq!(status, 404);
    let (status, _) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 404);
    running.stop().await;
}

#[tokio::test]
async fn read_endpoints_answer_page_and_match_the_openapi_document() {
    let server = RedisServer::start();
    let (stream, api, running) = setup(&server, "api-read", 5, 3).await;
    let (status, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes = [
        ("/status", "get"),
        ("/events", "get"),
        ("/dlq", "get"),
        ("/dlq/stats", "get"),
        ("/dlq/{id}", "get"),
        ("/dlq/{id}", "delete"),
        ("/dlq/reprocess", "post"),
        ("/dlq/purge", "post"),
        ("/replay", "post"),
        ("/replay/{job}", "get"),
        ("/replay/{job}", "delete"),
        ("/replay/{job}/resume", "post"),
        ("/stats/history", "get"),
        ("/telemetry", "get"),
        ("/pools/{name}/pause", "post"),
        ("/pools/{name}/resume", "post"),
        ("/scheduled", "get"),
        ("/scheduled", "post"),
        ("/scheduled/{id}", "delete"),
        ("/schedules", "get"),
        ("/schedules/{schedule}/pause", "post"),
        ("/schedules/{schedule}/resume", "post"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, routes.len(), "a route the test does not know");

    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stream"], stream);
    assert_eq!(body["dlqLength"], 3);
    validate(&doc, "/status", "get", 200, &body);

    // Telemetry: the monitor hash the engine keeps (no telemetry key here: no values).
    let (status, body) = api.get("/api/v1/telemetry").await;
    assert_eq!(status, 200, "{body}");
    validate(&doc, "/telemetry", "get", 200, &body);
    assert_eq!(body["values"], serde_json::json!({}));
    let (status, body) = api.get("/api/v1/telemetry?limit=0").await;
    assert_eq!(status, 400, "{body}");

    // Events: newest first, paged with the cursor, filtered by type.
    let (status, page1) = api.get("/api/v1/events?limit=5").await;
    assert_eq!(status, 200, "{page1}");
    validate(&doc, "/events", "get", 200, &page1);
    let entries = page1["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["type"], "t.bad");
    let cursor = page1["next"].as_str().unwrap();
    let (_, page2) = api
        .get(&format!("/api/v1/events?limit=5&cursor={cursor}"))
        .await;
    assert_eq!(page2["entries"].as_array().unwrap().len(), 3);
    assert!(page2["next"].is_null());
    let ids: Vec<&str> = entries
        .iter()
        .chain(page2["entries"].as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| std::cmp::Reverse(weir::redis::StreamId::parse(id).unwrap()));
    assert_eq!(ids, sorted, "newest first, no repeats");
    let (_, oks) = api
        .get("/api/v1/events?type=t.ok&since=-1h&until=-0s")
        .await;
    assert_eq!(oks["entries"].as_array().unwrap().len(), 5);
    assert_eq!(oks["entries"][0]["fields"]["type"], "t.ok");

    // DLQ: paged the same way, filters as the CLI's.
    let (status, d1) = api.get("/api/v1/dlq?limit=2&type=t.bad&pool=p").await;
    assert_eq!(status, 200, "{d1}");
    validate(&doc, "/dlq", "get", 200, &d1);
    assert_eq!(d1["entries"].as_array().unwrap().len(), 2);
    assert_eq!(d1["entries"][0]["reason"], "rejected");
    let (_, d2) = api
        .get(&format!(
            "/api/v1/dlq?limit=2&cursor={}",
            d1["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(d2["entries"].as_array().unwrap().len(), 1);
    assert!(d2["next"].is_null());
    let (_, none) = api.get("/api/v1/dlq?reason=invalid").await;
    assert_eq!(none["entries"].as_array().unwrap().len(), 0);
    let (_, grep) = api.get("/api/v1/dlq?grep=%22n%22%3A1").await;
    assert_eq!(grep["entries"].as_array().unwrap().len(), 1);

    let (status, stats) = api.get("/api/v1/dlq/stats").await;
    assert_eq!(status, 200);
    validate(&doc, "/dlq/stats", "get", 200, &stats);
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["byType"]["t.bad"], 3);
    assert_eq!(stats["byReason"]["rejected"], 3);
    assert_eq!(stats["byPool"]["p"], 3);

    let id = d1["entries"][0]["id"].as_str().unwrap();
    let (status, one) = api.get(&format!("/api/v1/dlq/{id}")).await;
    assert_eq!(status, 200);
    validate(&doc, "/dlq/{id}", "get", 200, &one);
    assert_eq!(one["id"], id);
    assert_eq!(one["fields"]["dlq_group"], "p");
    let (status, missing) = api.get("/api/v1/dlq/1-1").await;
    assert_eq!(status, 404);
    validate(&doc, "/dlq/{id}", "get", 404, &missing);

    let (status, history) = api.get("/api/v1/stats/history").await;
    assert_eq!(status, 200);
    validate(&doc, "/stats/history", "get", 200, &history);
    let p = history["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p")
        .unwrap();
    let sum = |k: &str| -> u64 {
        p["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("processed"), 5);
    assert_eq!(sum("failed"), 3);
    running.stop().await;
}

#[tokio::test]
async fn bad_input_and_auth_answer_400_401_403_404_413_with_the_field() {
    let server = RedisServer::start();
    let (_stream, api, running) = setup(&server, "api-errors", 0, 1).await;
    let (status, body) = api.call("GET", "/api/v1/status", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string());
    let (status, _) = api.call("GET", "/api/v1/status", Some("nope"), None).await;
    assert_eq!(status, 401);
    let (status, _) = api.call("GET", "/api/v1/status", Some(READ), None).await;
    assert_eq!(status, 200);
    let write = Some(json!({"all": true, "dryRun": true}).to_string());
    let (status, body) = api
        .call("POST", "/api/v1/dlq/reprocess", Some(READ), write)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = api
        .call("POST", "/api/v1/pools/p/pause", Some(READ), None)
        .await;
    assert_eq!(status, 403);

    let cases = [
        ("/api/v1/dlq?since=yesterday-ish", "since"),
        ("/api/v1/dlq?pool=nope", "pool"),
        ("/api/v1/dlq?reason=sad", "reason"),
        ("/api/v1/dlq?limit=0", "limit"),
        ("/api/v1/dlq?cursor=zzz", "cursor"),
        ("/api/v1/dlq?colour=red", "colour"),
        ("/api/v1/events?until=-2x", "until"),
        ("/api/v1/dlq/not-an-id", "id"),
    ];
    for (path, field) in cases {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    let bodies = [
        (json!({"ids": "1-1"}), "ids"),
        (json!({"ids": ["x"]}), "ids"),
        (json!({"ids": []}), "ids"),
        (json!({}), "ids"),
        (json!({"types": "t.bad"}), "types"),
        (json!({"all": true, "since": "later"}), "since"),
        (json!({"all": true, "bogus": 1}), "bogus"),
        (json!({"dryRun": "yes", "all": true}), "dryRun"),
    ];
    for (body, field) in bodies {
        let (status, answer) = api.post("/api/v1/dlq/reprocess", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let many: Vec<String> = (0..10_001).map(|i| format!("{i}-0")).collect();
    let (status, answer) = api
        .post("/api/v1/dlq/reprocess", json!({"ids": many}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["field"], "ids");
    let huge = json!({"ids": ["1-1"], "pad": "x".repeat(2 * 1024 * 1024)}).to_string();
    let (status, _) = api
        .call("POST", "/api/v1/dlq/reprocess", Some(ADMIN), Some(huge))
        .await;
    assert_eq!(status, 413);
    // `until` defaults to now; `where` goes through the CLI's checks.
    let bad_where = json!({"since": "0", "where": ["tenant"], "dryRun": true});
    let (status, body) = api.post("/api/v1/replay", bad_where).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("where")));
    let dry = json!({"since": "0", "where": ["tenant=t1", "/tenantId=t1"], "dryRun": true});
    let (status, body) = api.post("/api/v1/replay", dry).await;
    assert_eq!(status, 200, "{body}");
    let replay = json!({"since": "0", "until": "-0s", "group": "nope"});
    let (status, body) = api.post("/api/v1/replay", replay).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("group")));
    let (status, _) = api.post("/api/v1/pools/nope/pause", json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/api/v1/replay/no-such-job").await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post("/api/v1/replay/no-such-job/resume", json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    running.stop().await;
}

/// `where` on the DLQ endpoints, as `weir dlq … --where`: an original entry field or a JSON
/// pointer into `data`, repeatable, all must hold; a bad condition is a 400 naming `where`.
#[tokio::test]
async fn dlq_endpoints_filter_by_where_conditions() {
    let server = RedisServer::start();
    let (stream, api, running) = setup(&server, "api-where", 0, 0).await;
    let dlq = format!("{stream}:dlq");
    for (tenant, n) in [("acme", 3), ("globex", 2)] {
        for i in 0..n {
            let data = format!(r#"{{"tenantId":"{tenant}","n":{i}}}"#);
            server.cli(&[
                "XADD", &stream, "*", "type", "t.bad", "tenant", tenant, "data", &data,
            ]);
        }
    }
    let redis = server.client().await;
    wait_for("five dead letters", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 5
    })
    .await;
    let (_, doc) = api.get("/api/v1/openapi.json").await;
    let params: Vec<&str> = ["/dlq", "/dlq/stats"]
        .iter()
        .flat_map(|p| doc["paths"][p]["get"]["parameters"].as_array().unwrap())
        .filter_map(|p| p["name"].as_str())
        .filter(|n| *n == "where")
        .collect();
    assert_eq!(
        params.len(),
        2,
        "`where` documented on GET /dlq and /dlq/stats"
    );
    assert!(doc["components"]["schemas"]["ReprocessBody"]["properties"]["where"].is_object());
    assert!(doc["components"]["schemas"]["PurgeBody"]["properties"]["where"].is_object());

    let count = |page: &Value| page["entries"].as_array().unwrap().len();
    let (status, page) = api.get("/api/v1/dlq?where=tenant%3Dacme").await;
    assert_eq!((status, count(&page)), (200, 3), "{page}");
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["fields"]["tenant"] == "acme")
    );
    let (status, page) = api
        .get("/api/v1/dlq?where=%2FtenantId%3Dglobex&where=tenant%3Dglobex")
        .await;
    assert_eq!((status, count(&page)), (200, 2), "{page}");
    let (_, page) = api
        .get("/api/v1/dlq?where=%2FtenantId%3Dglobex&where=tenant%3Dacme")
        .await;
    assert_eq!(count(&page), 0, "every condition must hold");
    let (status, stats) = api.get("/api/v1/dlq/stats?where=%2Fn%3D1").await;
    assert_eq!(status, 200, "{stats}");
    validate(&doc, "/dlq/stats", "get", 200, &stats);
    assert_eq!(stats["total"], 2, "{stats}");
    let (_, all) = api.get("/api/v1/dlq/stats").await;
    assert_eq!(all["total"], 5);

    for path in [
        "/api/v1/dlq?where=tenant",
        "/api/v1/dlq/stats?where=%2Fa%2F%2Fb%3Dx",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some("where")),
            "{path}: {body}"
        );
    }
    let (status, body) = api
        .post("/api/v1/dlq/reprocess", json!({"where": ["tenant"]}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("where")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("`tenant`"),
        "{body}"
    );

    let (status, dry) = api
        .post(
            "/api/v1/dlq/reprocess",
            json!({"where": ["/tenantId=globex"], "dryRun": true}),
        )
        .await;
    assert_eq!((status, dry["matched"].as_u64()), (200, Some(2)), "{dry}");

    let (status, body) = api.post("/api/v1/dlq/purge", json!({})).await;
    assert_eq!(status, 400, "an empty purge deletes nothing: {body}");
    let purge = Some(json!({"where": ["tenant=globex"]}).to_string());
    let (status, _) = api
        .call("POST", "/api/v1/dlq/purge", Some(READ), purge)
        .await;
    assert_eq!(status, 403);
    let (status, purged) = api
        .post("/api/v1/dlq/purge", json!({"where": ["tenant=globex"]}))
        .await;
    assert_eq!(status, 200, "{purged}");
    validate(&doc, "/dlq/purge", "post", 200, &purged);
    assert_eq!(purged["purged"], 2);
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 3);
    let (_, page) = api.get("/api/v1/dlq").await;
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["fields"]["tenant"] == "acme")
    );
    running.stop().await;
}

#[tokio::test]
async fn writes_reprocess_forget_pause_and_resume() {
    let server = RedisServer::start();
    let (stream, api, running) = setup(&server, "api-writes", 0, 4).await;
    let redis = server.client().await;
    let dlq = format!("{stream}:dlq");
    let (_, list) = api.get("/api/v1/dlq").await;
    let ids: Vec<String> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let (_, doc) = api.get("/api/v1/openapi.json").await;

    let (status, dry) = api
        .post(
            "/api/v1/dlq/reprocess",
            json!({"all": true, "dryRun": true}),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    validate(&doc, "/dlq/reprocess", "post", 200, &dry);
    assert_eq!(
        (dry["matched"].as_u64(), dry["moved"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(dry["byType"]["t.bad"], 4);
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), 4);

    let (status, moved) = api
        .post("/api/v1/dlq/reprocess", json!({"ids": [ids[0]]}))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["moved"], 1);
    assert_eq!(moved["byType"][""], 1);

    let (status, forgot) = api
        .call(
            "DELETE",
            &format!("/api/v1/dlq/{}", ids[1]),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{forgot}");
    validate(&doc, "/dlq/{id}", "delete", 200, &forgot);
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/dlq/{}", ids[1]),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (status, paused) = api.post("/api/v1/pools/q/pause", json!({})).await;
    assert_eq!(status, 200);
    validate(&doc, "/pools/{name}/pause", "post", 200, &paused);
    assert_eq!(paused["state"], "paused");
    let members = redis.members(&format!("{stream}:paused")).await.unwrap();
    assert_eq!(members, vec!["q".to_string()]);
    let (status, resumed) = api.post("/api/v1/pools/q/resume", json!({})).await;
    assert_eq!((status, resumed["changed"].as_bool()), (200, Some(true)));
    assert!(
        redis
            .members(&format!("{stream}:paused"))
            .await
            .unwrap()
            .is_empty()
    );

    // The rest by filter: the reprocessed one fails again and is back.
    wait_for("the reprocessed one failed again", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 3
    })
    .await;
    let (status, rest) = api
        .post(
            "/api/v1/dlq/reprocess",
            json!({"types": ["t.bad"], "since": "-1h"}),
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["moved"], 3);
    wait_for("reprocessed entries failed again", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 3
    })
    .await;
    running.stop().await;
}

fn config_file(dir: &Path, server: &RedisServer, stream: &str, port: u16) -> PathBuf {
    let path = dir.join("streams.toml");
    std::fs::write(&path, toml(server, stream, port, &tokens())).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_dead_letters_reprocessed_by_the_api_and_the_cli_at_once_move_once() {
    let server = RedisServer::start();
    const N: usize = 3000;
    let stream = stream_name("api-race");
    let redis = server.client().await;
    let dlq = format!("{stream}:dlq");
    let mut ids = Vec::new();
    for i in 0..N {
        let n = i.to_string();
        let id = redis
            .add(
                &dlq,
                &[
                    ("type", b"t.x" as &[u8]),
                    ("data", b"{}"),
                    ("n", n.as_bytes()),
                    ("dlq_group", b"p"),
                    ("dlq_reason", b"rejected"),
                ],
            )
            .await
            .unwrap();
        ids.push(id.to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config_file(dir.path(), &server, &stream, port);
    // No pool takes t.x, so nothing consumes what moves: the stream shows every copy.
    let running = run(engine(weir::Config::load(&path).unwrap()));
    let api = Api::new(port);
    api.up().await;
    let mut args = vec![
        "-c".to_string(),
        path.display().to_string(),
        "dlq".into(),
        "reprocess".into(),
    ];
    args.extend(ids.iter().cloned());
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&args)
        .output();
    let http = api.post("/api/v1/dlq/reprocess", json!({ "ids": ids }));
    let (cli, (status, body)) = tokio::join!(cli, http);
    let cli = cli.unwrap();
    // The CLI exits 1 when some of its IDs were already gone (moved by the API).
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(
        cli.status.success() || stderr.contains("are not in"),
        "{stderr}"
    );
    assert_eq!(status, 200, "{body}");
    let left = redis.range(&dlq, "-", "+", 10_000).await.unwrap();
    assert!(left.iter().all(|e| !ids.contains(&e.id.to_string())));
    let copies = redis.range(&stream, "-", "+", 10_000).await.unwrap();
    assert_eq!(copies.len(), N, "each dead letter moved exactly once");
    let moved_by_api = body["moved"].as_u64().unwrap();
    assert!(moved_by_api <= N as u64);
    running.stop().await;
}

async fn progress(api: &Api, job: &str) -> Value {
    let (status, body) = api.get(&format!("/api/v1/replay/{job}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_cancelled_then_stopped_by_shutdown_resumes_over_http_without_duplicates_or_gaps()
{
    let server = RedisServer::start();
    let stream = stream_name("api-replay");
    let redis = server.client().await;
    const N: usize = 1500;
    let batch: Vec<Vec<(String, String)>> = (0..N)
        .map(|i| {
            vec![
                ("type".to_string(), "t.r".to_string()),
                ("data".to_string(), format!("{{\"n\":{i}}}")),
            ]
        })
        .collect();
    redis.add_many(&stream, &batch).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config_file(dir.path(), &server, &stream, port);
    let running = run(engine(weir::Config::load(&path).unwrap()));
    let api = Api::new(port);
    api.up().await;
    let (_, doc) = api.get("/api/v1/openapi.json").await;

    let body =
        json!({"since": "0", "until": "-0s", "types": ["t.r"], "rate": 500, "batchSize": 50});
    let (status, started) = api.post("/api/v1/replay", body).await;
    assert_eq!(status, 202, "{started}");
    validate(&doc, "/replay", "post", 202, &started);
    let job = started["job"].as_str().unwrap().to_string();
    wait_for("some published", T, || async {
        progress(&api, &job).await["published"].as_u64().unwrap() > 0
    })
    .await;
    let running_now = progress(&api, &job).await;
    validate(&doc, "/replay/{job}", "get", 200, &running_now);
    assert_eq!(running_now["status"], "running");
    let (status, _) = api
        .post(&format!("/api/v1/replay/{job}/resume"), json!({}))
        .await;
    assert_eq!(status, 409, "resuming a running job");

    let (status, cancelled) = api
        .call(
            "DELETE",
            &format!("/api/v1/replay/{job}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "interrupted");
    assert!(cancelled["published"].as_u64().unwrap() < N as u64);

    let (status, _) = api
        .post(&format!("/api/v1/replay/{job}/resume"), json!({}))
        .await;
    assert_eq!(status, 202);
    let before = progress(&api, &job).await["published"].as_u64().unwrap();
    wait_for("more published after resume", T, || async {
        progress(&api, &job).await["published"].as_u64().unwrap() > before
    })
    .await;
    running.stop().await;
    let key = weir::replay::job_key(&stream, &job);
    let hash = redis.hash_get_all(&key).await.unwrap();
    assert_eq!(
        hash["status"], "interrupted",
        "shutdown leaves it resumable"
    );
    assert!(hash["published"].parse::<usize>().unwrap() < N);

    let port = free_port();
    let path = config_file(dir.path(), &server, &stream, port);
    let running = run(engine(weir::Config::load(&path).unwrap()));
    let api = Api::new(port);
    api.up().await;
    let (status, _) = api
        .post(&format!("/api/v1/replay/{job}/resume"), json!({}))
        .await;
    assert_eq!(status, 202);
    wait_for("the job done", T, || async {
        progress(&api, &job).await["status"] == "done"
    })
    .await;
    let done = progress(&api, &job).await;
    assert_eq!(done["published"], N);
    let (status, _) = api
        .post(&format!("/api/v1/replay/{job}/resume"), json!({}))
        .await;
    assert_eq!(status, 409, "a finished job");

    let all = redis.range(&stream, "-", "+", 10 * N).await.unwrap();
    let mut copies: Vec<String> = all
        .iter()
        .filter(|e| field(e, "replay_job") == job)
        .map(|e| field(e, "replay_of"))
        .collect();
    assert_eq!(copies.len(), N, "no duplicates");
    copies.sort();
    copies.dedup();
    assert_eq!(copies.len(), N, "no gaps");
    running.stop().await;
}

#[tokio::test]
async fn redis_unreachable_answers_503() {
    let mut server = RedisServer::start();
    let (_stream, api, running) = setup(&server, "api-503", 0, 0).await;
    server.kill9();
    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Redis"));
    let (status, _) = api.get("/api/v1/dlq").await;
    assert_eq!(status, 503);
    server.restart();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs_and_writes_are_audited() {
    let server = RedisServer::start();
    let stream = stream_name("api-logs");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, toml(&server, &stream, port, "")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--log-format", "json", "-c", path.to_str().unwrap()])
        .env("WEIR_LOG", "weir=trace,info")
        .env("WEIR_HTTP__ADMIN_TOKEN", ADMIN)
        .env("WEIR_HTTP__READ_TOKEN", READ)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id());
    let api = Api::new(port);
    api.up().await;
    assert_eq!(api.get("/api/v1/status").await.0, 200);
    assert_eq!(
        api.call("GET", "/api/v1/dlq", Some(READ), None).await.0,
        200
    );
    assert_eq!(
        api.call("GET", "/api/v1/dlq", Some("wrong-token"), None)
            .await
            .0,
        401
    );
    assert_eq!(api.post("/api/v1/pools/q/pause", json!({})).await.0, 200);
    let (status, _) = api
        .post("/api/v1/dlq/reprocess", json!({"all": true}))
        .await;
    assert_eq!(status, 200);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    for secret in [ADMIN, READ, "wrong-token"] {
        assert!(!logs.contains(secret), "a token in the logs:\n{logs}");
    }
    let audits: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "admin API write")
        .collect();
    assert_eq!(audits.len(), 2, "one audit line per write:\n{logs}");
    assert_eq!(audits[0]["action"], "pool.pause");
    assert_eq!(audits[0]["token"], "admin");
    assert_eq!(audits[1]["action"], "dlq.reprocess");
    assert_eq!(audits[1]["entries"], 0);
}

#[tokio::test]
async fn tls_serves_the_api_over_https() {
    let server = RedisServer::start();
    let stream = stream_name("api-tls");
    let certs = tempfile::tempdir().unwrap();
    crate::tls::certificates(certs.path());
    let port = free_port();
    let http = format!(
        "{}tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        tokens(),
        certs.path().join("server.crt"),
        certs.path().join("server.key")
    );
    let running = run(engine(config(&toml(&server, &stream, port, &http))));
    // Async: a blocking child would stall this test's runtime, and the engine with it.
    async fn curl(extra: &[&str]) -> std::process::Output {
        let mut args = vec!["-sS", "--max-time", "5"];
        args.extend_from_slice(extra);
        tokio::process::Command::new("curl")
            .args(&args)
            .output()
            .await
            .unwrap()
    }
    let ca = certs.path().join("ca.crt");
    let url = format!("https://127.0.0.1:{port}/api/v1/status");
    let header = format!("Authorization: Bearer {ADMIN}");
    wait_for("HTTPS up", T, || async {
        let out = curl(&["--cacert", ca.to_str().unwrap(), &url, "-H", &header]).await;
        if !out.status.success() {
            eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    })
    .await;
    let out = curl(&["--cacert", ca.to_str().unwrap(), &url, "-H", &header]).await;
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["stream"], stream);
    let plain_url = format!("http://127.0.0.1:{port}/api/v1/status");
    let plain = curl(&[&plain_url, "-H", &header]).await;
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        !text.contains(&stream),
        "plain HTTP must not be answered: {text}"
    );
    running.stop().await;
}

#[test]
fn a_config_dump_never_shows_the_tokens() {
    let server_url = "redis://127.0.0.1:1/0";
    let text = format!(
        "[redis]\nurl = \"{server_url}\"\n[http]\n{}[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"noop\" }}\n",
        tokens()
    );
    let config = config(&text);
    let dump = format!("{config:?}");
    assert!(!dump.contains(ADMIN) && !dump.contains(READ), "{dump}");
    assert!(config.http.api_enabled());
    let empty = "[http]\nadmin_token = \" \"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\n";
    let err = weir::Config::from_toml(empty, &repo())
        .unwrap_err()
        .to_string();
    assert!(err.contains("http.admin_token"), "{err}");
}
