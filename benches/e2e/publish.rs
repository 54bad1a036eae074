//! Publishing: the library publisher (batches of 500, two tasks) and `weir publish --ndjson`
//! (its rate, then its peak RSS and CPU per line on 1M lines).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use weir::Config;

use super::Bench;
use super::common::process::{Sampled, own_cpu, weir_bin};
use super::common::server::{STREAM, pool};

impl Bench {
    /// 5. Publishing: the library (pipelined batches) and `weir publish --ndjson`.
    pub(crate) async fn publish(&mut self) {
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

/// `n` `noop.x` events without ids or keys, for the publisher.
pub(crate) fn noop_batch(n: usize) -> Vec<weir::publisher::NewEvent> {
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
