//! The admin listener: metrics, health, and the admin API behind a bearer token.

use crate::queue_page::notice::Notice;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prometheus::Registry;

use crate::admission::line::{Settings, SettingsPatch, Snapshot};
use crate::admission::Admission;
use crate::http::{self as h, Body};
use crate::limits::{Protection, ProtectionPatch};
use crate::shutdown::Shutdown;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

const MAX_BODY: usize = 64 * 1024;
/// How long a request body may take to arrive in whole.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The admin side of the proxy.
#[derive(Clone)]
pub struct Admin {
    /// Every room, the default one first.
    rooms: Vec<Room>,
    /// The default room's registry (and the process's), then the other rooms'.
    registries: Vec<Registry>,
    token: String,
    /// Fired when this process stops serving (shutdown or handover): not ready.
    stopping: Shutdown,
    protection: Arc<Protection>,
    /// This process, for `/admin/instances`.
    instance: Option<Arc<crate::instance::Instance>>,
}

/// What the admin API steers of one room.
#[derive(Clone)]
struct Room {
    name: String,
    admission: Admission,
    history: crate::history::History,
}

impl Admin {
    /// The admin service; `/admin/*` needs `Authorization: Bearer <token>`;
    /// `/readyz` says 503 once `stopping` fires.
    pub fn new(
        admission: Admission,
        registry: Registry,
        token: String,
        stopping: Shutdown,
        protection: Arc<Protection>,
    ) -> Self {
        Self {
            rooms: vec![Room {
                name: crate::config::DEFAULT_ROOM.into(),
                admission,
                history: crate::history::History::default(),
            }],
            registries: vec![registry],
            token,
            stopping,
            protection,
            instance: None,
        }
    }

    /// Lists `instance` and the room's others at `/admin/instances`.
    pub fn with_instance(mut self, instance: Arc<crate::instance::Instance>) -> Self {
        self.instance = Some(instance);
        self
    }

    /// Serves `history` at `/admin/history` (the console's charts).
    pub fn with_history(mut self, history: crate::history::History) -> Self {
        self.rooms[0].history = history;
        self
    }

    /// Steers room `name` as well (`?room=NAME` on `/admin/state`, `/settings`,
    /// `/history`), and shows its metrics from `registry`.
    pub fn with_room(
        mut self,
        name: &str,
        admission: Admission,
        history: crate::history::History,
        registry: Registry,
    ) -> Self {
        self.rooms.push(Room {
            name: name.into(),
            admission,
            history,
        });
        self.registries.push(registry);
        self
    }

    /// The room `req` names (`?room=`; the default room without one), if any has
    /// that name.
    fn room(&self, req: &Request<Incoming>) -> Option<&Room> {
        match h::query_param(req.uri(), "room") {
            None => Some(&self.rooms[0]),
            Some(name) => self.rooms.iter().find(|r| r.name == name),
        }
    }

    /// Answers one request from `from` (named in the audit log of changes).
    pub async fn handle(&self, req: Request<Incoming>, from: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/metrics") => h::respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::metrics::render_all(&self.registries),
            ),
            (&Method::GET, "/healthz") => h::respond(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/" | "/console.js" | "/console.css") => crate::console::asset(&path),
            (&Method::GET, "/readyz") => self.ready(),
            (&Method::GET, "/healthz/store") => self.store_health().await,
            (_, p) if p.starts_with("/admin/") => {
                if let Some(refused) = cross_site(&req) {
                    return refused;
                }
                if !self.authorized(&req) {
                    let mut r = h::error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                    return r;
                }
                let Some(room) = self.room(&req).cloned() else {
                    return h::error(StatusCode::NOT_FOUND, "no such room");
                };
                match (req.method(), p) {
                    (&Method::GET, "/admin/state") => Self::state(&room).await,
                    (&Method::GET, "/admin/rooms") => self.rooms_json().await,
                    (&Method::GET, "/admin/instances") => self.instances().await,
                    (&Method::GET, "/admin/history") => h::json(
                        StatusCode::OK,
                        &json!({ "every_ms": 1000, "samples": room.history.samples() }),
                    ),
                    (&Method::PATCH, "/admin/settings") => Self::settings(&room, req, from).await,
                    (&Method::GET, "/admin/event") => Self::event(&room).await,
                    (&Method::PUT, "/admin/event") => Self::schedule(&room, req, from).await,
                    (&Method::DELETE, "/admin/event") => Self::cancel(&room, from).await,
                    (&Method::GET, "/admin/notice") => Self::notice(&room).await,
                    (&Method::PUT, "/admin/notice") => {
                        Self::put_notice(&room, Some(req), from).await
                    }
                    (&Method::DELETE, "/admin/notice") => Self::put_notice(&room, None, from).await,
                    (&Method::GET, "/admin/protection") => {
                        h::json(StatusCode::OK, &json!(self.protection.current()))
                    }
                    (&Method::PATCH, "/admin/protection") => self.protection(req, from).await,
                    (
                        _,
                        "/admin/state" | "/admin/settings" | "/admin/protection" | "/admin/history"
                        | "/admin/rooms" | "/admin/event" | "/admin/instances" | "/admin/notice",
                    ) => h::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                    _ => h::error(StatusCode::NOT_FOUND, "no such admin endpoint"),
                }
            }
            _ => h::error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }

