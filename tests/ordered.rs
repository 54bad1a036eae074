//! Ordered pools (contract §9): per-key order under concurrency, retries and dead letters
//! holding and releasing their key, keyless entries, one owner per stream with a fencing
//! epoch, handover on stop, kill -9 and SIGSTOP.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::{Delivery, Engine, Handler, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// One handler run: which key, which entry, when it ran, under which epoch.
#[derive(Debug, Clone)]
struct Run {
    key: String,
    entry: weir::redis::StreamId,
    start: Instant,
    end: Instant,
    attempt: u64,
    epoch: Option<u64>,
}

type Decide = dyn Fn(&Delivery, &str) -> Outcome + Send + Sync;

/// Records every run with its key (the `key` field), sleeping a pseudo-random 0–7 ms first.
#[derive(Clone)]
struct Timeline {
    runs: Arc<Mutex<Vec<Run>>>,
    decide: Arc<Decide>,
    /// Answers at once (no jitter) and says so: the reader runs it (`runs_inline`).
    inline: bool,
}

impl Timeline {
    fn new(decide: impl Fn(&Delivery, &str) -> Outcome + Send + Sync + 'static) -> Timeline {
        Timeline {
            runs: Arc::default(),
            decide: Arc::new(decide),
            inline: false,
        }
    }

