//! The built-in handlers end to end (a real webhook server, real child processes), panics, and
//! entries deleted behind weir's back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use weir::{Engine, Outcome};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn toml(server: &RedisServer, stream: &str, http_port: u16, pools: &str) -> String {
    format!(
        r#"
[redis]
url = "{url}"
[stream]
name = "{stream}"
[retry]
max_attempts = 3
retry_seconds = 0.1
visibility_timeout_seconds = 2
[janitor]
interval_seconds = 0.05
[http]
listen = "127.0.0.1:{http_port}"
{pools}
"#,
        url = server.url()
    )
}

type Requests = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook answering by the `x-weir-type` header: `ok` 200, `bad` 400, `busy` 503 with
/// Retry-After: 1 the first time then 200.
async fn webhook() -> (u16, Requests) {
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let ty = headers
                    .get("x-weir-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let busy_before = seen
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(h, _)| h.get("x-weir-type").is_some_and(|v| v == "busy"))
                    .count();
                seen.lock().unwrap().push((headers, body));
                match ty.as_str() {
                    "bad" => (StatusCode::BAD_REQUEST, "unknown customer 42").into_response(),
                    "busy" if busy_before == 0 => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "1")],
                        "later",
                    )
                        .into_response(),
                    _ => StatusCode::OK.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, requests)
}

#[tokio::test]
async fn http_handler_sends_headers_and_maps_statuses() {
    let server = RedisServer::start();
    let stream = stream_name("http");
    let (port, requests) = webhook().await;
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\nconcurrency = 2\ntypes = [\"ok\", \"bad\", \"busy\"]\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:{port}/hook\" }}\n"
    );
    let running = run(Engine::new(config(&toml(&server, &stream, 0, &pools))));
    let redis = server.client().await;
    let ok = redis
        .add(
            &stream,
            &[
                ("type", b"ok"),
                ("data", b"{\"a\":1}"),
                ("id", b"EV-1"),
                ("tenant", b"acme"),
            ],
        )
        .await
        .unwrap();
    publish(&redis, &stream, "bad", "{}").await;
    publish(&redis, &stream, "busy", "{}").await;
    let dlq = format!("{stream}:dlq");
    wait_for("busy retried and 400 dead-lettered", T, || async {
        requests.lock().unwrap().len() == 4
            && redis.stream_len(&dlq).await.unwrap() == 1
            && group_pending(&redis, &stream, "hooks").await == 0
    })
    .await;
    let all = requests.lock().unwrap().clone();
    let (headers, body) = all
        .iter()
        .find(|(h, _)| h.get("x-weir-type").unwrap() == "ok")
        .unwrap();
    assert_eq!(body, "{\"a\":1}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-weir-entry-id"], ok.to_string().as_str());
    assert_eq!(headers["x-weir-attempt"], "1");
    assert_eq!(headers["x-weir-pool"], "hooks");
    assert_eq!(headers["x-weir-event-id"], "EV-1");
    assert_eq!(headers["x-weir-field-tenant"], "acme");
    let busy: Vec<_> = all
        .iter()
        .filter(|(h, _)| h.get("x-weir-type").unwrap() == "busy")
        .collect();
    assert_eq!(busy.len(), 2);
    assert_eq!(busy[1].0["x-weir-attempt"], "2");
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(dead, "dlq_reason"), "rejected");
    assert!(
        field(dead, "dlq_error").contains("unknown customer 42"),
        "{}",
        field(dead, "dlq_error")
    );
    running.stop().await;
}

