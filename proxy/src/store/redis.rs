//! The shared store: the line in Redis, for several waitroom instances.
//!
//! Every operation is one run of `line.lua` (EVALSHA, loaded on first use), so it is
//! atomic however many instances share the line. All keys carry the room's hash tag
//! (`{waitroom:ROOM}:…`) and land in one slot, so the same scripts run on a Redis
//! Cluster.
//!
//! Status polls mostly cost no round trip: they are answered from a local
//! [`View`] (see [`super::view`] for why its staleness is safe). What local answers
//! change is written back in one `flush` call per pump round (every 50 ms): place
//! deadlines, as heartbeats rewritten only once less than half a window ahead, and
//! session renewals. A poll that reaches Redis sets a provisional deadline
//! (`queue.abandon_min` ahead) until the precise one is written.
//!
//! One clock: the scripts take the time from Redis (`TIME`), not from the calling
//! instance, so instances whose clocks disagree share one line, and a call that
//! waited in its connection while Redis was hung is refused when it finally runs
//! (it carries the time after which its caller gave up) instead of applying a past
//! moment. What an instance sends of its own times (renewals, holds) goes as
//! durations from now; a deadline told to a visitor goes as how long ago it was
//! told and how far ahead of that it lies, so that a silence of the line between
//! the telling and the writing (Redis frozen: see `line.lua`, the clock of
//! presence) does not eat into it. Each instance keeps the offset between Redis's clock
//! and its own (from every view) to tell its visitors times in the line's clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::view::{View, VIEW_EVERY};
use super::{Store, StoreError};
use crate::admission::line::{
    Arrival, Flow, Poll, PumpReport, Settings, SettingsPatch, Snapshot, Timing, Wait,
};
use crate::clock::Millis;
use crate::config::RedisTarget;
use crate::token::{KeyPair, Keyring};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Longest wait for Redis before an operation counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// A call that starts running in Redis later than this after it was sent changes
/// nothing (its caller is about to give up on it).
const STALE_AFTER: Duration = Duration::from_millis(1_500);
/// How long a starting instance that finds no line waits for running instances to
/// restore it (see [`RedisStore::connect`]).
pub const JOIN_GRACE: Duration = Duration::from_secs(2);

const KEY_NAMES: [&str; 13] = [
    "meta", "settings", "live", "dl", "called", "sess", "claimed", "ret", "retdl", "out", "cslot",
    "marks", "lapsed",
];

/// A connection to a single Redis (reconnecting) or to a Redis Cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A [`Store`] in Redis.
pub struct RedisStore {
    conn: Conn,
    script: redis::Script,
    keys: Vec<String>,
    prefix: String,
    timing: Timing,
    line_id: u64,
    /// Deadlines from status polls (when told, and the deadline, in the line's
    /// clock), written with the next pump round.
    pending: Mutex<HashMap<u64, (Millis, Millis)>>,
    /// The deadline last written for each place, to skip writes that barely move it.
    written: Mutex<HashMap<u64, Millis>>,
    /// Session renewals answered locally, written with the next pump round.
    renewals: Mutex<HashMap<u64, Millis>>,
    /// Sessions this instance knows to be alive, and until when.
    sessions: Mutex<HashMap<u64, Millis>>,
    /// The local view that answers status polls.
    view: Mutex<Option<View>>,
    /// The settings as this instance last saw them (the configuration's at first):
    /// what a line that vanished comes back with.
    known: Mutex<Settings>,
    /// The highest place this instance has seen, to number past it after a loss.
    high_water: AtomicU64,
    /// Whose clock the scripts decide with.
    clock: LineClock,
    /// Redis's clock minus this instance's, in ms, as last measured.
    offset: AtomicI64,
}

/// Whose clock the line's scripts decide with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineClock {
    /// Redis's (`TIME`): one clock for every instance. Always, in service.
    Redis,
    /// The times callers pass: for tests that play a story at chosen times.
    Caller,
}

/// An instance silent this long is removed from the room's list.
const FORGET_INSTANCES_MS: Millis = 10 * 60 * 1000;

/// Replaces the event at KEYS[1] with ARGV[2] ('' removes it) if it is ARGV[1]
/// ('' for none): 1 when it did, 0 when another instance changed it first.
static SWAP_EVENT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local now = redis.call('GET', KEYS[1]) or ''
if now ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
",
    )
});

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn field<T: std::str::FromStr>(v: &[String], i: usize) -> Result<T, StoreError> {
    v.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| unavailable(format!("unexpected answer from the line script: {v:?}")))
}

