//! The webhook's HTTP/1.1 client: keep-alive connections, each driven by the task that sends
//! on it.
//!
//! hyper's pooled client runs every connection as a task of its own: a request crosses to
//! that task and its answer crosses back, two task wake-ups (often across threads) per call.
//! Here the calling task polls the connection itself while it waits for the answer and reads
//! the body, so a call costs the socket's own wake-up only. Idle connections wait on a stack,
//! the most recent on top; one the server closed meanwhile is noticed as it is taken (it
//! reads its end of file then) and dropped, so a stale connection costs a reconnect, not a
//! failed delivery.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::sync::lock;

/// An error with what caused it.
pub(super) type Error = Box<dyn std::error::Error + Send + Sync>;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Idle connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept at most (a pool's concurrency needs as many as it runs at once).
const MAX_IDLE: usize = 1024;

/// One keep-alive connection: where requests go in, and the state machine that moves its
/// bytes, polled by whichever task is using it.
struct Conn {
    send: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<Io, Full<Bytes>>>>,
    /// The driver finished: the connection is closed and must not be polled again.
    closed: bool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// How a new connection is made.
pub(super) enum Connector {
    /// Straight to the host of the URI it is given (the webhook, or an HTTP proxy that
    /// forwards plain `http://` requests).
    Direct(HttpsConnector<HttpConnector>),
    /// Through an HTTP proxy's CONNECT tunnel, then TLS with the webhook itself.
    Tunnel(HttpsConnector<Tunnel<HttpConnector>>),
}

impl Connector {
    async fn connect(&self, to: Uri) -> Result<Io, Error> {
        match self {
            Connector::Direct(c) => call(c.clone(), to).await,
            Connector::Tunnel(c) => call(c.clone(), to).await,
        }
    }
}

async fn call<C>(mut connector: C, to: Uri) -> Result<Io, Error>
where
    C: Service<Uri, Response = Io>,
    C::Error: Into<Error>,
{
    poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    connector.call(to).await.map_err(Into::into)
}

pub(super) struct Client {
    connector: Connector,
    /// What the connector is given: the webhook's URL, or the proxy's for a plain `http://`
    /// webhook behind one.
    target: Uri,
    /// Oldest at the front, the next to reuse at the back.
    idle: Mutex<VecDeque<Idle>>,
}

impl Client {
    pub(super) fn new(connector: Connector, target: Uri) -> Client {
        Client {
            connector,
            target,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Sends `request` and reads the answer through `read`, on a reused connection or a new
    /// one. `read` also says whether it read the body to its end; the connection goes back to
    /// the idle stack only then, and only if the server keeps it open.
    pub(super) async fn send<T, F>(
        &self,
        request: Request<Full<Bytes>>,
        read: impl FnOnce(Response<Incoming>) -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = (T, bool)>,
    {
        let mut conn = match self.reuse().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let answer = {
            let Conn {
                send,
                driver,
                closed,
            } = &mut conn;
            drive(driver.as_mut(), closed, async {
                let response = send.send_request(request).await?;
                Ok(read(response).await)
            })
            .await
        };
        let Ok((answer, complete)) = answer else {
            return answer.map(|(t, _)| t);
        };
        if complete && !conn.closed && !conn.send.is_closed() {
            let now = Instant::now();
            let mut idle = lock(&self.idle);
            // Connections left over from a busier time sink to the front: close them once
            // they are past the idle timeout, rather than keep their sockets forever.
            while idle
                .front()
                .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_TIMEOUT)
            {
                idle.pop_front();
            }
            if idle.len() < MAX_IDLE {
                idle.push_back(Idle { conn, since: now });
            }
        }
        Ok(answer)
    }

    /// The most recent idle connection still open and ready for a request.
    async fn reuse(&self) -> Option<Conn> {
        loop {
            let Idle { mut conn, since } = lock(&self.idle).pop_back()?;
            if since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let Conn {
                send,
                driver,
                closed,
            } = &mut conn;
            // Polling the driver reads what arrived while it sat idle: a server's close
            // finishes it here. A live one is ready at once (its last exchange completed).
            let ready = drive(driver.as_mut(), closed, async {
                send.ready().await.map_err(Error::from)
            });
            if ready.await.is_ok() && !conn.closed {
                return Some(conn);
            }
        }
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let io = self.connector.connect(self.target.clone()).await?;
        let (send, driver) = http1::handshake(io).await?;
        Ok(Conn {
            send,
            driver: Box::pin(driver),
            closed: false,
        })
    }
}

/// Runs `work` while polling the connection's `driver`, which moves the bytes `work` waits
/// for. The driver goes first: what arrived since the last poll (an answer, or the server's
/// close of an idle connection) is read before `work` looks. When the driver finishes (the
/// connection closed), `work` is polled once more to give its own error; `closed` records it
/// so the driver is never polled again.
async fn drive<T>(
    mut driver: Pin<&mut Connection<Io, Full<Bytes>>>,
    closed: &mut bool,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        let ended = match *closed {
            true => None,
            false => match driver.as_mut().poll(cx) {
                Poll::Pending => None,
                Poll::Ready(result) => {
                    *closed = true;
                    Some(result)
                }
            },
        };
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        match ended {
            None if !*closed => Poll::Pending,
            Some(Err(e)) => Poll::Ready(Err(e.into())),
            _ => Poll::Ready(Err(
                "the server closed the connection before answering".into()
            )),
        }
    })
    .await
}
