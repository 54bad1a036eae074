//! Ordered pools (`order_key`): 1,000 keys against the same pool unordered (`ordered`), a
//! single key (`ordered-one-key`), and the owner's lease passing to a standby after
//! `kill -9` and SIGTERM (`takeover`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Bench;
use super::common::process::Weir;
use super::common::server::{STREAM, pool};
use super::common::table::Row;
use super::common::wait::{drained, pending, wait_until};

impl Bench {
    /// One drain of `n` keyed entries (`keys` keys round-robin) by one pool, `noop`,
    /// concurrency 64, ordered by field `key` or not: (took, engine CPU µs/entry, Redis µs
    /// per entry, XREADGROUP calls).
    pub(crate) async fn keyed_run(
        &mut self,
        n: u64,
        keys: u64,
        ordered: bool,
    ) -> (Duration, f64, f64, u64) {
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
    pub(crate) async fn ordered(&mut self) {
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
                    rate / self.reference()
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
        self.table.push(Row {
            name: "unordered, 1,000 keys",
            figure: format!("{u:.0}/s (median of 3 runs of {n} entries)"),
            ratio: Some(u / self.reference()),
            target: "—",
            met: true,
        });
        self.table.push(Row {
            name: "ordered, 1,000 keys",
            figure: format!(
                "{o:.0}/s (median of 3): ×{:.2} of unordered (pairs ×{})",
                o / u,
                each.join(", ×")
            ),
            ratio: Some(o / self.reference()),
            target: "≥ 0.80× unordered",
            met: o / u >= 0.8,
        });
    }

    /// 10. An ordered pool with a single key: one entry at a time.
    pub(crate) async fn ordered_one_key(&mut self) {
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
    pub(crate) async fn takeover(&mut self) {
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
