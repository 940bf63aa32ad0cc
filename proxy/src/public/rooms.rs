//! Which room a request is for (see [`crate::config::RoomConfig`]).
//!
//! Before anything else, the request's path is made the one the origin will
//! understand ([`crate::path`]): every decision below is taken on it, and it is
//! what is forwarded; a path that cannot be read one way only is answered 400.
//!
//! A page or a forwarded request goes to the room its host and path match (the
//! most specific; the default room takes the rest). Hosts match in any case,
//! with or without a trailing dot or a port. A request to `/_waitroom/…` names
//! its room with `?room=NAME` (the queue page of a room asks so); without one it
//! is the default room's, and a name no room has is a 404 (on an instance with
//! one room too).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};

use super::{Public, RESERVED};
use crate::config::RoomConfig;
use crate::forward::Peer;
use crate::h1::{Client, Sent};
use crate::http::{self as h, Body};

/// The public side of every room.
pub struct Rooms {
    configs: Vec<RoomConfig>,
    publics: Vec<Arc<Public>>,
}

impl Rooms {
    /// The rooms, the default one first, each with its public side.
    pub fn new(rooms: Vec<(RoomConfig, Arc<Public>)>) -> Self {
        let (configs, publics) = rooms.into_iter().unzip();
        Self { configs, publics }
    }

    /// Each room's name and public side, the default one first.
    pub fn each(&self) -> impl Iterator<Item = (&str, &Arc<Public>)> {
        self.configs
            .iter()
            .map(|c| c.name.as_str())
            .zip(self.publics.iter())
    }

    /// Answers one request in the room it is for.
    pub async fn handle<B: h::ReqBody>(&self, req: Request<B>, peer: Peer) -> Response<Body> {
        self.answer(req, peer, None).await.into_response()
    }

    /// Answers one request in the room it is for; by the fast lane when `client`
    /// is its connection (see [`Public::answer`]). Not an `async fn`: the room's
    /// answer is returned as it is, not moved into another future of the same
    /// size (a fast-lane request paid a copy of some kilobytes per level).
    pub fn answer<'s, 'c, B: h::ReqBody>(
        &'s self,
        mut req: Request<B>,
        peer: Peer,
        client: Option<&'c mut Client>,
    ) -> Routed<impl Future<Output = Sent> + Send + use<'s, 'c, B>> {
        if let Err(e) = normalize_path(&mut req) {
            // The default room's figures: no room can be told from such a path.
            self.publics[0].refused_path(e);
            return Routed::Nowhere {
                sent: Some(Sent::Response(h::error(
                    StatusCode::BAD_REQUEST,
                    &format!("this path cannot be read one way only: {e}"),
                ))),
            };
        }
        match self.room_of(&req) {
            Some(i) => Routed::Room {
                answer: self.publics[i].answer(req, peer, client),
            },
            None => Routed::Nowhere {
                sent: Some(Sent::Response(h::error(
                    StatusCode::NOT_FOUND,
                    "no such room",
                ))),
            },
        }
    }

    fn room_of<B: h::ReqBody>(&self, req: &Request<B>) -> Option<usize> {
        let path = req.uri().path();
        if path.starts_with(RESERVED) {
            return match h::query_param(req.uri(), "room") {
                None => Some(0),
                Some(name) => self.configs.iter().position(|c| c.name == name),
            };
        }
        if self.configs.len() == 1 {
            return Some(0);
        }
        Some(crate::config::route(&self.configs, host(req).as_deref(), path).unwrap_or(0))
    }
}

/// Puts in `req` its path as the origin will understand it (see [`crate::path`]),
/// the query kept as it came.
fn normalize_path<B>(req: &mut Request<B>) -> Result<(), crate::path::PathError> {
    if req.method() == http::Method::CONNECT {
        // No path at all: refused as a method further on.
        return Ok(());
    }
    let Some(path) = crate::path::normalize(req.uri().path())? else {
        return Ok(());
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    // Made of a path that was valid and only lost characters or had unreserved
    // ones decoded: it is valid too.
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| crate::path::PathError::BadEscape)?,
    );
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| crate::path::PathError::BadEscape)?;
    Ok(())
}

/// The host a request is for, without a port or a trailing dot, in lower case:
/// `Host`, or the URI's authority (HTTP/2).
fn host<B: h::ReqBody>(req: &Request<B>) -> Option<String> {
    let authority = match req.headers().get(http::header::HOST) {
        Some(v) => v.to_str().ok()?.parse::<http::uri::Authority>().ok()?,
        None => req.uri().authority()?.clone(),
    };
    Some(crate::path::normal_host(authority.host()))
}

pin_project_lite::pin_project! {
    /// A request's answer in the room it is for, or the 404 for a room that is not.
    #[project = RoutedProj]
    pub enum Routed<F> {
        /// The room's answer, on its way.
        Room { #[pin] answer: F },
        /// No such room: the answer, until it is taken.
        Nowhere { sent: Option<Sent> },
    }
}

impl<F: Future<Output = Sent>> Future for Routed<F> {
    type Output = Sent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        match self.project() {
            RoutedProj::Room { answer } => answer.poll(cx),
            RoutedProj::Nowhere { sent } => Poll::Ready(
                sent.take()
                    .expect("a future is not polled once it is ready"),
            ),
        }
    }
}