    fn inline(mut self) -> Timeline {
        self.inline = true;
        self
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

fn key_of(d: &Delivery) -> String {
    d.fields
        .iter()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Handler for Timeline {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let key = key_of(d);
        let start = Instant::now();
        if !self.inline {
            let jitter = (d.entry_id.ms ^ d.entry_id.seq.wrapping_mul(7919)) % 8;
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        let outcome = (self.decide)(d, &key);
        self.runs.lock().unwrap().push(Run {
            key,
            entry: d.entry_id,
            start,
            end: Instant::now(),
            attempt: d.attempt,
            epoch: d.owner_epoch,
        });
        outcome
    }

    fn runs_inline(&self) -> bool {
        self.inline
    }
}

fn toml(server: &RedisServer, stream: &str, concurrency: usize, extra: &str) -> String {
    format!(
        r#"
shutdown_grace_seconds = 5
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 3
retry_seconds = 0.05
backoff_exp = 1
visibility_timeout_seconds = 2
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:0"
[[pools]]
name = "p"
concurrency = {concurrency}
types = ["job"]
order_key = "key"
{extra}
"#,
        url = server.url(),
    )
}

async fn publish_keyed(redis: &weir::redis::Redis, stream: &str, key: Option<&str>, n: usize) {
    let body = format!("{{\"n\":{n}}}");
    let mut fields: Vec<(&str, &[u8])> = vec![("type", b"job"), ("data", body.as_bytes())];
    if let Some(k) = key {
        fields.push(("key", k.as_bytes()));
    }
    redis.add(stream, &fields).await.unwrap();
}

/// Per key: runs never overlap and go in stream order (retries of one entry may repeat it).
fn assert_ordered(runs: &[Run]) {
    let mut by_key: HashMap<&str, Vec<&Run>> = HashMap::new();
    for r in runs.iter().filter(|r| !r.key.is_empty()) {
        by_key.entry(&r.key).or_default().push(r);
    }
    for (key, mut rs) in by_key {
        rs.sort_by_key(|r| r.start);
        for w in rs.windows(2) {
            assert!(
                w[0].end <= w[1].start,
                "key {key}: {} and {} ran at the same time",
                w[0].entry,
                w[1].entry
            );
            assert!(
                w[0].entry <= w[1].entry,
                "key {key}: {} ran after {}",
                w[1].entry,
                w[0].entry
            );
        }
    }
}

/// Whether runs of different keys overlapped in time (the pool is not serial).
fn keys_overlapped(runs: &[Run]) -> bool {
    runs.iter().any(|a| {
        runs.iter()
            .any(|b| a.key != b.key && a.start < b.end && b.start < a.end)
    })
}

#[tokio::test]
async fn one_key_at_a_time_in_stream_order_while_different_keys_run_together() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-order");
    let handler = Timeline::new(|_, _| Outcome::Success);
    let config = config(&toml(&server, &stream, 8, ""));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    let keys = ["a", "b", "c", "d", "e", "f"];
    for i in 0..300 {
        publish_keyed(&redis, &stream, Some(keys[i % keys.len()]), i).await;
    }
    wait_for("all 300 handled", T, || async { handler.count() == 300 }).await;
    let runs = handler.runs();
    assert_ordered(&runs);
    assert!(
        keys_overlapped(&runs),
        "different keys never ran at the same time"
    );
    assert!(runs.iter().all(|r| r.epoch.is_some_and(|e| e >= 1)));
    wait_for("all acknowledged", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn a_retry_holds_its_key_while_other_keys_go_on_and_a_dead_letter_releases_it() {
    a_retry_holds_its_key(false).await;
}

/// The same with the reader running the handler itself (its retries go to the workers).
#[tokio::test]
async fn a_retry_holds_its_key_under_an_inline_handler() {
    a_retry_holds_its_key(true).await;
}

async fn a_retry_holds_its_key(inline: bool) {
    let server = RedisServer::start();
    let stream = stream_name("ordered-retry");
    // Key `slow`'s first entry fails twice, then succeeds; key `dead`'s first entry fails
    // for good (3 attempts, then the DLQ); everything else succeeds.
    let handler = Timeline::new(|d, key| {
        let first = d.data.contains("\"n\":0}") || d.data.contains("\"n\":1}");
        match key {
            "slow" if first && d.attempt < 3 => Outcome::retry("not yet"),
            "dead" if first => Outcome::retry("never"),
            _ => Outcome::Success,
        }
    });
    let handler = if inline { handler.inline() } else { handler };
    let config = config(&toml(&server, &stream, 4, ""));
    let running = run(Engine::new(config).with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish_keyed(&redis, &stream, Some("slow"), 0).await;
    publish_keyed(&redis, &stream, Some("dead"), 1).await;
    for i in 2..12 {
        let key = ["slow", "dead", "other"][i % 3];
        publish_keyed(&redis, &stream, Some(key), i).await;
    }
    // 12 entries: slow's first runs 3 times, dead's first 3 times (then DLQ).
    wait_for("every entry settled", T, || async { handler.count() == 16 }).await;
    let runs = handler.runs();
    assert_ordered(&runs);
    let first_of = |key: &str| {
        runs.iter()
            .filter(|r| r.key == key)
            .min_by_key(|r| r.entry)
            .unwrap()
            .entry
    };
    let slow_first = first_of("slow");
    let slow_done = runs
        .iter()
        .filter(|r| r.entry == slow_first)
        .map(|r| r.end)
        .max()
        .unwrap();
    assert!(
        runs.iter()
            .filter(|r| r.key == "slow" && r.entry != slow_first)
            .all(|r| r.start >= slow_done),
        "a later entry of `slow` ran before its first entry succeeded"
    );
    let attempts: Vec<u64> = runs
        .iter()
        .filter(|r| r.entry == slow_first)
        .map(|r| r.attempt)
        .collect();
    assert_eq!(
        attempts,
        vec![1, 2, 3],
        "the retried entry keeps counting its attempts"
    );
    let other_first = runs
        .iter()
        .filter(|r| r.key == "other")
        .map(|r| r.start)
        .min()
        .unwrap();
    assert!(
        other_first < slow_done,
        "other keys waited for the retrying key"
    );
    let dead: Vec<_> = redis
        .range(&format!("{stream}:dlq"), "-", "+", 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "the failing entry was dead-lettered");
    assert_eq!(field(&dead[0], "key"), "dead");
    assert_eq!(field(&dead[0], "dlq_reason"), "max_attempts");
    assert_eq!(
        runs.iter().filter(|r| r.key == "dead").count(),
        3 + 3,
        "after the dead letter, the key's other entries ran"
    );
    running.stop().await;
}

#[tokio::test]
async fn entries_without_the_key_are_not_ordered() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-keyless");
    let handler = Timeline::new(|_, _| Outcome::Success);
    let slow = SlowFirst(handler.clone());
    let config = config(&toml(&server, &stream, 4, ""));
    let running = run(Engine::new(config).with_handler("p", slow));
    let redis = server.client().await;
    for i in 0..40 {
        publish_keyed(&redis, &stream, None, i).await;
    }
    wait_for("all 40 handled", T, || async { handler.count() == 40 }).await;
    let runs = handler.runs();
    let overlapped = runs.iter().any(|a| {
        runs.iter()
            .any(|b| a.entry != b.entry && a.start < b.end && b.start < a.end)
    });
    assert!(overlapped, "keyless entries were serialised");
    running.stop().await;
}

/// Wraps a timeline so each run lasts at least 20 ms (overlaps become certain).
#[derive(Clone)]
struct SlowFirst(Timeline);

#[async_trait::async_trait]
impl Handler for SlowFirst {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let outcome = self.0.handle(d).await;
        if let Some(last) = self.0.runs.lock().unwrap().last_mut() {
            last.start = start;
        }
        outcome
    }
}

fn owner(server: &RedisServer, stream: &str) -> HashMap<String, String> {
    let out = server.cli(&["HGETALL", &format!("{stream}:owner:p")]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

#[tokio::test]
async fn two_engines_one_owner_and_a_graceful_stop_hands_over_at_once() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-two");
    let (first, second) = (
        Timeline::new(|_, _| Outcome::Success),
        Timeline::new(|_, _| Outcome::Success),
    );
    let text = toml(&server, &stream, 4, "").replace(
        "visibility_timeout_seconds = 2",
        "visibility_timeout_seconds = 30",
    );
    let a = run(Engine::new(config(&text)).with_handler("p", first.clone()));
    wait_for("the first engine owns the pool", T, || async {
        owner(&server, &stream).contains_key("epoch")
    })
    .await;
    let b = run(Engine::new(config(&text)).with_handler("p", second.clone()));
    let redis = server.client().await;
    for i in 0..30 {
        publish_keyed(&redis, &stream, Some(["x", "y"][i % 2]), i).await;
    }
    wait_for("30 handled", T, || async {
        first.count() + second.count() == 30
    })
    .await;
    assert_eq!(second.count(), 0, "the standby handed out work");
    let epoch: u64 = owner(&server, &stream)["epoch"].parse().unwrap();
    let stopped = Instant::now();
    a.stop().await;
    for i in 30..40 {
        publish_keyed(&redis, &stream, Some(["x", "y"][i % 2]), i).await;
    }
    wait_for("the standby took over and handled the rest", T, || async {
        second.count() == 10
    })
    .await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(10),
        "handover took {handover:?}; the lease (30 s) should have been released at stop"
    );
    assert!(second.runs().iter().all(|r| r.epoch == Some(epoch + 1)));
    assert_eq!(owner(&server, &stream)["epoch"], (epoch + 1).to_string());
    b.stop().await;
    assert!(
        owner(&server, &stream).is_empty(),
        "a graceful stop releases the lease"
    );
}

/// Issue 22 item 6: a stop during the first start's fencing wait (no earlier lease state)
/// releases the lease, so a standby takes over at once instead of after the lease (8 s).
#[tokio::test]
async fn a_stop_during_the_first_start_wait_releases_the_lease() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-fresh-stop");
    let text = toml(&server, &stream, 4, "").replace(
        "visibility_timeout_seconds = 2",
        "visibility_timeout_seconds = 8",
    );
    let a =
        run(Engine::new(config(&text)).with_handler("p", Timeline::new(|_, _| Outcome::Success)));
    wait_for("the first engine took the lease", T, || async {
        owner(&server, &stream).contains_key("consumer")
    })
    .await;
    let first = owner(&server, &stream)["consumer"].clone();
    let stopped = Instant::now();
    a.stop().await;
    let second = Timeline::new(|_, _| Outcome::Success);
    let b = run(Engine::new(config(&text)).with_handler("p", second.clone()));
    wait_for("the standby took the lease", T, || async {
        owner(&server, &stream)
            .get("consumer")
            .is_some_and(|c| *c != first)
    })
    .await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}: the lease (8 s) was kept by a process stopped in its first wait"
    );
    b.stop().await;
}

