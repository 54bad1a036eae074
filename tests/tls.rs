//! TLS against Debian's redis-server with certificates made by openssl in the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use weir::{Config, Engine};

use crate::support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests (apt-get install -y openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub(crate) fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=weir-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        // hooks.test: a name only a test proxy resolves (loopback never goes through one).
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:hooks.test\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn write(dir: &Path, name: &str, redis: &str, stream: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[redis]\n{redis}\n[stream]\nname = \"{stream}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[[pools]]\nname = \"p\"\ntypes = [\"*\"]\nhandler = {{ kind = \"log\" }}\n",
        "0"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn status(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("-c")
        .arg(config)
        .args(["status", "--json"])
        .output()
        .unwrap()
}

#[tokio::test]
async fn rediss_with_a_ca_file_works_and_misconfigurations_fail_clearly() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let tls_port = free_port();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let server = RedisServer::start_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &p("server.crt"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    let stream = stream_name("tls");
    let dir = tempfile::tempdir().unwrap();
    let tls_url = format!("url = \"rediss://127.0.0.1:{tls_port}/0\"");
    let good = write(
        dir.path(),
        "good.toml",
        &format!("{tls_url}\nca_file = {:?}", p("ca.crt")),
        &stream,
    );

    // The engine over TLS handles what is published.
    let handler = Recorder::ok();
    let running = run(Engine::new(Config::load(&good).unwrap()).with_handler("p", handler.clone()));
    let redis = server.client().await;
    publish(&redis, &stream, "job", "{}").await;
    wait_for("handled over TLS", Duration::from_secs(15), || async {
        handler.count() == 1 && group_pending(&redis, &stream, "p").await == 0
    })
    .await;
    running.stop().await;
    assert_eq!(
        status(&good).status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status(&good).stderr)
    );

    // A plaintext client on the TLS port fails cleanly, and fast.
    let plain = write(
        dir.path(),
        "plain.toml",
        &format!("url = \"redis://127.0.0.1:{tls_port}/0\""),
        &stream,
    );
    let started = std::time::Instant::now();
    let out = status(&plain);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach Redis"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "hung for {:?}",
        started.elapsed()
    );

    // Without our CA, the certificate is refused.
    let untrusted = write(dir.path(), "untrusted.toml", &tls_url, &stream);
    let out = status(&untrusted);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    // Skipping the check needs the explicit flag…
    let insecure = write(
        dir.path(),
        "insecure.toml",
        &format!("{tls_url}\ninsecure_skip_verify = true"),
        &stream,
    );
    assert_eq!(status(&insecure).status.code(), Some(0));
    // …and TLS options on a plaintext URL are a config error naming the key.
    let mixed = write(
        dir.path(),
        "mixed.toml",
        &format!(
            "url = \"redis://127.0.0.1:{tls_port}/0\"\nca_file = {:?}",
            p("ca.crt")
        ),
        &stream,
    );
    let out = status(&mixed);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redis.url"));
    let missing = write(
        dir.path(),
        "missing.toml",
        &format!("{tls_url}\nca_file = \"/nonexistent/ca.pem\""),
        &stream,
    );
    let out = status(&missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redis.ca_file"));
}
