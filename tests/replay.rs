//! `weir replay` against a real redis-server.

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::*;

struct Setup {
    server: RedisServer,
    stream: String,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

fn setup(test: &str) -> Setup {
    let server = RedisServer::start();
    let stream = stream_name(test);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streams.toml");
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n",
        server.url()
    );
    std::fs::write(&config, text).unwrap();
    Setup {
        server,
        stream,
        _dir: dir,
        config,
    }
}

impl Setup {
    async fn replay(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(&self.config)
            .arg("replay")
            .args(args)
            .output()
            .await
            .unwrap()
    }

    async fn replay_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.replay(&all).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `replay_of` of every entry written by `job`, in stream order.
    async fn replays_of(&self, job: &str) -> Vec<String> {
        let redis = self.server.client().await;
        let mut out = Vec::new();
        let mut start = "-".to_string();
        loop {
            let page = redis.range(&self.stream, &start, "+", 1000).await.unwrap();
            for e in &page {
                if field(e, "replay_job") == job {
                    out.push(field(e, "replay_of"));
                }
            }
            if page.len() < 1000 {
                return out;
            }
            start = format!("({}", page.last().unwrap().id);
        }
    }
}

#[tokio::test]
async fn window_boundaries_are_exact_to_the_millisecond_and_inclusive() {
    let s = setup("window");
    for (id, ty) in [
        ("1000-0", "a"),
        ("1000-1", "b"),
        ("1001-0", "a"),
        ("1002-0", "b"),
        ("1003-0", "a"),
        ("1003-1", "a"),
        ("1004-0", "a"),
    ] {
        s.server.cli(&[
            "XADD", &s.stream, id, "type", ty, "data", "{}", "tenant", "t1",
        ]);
    }
    let r = s
        .replay_json(&["--since", "1001", "--until", "1003", "--type", "a"])
        .await;
    assert_eq!(
        (
            r["scanned"].as_u64(),
            r["matched"].as_u64(),
            r["published"].as_u64()
        ),
        (Some(4), Some(3), Some(3))
    );
    let job = r["job"].as_str().unwrap().to_string();
    assert_eq!(s.replays_of(&job).await, ["1001-0", "1003-0", "1003-1"]);

    let r = s
        .replay_json(&["--since", "1000-1", "--until", "1970-01-01T00:00:01.002Z"])
        .await;
    assert_eq!(
        s.replays_of(r["job"].as_str().unwrap()).await,
        ["1000-1", "1001-0", "1002-0"]
    );

    // The copies keep the original fields and are marked.
    let redis = s.server.client().await;
    let copy = redis
        .range(&s.stream, "-", "+", 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| field(e, "replay_job") == job)
        .unwrap();
    assert_eq!(
        (
            field(&copy, "type"),
            field(&copy, "tenant"),
            field(&copy, "replay_group")
        ),
        ("a".into(), "t1".into(), String::new())
    );
    let hash = s
        .server
        .cli(&["HGETALL", &format!("{}:replay:{job}", s.stream)]);
    for expected in [
        "status",
        "done",
        "cursor",
        "scanned",
        "matched",
        "published",
        "started_at",
        "finished_at",
    ] {
        assert!(hash.contains(expected), "job hash lacks {expected}: {hash}");
    }
}

#[tokio::test]
async fn earlier_replays_are_skipped_unless_asked_for_and_dry_runs_write_nothing() {
    let s = setup("nested");
    for i in 0..5 {
        s.server.cli(&[
            "XADD",
            &s.stream,
            &format!("{}-0", 2000 + i),
            "type",
            if i % 2 == 0 { "a" } else { "b" },
            "data",
            "{}",
        ]);
    }
    let first = s
        .replay_json(&["--since", "2000", "--until", "-0s", "--group", "p"])
        .await;
    assert_eq!(first["published"], 5);
    let len = s.server.cli(&["XLEN", &s.stream]);
    assert_eq!(len, "10");

    let dry = s
        .replay_json(&["--since", "0", "--until", "-0s", "--dry-run"])
        .await;
    assert_eq!(
        (
            dry["matched"].as_u64(),
            dry["byType"]["a"].as_u64(),
            dry["byType"]["b"].as_u64()
        ),
        (Some(5), Some(3), Some(2))
    );
    assert_eq!(
        s.server.cli(&["XLEN", &s.stream]),
        "10",
        "a dry run wrote entries"
    );
    assert_eq!(
        s.server.cli(&[
            "KEYS",
            &format!("{}:replay:{}", s.stream, dry["job"].as_str().unwrap())
        ]),
        "",
        "a dry run wrote a job hash"
    );

    let with = s
        .replay_json(&[
            "--since",
            "0",
            "--until",
            "-0s",
            "--include-replays",
            "--limit",
            "7",
        ])
        .await;
    assert_eq!(
        (with["matched"].as_u64(), with["published"].as_u64()),
        (Some(7), Some(7))
    );
    let of = s.replays_of(with["job"].as_str().unwrap()).await;
    assert_eq!(of.len(), 7);
    assert!(
        of[5].ends_with("-0") && !of[5].starts_with("200"),
        "the 6th is a copy of a replay: {of:?}"
    );

    for bad in [
        vec!["--since", "-1h", "--until", "-2h"],
        vec!["--since", "0", "--until", "-0s", "--group", "nope"],
        vec!["--resume", "no-such-job"],
        vec!["--since", "yesterday", "--until", "-0s"],
    ] {
        assert_eq!(s.replay(&bad).await.status.code(), Some(2), "{bad:?}");
    }
}

