//! Slow, idle and too many HTTP clients (issue 22 item 8, contract §8): request headers are due
//! within the header timeout (10 s; 1 s here) of the connection or of the request's first
//! byte, trickling bytes do not push that back; an idle keep-alive connection lives past the
//! header timeout and closes after the idle timeout (60 s; 3 s here); at most 1,000
//! connections, one more is closed at once and /healthz answers once they go; shutdown ends
//! within the 5 s grace while slow clients hold connections, and frees the port. Also: every
//! API answer says `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::Engine;

use crate::support::*;

const ADMIN: &str = "adm-http-clients-XYZ";

fn engine(server: &RedisServer, name: &str, header_read: Duration, idle: Duration) -> Engine {
    let toml = format!(
        r#"
shutdown_grace_seconds = 1
[redis]
url = "{url}"
[stream]
name = "{stream}"
[http]
listen = "127.0.0.1:0"
admin_token = "{ADMIN}"
[[pools]]
name = "p"
types = ["t"]
handler = {{ kind = "noop" }}
"#,
        url = server.url(),
        stream = stream_name(name),
    );
    Engine::new(config(&toml)).with_http_timeouts(header_read, idle)
}

/// Reads until the server closes the connection (EOF or reset); panics after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(start.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("{what}: the server kept the connection open for {within:?}"),
        }
    }
}

/// One `GET path` on an open connection; its status and headers (the body is read and
/// dropped, so the connection can carry the next request).
async fn get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: weir\r\nauthorization: Bearer {ADMIN}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed before the answer");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    while got.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        got.extend_from_slice(&buf[..n]);
    }
    let status = head[9..12].parse().unwrap();
    (status, head)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn a_client_that_stalls_or_trickles_its_request_head_is_cut_off_after_the_header_timeout() {
    let server = RedisServer::start();
    let header_read = Duration::from_secs(1);
    let running = run(engine(
        &server,
        "slow-head",
        header_read,
        Duration::from_secs(60),
    ));
    let addr = running.http().await;

    // Half a request line, then nothing.
    let mut stalled = connect(addr).await;
    stalled.write_all(b"GET /hea").await.unwrap();
    // Connected, and never a byte.
    let mut silent = connect(addr).await;
    // A byte every 200 ms: progress, but the head never completes in time.
    let mut trickle = connect(addr).await;
    let trickling = tokio::spawn(async move {
        let line = b"GET /healthz HTTP/1.1\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in line {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        trickle
    });

    let bound = Duration::from_secs(5);
    let took = closed_within(&mut stalled, bound, "half a request line").await;
    assert!(took >= Duration::from_millis(800), "cut after {took:?}");
    closed_within(&mut silent, bound, "a silent client").await;
    let mut trickle = trickling.await.unwrap();
    closed_within(&mut trickle, bound, "a trickling client").await;

    // A client that sends its request in time is served.
    let mut fine = connect(addr).await;
    assert_eq!(get(&mut fine, "/healthz").await.0, 200);
    running.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_and_closes_after_the_idle_timeout()
 {
    let server = RedisServer::start();
    let (header_read, idle) = (Duration::from_secs(1), Duration::from_secs(3));
    let running = run(engine(&server, "idle", header_read, idle));
    let addr = running.http().await;

    let mut client = connect(addr).await;
    assert_eq!(get(&mut client, "/healthz").await.0, 200);
    // Idle twice as long as the header timeout: still open, the next request is served.
    tokio::time::sleep(header_read * 2).await;
    assert_eq!(get(&mut client, "/healthz").await.0, 200);
    let took = closed_within(&mut client, idle * 2, "an idle keep-alive connection").await;
    assert!(
        took >= idle - Duration::from_millis(300),
        "closed after {took:?}, before the idle timeout"
    );
    running.stop().await;
}

#[tokio::test]
async fn over_1000_connections_the_next_is_closed_at_once_and_healthz_answers_after_they_go() {
    let server = RedisServer::start();
    // Long timeouts: only the cap may close a connection here.
    let long = Duration::from_secs(60);
    let running = run(engine(&server, "cap", long, long));
    let addr = running.http().await;

    let mut held = Vec::with_capacity(1000);
    for _ in 0..1000 {
        held.push(connect(addr).await);
    }
    let mut extra = connect(addr).await;
    closed_within(&mut extra, Duration::from_secs(3), "the 1,001st connection").await;
    // The connections within the cap are served.
    let (status, _) = get(&mut held[0], "/healthz").await;
    assert_eq!(status, 200);

    drop(held);
    let url = format!("http://{addr}/healthz");
    wait_for(
        "/healthz on a new connection once the 1,000 are gone",
        Duration::from_secs(10),
        || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().as_u16() == 200)
        },
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_while_slow_clients_hold_connections_and_frees_the_port() {
    let server = RedisServer::start();
    let long = Duration::from_secs(60);
    let running = run(engine(&server, "shutdown", long, long));
    let addr = running.http().await;

    let mut stalled = connect(addr).await;
    stalled.write_all(b"GET /healthz HTT").await.unwrap();
    let mut idle = connect(addr).await;
    assert_eq!(get(&mut idle, "/healthz").await.0, 200);
    // A request whose body never comes: its answer is under way at shutdown.
    let mut body_owed = connect(addr).await;
    let request = format!(
        "POST /api/v1/dlq/purge HTTP/1.1\r\nhost: weir\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    body_owed.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(9), running.stop())
        .await
        .expect(
            "shutdown within the 5 s grace (and the 1 s drain) while slow clients hold connections",
        );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    for (client, what) in [
        (&mut stalled, "half a request"),
        (&mut idle, "idle keep-alive"),
        (&mut body_owed, "a body owed"),
    ] {
        closed_within(client, Duration::from_secs(1), what).await;
    }
    // The port is free for the next process.
    std::net::TcpListener::bind(addr).expect("the listener's port is free after shutdown");
}

#[tokio::test]
async fn every_api_answer_says_no_store_and_nosniff() {
    let server = RedisServer::start();
    let long = Duration::from_secs(60);
    let running = run(engine(&server, "headers", long, long));
    let addr = running.http().await;
    let mut client = connect(addr).await;
    for path in [
        "/api/v1/status",
        "/api/v1/dlq?limit=0",
        "/api/v1/dlq/1-1",
        "/api/v1/nowhere",
        "/api/v1/openapi.json",
    ] {
        let (status, head) = get(&mut client, path).await;
        assert!(
            head.contains("\r\ncache-control: no-store\r\n")
                && head.contains("\r\nx-content-type-options: nosniff\r\n"),
            "{path} ({status}) lacks the headers:\n{head}"
        );
    }
    // A request without a token too (401).
    let response = reqwest::get(format!("http://{addr}/api/v1/status"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    running.stop().await;
}
