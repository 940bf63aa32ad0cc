//! The memory store's journal: every operation on the line, appended before its
//! answer leaves, so a line killed at any moment comes back exactly as it was.
//!
//! [`Line`] is a pure state machine, so the journal records operations, not their
//! effects: replaying them in order on the last saved line gives back the same
//! line, bit for bit (the line carries its timings and its clock in the save).
//!
//! A record that hands something out (a place, an admission, a setting) is
//! written with one `write` call before the operation's answer is returned, so a
//! process killed (`kill -9`) loses none of them: the kernel has the bytes. A
//! record that only says someone is still there (a waiting visitor's poll, an
//! active session's request) waits, in order, for the next record written at
//! once or for the next pump round (every 20 ms), whichever comes first: the file
//! is always a prefix of what happened, and a kill loses at most the last 20 ms of
//! such signs of life (a deadline or a session's end a little earlier than it
//! would have been, never a place or an admission). The file is flushed to the
//! disk (`fdatasync`) once per pump round: a power cut loses at most the
//! operations of the last round that was not yet synced.
//!
//! A record is `len: u16 | payload | crc32(payload): u32` (little endian); the
//! payload is a tag byte, the time, and the operation's arguments. A torn or
//! corrupt record ends the replay of its file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admission::line::{Arrival, Line, Poll, PumpReport, Settings, SettingsPatch, Snapshot};
use crate::clock::Millis;

/// One operation on the line, with the time it was applied at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// [`Line::arrive`].
    Arrive {
        /// When.
        now: Millis,
    },
    /// [`Line::arrive_kept`].
    ArriveKept {
        /// When.
        now: Millis,
    },
    /// [`Line::poll`].
    Poll {
        /// The place.
        seq: u64,
        /// When.
        now: Millis,
    },
    /// [`Line::touch_session`].
    Touch {
        /// The session.
        sid: u64,
        /// When.
        now: Millis,
    },
    /// [`Line::rejoin`].
    Rejoin {
        /// The session.
        sid: u64,
        /// When.
        now: Millis,
    },
    /// [`Line::end_session`].
    End {
        /// The session.
        sid: u64,
        /// When.
        now: Millis,
    },
    /// [`Line::pump`].
    Pump {
        /// When.
        now: Millis,
    },
    /// [`Line::snapshot`] (it notices departures, so it changes the line).
    Snapshot {
        /// When.
        now: Millis,
    },
    /// [`Line::hold`].
    Hold {
        /// Until when.
        until: Millis,
        /// When.
        now: Millis,
    },
    /// [`Line::update`].
    Update {
        /// The change.
        patch: SettingsPatch,
        /// When.
        now: Millis,
    },
}

/// What an operation answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Of [`Op::Arrive`] and [`Op::ArriveKept`].
    Arrival(Arrival),
    /// Of [`Op::Poll`] and [`Op::Rejoin`].
    Poll(Poll),
    /// Of [`Op::Touch`] and [`Op::End`].
    Alive(bool),
    /// Of [`Op::Pump`].
    Pumped(PumpReport),
    /// Of [`Op::Snapshot`].
    Snapshot(Snapshot),
    /// Of [`Op::Update`].
    Settings(Settings),
}

impl Op {
    /// Applies the operation to `line`.
    pub fn apply(&self, line: &mut Line) -> Outcome {
        match *self {
            Self::Arrive { now } => Outcome::Arrival(line.arrive(now)),
            Self::ArriveKept { now } => Outcome::Arrival(line.arrive_kept(now)),
            Self::Poll { seq, now } => Outcome::Poll(line.poll(seq, now)),
            Self::Rejoin { sid, now } => Outcome::Poll(line.rejoin(sid, now)),
            Self::Touch { sid, now } => Outcome::Alive(line.touch_session(sid, now)),
            Self::End { sid, now } => Outcome::Alive(line.end_session(sid, now)),
            Self::Pump { now } => Outcome::Pumped(line.pump(now)),
            Self::Snapshot { now } => Outcome::Snapshot(line.snapshot(now)),
            Self::Update { patch, now } => Outcome::Settings(line.update(patch, now)),
            Self::Hold { until, now } => Outcome::Settings(line.hold(until, now)),
        }
    }

