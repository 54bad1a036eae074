//! The `http` handler against a local keep-alive endpoint.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Bench;
use super::common::endpoint::{Endpoint, serve};
use super::common::process::{Weir, own_cpu};
use super::common::server::pool;
use super::common::wait::{drained, wait_until};

impl Bench {
    /// 4. The `http` handler to a local keep-alive server.
    pub(crate) async fn http(&mut self) {
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
}
