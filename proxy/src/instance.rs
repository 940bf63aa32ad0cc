//! This process as the console and the room's other instances see it: an id,
//! where it listens, its version and when it started. Sharing a Redis, each
//! instance announces itself every few seconds ([`announce`]), so that
//! `GET /admin/instances` on any of them lists them all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::clock::{Clock, Millis};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How often an instance announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// An instance silent for longer than this is not listed.
pub const LISTED_WITHIN: Millis = 15_000;

/// This process.
#[derive(Clone, Debug)]
pub struct Instance {
    id: String,
    info: serde_json::Value,
}

impl Instance {
    /// This process, listening on `public` and `admin`, started at `started`.
    pub fn new(public: Option<SocketAddr>, admin: Option<SocketAddr>, started: Millis) -> Self {
        let id = format!("{:012x}", rand::random::<u64>() >> 16);
        let host = std::env::var("HOSTNAME").ok();
        let info = json!({
            "id": id,
            "host": host,
            "public": public.map(|a| a.to_string()),
            "admin": admin.map(|a| a.to_string()),
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": crate::clock::format_rfc3339(started),
        });
        Self { id, info }
    }

    /// Its id (random, new at each start).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it says of itself, seen at `now`.
    pub fn info(&self, now: Millis) -> serde_json::Value {
        let mut info = self.info.clone();
        info["seen_at"] = json!(crate::clock::format_rfc3339(now));
        info
    }

    /// Every instance of the room heard from lately, this one first (marked
    /// `"this": true`); with a store of one instance, this one alone.
    pub async fn all(&self, store: &dyn Store, now: Millis) -> Vec<serde_json::Value> {
        let mut mine = self.info(now);
        mine["this"] = json!(true);
        let mut list = vec![mine];
        match store.instances(now, LISTED_WITHIN).await {
            Ok(others) => list.extend(
                others
                    .iter()
                    .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                    .filter(|v| v["id"] != self.id.as_str()),
            ),
            Err(e) => tracing::debug!(error = %e, "could not list the instances"),
        }
        list
    }
}

/// Announces `instance` in `store` now and every [`ANNOUNCE_EVERY`] until shutdown.
pub async fn announce(
    instance: Arc<Instance>,
    store: Arc<dyn Store>,
    clock: Clock,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let now = store.line_time(clock.now_ms());
        let info = instance.info(now).to_string();
        if let Err(e) = store.announce(instance.id(), &info, now).await {
            tracing::debug!(error = %e, "could not announce this instance");
        }
    }
}