#[test]
fn bad_order_keys_are_config_errors_naming_the_key() {
    for (value, fragment) in [("", "is empty"), ("/bad~pointer", "`~` must be followed")] {
        let text = format!(
            "[[pools]]\nname = \"p\"\ntypes = [\"a\"]\nhandler = {{ kind = \"log\" }}\norder_key = \"{value}\"\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streams.toml");
        std::fs::write(&path, text).unwrap();
        let err = weir::Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("pools[0].order_key"), "{err}");
        assert!(err.contains(fragment), "{err}");
    }
}

/// A `weir run` process whose exec handler appends `<entry id> <epoch>` to `log`.
fn spawn_owner(
    dir: &Path,
    server: &RedisServer,
    stream: &str,
    log: &Path,
    handler_sleep: &str,
) -> std::process::Child {
    let script = format!(
        "sleep {handler_sleep}; echo \"$WEIR_ENTRY_ID $WEIR_OWNER_EPOCH\" >> {}",
        log.display()
    );
    let handler = format!("{{ kind = \"exec\", command = [\"sh\", \"-c\", {script:?}] }}");
    let text = toml(
        server,
        stream,
        4,
        &format!("handler = {handler}\ntimeout_seconds = 60\n"),
    );
    let path = dir.join("streams.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c", path.to_str().unwrap()])
        .env("WEIR_LOG", "info")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn kill_9_of_the_owner_is_taken_over_after_expiry_pending_first_in_order() {
    kill_9_of_the_owner_is_taken_over(Timeline::new(|_, _| Outcome::Success)).await;
}

