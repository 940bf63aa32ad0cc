//! The embedded store: the line in this process's memory, made durable in a state
//! directory.
//!
//! The state directory holds the last saved line (`line.json`) and the journal of
//! every operation since ([`super::journal`]). Saves happen every few seconds and
//! start a new journal generation; at start the saved line is read and the journal
//! replayed, so a process killed at any moment comes back with every place,
//! session and setting it had handed out. A save does not copy the line being
//! served (a million places would stall every request for the copy): it starts
//! the next journal under the lock, then builds the line to save beside it, from
//! the last save and the journals since, as a start would. One process at a time owns the
//! directory: it holds an exclusive lock on `state_dir/lock` for as long as it
//! serves, and a second process waits for it (see [`StateError::Locked`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::journal::{self, Journal, Op, Outcome};
use super::{Store, StoreError};
use crate::admission::line::{
    Arrival, Line, Poll, PumpReport, Settings, SettingsPatch, Snapshot, Timing,
};
use crate::clock::Millis;

/// A [`Store`] holding the line in memory.
///
/// A std `Mutex` is right here: every operation is a short, synchronous update of
/// the line (and one `write` to the journal) and the lock is never held across an
/// `.await`.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    line_id: u64,
    /// The line's session length (its timings are fixed for the process's life).
    session_ms: Millis,
    state: Mutex<State>,
    /// The operator's notice (kept in [`NOTICE_FILE`] of the state directory).
    notice: Mutex<Option<String>>,
    /// The room's event (kept in [`EVENT_FILE`] of the state directory).
    event: Mutex<Option<String>>,
    /// Where the line is kept, when it is durable.
    dir: Option<StateDir>,
    /// One save at a time.
    saving: Mutex<()>,
}

struct State {
    line: Line,
    journal: Option<Journal>,
    /// Handed over or stopped: no more operations here.
    closed: bool,
    /// Whether the last journal write failed (logged once until it works again).
    journal_failing: bool,
    /// Whether a journal write failed since the last save: the journal then lacks
    /// an operation, and the next save copies the line instead of replaying it.
    journal_gap: bool,
}

impl State {
    /// Writes the journal's kept-back records; a failure leaves a gap in it.
    fn flush_journal(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            if journal.flush().is_err() {
                self.journal_gap = true;
            }
        }
    }
}

/// The state directory, locked by this process.
struct StateDir {
    path: PathBuf,
    lock: Mutex<Option<File>>,
}

/// The saved line in the state directory.
pub const STATE_FILE: &str = "line.json";
/// The lock file in the state directory.
pub const LOCK_FILE: &str = "lock";

/// Why the saved line could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {0}: {1}")]
    Io(String, std::io::Error),
    /// The file is not a saved line.
    #[error("state file {0} is not a saved line ({1}); move it away to start a new line")]
    Invalid(String, String),
    /// Another process holds the state directory.
    #[error("state directory {0} is in use by another waitroom process")]
    Locked(String),
}

#[derive(serde::Deserialize)]
struct Saved {
    line_id: u64,
    line: Line,
    /// The first journal generation that is not in this save.
    #[serde(default)]
    journal: u64,
}

#[derive(serde::Serialize)]
struct SavedRef<'a> {
    line_id: u64,
    line: &'a Line,
    journal: u64,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |e| StateError::Io(path.display().to_string(), e)
}

impl MemoryStore {
    /// An empty line with these timings and initial settings, kept nowhere.
    pub fn new(timing: Timing, settings: Settings) -> Self {
        Self::from_parts(
            // 53 bits, so the id stays exact in JSON numbers.
            rand::random::<u64>() >> 11,
            Line::new(timing, settings),
            None,
            None,
        )
    }

