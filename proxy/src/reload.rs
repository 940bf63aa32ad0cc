//! Reloading the configuration without a restart (SIGHUP, or the file changed).
//!
//! Everything is built and checked first; only then is anything put in force, so a
//! file that cannot be used changes nothing. What takes effect at once: the room's
//! settings (rate, capacity, `queue_all`, `passthrough`, a scheduled opening —
//! through the store, so on every instance), the per-client and per-session limits
//! and the proof of work, the page's template and catalogues, the bypass routes,
//! the trusted proxies, and the origin (URL, timeout, CA, `max_in_flight`,
//! `idempotent_paths`). Requests that start after it use the new ones (one under
//! way at that moment may use either for its next step); no connection is dropped
//! and no place is touched.
//! What needs a restart (the listeners, the store, the line's timings, the cookie,
//! the admin token, TLS files, the breaker) is named in a warning and left as it is.

use std::sync::Arc;

use crate::admission::line::SettingsPatch;
use crate::admission::Admission;
use crate::breaker::Breaker;
use crate::config::{Config, RoomConfig};
use crate::forward::Forwarder;
use crate::limits::{Protection, ProtectionPatch};
use crate::metrics::Metrics;
use crate::public::{Live, Public};
use crate::queue_page::Page;

/// Why a new configuration was refused (the one in force stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The page's template or catalogues.
    #[error(transparent)]
    Page(#[from] crate::queue_page::PageError),
    /// The origin's CA.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The limits.
    #[error("{0}")]
    Limits(String),
    /// The store did not take the settings (they apply at the next reload).
    #[error("settings not applied: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Puts a new configuration in force.
pub struct Reloader {
    current: Config,
    rooms: Vec<ReloadedRoom>,
    protection: Arc<Protection>,
    breaker: Breaker,
    metrics: Metrics,
}

/// What a reload changes of one room: its public side and its line's settings.
pub struct ReloadedRoom {
    /// Its name (see [`crate::config::RoomConfig::name`]).
    pub name: String,
    /// Its public side.
    pub public: Arc<Public>,
    /// Its line.
    pub admission: Admission,
}

impl Reloader {
    /// A reloader for a proxy started with `current`, whose rooms are `rooms`.
    pub fn new(
        current: Config,
        rooms: Vec<ReloadedRoom>,
        protection: Arc<Protection>,
        breaker: Breaker,
        metrics: Metrics,
    ) -> Self {
        Self {
            current,
            rooms,
            protection,
            breaker,
            metrics,
        }
    }

    /// Puts `new` in force as far as it can be without a restart; `Err` when it
    /// cannot be used, and then nothing changed (but for the store's settings,
    /// which are applied last).
    pub async fn apply(&mut self, new: Config) -> Result<(), ReloadError> {
        // Each running room with its new configuration and page (a room the file
        // no longer has, or has anew, waits for a restart).
        let configs = new.all_rooms();
        let mut pages = Vec::new();
        for room in &self.rooms {
            let Some(c) = configs.iter().find(|c| c.name == room.name) else {
                continue;
            };
            let page = Page::load(&c.page)?;
            pages.push((c.clone(), Arc::new(page.for_room(&c.name))));
        }
        let live = self.rooms[0].public.live();
        let origin_changed = new.forwarding_differs(&self.current);
        let forwarder = if origin_changed {
            Forwarder::configured(&new, self.metrics.clone(), self.breaker.clone())?
        } else {
            live.forwarder.clone()
        };
        let (pow, difficulty) = new.edge.proof_of_work;
        let limits = ProtectionPatch {
            places_per_minute: Some(new.edge.places.rate),
            places_burst: Some(new.edge.places.burst),
            session_requests_per_second: Some(new.edge.session.rate),
            session_burst: Some(new.edge.session.burst),
            proof_of_work: Some(pow),
            pow_difficulty: Some(difficulty),
        };
        // Checked before anything is set: when it fails, nothing changed.
        let before = serde_json::json!(self.protection.current());
        let after = self.protection.apply(limits).map_err(ReloadError::Limits)?;
        crate::admin::audit_change("reload", "protection", &before, &serde_json::json!(after));

        for key in needs_restart(&self.current, &new) {
            tracing::warn!(
                key,
                "changed in the configuration file: takes effect at the next restart, the old value stays until then"
            );
        }
        for (c, page) in &pages {
            if let Some(room) = self.rooms.iter().find(|r| r.name == c.name) {
                room.public.reload(Live {
                    forwarder: forwarder.clone(),
                    bypass: new.bypass.clone(),
                    page: page.clone(),
                    clients: new.edge.trusted_proxies.clone(),
                });
            }
        }
        if origin_changed {
            tracing::info!(origin = %new.origin, timeout = ?new.origin_timeout, "forwarding to the origin changed");
        }
        self.current = new;

        // The file's settings win on a reload (paused and closed are not in it).
        let mut failed = None;
        for (c, _) in &pages {
            let Some(room) = self.rooms.iter().find(|r| r.name == c.name) else {
                continue;
            };
            if let Err(e) = put_settings(room, c).await {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Puts `c`'s settings in force in `room`'s line.
async fn put_settings(room: &ReloadedRoom, c: &RoomConfig) -> Result<(), ReloadError> {
    let s = c.settings;
    let patch = SettingsPatch {
        new_users_per_minute: Some(s.new_users_per_minute),
        max_active_users: Some(s.max_active_users),
        queue_all: Some(s.queue_all),
        passthrough: Some(s.passthrough),
        lottery: Some(s.lottery),
        opens_at: s.opens_at.map(Some),
        ..SettingsPatch::default()
    };
    let now = room.admission.clock().now_ms();
    let store = room.admission.store();
    let before = match store.snapshot(now).await {
        Ok(snap) => serde_json::json!(snap.settings),
        Err(_) => serde_json::Value::Null,
    };
    let after = store.update_settings(patch, now).await?;
    let what = crate::admin::in_room("settings", &c.name);
    crate::admin::audit_change("reload", &what, &before, &serde_json::json!(after));
    Ok(())
}

/// The keys whose change needs a restart and that differ between `old` and `new`.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut differs = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("listen.public", old.public != new.public);
    differs("listen.admin", old.admin != new.admin);
    differs(
        "listen.handover_wait",
        old.handover_wait != new.handover_wait,
    );
    differs("listen.tls_cert/tls_key", old.tls != new.tls);
    differs("store", old.store != new.store || old.room != new.room);
    differs("store.on_failure", old.on_failure != new.on_failure);
    differs("store.state_dir", old.state_dir != new.state_dir);
    differs(
        "admission.session_duration/burst, [queue]",
        old.timing != new.timing,
    );
    differs(
        "queue.token_ttl",
        old.queue_token_ttl != new.queue_token_ttl,
    );
    differs("admin.token", old.admin_token != new.admin_token);
    differs(
        "cookie",
        old.cookie_name != new.cookie_name || old.cookie_secure != new.cookie_secure,
    );
    differs("breaker", old.breaker != new.breaker);
    // Which rooms there are and where they apply, their timings and cookies.
    let shape = |c: &Config| {
        c.rooms
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.hosts.clone(),
                    r.paths.clone(),
                    r.cookie_name.clone(),
                    r.timing,
                    r.queue_token_ttl,
                )
            })
            .collect::<Vec<_>>()
    };
    differs("rooms", shape(old) != shape(new));
    differs(
        "limits.max_connections",
        old.edge.max_connections != new.edge.max_connections,
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::needs_restart;
    use crate::config::Config;

    #[test]
    fn what_needs_a_restart_is_named_and_nothing_else() {
        let base = "[listen]\npublic = \"127.0.0.1:8080\"\nadmin = \"127.0.0.1:9090\"\n\
                    [origin]\nurl = \"http://127.0.0.1:8081\"\n[admin]\ntoken = \"a-long-token\"\n";
        let old = Config::from_toml(base, None).unwrap();
        let same = Config::from_toml(
            &format!("{base}[admission]\nnew_users_per_minute = 5\n[routes]\nbypass = [\"/x/\"]\n"),
            None,
        )
        .unwrap();
        assert!(needs_restart(&old, &same).is_empty());
        let moved = Config::from_toml(
            &format!(
                "{}[cookie]\nname = \"other\"\n",
                base.replace("8080", "9999")
            ),
            None,
        )
        .unwrap();
        assert_eq!(needs_restart(&old, &moved), ["listen.public", "cookie"]);
    }
}
