//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them (over TLS when
//! configured, chosen by ALPN) until shutdown, at most so many at once: past the
//! cap the newest connection gets a short `503` and is closed, so the process never
//! spins at its file-descriptor limit (and keeps descriptors for its state files
//! and the origin).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::h1::rewind::Rewind;
use crate::h1::{Lane, NoLane};
use crate::http::Body;
use crate::shutdown::Shutdown;
use crate::write_deadline::WriteDeadline;

/// How long open connections get to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(10);
/// The answer to a connection over the cap.
const SHED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 5\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: 28\r\n\r\nToo many connections, retry\n";
/// Connections over the cap answered at once; more are closed without an answer.
const SHED_AT_ONCE: usize = 64;
/// Requests one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 128;
/// Longest pause between failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long a client has to finish the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How a listener serves: how many connections at once, and over TLS or not.
#[derive(Clone)]
pub struct Cap {
    /// Connections served at once; the newest beyond are shed.
    pub max_connections: usize,
    /// Counts shed connections.
    pub metrics: Option<crate::metrics::Metrics>,
    /// Terminates TLS on every connection when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// A client that takes nothing of an answer for this long is cut
    /// (`limits.write_timeout`).
    pub write_timeout: Duration,
}

/// Where a request came from.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// A cap for `configured` connections (0: from the file-descriptor limit: half
/// of what is left after a reserve, the other half being for the origin).
pub fn max_connections(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(65_536);
    let soft = usize::try_from(soft).unwrap_or(usize::MAX).min(1 << 20);
    (soft.saturating_sub(256) / 2).max(16)
}

/// Answers a connection over the cap with [`SHED`] and closes it.
async fn shed(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = async {
        stream.write_all(SHED).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the answer away.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

/// Serves `handler` on every connection accepted from `listener` until `shutdown`,
/// then lets open connections finish their requests (up to [`DRAIN`]). The
/// listener is shared: whoever else holds it (a handover to a new process) keeps
/// it open after this stops accepting, so connections wait instead of being refused.
pub async fn serve<H, F>(listener: Arc<TcpListener>, handler: H, cap: Cap, shutdown: Shutdown)
where
    H: Fn(Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    serve_with::<H, F, NoLane>(listener, handler, None, cap, shutdown).await;
}

/// As [`serve`], with plain-TCP connections served by the fast lane `lane` for as
/// long as their requests are its own (see [`crate::h1`]), and by `handler` after.
pub async fn serve_fast<H, F, L>(
    listener: Arc<TcpListener>,
    handler: H,
    lane: Arc<L>,
    cap: Cap,
    shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
    L: Lane,
{
    serve_with(listener, handler, Some(lane), cap, shutdown).await;
}

async fn serve_with<H, F, L>(
    listener: Arc<TcpListener>,
    handler: H,
    lane: Option<Arc<L>>,
    cap: Cap,
    mut shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
    L: Lane,
{
    // Every connection's task holds a sender: all are done when the channel closes.
    let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let http = Arc::new(http);
    let cap = Arc::new(cap);
    let permits = Arc::new(tokio::sync::Semaphore::new(cap.max_connections));
    // Answering shed connections is bounded too: beyond, they are closed at once.
    let shedding = Arc::new(tokio::sync::Semaphore::new(SHED_AT_ONCE));
    let mut failed_accepts = 0u64;
    let local = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, longer each
                    // time, and say so once per episode.
                    if failed_accepts == 0 {
                        tracing::warn!(error = %e, listener = ?local, "accept failed; backing off (logged once until accepting again)");
                    }
                    failed_accepts += 1;
                    if let Some(m) = &cap.metrics {
                        m.accept_failed();
                    }
                    let backoff = Duration::from_millis(10 << failed_accepts.min(7)).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => continue,
                        _ = shutdown.wait() => break,
                    }
                }
            },
            _ = shutdown.wait() => break,
        };
        if failed_accepts > 0 {
            tracing::info!(failed_accepts, listener = ?local, "accepting connections again");
            failed_accepts = 0;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(m) = &cap.metrics {
                m.client_error("shed");
            }
            tracing::debug!(%peer, "over limits.max_connections: shedding the newest");
            if let Ok(slot) = shedding.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    shed(stream).await;
                    drop(slot);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (handler, http, watcher, cap) = (
            handler.clone(),
            http.clone(),
            graceful.watcher(),
            cap.clone(),
        );
        let (lane, stop, alive) = (lane.clone(), shutdown.clone(), alive.clone());
        tokio::spawn(async move {
            let _held = (permit, alive);
            let service = move |tls| {
                let conn = Conn { addr: peer, tls };
                service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler(req, conn).await) }
                })
            };
            let served = match cap.tls.clone() {
                None => {
                    let (stream, read) = match &lane {
                        Some(lane) => {
                            let conn = Conn {
                                addr: peer,
                                tls: false,
                            };
                            match crate::h1::serve(&**lane, stream, conn, &cap, stop).await {
                                Some(rest) => rest,
                                None => return,
                            }
                        }
                        None => (stream, Vec::new()),
                    };
                    let io = WriteDeadline::new(
                        Rewind::new(stream, read),
                        cap.write_timeout,
                        cap.metrics.clone(),
                        peer,
                    );
                    let conn = http.serve_connection(TokioIo::new(io), service(false));
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let io = WriteDeadline::new(
                                stream,
                                cap.write_timeout,
                                cap.metrics.clone(),
                                peer,
                            );
                            let io = TokioIo::new(io);
                            let conn = http.serve_connection(io, service(true));
                            watcher.watch(conn).await
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(alive);
    let drained = async { tokio::join!(graceful.shutdown(), all_done.recv()) };
    let _ = tokio::time::timeout(DRAIN, drained).await;
}