    async fn snapshot(room: &Room) -> Result<Snapshot, Response<Body>> {
        let now = room.admission.clock().now_ms();
        room.admission.store().snapshot(now).await.map_err(|e| {
            tracing::warn!(error = %e, "admin: store failed");
            h::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        })
    }

    /// Whether this instance serves visitors: it does while the store is away too
    /// (hold mode), so a Redis blip never turns every instance away at once; not
    /// once it is stopping (shutdown or handover), so a balancer moves on.
    fn ready(&self) -> Response<Body> {
        if self.stopping.is_fired() {
            return h::respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "stopping\n");
        }
        h::respond(StatusCode::OK, "text/plain", "ready\n")
    }

    /// Whether the store answers (its own endpoint: for alerts, not for balancers).
    async fn store_health(&self) -> Response<Body> {
        match Self::snapshot(&self.rooms[0]).await {
            Ok(_) => h::respond(StatusCode::OK, "text/plain", "store ok\n"),
            Err(_) => h::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "store unavailable\n",
            ),
        }
    }

    async fn state(room: &Room) -> Response<Body> {
        match Self::snapshot(room).await {
            Ok(s) => h::json(StatusCode::OK, &state_json(&s)),
            Err(r) => r,
        }
    }

    /// The room's event, if it has one.
    async fn event(room: &Room) -> Response<Body> {
        match crate::event::current(room.admission.store().as_ref()).await {
            Ok(event) => h::json(StatusCode::OK, &json!({ "event": event.map(|(_, e)| e) })),
            Err(e) => {
                tracing::warn!(error = %e, "admin: store failed");
                h::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
            }
        }
    }

    /// The operator's notice on the room's queue page, if one is up.
    async fn notice(room: &Room) -> Response<Body> {
        match room.admission.store().notice().await {
            Ok(stored) => {
                let notice = stored.as_deref().and_then(Notice::parse);
                h::json(StatusCode::OK, &json!({ "notice": notice }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin: store failed");
                h::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
            }
        }
    }

    /// Puts up the notice `req` carries (`{"notice": "text"}` or texts by language),
    /// or takes it down (no request: DELETE), for every instance sharing the store.
    async fn put_notice(
        room: &Room,
        req: Option<Request<Incoming>>,
        from: SocketAddr,
    ) -> Response<Body> {
        let notice = match req {
            Some(req) => {
                let body: serde_json::Value = match read_json(req).await {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                match Notice::from_json(&body["notice"]) {
                    Ok(n) => Some(n),
                    Err(reason) => return h::error(StatusCode::BAD_REQUEST, &reason),
                }
            }
            None => None,
        };
        let store = room.admission.store();
        let before = store
            .notice()
            .await
            .ok()
            .flatten()
            .and_then(|t| Notice::parse(&t))
            .map_or(serde_json::Value::Null, |n| json!(n));
        let stored = notice.as_ref().map(Notice::to_json);
        if let Err(e) = store.set_notice(stored.as_deref()).await {
            tracing::warn!(error = %e, "admin: store failed");
            return h::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
        let after = notice
            .as_ref()
            .map_or(serde_json::Value::Null, |n| json!(n));
        audit_change(from, &room.audited("notice"), &before, &after);
        room.admission.set_notice(notice);
        h::json(StatusCode::OK, &json!({ "notice": after }))
    }

    /// Schedules the room's event (replacing one that is not under way).
    async fn schedule(room: &Room, req: Request<Incoming>, from: SocketAddr) -> Response<Body> {
        let event: crate::event::Event = match read_json(req).await {
            Ok(e) => e,
            Err(r) => return r,
        };
        let event = match event.validated(crate::clock::wall_ms()) {
            Ok(e) => e,
            Err(reason) => return h::error(StatusCode::BAD_REQUEST, &reason),
        };
        let store = room.admission.store();
        let before = crate::event::current(store.as_ref())
            .await
            .ok()
            .flatten()
            .map_or(serde_json::Value::Null, |(_, e)| json!(e));
        match crate::event::schedule(store.as_ref(), &event).await {
            Ok(()) => {
                audit_change(from, &room.audited("event"), &before, &json!(event));
                h::json(StatusCode::OK, &json!({ "event": event }))
            }
            Err(e) => Self::event_error(e),
        }
    }

    /// Cancels the room's event (one under way gives the room's settings back).
    async fn cancel(room: &Room, from: SocketAddr) -> Response<Body> {
        let now = room
            .admission
            .store()
            .line_time(room.admission.clock().now_ms());
        match crate::event::cancel(room.admission.store().as_ref(), now).await {
            Ok(old) => {
                let before = old.map_or(serde_json::Value::Null, |e| json!(e));
                audit_change(
                    from,
                    &room.audited("event"),
                    &before,
                    &serde_json::Value::Null,
                );
                h::json(StatusCode::OK, &json!({ "event": null }))
            }
            Err(e) => Self::event_error(e),
        }
    }

    fn event_error(e: crate::event::EventError) -> Response<Body> {
        match e {
            crate::event::EventError::Store(e) => {
                tracing::warn!(error = %e, "admin: store failed");
                h::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
            }
            e => h::error(StatusCode::CONFLICT, &e.to_string()),
        }
    }

    /// This instance and the others sharing its store.
    async fn instances(&self) -> Response<Body> {
        let room = &self.rooms[0];
        let now = room
            .admission
            .store()
            .line_time(room.admission.clock().now_ms());
        let list = match &self.instance {
            Some(me) => me.all(room.admission.store().as_ref(), now).await,
            None => Vec::new(),
        };
        h::json(StatusCode::OK, &json!({ "instances": list }))
    }

    /// Every room with its state (`null` while its store is away).
    async fn rooms_json(&self) -> Response<Body> {
        let mut rooms = Vec::new();
        for room in &self.rooms {
            let state = Self::snapshot(room)
                .await
                .map_or(serde_json::Value::Null, |s| state_json(&s));
            rooms.push(json!({ "name": room.name, "state": state }));
        }
        h::json(StatusCode::OK, &json!({ "rooms": rooms }))
    }

    async fn protection(&self, req: Request<Incoming>, from: SocketAddr) -> Response<Body> {
        let patch: ProtectionPatch = match read_json(req).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        let before = json!(self.protection.current());
        match self.protection.apply(patch) {
            Ok(now) => {
                audit_change(from, "protection", &before, &json!(now));
                h::json(StatusCode::OK, &json!(now))
            }
            Err(reason) => h::error(StatusCode::BAD_REQUEST, &reason),
        }
    }

    async fn settings(room: &Room, req: Request<Incoming>, from: SocketAddr) -> Response<Body> {
        let patch: SettingsPatch = match read_json(req).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        let now = room.admission.clock().now_ms();
        if let Err(reason) = validate(&patch, crate::clock::wall_ms()) {
            return h::error(StatusCode::BAD_REQUEST, &reason);
        }
        // What was in force, for the audit log (unknown when the store is away).
        let before = match room.admission.store().snapshot(now).await {
            Ok(s) => settings_json(&s.settings),
            Err(_) => serde_json::Value::Null,
        };
        match room.admission.store().update_settings(patch, now).await {
            Ok(s) => {
                audit_change(from, &room.audited("settings"), &before, &settings_json(&s));
                h::json(StatusCode::OK, &settings_json(&s))
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin: store failed");
                h::error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
            }
        }
    }
}

impl Room {
    /// What the audit log names for a change of `what` in this room.
    fn audited(&self, what: &str) -> String {
        in_room(what, &self.name)
    }
}

/// What the audit log names for a change of `what` in room `room`: the default
/// room's changes as they always were, another room's with its name.
pub fn in_room(what: &str, room: &str) -> String {
    if room == crate::config::DEFAULT_ROOM {
        what.to_owned()
    } else {
        format!("{what} of room {room}")
    }
}

/// A request another site's page made (its `Origin` is not this listener's own
/// host), refused `403` before the token is even looked at: the console's calls
/// come from its own origin. Tools that send no `Origin` (curl, the CLI) pass.
fn cross_site(req: &Request<Incoming>) -> Option<Response<Body>> {
    let origin = req.headers().get(http::header::ORIGIN)?;
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the URI's authority.
    let host = req
        .headers()
        .get(http::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .or_else(|| {
            req.uri()
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        });
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    if origin_host.is_some_and(|o| host.as_deref() == Some(o.as_bytes())) {
        return None;
    }
    tracing::warn!(origin = ?origin, "admin: a cross-site request refused");
    Some(h::error(
        StatusCode::FORBIDDEN,
        "cross-site requests are refused",
    ))
}

/// Logs an admin change (target `waitroom::audit`): who or what made it (an address,
/// or `reload`), what, and each field that changed as `before → after`.
pub fn audit_change(
    from: impl std::fmt::Display,
    what: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
) {
    let changes = changes(before, after);
    let changes = if changes.is_empty() {
        "nothing".to_owned()
    } else {
        changes.join(", ")
    };
    tracing::info!(target: "waitroom::audit", %from, what, %changes, "admin change");
}

/// The fields of `after` that differ from `before`, as `field: before → after`.
fn changes(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    let Some(after) = after.as_object() else {
        return Vec::new();
    };
    after
        .iter()
        .filter_map(|(k, v)| {
            let old = before.get(k).unwrap_or(&serde_json::Value::Null);
            (old != v).then(|| format!("{k}: {old} → {v}"))
        })
        .collect()
}

/// Reads a JSON body of at most [`MAX_BODY`] that arrives within
/// [`BODY_DEADLINE`]; otherwise the answer to give (413, 408 or 400).
async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let announced = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(closing(h::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large",
        )));
    }
    let collected = tokio::time::timeout(
        BODY_DEADLINE,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await;
    let body = match collected {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(closing(h::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
            )))
        }
        Ok(Err(_)) => {
            return Err(closing(h::error(
                StatusCode::BAD_REQUEST,
                "the body broke off",
            )))
        }
        Err(_) => {
            tracing::debug!("admin: a request body did not arrive in time");
            return Err(closing(h::error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            )));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| h::error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))
}