    /// Appends the record's payload to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        let mut put = |tag: u8, now: Millis, arg: Option<u64>| {
            out.push(tag);
            out.extend_from_slice(&now.to_le_bytes());
            if let Some(a) = arg {
                out.extend_from_slice(&a.to_le_bytes());
            }
        };
        match *self {
            Self::Arrive { now } => put(1, now, None),
            Self::Poll { seq, now } => put(2, now, Some(seq)),
            Self::Touch { sid, now } => put(3, now, Some(sid)),
            Self::Pump { now } => put(4, now, None),
            Self::Snapshot { now } => put(5, now, None),
            Self::Update { patch, now } => {
                put(6, now, None);
                encode_patch(&patch, out);
            }
            Self::Hold { until, now } => put(7, now, Some(until)),
            Self::End { sid, now } => put(8, now, Some(sid)),
            Self::Rejoin { sid, now } => put(9, now, Some(sid)),
            Self::ArriveKept { now } => put(10, now, None),
        }
    }

    /// Reads a payload written by [`Op::encode`].
    fn decode(payload: &[u8]) -> Option<Self> {
        let (&tag, rest) = payload.split_first()?;
        let mut r = Reader(rest);
        let now = r.u64()?;
        let op = match tag {
            1 => Self::Arrive { now },
            2 => Self::Poll { seq: r.u64()?, now },
            3 => Self::Touch { sid: r.u64()?, now },
            4 => Self::Pump { now },
            5 => Self::Snapshot { now },
            6 => Self::Update {
                patch: decode_patch(&mut r)?,
                now,
            },
            7 => Self::Hold {
                until: r.u64()?,
                now,
            },
            8 => Self::End { sid: r.u64()?, now },
            9 => Self::Rejoin { sid: r.u64()?, now },
            10 => Self::ArriveKept { now },
            _ => return None,
        };
        r.0.is_empty().then_some(op)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
}

/// A patch as a presence mask and the present fields.
fn encode_patch(p: &SettingsPatch, out: &mut Vec<u8>) {
    let mask = u8::from(p.new_users_per_minute.is_some())
        | u8::from(p.max_active_users.is_some()) << 1
        | u8::from(p.paused.is_some()) << 2
        | u8::from(p.closed.is_some()) << 3
        | u8::from(p.opens_at.is_some()) << 4
        | u8::from(p.queue_all.is_some()) << 5
        | u8::from(p.passthrough.is_some()) << 6
        | u8::from(p.lottery.is_some()) << 7;
    out.push(mask);
    for v in [p.new_users_per_minute, p.max_active_users]
        .into_iter()
        .flatten()
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [p.paused, p.closed].into_iter().flatten() {
        out.push(u8::from(v));
    }
    if let Some(opens_at) = p.opens_at {
        // 0 cancels a scheduled opening.
        out.extend_from_slice(&opens_at.unwrap_or(0).to_le_bytes());
    }
    for v in [p.queue_all, p.passthrough, p.lottery]
        .into_iter()
        .flatten()
    {
        out.push(u8::from(v));
    }
}

fn decode_patch(r: &mut Reader<'_>) -> Option<SettingsPatch> {
    let mask = r.u8()?;
    let has = |bit: u8| mask & (1 << bit) != 0;
    let mut p = SettingsPatch::default();
    if has(0) {
        p.new_users_per_minute = Some(r.u32()?);
    }
    if has(1) {
        p.max_active_users = Some(r.u32()?);
    }
    if has(2) {
        p.paused = Some(r.u8()? != 0);
    }
    if has(3) {
        p.closed = Some(r.u8()? != 0);
    }
    if has(4) {
        p.opens_at = Some(Some(r.u64()?).filter(|t| *t > 0));
    }
    if has(5) {
        p.queue_all = Some(r.u8()? != 0);
    }
    if has(6) {
        p.passthrough = Some(r.u8()? != 0);
    }
    if has(7) {
        p.lottery = Some(r.u8()? != 0);
    }
    Some(p)
}

/// The journal file of one generation: `journal-GEN.log` in the state directory.
pub fn path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal-{generation:08}.log"))
}

