//! End-to-end benchmark: the `weir` binary (and, for latency, the library) against its own
//! redis-server, next to a same-run `redis-benchmark XADD -P16` reference. Each figure is
//! printed with its ratio to that reference (throughputs) or its target (times, sizes).
//!
//! ```sh
//! cargo bench --bench e2e                # every scenario, no persistence
//! cargo bench --bench e2e -- --aof       # the same with appendonly yes, appendfsync always
//! cargo bench --bench e2e -- --quick     # a tenth of the entries, for a smoke run
//! cargo bench --bench e2e -- latency reclaim   # only the named scenarios
//! ```
//!
//! Scenarios: consume, e2e, latency, http, publish, reclaim, janitor, replay, rss, cluster,
//! ordered, ordered-one-key, takeover. `BENCH_WEIR_BIN=path` runs another `weir` binary
//! (e.g. an older commit's) under this harness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::redis::Redis;
use weir::{Config, Delivery, Engine, Handler, Outcome};

mod common;

use common::free_port;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// The `weir` binary to run: this build's, or `BENCH_WEIR_BIN` (another build's, e.g. the
/// commit before a change, run by this same harness).
fn weir_bin() -> String {
    std::env::var("BENCH_WEIR_BIN").unwrap_or_else(|_| WEIR.to_string())
}
const STREAM: &str = "bench";

// ---------------------------------------------------------------------------------------
// redis-server, redis-benchmark and the weir binary