/// `r`, closing the connection after it (its request's body was not read whole).
fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

fn validate(p: &SettingsPatch, wall_ms: u64) -> Result<(), String> {
    if matches!(p.opens_at, Some(Some(at)) if at > crate::config::latest_opening(wall_ms)) {
        return Err("opens_at: must be at most a year from now".into());
    }
    if p.new_users_per_minute == Some(0) {
        return Err(
            "new_users_per_minute: must be at least 1 (use paused to stop admissions)".into(),
        );
    }
    if p.max_active_users == Some(0) {
        return Err("max_active_users: must be at least 1".into());
    }
    for (key, n) in [
        ("new_users_per_minute", p.new_users_per_minute),
        ("max_active_users", p.max_active_users),
    ] {
        if let Some(n) = n.filter(|&n| n > crate::config::MAX_LIMIT) {
            return Err(format!("{key}: {}", crate::config::beyond_any_site(n)));
        }
    }
    Ok(())
}

fn settings_json(s: &Settings) -> serde_json::Value {
    serde_json::to_value(s).expect("settings serialize")
}

fn state_json(s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "queue_length": s.queue_length,
        "active_users": s.active_users,
        "called_pending": s.called_pending,
        "places_issued": s.places_issued,
        "measured_per_minute": s.measured_per_minute,
        "new_users_per_minute": s.settings.new_users_per_minute,
        "max_active_users": s.settings.max_active_users,
        "paused": s.settings.paused,
        "closed": s.settings.closed,
        "queue_all": s.settings.queue_all,
        "passthrough": s.settings.passthrough,
        "lottery": s.settings.lottery,
        "opens_at": s.settings.opens_at.map(crate::clock::format_rfc3339),
        "held_until": s.settings.held_until.map(crate::clock::format_rfc3339),
    })
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::{changes, constant_time_eq, validate};
    use crate::admission::line::SettingsPatch;

    #[test]
    fn a_rate_or_capacity_no_site_can_mean_is_refused_with_the_reason() {
        for (rate, capacity, key) in [
            (
                Some(u32::MAX),
                None,
                "new_users_per_minute: 4294967295 is more",
            ),
            (None, Some(10_000_001), "max_active_users: 10000001 is more"),
        ] {
            let patch = SettingsPatch {
                new_users_per_minute: rate,
                max_active_users: capacity,
                ..Default::default()
            };
            let e = validate(&patch, 0).unwrap_err();
            assert!(e.starts_with(key), "{e}");
        }
        let patch = SettingsPatch {
            new_users_per_minute: Some(10_000_000),
            ..Default::default()
        };
        assert!(
            validate(&patch, 0).is_ok(),
            "ten million a minute is still a rate"
        );
    }

    #[test]
    fn the_audit_names_each_change_with_before_and_after() {
        let before =
            serde_json::json!({"paused": false, "new_users_per_minute": 600, "closed": false});
        let after =
            serde_json::json!({"paused": true, "new_users_per_minute": 300, "closed": false});
        assert_eq!(
            changes(&before, &after),
            ["new_users_per_minute: 600 → 300", "paused: false → true"]
        );
        let unknown = serde_json::Value::Null;
        assert_eq!(changes(&unknown, &after).len(), 3);
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
