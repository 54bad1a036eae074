//! Scale-out: consume on a local Redis Cluster, 1 or 3 shards (as many partitions), 1 or 2
//! engine processes, all on this machine.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::Config;
use weir::redis::Redis;

use super::Bench;
use super::common::free_port;
use super::common::process::Weir;
use super::common::server::pool;
use super::common::table::Row;
use super::common::wait::wait_until;
use super::publish::noop_batch;

impl Bench {
    /// Scale-out: consume throughput on a local Redis Cluster, 1 shard vs 3 shards (with as
    /// many partitions) and 1 vs 2 engine processes, all on this machine.
    pub(crate) async fn cluster(&mut self) {
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
            self.table.push(Row {
                name,
                figure: format!(
                    "{rate:.0}/s, scaling ×{:.2} vs 1 shard 1 process",
                    rate / base
                ),
                ratio: Some(rate / self.reference()),
                target: "—",
                met: true,
            });
        }
    }
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
                super::common::spawn_redis(
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
