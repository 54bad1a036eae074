//! Micro-benchmarks of the settle path against a real redis-server (started on a free port,
//! no persistence): what each outcome costs once the handler has answered. Run:
//! `cargo bench --bench settle`.
//!
//! - `ack/1024`: one XACK of 1024 IDs, the acker's batch (success and skipped entries);
//! - `dead_letter/1`: one entry moved to the DLQ (XADD + XACK in one script: `rejected`,
//!   `invalid`, the last failed attempt);
//! - `sweep/250`: the janitor's dead-letter script over 250 used-up entries.
//!
//! Setup (adding and delivering the entries) is outside the measured time.
// criterion_group! generates an undocumented `pub fn`.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weir::Config;
use weir::redis::{IdleSweep, Redis, StreamId};

const STREAM: &str = "settle";
const GROUP: &str = "p";

/// The process, its port, and its working directory (removed on drop).
struct Server(Child, u16, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> Server {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = common::spawn_redis(port, dir.path(), &["--appendonly", "no"]);
    Server(child, port, dir)
}

async fn client(port: u16) -> Redis {
    let toml = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{port}/0\"\n[[pools]]\nname = \"x\"\ntypes = [\"*\"]\n"
    );
    let config = Config::from_toml(&toml, Path::new(".")).unwrap();
    let redis = Redis::new(&config.redis).unwrap();
    redis.connect().await.unwrap();
    redis.create_group(STREAM, GROUP, "$").await.unwrap();
    redis
}

/// `n` entries added and delivered once to consumer `c`: pending, as a reader leaves them.
async fn pending(redis: &Redis, n: usize) -> Vec<(StreamId, Vec<(Bytes, Bytes)>)> {
    let fields = vec![
        ("type".to_string(), "asset.discovery".to_string()),
        (
            "data".to_string(),
            r#"{"assetId":"A1","ip":"10.0.0.1"}"#.to_string(),
        ),
        ("tenant".to_string(), "acme".to_string()),
    ];
    redis.add_many(STREAM, &vec![fields; n]).await.unwrap();
    let entries = redis
        .read_group(STREAM, GROUP, "c", n, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(entries.len(), n);
    entries
        .into_iter()
        .map(|e| (e.id, e.fields.unwrap_or_default()))
        .collect()
}

fn settle(c: &mut Criterion) {
    let server = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = rt.block_on(client(server.1));
    let mut group = c.benchmark_group("settle");

    group.throughput(Throughput::Elements(1024));
    group.bench_function("ack/1024", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let ids: Vec<StreamId> = pending(&redis, 1024)
                        .await
                        .into_iter()
                        .map(|e| e.0)
                        .collect();
                    let start = Instant::now();
                    assert_eq!(redis.ack(STREAM, GROUP, &ids).await.unwrap(), 1024);
                    took += start.elapsed();
                }
                took
            })
        })
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("dead_letter/1", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let entries = pending(&redis, iters as usize).await;
                let start = Instant::now();
                for (id, mut fields) in entries {
                    fields.push((
                        Bytes::from_static(b"dlq_reason"),
                        Bytes::from_static(b"rejected"),
                    ));
                    redis
                        .dead_letter(STREAM, GROUP, "settle:dlq", id, &fields)
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(250));
    group.bench_function("sweep/250", |b| {
        let job = IdleSweep {
            stream: STREAM,
            dlq: "settle:dlq",
            group: GROUP,
            min_idle: Duration::ZERO,
            max_attempts: 1,
            error: "no success after {n} deliveries",
        };
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let ids: Vec<StreamId> = pending(&redis, 250)
                        .await
                        .into_iter()
                        .map(|e| e.0)
                        .collect();
                    let start = Instant::now();
                    let swept = redis.dead_letter_idle(&job, &ids).await.unwrap();
                    took += start.elapsed();
                    assert_eq!(swept.moved.len(), 250);
                }
                took
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = settle
}
criterion_main!(benches);