#[tokio::test]
async fn exec_handler_gets_stdin_and_env_and_exit_65_is_permanent() {
    let server = RedisServer::start();
    let stream = stream_name("exec");
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("seen");
    // Appends "type attempt pool data" per call; exits 65 for type `poison`.
    let script = format!(
        "read -r data; echo \"$WEIR_TYPE $WEIR_ATTEMPT $WEIR_POOL $WEIR_EVENT_ID $data\" >> {}; [ \"$WEIR_TYPE\" = poison ] && {{ echo 'cannot parse order' >&2; exit 65; }}; exit 0",
        log.display()
    );
    let pools = format!(
        "[[pools]]\nname = \"cmd\"\ntypes = [\"*\"]\nhandler = {{ kind = \"exec\", command = [\"sh\", \"-c\", {script:?}] }}\n"
    );
    let running = run(Engine::new(config(&toml(&server, &stream, 0, &pools))));
    let redis = server.client().await;
    redis
        .add(
            &stream,
            &[("type", b"good"), ("data", b"{\"x\":1}"), ("id", b"E7")],
        )
        .await
        .unwrap();
    publish(&redis, &stream, "poison", "{}").await;
    let dlq = format!("{stream}:dlq");
    wait_for("both handled", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 1
            && group_pending(&redis, &stream, "cmd").await == 0
    })
    .await;
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(seen.contains("good 1 cmd E7 {\"x\":1}"), "{seen}");
    assert_eq!(
        seen.lines().filter(|l| l.starts_with("poison")).count(),
        1,
        "exit 65 is not retried: {seen}"
    );
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(dead, "dlq_reason"), "rejected");
    assert!(field(dead, "dlq_error").contains("cannot parse order"));
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered_while_the_pool_keeps_serving() {
    let server = RedisServer::start();
    let stream = stream_name("panic");
    let pools = "[[pools]]\nname = \"p\"\nconcurrency = 2\ntypes = [\"*\"]\n";
    let handler = Recorder::with(|d| {
        if d.event_type == "poison" {
            panic!("bad input {}", d.attempt);
        }
        Outcome::Success
    });
    let running =
        run(Engine::new(config(&toml(&server, &stream, 0, pools)))
            .with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish(&redis, &stream, "poison", "{}").await;
    for _ in 0..20 {
        publish(&redis, &stream, "fine", "{}").await;
    }
    let dlq = format!("{stream}:dlq");
    wait_for("poison dead-lettered", T, || async {
        redis.stream_len(&dlq).await.unwrap() == 1
    })
    .await;
    assert_eq!(
        handler
            .seen()
            .iter()
            .filter(|s| s.event_type == "fine")
            .count(),
        20
    );
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    assert_eq!(field(dead, "dlq_reason"), "max_attempts");
    assert_eq!(field(dead, "dlq_attempts"), "3");
    assert!(
        field(dead, "dlq_error").contains("handler panicked: bad input 3"),
        "{}",
        field(dead, "dlq_error")
    );
    running.stop().await;
}

#[tokio::test]
async fn pending_entries_deleted_by_hand_are_acknowledged_and_counted_as_lost() {
    let server = RedisServer::start();
    let stream = stream_name("lost");
    let pools = "[[pools]]\nname = \"lostpool\"\ntypes = [\"*\"]\nretry_seconds = 0.5\n";
    let handler = Recorder::with(|_| Outcome::retry("not yet"));
    let running = run(Engine::new(config(&toml(&server, &stream, 0, pools)))
        .with_handler("lostpool", handler.clone()));
    let redis = server.client().await;
    let id = publish(&redis, &stream, "job", "{}").await;
    wait_for("first attempt failed", T, || async { handler.count() == 1 }).await;
    assert_eq!(server.cli(&["XDEL", &stream, &id.to_string()]), "1");
    wait_for("the deleted entry left the PEL", T, || async {
        group_pending(&redis, &stream, "lostpool").await == 0
    })
    .await;
    let metrics = get_text(running.url("/metrics").await).await;
    assert!(
        metrics.contains("weir_entries_lost_total{pool=\"lostpool\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        handler.count(),
        1,
        "a deleted entry is not handed to the handler again"
    );
    running.stop().await;
}

/// Answers the HTTP/1.1 requests that arrive on `io` with `200 ok`, keeping the connection
/// open, until the client closes it or (with `idle_close`) it has been idle that long. Hands
/// each request's head and body to `seen`. True when it closed the connection for idleness.
/// Parsed by hand (headers, then `content-length` bytes): nothing but the socket (or TLS)
/// stands between weir and the bytes.
async fn answer_ok<S>(
    mut io: S,
    idle_close: Option<Duration>,
    seen: impl Fn(String, String),
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let read = match idle_close {
                // Idle between requests: close after `idle_close`.
                Some(after) if buf.is_empty() => {
                    match tokio::time::timeout(after, io.read(&mut chunk)).await {
                        Ok(read) => read,
                        Err(_) => return true,
                    }
                }
                _ => io.read(&mut chunk).await,
            };
            match read {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let length: usize = head
            .to_lowercase()
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + 4 + length {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8(buf[end + 4..end + 4 + length].to_vec()).unwrap();
        buf.drain(..end + 4 + length);
        seen(head, body);
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if io.write_all(reply).await.is_err() {
            return false;
        }
    }
}

/// A `weir` process, killed when dropped (a failed assertion included).
struct Killed(std::process::Child);

/// `weir -c config run` with `env` set, its output into `log` (or dropped).
fn spawn_weir(
    config: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
    log: Option<&std::path::Path>,
) -> Killed {
    use std::process::{Command, Stdio};
    let out = || match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        None => Stdio::null(),
    };
    let mut weir = Command::new(env!("CARGO_BIN_EXE_weir"));
    weir.args(["-c", config.to_str().unwrap(), "run"])
        .envs(env.iter().copied())
        .stdout(out())
        .stderr(out());
    Killed(weir.spawn().expect("weir run"))
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTPS endpoint with the certificate `certificates` made in `dir`: answers every request
/// 200 and keeps its body. Plain HTTP/1.1 over rustls, parsed by hand (headers, then
/// `content-length` bytes), so nothing but TLS stands between weir and the bytes.
async fn https_webhook(dir: &std::path::Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, kept) = (acceptor.clone(), kept.clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                answer_ok(tls, None, |_, body| kept.lock().unwrap().push(body)).await;
            });
        }
    });
    (port, bodies)
}