/// Runs `op` within [`OP_TIMEOUT`]; a failure or a timeout means the store is
/// unavailable.
async fn within<T>(
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .map_err(|_| unavailable("Redis did not answer in time"))?
        .map_err(unavailable)
}

fn settings(v: &[String], at: usize) -> Result<Settings, StoreError> {
    super::view::settings_at(v, at)
        .ok_or_else(|| unavailable(format!("unexpected settings from the line script: {v:?}")))
}

impl RedisStore {
    /// Connects to `target` (a single Redis, or any node of a Redis Cluster; over TLS
    /// with `rediss://`) and prepares the line of waiting room `room`, with
    /// `settings` as its initial settings when the line is new (settings already in
    /// Redis win: they may have been changed at run time). When there is no line
    /// yet it waits up to [`JOIN_GRACE`] for running instances to restore one.
    pub async fn connect(
        target: &RedisTarget,
        room: &str,
        timing: Timing,
        settings: Settings,
    ) -> Result<Self, StoreError> {
        let url = target.url.as_str();
        let tls = match &target.tls_ca {
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    unavailable(format!("reading store.tls_ca {}: {e}", path.display()))
                })?),
            }),
            None => None,
        };
        if url.starts_with("rediss://") {
            // One process-wide TLS provider; a second install is a no-op.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let connecting = async {
            if target.cluster {
                let mut builder = redis::cluster::ClusterClient::builder([url])
                    .connection_timeout(OP_TIMEOUT)
                    .response_timeout(OP_TIMEOUT)
                    .retries(2);
                if let Some(certs) = tls {
                    builder = builder.certs(certs);
                }
                Ok(Conn::Cluster(
                    builder.build()?.get_async_connection().await?,
                ))
            } else {
                let client = match tls {
                    Some(certs) => redis::Client::build_with_tls(url, certs)?,
                    None => redis::Client::open(url)?,
                };
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT))
                    .set_response_timeout(Some(OP_TIMEOUT))
                    .set_number_of_retries(1);
                Ok::<_, redis::RedisError>(Conn::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
        };
        let conn = tokio::time::timeout(OP_TIMEOUT * 2, connecting)
            .await
            .map_err(|_| unavailable("timed out connecting to Redis"))?
            .map_err(unavailable)?;
        let prefix = format!("{{waitroom:{room}}}:");
        let mut store = Self {
            conn,
            script: redis::Script::new(include_str!("line.lua")),
            keys: KEY_NAMES.iter().map(|k| format!("{prefix}{k}")).collect(),
            prefix,
            timing,
            line_id: 0,
            pending: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            renewals: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            view: Mutex::new(None),
            known: Mutex::new(settings),
            high_water: AtomicU64::new(0),
            clock: LineClock::Redis,
            offset: AtomicI64::new(0),
        };
        store.await_line().await?;
        // A fresh id, used only if this instance is the one creating the line.
        store.line_id = rand::random::<u64>() >> 11;
        let local = crate::clock::wall_ms();
        let id = store.call("init", local, &[]).await?;
        store.line_id = field(&id, 0)?;
        store.measured_clock(&id, 1, local);
        Ok(store)
    }

    /// Decides with the times callers pass rather than Redis's clock: only for tests
    /// that play a story at chosen times (instances in service must share one clock).
    pub fn with_callers_clock(mut self) -> Self {
        self.clock = LineClock::Caller;
        self
    }

    /// The line's time when this instance's clock says `local`.
    pub fn line_now(&self, local: Millis) -> Millis {
        match self.clock {
            LineClock::Redis => local.saturating_add_signed(self.offset.load(Ordering::Relaxed)),
            LineClock::Caller => local,
        }
    }

    /// Notes Redis's time (at `answer[at]`) as measured when this instance's clock
    /// said `local`.
    fn measured_clock(&self, answer: &[String], at: usize, local: Millis) {
        if let Some(redis) = answer.get(at).and_then(|t| t.parse::<i64>().ok()) {
            let offset = redis - local as i64;
            let before = self.offset.swap(offset, Ordering::Relaxed);
            if (offset - before).abs() > 1_000 {
                tracing::info!(
                    offset_ms = offset,
                    "this instance's clock and Redis's differ"
                );
            }
        }
    }

    /// Waits up to [`JOIN_GRACE`] for the room's line to exist. No line means a new
    /// room, or a Redis that lost its data and whose running instances have not
    /// reconnected yet: they restore the line, with its id, at their next call. A
    /// line this instance started instead would have a new id, which the tokens of
    /// their visitors do not carry.
    async fn await_line(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + JOIN_GRACE;
        loop {
            let mut conn = self.conn.clone();
            // `keys[0]` is the line's `meta` hash (see KEY_NAMES).
            let exists: bool = within(
                redis::cmd("EXISTS")
                    .arg(&self.keys[0])
                    .query_async(&mut conn),
            )
            .await?;
            if exists || tokio::time::Instant::now() >= deadline {
                if !exists {
                    tracing::info!(prefix = %self.prefix, "no line in Redis: starting one");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Brings this instance's keys and the room's shared ones together: the keys
    /// stored in Redis, plus any of `ours` they lack (written back), or `ours` when
    /// Redis has none (it lost its data). Every instance does this periodically and
    /// then signs and verifies with the answer, so instances that came to hold
    /// different keys (one started while Redis was empty) converge on one ring in
    /// which every token either of them issued verifies. Two instances writing at
    /// once may drop one's addition; it is added again at its next round.
    pub async fn sync_keys(&self, ours: &Keyring) -> Result<Keyring, StoreError> {
        let key = self.keys_key();
        let mut conn = self.conn.clone();
        within(async {
            let stored: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let stored = stored.and_then(|bytes| match Keyring::from_json(&bytes) {
                Ok(ring) => Some(ring),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "the shared keys are unreadable; replacing them");
                    None
                }
            });
            let merged = match &stored {
                Some(ring) => ring.merged(ours),
                None => ours.clone(),
            };
            if stored.as_ref().map(Keyring::kids) != Some(merged.kids()) {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(merged.to_json())
                    .query_async(&mut conn)
                    .await?;
            }
            Ok(merged)
        })
        .await
    }

    /// Where the room's keyring lives.
    fn keys_key(&self) -> String {
        format!("{}keys", self.prefix)
    }

    /// Where the instances sharing the room announce themselves.
    fn instances_key(&self) -> String {
        format!("{}instances", self.prefix)
    }

    /// Where the room's event lives (see [`crate::event`]).
    fn event_key(&self) -> String {
        format!("{}event", self.prefix)
    }

    fn notice_key(&self) -> String {
        format!("{}notice", self.prefix)
    }

    /// The room's signing keys, shared by every instance: the first instance to
    /// start stores a new keyring (`SET NX`), the others read it.
    pub async fn shared_keys(&self) -> Result<Keyring, StoreError> {
        let key = self.keys_key();
        let mut conn = self.conn.clone();
        let fresh = Keyring::new(KeyPair::generate(), Vec::new()).to_json();
        let stored: Vec<u8> = within(async {
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn)
                .await?;
            redis::cmd("GET").arg(&key).query_async(&mut conn).await
        })
        .await?;
        Keyring::from_json(&stored).map_err(|e| unavailable(format!("{key} holds no keyring: {e}")))
    }

    /// What a `poll` or a `rejoin` of place or session `seq` answered.
    fn poll_answer(&self, seq: u64, a: &[String], now: Millis) -> Result<Poll, StoreError> {
        match a.first().map(String::as_str) {
            Some("admitted") => {
                self.remember_session(seq, now);
                Ok(Poll::Admitted { sid: seq })
            }
            Some("ended") => Ok(Poll::Ended),
            Some("unknown") => Ok(Poll::Unknown),
            Some("later") => {
                // Called; its claim slot comes in this many ms.
                let after_ms = field(a, 1)?;
                Ok(Poll::Waiting(Wait {
                    position: 1,
                    eta_ms: after_ms,
                    poll_after_ms: after_ms,
                    gate: crate::admission::line::Gate::Open,
                }))
            }
            _ => {
                if let Some(v) = lock(&self.view).as_mut() {
                    v.note_waiting(seq);
                }
                Ok(Poll::Waiting(self.waiting(seq, a, 1, now)?))
            }
        }
    }

    /// `arrive`; `kept`: see [`Store::arrive_kept`] (a kept place has no deadline
    /// to write until its holder checks in).
    async fn arrival(&self, now: Millis, kept: bool) -> Result<Arrival, StoreError> {
        let args = if kept {
            vec!["kept".to_owned()]
        } else {
            Vec::new()
        };
        let a = self.call("arrive", now, &args).await?;
        let seq: u64 = field(&a, 1)?;
        self.high_water.fetch_max(seq, Ordering::Relaxed);
        match a.first().map(String::as_str) {
            Some("admitted") => {
                self.remember_session(seq, now);
                Ok(Arrival::Admitted { sid: seq })
            }
            _ if kept => {
                let (position, flow, settings) = self.told(&a, 2)?;
                let wait = self
                    .timing
                    .wait(position, flow, &settings, self.line_now(now));
                Ok(Arrival::Queued { seq, wait })
            }
            _ => Ok(Arrival::Queued {
                seq,
                wait: self.waiting(seq, &a, 2, now)?,
            }),
        }
    }

    /// Runs `op`; if the line vanished (Redis lost its data), restores it from what
    /// this instance knows first (see [`RedisStore::restore`]) and runs `op` again.
    async fn call(
        &self,
        op: &str,
        now: Millis,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let answer = self.call_once(op, now, args).await?;
        if answer.first().is_none_or(|a| a != "lost") {
            return Ok(answer);
        }
        self.restore(now).await?;
        self.call_once(op, now, args).await
    }

    /// Puts back a line that vanished, from this instance's view: the places that
    /// were waiting (all of them, in order), the called ones and the returned lane,
    /// numbering past every place handed out, with the settings last seen. The
    /// first instance to ask does it; for the others it is a no-op.
    async fn restore(&self, now: Millis) -> Result<(), StoreError> {
        let grace = (self.timing.poll_max_ms * u64::from(self.timing.abandon_polls))
            .max(self.timing.abandon_min_ms);
        let mut args = vec![grace.to_string()];
        {
            let view = lock(&self.view);
            let list = |args: &mut Vec<String>, seqs: &mut dyn Iterator<Item = &u64>| {
                let seqs: Vec<String> = seqs.map(u64::to_string).collect();
                args.push(seqs.len().to_string());
                args.extend(seqs);
            };
            match view.as_ref() {
                Some(v) => {
                    args.extend([v.next.to_string(), v.head.to_string()]);
                    args.push(if v.stride == 1 { "1" } else { "0" }.into());
                    list(&mut args, &mut v.sample.iter());
                    list(&mut args, &mut v.called.iter());
                    list(&mut args, &mut v.returned.iter());
                }
                None => args.extend(["1", "1", "1", "0", "0", "0"].map(String::from)),
            }
        }
        let a = self.call_once("restore", now, &args).await?;
        if a.first().is_some_and(|r| r == "restored") {
            tracing::warn!(
                waiting = a.get(1).map(String::as_str),
                "the line had vanished from Redis; restored it from this instance's view"
            );
        }
        Ok(())
    }

    /// Notes settings Redis answered with (from index `at`).
    fn settings(&self, answer: &[String], at: usize) -> Result<Settings, StoreError> {
        let s = settings(answer, at)?;
        *lock(&self.known) = s;
        Ok(s)
    }

    async fn call_once(
        &self,
        op: &str,
        now: Millis,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let known = *lock(&self.known);
        let mut invocation = self.script.prepare_invoke();
        for k in &self.keys {
            invocation.key(k);
        }
        let (callers_now, valid_until) = match self.clock {
            LineClock::Caller => (now.to_string(), String::new()),
            LineClock::Redis => {
                // A little before this side gives up, so that an answer that comes
                // back too late was not applied either.
                let gives_up = self.line_now(now) + STALE_AFTER.as_millis() as Millis;
                (String::new(), gives_up.to_string())
            }
        };
        invocation
            .arg(op)
            .arg(callers_now)
            .arg(self.timing.session_ms)
            .arg(self.timing.abandon_min_ms)
            .arg(self.timing.burst.unwrap_or(0))
            .arg(self.line_id)
            .arg(known.new_users_per_minute)
            .arg(known.max_active_users)
            .arg(
                u8::from(known.paused)
                    | u8::from(known.queue_all) << 1
                    | u8::from(known.passthrough) << 2
                    | u8::from(known.lottery) << 3,
            )
            .arg(self.high_water.load(Ordering::Relaxed))
            .arg(u8::from(known.closed))
            .arg(known.opens_at.unwrap_or(0))
            .arg(valid_until)
            .arg(self.timing.return_grace_ms)
            .arg(self.timing.returned_share_permille);
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        let answer: Vec<String> = within(invocation.invoke_async(&mut conn)).await?;
        if answer.first().is_some_and(|a| a == "stale") {
            return Err(unavailable("the call ran after its caller gave up"));
        }
        Ok(answer)
    }

    /// Turns a waiting answer (position, measured rate, active sessions, the
    /// settings, from index `at`) into a wait, and queues the precise deadline for
    /// the next pump.
    fn waiting(
        &self,
        seq: u64,
        answer: &[String],
        at: usize,
        now: Millis,
    ) -> Result<Wait, StoreError> {
        let (position, flow, settings) = self.told(answer, at)?;
        Ok(self.wait(seq, position, flow, &settings, now))
    }

    /// The position, flow and settings an answer tells from index `at`.
    fn told(&self, answer: &[String], at: usize) -> Result<(u64, Flow, Settings), StoreError> {
        let position: u64 = field(answer, at)?;
        let flow = Flow {
            measured_per_sec: answer.get(at + 1).and_then(|s| s.parse().ok()),
            active: field(answer, at + 2)?,
        };
        Ok((position, flow, self.settings(answer, at + 3)?))
    }

    /// The wait of `seq` told at `now` (this instance's clock), and its deadline
    /// (in the line's clock) queued for the next flush.
    fn wait(&self, seq: u64, position: u64, flow: Flow, settings: &Settings, now: Millis) -> Wait {
        let now = self.line_now(now);
        let wait = self.timing.wait(position, flow, settings, now);
        let deadline = self.timing.deadline(now, &wait);
        // The deadline in Redis is a heartbeat: it is rewritten only once it is less
        // than half a window ahead. A visitor who keeps polling is always well inside
        // it (their next poll is due a third of a window ahead); one who leaves is
        // noticed at most half a window early, after two missed polls instead of three.
        let mut written = lock(&self.written);
        let window = deadline.saturating_sub(now);
        if written
            .get(&seq)
            .is_none_or(|w| w.saturating_sub(now) < window / 2)
        {
            written.insert(seq, deadline);
            lock(&self.pending).insert(seq, (now, deadline));
        }
        wait
    }

    /// Answers a poll from the local view, when it can (see [`super::view`]).
    fn poll_locally(&self, seq: u64, now: Millis) -> Option<Wait> {
        let view = lock(&self.view);
        let v = view.as_ref().filter(|v| v.fresh(now))?;
        let position = v.position(seq, self.timing.returned_share_permille)?;
        let flow = Flow {
            measured_per_sec: v.measured,
            active: v.active,
        };
        let settings = v.settings;
        drop(view);
        Some(self.wait(seq, position, flow, &settings, now))
    }

    fn remember_session(&self, sid: u64, now: Millis) {
        let mut sessions = lock(&self.sessions);
        sessions.insert(sid, now + self.timing.session_ms);
    }

    /// Writes the deadlines and session renewals answered locally, in one call:
    /// each deadline as how long ago it was told and how far ahead of that it
    /// lies (in the line's clock), each renewal as a duration from now (in this
    /// instance's clock).
    async fn flush(&self, now: Millis) -> Result<(), StoreError> {
        let deadlines: Vec<(u64, (Millis, Millis))> = lock(&self.pending).drain().collect();
        let renewals: Vec<(u64, Millis)> = lock(&self.renewals).drain().collect();
        if deadlines.is_empty() && renewals.is_empty() {
            return Ok(());
        }
        let mut args = vec![deadlines.len().to_string()];
        let line_now = self.line_now(now);
        for (seq, (told, deadline)) in &deadlines {
            args.push(seq.to_string());
            args.push(line_now.saturating_sub(*told).to_string());
            args.push(deadline.saturating_sub(*told).to_string());
        }
        for (sid, lapses) in &renewals {
            args.push(sid.to_string());
            args.push(lapses.saturating_sub(now).to_string());
        }
        if let Err(e) = self.call("flush", now, &args).await {
            // Keep them for the next round; newer values of the same place win.
            let mut pending = lock(&self.pending);
            for (k, v) in deadlines {
                pending.entry(k).or_insert(v);
            }
            let mut into = lock(&self.renewals);
            for (k, v) in renewals {
                into.entry(k).or_insert(v);
            }
            return Err(e);
        }
        Ok(())
    }

    async fn refresh_view(&self, now: Millis) -> Result<(), StoreError> {
        let due = lock(&self.view)
            .as_ref()
            .is_none_or(|v| now.saturating_sub(v.fetched_at) >= VIEW_EVERY || now < v.fetched_at);
        if !due {
            return Ok(());
        }
        let a = self.call("view", now, &[]).await?;
        let view =
            View::parse(&a, now).ok_or_else(|| unavailable(format!("unexpected view: {a:?}")))?;
        self.measured_clock(&a, super::view::LINE_NOW_AT, now);
        // Every place below the line's numbering was handed out: a store that
        // later forgets them (it went back in time) is moved past them first.
        self.high_water
            .fetch_max(view.next.saturating_sub(1), Ordering::Relaxed);
        *lock(&self.known) = view.settings;
        *lock(&self.view) = Some(view);
        // Forget sessions that have lapsed locally (Redis is asked about them again)
        // and deadlines that have passed.
        lock(&self.sessions).retain(|_, lapses| *lapses > now);
        let line_now = self.line_now(now);
        lock(&self.written).retain(|_, deadline| *deadline > line_now);
        Ok(())
    }
}

