//! Publish → handler start at a paced 10k/s, through the library engine in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::{Config, Delivery, Engine, Handler, Outcome};

use super::Bench;
use super::common::server::STREAM;
use super::common::wait::wait_until;

impl Bench {
    /// 3. Publish → handler start at a fixed 10k/s, in-process library engine.
    pub(crate) async fn latency(&mut self) {
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
