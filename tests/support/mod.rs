//! Test support: a real redis-server per test on its own unix socket (or a TCP port), an in-process engine,
//! a recording handler, bounded polling, a fault proxy and a delivery ledger.

pub mod proxy;

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::redis::{RawEntry, Redis, StreamId};
use weir::{Config, Delivery, Engine, Handler, Outcome};

/// A free loopback port (never 6379).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port != 6379 {
            return port;
        }
    }
}

/// A redis-server of our own: killed on drop, restartable on the same directory. It listens on
/// a unix socket in its own directory unless a test needs a TCP port (TLS, the fault proxy,
/// clusters, URLs with a host), so two tests never race for a port.
pub struct RedisServer {
    /// `None`: a unix socket only (`--port 0`), at `dir/redis.sock`.
    port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    aof: bool,
    extra: Vec<String>,
}

/// Connects to a server's socket, TCP or unix, for the launcher's raw PING and INFO.
trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::launched(None, false, &[])
    }

    /// With `appendonly yes` and `appendfsync always`: nothing accepted is lost on kill -9.
    pub fn start_durable() -> RedisServer {
        Self::launched(None, true, &[])
    }

    /// With extra `redis-server` arguments (e.g. `--aclfile`).
    pub fn start_args(extra: &[&str]) -> RedisServer {
        Self::launched(None, false, extra)
    }

    /// On a free TCP port, for tests that need one.
    pub fn start_tcp() -> RedisServer {
        Self::start_on(free_port(), &[])
    }

    /// On TCP `port`, with extra arguments.
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        Self::launched(Some(port), false, extra)
    }

    fn launched(port: Option<u16>, aof: bool, extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            aof,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let aof = if self.aof { "yes" } else { "no" };
        let mut command = Command::new("redis-server");
        match self.port {
            Some(port) => command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]),
            None => command
                .args(["--port", "0", "--unixsocketperm", "700", "--unixsocket"])
                .arg(self.socket()),
        };
        let child = command
            .args(["--save", "", "--appendonly", aof])
            .args(["--appendfsync", "always", "--enable-debug-command", "yes"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); the tests need a real Redis 7: install it with `sudo apt-get install -y redis-server`")
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                // Another test's server could hold a port we picked: make sure it is ours.
                assert_eq!(
                    self.process_id(),
                    Some(pid),
                    "{} answers, but it is not the redis-server this test started",
                    self.url()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server at {} did not answer PING within 10 s",
            self.url()
        );
    }

    fn connect(&self) -> Option<Box<dyn Wire>> {
        let timeout = Some(Duration::from_millis(500));
        Some(match self.port {
            Some(port) => {
                let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(timeout).ok()?;
                Box::new(s)
            }
            None => {
                let s = std::os::unix::net::UnixStream::connect(self.socket()).ok()?;
                s.set_read_timeout(timeout).ok()?;
                Box::new(s)
            }
        })
    }

    fn ping(&self) -> bool {
        let Some(mut s) = self.connect() else {
            return false;
        };
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `process_id` from `INFO server`: whose server answered.
    fn process_id(&self) -> Option<u32> {
        let mut s = self.connect()?;
        s.write_all(b"INFO server\r\n").ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // A bulk string: `$LEN\r\n` and LEN bytes.
        let complete = |r: &[u8]| {
            let text = String::from_utf8_lossy(r);
            let (head, body) = text.split_once("\r\n")?;
            let len: usize = head.strip_prefix('$')?.parse().ok()?;
            (body.len() >= len).then_some(())
        };
        while complete(&reply).is_none() {
            let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
            reply.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&reply)
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))?
            .trim()
            .parse()
            .ok()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The TCP port; only for servers started with [`RedisServer::start_tcp`] or `start_on`.
    pub fn port(&self) -> u16 {
        self.port
            .expect("this redis-server listens on a unix socket; start it with start_tcp()")
    }

    /// The URL with `user` and `password`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        match self.port {
            Some(port) => format!("redis://{user}:{password}@127.0.0.1:{port}/0"),
            None => format!(
                "redis+unix://{user}:{password}@localhost{}",
                self.socket().display()
            ),
        }
    }

    pub fn url(&self) -> String {
        match self.port {
            Some(port) => format!("redis://127.0.0.1:{port}/0"),
            None => format!("redis+unix://{}", self.socket().display()),
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Runs redis-cli against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(&self.cli_target(), args)
    }

    /// redis-cli's options that reach this server.
    pub fn cli_target(&self) -> Vec<String> {
        match self.port {
            Some(port) => vec!["-p".into(), port.to_string()],
            None => vec!["-s".into(), self.socket().display().to_string()],
        }
    }

    pub async fn client(&self) -> Redis {
        client_for(&self.url()).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh stream name for one test.
pub fn stream_name(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t-{test}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds a config from TOML text, relative to `tests/fixtures` (no `schemas` folder there, so
/// `data` is only checked to be JSON unless the test names a schemas dir).
pub fn config(toml: &str) -> Config {
    Config::from_toml(toml, &repo().join("tests/fixtures"))
        .unwrap_or_else(|e| panic!("test config: {e}\n{toml}"))
}

/// The shipped schemas folder, as a `[schemas]` section.
pub fn schemas_section() -> String {
    format!("[schemas]\ndir = {:?}\n", repo().join("schemas"))
}

/// What a recording handler saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub entry_id: StreamId,
    pub event_type: String,
    pub data: String,
    pub attempt: u64,
    pub pool: String,
    pub at: Instant,
    pub fields: Vec<(String, String)>,
    pub event_id: Option<String>,
}

type Decide = dyn Fn(&Delivery) -> Outcome + Send + Sync;

/// A handler that records every delivery and answers with `decide`, after `delay`.
#[derive(Clone)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    decide: Arc<Decide>,
    delay: Duration,
    inline: bool,
}

impl Recorder {
    pub fn ok() -> Recorder {
        Self::with(|_| Outcome::Success)
    }

    pub fn with(decide: impl Fn(&Delivery) -> Outcome + Send + Sync + 'static) -> Recorder {
        Recorder {
            seen: Arc::default(),
            decide: Arc::new(decide),
            delay: Duration::ZERO,
            inline: false,
        }
    }

    /// Declares itself an inline handler (`Handler::runs_inline`): the pool's reader runs
    /// it, without the worker hop.
    pub fn inline(mut self) -> Recorder {
        self.inline = true;
        self
    }

    pub fn slow(mut self, delay: Duration) -> Recorder {
        self.delay = delay;
        self
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Deliveries per entry ID.
    pub fn per_entry(&self) -> HashMap<StreamId, usize> {
        let mut m = HashMap::new();
        for s in self.seen() {
            *m.entry(s.entry_id).or_default() += 1;
        }
        m
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, d: &Delivery) -> Outcome {
        self.seen.lock().unwrap().push(Seen {
            entry_id: d.entry_id,
            event_type: d.event_type.clone(),
            data: d.data.clone(),
            attempt: d.attempt,
            pool: d.pool.to_string(),
            at: Instant::now(),
            fields: d.fields.clone(),
            event_id: d.event_id.clone(),
        });
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        (self.decide)(d)
    }

    fn runs_inline(&self) -> bool {
        self.inline && self.delay.is_zero()
    }
}

/// An engine running in this process until `stop`.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: weir::HttpAddr,
    task: tokio::task::JoinHandle<Result<(), weir::error::EngineError>>,
}

impl Running {
    /// Where `/healthz` and `/metrics` listen (configs here use `listen = "127.0.0.1:0"`).
    pub async fn http(&self) -> std::net::SocketAddr {
        let mut http = self.http.clone();
        tokio::time::timeout(Duration::from_secs(30), http.get())
            .await
            .expect("engine did not bind its HTTP listener within 30 s")
            .expect("engine stopped before it listened")
    }

    /// `http://ADDR/PATH` of this engine.
    pub async fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http().await)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("engine did not stop within 30 s");
        result
            .expect("engine task panicked")
            .expect("engine failed");
    }
}