#[async_trait]
impl Store for RedisStore {
    fn line_id(&self) -> u64 {
        self.line_id
    }

    fn line_time(&self, local: Millis) -> Millis {
        self.line_now(local)
    }

    fn session_ms(&self) -> Millis {
        self.timing.session_ms
    }

    /// Every 50 ms: each round is a script run in the shared Redis (the default
    /// burst, a tenth of a second's worth, covers the longer interval).
    fn pump_every(&self) -> Duration {
        Duration::from_millis(50)
    }

    async fn arrive(&self, now: Millis) -> Result<Arrival, StoreError> {
        self.arrival(now, false).await
    }

    async fn arrive_kept(&self, now: Millis) -> Result<Arrival, StoreError> {
        self.arrival(now, true).await
    }

    async fn poll(&self, seq: u64, now: Millis) -> Result<Poll, StoreError> {
        if let Some(wait) = self.poll_locally(seq, now) {
            return Ok(Poll::Waiting(wait));
        }
        let a = self.call("poll", now, &[seq.to_string()]).await?;
        // A place the line says it never handed out does not move the numbering
        // (see the fence in line.lua): the views' numbering does.
        if a.first().is_none_or(|r| r != "unknown") {
            self.high_water.fetch_max(seq, Ordering::Relaxed);
        }
        self.poll_answer(seq, &a, now)
    }