#[tokio::test]
async fn an_https_webhook_gets_events_over_tls_trusting_the_system_store_or_its_ca_file() {
    let server = RedisServer::start();
    let certs = tempfile::tempdir().unwrap();
    crate::tls::certificates(certs.path());
    // A CA that did not sign the endpoint's certificate.
    let stranger = tempfile::tempdir().unwrap();
    crate::tls::certificates(stranger.path());
    let (port, bodies) = https_webhook(certs.path()).await;
    let stream = stream_name("https");
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\nconcurrency = 2\ntypes = [\"ok\"]\nhandler = {{ kind = \"http\", url = \"https://127.0.0.1:{port}/hook\" }}\n"
    );
    let path = certs.path().join("streams.toml");
    std::fs::write(&path, toml(&server, &stream, 0, &pools)).unwrap();
    // The `weir` binary, trusting the CA file given (rustls-native-certs reads
    // SSL_CERT_FILE as the system's trust store).
    let start = |config: &std::path::Path, ca: &std::path::Path| {
        let env = [
            ("SSL_CERT_FILE", ca.as_os_str()),
            ("WEIR_LOG", "warn".as_ref()),
        ];
        spawn_weir(config, &env, None)
    };
    let redis = server.client().await;
    let dlq = format!("{stream}:dlq");

    let untrusting = start(&path, &stranger.path().join("ca.crt"));
    publish(&redis, &stream, "ok", r#"{"n":1}"#).await;
    wait_for(
        "the refused entry dead-lettered after its attempts",
        T,
        || async { redis.stream_len(&dlq).await.unwrap() == 1 },
    )
    .await;
    drop(untrusting);
    let dead = &redis.range(&dlq, "-", "+", 10).await.unwrap()[0];
    let error = field(dead, "dlq_error");
    assert!(
        error.contains(&format!("POST https://127.0.0.1:{port}/hook"))
            && error.to_lowercase().contains("certificate"),
        "the error names the URL and the certificate: {error}"
    );
    assert!(
        bodies.lock().unwrap().is_empty(),
        "nothing crossed an untrusted connection"
    );

    let trusting = start(&path, &certs.path().join("ca.crt"));
    publish(&redis, &stream, "ok", r#"{"n":2}"#).await;
    wait_for("the event posted over TLS and acknowledged", T, || async {
        bodies.lock().unwrap().len() == 1 && group_pending(&redis, &stream, "hooks").await == 0
    })
    .await;
    assert_eq!(bodies.lock().unwrap()[0], r#"{"n":2}"#);
    drop(trusting);

    // The handler's own ca_file (relative to the config file) is trusted even when the
    // system's store is not.
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\nconcurrency = 2\ntypes = [\"ok\"]\nhandler = {{ kind = \"http\", url = \"https://127.0.0.1:{port}/hook\", ca_file = \"ca.crt\" }}\n"
    );
    let with_ca = certs.path().join("streams-ca.toml");
    std::fs::write(&with_ca, toml(&server, &stream, 0, &pools)).unwrap();
    let _own_ca = start(&with_ca, &stranger.path().join("ca.crt"));
    publish(&redis, &stream, "ok", r#"{"n":3}"#).await;
    wait_for(
        "the event posted trusting the handler's ca_file",
        T,
        || async {
            bodies.lock().unwrap().len() == 2 && group_pending(&redis, &stream, "hooks").await == 0
        },
    )
    .await;
    assert_eq!(bodies.lock().unwrap()[1], r#"{"n":3}"#);
}

/// A plain HTTP/1.1 endpoint that answers 200 with keep-alive, then closes each connection
/// once it has been idle for `idle_close` (as servers with a keep-alive timeout do). Keeps
/// every request's head and counts the connections it closed.
async fn closing_webhook(
    idle_close: Duration,
) -> (
    u16,
    Arc<Mutex<Vec<String>>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(AtomicUsize::new(0));
    let (kept, count) = (heads.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (kept, count) = (kept.clone(), count.clone());
            tokio::spawn(async move {
                let idle = answer_ok(tcp, Some(idle_close), |head, _| {
                    kept.lock().unwrap().push(head)
                });
                if idle.await {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, heads, closed)
}

#[tokio::test]
async fn a_keep_alive_connection_the_server_closed_is_not_a_failed_delivery() {
    use std::sync::atomic::Ordering;
    let server = RedisServer::start();
    let stream = stream_name("http-idle");
    let (port, heads, closed) = closing_webhook(Duration::from_millis(100)).await;
    let pools = format!(
        "[[pools]]\nname = \"hooks\"\nconcurrency = 1\ntypes = [\"ok\"]\nhandler = {{ kind = \"http\", url = \"http://127.0.0.1:{port}/hook?v=1\" }}\n"
    );
    let running = run(Engine::new(config(&toml(&server, &stream, 0, &pools))));
    let redis = server.client().await;
    // Two calls in a row share one connection; then the server closes it while it is idle,
    // and the next call must not fail on it.
    for round in 1..=3 {
        publish(&redis, &stream, "ok", r#"{"n":1}"#).await;
        publish(&redis, &stream, "ok", r#"{"n":2}"#).await;
        wait_for("both handled", T, || async {
            heads.lock().unwrap().len() == 2 * round
                && group_pending(&redis, &stream, "hooks").await == 0
        })
        .await;
        wait_for("the idle connection closed by the server", T, || async {
            closed.load(Ordering::SeqCst) == round
        })
        .await;
    }
    let heads = heads.lock().unwrap().clone();
    for head in &heads {
        assert!(
            head.starts_with("POST /hook?v=1 HTTP/1.1\r\n"),
            "origin-form request line: {head}"
        );
        let lower = head.to_lowercase();
        assert!(
            lower.contains(&format!("\r\nhost: 127.0.0.1:{port}")),
            "{head}"
        );
        assert!(lower.contains("\r\nx-weir-attempt: 1"), "no retry: {head}");
    }
    assert_eq!(redis.stream_len(&format!("{stream}:dlq")).await.unwrap(), 0);
    running.stop().await;
}

/// An HTTP proxy: forwards CONNECT tunnels to `127.0.0.1:<tunnel_to>` (whatever host was
/// asked for), and answers plain requests 200 itself. Keeps every request head it got.
async fn proxy(tunnel_to: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                let Ok(n) = tcp.peek(&mut first).await else {
                    return;
                };
                if !first[..n].starts_with(b"CONNECT") {
                    let seen = |head, _| kept.lock().unwrap().push(head);
                    answer_ok(tcp, None, seen).await;
                    return;
                }
                // The CONNECT head, a byte at a time: nothing after it arrives before our 200.
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let Ok(byte) = tcp.read_u8().await else {
                        return;
                    };
                    head.push(byte);
                }
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).trim_end().to_string());
                let mut upstream = tokio::net::TcpStream::connect(("127.0.0.1", tunnel_to))
                    .await
                    .unwrap();
                tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
            });
        }
    });
    (port, heads)
}

/// The proxy variables of the environment, as curl reads them: a plain `http://` webhook is
/// sent to `HTTP_PROXY` by its whole URL, an `https://` one goes through a CONNECT tunnel of
/// `HTTPS_PROXY` with TLS end to end, both with the proxy's credentials, and one on this
/// machine is reached directly. The credentials never reach the log. (`NO_PROXY` is the
/// matcher's, covered by the handler's unit test.)
#[tokio::test]
async fn webhooks_go_through_the_proxy_of_the_environment_but_local_ones_go_direct() {
    let server = RedisServer::start();
    let certs = tempfile::tempdir().unwrap();
    crate::tls::certificates(certs.path());
    let (tls_port, tls_bodies) = https_webhook(certs.path()).await;
    let (direct_port, direct) = webhook().await;
    let (proxy_port, heads) = proxy(tls_port).await;
    let stream = stream_name("proxy");
    let hook = |name: &str, ty: &str, url: String| {
        format!(
            "[[pools]]\nname = \"{name}\"\nconcurrency = 2\ntypes = [\"{ty}\"]\nhandler = {{ kind = \"http\", url = \"{url}\" }}\n"
        )
    };
    let pools = [
        // Resolvable only by the proxy: it answers for the first, tunnels to our endpoint for
        // the second. Loopback goes direct.
        hook("forwarded", "a", "http://webhook.invalid/hook?x=1".into()),
        hook(
            "tunneled",
            "b",
            format!("https://hooks.test:{tls_port}/hook"),
        ),
        hook(
            "direct",
            "ok",
            format!("http://127.0.0.1:{direct_port}/hook"),
        ),
    ]
    .concat();
    let path = certs.path().join("streams.toml");
    std::fs::write(&path, toml(&server, &stream, 0, &pools)).unwrap();
    let log = certs.path().join("weir.log");
    let proxy_url = format!("http://user:s3cret@127.0.0.1:{proxy_port}");
    let ca = certs.path().join("ca.crt");
    let env = [
        ("HTTP_PROXY", proxy_url.as_ref()),
        ("HTTPS_PROXY", proxy_url.as_ref()),
        ("NO_PROXY", "ignored.example".as_ref()),
        ("SSL_CERT_FILE", ca.as_os_str()),
        ("WEIR_LOG", "debug".as_ref()),
    ];
    let weir = spawn_weir(&path, &env, Some(&log));
    let redis = server.client().await;
    publish(&redis, &stream, "a", r#"{"n":1}"#).await;
    publish(&redis, &stream, "b", r#"{"n":2}"#).await;
    publish(&redis, &stream, "ok", r#"{"n":3}"#).await;
    wait_for("all three delivered and acknowledged", T, || async {
        let mut settled = true;
        for pool in ["forwarded", "tunneled", "direct"] {
            settled &= group_pending(&redis, &stream, pool).await == 0;
        }
        heads.lock().unwrap().len() == 2
            && tls_bodies.lock().unwrap().len() == 1
            && direct.lock().unwrap().len() == 1
            && settled
    })
    .await;
    drop(weir);
    let heads = heads.lock().unwrap().clone();
    let basic = "proxy-authorization: basic dxnlcjpzm2nyzxq="; // user:s3cret, lowercased
    let forwarded = heads
        .iter()
        .find(|h| h.starts_with("POST "))
        .expect("the plain webhook went to the proxy");
    assert!(
        forwarded.starts_with("POST http://webhook.invalid/hook?x=1 HTTP/1.1\r\n"),
        "sent by its whole URL: {forwarded}"
    );
    assert!(forwarded.to_lowercase().contains(basic), "{forwarded}");
    assert!(
        forwarded
            .to_lowercase()
            .contains("host: webhook.invalid\r\n")
    );
    let tunnel = heads
        .iter()
        .find(|h| h.starts_with("CONNECT "))
        .expect("the https webhook went through a tunnel");
    assert!(
        tunnel.starts_with(&format!("CONNECT hooks.test:{tls_port} HTTP/1.1\r\n")),
        "{tunnel}"
    );
    assert!(tunnel.to_lowercase().contains(basic), "{tunnel}");
    assert_eq!(tls_bodies.lock().unwrap()[0], r#"{"n":2}"#);
    assert_eq!(direct.lock().unwrap()[0].1, r#"{"n":3}"#);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("entry settled"), "the log was read: {log}");
    assert!(
        !log.contains("s3cret") && !log.to_lowercase().contains("dxnlcjpzm2nyzxq="),
        "the proxy's credentials reached the log"
    );
}
