//! Wiring: builds the parts from a [`Config`] and serves both listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::admission::Admission;
use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::config::StoreKind;
use crate::config::{Config, RoomConfig};
use crate::forward::{Forwarder, Peer};
use crate::limits::Protection;
use crate::metrics::Metrics;
use crate::public::{CookiePolicy, Public};
use crate::queue_page::{Page, PageError};
use crate::shutdown::Shutdown;
use crate::store::memory::{MemoryStore, StateError};
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError};
use crate::token::{KeyError, Keyring, Tokens};

/// The built-in demo configuration (`config/demo.toml`).
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// The demo configuration with the public port `port`, admin on `port + 1` and
/// the origin on `port + 2`; its state lives in the temporary directory, per port.
pub fn demo_config(port: u16) -> Config {
    let mut c = Config::from_toml(DEMO_TOML, None).expect("the demo configuration is valid");
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    c.public = at(port);
    c.admin = at(port.wrapping_add(1));
    c.origin = format!("http://{}", at(port.wrapping_add(2)))
        .parse()
        .expect("a valid URL");
    c.state_dir = std::env::temp_dir().join(format!("waitroom-demo-{port}"));
    c
}

/// Puts each configuration from `reloads` in force until `shutdown`.
async fn apply_reloads(
    mut reloader: crate::reload::Reloader,
    mut reloads: tokio::sync::mpsc::Receiver<Config>,
    mut shutdown: Shutdown,
) {
    loop {
        let config = tokio::select! {
            c = reloads.recv() => match c {
                Some(c) => c,
                None => return,
            },
            _ = shutdown.wait() => return,
        };
        match reloader.apply(config).await {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; what was in force stays")
            }
        }
    }
}

/// Says which settings are in force and, where they are not the file's, why: the
/// saved line (memory) or the shared store (Redis) keeps what operators set at run
/// time across restarts; a reload puts the file's values in force.
async fn log_settings_in_force(admission: &Admission, room: &RoomConfig, store: &StoreKind) {
    let now = admission.clock().now_ms();
    let Ok(snapshot) = admission.store().snapshot(now).await else {
        return;
    };
    let (s, f) = (snapshot.settings, room.settings);
    tracing::info!(
        room = room.name,
        new_users_per_minute = s.new_users_per_minute,
        max_active_users = s.max_active_users,
        paused = s.paused,
        closed = s.closed,
        queue_all = s.queue_all,
        passthrough = s.passthrough,
        "settings in force"
    );
    let source = match store {
        StoreKind::Memory => "the saved line",
        StoreKind::Redis(_) => "the shared store",
    };
    let differs = [
        (
            "admission.new_users_per_minute",
            s.new_users_per_minute.to_string(),
            f.new_users_per_minute.to_string(),
        ),
        (
            "admission.max_active_users",
            s.max_active_users.to_string(),
            f.max_active_users.to_string(),
        ),
        (
            "admission.queue_all",
            s.queue_all.to_string(),
            f.queue_all.to_string(),
        ),
        (
            "admission.passthrough",
            s.passthrough.to_string(),
            f.passthrough.to_string(),
        ),
    ];
    for (key, in_force, file) in differs.into_iter().filter(|(_, a, b)| a != b) {
        tracing::warn!(
            room = room.name,
            key,
            in_force,
            file,
            source,
            "a setting changed at run time is kept over the file's; reload (SIGHUP) to put the file's in force"
        );
    }
}