    async fn rejoin(&self, sid: u64, now: Millis) -> Result<Poll, StoreError> {
        let a = self.call("rejoin", now, &[sid.to_string()]).await?;
        self.poll_answer(sid, &a, now)
    }

    async fn touch_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError> {
        {
            let mut sessions = lock(&self.sessions);
            if let Some(lapses) = sessions.get_mut(&sid).filter(|l| **l > now) {
                // Alive as far as this instance knows: renew here, tell Redis in batch.
                *lapses = now + self.timing.session_ms;
                lock(&self.renewals).insert(sid, *lapses);
                return Ok(true);
            }
        }
        let a = self.call("touch", now, &[sid.to_string()]).await?;
        let alive = a.first().is_some_and(|v| v == "1");
        if alive {
            self.remember_session(sid, now);
        }
        Ok(alive)
    }

    async fn end_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError> {
        lock(&self.sessions).remove(&sid);
        lock(&self.renewals).remove(&sid);
        let a = self.call("end", now, &[sid.to_string()]).await?;
        Ok(a.first().is_some_and(|v| v == "1"))
    }

    async fn pump(&self, now: Millis) -> Result<PumpReport, StoreError> {
        self.flush(now).await?;
        let a = self.call("pump", now, &[]).await?;
        let report = PumpReport {
            called: field(&a, 0)?,
            passed_over: field(&a, 1)?,
        };
        if let Some(v) = lock(&self.view).as_mut() {
            let called = a.get(2).into_iter().flat_map(|s| s.split(','));
            v.note_called(called.filter_map(|s| s.parse::<u64>().ok()));
        }
        self.refresh_view(now).await?;
        Ok(report)
    }

