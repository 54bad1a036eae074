//! A TCP fault proxy between weir and Redis (`tc netem` is not available here): pass,
//! delay, black-hole (hold everything, never close: no RST; delivered when it heals), drop
//! replies (requests reach Redis, answers vanish), or reset (every connection closed at
//! once, new ones refused).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    BlackHole,
    DropReplies,
    Reset,
}

pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Connections accepted so far (tests assert reconnects happened).
    pub accepted: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                if *rx.borrow() == Mode::Reset {
                    let _ = client.set_zero_linger();
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, rx.clone(), false));
                tokio::spawn(pump(sr, cw, rx.clone(), true));
            }
        });
        Proxy {
            port,
            mode,
            accepted,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// Copies one direction; `reply` is Redis → client.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    reply: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read { Ok(0) | Err(_) => break, Ok(n) => n },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == Mode::Reset { break }
                continue;
            }
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass => {}
            Mode::Delay(d) => tokio::time::sleep(d).await,
            // Like a real black hole: nothing arrives (and nothing is lost: TCP would
            // retransmit), until the path heals.
            Mode::BlackHole => {
                while *mode.borrow() == Mode::BlackHole {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                if *mode.borrow() == Mode::Reset {
                    break;
                }
            }
            Mode::DropReplies if reply => continue,
            Mode::DropReplies => {}
            Mode::Reset => break,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Dropping both halves closes the connection.
}
