//! Consuming: a pre-filled stream drained by weir (`noop`, concurrency 64) next to the bare
//! driver loop (`baseline.rs`) and weir as shipped (`consume`, `baseline`, `defaults`), and
//! publishing and consuming at once (`e2e`).

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use super::Bench;
use super::baseline;
use super::common::process::{Logging, Weir, own_cpu};
use super::common::server::{CONSUME_COMMANDS, STREAM, pool};
use super::common::wait::{drained, pending, wait_until};

/// One drain of `n` pre-filled entries: how long it took and what it cost.
pub(crate) struct Drain {
    pub(crate) took: Duration,
    /// CPU seconds of the consumer: the `weir run` process, or this one for the bare loop.
    pub(crate) consumer_cpu: f64,
    /// CPU seconds redis-server used meanwhile (`INFO cpu`).
    pub(crate) redis_cpu: f64,
    /// Microseconds Redis spent in the consume commands (`INFO commandstats`).
    pub(crate) redis_usec: u64,
}

impl Drain {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.took.as_secs_f64()
    }

    /// (consumer CPU, Redis CPU, Redis in commands), each in µs per entry.
    fn per_entry(&self, n: u64) -> (f64, f64, f64) {
        let n = n as f64;
        (
            self.consumer_cpu * 1e6 / n,
            self.redis_cpu * 1e6 / n,
            self.redis_usec as f64 / n,
        )
    }
}

/// The middle one of three runs by time (every run's figures come from the same run).
fn median(mut runs: Vec<Drain>) -> Drain {
    runs.sort_by_key(|d| d.took);
    runs.swap_remove(runs.len() / 2)
}

impl Bench {
    /// `n` entries pre-filled and drained by one pool (`noop`, concurrency 64) with `extra`
    /// config, logging as `logging` says.
    pub(crate) async fn drain_weir(&mut self, logging: Logging<'_>, extra: &str) -> Drain {
        self.reset().await;
        self.prefill(self.n);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let config = self.server.config(&pool(64, "{ kind = \"noop\" }"), extra);
        let redis_before = self.server.cpu();
        let weir = Weir::start_logging(&config, logging);
        let redis = self.redis.clone();
        let took = wait_until("consume", Duration::from_secs(600), || drained(&redis)).await;
        let consumer_cpu = weir.cpu();
        let redis_cpu = self.server.cpu() - redis_before;
        weir.stop();
        Drain {
            took,
            consumer_cpu,
            redis_cpu,
            redis_usec: self.server.usec(&CONSUME_COMMANDS),
        }
    }

    /// `n` entries pre-filled and drained by the bare fred loop, in this process.
    async fn drain_bare(&mut self) -> Drain {
        self.reset().await;
        self.prefill(self.n);
        self.server.cli(&["XGROUP", "CREATE", STREAM, "p", "0"]);
        self.server.cli(&["CONFIG", "RESETSTAT"]);
        let client = baseline::connect(&self.server.url()).await;
        let (own_before, redis_before) = (own_cpu(), self.server.cpu());
        let start = Instant::now();
        let read = baseline::drain(&client, STREAM, "p", "bare").await;
        let took = start.elapsed();
        let (consumer_cpu, redis_cpu) = (own_cpu() - own_before, self.server.cpu() - redis_before);
        let _ = fred::interfaces::ClientLike::quit(&client).await;
        assert_eq!(read, self.n, "the bare loop read {read} of {}", self.n);
        assert_eq!(pending(&self.redis).await, 0);
        Drain {
            took,
            consumer_cpu,
            redis_cpu,
            redis_usec: self.server.usec(&CONSUME_COMMANDS),
        }
    }

