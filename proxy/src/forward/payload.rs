//! A request's body on its way to the origin, read from the visitor under its
//! own deadline (`limits.body_timeout`) and never at the origin's expense.
//!
//! A body up to [`KEEP_BODY`] (a form: nearly every one) is read whole before the
//! request takes a turn at the origin, and must all come within the deadline;
//! it is kept, so it can be sent again when nothing reached the origin. A larger
//! one streams: each piece must come within the deadline of the last. A client
//! that stalls is answered 408 and counted as the client's doing: never an origin
//! timeout, never a failure for the breaker. The origin's own time
//! (`origin.timeout`) starts once the whole body has been handed to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::http::{Body, BoxError, ProxyError, ReqBody};

/// Bodies up to this size are read whole first, and kept to be sent again.
pub const KEEP_BODY: usize = 64 * 1024;

/// The body as it will be sent: kept whole (can be sent again), or streamed once.
pub(super) enum Payload {
    Kept(Bytes),
    Streamed(Option<Body>, Arc<Progress>),
}

/// How a streamed body went.
#[derive(Debug)]
pub(super) struct Progress {
    /// The client's side broke (malformed, cut short).
    broke: AtomicBool,
    /// The client sent nothing for the deadline.
    stalled: AtomicBool,
    /// Whether it was handed to the origin whole.
    sent: watch::Sender<bool>,
    /// When a piece was last handed on, and whether it is the client that is
    /// waited for now (rather than the origin, which takes nothing).
    handed: std::sync::Mutex<(Instant, bool)>,
}