struct Server {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    fn start(aof: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let persistence: &[&str] = if aof {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = common::spawn_redis(port, dir.path(), persistence);
        Server { port, dir, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is needed: apt-get install -y redis-tools");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `redis-benchmark -P16` of `XADD key * type <ty> data {"i":1}`: entries/s.
    fn xadd_benchmark(&self, key: &str, ty: &str, n: u64) -> f64 {
        let out = Command::new("redis-benchmark")
            .args(["-p", &self.port.to_string(), "-q", "-P", "16", "-n"])
            .arg(n.to_string())
            .args(["XADD", key, "*", "type", ty, "data", r#"{"i":1}"#])
            .output()
            .expect("redis-benchmark is needed: apt-get install -y redis-tools");
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
        text.lines()
            .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
            .next_back()
            .unwrap_or(0.0)
    }

    /// CPU seconds (user + system) redis-server has used.
    fn cpu(&self) -> f64 {
        let info = self.cli(&["INFO", "cpu"]);
        info.lines()
            .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
            .sum()
    }

    /// Microseconds Redis spent in `commands` since the last CONFIG RESETSTAT.
    fn usec(&self, commands: &[&str]) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .filter(|l| {
                commands
                    .iter()
                    .any(|c| l.starts_with(&format!("cmdstat_{c}:")))
            })
            .filter_map(|l| {
                l.split("usec=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Calls of `command` since the last CONFIG RESETSTAT.
    fn calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
            .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Pipes `n` XADDs of `type noop.x data {"i":1} key k<i % keys>` (keys round-robin)
    /// through `redis-cli --pipe`.
    fn prefill_keyed(&self, n: u64, keys: u64) {
        use std::io::Write;
        let bulk = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        };
        let mut out = Vec::with_capacity(n as usize * 90);
        for i in 0..n {
            out.extend_from_slice(b"*9\r\n");
            for part in [
                &b"XADD"[..],
                STREAM.as_bytes(),
                b"*",
                b"type",
                b"noop.x",
                b"data",
            ] {
                bulk(&mut out, part);
            }
            bulk(&mut out, br#"{"i":1}"#);
            bulk(&mut out, b"key");
            bulk(&mut out, format!("k{}", i % keys).as_bytes());
        }
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&out).unwrap();
        assert!(child.wait().unwrap().success(), "redis-cli --pipe failed");
    }

    fn config(&self, pools: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("weir-{}.toml", free_port()));
        std::fs::write(
            &path,
            format!(
                "shutdown_grace_seconds = 2\n[redis]\nurl = \"{}\"\n[stream]\nname = \"{STREAM}\"\n\
                 max_len = 100000000\n{extra}[http]\nlisten = \"127.0.0.1:{}\"\n{pools}",
                self.url(),
                free_port()
            ),
        )
        .unwrap();
        path
    }

    async fn client(&self) -> Redis {
        let config = Config::from_toml(
            &format!(
                "[redis]\nurl = \"{}\"\n[stream]\nname = \"{STREAM}\"\n[[pools]]\nname = \"x\"\ntypes = [\"*\"]\n",
                self.url()
            ),
            self.dir.path(),
        )
        .unwrap();
        let redis = Redis::new(&config.redis).unwrap();
        redis.connect().await.unwrap();
        redis
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `weir run` process.
struct Weir(Child);

impl Weir {
    fn start(config: &Path) -> Weir {
        Weir(
            Command::new(weir_bin())
                .arg("-c")
                .arg(config)
                .arg("run")
                .env(
                    "WEIR_LOG",
                    std::env::var("BENCH_WEIR_LOG").unwrap_or_else(|_| "error".into()),
                )
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds (user + system) this process has used.
    fn cpu(&self) -> f64 {
        proc_cpu(&format!("/proc/{}/stat", self.0.id()))
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pool(concurrency: usize, handler: &str) -> String {
    format!(
        "[[pools]]\nname = \"p\"\nconcurrency = {concurrency}\ntypes = [\"*\"]\nhandler = {handler}\n"
    )
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether group `p` has read everything and acknowledged it.
async fn drained(redis: &Redis) -> bool {
    match redis.groups(STREAM).await {
        Ok(groups) => groups
            .iter()
            .any(|g| g.name == "p" && g.lag == Some(0) && g.pending == 0),
        Err(_) => false,
    }
}

async fn pending(redis: &Redis) -> u64 {
    redis
        .groups(STREAM)
        .await
        .ok()
        .and_then(|g| g.into_iter().find(|g| g.name == "p"))
        .map_or(0, |g| g.pending)
}

// ---------------------------------------------------------------------------------------
// A local HTTP endpoint for the `http` handler

#[derive(Default)]
struct Endpoint {
    hits: AtomicU64,
}

async fn serve(endpoint: Arc<Endpoint>) -> u16 {
    use axum::routing::post;
    let ok = {
        let e = endpoint.clone();
        move || {
            e.hits.fetch_add(1, Ordering::Relaxed);
            async { "ok" }
        }
    };
    let hang = {
        let e = endpoint.clone();
        move || {
            e.hits.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<&'static str>()
        }
    };
    let app = axum::Router::new()
        .route("/ok", post(ok))
        .route("/hang", post(hang));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

// ---------------------------------------------------------------------------------------
// Scenarios

struct Row {
    name: &'static str,
    figure: String,
    /// Ratio to the reference, for throughputs.
    ratio: Option<f64>,
    target: &'static str,
    met: bool,
}

struct Bench {
    server: Server,
    redis: Redis,
    reference: f64,
    n: u64,
    rows: Vec<Row>,
}

impl Bench {
    fn rate(&mut self, name: &'static str, n: u64, took: Duration, target: f64, extra: &str) {
        let rate = n as f64 / took.as_secs_f64();
        let ratio = rate / self.reference;
        println!(
            "  {name}: {n} in {:.2} s = {rate:.0}/s, ratio {ratio:.2}{extra}",
            took.as_secs_f64()
        );
        self.rows.push(Row {
            name,
            figure: format!("{rate:.0}/s{extra}"),
            ratio: Some(ratio),
            target: match target {
                t if t >= 0.8 => "≥ 0.80",
                t if t >= 0.6 => "≥ 0.60",
                t if t >= 0.4 => "≥ 0.40",
                t if t >= 0.3 => "≥ 0.30",
                _ => "—",
            },
            met: target == 0.0 || ratio >= target,
        });
    }

    fn figure(&mut self, name: &'static str, figure: String, target: &'static str, met: bool) {
        println!("  {name}: {figure} (target {target})");
        self.rows.push(Row {
            name,
            figure,
            ratio: None,
            target,
            met,
        });
    }

    async fn reset(&self) {
        self.server.cli(&["FLUSHALL"]);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
    }

    /// Until an engine's reader waits in a blocking XREADGROUP (Redis 7.0 lists a consumer
    /// only once something was delivered to it).
    async fn reader_blocked(&self) {
        wait_until("the engine's reader", Duration::from_secs(30), || async {
            self.server
                .cli(&["CLIENT", "LIST"])
                .contains("cmd=xreadgroup")
        })
        .await;
    }

    fn prefill(&self, n: u64) {
        self.server.xadd_benchmark(STREAM, "noop.x", n);
    }

    /// `n` entries pre-filled and consumed by one pool (`noop`, concurrency 64) with `extra`
    /// config: how long it took and the engine's CPU per entry (µs).
    async fn consume_once(&mut self, extra: &str) -> (Duration, f64) {
        self.reset().await;
        let n = self.n;
        self.prefill(n);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let config = self.server.config(&pool(64, "{ kind = \"noop\" }"), extra);
        let weir = Weir::start(&config);
        let redis = self.redis.clone();
        let took = wait_until("consume", Duration::from_secs(600), || drained(&redis)).await;
        let engine = weir.cpu() * 1e6 / n as f64;
        weir.stop();
        (took, engine)
    }

    /// 1. `n` entries pre-filled, one pool, `noop`, concurrency 64.
    async fn consume(&mut self) {
        let n = self.n;
        let (took, engine) = self.consume_once("").await;
        let usec = self
            .server
            .usec(&["xreadgroup", "xack", "xclaim", "xautoclaim", "xpending"]);
        let per = usec as f64 / n as f64;
        self.rate(
            "consume",
            n,
            took,
            0.6,
            &format!(", Redis {per:.2} µs/entry (target ≤ 4), engine CPU {engine:.2} µs/entry"),
        );
    }

    /// 1b. What telemetry costs consumption (issue 16: at most 5%): `consume` with per-value
    /// counting and the monitor hash on (`[telemetry] key = "/i"`) against both off, five
    /// rounds each, alternating which goes first; medians compared, because single runs on
    /// a shared 2-core machine vary by ±10%.
    async fn telemetry(&mut self) {
        let off = "[telemetry]\nmonitor = false\n";
        let on = "[telemetry]\nkey = \"/i\"\n";
        let (mut rates, mut cpus) = ([vec![], vec![]], [vec![], vec![]]);
        for round in 0..10 {
            let which = [0, 1, 1, 0][round % 4];
            let (took, engine) = self.consume_once([off, on][which]).await;
            rates[which].push(self.n as f64 / took.as_secs_f64());
            cpus[which].push(engine);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (rate_off, rate_on) = (median(&mut rates[0]), median(&mut rates[1]));
        let (cpu_off, cpu_on) = (median(&mut cpus[0]), median(&mut cpus[1]));
        let drop = (1.0 - rate_on / rate_off) * 100.0;
        self.figure(
            "telemetry cost",
            format!(
                "consume {rate_on:.0}/s on vs {rate_off:.0}/s off (medians of 5): {drop:.1}% drop; \
                 engine CPU {cpu_on:.2} vs {cpu_off:.2} µs/entry"
            ),
            "drop ≤ 5%",
            drop <= 5.0,
        );
    }

    /// 2. A publisher (redis-benchmark XADD -P16) and the engine at the same time.
    ///    Three runs (single runs vary by ±8 % here); the median is the figure.
    async fn end_to_end(&mut self) {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(self.end_to_end_once().await);
        }
        runs.sort_by_key(|(took, _)| *took);
        let rates: Vec<String> = runs
            .iter()
            .map(|(took, _)| format!("{:.0}", self.n as f64 / took.as_secs_f64()))
            .collect();
        let (took, extra) = &runs[1];
        let extra = format!(" (median of {}/s){extra}", rates.join(", "));
        self.rate("end-to-end", self.n, *took, 0.4, &extra);
    }

    /// One end-to-end run: how long it took, and where the time went.
    async fn end_to_end_once(&mut self) -> (Duration, String) {
        self.reset().await;
        let n = self.n;
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        let config = self.server.config(&pool(64, "{ kind = \"noop\" }"), "");
        let weir = Weir::start(&config);
        let redis = self.redis.clone();
        self.reader_blocked().await;
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let start = Instant::now();
        let port = self.server.port;
        let publisher = std::thread::spawn(move || {
            Command::new("redis-benchmark")
                .args(["-p", &port.to_string(), "-q", "-P", "16", "-n"])
                .arg(n.to_string())
                .args(["XADD", STREAM, "*", "type", "noop.x", "data", r#"{"i":1}"#])
                .output()
        });
        let _ = publisher.join();
        wait_until("end-to-end", Duration::from_secs(600), || async {
            redis.stream_len(STREAM).await.unwrap_or(0) >= n && drained(&redis).await
        })
        .await;
        let took = start.elapsed();
        let engine = weir.cpu() * 1e6 / n as f64;
        weir.stop();
        // Redis serves both sides on one thread: its time per entry bounds the rate.
        let per = |commands: &[&str]| self.server.usec(commands) as f64 / n as f64;
        let consume = per(&["xreadgroup", "xack", "xclaim", "xautoclaim", "xpending"]);
        let xadd = per(&["xadd"]);
        let extra = format!(
            ", engine CPU {engine:.2} µs/entry, Redis XADD {xadd:.2} + consume {consume:.2} µs/entry, {:.0} entries per XREADGROUP",
            n as f64 / self.server.calls("xreadgroup").max(1) as f64
        );
        println!("  run: {:.0}/s{extra}", n as f64 / took.as_secs_f64());
        (took, extra)
    }

    /// 3. Publish → handler start at a fixed 10k/s, in-process library engine.
    async fn latency(&mut self) {
        self.reset().await;
        let seconds = if self.n < 1_000_000 { 2 } else { 6 };
        let total = 10_000 * seconds;
        let config = std::fs::read_to_string(self.server.config(
            "[[pools]]\nname = \"p\"\nconcurrency = 64\ntypes = [\"*\"]\n",
            "",
        ))
        .unwrap();
        let config = Config::from_toml(&config, self.server.dir.path()).unwrap();
        let epoch = Instant::now();
        let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
        let handler = Latency {
            epoch,
            samples: samples.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let engine = tokio::spawn(Engine::new(config).with_handler("p", handler).run(async {
            let _ = stopped.await;
        }));
        let redis = self.redis.clone();
        self.reader_blocked().await;
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_micros(100 * i);
            tokio::time::sleep_until(due.into()).await;
            let t = epoch.elapsed().as_nanos().to_string();
            let fields: [(&str, &[u8]); 3] =
                [("type", b"lat"), ("data", b"{}"), ("t", t.as_bytes())];
            redis.add(STREAM, &fields).await.unwrap();
        }
        let all = wait_until("latency samples", Duration::from_secs(60), || async {
            samples.lock().unwrap().len() as u64 >= total || engine.is_finished()
        })
        .await;
        let _ = stop.send(());
        let result = engine.await.unwrap();
        assert!(
            result.is_ok(),
            "the engine failed: {result:?} after {all:?}"
        );
        let mut v = samples.lock().unwrap().clone();
        v.sort_unstable();
        let q = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1e6;
        let (p50, p99, p999) = (q(0.5), q(0.99), q(0.999));
        self.figure(
            "latency at 10k/s",
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms ({total} entries)"),
            "p50 < 1 ms, p99 < 5 ms",
            p50 < 1.0 && p99 < 5.0,
        );
    }

    /// 4. The `http` handler to a local keep-alive server.
    async fn http(&mut self) {
        self.reset().await;
        let n = self.n / 5;
        self.prefill(n);
        let endpoint = Arc::new(Endpoint::default());
        let port = serve(endpoint.clone()).await;
        let handler = format!("{{ kind = \"http\", url = \"http://127.0.0.1:{port}/ok\" }}");
        let config = self.server.config(&pool(64, &handler), "");
        let (own_before, redis_before) = (own_cpu(), self.server.cpu());
        let weir = Weir::start(&config);
        let redis = self.redis.clone();
        let took = wait_until("http", Duration::from_secs(600), || drained(&redis)).await;
        let engine = weir.cpu();
        weir.stop();
        assert!(endpoint.hits.load(Ordering::Relaxed) >= n);
        // Where the two cores went: the engine, the endpoint (this process: the axum server
        // and the poller), Redis. A sum near 2 × took means the machine is the bound.
        let per = |cpu: f64| cpu * 1e6 / n as f64;
        let (server, redis_cpu) = (own_cpu() - own_before, self.server.cpu() - redis_before);
        let busy = (engine + server + redis_cpu) / took.as_secs_f64();
        self.rate(
            "http handler",
            n,
            took,
            0.0,
            &format!(
                ", CPU µs/entry: engine {:.2}, endpoint {:.2}, Redis {:.2}; {busy:.2} of 2 cores busy",
                per(engine),
                per(server),
                per(redis_cpu)
            ),
        );
    }

    /// 5. Publishing: the library (pipelined batches) and `weir publish --ndjson`.
    async fn publish(&mut self) {
        self.reset().await;
        let n = self.n / 5;
        let config = Config::from_toml(
            &std::fs::read_to_string(self.server.config(&pool(1, "{ kind = \"noop\" }"), ""))
                .unwrap(),
            self.server.dir.path(),
        )
        .unwrap();
        let schemas = Arc::new(weir::schema::Schemas::load(config.schemas_dir.as_deref()).unwrap());
        let publisher = Arc::new(weir::publisher::Publisher::new(
            self.redis.clone(),
            &config,
            schemas,
        ));
        let batch = Arc::new(noop_batch(500));
        let (own_before, redis_before) = (own_cpu(), self.server.cpu());
        let start = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (publisher, batch) = (publisher.clone(), batch.clone());
                tokio::spawn(async move {
                    for _ in 0..n / 1000 {
                        publisher.publish_batch(&batch).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let took = start.elapsed();
        let (own, redis_cpu) = (own_cpu() - own_before, self.server.cpu() - redis_before);
        let written = self.redis.stream_len(STREAM).await.unwrap();
        let per = |cpu: f64| cpu * 1e6 / written as f64;
        let extra = format!(
            ", CPU µs/entry: publisher {:.2}, Redis {:.2}",
            per(own),
            per(redis_cpu)
        );
        self.rate("publish (library)", written, took, 0.8, &extra);

        // `weir publish --ndjson`: n/5 lines for the rate (comparable with earlier runs),
        // then n lines (1M) for the memory: peak RSS must stay flat.
        for (lines, memory) in [(n, false), (self.n, true)] {
            self.reset().await;
            let file = self.server.dir.path().join("events.ndjson");
            write_ndjson(&file, lines);
            let cfg = self.server.config(&pool(1, "{ kind = \"noop\" }"), "");
            let mut cmd = Command::new(weir_bin());
            cmd.arg("-c")
                .arg(&cfg)
                .args(["publish", "--ndjson"])
                .arg(&file);
            let redis_before = self.server.cpu();
            let run = Sampled::run(&mut cmd);
            let redis_cpu = self.server.cpu() - redis_before;
            assert!(run.success, "weir publish failed");
            let written = self.redis.stream_len(STREAM).await.unwrap();
            assert_eq!(written, lines);
            let _ = std::fs::remove_file(&file);
            let extra = format!(
                ", CPU µs/line: weir {:.2}, Redis {:.2}; peak RSS {:.1} MiB",
                run.cpu * 1e6 / lines as f64,
                redis_cpu * 1e6 / lines as f64,
                run.peak_rss_kib as f64 / 1024.0
            );
            if memory {
                let mib = run.peak_rss_kib as f64 / 1024.0;
                self.figure(
                    "publish --ndjson peak RSS",
                    format!(
                        "{lines} lines in {:.2} s ({:.0}/s){extra}",
                        run.took.as_secs_f64(),
                        lines as f64 / run.took.as_secs_f64()
                    ),
                    "< 64 MiB",
                    mib < 64.0,
                );
            } else {
                self.rate(
                    "publish (weir publish --ndjson)",
                    written,
                    run.took,
                    0.8,
                    &extra,
                );
            }
        }
    }

    /// 6. `kill -9` of a process with 1k entries in flight, until a second process has
    ///    handled them all.
    async fn reclaim(&mut self) {
        self.reset().await;
        let endpoint = Arc::new(Endpoint::default());
        let port = serve(endpoint.clone()).await;
        let extra = "[retry]\nvisibility_timeout_seconds = 2\n[janitor]\ninterval_seconds = 0.1\n";
        let hang = format!(
            "{{ kind = \"http\", url = \"http://127.0.0.1:{port}/hang\" }}\ntimeout_seconds = 600"
        );
        let first = self.server.config(&pool(1000, &hang), extra);
        let second = self.server.config(&pool(64, "{ kind = \"noop\" }"), extra);
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        self.prefill(1000);
        let mut dying = Weir::start(&first);
        wait_until("1k in flight", Duration::from_secs(60), || async {
            endpoint.hits.load(Ordering::Relaxed) >= 1000
        })
        .await;
        dying.kill9();
        let killed = Instant::now();
        let rescuer = Weir::start(&second);
        let redis = self.redis.clone();
        wait_until("reclaim", Duration::from_secs(60), || drained(&redis)).await;
        let took = killed.elapsed();
        rescuer.stop();
        self.figure(
            "reclaim 1k after kill -9",
            format!("{:.2} s (visibility timeout 2 s)", took.as_secs_f64()),
            "≤ visibility + 1 s",
            took <= Duration::from_secs(3),
        );
    }

    /// 7a. One janitor pass over 100k over-attempted pending entries.
    async fn janitor(&mut self) {
        self.reset().await;
        let n = self.n / 10;
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        self.prefill(n);
        // Delivered once to a consumer that is gone; max_attempts = 1 makes each one due.
        let read = Command::new("redis-cli")
            .args(["-p", &self.server.port.to_string()])
            .args(["XREADGROUP", "GROUP", "p", "gone", "COUNT"])
            .arg(n.to_string())
            .args(["STREAMS", STREAM, ">"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(read.success());
        assert_eq!(pending(&self.redis).await, n);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let extra = "[retry]\nmax_attempts = 1\nvisibility_timeout_seconds = 1\n[janitor]\ninterval_seconds = 0.1\n";
        let config = self.server.config(&pool(64, "{ kind = \"noop\" }"), extra);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let weir = Weir::start(&config);
        let redis = self.redis.clone();
        let dlq = format!("{STREAM}:dlq");
        let first = wait_until("janitor's first move", Duration::from_secs(60), || async {
            redis.stream_len(&dlq).await.unwrap_or(0) > 0
        })
        .await;
        let pass = wait_until("janitor", Duration::from_secs(600), || async {
            redis.stream_len(&dlq).await.unwrap_or(0) >= n
        })
        .await;
        let took = first + pass;
        weir.stop();
        assert_eq!(pending(&self.redis).await, 0);
        let usec = self.server.usec(&["eval", "xpending"]);

        self.figure(
            "janitor: pending → DLQ",
            format!(
                "{n} in {:.2} s: {:.2} s to the first move (start-up, first tick), the pass {:.2} s ({:.0}/s), Redis {:.1} µs/entry",
                took.as_secs_f64(),
                first.as_secs_f64(),
                pass.as_secs_f64(),
                n as f64 / pass.as_secs_f64(),
                usec as f64 / n as f64
            ),
            "100k < 2 s",
            pass < Duration::from_secs(2) || n < 100_000,
        );
    }

    /// 7b. `weir replay`: scanned (dry run) and re-published.
    async fn replay(&mut self) {
        self.reset().await;
        let n = self.n / 5;
        self.prefill(n);
        let config = self.server.config(&pool(1, "{ kind = \"noop\" }"), "");
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 60_000;
        for (name, dry) in [("replay scan (--dry-run)", true), ("replay publish", false)] {
            let mut cmd = Command::new(weir_bin());
            cmd.arg("-c").arg(&config).args([
                "replay",
                "--since",
                "0",
                "--until",
                &until.to_string(),
                "--json",
            ]);
            if dry {
                cmd.arg("--dry-run");
            }
            let start = Instant::now();
            let out = cmd.stderr(Stdio::null()).output().unwrap();
            let took = start.elapsed();
            assert!(out.status.success(), "weir replay failed: {out:?}");
            self.rate(name, n, took, 0.0, "");
        }
        assert_eq!(self.redis.stream_len(STREAM).await.unwrap(), 2 * n);
    }

    /// Scale-out: consume throughput on a local Redis Cluster, 1 shard vs 3 shards (with as
    /// many partitions) and 1 vs 2 engine processes, all on this machine.
    async fn cluster(&mut self) {
        let n = self.n / 5;
        let mut rates = Vec::new();
        for (shards, processes) in [(1, 1), (3, 1), (1, 2), (3, 2)] {
            let rate = cluster_run(shards, processes, n).await;
            println!("  {shards} shard(s), {processes} process(es): {rate:.0}/s");
            rates.push(((shards, processes), rate));
        }
        let base = rates[0].1;
        for ((shards, processes), rate) in rates {
            let name: &'static str = match (shards, processes) {
                (1, 1) => "cluster: 1 shard, 1 process",
                (3, 1) => "cluster: 3 shards, 1 process",
                (1, 2) => "cluster: 1 shard, 2 processes",
                _ => "cluster: 3 shards, 2 processes",
            };
            self.rows.push(Row {
                name,
                figure: format!(
                    "{rate:.0}/s, scaling ×{:.2} vs 1 shard 1 process",
                    rate / base
                ),
                ratio: Some(rate / self.reference),
                target: "—",
                met: true,
            });
        }
    }

    /// One drain of `n` keyed entries (`keys` keys round-robin) by one pool, `noop`,
    /// concurrency 64, ordered by field `key` or not: (took, engine CPU µs/entry, Redis µs
    /// per entry, XREADGROUP calls).
    async fn keyed_run(&mut self, n: u64, keys: u64, ordered: bool) -> (Duration, f64, f64, u64) {
        self.reset().await;
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        // An epoch counter already there: the first owner need not wait out a possible
        // earlier owner (see `fresh` in redis/lease.rs), which is start-up, not throughput.
        self.server
            .cli(&["SET", &format!("{STREAM}:owner:p:epoch"), "1"]);
        self.server.prefill_keyed(n, keys);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let order = if ordered { "order_key = \"key\"\n" } else { "" };
        let config = self
            .server
            .config(&format!("{}{order}", pool(64, "{ kind = \"noop\" }")), "");
        let weir = Weir::start(&config);
        let redis = self.redis.clone();
        let took = wait_until("keyed drain", Duration::from_secs(600), || drained(&redis)).await;
        let engine = weir.cpu() * 1e6 / n as f64;
        weir.stop();
        let usec = self.server.usec(&[
            "xreadgroup",
            "xack",
            "xclaim",
            "xautoclaim",
            "xpending",
            "eval",
            "evalsha",
        ]);
        let reads = self.server.calls("xreadgroup");
        (took, engine, usec as f64 / n as f64, reads)
    }

    /// 9. An ordered pool (`order_key = "key"`) over 1,000 keys round-robin against the
    ///    same pool unordered, on the same entries, three rounds alternating.
    async fn ordered(&mut self) {
        // The full `n`: at n/5 a run lasted under half a second, and the engine's start
        // (process, connections, the lease) weighed up to a fifth of it.
        let n = self.n;
        let keys = 1000;
        // Three rounds, the second ordered first: single runs vary by ±8 % here, so the
        // figure is the ratio of the medians; every pair's ratio is listed beside it.
        let mut pairs = Vec::new();
        for round in 1..=3 {
            let mut rates = [0.0; 2];
            let order = if round == 2 {
                [true, false]
            } else {
                [false, true]
            };
            for ordered in order {
                let (took, engine, redis, _) = self.keyed_run(n, keys, ordered).await;
                let rate = n as f64 / took.as_secs_f64();
                println!(
                    "  round {round}, {}: {n} in {:.2} s = {rate:.0}/s, ratio {:.2}, engine CPU {engine:.2} µs/entry, Redis {redis:.2} µs/entry",
                    if ordered { "ordered" } else { "unordered" },
                    took.as_secs_f64(),
                    rate / self.reference
                );
                rates[usize::from(ordered)] = rate;
            }
            pairs.push((rates[0], rates[1]));
        }
        let median = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = pairs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (u, o) = (median(|p| p.0), median(|p| p.1));
        let each: Vec<String> = pairs.iter().map(|p| format!("{:.2}", p.1 / p.0)).collect();
        self.rows.push(Row {
            name: "unordered, 1,000 keys",
            figure: format!("{u:.0}/s (median of 3 runs of {n} entries)"),
            ratio: Some(u / self.reference),
            target: "—",
            met: true,
        });
        self.rows.push(Row {
            name: "ordered, 1,000 keys",
            figure: format!(
                "{o:.0}/s (median of 3): ×{:.2} of unordered (pairs ×{})",
                o / u,
                each.join(", ×")
            ),
            ratio: Some(o / self.reference),
            target: "≥ 0.80× unordered",
            met: o / u >= 0.8,
        });
    }

    /// 10. An ordered pool with a single key: one entry at a time.
    async fn ordered_one_key(&mut self) {
        let n = self.n / 5;
        let (took, engine, redis, reads) = self.keyed_run(n, 1, true).await;
        let acks = self.server.calls("xack");
        let extra = format!(
            ", {:.1} µs/entry wall, engine CPU {engine:.2} µs/entry, Redis {redis:.2} µs/entry, {:.1} entries per XREADGROUP, {:.1} per XACK",
            took.as_secs_f64() * 1e6 / n as f64,
            n as f64 / reads.max(1) as f64,
            n as f64 / acks.max(1) as f64
        );
        self.rate("ordered, one key", n, took, 0.0, &extra);
    }

    /// 11. Takeover of an ordered pool (lease `visibility_timeout_seconds = 2`): a `weir
    ///     run` owner with entries pending is killed with `kill -9`, then (the standby now
    ///     owning) stopped with SIGTERM; each time, until the next standby hands out its
    ///     first entry. The handler is an HTTP call that takes 20 ms.
    async fn takeover(&mut self) {
        self.reset().await;
        let seen = Arc::new(Seen::default());
        let port = serve_seen(seen.clone()).await;
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        self.server
            .cli(&["SET", &format!("{STREAM}:owner:p:epoch"), "1"]);
        self.server.prefill_keyed(40_000, 1000);
        let handler = format!(
            "{{ kind = \"http\", url = \"http://127.0.0.1:{port}/slow\" }}\norder_key = \"key\"\n"
        );
        let extra = "[retry]\nvisibility_timeout_seconds = 2\n";
        let configs: Vec<PathBuf> = (0..3)
            .map(|_| self.server.config(&pool(64, &handler), extra))
            .collect();
        let members = format!("{STREAM}:members:p");
        let live = |n: usize| {
            let server = &self.server;
            let members = members.clone();
            async move {
                wait_until("standby heartbeat", Duration::from_secs(30), || async {
                    server
                        .cli(&["HLEN", &members])
                        .parse::<usize>()
                        .unwrap_or(0)
                        >= n
                })
                .await;
            }
        };

        // Owner A (epoch 2), standby B.
        let mut owner = Weir::start(&configs[0]);
        wait_until("A handling", Duration::from_secs(30), || async {
            seen.hits.load(Ordering::Relaxed) >= 500
        })
        .await;
        let standby = Weir::start(&configs[1]);
        live(2).await;
        // A random phase against the standby's polls (every lease/6): a fixed delay after its
        // first heartbeat would always kill at the same point of its poll period.
        tokio::time::sleep(Duration::from_millis(300) + jitter()).await;
        let epoch_a = seen.last_epoch.load(Ordering::Relaxed);
        owner.kill9();
        let killed = Instant::now();
        // Nobody acknowledges or claims anything until the lease expires.
        let lowest = self
            .server
            .cli(&["XPENDING", STREAM, "p", "-", "+", "1"])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        // The standby hands out pending entries in ID order, up to 64 keys at once: the
        // lowest pending entry is among its first 64 calls (which one arrives first is up to
        // the scheduler).
        let first = seen.first_after(epoch_a, 64, Duration::from_secs(30)).await;
        let after_kill = first.0.duration_since(killed);
        let in_order = first.1.contains(&lowest);
        self.figure(
            "takeover after kill -9 (lease 2 s)",
            format!(
                "{:.2} s to the first entry handed out by the standby (epoch {} → {}; lowest pending among its first 64: {})",
                after_kill.as_secs_f64(),
                epoch_a,
                epoch_a + 1,
                if in_order { "yes" } else { "no" }
            ),
            "≈ lease (2 s + ≤ 1/6 lease)",
            after_kill < Duration::from_millis(2500),
        );

        // B owns now; standby C; SIGTERM to B.
        let _next = Weir::start(&configs[2]);
        tokio::time::sleep(Duration::from_millis(500) + jitter()).await;
        let epoch_b = seen.last_epoch.load(Ordering::Relaxed);
        let pending_before = pending(&self.redis).await;
        let stopping = std::thread::spawn(move || {
            let signalled = Instant::now();
            standby.stop();
            (signalled, signalled.elapsed())
        });
        let first = seen.first_after(epoch_b, 1, Duration::from_secs(30)).await;
        let (signalled, exit) = stopping.join().unwrap();
        let after_term = first.0.duration_since(signalled);
        self.figure(
            "takeover after SIGTERM (lease 2 s)",
            format!(
                "{:.2} s to the first entry handed out by the standby (the owner exited after {:.2} s; epoch {} → {}; {} pending at the signal)",
                after_term.as_secs_f64(),
                exit.as_secs_f64(),
                epoch_b,
                epoch_b + 1,
                pending_before
            ),
            "well under the lease",
            after_term < Duration::from_secs(1),
        );
    }

    /// 8. RSS of an engine process with 10k entries in flight: first with handlers that only
    ///    hold their entries (this harness re-run as a library engine: the engine's own
    ///    cost), then with the `http` handler to a server that never answers (10k open HTTP
    ///    requests on top).
    async fn rss(&mut self) {
        self.reset().await;
        let config = self
            .server
            .config("[[pools]]\nname = \"p\"\nconcurrency = 10000\ntypes = [\"*\"]\ntimeout_seconds = 600\n", "");
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        let child = Command::new(std::env::current_exe().unwrap())
            .arg("--hold-engine")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let held = Weir(child);
        self.reader_blocked().await;
        let idle = held.rss_kib();
        self.prefill(10_000);
        let health = format!("http://127.0.0.1:{}/healthz", http_port(&config));
        wait_until("10k in flight", Duration::from_secs(120), || async {
            in_flight(&health).await >= 10_000
        })
        .await;
        let kib = held.rss_kib();
        drop(held);
        self.figure(
            "RSS, 10k in flight (library handler)",
            format!(
                "{:.1} MiB ({:.1} MiB before, concurrency 10000)",
                kib as f64 / 1024.0,
                idle as f64 / 1024.0
            ),
            "< 64 MiB",
            kib < 64 * 1024,
        );

        self.reset().await;
        let endpoint = Arc::new(Endpoint::default());
        let port = serve(endpoint.clone()).await;
        let hang = format!(
            "{{ kind = \"http\", url = \"http://127.0.0.1:{port}/hang\" }}\ntimeout_seconds = 600"
        );
        let config = self.server.config(&pool(10_000, &hang), "");
        self.server
            .cli(&["XGROUP", "CREATE", STREAM, "p", "$", "MKSTREAM"]);
        let weir = Weir::start(&config);
        self.reader_blocked().await;
        self.prefill(10_000);
        wait_until("10k in flight", Duration::from_secs(120), || async {
            endpoint.hits.load(Ordering::Relaxed) >= 10_000
        })
        .await;
        let kib = weir.rss_kib();
        drop(weir);
        self.figure(
            "RSS, 10k in flight (http handler)",
            format!("{:.1} MiB", kib as f64 / 1024.0),
            "—",
            true,
        );
    }
}

/// CPU seconds (user + system) this process has used.
fn own_cpu() -> f64 {
    proc_cpu("/proc/self/stat")
}

/// CPU seconds (user + system) of the process whose `/proc/<pid>/stat` is `path`
/// (utime + stime, in clock ticks of 1/100 s).
fn proc_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The `listen` port of a config written by [`Server::config`].
fn http_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse().ok())
        .unwrap()
}

/// Sum of the pools' `inFlight` in `/healthz`.
async fn in_flight(url: &str) -> u64 {
    let Ok(response) = reqwest::get(url).await else {
        return 0;
    };
    let Ok(body) = response.bytes().await else {
        return 0;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return 0;
    };
    body["pools"]
        .as_array()
        .map(|pools| pools.iter().filter_map(|p| p["inFlight"].as_u64()).sum())
        .unwrap_or(0)
}

/// 0–333 ms, from the clock's nanoseconds: one standby poll period at a 2 s lease.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(u64::from(nanos) % 333)
}

/// What the takeover scenario's endpoint saw: every request's arrival, owner epoch and
/// entry ID.
#[derive(Default)]
struct Seen {
    hits: AtomicU64,
    last_epoch: AtomicU64,
    log: std::sync::Mutex<Vec<(Instant, u64, String)>>,
}

impl Seen {
    /// The first request under an epoch above `epoch`: when it arrived, and the entry IDs
    /// of the first `first` requests under that epoch (once there are that many).
    async fn first_after(
        &self,
        epoch: u64,
        first: usize,
        timeout: Duration,
    ) -> (Instant, Vec<String>) {
        let find = || {
            let log = self.log.lock().unwrap();
            let next: Vec<&(Instant, u64, String)> = log
                .iter()
                .filter(|(_, e, _)| *e > epoch)
                .take(first)
                .collect();
            (next.len() == first).then(|| (next[0].0, next.iter().map(|r| r.2.clone()).collect()))
        };
        wait_until("requests under the next epoch", timeout, || async {
            find().is_some()
        })
        .await;
        find().unwrap()
    }
}

/// A local endpoint, `/slow`, that answers after 20 ms and records each request in `seen`.
async fn serve_seen(seen: Arc<Seen>) -> u16 {
    use axum::routing::post;
    let slow = move |headers: axum::http::HeaderMap| {
        let at = Instant::now();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let epoch = header("x-weir-owner-epoch").parse().unwrap_or(0);
        let id = header("x-weir-entry-id");
        seen.hits.fetch_add(1, Ordering::Relaxed);
        seen.last_epoch.fetch_max(epoch, Ordering::Relaxed);
        seen.log.lock().unwrap().push((at, epoch, id));
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            "ok"
        }
    };
    let app = axum::Router::new().route("/slow", post(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A handler that holds every entry until the process ends.
struct Hold;

#[async_trait::async_trait]
impl Handler for Hold {
    async fn handle(&self, _: &Delivery) -> Outcome {
        std::future::pending().await
    }
}

/// `--hold-engine CONFIG`: the library engine with [`Hold`] handlers, for the RSS scenario.
fn hold_engine(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let config = Config::from_toml(&text, config.parent().unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = runtime.block_on(
        Engine::new(config)
            .with_handler("p", Hold)
            .run(std::future::pending()),
    );
}

/// `n` NDJSON lines of `noop.x` events without ids, written to `path`.
fn write_ndjson(path: &Path, n: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(out, "{{\"type\":\"noop.x\",\"data\":{{\"i\":{i}}}}}").unwrap();
    }
    out.flush().unwrap();
}

/// A child process run to its end, watched through `/proc`: wall time, CPU and peak RSS.
struct Sampled {
    success: bool,
    took: Duration,
    /// user + system seconds, read from the exited (not yet reaped) child.
    cpu: f64,
    /// The largest VmHWM seen while it ran (polled every 2 ms).
    peak_rss_kib: u64,
}

impl Sampled {
    fn run(cmd: &mut Command) -> Sampled {
        let start = Instant::now();
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (stat, status) = (
            format!("/proc/{}/stat", child.id()),
            format!("/proc/{}/status", child.id()),
        );
        let mut peak_rss_kib = 0;
        // Not reaped until it is a zombie, so its CPU times can still be read.
        let cpu = loop {
            let text = std::fs::read_to_string(&stat).unwrap();
            let state = text.rsplit(')').next().unwrap().split_whitespace().next();
            if state == Some("Z") {
                break proc_cpu(&stat);
            }
            let hwm = std::fs::read_to_string(&status).unwrap_or_default();
            let kib = hwm
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            peak_rss_kib = peak_rss_kib.max(kib);
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = start.elapsed();
        let success = child.wait().unwrap().success();
        Sampled {
            success,
            took,
            cpu,
            peak_rss_kib,
        }
    }
}

/// `n` `noop.x` events without ids or keys, for the publisher.
fn noop_batch(n: usize) -> Vec<weir::publisher::NewEvent> {
    (0..n)
        .map(|i| weir::publisher::NewEvent {
            event_type: "noop.x".into(),
            data: format!("{{\"i\":{i}}}"),
            id: None,
            fields: BTreeMap::new(),
            key: None,
        })
        .collect()
}

/// A local Redis Cluster of `masters` redis-servers (no persistence), joined with
/// `redis-cli --cluster create`.
struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(masters: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        while ports.len() < masters {
            let port = free_port();
            if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                ports.push(port);
            }
        }
        let nodes = ports
            .iter()
            .map(|port| {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                common::spawn_redis(
                    *port,
                    &node_dir,
                    &[
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-announce-ip",
                        "127.0.0.1",
                    ],
                )
            })
            .collect();
        let cluster = Cluster {
            nodes,
            ports,
            _dir: dir,
        };
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        // `--cluster create` wants three masters; one node takes every slot itself.
        let out = if masters == 1 {
            Command::new("redis-cli")
                .args(["-p", &cluster.ports[0].to_string()])
                .args(["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
                .output()
                .unwrap()
        } else {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "cluster create: {out:?}");
        while !cluster.ports.iter().all(|p| {
            let out = Command::new("redis-cli")
                .args(["-p", &p.to_string(), "CLUSTER", "INFO"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
        }) {
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// One cluster run: `shards` masters, as many partitions, `processes` engines, `n` entries
/// pre-filled through the library publisher; entries/s until every partition is drained.
async fn cluster_run(shards: usize, processes: usize, n: u64) -> f64 {
    let cluster = Cluster::start(shards);
    let dir = tempfile::tempdir().unwrap();
    let text = |port: u16| {
        format!(
            "shutdown_grace_seconds = 2\n[redis]\nurl = \"{}\"\n[stream]\nname = \"{{bench}}:events\"\ndlq = \"{{bench}}:dlq\"\npartitions = {shards}\nmax_len = 100000000\n[http]\nlisten = \"127.0.0.1:{port}\"\n{}",
            cluster.url(),
            pool(64, "{ kind = \"noop\" }")
        )
    };
    let config = Config::from_toml(&text(free_port()), dir.path()).unwrap();
    let redis = Redis::new(&config.redis).unwrap();
    redis.connect().await.unwrap();
    let schemas = Arc::new(weir::schema::Schemas::load(None).unwrap());
    let publisher = weir::publisher::Publisher::new(redis.clone(), &config, schemas);
    let batch = noop_batch(1000);
    for _ in 0..n / 1000 {
        publisher.publish_batch(&batch).await.unwrap();
    }
    let paths: Vec<PathBuf> = (0..processes)
        .map(|i| {
            let path = dir.path().join(format!("weir-{i}.toml"));
            std::fs::write(&path, text(free_port())).unwrap();
            path
        })
        .collect();
    let start = Instant::now();
    let engines: Vec<Weir> = paths.iter().map(|p| Weir::start(p)).collect();
    let stream = config.stream.clone();
    wait_until("cluster drain", Duration::from_secs(600), || async {
        weir::status::totals(&redis, &stream).await.is_ok_and(|t| {
            t.groups
                .iter()
                .any(|g| g.name == "p" && g.lag == Some(0) && g.pending == 0)
                && t.stream_length >= n
        })
    })
    .await;
    let took = start.elapsed();
    for engine in engines {
        engine.stop();
    }
    n as f64 / took.as_secs_f64()
}

/// Records publish → handler-start delays (the publisher put its send time in field `t`).
struct Latency {
    epoch: Instant,
    samples: Arc<std::sync::Mutex<Vec<u64>>>,
}

#[async_trait::async_trait]
impl Handler for Latency {
    async fn handle(&self, d: &Delivery) -> Outcome {
        let now = self.epoch.elapsed().as_nanos() as u64;

        let sent = d
            .fields
            .iter()
            .find(|(k, _)| k == "t")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        if let Some(sent) = sent {
            self.samples.lock().unwrap().push(now.saturating_sub(sent));
        }
        Outcome::Success
    }
}

const SCENARIOS: [&str; 14] = [
    "consume",
    "telemetry",
    "e2e",
    "latency",
    "http",
    "publish",
    "reclaim",
    "janitor",
    "replay",
    "rss",
    "cluster",
    "ordered",
    "ordered-one-key",
    "takeover",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--hold-engine") {
        return hold_engine(Path::new(&args[i + 1]));
    }
    let aof = args.iter().any(|a| a == "--aof");
    let quick = args.iter().any(|a| a == "--quick");
    let chosen: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| args.iter().any(|a| a == s))
        .collect();
    let chosen = if chosen.is_empty() {
        SCENARIOS.to_vec()
    } else {
        chosen
    };
    if let Ok(filter) = std::env::var("BENCH_WEIR_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Server::start(aof);
        let n: u64 = if quick { 100_000 } else { 1_000_000 };
        let reference = server.xadd_benchmark("reference", "noop.x", n);
        println!(
            "redis-server {} ({}), reference redis-benchmark XADD -P16: {reference:.0}/s",
            server
                .cli(&["INFO", "server"])
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .unwrap_or("?"),
            if aof {
                "appendonly yes, appendfsync always"
            } else {
                "no persistence"
            },
        );
        println!("weir binary: {}", weir_bin());
        let redis = server.client().await;
        let mut bench = Bench {
            server,
            redis,
            reference,
            n,
            rows: Vec::new(),
        };
        for s in &chosen {
            println!("{s}:");
            match *s {
                "consume" => bench.consume().await,
                "telemetry" => bench.telemetry().await,
                "e2e" => bench.end_to_end().await,
                "latency" => bench.latency().await,
                "http" => bench.http().await,
                "publish" => bench.publish().await,
                "reclaim" => bench.reclaim().await,
                "janitor" => bench.janitor().await,
                "replay" => bench.replay().await,
                "rss" => bench.rss().await,
                "cluster" => bench.cluster().await,
                "ordered" => bench.ordered().await,
                "ordered-one-key" => bench.ordered_one_key().await,
                "takeover" => bench.takeover().await,
                _ => unreachable!(),
            }
        }
        println!("\n| scenario | result | ratio to XADD -P16 | target | met |");
        println!("| --- | --- | --- | --- | --- |");
        for r in &bench.rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.name,
                r.figure,
                r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
                r.target,
                if r.met { "yes" } else { "no" }
            );
        }
        println!("\nreference: {reference:.0}/s, N = {n}");
    });
}