#[tokio::test]
async fn kill_9_of_the_owner_is_taken_over_by_an_inline_reader() {
    kill_9_of_the_owner_is_taken_over(Timeline::new(|_, _| Outcome::Success).inline()).await;
}

async fn kill_9_of_the_owner_is_taken_over(handler: Timeline) {
    let server = RedisServer::start();
    let stream = stream_name("ordered-kill9");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handled");
    // Each handler run takes 30 s: the first process holds its entries in flight.
    let mut first = spawn_owner(dir.path(), &server, &stream, &log, "30");
    let _reaper = Reaper(first.id());
    wait_for("the process owns the pool", T, || async {
        owner(&server, &stream).contains_key("epoch")
    })
    .await;
    let epoch: u64 = owner(&server, &stream)["epoch"].parse().unwrap();
    let redis = server.client().await;
    for i in 0..20 {
        publish_keyed(&redis, &stream, Some(["k1", "k2", "k3"][i % 3]), i).await;
    }
    wait_for("three keys in flight in the owner", T, || async {
        group_pending(&redis, &stream, "p").await == 20
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();
    let running =
        run(Engine::new(config(&toml(&server, &stream, 4, ""))).with_handler("p", handler.clone()));
    wait_for("all 20 handled by the new owner", T, || async {
        handler.count() == 20
    })
    .await;
    assert!(
        killed.elapsed() >= Duration::from_millis(1000),
        "taken over before the lease could expire"
    );
    let runs = handler.runs();
    assert_ordered(&runs);
    assert!(
        runs.iter().all(|r| r.epoch == Some(epoch + 1)),
        "the handler sees epoch + 1"
    );
    assert!(runs.iter().all(|r| r.attempt >= 1));
    assert!(
        log_lines(&log).is_empty(),
        "the killed process finished nothing"
    );
    running.stop().await;
}

#[tokio::test]
async fn an_owner_stopped_past_its_lease_hands_out_nothing_when_it_wakes() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-sigstop");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handled");
    let mut first = spawn_owner(dir.path(), &server, &stream, &log, "0");
    let _reaper = Reaper(first.id());
    let redis = server.client().await;
    for i in 0..6 {
        publish_keyed(&redis, &stream, Some("k"), i).await;
    }
    wait_for("the process handled the first six", T, || async {
        log_lines(&log).len() == 6
    })
    .await;
    let epoch: u64 = owner(&server, &stream)["epoch"].parse().unwrap();
    assert!(
        Command::new("kill")
            .args(["-STOP", &first.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let handler = Timeline::new(|_, _| Outcome::Success);
    let running =
        run(Engine::new(config(&toml(&server, &stream, 4, ""))).with_handler("p", handler.clone()));
    wait_for("the standby took over after the expiry", T, || async {
        owner(&server, &stream).get("epoch").map(String::as_str) == Some(&*(epoch + 1).to_string())
    })
    .await;
    for i in 6..16 {
        publish_keyed(&redis, &stream, Some("k"), i).await;
    }
    wait_for("the new owner handled ten", T, || async {
        handler.count() == 10
    })
    .await;
    assert!(
        Command::new("kill")
            .args(["-CONT", &first.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    for i in 16..26 {
        publish_keyed(&redis, &stream, Some("k"), i).await;
    }
    wait_for("the new owner handled all twenty", T, || async {
        handler.count() == 20
    })
    .await;
    // The woken process had a second to act on what it held before it stopped.
    wait_for("the woken process noticed it lost the lease", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    assert_eq!(
        log_lines(&log).len(),
        6,
        "the stale owner handled entries after waking: {:?}",
        log_lines(&log)
    );
    assert_ordered(&handler.runs());
    let _ = first.kill();
    let _ = first.wait();
    running.stop().await;
}

/// An inline reader fences each entry of its batch, not just the batch: when the lease is
/// lost while one entry's handler runs, the rest of the batch is left pending and runs only
/// under the next epoch.
#[tokio::test]
async fn an_inline_batch_stops_where_the_lease_was_lost() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-fence-inline");
    let redis = server.client().await;
    // Published before the engine starts, so its first read takes them as one batch.
    publish_keyed(&redis, &stream, Some("gate"), 0).await;
    for i in 1..11 {
        publish_keyed(&redis, &stream, Some(["a", "b"][i % 2]), i).await;
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Gated::new(
        Timeline::new(|_, _| Outcome::Success).inline(),
        gate.clone(),
        "gate",
    );
    let running =
        run(Engine::new(config(&toml(&server, &stream, 4, ""))).with_handler("p", handler.clone()));
    wait_for("the first entry is in its handler", T, || async {
        handler.entered.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    let epoch: u64 = owner(&server, &stream)["epoch"].parse().unwrap();
    // Another process takes the lease (for a second) while the handler runs.
    let lease = format!("{stream}:owner:p");
    server.cli(&["HSET", &lease, "consumer", "intruder"]);
    server.cli(&["PEXPIRE", &lease, "1000"]);
    let metrics_url = running.url("/metrics").await;
    // Not owning for longer than a renewal's validity (half the 2 s lease): a renewal sent
    // just before the theft may still confirm late, and allows hand-outs for that long.
    let since = Mutex::new(None::<Instant>);
    wait_for("the engine gave the lease up", T, || async {
        let text = get_text(&metrics_url).await;
        let owned = gauge(&text, "weir_pool_owned_partitions{pool=\"p\"}") != Some(0.0);
        let mut since = since.lock().unwrap();
        if owned {
            *since = None;
            return false;
        }
        since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(1200)
    })
    .await;
    gate.add_permits(1);
    wait_for("all 11 handled", T, || async {
        handler.timeline.count() == 11
    })
    .await;
    wait_for("nothing pending", T, || async {
        group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    let runs = handler.timeline.runs();
    assert_ordered(&runs);
    assert_eq!(runs[0].key, "gate");
    assert_eq!(runs[0].epoch, Some(epoch));
    for r in &runs[1..] {
        assert!(
            r.epoch.is_some_and(|e| e > epoch),
            "entry {} ran under epoch {:?} after epoch {epoch} was lost",
            r.entry,
            r.epoch
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn a_hot_key_keeps_read_ahead_bounded_other_keys_flow_and_status_shows_the_owner() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-hot");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let hot_gate = gate.clone();
    // The hot key's entries wait on the gate; the others go straight through.
    let handler = Gated::new(Timeline::new(|_, _| Outcome::Success), hot_gate, "hot");
    let text = toml(&server, &stream, 4, "read_count = 16\n");
    let running = run(Engine::new(config(&text)).with_handler("p", handler.clone()));
    let redis = server.client().await;
    // Other keys interleaved with the hot one at first, then a long hot backlog, then more.
    for i in 0..10 {
        publish_keyed(&redis, &stream, Some("hot"), i).await;
        publish_keyed(&redis, &stream, Some(["a", "b"][i % 2]), i).await;
    }
    for i in 10..600 {
        publish_keyed(&redis, &stream, Some("hot"), i).await;
    }
    for i in 10..40 {
        publish_keyed(&redis, &stream, Some(["a", "b"][i % 2]), i).await;
    }
    wait_for(
        "the other keys near the hot one flowed past it",
        T,
        || async { handler.timeline.count() == 10 },
    )
    .await;
    // Only `concurrency + read_count` = 20 entries are ever held: once the other keys'
    // entries settled, the hot key's first runs, 19 wait behind it, and the reader stops
    // there instead of buffering 600.
    let metrics_url = running.url("/metrics").await;
    wait_for("the waiting gauge shows the bounded backlog", T, || async {
        let text = get_text(&metrics_url).await;
        gauge(&text, "weir_ordered_waiting{pool=\"p\"}") == Some(19.0)
            && gauge(&text, "weir_pool_owned_partitions{pool=\"p\"}") == Some(1.0)
    })
    .await;
    let xinfo = server.cli(&["XPENDING", &stream, "p"]);
    let pending: u64 = xinfo.lines().next().unwrap().parse().unwrap();
    assert!(pending <= 20, "the reader read ahead {pending} entries");
    // Releasing the hot key lets everything through, the other keys included.
    gate.add_permits(100_000);
    wait_for("all 640 handled", Duration::from_secs(60), || async {
        handler.timeline.count() == 640
    })
    .await;
    assert_ordered(&handler.timeline.runs());

    let status = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["status", "--json"])
        .env("WEIR_CONFIG", {
            let dir = tempfile::tempdir().unwrap().keep();
            let path = dir.join("streams.toml");
            std::fs::write(&path, &text).unwrap();
            path
        })
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let pool = &status["pools"][0];
    assert_eq!(pool["orderKey"], "key");
    assert_eq!(pool["owners"][0]["stream"], stream);
    assert!(
        pool["owners"][0]["consumer"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(pool["owners"][0]["epoch"], 1);
    let health = get_text(running.url("/healthz").await).await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["pools"][0]["owners"][0]["epoch"], 1);
    running.stop().await;
}

fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// A [`Timeline`] whose entries of key `at` each wait for a permit of `gate` first.
#[derive(Clone)]
struct Gated {
    timeline: Timeline,
    gate: Arc<tokio::sync::Semaphore>,
    at: &'static str,
    /// Set once an entry of key `at` waits at the gate.
    entered: Arc<std::sync::atomic::AtomicBool>,
}

impl Gated {
    fn new(timeline: Timeline, gate: Arc<tokio::sync::Semaphore>, at: &'static str) -> Gated {
        Gated {
            timeline,
            gate,
            at,
            entered: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl Handler for Gated {
    async fn handle(&self, d: &Delivery) -> Outcome {
        if key_of(d) == self.at {
            self.entered
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
        }
        self.timeline.handle(d).await
    }

    fn runs_inline(&self) -> bool {
        self.timeline.inline
    }
}

#[tokio::test]
async fn three_partitions_two_processes_share_ownership_and_one_takes_all_when_the_other_stops() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-parts");
    let text = toml(&server, &stream, 4, "").replace(
        &format!("name = \"{stream}\""),
        &format!("name = \"{{{stream}}}:events\"\ndlq = \"{{{stream}}}:dlq\"\npartitions = 3"),
    );
    let (first, second) = (
        Timeline::new(|_, _| Outcome::Success),
        Timeline::new(|_, _| Outcome::Success),
    );
    let lease = |i: usize, field: &str| {
        server
            .cli(&["HGET", &format!("{{{stream}:{i}}}:events:owner:p"), field])
            .trim()
            .to_string()
    };
    let owners = || (0..3).map(|i| lease(i, "consumer")).collect::<Vec<_>>();
    let a = run(Engine::new(config(&text)).with_handler("p", first.clone()));
    wait_for("the first engine owns every partition", T, || async {
        let o = owners();
        o.iter().all(|c| !c.is_empty()) && o.iter().all(|c| *c == o[0])
    })
    .await;
    let owner_a = lease(0, "consumer");
    let b = run(Engine::new(config(&text)).with_handler("p", second.clone()));
    wait_for(
        "the second engine got a share of the partitions",
        T,
        || async {
            let o = owners();
            let distinct: std::collections::HashSet<_> = o.iter().collect();
            o.iter().all(|c| !c.is_empty()) && distinct.len() == 2
        },
    )
    .await;
    let cfg = config(&text);
    let schemas = Arc::new(weir::schema::Schemas::load(None).unwrap());
    let publisher = weir::publisher::Publisher::new(server.client().await, &cfg, schemas);
    let publish = |from: usize, to: usize| {
        let publisher = &publisher;
        async move {
            for i in from..to {
                let key = format!("k{}", i % 12);
                let event = weir::publisher::NewEvent {
                    event_type: "job".into(),
                    data: format!("{{\"n\":{i}}}"),
                    id: None,
                    key: Some(key.clone()),
                    fields: [("key".to_string(), key)].into(),
                };
                publisher.publish(&event).await.unwrap().unwrap();
            }
        }
    };
    publish(0, 60).await;
    wait_for("60 handled", T, || async {
        first.count() + second.count() == 60
    })
    .await;
    assert!(
        first.count() > 0 && second.count() > 0,
        "both processes handled their partitions: {} and {}",
        first.count(),
        second.count()
    );
    let epochs: Vec<u64> = (0..3).map(|i| lease(i, "epoch").parse().unwrap()).collect();
    let of_a: Vec<usize> = (0..3)
        .filter(|i| lease(*i, "consumer") == owner_a)
        .collect();
    a.stop().await;
    publish(60, 120).await;
    wait_for("the other process took every partition over", T, || async {
        first.count() + second.count() == 120
    })
    .await;
    for i in of_a {
        assert_eq!(
            lease(i, "epoch"),
            (epochs[i] + 1).to_string(),
            "partition {i}"
        );
    }
    assert!((0..3).all(|i| lease(i, "consumer") != owner_a));
    assert_ordered(&[first.runs(), second.runs()].concat());
    b.stop().await;
}

#[tokio::test]
async fn a_vanished_lease_never_gives_two_owners_at_once() {
    let server = RedisServer::start();
    let stream = stream_name("ordered-vanish");
    let (first, second) = (
        Timeline::new(|_, _| Outcome::Success),
        Timeline::new(|_, _| Outcome::Success),
    );
    let text = toml(&server, &stream, 4, "");
    let a = run(Engine::new(config(&text)).with_handler("p", first.clone()));
    wait_for("the first engine owns the pool", T, || async {
        owner(&server, &stream).contains_key("epoch")
    })
    .await;
    let b = run(Engine::new(config(&text)).with_handler("p", second.clone()));
    let redis = server.client().await;
    for i in 0..40 {
        publish_keyed(&redis, &stream, Some(["x", "y", "z"][i % 3]), i).await;
    }
    wait_for("40 handled", T, || async {
        first.count() + second.count() == 40
    })
    .await;
    // Redis forgets the lease and its epoch counter (a restart without persistence).
    let lease = format!("{stream}:owner:p");
    server.cli(&["DEL", &lease, &format!("{lease}:epoch")]);
    for i in 40..100 {
        publish_keyed(&redis, &stream, Some(["x", "y", "z"][i % 3]), i).await;
    }
    wait_for("all 100 handled", T, || async {
        first.count() + second.count() == 100
    })
    .await;
    let all = [first.runs(), second.runs()].concat();
    assert_ordered(&all);
    let mut ids: Vec<_> = all.iter().map(|r| r.entry).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "every entry handled");
    wait_for("one owner again", T, || async {
        owner(&server, &stream).contains_key("consumer")
    })
    .await;
    a.stop().await;
    b.stop().await;
}