/// Engine logs in test output; the level comes from `WEIR_TEST_LOG` (default `warn`).
pub fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

pub fn run(engine: Engine) -> Running {
    logs();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let http = engine.http_addr();
    let task = tokio::spawn(engine.run(async move {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        http,
        task,
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes (then panics with `what`).
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A field of a raw entry as text.
pub fn field(entry: &RawEntry, name: &str) -> String {
    entry
        .field(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

pub async fn publish(redis: &Redis, stream: &str, ty: &str, data: &str) -> StreamId {
    redis
        .add(
            stream,
            &[("type", ty.as_bytes()), ("data", data.as_bytes())],
        )
        .await
        .unwrap()
}

pub async fn group_pending(redis: &Redis, stream: &str, group: &str) -> u64 {
    let Ok(groups) = redis.groups(stream).await else {
        return u64::MAX;
    };
    groups
        .into_iter()
        .find(|g| g.name == group)
        .map_or(u64::MAX, |g| g.pending)
}

/// A valid Integration Bus envelope of `kind`, from the fixtures, as compact JSON.
pub fn envelope(kind: &str) -> String {
    let text =
        std::fs::read_to_string(repo().join(format!("tests/fixtures/valid/{kind}.json"))).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value.to_string()
}

/// Kills a spawned process when dropped, so a failing test leaves no `weir run` behind.
pub struct Reaper(pub u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// `n` of a `{"n": …}` payload.
pub fn n_of(data: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(data).ok()?["n"].as_u64()
}

/// The fault suite's verdict on published entries `0..count`: each must be handled at least
/// once or be in the DLQ. Returns (lost, duplicated deliveries).
pub async fn ledger(
    handler: &Recorder,
    redis: &Redis,
    dlq: &str,
    published: &[u64],
) -> (Vec<u64>, usize) {
    let mut handled: HashMap<u64, usize> = HashMap::new();
    for s in handler.seen() {
        if let Some(n) = n_of(&s.data) {
            *handled.entry(n).or_default() += 1;
        }
    }
    let dead: std::collections::HashSet<u64> = redis
        .range(dlq, "-", "+", 100_000)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|e| n_of(&field(e, "data")))
        .collect();
    let lost = published
        .iter()
        .copied()
        .filter(|n| !handled.contains_key(n) && !dead.contains(n))
        .collect();
    let duplicates = handled.values().map(|c| c.saturating_sub(1)).sum();
    (lost, duplicates)
}

/// Publishes `{"n": i}` for `range`, retrying an XADD whose reply was lost (a retry may
/// duplicate an entry, which the ledger tolerates). Returns the `n`s Redis accepted.
pub async fn publish_numbered(
    redis: &Redis,
    stream: &str,
    range: std::ops::Range<u64>,
    pause: Duration,
) -> Vec<u64> {
    let mut accepted = Vec::new();
    for n in range {
        let data = format!("{{\"n\":{n}}}");
        for _ in 0..100 {
            if redis
                .add(stream, &[("type", b"job"), ("data", data.as_bytes())])
                .await
                .is_ok()
            {
                accepted.push(n);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    accepted
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A real local Redis Cluster: `masters` redis-servers with `--cluster-enabled yes`, joined
/// with `redis-cli --cluster create`, each with `replicas` replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::start_on(
                    free_cluster_port(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--appendonly",
                        "yes",
                    ],
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli (from redis-tools) is needed by the tests");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ok, and every replica linked to its master.
        let linked = |c: &RedisCluster| {
            c.nodes
                .iter()
                .map(|n| n.cli(&["INFO", "replication"]))
                .filter(|info| {
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
                .count()
                == masters * replicas
        };
        while !(cluster.is_ok() && linked(&cluster)) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not become ok within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// Every live node says `cluster_state:ok` and knows all nodes.
    pub fn is_ok(&self) -> bool {
        self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
            n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                && n.cli(&["CLUSTER", "NODES"]).lines().count() == self.nodes.len()
        })
    }

    /// kill -9 of the master serving `key`; returns its port.
    pub fn kill9_master_of(&mut self, key: &str) -> u16 {
        let port = self.node_for(key).port();
        let node = self.nodes.iter_mut().find(|n| n.port() == port).unwrap();
        node.kill9();
        port
    }

    /// `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }

    /// A node that is up (answers PING).
    fn live(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.child.is_some() && n.ping())
            .expect("no cluster node is up")
    }

    /// The node that serves `key` (a master), as a live node sees it.
    pub fn node_for(&self, key: &str) -> &RedisServer {
        let live = self.live();
        let out = live.cli(&["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = out.trim().parse().unwrap();
        let shards = live.cli(&["CLUSTER", "SLOTS"]);
        // redis-cli prints each range as: start, end, then [ip, port, id] per node.
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 4 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>())
                && lines[i + 2] == "127.0.0.1"
                && (start..=end).contains(&slot)
            {
                let port: u16 = lines[i + 3].parse().unwrap();
                return self.nodes.iter().find(|n| n.port() == port).unwrap();
            }
            i += 1;
        }
        panic!("no node serves slot {slot}: {shards}");
    }

    /// redis-cli in cluster mode (follows redirections).
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(&["-c", "-p", &self.live().port().to_string()], args)
    }

    pub async fn client(&self) -> Redis {
        client_for(&self.url()).await
    }
}

/// A connected client of the Redis (or cluster) at `url`. The config's stream name has a
/// hash tag only so that a cluster URL passes the slot check; the client uses no config key.
async fn client_for(url: &str) -> Redis {
    let config = Config::from_toml(
        &format!(
            "[redis]\nurl = \"{url}\"\n[stream]\nname = \"{{c}}:events\"\n[[pools]]\nname = \"x\"\ntypes = [\"*\"]\n"
        ),
        Path::new("."),
    )
    .unwrap();
    let redis = Redis::new(&config.redis).unwrap();
    redis.connect().await.unwrap();
    redis
}

/// `redis-cli OPTIONS ARGS…`; its trimmed standard output.
fn redis_cli(options: &[impl AsRef<std::ffi::OsStr>], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(options)
        .args(args)
        .output()
        .expect("redis-cli (from redis-tools) is needed by the tests");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The body of a GET of a test endpoint (`/metrics`, `/healthz`); any failure panics.
pub async fn get_text(url: impl reqwest::IntoUrl) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// `calls` of `command` (e.g. `xinfo|stream`) in the server's `INFO commandstats`.
pub fn command_calls(server: &RedisServer, command: &str) -> u64 {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split(',').find_map(|kv| kv.split_once("calls=")))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the engine's trim loop has run `ticks` more times: each tick starts with one
/// XINFO STREAM per partition, and nothing else in an engine sends that command.
pub async fn wait_trim_ticks(server: &RedisServer, ticks: u64) {
    let start = command_calls(server, "xinfo|stream");
    wait_for(
        &format!("{ticks} trim ticks"),
        Duration::from_secs(15),
        || async { command_calls(server, "xinfo|stream") >= start + ticks },
    )
    .await;
}

/// Clients blocked in XREADGROUP right now (a running reader is, nearly all the time).
fn blocked_reads(server: &RedisServer) -> usize {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| {
            l.contains(" cmd=xreadgroup")
                && l.split(' ')
                    .any(|kv| kv.strip_prefix("flags=").is_some_and(|f| f.contains('b')))
        })
        .count()
}

/// Waits until a pause has reached the readers: at most `reading` clients are still blocked
/// in XREADGROUP (the readers of pools that are not paused), on two polls in a row, because a
/// running reader is between two reads for a moment now and then.
pub async fn wait_readers_parked(server: &RedisServer, reading: usize) {
    let mut in_a_row = 0;
    wait_for(
        "the paused pool's reader stopped reading",
        Duration::from_secs(15),
        || {
            in_a_row = if blocked_reads(server) <= reading {
                in_a_row + 1
            } else {
                0
            };
            let done = in_a_row >= 2;
            async move { done }
        },
    )
    .await;
}

/// `group` has read every entry of `stream` and acknowledged all of them: nothing it does
/// later can come from what is on the stream now.
pub async fn caught_up(server: &RedisServer, redis: &Redis, stream: &str, group: &str) -> bool {
    let last = server.cli(&["XREVRANGE", stream, "+", "-", "COUNT", "1"]);
    let Some(last) = last.lines().next() else {
        return false;
    };
    redis.groups(stream).await.is_ok_and(|groups| {
        groups
            .iter()
            .any(|g| g.name == group && g.pending == 0 && g.last_delivered.to_string() == last)
    })
}