    /// 1. `n` entries pre-filled, one pool, `noop`, concurrency 64, against the bare fred
    ///    loop on the same entries: three rounds each, alternating which goes first, the
    ///    median run of each is the figure (single runs vary by ±8 % here). Then weir as
    ///    shipped (`defaults`).
    pub(crate) async fn consume(&mut self) {
        let n = self.n;
        let (mut weir, mut bare) = (Vec::new(), Vec::new());
        for round in 1..=3 {
            for weir_now in [round != 2, round == 2] {
                let run = if weir_now {
                    self.drain_weir(Logging::Quiet, "").await
                } else {
                    self.drain_bare().await
                };
                let (consumer, redis, _) = run.per_entry(n);
                println!(
                    "  round {round}, {}: {:.0}/s, {} CPU {consumer:.2} µs/entry, Redis CPU {redis:.2} µs/entry",
                    if weir_now { "weir" } else { "bare loop" },
                    run.rate(n),
                    if weir_now { "engine" } else { "client" },
                );
                if weir_now { &mut weir } else { &mut bare }.push(run);
            }
        }
        let rates = |runs: &[Drain]| -> String {
            let each: Vec<String> = runs.iter().map(|d| format!("{:.0}", d.rate(n))).collect();
            each.join(", ")
        };
        let (weir_rates, bare_rates) = (rates(&weir), rates(&bare));
        let (weir, bare) = (median(weir), median(bare));

        let (engine, redis_cpu, redis) = weir.per_entry(n);
        self.rate(
            "consume",
            n,
            weir.took,
            0.6,
            &format!(
                " (median of {weir_rates}/s), Redis {redis:.2} µs/entry in commands (target ≤ 4), \
                 Redis CPU {redis_cpu:.2} µs/entry, engine CPU {engine:.2} µs/entry (target ≤ 1.0)"
            ),
        );
        let (client, bare_redis_cpu, bare_redis) = bare.per_entry(n);
        self.rate(
            "bare fred loop (XREADGROUP COUNT 500, XACK pipelined)",
            n,
            bare.took,
            0.0,
            &format!(
                " (median of {bare_rates}/s), Redis {bare_redis:.2} µs/entry in commands, \
                 Redis CPU {bare_redis_cpu:.2} µs/entry, client CPU {client:.2} µs/entry"
            ),
        );
        let ratio = weir.rate(n) / bare.rate(n);
        self.figure(
            "consume ÷ bare loop",
            format!(
                "×{ratio:.2} ({:.0}/s against {:.0}/s); Redis CPU per entry {redis_cpu:.2} against {bare_redis_cpu:.2} µs",
                weir.rate(n),
                bare.rate(n)
            ),
            "≥ 0.90",
            ratio >= 0.9,
        );
        self.defaults().await;
    }

    /// `baseline`: the bare fred loop alone, one run.
    pub(crate) async fn baseline(&mut self) {
        let n = self.n;
        let bare = self.drain_bare().await;
        let (client, redis_cpu, redis) = bare.per_entry(n);
        self.rate(
            "bare fred loop (XREADGROUP COUNT 500, XACK pipelined)",
            n,
            bare.took,
            0.0,
            &format!(
                ", Redis {redis:.2} µs/entry in commands, Redis CPU {redis_cpu:.2} µs/entry, \
                 client CPU {client:.2} µs/entry"
            ),
        );
    }

    /// `defaults`: consume with weir as shipped (no `WEIR_LOG`, the default log format,
    /// stderr to a file), one run: what default logging costs.
    pub(crate) async fn defaults(&mut self) {
        let n = self.n;
        let log = self.server.dir.path().join("weir-stderr.log");
        let run = self.drain_weir(Logging::Shipped(&log), "").await;
        let (bytes, lines) = size_and_lines(&log);
        let _ = std::fs::remove_file(&log);
        let (engine, redis_cpu, _) = run.per_entry(n);
        self.rate(
            "consume, shipped defaults (no WEIR_LOG, stderr to a file)",
            n,
            run.took,
            0.6,
            &format!(
                ", engine CPU {engine:.2} µs/entry, Redis CPU {redis_cpu:.2} µs/entry; \
                 stderr {lines} lines, {bytes} bytes ({:.2} bytes per entry)",
                bytes as f64 / n as f64
            ),
        );
    }

    /// 2. A publisher (redis-benchmark XADD -P16) and the engine at the same time.
    ///    Three runs (single runs vary by ±8 % here); the median is the figure.
    pub(crate) async fn end_to_end(&mut self) {
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
        let consume = per(&CONSUME_COMMANDS);
        let xadd = per(&["xadd"]);
        let extra = format!(
            ", engine CPU {engine:.2} µs/entry, Redis XADD {xadd:.2} + consume {consume:.2} µs/entry, {:.0} entries per XREADGROUP",
            n as f64 / self.server.calls("xreadgroup").max(1) as f64
        );
        println!("  run: {:.0}/s{extra}", n as f64 / took.as_secs_f64());
        (took, extra)
    }
}

/// Bytes and newlines in the file at `path` (read in 1 MiB chunks: it may be hundreds of MiB).
fn size_and_lines(path: &std::path::Path) -> (u64, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (0, 0);
    };
    let (mut bytes, mut lines) = (0, 0);
    let mut buf = vec![0; 1 << 20];
    while let Ok(read) = file.read(&mut buf) {
        if read == 0 {
            break;
        }
        bytes += read as u64;
        lines += buf[..read].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    (bytes, lines)
}
