//! Admission under paused tokio time: rate, capacity, sliding sessions, abandonment.

use std::sync::Arc;
use std::time::Duration;

use super::line::{Settings, SettingsPatch, Timing};
use super::*;
use crate::store::memory::MemoryStore;
use crate::token::{KeyPair, Keyring};

const TIMING: Timing = Timing {
    session_ms: 4_000,
    burst: None,
    poll_min_ms: 1_000,
    poll_max_ms: 20_000,
    abandon_polls: 3,
    abandon_min_ms: 5_000,
    return_grace_ms: 300_000,
    returned_share_permille: 500,
};

struct Room {
    admission: Admission,
    _trigger: crate::shutdown::Trigger,
}

fn room(per_minute: u32, max_active: u32, timing: Timing) -> Room {
    let clock = Clock::system();
    let store = MemoryStore::new(timing, Settings::open(per_minute, max_active));
    let tokens = Tokens::new(
        Keyring::new(KeyPair::generate(), Vec::new()),
        clock.clone(),
        3_600,
        3_600,
    );
    let metrics = Metrics::new(&prometheus::Registry::new());
    let admission = Admission::new(Arc::new(store), tokens, clock, metrics);
    let (trigger, shutdown) = crate::shutdown::channel();
    tokio::spawn(admission.clone().run_pump(shutdown));
    Room {
        admission,
        _trigger: trigger,
    }
}

/// A visitor as a browser holds them: the token in the cookie jar.
struct Visitor {
    presented: Presented,
    admitted_at: Option<u64>,
    next_poll: u64,
    arrived: u64,
}

impl Visitor {
    fn new(now: u64) -> Self {
        Self {
            presented: Presented::Nothing,
            admitted_at: None,
            next_poll: now,
            arrived: now,
        }
    }

    /// One request (a poll while waiting); returns the standing.
    async fn visit(&mut self, room: &Room) -> Standing {
        let d = room.admission.decide(&self.presented).await;
        if let Some((_, token)) = d.set_token {
            self.presented = room.admission.present(&[&token]);
        }
        let now = room.admission.clock().now_ms();
        match d.standing {
            Standing::Admitted { .. } => {
                self.admitted_at.get_or_insert(now);
            }
            Standing::Waiting(w) => self.next_poll = now + w.poll_after_ms,
            Standing::Held => panic!("the memory store never fails"),
        }
        d.standing
    }
}

async fn snapshot(room: &Room) -> line::Snapshot {
    let now = room.admission.clock().now_ms();
    room.admission.store().snapshot(now).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn outflow_is_smooth_at_the_configured_rate() {
    let room = room(
        1_800,
        100_000,
        Timing {
            abandon_min_ms: 600_000,
            ..TIMING
        },
    );
    let start = room.admission.clock().now_ms();
    let mut visitors: Vec<_> = (0..900).map(|_| Visitor::new(start)).collect();
    let mut direct = 0;
    for v in &mut visitors {
        if matches!(v.visit(&room).await, Standing::Admitted { .. }) {
            direct += 1;
        }
    }
    assert_eq!(
        direct, 3,
        "a tenth of a second's worth goes straight in, then a line forms"
    );
    // Places in line: everybody but those who went straight in.
    assert_eq!(snapshot(&room).await.places_issued, 897);
    assert_eq!(snapshot(&room).await.queue_length, 897);
    // Nobody leaves (abandon_min is long), so the line shrinks by those called.
    let mut waiting = snapshot(&room).await.queue_length;
    for step in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now_waiting = snapshot(&room).await.queue_length;
        let called = waiting - now_waiting;
        assert!(
            (2..=4).contains(&called),
            "step {step}: {called} called in 100 ms"
        );
        waiting = now_waiting;
    }
    let called = 897 - waiting;
    assert!(
        (297..=303).contains(&called),
        "{called} called in 10 s at 30/s"
    );
}

#[tokio::test(start_paused = true)]
async fn capacity_is_never_exceeded_and_lapsed_sessions_free_it() {
    let room = room(60_000, 12, TIMING);
    let start = room.admission.clock().now_ms();
    let mut visitors: Vec<_> = (0..60).map(|_| Visitor::new(start)).collect();
    let mut done = 0;
    for _ in 0..2_000 {
        let now = room.admission.clock().now_ms();
        for v in &mut visitors {
            if v.admitted_at.is_none() && v.next_poll <= now {
                v.visit(&room).await;
            }
        }
        let s = snapshot(&room).await;
        assert!(s.active_users <= 12, "{} active", s.active_users);
        done = visitors.iter().filter(|v| v.admitted_at.is_some()).count();
        if done == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done, 60, "everyone gets in as sessions lapse");
    let mut admitted: Vec<u64> = visitors.iter().filter_map(|v| v.admitted_at).collect();
    admitted.sort_unstable();
    // Five waves of 12: the last wave waits for four lapses of 4 s sessions.
    assert!(admitted[59] - start >= 16_000, "{}", admitted[59] - start);
}

