//! Metrics after a scripted run, structured logs, and what must never be logged.

use std::process::{Command, Stdio};
use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// The value of the sample `name{…}` whose labels include every pair of `labels`.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| rest.rsplit(' ').next()?.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn counters_after_a_scripted_run_are_exact() {
    let server = RedisServer::start();
    let stream = stream_name("metrics");
    // An entry left pending by a worker that died: the engine must reclaim it.
    server.cli(&["XGROUP", "CREATE", &stream, "obs", "0", "MKSTREAM"]);
    server.cli(&["XADD", &stream, "*", "type", "ghost", "data", "{}"]);
    server.cli(&[
        "XREADGROUP",
        "GROUP",
        "obs",
        "dead-worker",
        "STREAMS",
        &stream,
        ">",
    ]);
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[retry]\nmax_attempts = 3\nretry_seconds = 0.1\nvisibility_timeout_seconds = 1\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"obs\"\nconcurrency = 4\ntypes = [\"*\"]\n",
        server.url()
    );
    let handler = Recorder::with(|d| match (d.event_type.as_str(), d.attempt) {
        ("flaky", 1) => Outcome::retry("try again"),
        ("bad", _) => Outcome::permanent("never"),
        _ => Outcome::Success,
    });
    let running = run(Engine::new(config(&text)).with_handler("obs", handler.clone()));
    let redis = server.client().await;
    for (ty, data) in [
        ("ok", "{}"),
        ("ok", "{}"),
        ("flaky", "{}"),
        ("bad", "{}"),
        ("ok", "{oops"),
    ] {
        publish(&redis, &stream, ty, data).await;
    }
    let dlq = format!("{stream}:dlq");
    wait_for("everything settled", T, || async {
        handler.count() == 6
            && redis.stream_len(&dlq).await.unwrap() == 2
            && group_pending(&redis, &stream, "obs").await == 0
    })
    .await;
    let url = running.url("/metrics").await;
    let deadline = std::time::Instant::now() + T;
    let metrics = loop {
        let text = get_text(&url).await;
        if sample(&text, "weir_group_pending", &[("pool", "obs")]) == Some(0.0) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gauges were never refreshed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let m = |name: &str, labels: &[(&str, &str)]| sample(&metrics, name, labels);
    let p = ("pool", "obs");
    assert_eq!(
        m("weir_messages_processed_total", &[p, ("type", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        m("weir_messages_processed_total", &[p, ("type", "flaky")]),
        Some(1.0)
    );
    assert_eq!(
        m("weir_messages_processed_total", &[p, ("type", "ghost")]),
        Some(1.0)
    );
    assert_eq!(
        m("weir_messages_failed_total", &[p, ("type", "flaky")]),
        Some(1.0)
    );
    assert_eq!(
        m("weir_messages_failed_total", &[p, ("type", "bad")]),
        Some(1.0)
    );
    assert_eq!(
        m(
            "weir_messages_dead_lettered_total",
            &[p, ("type", "bad"), ("reason", "rejected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m(
            "weir_messages_dead_lettered_total",
            &[p, ("type", "ok"), ("reason", "invalid")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m("weir_messages_reclaimed_total", &[p]),
        Some(1.0),
        "the retry of `flaky` is not a reclaim; the ghost is"
    );
    assert_eq!(
        m("weir_handler_duration_seconds_count", &[p, ("type", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        m("weir_delivery_attempts_count", &[p]),
        Some(6.0),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("attempts"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        m("weir_delivery_attempts_bucket", &[p, ("le", "1")]),
        Some(4.0),
        "the flaky retry and the reclaimed ghost settled at attempt 2"
    );
    // Unlabelled and process-wide: other tests' engines in this process set it too.
    assert!(m("weir_dlq_length", &[]).is_some());
    assert_eq!(m("weir_in_flight", &[p]), Some(0.0));
    assert_eq!(m("weir_pool_paused", &[p]), Some(0.0));
    assert_eq!(
        m("weir_pool_concurrency", &[p]),
        Some(4.0),
        "a fixed pool reports its concurrency"
    );
    assert_eq!(m("weir_oldest_pending_age_seconds", &[p]), Some(0.0));
    assert_eq!(
        m("weir_entries_lost_total", &[p]),
        Some(0.0),
        "registered at zero from the start"
    );
    assert_eq!(
        m("weir_group_consumers", &[p]),
        Some(2.0),
        "this engine and the dead worker"
    );
    assert_every_ops_metric_is_exported(&metrics);
    running.stop().await;
}

/// Every `weir_*` metric named in the alert rules and the dashboard is one the engine exports.
fn assert_every_ops_metric_is_exported(metrics: &str) {
    let exported: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for file in [
        "ops/prometheus/weir-alerts.yml",
        "ops/grafana/weir-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut named = 0;
        for (i, _) in text.match_indices("weir_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| exported.contains(b))
                .unwrap_or(&name);
            assert!(
                exported.contains(base),
                "{file} uses `{name}`, which the engine does not export; exported: {exported:?}"
            );
            named += 1;
        }
        assert!(named >= 8, "{file} names only {named} metrics");
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = repo().join("ops/prometheus");
    for args in [
        vec!["check", "rules", "weir-alerts.yml"],
        vec!["test", "rules", "weir-alerts.test.yml"],
    ] {
        let out = Command::new("promtool").args(&args).current_dir(&dir).output().unwrap_or_else(|e| {
            panic!("promtool not found ({e}); install it with `sudo apt-get install -y prometheus` (./ops/test.sh does)")
        });
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn json_logs_parse_carry_the_fields_and_never_show_payloads_or_passwords() {
    let server = RedisServer::start();
    server.cli(&[
        "ACL", "SETUSER", "app", "on", ">hunter2", "~*", "&*", "+@all",
    ]);
    let stream = stream_name("logs");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[[pools]]\nname = \"logpool\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n",
        server.url_as("app", "hunter2"),
        "0"
    );
    std::fs::write(&path, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--log-format", "json", "-c", path.to_str().unwrap()])
        .env("WEIR_LOG", "info")
        // The documented switch: a success's `entry settled` line at INFO again.
        .env("WEIR_LOGGING__EACH_ENTRY", "true")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id());
    let redis = server.client().await;
    wait_for("group created", T, || async {
        group_pending(&redis, &stream, "logpool").await == 0
    })
    .await;
    redis
        .add(
            &stream,
            &[
                ("type", b"incident.event"),
                ("data", b"{\"secret\":\"SECRET-PAYLOAD-42\"}"),
                ("id", b"EV-9"),
            ],
        )
        .await
        .unwrap();
    wait_for("handled", T, || async {
        server
            .cli(&["XINFO", "GROUPS", &stream])
            .contains("entries-read\n1")
    })
    .await;
    wait_for("acknowledged", T, || async {
        group_pending(&redis, &stream, "logpool").await == 0
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("hunter2"),
        "password in the logs:\n{stderr}"
    );
    assert!(
        !stderr.contains("SECRET-PAYLOAD-42"),
        "payload logged at INFO:\n{stderr}"
    );
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let settled = lines
        .iter()
        .find(|l| l["message"] == "entry settled")
        .expect("no `entry settled` line");
    assert_eq!(settled["level"], "INFO");
    assert_eq!(settled["pool"], "logpool");
    assert_eq!(settled["type"], "incident.event");
    assert_eq!(settled["event_id"], "EV-9");
    assert_eq!(settled["attempt"], 1);
    assert_eq!(settled["outcome"], "processed");
    assert!(
        settled["entry_id"]
            .as_str()
            .is_some_and(|id| id.contains('-'))
    );
    assert!(settled["duration_ms"].as_f64().is_some());
    let aof_warnings = lines
        .iter()
        .filter(|l| {
            l["level"] == "WARN" && l["message"].as_str().unwrap_or("").contains("without AOF")
        })
        .count();
    assert_eq!(
        aof_warnings, 1,
        "the durability warning is logged once at start"
    );
    let starting = lines
        .iter()
        .find(|l| l["message"] == "weir starting")
        .unwrap();
    assert_eq!(
        starting["redis"],
        weir::redact_url(&server.url_as("app", "hunter2"))
    );
}

#[tokio::test]
async fn healthz_turns_degraded_at_the_configured_thresholds() {
    let server = RedisServer::start();
    let stream = stream_name("degraded");
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[health]\ndegraded_dlq_length = 1\ndegraded_lag = 3\n[http]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"h\"\ntypes = [\"job\"]\n",
        server.url()
    );
    let running = run(Engine::new(config(&text)).with_handler("h", Recorder::ok()));
    let url = running.url("/healthz").await;
    // Null until the engine listens.
    let status = || async {
        let Ok(response) = reqwest::get(&url).await else {
            return serde_json::Value::Null;
        };
        serde_json::from_str::<serde_json::Value>(&response.text().await.unwrap()).unwrap()
    };
    wait_for("healthy", T, || async {
        status().await["status"] == "healthy"
    })
    .await;
    let redis = server.client().await;
    publish(&redis, &stream, "nobody", "{}").await;
    wait_for("one dead letter", T, || async {
        redis.stream_len(&format!("{stream}:dlq")).await.unwrap() == 1
    })
    .await;
    assert_eq!(
        status().await["status"],
        "healthy",
        "at the threshold is still healthy"
    );
    publish(&redis, &stream, "nobody", "{}").await;
    wait_for("degraded above the DLQ threshold", T, || async {
        status().await["status"] == "degraded"
    })
    .await;
    let report = status().await;
    assert_eq!(report["dlqLength"], 2);
    assert_eq!(report["pools"][0]["name"], "h");
    running.stop().await;
}
