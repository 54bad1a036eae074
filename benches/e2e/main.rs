//! End-to-end benchmark: the `weir` binary (and, for latency and one RSS figure, the library)
//! against its own redis-server, next to a same-run `redis-benchmark XADD -P16` reference.
//! Each figure is printed with its ratio to that reference (throughputs) or its target
//! (times, sizes).
//!
//! ```sh
//! cargo bench --bench e2e                # every scenario, no persistence
//! cargo bench --bench e2e -- --aof       # the same with appendonly yes, appendfsync always
//! cargo bench --bench e2e -- --quick     # a tenth of the entries, for a smoke run
//! cargo bench --bench e2e -- latency reclaim   # only the named scenarios
//! ```
//!
//! Scenarios, one file per family beside this one:
//! - `consume.rs`: consume (weir beside the bare driver loop and the shipped defaults), e2e;
//!   `baseline` and `defaults` run one of those rows alone, by name only;
//! - `baseline.rs`: the bare fred loop that `consume` measures weir against;
//! - `telemetry.rs`: telemetry;
//! - `latency.rs`: latency;
//! - `http.rs`: http;
//! - `publish.rs`: publish;
//! - `recovery.rs`: reclaim, janitor;
//! - `replay.rs`: replay;
//! - `rss.rs`: rss;
//! - `cluster.rs`: cluster;
//! - `ordered.rs`: ordered, ordered-one-key, takeover.
//!
//! The harness they share (redis-server, the reference, `weir run` processes, CPU readings,
//! waits, the results table) is in `benches/common/`. `BENCH_WEIR_BIN=path` runs another
//! `weir` binary (e.g. an older commit's) under this harness.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod baseline;
mod cluster;
mod consume;
mod http;
mod latency;
mod ordered;
mod publish;
mod recovery;
mod replay;
mod rss;
mod telemetry;

use std::path::Path;
use std::time::Duration;

use weir::redis::Redis;

use common::server::{STREAM, Server};
use common::table::Table;
use common::wait::wait_until;

/// What every scenario runs against: the server, a library client for the harness's own
/// reads, the entry count, and the table the rows go to.
struct Bench {
    server: Server,
    redis: Redis,
    /// Entries per throughput scenario: 1M, or 100k with `--quick`; scenarios take fractions.
    n: u64,
    table: Table,
}

impl Bench {
    fn reference(&self) -> f64 {
        self.table.reference
    }

    fn rate(&mut self, name: &'static str, n: u64, took: Duration, target: f64, extra: &str) {
        self.table.rate(name, n, took, target, extra);
    }

    fn figure(&mut self, name: &'static str, figure: String, target: &'static str, met: bool) {
        self.table.figure(name, figure, target, met);
    }

    /// An empty server with its command statistics reset.
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

    /// `n` `noop.x` entries in the stream, written by `redis-benchmark -P16`.
    fn prefill(&self, n: u64) {
        self.server.xadd_benchmark(STREAM, "noop.x", n);
    }

    async fn run(&mut self, scenario: &str) {
        match scenario {
            "consume" => self.consume().await,
            "baseline" => self.baseline().await,
            "defaults" => self.defaults().await,
            "telemetry" => self.telemetry().await,
            "e2e" => self.end_to_end().await,
            "latency" => self.latency().await,
            "http" => self.http().await,
            "publish" => self.publish().await,
            "reclaim" => self.reclaim().await,
            "janitor" => self.janitor().await,
            "replay" => self.replay().await,
            "rss" => self.rss().await,
            "cluster" => self.cluster().await,
            "ordered" => self.ordered().await,
            "ordered-one-key" => self.ordered_one_key().await,
            "takeover" => self.takeover().await,
            _ => unreachable!("{scenario} is not in SCENARIOS or BY_NAME_ONLY"),
        }
    }
}

/// What a run without scenario names runs, in this order.
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

/// Rows of `consume` on their own, for a quick look: run only when named.
const BY_NAME_ONLY: [&str; 2] = ["baseline", "defaults"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--hold-engine") {
        return rss::hold_engine(Path::new(&args[i + 1]));
    }
    let aof = args.iter().any(|a| a == "--aof");
    let quick = args.iter().any(|a| a == "--quick");
    let chosen: Vec<&str> = SCENARIOS
        .iter()
        .chain(&BY_NAME_ONLY)
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
        println!("weir binary: {}", common::process::weir_bin());
        let redis = server.client().await;
        let mut bench = Bench {
            server,
            redis,
            n,
            table: Table::new(reference),
        };
        for s in &chosen {
            println!("{s}:");
            bench.run(s).await;
        }
        bench.table.print(n);
    });
}