/// The generations of the journal files in `dir`, ascending.
pub fn generations(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let gen = name
            .to_str()
            .and_then(|n| n.strip_prefix("journal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        found.extend(gen);
    }
    found.sort_unstable();
    Ok(found)
}

/// An open journal file, appended to under the store's lock.
pub struct Journal {
    file: Arc<File>,
    generation: u64,
    /// Records not written yet (signs of life, see the module docs).
    pending: Vec<u8>,
}

/// Records kept back at most this many bytes before they are written anyway.
const PENDING_MAX: usize = 64 * 1024;

impl Journal {
    /// Creates (or appends to) the journal of `generation` in `dir`.
    pub fn open(dir: &Path, generation: u64) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(dir, generation))?;
        Ok(Self {
            file: Arc::new(file),
            generation,
            pending: Vec::with_capacity(4096),
        })
    }

    /// This file's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Appends `op`: written at once with whatever is pending (one `write`; the
    /// kernel holds it from then on), or, when it is only a sign of life
    /// (`at_once` false), kept to go with the next write.
    pub fn append(&mut self, op: &Op, at_once: bool) -> std::io::Result<()> {
        let r = &mut self.pending;
        let start = r.len();
        r.extend_from_slice(&[0, 0]);
        op.encode(r);
        let len = u16::try_from(r.len() - start - 2).expect("records are small");
        r[start..start + 2].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&r[start + 2..]);
        r.extend_from_slice(&crc.to_le_bytes());
        if at_once || r.len() >= PENDING_MAX {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Writes what is pending (nothing is kept back after it, even on an error).
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = (&*self.file).write_all(&self.pending);
        self.pending.clear();
        written
    }

    /// A handle to flush the file to the disk without holding the store's lock.
    pub fn syncer(&self) -> Arc<File> {
        self.file.clone()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Hands each operation recorded in `file` to `each`, in order, up to the first
/// torn or corrupt record; says how many, and whether the whole file was read.
/// Streamed, a record at a time: a save replays the journals since the last one,
/// and a busy line's journal of a few seconds is megabytes that need not be in
/// memory at once (nor a list of their operations).
pub fn replay(
    file: impl std::io::Read,
    mut each: impl FnMut(Op),
) -> std::io::Result<(usize, bool)> {
    use std::io::Read;
    let mut file = std::io::BufReader::with_capacity(1 << 16, file);
    let mut record = Vec::new();
    let mut count = 0;
    loop {
        let mut len = [0u8; 2];
        if file.read(&mut len[..1])? == 0 {
            return Ok((count, true));
        }
        if !whole(file.read_exact(&mut len[1..]))? {
            return Ok((count, false));
        }
        let len = usize::from(u16::from_le_bytes(len));
        record.resize(len + 4, 0);
        if !whole(file.read_exact(&mut record))? {
            return Ok((count, false));
        }
        let (payload, crc) = record.split_at(len);
        let crc = u32::from_le_bytes(crc.try_into().expect("four bytes"));
        match Op::decode(payload).filter(|_| crc32fast::hash(payload) == crc) {
            Some(op) => each(op),
            None => return Ok((count, false)),
        }
        count += 1;
    }
}

/// Whether a read was whole: `false` when the file ended first (a torn record).
fn whole(read: std::io::Result<()>) -> std::io::Result<bool> {
    match read {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations recorded in `bytes`, and whether all of them were whole.
    fn read(bytes: &[u8]) -> (Vec<Op>, bool) {
        let mut ops = Vec::new();
        let (count, whole) = replay(bytes, |op| ops.push(op)).unwrap();
        assert_eq!(count, ops.len());
        (ops, whole)
    }

    #[test]
    fn records_read_back_and_a_torn_tail_is_left_out() {
        let ops = [
            Op::Arrive { now: 1 },
            Op::ArriveKept { now: 1 },
            Op::Poll { seq: 7, now: 2 },
            Op::Touch { sid: 3, now: 3 },
            Op::Rejoin { sid: 3, now: 3 },
            Op::End { sid: 3, now: 4 },
            Op::Pump { now: 4 },
            Op::Snapshot { now: 5 },
            Op::Update {
                patch: SettingsPatch {
                    new_users_per_minute: Some(60),
                    paused: Some(true),
                    opens_at: Some(None),
                    ..Default::default()
                },
                now: 6,
            },
            Op::Hold { until: 9, now: 8 },
            Op::Update {
                patch: SettingsPatch {
                    max_active_users: Some(10),
                    closed: Some(false),
                    queue_all: Some(true),
                    passthrough: Some(false),
                    lottery: Some(true),
                    opens_at: Some(Some(1_795_856_400_000)),
                    ..Default::default()
                },
                now: 7,
            },
            Op::Poll { seq: 8, now: 7 },
        ];
        let dir = std::env::temp_dir().join(format!("waitroom-journal-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut j = Journal::open(&dir, 3).unwrap();
        for (i, op) in ops.iter().enumerate() {
            // Every third kept back: it goes, in order, with the next one written.
            j.append(op, i % 3 != 1).unwrap();
        }
        let last = Op::Poll { seq: 9, now: 8 };
        j.append(&last, false).unwrap();
        let before = std::fs::read(path(&dir, 3)).unwrap();
        assert_eq!(read(&before), (ops.to_vec(), true), "the last is pending");
        j.flush().unwrap();
        let ops: Vec<Op> = ops.iter().copied().chain([last]).collect();
        assert_eq!(generations(&dir).unwrap(), vec![3]);
        let bytes = std::fs::read(path(&dir, 3)).unwrap();
        assert_eq!(read(&bytes), (ops.to_vec(), true));
        // Cut anywhere inside the last record: the others are kept.
        let (kept, whole) = read(&bytes[..bytes.len() - 3]);
        assert_eq!((kept.as_slice(), whole), (&ops[..ops.len() - 1], false));
        // Cut anywhere at all: what is kept is the records before the cut, whole
        // exactly when the cut falls between records.
        let mut ends = vec![0];
        for _ in &ops {
            let at = *ends.last().unwrap();
            let len = usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
            ends.push(at + 2 + len + 4);
        }
        assert_eq!(*ends.last().unwrap(), bytes.len());
        for cut in 0..bytes.len() {
            let (kept, whole) = read(&bytes[..cut]);
            let before = ends.iter().filter(|e| **e <= cut).count() - 1;
            assert_eq!(kept.as_slice(), &ops[..before], "cut at {cut}");
            assert_eq!(whole, ends.contains(&cut), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[4] ^= 1;
        assert_eq!(
            read(&flipped),
            (Vec::new(), false),
            "a bad checksum ends it"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