#[tokio::test(start_paused = true)]
async fn sessions_slide_with_every_request_and_lapse_after_idling() {
    let room = room(600, 10, TIMING);
    let mut v = Visitor::new(0);
    assert!(matches!(v.visit(&room).await, Standing::Admitted { .. }));
    let Presented::Valid(first) = v.presented.clone() else {
        panic!("admitted without a token")
    };
    // A request every 3 s for a minute keeps the 4 s session alive.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let d = room.admission.decide(&v.presented).await;
        assert_eq!(d.standing, Standing::Admitted { sid: first.n });
    }
    // After 4 s of silence, the session has lapsed: back first in line (the page
    // says why), and let in again with the same session when the pump calls it.
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    let d = room.admission.decide(&v.presented).await;
    assert!(d.lapsed, "{d:?}");
    match d.standing {
        Standing::Waiting(w) => assert_eq!(w.position, 1),
        other => panic!("not back in line: {other:?}"),
    }
    // They hold a place token now, as anybody waiting does: for the same number.
    let Some((Kind::Queue, place)) = d.set_token else {
        panic!("no place token: {:?}", d.set_token)
    };
    let place = room.admission.present(&[place.as_str()]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = room.admission.decide(&place).await;
    assert_eq!(d.standing, Standing::Admitted { sid: first.n });
    assert!(d.set_token.is_some(), "a fresh admission token");
}

#[tokio::test(start_paused = true)]
async fn departed_visitors_are_passed_over_and_returners_go_first() {
    let room = room(600, 100_000, TIMING);
    let start = room.admission.clock().now_ms();
    let mut visitors: Vec<_> = (0..200).map(|_| Visitor::new(start)).collect();
    for v in &mut visitors {
        v.visit(&room).await;
    }
    // 2 direct (the burst at 10/s), 198 in line. Every other one leaves.
    let leaves = |i: usize| i % 2 == 1 && i > 10;
    let waiting_stayers = (0..200)
        .filter(|i| !leaves(*i) && visitors[*i].admitted_at.is_none())
        .count();
    assert_eq!(waiting_stayers, 103);
    let mut stayer_admissions = Vec::new();
    for _ in 0..1_000 {
        let now = room.admission.clock().now_ms();
        for (i, v) in visitors.iter_mut().enumerate() {
            if !leaves(i) && v.admitted_at.is_none() && v.next_poll <= now {
                if let Standing::Admitted { .. } = v.visit(&room).await {
                    stayer_admissions.push(now - v.arrived);
                }
            }
        }
        if stayer_admissions.len() == waiting_stayers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stayer_admissions.len(), 103, "all stayers admitted");
    // 103 stayers at 10/s take 10.3 s; departed who were noticed cost nothing. Those
    // reaching the head in the first 5 s (before their deadline) used an admission.
    let last = stayer_admissions.iter().max().unwrap();
    assert!(*last <= 16_000, "last stayer waited {last} ms");
    let s = snapshot(&room).await;
    assert_eq!(s.queue_length, 0);

    // A departed visitor comes back: their turn has passed, so they go first.
    let returner = visitors
        .iter_mut()
        .enumerate()
        .find(|(i, _)| leaves(*i) && *i > 150);
    let (_, returner) = returner.unwrap();
    // Pause, and let a newcomer join the main line: the returner still goes first.
    room.admission
        .store()
        .update_settings(
            SettingsPatch {
                paused: Some(true),
                ..Default::default()
            },
            room.admission.clock().now_ms(),
        )
        .await
        .unwrap();
    let mut newcomer = Visitor::new(0);
    assert!(matches!(newcomer.visit(&room).await, Standing::Waiting(_)));
    match returner.visit(&room).await {
        Standing::Waiting(w) => assert_eq!(w.position, 1, "returner goes to the front"),
        other => panic!("returner {other:?}"),
    }
    room.admission
        .store()
        .update_settings(
            SettingsPatch {
                paused: Some(false),
                ..Default::default()
            },
            room.admission.clock().now_ms(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(
        returner.visit(&room).await,
        Standing::Admitted { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn paused_room_queues_everybody_and_resumes() {
    let room = room(600, 100, TIMING);
    room.admission
        .store()
        .update_settings(
            SettingsPatch {
                paused: Some(true),
                ..Default::default()
            },
            room.admission.clock().now_ms(),
        )
        .await
        .unwrap();
    let mut v = Visitor::new(0);
    let Standing::Waiting(w) = v.visit(&room).await else {
        panic!("admitted while paused")
    };
    assert!(matches!(
        w.gate,
        crate::admission::line::Gate::Paused { .. }
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(matches!(v.visit(&room).await, Standing::Waiting(_)));
    room.admission
        .store()
        .update_settings(
            SettingsPatch {
                paused: Some(false),
                ..Default::default()
            },
            room.admission.clock().now_ms(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(v.visit(&room).await, Standing::Admitted { .. }));
}

#[tokio::test(start_paused = true)]
async fn refused_tokens_are_newcomers() {
    let room = room(600, 100, TIMING);
    let p = room.admission.present(&["not.a.token"]);
    assert_eq!(p, Presented::Refused(TokenError::Malformed));
    let d = room.admission.decide(&p).await;
    assert!(matches!(d.set_token, Some((Kind::Admission, _))));
}

/// Collects what the log writes, for the test below.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn refused_tokens_are_summed_up_in_one_warning_a_minute_not_a_line_each() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let room = room(60, 10, TIMING);
    // The pump is running before the refusals come.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for i in 0..4_000 {
        let garbage = format!("garbage.{i}.x");
        assert!(matches!(
            room.admission.present(&[&garbage]),
            Presented::Refused(_)
        ));
    }
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains("refused")).count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("WARN") && text.contains("refused=4000"),
        "{text}"
    );
}
