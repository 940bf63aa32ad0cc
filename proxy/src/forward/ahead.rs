//! Reading an origin's answer ahead of the visitor, so that its turn at the
//! origin ends when the origin is done, not when the visitor is.
//!
//! A task reads the origin's body and hands it on through a channel, up to
//! [`READ_AHEAD`] bytes beyond what the visitor has taken; then it waits for the
//! visitor (backpressure on this answer alone, its turn still held). A visitor
//! that takes nothing for `limits.write_timeout` while the read-ahead is full is
//! cut: the answer ends in an error, the origin's connection is closed and the
//! turn given back.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::sync::{mpsc, Semaphore};

use super::turns::Turn;
use crate::http::{Body, BoxError};
use crate::metrics::Metrics;

/// How far an answer is read ahead of the visitor.
pub const READ_AHEAD: usize = 1024 * 1024;

/// A frame and the read-ahead it takes.
type Piece = Result<(Frame<Bytes>, u32), BoxError>;

/// `body` read ahead by a task of its own, which holds `turn` until the origin's
/// whole answer is read; a visitor that takes nothing for `stall` while the
/// read-ahead is full is cut (a second later than the connection's own write
/// deadline would cut an HTTP/1.1 client, so that a cut is counted once: here
/// only for what a connection does not see, a stalled HTTP/2 stream).
pub fn read_ahead(body: Body, turn: Turn, stall: Duration, metrics: Metrics) -> Body {
    let stall = stall + Duration::from_secs(1);
    let size = body.size_hint();
    let budget = Arc::new(Semaphore::new(READ_AHEAD));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(pump(body, turn, tx, budget.clone(), stall, metrics));
    Ahead { rx, budget, size }.boxed()
}

async fn pump(
    mut body: Body,
    turn: Turn,
    tx: mpsc::UnboundedSender<Piece>,
    budget: Arc<Semaphore>,
    stall: Duration,
    metrics: Metrics,
) {
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            // The visitor went away: the origin's connection is closed.
            _ = tx.closed() => break,
        };
        let frame = match next {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                let _ = tx.send(Err(e));
                break;
            }
        };
        let n = frame
            .data_ref()
            .map_or(0, |d| d.len().min(READ_AHEAD) as u32);
        match tokio::time::timeout(stall, budget.acquire_many(n)).await {
            Ok(Ok(room)) => room.forget(),
            // The visitor's side is gone.
            Ok(Err(_)) => break,
            Err(_) => {
                metrics.client_cut("write_timeout");
                tracing::info!(
                    stalled_secs = stall.as_secs(),
                    "a visitor took nothing of an answer for limits.write_timeout: cut"
                );
                let _ = tx.send(Err("the visitor took nothing of the answer".into()));
                break;
            }
        }
        if tx.send(Ok((frame, n))).is_err() {
            break;
        }
    }
    // The origin is done with this request (or it is given up): its turn ends.
    drop(turn);
}

/// The visitor's side of an answer read ahead.
struct Ahead {
    rx: mpsc::UnboundedReceiver<Piece>,
    budget: Arc<Semaphore>,
    size: SizeHint,
}

impl hyper::body::Body for Ahead {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok((frame, n)))) => {
                self.budget.add_permits(n as usize);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // A pump waiting for room stops at once.
        self.budget.close();
    }
}
