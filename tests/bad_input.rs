//! A corpus of bad input on the consume path (raw XADDs) and the publish path (`weir
//! publish`): no panic, no stalled pool, the right DLQ reason once, no retry loop.

use std::time::Duration;

use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

type Fields = Vec<(String, Vec<u8>)>;

fn f(pairs: &[(&str, &[u8])]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

fn deep_json(depth: usize) -> Vec<u8> {
    let mut v = "[".repeat(depth).into_bytes();
    v.extend("]".repeat(depth).into_bytes());
    v
}

#[tokio::test]
async fn bad_entries_are_dead_lettered_once_and_the_pool_keeps_serving() {
    let server = RedisServer::start();
    let stream = stream_name("corpus");
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n{}[retry]\nmax_attempts = 3\nretry_seconds = 0.05\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{}\"\n[[pools]]\nname = \"p\"\nconcurrency = 4\ntypes = [\"*\"]\n",
        server.url(),
        schemas_section(),
        "0"
    );
    // The handler rejects entries with thousands of fields (their DLQ move takes the
    // MULTI path: too many fields for one script call).
    let handler = Recorder::with(|d| {
        if d.fields.len() > 1000 {
            Outcome::permanent("too many fields")
        } else {
            Outcome::Success
        }
    });
    let running = run(Engine::new(config(&text)).with_handler("p", handler.clone()));
    let redis = server.client().await;
    let valid = envelope("incident.event");
    let many: Vec<(String, Vec<u8>)> = [
        ("type".to_string(), b"incident.event".to_vec()),
        ("data".to_string(), valid.clone().into_bytes()),
    ]
    .into_iter()
    .chain((0..10_000).map(|i| (format!("f{i}"), b"v".to_vec())))
    .collect();
    let corpus: Vec<(&str, Fields)> = vec![
        (
            "malformed",
            f(&[
                ("type", b"incident.event"),
                ("data", b"{\"a\":\"\xff\xfe\"}"),
            ]),
        ),
        ("malformed", f(&[("type", b"\xc3\x28"), ("data", b"{}")])),
        (
            "too_large",
            f(&[
                ("type", b"incident.event"),
                ("data", &vec![b'x'; 10 * 1024 * 1024]),
            ]),
        ),
        ("rejected", many),
        (
            "invalid",
            f(&[("type", b"incident.event"), ("data", &deep_json(100_000))]),
        ),
        (
            "invalid",
            f(&[("type", b"incident.event"), ("data", b"12")]),
        ),
        (
            "invalid",
            f(&[("type", b"incident.event"), ("data", b"{\"id\": 7}")]),
        ),
        ("malformed", f(&[("type", b""), ("data", b"{}")])),
        ("invalid", f(&[("type", b"incident.event"), ("data", b"")])),
        (
            "invalid",
            f(&[("type", b"incident.event"), ("data", b"{\"a\":\"\0\"}")]),
        ),
        ("malformed", f(&[("foo", b"bar")])),
    ];
    let mut expected = Vec::new();
    for (reason, fields) in &corpus {
        let fields: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        expected.push((
            redis.add(&stream, &fields).await.unwrap().to_string(),
            reason.to_string(),
        ));
    }
    // A good entry after all of them: the pool must still serve it.
    publish(&redis, &stream, "incident.event", &valid).await;
    let dlq = format!("{stream}:dlq");
    wait_for(
        "every bad entry dead-lettered and the good one handled",
        T,
        || async {
            redis.stream_len(&dlq).await.unwrap() == corpus.len() as u64
                && handler.seen().iter().any(|s| s.fields.is_empty())
        },
    )
    .await;
    wait_for("nothing pending", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    // Nothing pending: every entry is settled (a DLQ move acknowledges in the same script), so
    // no retry can come after this point and the DLQ is final.
    let mut got: Vec<(String, String)> = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page = redis.range(&dlq, &start, "+", 4).await.unwrap();
        got.extend(
            page.iter()
                .map(|e| (field(e, "dlq_source_id"), field(e, "dlq_reason"))),
        );
        if page.len() < 4 {
            break;
        }
        start = format!("({}", page.last().unwrap().id);
    }
    got.sort();
    expected.sort();
    assert_eq!(
        got, expected,
        "each bad entry exactly once, with its reason"
    );
    assert_eq!(
        handler.count(),
        2,
        "the 10k-field entry (rejected once) and the good entry: no retries"
    );
    running.stop().await;
}

#[test]
fn bad_publishes_exit_1_and_write_nothing() {
    let server = RedisServer::start();
    let stream = stream_name("badpublish");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streams.toml");
    std::fs::write(
        &config,
        format!("[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n{}[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n", server.url(), schemas_section()),
    )
    .unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("@{}", p.display())
    };
    let cases = [
        (file("utf8", b"{\"a\":\"\xff\"}"), "not valid UTF-8"),
        (file("big", &[b' '; 2 * 1024 * 1024]), "max_entry_bytes"),
        (file("deep", &deep_json(100_000)), "not valid JSON"),
        (file("nul", b"{\"a\":\"\0\"}"), "not valid JSON"),
        (file("number", b"12"), "invalid data"),
        (file("empty", b""), "not valid JSON"),
    ];
    for (data, needle) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("-c")
            .arg(&config)
            .args(["publish", "--type", "incident.event", "--data", &data])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{data}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{data}: expected `{needle}` in: {stderr}"
        );
    }
    assert_eq!(
        server.cli(&["EXISTS", &stream]),
        "0",
        "a bad publish wrote something"
    );
}