impl Payload {
    /// Reads `body` for sending: whole when it is small (within `deadline`), or
    /// as a stream whose every piece must come within `deadline` of the last.
    pub async fn of<B: ReqBody>(mut body: B, deadline: Duration) -> Result<Self, ProxyError> {
        let exact = body.size_hint().exact();
        if exact == Some(0) || body.is_end_stream() {
            return Ok(Self::Kept(Bytes::new()));
        }
        if exact.is_some_and(|n| n > KEEP_BODY as u64) {
            return Ok(Self::streamed(Bytes::new(), body, deadline));
        }
        let mut got = BytesMut::new();
        let gather = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| ProxyError::BrokenRequest(e.into().to_string()))?;
                if let Ok(data) = frame.into_data() {
                    got.extend_from_slice(&data);
                    if got.len() > KEEP_BODY {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        match tokio::time::timeout(deadline, gather).await {
            Err(_) => Err(ProxyError::SlowBody),
            Ok(Err(e)) => Err(e),
            Ok(Ok(true)) => Ok(Self::Kept(got.freeze())),
            Ok(Ok(false)) => Ok(Self::streamed(got.freeze(), body, deadline)),
        }
    }

    fn streamed<B: ReqBody>(prefix: Bytes, rest: B, deadline: Duration) -> Self {
        let progress = Arc::new(Progress {
            broke: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            sent: watch::channel(false).0,
            handed: std::sync::Mutex::new((Instant::now(), false)),
        });
        let body = Paced {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest: rest.map_err(Into::into).boxed(),
            deadline,
            stall: None,
            progress: progress.clone(),
        };
        Self::Streamed(Some(body.boxed()), progress)
    }

    /// Whether it is kept (and so can be sent again).
    pub fn is_kept(&self) -> bool {
        matches!(self, Self::Kept(_))
    }

    /// The body for one attempt; `None` when a streamed body was sent already.
    pub fn take(&mut self) -> Option<Body> {
        match self {
            Self::Kept(bytes) => Some(crate::http::full(bytes.clone())),
            Self::Streamed(body, _) => body.take(),
        }
    }

    /// What the client did wrong, when a request failed because of its body.
    pub fn clients_fault(&self) -> Option<ProxyError> {
        let Self::Streamed(_, progress) = self else {
            return None;
        };
        if progress.stalled.load(Ordering::Relaxed) {
            return Some(ProxyError::SlowBody);
        }
        progress
            .broke
            .load(Ordering::Relaxed)
            .then(|| ProxyError::BrokenRequest("the request's body broke off".into()))
    }

    /// Done when the origin has had the whole request for `timeout` without an
    /// answer, or has taken nothing of a streamed body for `timeout` while the
    /// client had something to give: the origin's time runs only while it is
    /// the one waited for, never while the client is slow.
    pub async fn origin_timeout(&self, timeout: Duration) {
        let Self::Streamed(_, progress) = self else {
            return tokio::time::sleep(timeout).await;
        };
        let mut sent = progress.sent.subscribe();
        loop {
            if *sent.borrow_and_update() {
                return tokio::time::sleep(timeout).await;
            }
            let (handed, waiting_for_client) =
                *progress.handed.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if !waiting_for_client && now.saturating_duration_since(handed) >= timeout {
                return;
            }
            let next = if waiting_for_client {
                now + timeout
            } else {
                handed + timeout
            };
            tokio::select! {
                _ = sent.changed() => {}
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

impl Progress {
    /// Notes a piece handed on (`waiting`: or that the client is waited for).
    fn note(&self, waiting_for_client: bool) {
        *self.handed.lock().unwrap_or_else(|p| p.into_inner()) =
            (Instant::now(), waiting_for_client);
    }
}

/// A streamed body, each piece within `deadline` of the last.
struct Paced {
    /// What was read before it was known to be large.
    prefix: Option<Bytes>,
    rest: Body,
    deadline: Duration,
    /// Running while the client is waited for.
    stall: Option<Pin<Box<Sleep>>>,
    progress: Arc<Progress>,
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            self.progress.note(false);
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match Pin::new(&mut self.rest).poll_frame(cx) {
            Poll::Ready(None) => {
                self.stall = None;
                self.progress.sent.send_replace(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.stall = None;
                self.progress.note(false);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.progress.broke.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if self.stall.is_none() {
                    self.progress.note(true);
                }
                let deadline = self.deadline;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
                if stall.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.progress.stalled.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(
                    "the client sent nothing of its body in time".into()
                )))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let before = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + before);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + before);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// A client's body: pieces sent after so many milliseconds each, then nothing.
    struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|p| p.map(|b| Ok(Frame::data(b))))
        }
    }

    fn trickle(pieces: Vec<(u64, Bytes)>) -> Trickle {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            for (after, piece) in pieces {
                tokio::time::sleep(Duration::from_millis(after)).await;
                if tx.send(piece).await.is_err() {
                    return;
                }
            }
            // Held open: the client stalls after its last piece.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        Trickle(rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_body_is_kept_whole_and_must_come_in_time() {
        let five = Duration::from_secs(5);
        let kept = Payload::of(Full::new(Bytes::from_static(b"name=Anna")), five)
            .await
            .unwrap();
        assert!(kept.is_kept());
        let slow = trickle(vec![(0, "name=".into()), (6_000, "Anna".into())]);
        let refused = Payload::of(slow, five).await;
        assert!(
            matches!(refused, Err(ProxyError::SlowBody)),
            "{:?}",
            refused.err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_body_streams_and_a_stall_is_the_clients() {
        let big = Bytes::from(vec![b'x'; KEEP_BODY + 1]);
        let pieces = vec![(0, big), (4_000, "more".into()), (4_000, "more".into())];
        let mut payload = Payload::of(trickle(pieces), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!payload.is_kept());
        let read = payload.take().unwrap().collect().await;
        assert!(read.is_err(), "the client stalled after its last piece");
        assert!(matches!(
            payload.clients_fault(),
            Some(ProxyError::SlowBody)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_origins_time_runs_only_while_the_origin_is_waited_for() {
        let second = Duration::from_secs(1);
        let big = || Bytes::from(vec![b'x'; KEEP_BODY + 1]);
        // A client slow but steady, an origin taking every piece at once: the
        // origin's second never runs out while the client is waited for.
        let pieces = vec![(0, big()), (3_000, "a".into()), (3_000, "b".into())];
        let mut payload = Payload::of(trickle(pieces), Duration::from_secs(5))
            .await
            .unwrap();
        let mut body = payload.take().unwrap();
        let reading = async { while let Some(Ok(_)) = body.frame().await {} };
        tokio::select! {
            _ = payload.origin_timeout(second) => panic!("the client's pace was held against the origin"),
            _ = reading => {}
        }
        // An origin that takes nothing of the body: its second runs.
        let mut payload = Payload::of(trickle(vec![(0, big())]), Duration::from_secs(5))
            .await
            .unwrap();
        let _untaken = payload.take().unwrap();
        let waited = tokio::time::timeout(3 * second, payload.origin_timeout(second)).await;
        assert!(waited.is_ok(), "an origin taking nothing times out");
    }
}
