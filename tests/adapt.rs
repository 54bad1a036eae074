//! Adaptive concurrency (contract §12) with the `weir` binary as a real process: it rises
//! under a backlog with a slow exec handler, and backs off by halves when a webhook answers
//! 503; read from `weir_pool_concurrency`, the INFO log lines and `weir status`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use weir::{Delivery, Engine, Handler, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(60);

/// A running `weir run`: its log file and `/metrics` address; killed on drop.
struct Weir {
    child: std::process::Child,
    log: PathBuf,
    metrics: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Weir {
    /// Starts `weir run` on a config of `server`, `stream` and `pools`.
    fn start(server: &RedisServer, stream: &str, pools: &str) -> Weir {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("streams.toml");
        let text = format!(
            "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[retry]\nmax_attempts = 100\nretry_seconds = 0.1\nmax_backoff_seconds = 0.2\n[janitor]\ninterval_seconds = 0.05\n[http]\nlisten = \"127.0.0.1:{port}\"\n{pools}",
            server.url()
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("weir.log");
        let child = weir(dir.path(), &["run", "-c", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Weir {
            child,
            log,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            config,
            _dir: dir,
        }
    }

    /// `weir_pool_concurrency{pool}` now; `None` until the engine serves it.
    async fn concurrency(&self, pool: &str) -> Option<u64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        let prefix = format!("weir_pool_concurrency{{pool=\"{pool}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Polls the gauge until `ok` holds for it; returns the value.
    async fn wait_concurrency(&self, pool: &str, what: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + T;
        loop {
            let now = self.concurrency(pool).await;
            if let Some(n) = now.filter(|n| ok(*n)) {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "weir_pool_concurrency{{pool={pool}}} never {what} (last {now:?}); log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `concurrency changed` lines as (from, to, line).
    fn changes(&self) -> Vec<(u64, u64, String)> {
        let number = |line: &str, key: &str| -> u64 {
            let at = line.find(&format!(" {key}=")).expect(key) + key.len() + 2;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .expect(key)
        };
        self.logs()
            .lines()
            .filter(|l| l.contains("concurrency changed"))
            .map(|l| (number(l, "from"), number(l, "to"), l.to_string()))
            .collect()
    }

    /// `weir status --json` against the same config.
    fn status(&self) -> serde_json::Value {
        let out = weir(self.config.parent().unwrap(), &["status", "--json", "-c"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weir(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(dir)
        .args(args)
        .env("WEIR_LOG", "info")
        .env_remove("WEIR_LOG_FORMAT")
        .env_remove("WEIR_CONFIG");
    cmd
}

/// `n` entries of type `ty`, published before the engine starts: the backlog.
async fn prefill(server: &RedisServer, stream: &str, ty: &str, n: usize) {
    let redis = server.client().await;
    for i in 0..n {
        publish(&redis, stream, ty, &format!("{{\"n\":{i}}}")).await;
    }
}

fn pool_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn concurrency_rises_under_a_backlog_with_a_slow_handler() {
    let server = RedisServer::start();
    let stream = stream_name("adapt-rise");
    prefill(&server, &stream, "slow", 400).await;
    let pools = r#"
[[pools]]
name = "slow"
concurrency = { min = 1, max = 8 }
scale_cooldown_seconds = 0.5
types = ["slow"]
handler = { kind = "exec", command = ["sh", "-c", "cat >/dev/null; sleep 0.05"] }
[[pools]]
name = "fixed"
concurrency = 3
types = ["other"]
handler = { kind = "noop" }
"#;
    let weir = Weir::start(&server, &stream, pools);
    assert_eq!(
        weir.wait_concurrency("fixed", "appeared", |_| true).await,
        3,
        "a fixed pool reports its concurrency"
    );
    let risen = weir
        .wait_concurrency("slow", "rose above min = 1", |n| n > 1)
        .await;
    assert!(risen <= 8, "{risen}");
    let changes = weir.changes();
    let (from, to, line) = changes.first().expect("a logged change");
    assert_eq!((*from, *to), (1, 2), "one additive step first: {line}");
    assert!(
        line.contains("pool=slow")
            && line.contains("change=\"grow\"")
            && line.contains("reason=backlog ")
            && line.contains("with latency holding"),
        "{line}"
    );
    // `weir status` shows the bounds and what the running process uses.
    let status = weir.status();
    let slow = &pool_status(&status, "slow")["concurrency"];
    assert_eq!(
        (&slow["adaptive"], &slow["min"], &slow["max"]),
        (&true.into(), &1.into(), &8.into()),
        "{slow}"
    );
    let processes = slow["processes"].as_array().expect("the running process");
    assert_eq!(processes.len(), 1, "{slow}");
    let current = processes[0]["current"].as_u64().unwrap();
    assert!((1..=8).contains(&current), "{slow}");
    let fixed = &pool_status(&status, "fixed")["concurrency"];
    assert_eq!(
        (&fixed["adaptive"], &fixed["min"], &fixed["max"]),
        (&false.into(), &3.into(), &3.into()),
        "{fixed}"
    );
    assert!(fixed.get("processes").is_none(), "{fixed}");
}

/// A webhook that answers 200 after 20 ms, or 503 once `overloaded` is set.
async fn webhook(overloaded: Arc<AtomicBool>) -> u16 {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let overloaded = overloaded.clone();
            async move {
                if overloaded.load(Ordering::Relaxed) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn concurrency_halves_when_the_webhook_answers_503() {
    let server = RedisServer::start();
    let stream = stream_name("adapt-fall");
    prefill(&server, &stream, "job", 2000).await;
    let overloaded = Arc::new(AtomicBool::new(false));
    let port = webhook(overloaded.clone()).await;
    let pools = format!(
        "[[pools]]\nname = \"hook\"\nconcurrency = {{ min = 1, max = 16 }}\nscale_cooldown_seconds = 0.5\ntypes = [\"job\"]\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:{port}/hook\" }}\n"
    );
    let weir = Weir::start(&server, &stream, &pools);
    // First it grows on the backlog, to a height worth backing off from.
    let high = weir
        .wait_concurrency("hook", "grew to 4 or more", |n| n >= 4)
        .await;
    let before = weir.changes().len();
    overloaded.store(true, Ordering::Relaxed);
    weir.wait_concurrency("hook", "fell to min = 1", |n| n == 1)
        .await;
    // What changed since the webhook turned to 503s: at most a grow decided just before,
    // then only halvings on overload, each logged with the pool, from, to and the reason.
    let after: Vec<(u64, u64, String)> = weir.changes().split_off(before);
    let first_backoff = after
        .iter()
        .position(|(_, _, line)| line.contains("change=\"back off\""))
        .unwrap_or_else(|| panic!("no back-off logged:\n{}", weir.logs()));
    let backoffs = &after[first_backoff..];
    for (from, to, line) in backoffs {
        assert!(
            line.contains("change=\"back off\""),
            "only back-offs once overloaded: {line}"
        );
        assert_eq!(*to, (from / 2).max(1), "halved, not below min: {line}");
        assert!(
            line.contains("reason=overload signals (") && line.contains("pool=hook"),
            "{line}"
        );
    }
    // From 4 or more down to 1 takes at least two halvings.
    assert!(backoffs[0].0 >= high.min(4), "{backoffs:?}");
    assert!(backoffs.len() >= 2, "{backoffs:?}");
}

/// A handler that takes 30 ms and records how many of its calls ran at once, at most.
#[derive(Clone, Default)]
struct Overlap {
    running: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl Handler for Overlap {
    async fn handle(&self, _: &Delivery) -> Outcome {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Outcome::Success
    }
}

#[tokio::test]
async fn an_adaptive_pool_runs_no_more_handlers_than_its_current_concurrency() {
    let server = RedisServer::start();
    let stream = stream_name("adapt-gate");
    prefill(&server, &stream, "job", 60).await;
    // A cooldown longer than the test: the pool stays at min = 2 of its 8 workers.
    let text = format!(
        "[redis]\nurl = \"{}\"\n[stream]\nname = \"{stream}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[pools]]\nname = \"gate\"\nconcurrency = {{ min = 2, max = 8 }}\nscale_cooldown_seconds = 600\ntypes = [\"job\"]\n",
        server.url()
    );
    let handler = Overlap::default();
    let running = run(Engine::new(config(&text)).with_handler("gate", handler.clone()));
    wait_for("every entry handled", T, || async {
        handler.calls.load(Ordering::SeqCst) == 60
    })
    .await;
    assert_eq!(
        handler.most.load(Ordering::SeqCst),
        2,
        "at most min = 2 at once"
    );
    running.stop().await;
}