/// How often the memory store's line is written to the state directory.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The memory store's state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// The signing keys.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The shared store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The operator's queue page.
    #[error(transparent)]
    Page(#[from] PageError),
    /// A certificate, key or CA.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Runs the proxy on already-bound listeners until `shutdown` fires, or until a
/// new process takes the listeners over (see [`crate::handover`]).
///
/// `keys` signs and verifies tokens; when `None` they come from the store: the
/// state directory in memory mode (created on first start), or Redis, shared by
/// every instance (created by the first). In memory mode the line continues from
/// `state_dir` (see [`MemoryStore::open`]); it is saved every [`SAVE_EVERY`] and
/// once more when this process stops or hands over.
pub async fn run(
    config: Config,
    public: TcpListener,
    admin: TcpListener,
    keys: Option<Keyring>,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let options = Options {
        keys,
        clock: Clock::system(),
        reload: None,
    };
    run_with(config, public, admin, options, shutdown).await
}

/// What [`run_with`] takes besides the configuration.
pub struct Options {
    /// Signing keys; `None`: from the store (see [`run`]).
    pub keys: Option<Keyring>,
    /// This instance's clock (tests skew it).
    pub clock: Clock,
    /// New configurations to put in force while running (see [`crate::reload`]).
    pub reload: Option<tokio::sync::mpsc::Receiver<Config>>,
}

/// [`run`] with [`Options`].
pub async fn run_with(
    config: Config,
    public: TcpListener,
    admin: TcpListener,
    options: Options,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let Options {
        keys,
        clock,
        reload,
    } = options;
    // One stop for everything here: the caller's shutdown, or a handover.
    let (stop, stopping) = crate::shutdown::channel();
    let stop = Arc::new(stop);
    {
        let (stop, mut shutdown) = (stop.clone(), shutdown);
        tokio::spawn(async move {
            shutdown.wait().await;
            stop.fire();
        });
    }
    let shutdown = stopping;
    let public_tls = match &config.tls {
        Some((cert, key)) => {
            let tls = crate::tls::ServerTls::load(cert, key)?;
            tokio::spawn(tls.clone().watch(shutdown.clone()));
            Some(tls.acceptor())
        }
        None => None,
    };
    let registry = Registry::new();
    let metrics = Metrics::new(&registry);
    // The rooms' pages first: a broken one stops the start before anything opens.
    let room_configs = config.all_rooms();
    let mut pages = Vec::new();
    for room in &room_configs {
        let page = Page::load(&room.page)?;
        pages.push(Arc::new(page.for_room(&room.name)));
    }
    // The default room's store holds the signing keys every room shares (a token
    // names its line, so one room's is nothing in another's).
    let (store, keys, memory, shared_keys) =
        open_store(&config, &room_configs[0], keys, shutdown.clone()).await?;
    let keys = keys.expect("the default room brings the keys");
    let tokens = Tokens::new(keys, clock.clone(), 0, 0);
    if let Some(redis) = shared_keys {
        tokio::spawn(keep_keys_in_sync(redis, tokens.clone(), shutdown.clone()));
    }
    let breaker = Breaker::new(config.breaker);
    let reload_breaker = breaker.clone();
    let forwarder = Forwarder::configured(&config, metrics.clone(), breaker.clone())?;
    let (public, admin) = (Arc::new(public), Arc::new(admin));
    let public_addr = public.local_addr().ok();
    let handed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // After a handover in memory mode the line lives in the new process: what
    // still reaches this one (a request on a connection open from before) is
    // passed on to it, on the same address.
    let successor = match (public_addr, &memory) {
        (Some(addr), Some(_)) => Some(Forwarder::relay(
            format!("http://{addr}").parse().expect("an address URL"),
            metrics.clone(),
        )),
        _ => None,
    };
    let (pow, difficulty) = config.edge.proof_of_work;
    let protection = Arc::new(
        Protection::new(config.edge.places, config.edge.session).with_pow(pow, difficulty),
    );
    tokio::spawn(sweep_limits(protection.clone(), shutdown.clone()));

    let mut rooms = Vec::new();
    let process_metrics = metrics.clone();
    let mut first = Some((store, memory));
    for (room, page) in room_configs.iter().zip(pages) {
        let (store, memory, registry, metrics) = match first.take() {
            Some((store, memory)) => (store, memory, registry.clone(), metrics.clone()),
            None => {
                let (store, _, memory, _) =
                    open_store(&config, room, None, shutdown.clone()).await?;
                let registry = crate::metrics::room_registry(&room.name);
                let metrics = Metrics::new(&registry);
                (store, memory, registry, metrics)
            }
        };
        let parts = RoomParts {
            config: room,
            store,
            memory,
            tokens: &tokens,
            clock: &clock,
            metrics,
            origin_metrics: &process_metrics,
            registry,
            page,
        };
        let built = start_room(parts, &breaker, &shutdown);
        let mut public = Public::new(
            built.admission.clone(),
            forwarder.clone(),
            CookiePolicy {
                name: room.cookie_name.clone(),
                secure: config.cookie_secure,
            },
            config.bypass.clone(),
            built.metrics.clone(),
            room.timing.held_poll_ms(),
            built.page.clone(),
        );
        if let Some(successor) = &successor {
            public = public.relay_after(handed_over.clone(), successor.clone());
        }
        let public =
            Arc::new(public.with_edge(config.edge.trusted_proxies.clone(), protection.clone()));
        log_settings_in_force(&built.admission, room, &config.store).await;
        rooms.push((built, public));
    }
    if let Some(reloads) = reload {
        let reloader = crate::reload::Reloader::new(
            config.clone(),
            rooms
                .iter()
                .map(|(b, p)| crate::reload::ReloadedRoom {
                    name: b.name.clone(),
                    public: p.clone(),
                    admission: b.admission.clone(),
                })
                .collect(),
            protection.clone(),
            reload_breaker,
            metrics.clone(),
        );
        tokio::spawn(apply_reloads(reloader, reloads, shutdown.clone()));
    }
    let mut admin_service = None::<Admin>;
    for (built, _) in &rooms {
        admin_service = Some(match admin_service {
            None => Admin::new(
                built.admission.clone(),
                built.registry.clone(),
                config.admin_token.clone(),
                shutdown.clone(),
                protection.clone(),
            )
            .with_history(built.history.clone()),
            Some(admin) => admin.with_room(
                &built.name,
                built.admission.clone(),
                built.history.clone(),
                built.registry.clone(),
            ),
        });
    }
    let instance = Arc::new(crate::instance::Instance::new(
        public_addr,
        admin.local_addr().ok(),
        crate::clock::wall_ms(),
    ));
    let default_room = &rooms[0].0.admission;
    tokio::spawn(crate::instance::announce(
        instance.clone(),
        default_room.store().clone(),
        default_room.clock().clone(),
        shutdown.clone(),
    ));
    let admin_service = Arc::new(
        admin_service
            .expect("at least the default room")
            .with_instance(instance),
    );
    let memories: Vec<MemoryStore> = rooms.iter().filter_map(|(b, _)| b.memory.clone()).collect();
    let savers: Vec<_> = rooms
        .iter_mut()
        .filter_map(|(b, _)| b.saver.take())
        .collect();
    let offer = offer_handover(
        &config,
        (public.clone(), admin.clone()),
        stop,
        (!memories.is_empty()).then(|| (memories.clone(), handed_over)),
    );
    let public_service = Arc::new(crate::public::Rooms::new(
        room_configs
            .into_iter()
            .zip(rooms.iter().map(|(_, p)| p.clone()))
            .collect(),
    ));

    let lane = Arc::new(PublicLane(public_service.clone()));
    let public_task = crate::server::serve_fast(
        public,
        move |req, conn: crate::server::Conn| {
            let s = public_service.clone();
            async move {
                let logged = Logged::start(&req, conn);
                let r = s.handle(req, peer_of(conn)).await;
                if let Some(logged) = logged {
                    logged.done(r.status());
                }
                r
            }
        },
        lane,
        crate::server::Cap {
            max_connections: crate::server::max_connections(config.edge.max_connections),
            metrics: Some(metrics.clone()),
            tls: public_tls,
            write_timeout: config.edge.write_timeout,
        },
        shutdown.clone(),
    );
    let admin_task = crate::server::serve(
        admin,
        move |req, conn: crate::server::Conn| {
            let s = admin_service.clone();
            async move { s.handle(req, conn.addr).await }
        },
        crate::server::Cap {
            max_connections: ADMIN_CONNECTIONS,
            metrics: None,
            tls: None,
            write_timeout: config.edge.write_timeout,
        },
        shutdown,
    );
    tokio::join!(public_task, admin_task);
    if let Some(mut offer) = offer {
        // Stopped by a signal: the listeners stay open a moment longer, so that a
        // successor started right after takes them over and refuses nobody.
        if tokio::time::timeout(config.handover_wait, &mut offer)
            .await
            .is_err()
        {
            offer.abort();
        }
    }
    for saver in savers {
        let _ = saver.await;
    }
    for memory in memories {
        blocking(move || memory.close()).await?;
    }
    Ok(())
}

/// A room's store, and with the default room's the signing keys (`keys`, or the
/// state directory's, or the shared store's) and, in Redis mode, the store that
/// keeps them in sync; in memory mode the store again, to save and close.
async fn open_store(
    config: &Config,
    room: &RoomConfig,
    keys: Option<Keyring>,
    shutdown: Shutdown,
) -> Result<OpenedStore, AppError> {
    let default = room.name == crate::config::DEFAULT_ROOM;
    Ok(match &config.store {
        StoreKind::Memory => {
            let dir = room.state_dir(config);
            let memory = open_memory(&dir, room, shutdown).await?;
            let keys = match (default, keys) {
                (_, Some(k)) => Some(k),
                (true, None) => Some(Keyring::load_or_create(&config.state_dir)?),
                (false, None) => None,
            };
            (Arc::new(memory.clone()), keys, Some(memory), None)
        }
        StoreKind::Redis(target) => {
            let redis = Arc::new(
                RedisStore::connect(target, &room.store_name(config), room.timing, room.settings)
                    .await?,
            );
            let keys = match (default, keys) {
                (_, Some(k)) => Some(k),
                (true, None) => Some(redis.shared_keys().await?),
                (false, None) => None,
            };
            let shared = default.then(|| redis.clone());
            (redis, keys, None, shared)
        }
    })
}

/// What [`open_store`] opened.
type OpenedStore = (
    Arc<dyn Store>,
    Option<Keyring>,
    Option<MemoryStore>,
    Option<Arc<RedisStore>>,
);

/// What [`start_room`] takes.
struct RoomParts<'a> {
    config: &'a RoomConfig,
    store: Arc<dyn Store>,
    memory: Option<MemoryStore>,
    tokens: &'a Tokens,
    clock: &'a Clock,
    metrics: Metrics,
    /// The process's metrics (the origin's figures).
    origin_metrics: &'a Metrics,
    registry: Registry,
    page: Arc<Page>,
}