    async fn snapshot(&self, now: Millis) -> Result<Snapshot, StoreError> {
        self.flush(now).await?;
        let a = self.call("snapshot", now, &[]).await?;
        Ok(Snapshot {
            queue_length: field(&a, 0)?,
            active_users: field(&a, 1)?,
            called_pending: field(&a, 2)?,
            places_issued: field(&a, 3)?,
            measured_per_minute: a
                .get(4)
                .and_then(|s| s.parse::<f64>().ok())
                .map(|r| r * 60.0),
            prequeue: match (field(&a, 5)?, field(&a, 6)?) {
                (0, _) => None,
                (first, last) => Some((first, last)),
            },
            last_draw: a.get(7).and_then(|d| {
                let mut n = d.split(':').map(|x| x.parse::<u64>().ok());
                Some((n.next()??, n.next()??, n.next()??))
            }),
            settings: self.settings(&a, 8)?,
        })
    }

    async fn hold(&self, for_ms: Millis, now: Millis) -> Result<Settings, StoreError> {
        let a = self.call("hold", now, &[for_ms.to_string()]).await?;
        self.settings(&a, 0)
    }

    async fn update_settings(
        &self,
        patch: SettingsPatch,
        now: Millis,
    ) -> Result<Settings, StoreError> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let a = self
            .call(
                "settings",
                now,
                &[
                    opt(patch.new_users_per_minute.map(|v| v.to_string())),
                    opt(patch.max_active_users.map(|v| v.to_string())),
                    opt(patch.paused.map(|p| u8::from(p).to_string())),
                    opt(patch.closed.map(|p| u8::from(p).to_string())),
                    opt(patch.opens_at.map(|t| t.unwrap_or(0).to_string())),
                    opt(patch.queue_all.map(|p| u8::from(p).to_string())),
                    opt(patch.passthrough.map(|p| u8::from(p).to_string())),
                    opt(patch.lottery.map(|p| u8::from(p).to_string())),
                ],
            )
            .await?;
        self.settings(&a, 0)
    }

    async fn announce(&self, id: &str, info: &str, now: Millis) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let entry = format!("{now} {info}");
        within(
            redis::cmd("HSET")
                .arg(self.instances_key())
                .arg(id)
                .arg(entry)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    async fn instances(&self, now: Millis, within_ms: Millis) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.instances_key();
        let all: Vec<(String, String)> =
            within(redis::cmd("HGETALL").arg(&key).query_async(&mut conn)).await?;
        let mut alive = Vec::new();
        for (id, entry) in all {
            let (seen, info) = entry.split_once(' ').unwrap_or(("0", ""));
            let age = now.saturating_sub(seen.parse().unwrap_or(0));
            if age <= within_ms {
                alive.push(info.to_owned());
            } else if age > FORGET_INSTANCES_MS {
                let _: Result<(), _> = within(
                    redis::cmd("HDEL")
                        .arg(&key)
                        .arg(&id)
                        .query_async::<()>(&mut conn),
                )
                .await;
            }
        }
        Ok(alive)
    }

    async fn event(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        within(
            redis::cmd("GET")
                .arg(self.event_key())
                .query_async(&mut conn),
        )
        .await
    }

    async fn swap_event(
        &self,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let swapped: i64 = within(
            SWAP_EVENT
                .key(self.event_key())
                .arg(expected.unwrap_or(""))
                .arg(new.unwrap_or(""))
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(swapped == 1)
    }

    async fn notice(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        within(
            redis::cmd("GET")
                .arg(self.notice_key())
                .query_async(&mut conn),
        )
        .await
    }

    async fn set_notice(&self, notice: Option<&str>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let cmd = match notice {
            Some(text) => {
                let mut c = redis::cmd("SET");
                c.arg(self.notice_key()).arg(text);
                c
            }
            None => {
                let mut c = redis::cmd("DEL");
                c.arg(self.notice_key());
                c
            }
        };
        let _: redis::Value = within(cmd.query_async(&mut conn)).await?;
        Ok(())
    }
}
