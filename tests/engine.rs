//! The engine in-process against a real redis-server: routing, retries, DLQ, leases, pause,
//! vanished groups, trimming, shutdown, Redis restarts.

use std::collections::HashSet;
use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// An entry's fields as written by a raw publisher.
type Fields = Vec<(&'static str, Vec<u8>)>;

/// A config for `stream` on `server` with fast timings; `pools` is appended verbatim.
fn toml(server: &RedisServer, stream: &str, retry: &str, pools: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 5
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 3
retry_seconds = 0.1
backoff_exp = 2
visibility_timeout_seconds = 2
{retry}
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
{pools}
"#,
        url = server.url(),
    )
}

fn pool(name: &str, types: &str) -> String {
    format!("[[pools]]\nname = \"{name}\"\nconcurrency = 4\ntypes = {types}\n")
}

#[tokio::test]
async fn routes_each_type_to_its_pools_and_wildcard_takes_the_rest() {
    let server = RedisServer::start();
    let stream = stream_name("routing");
    let pools = [
        pool("a", r#"["t.one", "t.both"]"#),
        pool("b", r#"["t.two", "t.both"]"#),
        pool("rest", r#"["*"]"#),
    ]
    .concat();
    let config = config(&toml(&server, &stream, "", &pools));
    let (a, b, rest) = (Recorder::ok(), Recorder::ok(), Recorder::ok());
    let engine = Engine::new(config)
        .with_handler("a", a.clone())
        .with_handler("b", b.clone())
        .with_handler("rest", rest.clone());
    let running = run(engine);
    let redis = server.client().await;
    for ty in ["t.one", "t.two", "t.both", "t.other"] {
        publish(&redis, &stream, ty, "{}").await;
    }
    wait_for("every pool handled its types", T, || async {
        a.count() == 2 && b.count() == 2 && rest.count() == 1
    })
    .await;
    let types = |r: &Recorder| {
        r.seen()
            .into_iter()
            .map(|s| s.event_type)
            .collect::<HashSet<_>>()
    };
    assert_eq!(
        types(&a),
        HashSet::from(["t.one".to_string(), "t.both".to_string()])
    );
    assert_eq!(
        types(&b),
        HashSet::from(["t.two".to_string(), "t.both".to_string()])
    );
    assert_eq!(types(&rest), HashSet::from(["t.other".to_string()]));
    for g in ["a", "b", "rest"] {
        wait_for("skipped entries acknowledged", T, || async {
            group_pending(&redis, &stream, g).await == 0
        })
        .await;
    }
    assert_eq!(redis.stream_len(&format!("{stream}:dlq")).await.unwrap(), 0);
    running.stop().await;
}

#[tokio::test]
async fn retries_with_exponential_spacing_then_dead_letters_with_every_field() {
    let server = RedisServer::start();
    let stream = stream_name("retry");
    let retry = "retry_seconds = 0.2\nmax_attempts = 4\n";
    let config = config(&toml(
        &server,
        &stream,
        "",
        &format!("{}{retry}", pool("p", r#"["job"]"#)),
    ));
    let failing = Recorder::with(|d| Outcome::retry(format!("boom on attempt {}", d.attempt)));
    let running = run(Engine::new(config).with_handler("p", failing.clone()));
    let redis = server.client().await;
    let id = redis
        .add(
            &stream,
            &[
                ("type", b"job"),
                ("data", b"{\"n\":1}"),
                ("id", b"E-1"),
                ("tenant", b"acme"),
            ],
        )
        .await
        .unwrap();
    let dlq = format!("{stream}:dlq");
    wait_for("entry dead-lettered", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 1
    })
    .await;

    let seen = failing.seen();
    assert_eq!(
        seen.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for (n, pair) in seen.windows(2).enumerate() {
        let expected = Duration::from_secs_f64(0.2 * 2f64.powi(n as i32));
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= expected,
            "gap {n} was {gap:?}, expected at least {expected:?}"
        );
        assert!(
            gap < expected + Duration::from_millis(400),
            "gap {n} was {gap:?}, expected about {expected:?}"
        );
    }
    let entry = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(entry, "type"), "job");
    assert_eq!(field(entry, "data"), "{\"n\":1}");
    assert_eq!(field(entry, "id"), "E-1");
    assert_eq!(field(entry, "tenant"), "acme");
    assert_eq!(field(entry, "dlq_source_id"), id.to_string());
    assert_eq!(field(entry, "dlq_group"), "p");
    assert_eq!(field(entry, "dlq_reason"), "max_attempts");
    assert_eq!(field(entry, "dlq_error"), "boom on attempt 4");
    assert_eq!(field(entry, "dlq_attempts"), "4");
    let failed_at: u128 = field(entry, "dlq_failed_at").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        now - failed_at < 10_000,
        "dlq_failed_at {failed_at} is not recent"
    );
    assert_eq!(group_pending(&redis, &stream, "p").await, 0);
    running.stop().await;
}

#[tokio::test]
async fn retry_after_from_the_handler_raises_the_backoff() {
    let server = RedisServer::start();
    let stream = stream_name("retry-after");
    let config = config(&toml(&server, &stream, "", &pool("p", r#"["job"]"#)));
    let handler = Recorder::with(|d| match d.attempt {
        1 => Outcome::Retry {
            after: Some(Duration::from_millis(800)),
            error: "busy".into(),
        },
        _ => Outcome::Success,
    });
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish(&redis, &stream, "job", "{}").await;
    wait_for("second attempt", T, || async { handler.count() == 2 }).await;
    let seen = handler.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(800),
        "Retry-After ignored: {:?}",
        seen[1].at - seen[0].at
    );
    running.stop().await;
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_once_without_retries() {
    let server = RedisServer::start();
    let stream = stream_name("permanent");
    let mut toml = toml(
        &server,
        &stream,
        "",
        &[
            pool("p", r#"["incident.event", "reject.me"]"#),
            pool("q", r#"["other"]"#),
        ]
        .concat(),
    );
    toml = toml.replace("[janitor]", &format!("{}[janitor]", schemas_section()));
    toml = toml.replace(
        &format!("name = \"{stream}\""),
        &format!("name = \"{stream}\"\nmax_entry_bytes = 2000"),
    );
    let config = config(&toml);
    let handler = Recorder::with(|d| match d.event_type.as_str() {
        "reject.me" => Outcome::permanent("HTTP 422: no such customer"),
        _ => Outcome::Success,
    });
    let running = run(Engine::new(config)
        .with_handler("p", handler.clone())
        .with_handler("q", Recorder::ok()));
    let redis = server.client().await;
    let valid = envelope("incident.event");
    let missing_field =
        std::fs::read_to_string(repo().join("tests/fixtures/invalid/missing-payload-field.json"))
            .unwrap();
    let cases: Vec<(&str, Fields)> = vec![
        (
            "rejected",
            vec![
                ("type", b"reject.me".to_vec()),
                ("data", valid.clone().into_bytes()),
            ],
        ),
        (
            "invalid",
            vec![
                ("type", b"incident.event".to_vec()),
                ("data", b"{not json".to_vec()),
            ],
        ),
        (
            "invalid",
            vec![
                ("type", b"incident.event".to_vec()),
                ("data", missing_field.into_bytes()),
            ],
        ),
        ("malformed", vec![("foo", b"bar".to_vec())]),
        ("malformed", vec![("type", b"incident.event".to_vec())]),
        (
            "malformed",
            vec![
                ("type", b"incident.event".to_vec()),
                ("data", b"{\"a\":\"\xff\"}".to_vec()),
            ],
        ),
        (
            "too_large",
            vec![
                ("type", b"incident.event".to_vec()),
                ("data", vec![b'x'; 3000]),
            ],
        ),
        (
            "unrouted",
            vec![
                ("type", b"nobody.takes.this".to_vec()),
                ("data", b"{}".to_vec()),
            ],
        ),
    ];
    let mut expected = Vec::new();
    for (reason, fields) in &cases {
        let fields: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        expected.push((
            redis.add(&stream, &fields).await.unwrap().to_string(),
            reason.to_string(),
        ));
    }
    publish(&redis, &stream, "incident.event", &valid).await;
    let dlq = format!("{stream}:dlq");
    wait_for("all bad entries dead-lettered", T, || async {
        redis.stream_len(&dlq).await.unwrap() >= cases.len() as u64
    })
    .await;
    wait_for("valid entry handled", T, || async {
        handler
            .seen()
            .iter()
            .any(|s| s.event_type == "incident.event")
    })
    .await;
    for g in ["p", "q"] {
        wait_for("nothing left pending", T, || async {
            group_pending(&redis, &stream, g).await == 0
        })
        .await;
    }
    // Nothing pending in either group: every entry is settled (the DLQ move acknowledges in
    // the same script), so no retry can come after this point and the counts are final.
    let entries = redis.range(&dlq, "-", "+", 100).await.unwrap();
    let got: Vec<(String, String)> = entries
        .iter()
        .map(|e| (field(e, "dlq_source_id"), field(e, "dlq_reason")))
        .collect();
    let mut want = expected.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(
        got_sorted, want,
        "each bad entry exactly once with its reason"
    );
    for e in &entries {
        assert_eq!(field(e, "dlq_attempts"), "1");
        assert!(!field(e, "dlq_error").is_empty());
    }
    let invalid_schema = entries
        .iter()
        .find(|e| field(e, "dlq_source_id") == expected[2].0)
        .unwrap();
    assert!(
        field(invalid_schema, "dlq_error").contains("/payload")
            && field(invalid_schema, "dlq_error").contains("required"),
        "schema error names pointer and rule: {}",
        field(invalid_schema, "dlq_error")
    );
    let rejected = handler
        .seen()
        .iter()
        .filter(|s| s.event_type == "reject.me")
        .count();
    assert_eq!(rejected, 1, "a permanent failure is not retried");
    running.stop().await;
}

#[tokio::test]
async fn a_handler_running_past_the_visibility_timeout_is_not_redelivered() {
    let server = RedisServer::start();
    let stream = stream_name("lease");
    let retry = "visibility_timeout_seconds = 0.4\ntimeout_seconds = 5\n";
    let config = config(&toml(
        &server,
        &stream,
        "",
        &format!("{}{retry}", pool("p", r#"["slow"]"#)),
    ));
    let handler = Recorder::ok().slow(Duration::from_millis(1000));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish(&redis, &stream, "slow", "{}").await;
    wait_for("handled and acknowledged", T, || async {
        handler.count() >= 1 && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    // The quiet period is the assertion: a reclaim that raced the acknowledgement would
    // deliver again within one janitor tick (the visibility timeout is 0.4 s).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        handler.count(),
        1,
        "the entry was redelivered while its handler was running"
    );
    assert_eq!(handler.seen()[0].attempt, 1);
    running.stop().await;
}

/// The janitor claims (XAUTOCLAIM, which costs Redis a stream lookup per pending entry it
/// scans) only after its sweep saw an entry idle past the visibility timeout: entries in
/// flight cost it one XPENDING per tick, and a failed entry is still claimed for its retry.
#[tokio::test]
async fn the_janitor_claims_only_when_an_entry_went_idle() {
    let server = RedisServer::start();
    let stream = stream_name("janitor-idle");
    let config = config(&toml(
        &server,
        &stream,
        "",
        &pool("p", r#"["slow", "flaky"]"#),
    ));
    let handler = Recorder::with(|d| match (d.event_type.as_str(), d.attempt) {
        ("flaky", 1) => Outcome::retry("once"),
        _ => Outcome::Success,
    })
    .slow(Duration::from_millis(1500));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    for _ in 0..4 {
        publish(&redis, &stream, "slow", "{}").await;
    }
    wait_for("four in flight and eight janitor ticks", T, || async {
        group_pending(&redis, &stream, "p").await == 4 && command_calls(&server, "xpending") >= 8
    })
    .await;
    assert_eq!(
        command_calls(&server, "xautoclaim"),
        0,
        "the janitor scanned with XAUTOCLAIM while nothing was idle"
    );
    publish(&redis, &stream, "flaky", "{}").await;
    wait_for("the failed entry claimed and retried", T, || async {
        handler
            .seen()
            .iter()
            .any(|s| s.event_type == "flaky" && s.attempt == 2)
    })
    .await;
    assert!(command_calls(&server, "xautoclaim") >= 1);
    running.stop().await;
}

#[tokio::test]
async fn a_hanging_handler_times_out_and_the_entry_is_retried() {
    let server = RedisServer::start();
    let stream = stream_name("timeout");
    let extra = "timeout_seconds = 0.2\nmax_attempts = 2\n";
    let config = config(&toml(
        &server,
        &stream,
        "",
        &format!("{}{extra}", pool("p", r#"["hang"]"#)),
    ));
    let handler = Recorder::ok().slow(Duration::from_secs(3600));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish(&redis, &stream, "hang", "{}").await;
    let dlq = format!("{stream}:dlq");
    wait_for("dead-lettered after two timeouts", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 1
    })
    .await;
    let entry = &redis.range(&dlq, "-", "+", 1).await.unwrap()[0];
    assert!(
        field(entry, "dlq_error").contains("timed out"),
        "{}",
        field(entry, "dlq_error")
    );
    assert_eq!(handler.count(), 2);
    running.stop().await;
}

/// An inline handler: the reader handles each batch itself, its reads pipelined while the
/// backlog lasts. Every entry is seen once in stream order on its first delivery, a failed
/// one is retried by the workers, a permanent failure is dead-lettered, all is acknowledged.
#[tokio::test]
async fn an_inline_handler_takes_a_backlog_once_in_stream_order() {
    let server = RedisServer::start();
    let stream = stream_name("inline");
    let redis = server.client().await;
    let mut ids = Vec::new();
    for n in 0..3000 {
        ids.push(publish(&redis, &stream, "job", &format!("{{\"n\":{n}}}")).await);
    }
    let is = |d: &weir::Delivery, n: u32| d.data == format!("{{\"n\":{n}}}");
    let handler = Recorder::with(move |d| {
        if is(d, 1234) {
            Outcome::permanent("never")
        } else if (is(d, 7) || is(d, 2999)) && d.attempt == 1 {
            Outcome::retry("once")
        } else {
            Outcome::Success
        }
    })
    .inline();
    let pools = format!("{}start = \"0\"\n", pool("p", r#"["job"]"#));
    let config = config(&toml(&server, &stream, "", &pools));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let dlq = format!("{stream}:dlq");
    wait_for("the backlog settled", T, || async {
        handler.count() == 3002
            && group_pending(&redis, &stream, "p").await == 0
            && redis.stream_len(&dlq).await.unwrap_or(0) == 1
    })
    .await;
    let first: Vec<_> = handler
        .seen()
        .into_iter()
        .filter(|s| s.attempt == 1)
        .map(|s| s.entry_id)
        .collect();
    assert_eq!(first, ids, "first deliveries in stream order, each once");
    let per_entry = handler.per_entry();
    assert_eq!(per_entry[&ids[7]], 2);
    assert_eq!(per_entry[&ids[2999]], 2);
    assert_eq!(per_entry.values().sum::<usize>(), 3002);
    let dead = redis.range(&dlq, "-", "+", 10).await.unwrap();
    assert_eq!(field(&dead[0], "dlq_reason"), "rejected");
    assert_eq!(field(&dead[0], "data"), "{\"n\":1234}");
    running.stop().await;
}

#[tokio::test]
async fn pausing_through_the_redis_set_stops_and_resumes_reading() {
    pausing_stops_and_resumes(Recorder::ok()).await;
}

#[tokio::test]
async fn pausing_stops_and_resumes_an_inline_reader() {
    pausing_stops_and_resumes(Recorder::ok().inline()).await;
}

async fn pausing_stops_and_resumes(handler: Recorder) {
    let server = RedisServer::start();
    let stream = stream_name("pause");
    let config = config(&toml(
        &server,
        &stream,
        "",
        &[pool("p", r#"["job"]"#), pool("other", r#"["x"]"#)].concat(),
    ));
    let running = run(Engine::new(config)
        .with_handler("p", handler.clone())
        .with_handler("other", Recorder::ok()));
    let redis = server.client().await;
    publish(&redis, &stream, "job", "{}").await;
    wait_for("first handled", T, || async { handler.count() == 1 }).await;
    server.cli(&["SADD", &format!("{stream}:paused"), "p"]);
    wait_readers_parked(&server, 1).await;
    let job = publish(&redis, &stream, "job", "{}").await;
    publish(&redis, &stream, "x", "{}").await;
    // The other pool reads past the job: the stream is being read, just not by `p`.
    wait_for("the other pool read on", T, || {
        caught_up(&server, &redis, &stream, "other")
    })
    .await;
    let p = redis.groups(&stream).await.unwrap();
    let p = p.iter().find(|g| g.name == "p").unwrap();
    assert!(p.last_delivered < job, "a paused pool kept reading");
    assert_eq!(handler.count(), 1, "a paused pool kept reading");
    server.cli(&["SREM", &format!("{stream}:paused"), "p"]);
    wait_for("resumed", T, || async { handler.count() == 2 }).await;
    running.stop().await;
}

#[tokio::test]
async fn a_destroyed_group_is_recreated_at_the_last_delivered_id() {
    destroyed_group_recreated(Recorder::ok()).await;
}

#[tokio::test]
async fn a_destroyed_group_is_recreated_under_an_inline_reader() {
    destroyed_group_recreated(Recorder::ok().inline()).await;
}

async fn destroyed_group_recreated(handler: Recorder) {
    let server = RedisServer::start();
    let stream = stream_name("nogroup");
    let config = config(&toml(&server, &stream, "", &pool("p", r#"["job"]"#)));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    for _ in 0..5 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("first five", T, || async { handler.count() == 5 }).await;
    wait_for("acknowledged", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    assert_eq!(server.cli(&["XGROUP", "DESTROY", &stream, "p"]), "1");
    for _ in 0..5 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("next five", T, || async { handler.count() >= 10 }).await;
    // Read to the end and acknowledged: a group recreated too early would re-deliver before this.
    wait_for("caught up", T, || caught_up(&server, &redis, &stream, "p")).await;
    let per_entry = handler.per_entry();
    assert_eq!(per_entry.len(), 10, "every entry handled");
    assert!(
        per_entry.values().all(|n| *n == 1),
        "nothing handled twice after the group was recreated"
    );
    running.stop().await;
}

#[tokio::test]
async fn trimming_never_removes_unread_or_unacknowledged_entries() {
    let server = RedisServer::start();
    let stream = stream_name("trim");
    let mut text = toml(&server, &stream, "", &pool("p", r#"["job"]"#));
    text = text.replace(
        &format!("name = \"{stream}\""),
        &format!("name = \"{stream}\"\nmax_len = 10"),
    );
    let config = config(&text);
    server.cli(&["SADD", &format!("{stream}:paused"), "p"]);
    let handler = Recorder::ok();
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    wait_for("group created", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    for i in 0..500 {
        publish(&redis, &stream, "job", &format!("{{\"i\":{i}}}")).await;
    }
    // Two trim passes run with the pool paused: nothing may go.
    wait_trim_ticks(&server, 2).await;
    assert_eq!(
        redis.stream_len(&stream).await.unwrap(),
        500,
        "unread entries were trimmed"
    );
    server.cli(&["SREM", &format!("{stream}:paused"), "p"]);
    wait_for("all handled", T, || async { handler.count() >= 500 }).await;
    assert_eq!(handler.per_entry().len(), 500);
    wait_for("trimmed toward max_len once handled", T, || async {
        redis.stream_len(&stream).await.unwrap() <= 110
    })
    .await;
    running.stop().await;
}

/// `max_age_seconds` trims by the time in entry IDs (XTRIM MINID), but like `max_len` never
/// past an entry a pool has not read or not acknowledged: a paused pool keeps its backlog,
/// however old; once handled, every entry past the age is gone and the young ones stay.
#[tokio::test]
async fn trimming_by_age_waits_for_unread_entries_then_removes_old_ones() {
    let server = RedisServer::start();
    let stream = stream_name("trimage");
    let text = toml(&server, &stream, "", &pool("p", r#"["job"]"#)).replace(
        &format!("name = \"{stream}\""),
        &format!("name = \"{stream}\"\nmax_age_seconds = 60"),
    );
    server.cli(&["SADD", &format!("{stream}:paused"), "p"]);
    let handler = Recorder::ok();
    let running = run(Engine::new(config(&text)).with_handler("p", handler.clone()));
    let redis = server.client().await;
    wait_for("group created", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    // 250 entries from an hour ago (explicit IDs), then 5 of now: the last node of 100 holds
    // both, so only an exact trim removes its old ones.
    let hour_ago = weir_now_ms() - 3_600_000;
    for i in 0..250 {
        let id = format!("{hour_ago}-{i}");
        server.cli(&["XADD", &stream, &id, "type", "job", "data", "{}"]);
    }
    for _ in 0..5 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_trim_ticks(&server, 2).await;
    assert_eq!(
        redis.stream_len(&stream).await.unwrap(),
        255,
        "a paused pool's unread entries were trimmed by age"
    );
    server.cli(&["SREM", &format!("{stream}:paused"), "p"]);
    wait_for("all handled", T, || async { handler.count() >= 255 }).await;
    wait_for("old entries trimmed once handled", T, || async {
        redis.stream_len(&stream).await.unwrap() == 5
    })
    .await;
    let first = server.cli(&["XRANGE", &stream, "-", "+", "COUNT", "1"]);
    let first_ms: u64 = first
        .lines()
        .next()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first_ms > hour_ago, "an old entry is left: {first}");
    let metrics = get_text(running.url("/metrics").await).await;
    let trimmed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_entries_trimmed_total{rule=\"max_age\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max_age trim count in:\n{metrics}"));
    assert!(
        trimmed >= 250.0,
        "{trimmed} entries counted as trimmed by age"
    );
    running.stop().await;
}

fn weir_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn shutdown_lets_in_flight_handlers_finish_and_acknowledges_them() {
    let server = RedisServer::start();
    let stream = stream_name("drain");
    let config = config(&toml(&server, &stream, "", &pool("p", r#"["job"]"#)));
    let handler = Recorder::ok().slow(Duration::from_millis(700));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    for _ in 0..3 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("three in flight", T, || async { handler.count() == 3 }).await;
    running.stop().await;
    assert_eq!(
        group_pending(&redis, &stream, "p").await,
        0,
        "finished work was not acknowledged at shutdown"
    );
}

#[tokio::test]
async fn survives_a_redis_restart_without_losing_entries_and_reports_health() {
    let mut server = RedisServer::start_durable();
    let stream = stream_name("restart");
    let text = toml(&server, &stream, "", &pool("p", r#"["job"]"#));
    let config = config(&text);
    let handler = Recorder::ok();
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let health = running.url("/healthz").await;
    let status = |url: String| async move {
        reqwest::get(url)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_for("healthy", T, || status(health.clone()).then_eq(200)).await;
    let redis = server.client().await;
    for _ in 0..20 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("first batch", T, || async { handler.count() >= 20 }).await;
    server.kill9();
    wait_for("unhealthy while Redis is down", T, || {
        status(health.clone()).then_eq(503)
    })
    .await;
    server.restart();
    wait_for("healthy again", Duration::from_secs(20), || {
        status(health.clone()).then_eq(200)
    })
    .await;
    let redis = server.client().await;
    for _ in 0..20 {
        publish(&redis, &stream, "job", "{}").await;
    }
    wait_for("second batch", Duration::from_secs(20), || async {
        handler.per_entry().len() >= 40
    })
    .await;
    wait_for("nothing pending", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    running.stop().await;
}

/// `future.then_eq(x)`: a future of `future's output == x`.
trait ThenEq<T> {
    fn then_eq(self, expected: T) -> impl std::future::Future<Output = bool>;
}

impl<F: std::future::Future<Output = T>, T: PartialEq> ThenEq<T> for F {
    async fn then_eq(self, expected: T) -> bool {
        self.await == expected
    }
}

/// A handler that records each delivery and then holds it until the test opens the gate.
#[derive(Clone)]
struct Gated {
    seen: Recorder,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl weir::Handler for Gated {
    async fn handle(&self, d: &weir::Delivery) -> Outcome {
        let _ = weir::Handler::handle(&self.seen, d).await;
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        Outcome::Success
    }
}

#[tokio::test]
async fn sweep_dead_letters_an_over_attempted_backlog_without_worker_slots() {
    // The pool's worker slots are all held by gated entries, so nothing can be redelivered.
    // Meanwhile 2000 entries get their last allowed delivery on a consumer that dies, and
    // one of them is deleted by hand: the sweep must still move the whole backlog to the
    // DLQ with every field, and acknowledge the deleted one.
    let server = RedisServer::start();
    let stream = stream_name("sweep");
    let redis = server.client().await;
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 1\nread_count = 1\ntypes = [\"job\"]\n";
    let toml = toml(&server, &stream, "max_attempts = 2\n", pools)
        .replace("max_attempts = 3\n", "")
        .replace(
            "visibility_timeout_seconds = 2",
            "visibility_timeout_seconds = 1",
        );
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Gated {
        seen: Recorder::ok(),
        gate: gate.clone(),
    };
    let running = run(Engine::new(config(&toml)).with_handler("p", handler.clone()));
    wait_for("the group exists", T, || async {
        server.cli(&["XINFO", "GROUPS", &stream]).contains("p")
    })
    .await;
    let add = |i: usize| {
        let redis = &redis;
        let stream = &stream;
        async move {
            let data = format!("{{\"n\":{i}}}");
            let fields: [(&str, &[u8]); 3] = [
                ("type", b"job"),
                ("data", data.as_bytes()),
                ("tenant", b"acme"),
            ];
            redis.add(stream, &fields).await.unwrap();
        }
    };
    add(0).await;
    add(1).await;
    wait_for("both slots (worker and read-ahead) taken", T, || async {
        handler.seen.count() == 1 && group_pending(&redis, &stream, "p").await == 2
    })
    .await;

    const OVER: usize = 2000;
    for i in 2..OVER + 2 {
        add(i).await;
    }
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "p",
        "dead",
        "COUNT",
        "100000",
        "STREAMS",
        &stream,
        ">",
    ]);
    // A second delivery of each (max_attempts = 2), then one deletion.
    let bumped = server.cli(&[
        "EVAL",
        "local p = redis.call('XPENDING', KEYS[1], 'p', '-', '+', 100000, 'dead') \
         for _, r in ipairs(p) do redis.call('XCLAIM', KEYS[1], 'p', 'dead', 0, r[1]) end \
         redis.call('XDEL', KEYS[1], p[1][1]) return #p",
        "1",
        &stream,
    ]);
    assert_eq!(bumped, OVER.to_string());
    let dlq = format!("{stream}:dlq");
    wait_for("the over-attempted backlog dead-lettered", T, || async {
        redis.stream_len(&dlq).await.unwrap() == (OVER - 1) as u64
            && group_pending(&redis, &stream, "p").await == 2
    })
    .await;
    assert_eq!(handler.seen.count(), 1, "nothing was redelivered");
    let first = redis.range(&dlq, "-", "+", 1).await.unwrap();
    let first = &first[0];
    assert_eq!(field(first, "type"), "job");
    assert_eq!(field(first, "tenant"), "acme");
    assert_eq!(field(first, "data"), "{\"n\":3}");
    assert_eq!(field(first, "dlq_group"), "p");
    assert_eq!(field(first, "dlq_reason"), "max_attempts");
    assert_eq!(field(first, "dlq_attempts"), "2");
    assert!(field(first, "dlq_error").contains("after 2 deliveries"));
    assert_eq!(
        server
            .cli(&[
                "XRANGE",
                &stream,
                &field(first, "dlq_source_id"),
                "+",
                "COUNT",
                "1"
            ])
            .lines()
            .nth(4),
        Some("{\"n\":3}"),
    );

    // Opening the gate lets the two held entries finish, each on its first attempt.
    gate.add_permits(100);
    wait_for("the held entries handled", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let seen = handler.seen.seen();
    let data: Vec<&str> = seen.iter().map(|s| s.data.as_str()).collect();
    assert_eq!(data, ["{\"n\":0}", "{\"n\":1}"]);
    assert!(seen.iter().all(|s| s.attempt == 1), "{seen:?}");
    assert_eq!(redis.stream_len(&dlq).await.unwrap(), (OVER - 1) as u64);
    running.stop().await;
}

/// A batch written in one script gives back each entry's own ID, in order (the script
/// answers with one string of IDs; a batch of 1,200 spans several milliseconds).
#[tokio::test]
async fn a_batch_gives_back_every_entrys_id_in_order() {
    let server = RedisServer::start();
    let stream = stream_name("batch-ids");
    let redis = server.client().await;
    let batch: Vec<Vec<(String, String)>> = (0..1200)
        .map(|i| vec![("type".into(), "t".into()), ("n".into(), i.to_string())])
        .collect();
    let ids = redis.add_many(&stream, &batch).await.unwrap();
    let stored = redis.range(&stream, "-", "+", 2000).await.unwrap();
    assert_eq!(ids.len(), 1200);
    assert_eq!(ids, stored.iter().map(|e| e.id).collect::<Vec<_>>());
    assert_eq!(field(&stored[1199], "n"), "1199");
}
