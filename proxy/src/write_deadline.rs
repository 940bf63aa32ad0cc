//! A connection whose writes give up when the client takes nothing for a while
//! (`limits.write_timeout`): hyper's server has no such timeout of its own, and a
//! client that reads nothing would otherwise keep its connection, and whatever
//! it holds, for ever. The fast lane does the same in [`crate::h1`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// `inner`, whose writes fail once it has taken nothing for `timeout`.
pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Running while a write waits for the client; made only then.
    waiting: Option<Pin<Box<Sleep>>>,
    metrics: Option<Metrics>,
    peer: SocketAddr,
}

impl<T> WriteDeadline<T> {
    /// `inner` (from `peer`) with writes cut after `timeout` without progress,
    /// counted in `metrics`.
    pub fn new(inner: T, timeout: Duration, metrics: Option<Metrics>, peer: SocketAddr) -> Self {
        Self {
            inner,
            timeout,
            waiting: None,
            metrics,
            peer,
        }
    }

    /// What a write that is pending means: still waiting, or (past the
    /// deadline) the client cut.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if waiting.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(m) = &self.metrics {
            m.client_cut("write_timeout");
        }
        tracing::debug!(peer = %self.peer, "a client took nothing of an answer for limits.write_timeout: cut");
        Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
    }

    /// `done`, which is progress: the deadline starts again at the next wait.
    fn progressed<R>(&mut self, done: io::Result<R>) -> Poll<io::Result<R>> {
        self.waiting = None;
        Poll::Ready(done)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(done) => self.progressed(done),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(done) => self.progressed(done),
            Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(done) => self.progressed(done),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_takes_nothing_is_cut_and_one_that_reads_is_not() {
        // A pipe with room for 64 bytes, read by nobody.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let peer = "127.0.0.1:1".parse().unwrap();
        let mut w = WriteDeadline::new(ours, Duration::from_secs(30), None, peer);
        w.write_all(&[0; 64]).await.unwrap();
        let stuck = w.write_all(&[0; 64]).await;
        assert_eq!(stuck.unwrap_err().kind(), io::ErrorKind::TimedOut);

        let (ours, mut reader) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(ours, Duration::from_secs(30), None, peer);
        // Reads 64 bytes every 20 s: slower than the writer, never 30 s idle.
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0; 64];
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if reader.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        w.write_all(&[0; 64 * 5]).await.unwrap();
        drop(theirs.shutdown().await);
    }
}