#[tokio::test]
async fn a_killed_replay_resumes_with_no_duplicates_and_no_gaps() {
    let s = setup("resume");
    let redis = s.server.client().await;
    let originals: Vec<Vec<(String, String)>> = (0..20_000)
        .map(|i| {
            vec![
                ("type".into(), "a".into()),
                ("data".into(), format!("{{\"i\":{i}}}")),
            ]
        })
        .collect();
    let mut ids = Vec::new();
    for chunk in originals.chunks(1000) {
        ids.extend(
            redis
                .add_many(&s.stream, chunk)
                .await
                .unwrap()
                .into_iter()
                .map(|id| id.to_string()),
        );
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&s.config)
        .args([
            "replay",
            "--since",
            "0",
            "--until",
            "-0s",
            "--rate",
            "4000",
            "--batch-size",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id());
    let pattern = format!("{}:replay:*", s.stream);
    let mut key = String::new();
    wait_for(
        "the replay is a few batches in",
        Duration::from_secs(20),
        || {
            let found = s.server.cli(&["KEYS", &pattern]);
            if !found.is_empty() {
                key = found.clone();
            }
            let published: u64 = if key.is_empty() {
                0
            } else {
                s.server
                    .cli(&["HGET", &key, "published"])
                    .parse()
                    .unwrap_or(0)
            };
            async move { published >= 2000 }
        },
    )
    .await;
    child.kill().unwrap(); // SIGKILL mid-replay
    child.wait().unwrap();
    assert_eq!(s.server.cli(&["HGET", &key, "status"]), "running");
    let job = key.rsplit(':').next().unwrap().to_string();
    let resumed = s.replay_json(&["--resume", &job]).await;
    assert_eq!(resumed["status"], "done");
    assert_eq!(resumed["published"], 20_000);
    assert_eq!(
        s.replays_of(&job).await,
        ids,
        "duplicates or gaps after resume"
    );
    assert_eq!(
        s.replay(&["--resume", &job]).await.status.code(),
        Some(2),
        "a finished job cannot be resumed"
    );
}

/// Issue 22 item 10: a job resumed twice at once (two engines, or the CLI and the API) is
/// taken with a compare-and-set on its progress hash: the later resume carries on, the
/// earlier stops at its next batch, and no entry is published twice.
#[tokio::test]
async fn a_job_resumed_twice_at_once_publishes_each_entry_once() {
    let s = setup("resume-twice");
    let redis = s.server.client().await;
    let originals: Vec<Vec<(String, String)>> = (0..4_000)
        .map(|i| {
            vec![
                ("type".into(), "a".into()),
                ("data".into(), format!("{{\"i\":{i}}}")),
            ]
        })
        .collect();
    let mut ids = Vec::new();
    for chunk in originals.chunks(1000) {
        let added = redis.add_many(&s.stream, chunk).await.unwrap();
        ids.extend(added.into_iter().map(|id| id.to_string()));
    }
    let paced = ["--rate", "2000", "--batch-size", "100"];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(&s.config)
        .args(["replay", "--since", "0", "--until", "-0s"])
        .args(paced)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id());
    let pattern = format!("{}:replay:*", s.stream);
    wait_for(
        "the replay is a few batches in",
        Duration::from_secs(20),
        || {
            let key = s.server.cli(&["KEYS", &pattern]);
            let published: u64 = if key.is_empty() {
                0
            } else {
                s.server
                    .cli(&["HGET", &key, "published"])
                    .parse()
                    .unwrap_or(0)
            };
            async move { published >= 300 }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let key = s.server.cli(&["KEYS", &pattern]);
    let job = key.rsplit(':').next().unwrap().to_string();

    let args = [&["--resume", job.as_str()][..], &paced[..]].concat();
    let (a, b) = tokio::join!(s.replay(&args), s.replay(&args));
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "one resume finishes, the other stops: {codes:?}\n{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let stopped = if a.status.code() == Some(1) { &a } else { &b };
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains("resumed by another run"),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_eq!(s.server.cli(&["HGET", &key, "status"]), "done");
    assert_eq!(s.replays_of(&job).await, ids, "duplicates or gaps");
}

/// 2024-11-22T08:00:00Z, written `2024-11-22T10:00:00+02:00` below.
const T0: u64 = 1_732_262_400_000;

/// Entries around T0: (ms offset, type, tenant field, tenantId in data).
const TENANTS: [(i64, &str, &str, &str); 5] = [
    (-1, "a", "t1", "t1"),
    (0, "a", "t1", "t1"),
    (1, "a", "t2", "t2"),
    (2, "b", "t1", "t1"),
    (3, "a", "t1", "t9"),
];

fn tenant_entries(s: &Setup) {
    for (offset, ty, tenant, tenant_id) in TENANTS {
        let id = format!("{}-0", T0 as i64 + offset);
        let data = format!("{{\"tenantId\":\"{tenant_id}\",\"n\":{offset}}}");
        s.server.cli(&[
            "XADD", &s.stream, &id, "type", ty, "data", &data, "tenant", tenant,
        ]);
    }
}

fn ids(offsets: &[i64]) -> Vec<String> {
    offsets
        .iter()
        .map(|o| format!("{}-0", T0 as i64 + o))
        .collect()
}

#[tokio::test]
async fn replay_by_type_alone_by_tenant_field_by_pointer_with_now_and_an_offset() {
    let s = setup("where");
    tenant_entries(&s);
    // By type alone: --since defaults to the stream's start, --until to now.
    let r = s.replay_json(&["--type", "a", "--limit", "1000"]).await;
    assert_eq!(
        s.replays_of(r["job"].as_str().unwrap()).await,
        ids(&[-1, 0, 1, 3])
    );
    // By an entry field.
    let r = s
        .replay_json(&["--type", "a", "--where", "tenant=t1"])
        .await;
    assert_eq!(
        s.replays_of(r["job"].as_str().unwrap()).await,
        ids(&[-1, 0, 3])
    );
    // By a pointer into data, from an RFC 3339 time with an offset up to `now`.
    let r = s
        .replay_json(&[
            "--since",
            "2024-11-22T10:00:00+02:00",
            "--until",
            "now",
            "--where",
            "/tenantId=t1",
        ])
        .await;
    assert_eq!(s.replays_of(r["job"].as_str().unwrap()).await, ids(&[0, 2]));
    // Every condition must hold.
    let r = s
        .replay_json(&[
            "--where",
            "/tenantId=t1",
            "--where",
            "type=b",
            "--where",
            "/n=2",
        ])
        .await;
    assert_eq!(s.replays_of(r["job"].as_str().unwrap()).await, ids(&[2]));
    let bad = s.replay(&["--where", "tenant"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--where `tenant`"));
}

#[tokio::test]
async fn dlq_commands_take_where_conditions() {
    let s = setup("dlqwhere");
    let dlq = format!("{}:dlq", s.stream);
    for (offset, ty, tenant, tenant_id) in TENANTS {
        let data = format!("{{\"tenantId\":\"{tenant_id}\"}}");
        s.server.cli(&[
            "XADD",
            &dlq,
            &format!("{}-0", T0 as i64 + offset),
            "type",
            ty,
            "data",
            &data,
            "tenant",
            tenant,
            "dlq_reason",
            "invalid",
            "dlq_group",
            "p",
        ]);
    }
    let weir = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(&s.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let list = weir(&[
        "dlq",
        "list",
        "--where",
        "tenant=t1",
        "--where",
        "/tenantId=t1",
        "--json",
    ]);
    assert_eq!(
        list.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 3);
    let stats = weir(&["dlq", "stats", "--where", "/tenantId=t2", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["total"], 1, "{stats}");
    let purge = weir(&["dlq", "purge", "--where", "tenant=t2", "--yes"]);
    assert_eq!(
        purge.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&purge.stderr)
    );
    assert_eq!(s.server.cli(&["XLEN", &dlq]), "4");
    let dry = weir(&[
        "dlq",
        "reprocess",
        "--all",
        "--where",
        "/tenantId=t9",
        "--dry-run",
        "--json",
    ]);
    let dry: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["matched"], 1, "{dry}");
}