/// A room, running: its line's pump, its hold while the origin fails, its
/// history and, in memory mode, its saving.
struct Room {
    name: String,
    admission: Admission,
    metrics: Metrics,
    registry: Registry,
    history: crate::history::History,
    page: Arc<Page>,
    memory: Option<MemoryStore>,
    saver: Option<tokio::task::JoinHandle<()>>,
}

fn start_room(parts: RoomParts<'_>, breaker: &Breaker, shutdown: &Shutdown) -> Room {
    let RoomParts {
        config: room,
        store,
        memory,
        tokens,
        clock,
        metrics,
        origin_metrics,
        registry,
        page,
    } = parts;
    let saver = memory.clone().map(|m| {
        tokio::spawn(save_periodically(m.clone(), shutdown.clone()));
        tokio::spawn(sync_periodically(m, shutdown.clone()))
    });
    let tokens = tokens.with_ttls(
        room.queue_token_ttl.as_secs(),
        // Sessions slide server-side; the token only needs to outlive a long visit.
        (room.timing.session_ms / 1000).max(3600) * 4,
    );
    let admission =
        Admission::new(store, tokens, clock.clone(), metrics.clone()).on_failure(room.on_failure);
    tokio::spawn(admission.clone().run_pump(shutdown.clone()));
    tokio::spawn(crate::event::run(admission.clone(), shutdown.clone()));
    tokio::spawn(hold_while_failing(
        breaker.clone(),
        admission.store().clone(),
        admission.clock().clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let history = crate::history::History::default();
    tokio::spawn(history.clone().run(
        admission.clone(),
        metrics.clone(),
        origin_metrics.clone(),
        shutdown.clone(),
    ));
    Room {
        name: room.name.clone(),
        admission,
        metrics,
        registry,
        history,
        page,
        memory,
        saver,
    }
}

/// Connections the admin listener serves at once (operators and scrapers).
const ADMIN_CONNECTIONS: usize = 256;

/// How often the breaker's state is published, and how far ahead a hold reaches.
const HOLD_EVERY: Duration = Duration::from_millis(250);
const HOLD_FOR: Duration = Duration::from_secs(1);

/// Holds the line while the origin's breaker is not closed: nobody is called into
/// a failing origin, on any instance sharing the line (each hold reaches a second
/// ahead and is renewed while it lasts). Keeps the breaker's metrics current.
async fn hold_while_failing(
    breaker: Breaker,
    store: Arc<dyn Store>,
    clock: Clock,
    metrics: Metrics,
    mut shutdown: Shutdown,
) {
    let mut changes = breaker.subscribe();
    loop {
        let state = breaker.state();
        metrics.breaker(state.gauge(), breaker.times_opened());
        if breaker.config().enabled && state != crate::breaker::State::Closed {
            let for_ms = HOLD_FOR.as_millis() as u64;
            if let Err(e) = store.hold(for_ms, clock.now_ms()).await {
                tracing::debug!(error = %e, "could not hold the line for the origin");
            }
        }
        tokio::select! {
            _ = tokio::time::timeout(HOLD_EVERY, changes.changed()) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Offers this process's listeners to a successor (see [`crate::handover`]): when
/// one asks, everything here stops accepting and, in memory mode, the line is
/// saved, closed and its directory unlocked before the sockets are sent.
fn offer_handover(
    config: &Config,
    listeners: (Arc<TcpListener>, Arc<TcpListener>),
    stop: Arc<crate::shutdown::Trigger>,
    memory: Option<(Vec<MemoryStore>, Arc<std::sync::atomic::AtomicBool>)>,
) -> Option<tokio::task::JoinHandle<()>> {
    let offer = match crate::handover::Offer::bind(&config.state_dir, listeners.0, listeners.1) {
        Ok(offer) => offer,
        Err(e) => {
            tracing::warn!(error = %e, "no handover socket: a restart will refuse connections for a moment");
            return None;
        }
    };
    Some(tokio::spawn(offer.serve(move || async move {
        stop.fire();
        if let Some((memories, handed_over)) = memory {
            let mut saved = true;
            for memory in memories {
                if let Err(e) = blocking(move || memory.close()).await {
                    tracing::error!(error = %e, "could not save the line for the new process");
                    saved = false;
                }
            }
            if saved {
                handed_over.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    })))
}

/// Opens the memory store in the state directory, waiting while another process
/// holds it (a previous instance still draining writes its last save first).
async fn open_memory(
    dir: &std::path::Path,
    room: &RoomConfig,
    mut shutdown: Shutdown,
) -> Result<MemoryStore, StateError> {
    let waiting_since = tokio::time::Instant::now();
    let mut told = None;
    loop {
        let (dir, timing, settings) = (dir.to_owned(), room.timing, room.settings);
        match blocking(move || MemoryStore::open(&dir, timing, settings)).await {
            Err(StateError::Locked(dir)) => {
                let waited = waiting_since.elapsed().as_secs();
                if told.is_none_or(|t| waited >= t + 5) {
                    tracing::info!(%dir, waited_secs = waited, "the state directory is held by another waitroom process; waiting for it to save and stop");
                    told = Some(waited);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = shutdown.wait() => return Err(StateError::Locked(dir)),
                }
            }
            other => return other,
        }
    }
}

/// Keeps this instance's keys and the room's shared ones together (see
/// [`RedisStore::sync_keys`]): puts them back if Redis lost them, and adopts keys
/// another instance brought, so a token from any instance verifies at every one.
async fn keep_keys_in_sync(store: Arc<RedisStore>, tokens: Tokens, shutdown: Shutdown) {
    every(SAVE_EVERY, shutdown, || async {
        let ours = tokens.keys();
        match store.sync_keys(&ours).await {
            Ok(ring) if ring.kids() != ours.kids() => {
                tracing::info!(keys = ?ring.kids(), "now signing and verifying with the room's shared keys");
                tokens.replace_keys(ring);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "could not check the shared keys"),
        }
    })
    .await
}

/// Runs `work` every `period` (the first time one period from now) until shutdown.
async fn every<F, Fut>(period: Duration, mut shutdown: Shutdown, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        work().await;
    }
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is going away under us (its owner stopped without a shutdown).
        Err(e) => Err(StateError::Io(
            "state directory".into(),
            std::io::Error::other(e.to_string()),
        )),
    }
}

/// Saves the line every [`SAVE_EVERY`], on a thread of its own: building and
/// writing a save of a long line allocates as much as the line, and one thread
/// reuses that memory from save to save where the blocking pool's changing threads
/// would each keep some (the allocator keeps memory per thread).
async fn save_periodically(store: MemoryStore, shutdown: Shutdown) {
    type Reply = tokio::sync::oneshot::Sender<Result<(), StateError>>;
    let (ask, asked) = std::sync::mpsc::channel::<Reply>();
    let saver = std::thread::Builder::new()
        .name("waitroom-save".into())
        .spawn(move || {
            while let Ok(reply) = asked.recv() {
                let _ = reply.send(store.save());
            }
        });
    if let Err(e) = saver {
        tracing::error!(error = %e, "cannot start the thread that saves the line");
        return;
    }
    every(SAVE_EVERY, shutdown, || async {
        let (reply, saved) = tokio::sync::oneshot::channel();
        let stopped = || {
            Err(StateError::Io(
                "state directory".into(),
                std::io::Error::other("the thread that saves the line stopped"),
            ))
        };
        let saved = match ask.send(reply) {
            Ok(()) => saved.await.unwrap_or_else(|_| stopped()),
            Err(_) => stopped(),
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not save the line; will retry");
        }
    })
    .await
}

/// Flushes the journal to the disk every pump round: what a power cut can lose.
async fn sync_periodically(store: MemoryStore, shutdown: Shutdown) {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    every(crate::admission::PUMP_EVERY, shutdown, || {
        let (store, failing) = (store.clone(), failing.clone());
        async move {
            let synced = blocking(move || store.sync()).await;
            let was_failing = failing.swap(synced.is_err(), std::sync::atomic::Ordering::Relaxed);
            if let (Err(e), false) = (synced, was_failing) {
                tracing::warn!(error = %e, "could not flush the journal to the disk");
            }
        }
    })
    .await
}

/// Every 10 s, forgets the clients and sessions that have fully recovered, so the
/// limits' memory follows who was active lately.
async fn sweep_limits(protection: Arc<Protection>, shutdown: Shutdown) {
    every(Duration::from_secs(10), shutdown, || async {
        protection.sweep()
    })
    .await
}

/// The public listener's fast lane (see [`crate::h1`]): every room's public side.
struct PublicLane(Arc<crate::public::Rooms>);

impl crate::h1::Lane for PublicLane {
    fn answer<'s, 'c>(
        &'s self,
        req: crate::h1::Head,
        conn: crate::server::Conn,
        client: &'c mut crate::h1::Client,
    ) -> impl std::future::Future<Output = crate::h1::Sent> + Send + use<'s, 'c> {
        // Not an `async fn`: the room's answer is wrapped, not moved into a
        // future of its own size (a copy of some kilobytes per request).
        Logging {
            logged: Logged::start(&req, conn),
            answer: self.0.answer(req, peer_of(conn), Some(client)),
        }
    }
}

pin_project_lite::pin_project! {
    /// An answer on its way, logged when it is ready (when the access log is on).
    struct Logging<F> {
        #[pin]
        answer: F,
        logged: Option<Logged>,
    }
}

impl<F: std::future::Future<Output = crate::h1::Sent>> std::future::Future for Logging<F> {
    type Output = crate::h1::Sent;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<crate::h1::Sent> {
        let this = self.project();
        let sent = std::task::ready!(this.answer.poll(cx));
        if let Some(logged) = this.logged.take() {
            logged.done(sent.status());
        }
        std::task::Poll::Ready(sent)
    }
}

/// Where a public request came from (whether the peer is trusted is the room's
/// to say).
fn peer_of(conn: crate::server::Conn) -> Peer {
    Peer {
        addr: conn.addr,
        tls: conn.tls,
        trusted: false,
    }
}

/// A public request being answered, for the access log (`waitroom::access` at
/// debug: off unless asked for, it is a line per request).
struct Logged {
    peer: SocketAddr,
    method: http::Method,
    path: String,
    started: std::time::Instant,
}

impl Logged {
    /// `None` while the access log is off.
    fn start<B>(req: &http::Request<B>, conn: crate::server::Conn) -> Option<Self> {
        if !tracing::enabled!(target: "waitroom::access", tracing::Level::DEBUG) {
            return None;
        }
        Some(Self {
            peer: conn.addr,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            started: std::time::Instant::now(),
        })
    }

    /// Logs the request, answered with `status`.
    fn done(self, status: http::StatusCode) {
        tracing::debug!(
            target: "waitroom::access",
            peer = %self.peer,
            method = %self.method,
            path = self.path,
            status = status.as_u16(),
            ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
}