    fn from_parts(
        line_id: u64,
        line: Line,
        journal: Option<Journal>,
        dir: Option<StateDir>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                line_id,
                session_ms: line.timing().session_ms,
                state: Mutex::new(State {
                    line,
                    journal,
                    closed: false,
                    journal_failing: false,
                    journal_gap: false,
                }),
                notice: Mutex::new(
                    dir.as_ref()
                        .and_then(|d| std::fs::read_to_string(d.path.join(NOTICE_FILE)).ok()),
                ),
                event: Mutex::new(
                    dir.as_ref()
                        .and_then(|d| std::fs::read_to_string(d.path.join(EVENT_FILE)).ok()),
                ),
                dir,
                saving: Mutex::new(()),
            }),
        }
    }

    /// Opens the line kept in `dir`, or starts a new one there. The directory is
    /// locked for this process; when another holds it, [`StateError::Locked`]
    /// (wait for it to hand over or stop, then try again). The saved line is read
    /// and the journal replayed; settings changed at run time survive, timings
    /// come from `timing`.
    pub fn open(dir: &Path, timing: Timing, settings: Settings) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked(dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        let state_dir = StateDir {
            path: dir.to_owned(),
            lock: Mutex::new(Some(lock)),
        };
        let (line_id, line, next_gen) = Self::recover(dir, timing, settings)?;
        let store = Self::from_parts(line_id, line, None, Some(state_dir));
        // A new save of what was recovered, and a new journal after it.
        store.save_from(next_gen, false)?;
        Ok(store)
    }

    /// The saved line with its journal replayed, and the next journal generation.
    fn recover(
        dir: &Path,
        timing: Timing,
        settings: Settings,
    ) -> Result<(u64, Line, u64), StateError> {
        let path = dir.join(STATE_FILE);
        let generations = journal::generations(dir).map_err(io_error(dir))?;
        let next_gen = generations.last().map_or(1, |g| g + 1);
        let saved = match std::fs::metadata(&path) {
            Ok(_) => read_saved(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !generations.is_empty() {
                    tracing::warn!(dir = %dir.display(), "journal files without a saved line; starting a new line");
                }
                let line_id = rand::random::<u64>() >> 11;
                return Ok((line_id, Line::new(timing, settings), next_gen));
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let line_id = saved.line_id;
        let (line, replayed) = replay(dir, saved, &generations)?;
        tracing::info!(
            dir = %dir.display(),
            replayed,
            places_issued = line.places_issued(),
            "continuing the saved line"
        );
        Ok((line_id, line.restored(timing), next_gen))
    }

    /// The line as it was when journal generation `gen` started: the last save
    /// with the journals before `gen` replayed (read from the files; the line
    /// being served is not touched).
    fn rebuilt(dir: &Path, gen: u64, timing: Timing) -> Result<Line, StateError> {
        let saved = read_saved(&dir.join(STATE_FILE))?;
        let generations: Vec<u64> = journal::generations(dir)
            .map_err(io_error(dir))?
            .into_iter()
            .filter(|g| *g < gen)
            .collect();
        Ok(replay(dir, saved, &generations)?.0.restored(timing))
    }

    /// Saves the line and starts a new journal generation; the older journals are
    /// then removed. Does nothing for a line kept nowhere or closed.
    pub fn save(&self) -> Result<(), StateError> {
        self.save_from(0, false)
    }

    /// Flushes the journal to the disk (once per pump round: the bound on what a
    /// power cut can lose).
    pub fn sync(&self) -> Result<(), StateError> {
        let file = {
            let mut state = self.state();
            state.flush_journal();
            let Some(file) = state.journal.as_ref().map(Journal::syncer) else {
                return Ok(());
            };
            file
        };
        file.sync_data()
            .map_err(|e| StateError::Io("journal".into(), e))
    }

    /// Stops the line here: a last save, then the state directory is unlocked for
    /// the next process. Operations after this fail (the store is unavailable).
    pub fn close(&self) -> Result<(), StateError> {
        self.save_from(0, true)
    }

    /// Saves the line with the next journal generation (at least `at_least`) and,
    /// unless `closing`, starts that journal; closing also unlocks the directory.
    fn save_from(&self, at_least: u64, closing: bool) -> Result<(), StateError> {
        let Some(dir) = &self.inner.dir else {
            self.state().closed |= closing;
            return Ok(());
        };
        let _one = lock(&self.inner.saving);
        let (copied, gen, timing) = {
            let mut state = self.state();
            if state.closed {
                return Ok(());
            }
            let gen = state
                .journal
                .as_ref()
                .map_or(at_least, |j| j.generation() + 1)
                .max(at_least);
            state.closed = closing;
            state.flush_journal();
            // Replaying is exact only when the journal since the last save is
            // whole and the save was this process's; otherwise (a journal write
            // failed, the first save after a start, the last one) the line is
            // copied under the lock.
            let replayable = state.journal.is_some() && !state.journal_gap && !closing;
            state.journal = match closing {
                true => None,
                false => Some(Journal::open(&dir.path, gen).map_err(io_error(&dir.path))?),
            };
            state.journal_gap = false;
            let copied = (!replayable).then(|| state.line.clone());
            (copied, gen, state.line.timing())
        };
        let line = match copied {
            Some(line) => line,
            None => Self::rebuilt(&dir.path, gen, timing)?,
        };
        write_saved(&dir.path, self.inner.line_id, &line, gen)?;
        remove_journals_before(&dir.path, gen);
        if closing {
            // Unlocked when the file closes.
            lock(&dir.lock).take();
            tracing::info!(dir = %dir.path.display(), "the line is saved and the state directory released");
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Applies `op`, journaled before the answer is given.
    fn apply(&self, op: Op) -> Result<Outcome, StoreError> {
        let mut state = self.state();
        if state.closed {
            return Err(StoreError::Unavailable(
                "this process has handed the line over".into(),
            ));
        }
        let at_once = !sign_of_life(&state.line, &op);
        let outcome = op.apply(&mut state.line);
        // A poll that called its holder in hands out an admission.
        let at_once = at_once || matches!(outcome, Outcome::Poll(Poll::Admitted { .. }));
        let state = &mut *state;
        if let Some(j) = &mut state.journal {
            match j.append(&op, at_once) {
                Ok(()) => state.journal_failing = false,
                Err(e) if !state.journal_failing => {
                    state.journal_failing = true;
                    state.journal_gap = true;
                    tracing::error!(error = %e, "cannot write the journal: a crash now would lose what changes from here on");
                }
                Err(_) => state.journal_gap = true,
            }
        }
        Ok(outcome)
    }
}

/// A std mutex guard; a panic while holding it would be a bug in `Line`, whose
/// state is still the best we have, so keep serving rather than poison every call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `op` only says that someone is still there, so that its record may
/// wait for the next write (see [`super::journal`]): a waiting visitor's poll
/// (unless it turns out to call them in), and a request of a session that had
/// more than half its time left (losing that sign of life in a crash cannot end
/// a session that was about to lapse).
fn sign_of_life(line: &Line, op: &Op) -> bool {
    match *op {
        Op::Poll { .. } => true,
        Op::Touch { sid, now } => line
            .session_lapses(sid)
            .is_some_and(|lapses| lapses.saturating_sub(now) > line.timing().session_ms / 2),
        _ => false,
    }
}

/// `saved` with the journals of `generations` from its own on replayed, with the
/// timings it ran with (so that it comes out exactly); and how many operations.
fn replay(dir: &Path, saved: Saved, generations: &[u64]) -> Result<(Line, usize), StateError> {
    let ran_with = saved.line.timing();
    let mut line = saved.line.restored(ran_with);
    let mut replayed = 0usize;
    for &gen in generations.iter().filter(|g| **g >= saved.journal) {
        let file = journal::path(dir, gen);
        let opened = File::open(&file).map_err(io_error(&file))?;
        let (ops, whole) = journal::replay(opened, |op| {
            op.apply(&mut line);
        })
        .map_err(io_error(&file))?;
        if !whole {
            tracing::warn!(file = %file.display(), kept = ops, "the journal ends in a torn record; replaying what is whole");
        }
        replayed += ops;
    }
    Ok((line, replayed))
}

/// Where the room's event is kept in the state directory.
const EVENT_FILE: &str = "event.json";
/// The operator's notice, in the state directory.
const NOTICE_FILE: &str = "notice.json";

/// Writes `text` as `file` in `dir` durably, or removes the file (`None`).
fn keep_or_remove(dir: &Path, file: &str, text: Option<&str>) -> Result<(), StoreError> {
    let written = match text {
        Some(text) => write_durably(dir, file, |w| w.write_all(text.as_bytes())),
        None => match std::fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(dir)(e)),
            _ => Ok(()),
        },
    };
    written.map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Writes the saved line durably (see [`write_durably`]).
fn write_saved(dir: &Path, line_id: u64, line: &Line, journal: u64) -> Result<(), StateError> {
    let saved = SavedRef {
        line_id,
        line,
        journal,
    };
    // Streamed to the file: a million places are never a second copy in memory.
    write_durably(dir, STATE_FILE, |w| {
        serde_json::to_writer(w, &saved).map_err(std::io::Error::other)
    })
}

/// Reads the saved line at `path`, streaming (see [`write_saved`]).
fn read_saved(path: &Path) -> Result<Saved, StateError> {
    let file = File::open(path).map_err(io_error(path))?;
    serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
        .map_err(|e| StateError::Invalid(path.display().to_string(), e.to_string()))
}

/// Writes file `name` in `dir` durably: a temporary file flushed to the disk,
/// renamed over the old one, and the directory flushed.
fn write_durably(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), StateError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = io_error(&path);
    {
        let mut f = std::io::BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(&io)?);
        write(&mut f).map_err(&io)?;
        let f = f.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(&io)?;
    }
    std::fs::rename(&tmp, &path).map_err(&io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(&io)
}

fn remove_journals_before(dir: &Path, gen: u64) {
    for old in journal::generations(dir).unwrap_or_default() {
        if old < gen {
            let _ = std::fs::remove_file(journal::path(dir, old));
        }
    }
}

fn answer<T>(
    outcome: Result<Outcome, StoreError>,
    pick: impl FnOnce(Outcome) -> Option<T>,
) -> Result<T, StoreError> {
    Ok(pick(outcome?).expect("an operation answers with its own outcome"))
}

#[async_trait]
impl Store for MemoryStore {
    fn line_id(&self) -> u64 {
        self.inner.line_id
    }

    fn session_ms(&self) -> Millis {
        self.inner.session_ms
    }

    async fn arrive(&self, now: Millis) -> Result<Arrival, StoreError> {
        answer(self.apply(Op::Arrive { now }), |o| match o {
            Outcome::Arrival(a) => Some(a),
            _ => None,
        })
    }

    async fn arrive_kept(&self, now: Millis) -> Result<Arrival, StoreError> {
        answer(self.apply(Op::ArriveKept { now }), |o| match o {
            Outcome::Arrival(a) => Some(a),
            _ => None,
        })
    }

    async fn poll(&self, seq: u64, now: Millis) -> Result<Poll, StoreError> {
        answer(self.apply(Op::Poll { seq, now }), |o| match o {
            Outcome::Poll(p) => Some(p),
            _ => None,
        })
    }

    async fn rejoin(&self, sid: u64, now: Millis) -> Result<Poll, StoreError> {
        answer(self.apply(Op::Rejoin { sid, now }), |o| match o {
            Outcome::Poll(p) => Some(p),
            _ => None,
        })
    }

    async fn touch_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError> {
        answer(self.apply(Op::Touch { sid, now }), |o| match o {
            Outcome::Alive(a) => Some(a),
            _ => None,
        })
    }

    async fn end_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError> {
        answer(self.apply(Op::End { sid, now }), |o| match o {
            Outcome::Alive(a) => Some(a),
            _ => None,
        })
    }

    async fn pump(&self, now: Millis) -> Result<PumpReport, StoreError> {
        answer(self.apply(Op::Pump { now }), |o| match o {
            Outcome::Pumped(r) => Some(r),
            _ => None,
        })
    }

    async fn snapshot(&self, now: Millis) -> Result<Snapshot, StoreError> {
        answer(self.apply(Op::Snapshot { now }), |o| match o {
            Outcome::Snapshot(s) => Some(s),
            _ => None,
        })
    }

    async fn hold(&self, for_ms: Millis, now: Millis) -> Result<Settings, StoreError> {
        let until = now + for_ms;
        answer(self.apply(Op::Hold { until, now }), |o| match o {
            Outcome::Settings(s) => Some(s),
            _ => None,
        })
    }

    async fn update_settings(
        &self,
        patch: SettingsPatch,
        now: Millis,
    ) -> Result<Settings, StoreError> {
        answer(self.apply(Op::Update { patch, now }), |o| match o {
            Outcome::Settings(s) => Some(s),
            _ => None,
        })
    }

    async fn event(&self) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.inner.event).clone())
    }

    async fn swap_event(
        &self,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut event = lock(&self.inner.event);
        if event.as_deref() != expected {
            return Ok(false);
        }
        if let Some(dir) = &self.inner.dir {
            keep_or_remove(&dir.path, EVENT_FILE, new)?;
        }
        *event = new.map(str::to_owned);
        Ok(true)
    }

    async fn notice(&self) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.inner.notice).clone())
    }

    async fn set_notice(&self, notice: Option<&str>) -> Result<(), StoreError> {
        let mut kept = lock(&self.inner.notice);
        if let Some(dir) = &self.inner.dir {
            keep_or_remove(&dir.path, NOTICE_FILE, notice)?;
        }
        *kept = notice.map(str::to_owned);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::line::Arrival;

    fn settings() -> Settings {
        Settings::open(60, 1)
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("waitroom-state-{}", rand::random::<u64>()))
    }

    #[tokio::test]
    async fn a_saved_line_comes_back_whole_and_a_broken_file_is_refused() {
        let dir = temp_dir();
        let store = MemoryStore::open(&dir, Timing::default(), settings()).unwrap();
        let Arrival::Admitted { sid } = store.arrive(1_000).await.unwrap() else {
            panic!()
        };
        let Arrival::Queued { seq, .. } = store.arrive(1_000).await.unwrap() else {
            panic!()
        };
        store.save().unwrap();
        store.close().unwrap();

        let again = MemoryStore::open(&dir, Timing::default(), settings()).unwrap();
        assert_eq!(again.line_id(), store.line_id());
        assert!(again.touch_session(sid, 2_000).await.unwrap());
        let Poll::Waiting(w) = again.poll(seq, 2_000).await.unwrap() else {
            panic!()
        };
        assert_eq!(w.position, 1);
        again.close().unwrap();

        std::fs::write(dir.join(STATE_FILE), b"{\"line_id\": 1}").unwrap();
        let e = MemoryStore::open(&dir, Timing::default(), settings())
            .err()
            .unwrap();
        assert!(e.to_string().contains("is not a saved line"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_save_rebuilt_from_the_journal_is_the_line_being_served() {
        let dir = temp_dir();
        let store = MemoryStore::open(&dir, Timing::default(), Settings::open(600, 3)).unwrap();
        let saved = || {
            let bytes = std::fs::read(dir.join(STATE_FILE)).unwrap();
            serde_json::to_value(serde_json::from_slice::<Saved>(&bytes).unwrap().line).unwrap()
        };
        let served = || serde_json::to_value(&store.state().line).unwrap();
        let mut seqs = Vec::new();
        for round in 0..3u64 {
            let t = 1_000 + round * 7_000;
            for i in 0..40 {
                match store.arrive(t + i).await.unwrap() {
                    Arrival::Queued { seq, .. } => seqs.push(seq),
                    Arrival::Admitted { sid } => {
                        store.touch_session(sid, t + 50).await.unwrap();
                    }
                }
            }
            for (i, seq) in seqs.iter().enumerate().skip(round as usize * 7) {
                store.poll(*seq, t + 3_000 + i as u64).await.unwrap();
            }
            store.pump(t + 5_000).await.unwrap();
            store.snapshot(t + 5_100).await.unwrap();
            store.save().unwrap();
            assert!(store.state().journal.is_some());
            assert_eq!(saved(), served(), "round {round}");
        }
        // A journal that missed an operation: the next save copies the line.
        store.state().journal_gap = true;
        store.arrive(30_000).await.unwrap();
        store.save().unwrap();
        assert_eq!(saved(), served());
        store.close().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn what_happened_after_the_last_save_is_replayed_and_the_directory_is_locked() {
        let dir = temp_dir();
        let store = MemoryStore::open(&dir, Timing::default(), settings()).unwrap();
        let e = MemoryStore::open(&dir, Timing::default(), settings())
            .err()
            .unwrap();
        assert!(matches!(e, StateError::Locked(_)), "{e}");
        let Arrival::Admitted { sid } = store.arrive(1_000).await.unwrap() else {
            panic!()
        };
        let mut seqs = Vec::new();
        for t in 0..20 {
            let Arrival::Queued { seq, .. } = store.arrive(1_000 + t).await.unwrap() else {
                panic!()
            };
            seqs.push(seq);
        }
        store.save().unwrap();
        // After the save: more places, a setting, a call and its claim.
        store
            .update_settings(
                SettingsPatch {
                    max_active_users: Some(2),
                    ..Default::default()
                },
                1_500,
            )
            .await
            .unwrap();
        store.pump(2_000).await.unwrap();
        assert_eq!(
            store.poll(seqs[0], 2_100).await.unwrap(),
            Poll::Admitted { sid: seqs[0] }
        );
        let Arrival::Queued { seq: last, .. } = store.arrive(2_200).await.unwrap() else {
            panic!()
        };
        let before = store.clone().snapshot(2_300).await.unwrap();
        // Killed: no last save; the lock goes with the process (here: the handle).
        drop(store);

        let again = MemoryStore::open(&dir, Timing::default(), settings()).unwrap();
        assert_eq!(again.snapshot(2_300).await.unwrap(), before);
        assert!(again.touch_session(sid, 2_400).await.unwrap());
        assert!(again.touch_session(seqs[0], 2_400).await.unwrap());
        let Poll::Waiting(w) = again.poll(seqs[1], 2_400).await.unwrap() else {
            panic!()
        };
        assert_eq!(w.position, 1);
        let Arrival::Queued { seq: next, .. } = again.arrive(2_500).await.unwrap() else {
            panic!()
        };
        assert_eq!(next, last + 1, "no place number is handed out twice");
        again.close().unwrap();
        assert!(again.arrive(2_600).await.is_err(), "closed: handed over");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
