//! One suite for the store trait, run against every backend: the memory store and a
//! real Redis. Time is passed explicitly, so both see exactly the same story.

#[path = "store_cases/pauses.rs"]
mod pauses;
#[path = "store_cases/rollback.rs"]
mod rollback;
#[path = "store_cases/running.rs"]
mod running;
#[path = "store_cases/simulation.rs"]
mod simulation;
mod support;

use std::sync::Arc;

use running::Running;
use support::redis::{RedisCluster, RedisServer, TlsRedis};
use waitroom::admission::line::{Arrival, Gate, Poll, Settings, SettingsPatch, Timing};
use waitroom::config::RedisTarget;
use waitroom::store::memory::MemoryStore;
use waitroom::store::redis::RedisStore;
use waitroom::store::Store;

const TIMING: Timing = Timing {
    session_ms: 10_000,
    burst: None,
    poll_min_ms: 1_000,
    poll_max_ms: 20_000,
    abandon_polls: 3,
    abandon_min_ms: 5_000,
    return_grace_ms: 300_000,
    returned_share_permille: 500,
};

const SETTINGS: Settings = Settings::open(60, 3);

const T: u64 = 1_800_000_000_000;

fn queued(a: Arrival) -> (u64, u64) {
    match a {
        Arrival::Queued { seq, wait } => (seq, wait.position),
        other => panic!("expected a place, got {other:?}"),
    }
}

fn position(p: Poll) -> u64 {
    match p {
        Poll::Waiting(w) => w.position,
        other => panic!("expected waiting, got {other:?}"),
    }
}

/// The story every store must tell the same way.
async fn contract(store: Running) {
    // An empty room: the burst (2 at 60/min) goes straight in, then a line forms.
    let Arrival::Admitted { sid: s1 } = store.arrive(T).await.unwrap() else {
        panic!("not admitted")
    };
    let Arrival::Admitted { sid: s2 } = store.arrive(T).await.unwrap() else {
        panic!("not admitted")
    };
    let (p3, pos3) = queued(store.arrive(T).await.unwrap());
    let (p4, pos4) = queued(store.arrive(T).await.unwrap());
    let (p5, pos5) = queued(store.arrive(T).await.unwrap());
    assert_eq!((pos3, pos4, pos5), (1, 2, 3));
    assert!(s1 < s2 && s2 < p3 && p3 < p4 && p4 < p5);
    assert_eq!(position(store.poll(p4, T + 100).await.unwrap()), 2);
    assert_eq!(store.poll(p5 + 100, T + 100).await.unwrap(), Poll::Unknown);
    assert_eq!(store.poll(0, T + 100).await.unwrap(), Poll::Unknown);

    // One per second: the head is called at T + 1 s, then capacity (3) is full.
    let r = store.pump(T + 999).await.unwrap();
    assert_eq!(r.called, 0);
    let r = store.pump(T + 1_000).await.unwrap();
    assert_eq!((r.called, r.passed_over), (1, 0));
    assert_eq!(
        store.poll(p3, T + 1_100).await.unwrap(),
        Poll::Admitted { sid: p3 }
    );
    assert_eq!(position(store.poll(p4, T + 1_100).await.unwrap()), 1);
    assert_eq!(
        store.pump(T + 3_000).await.unwrap().called,
        0,
        "capacity is full"
    );
    let s = store.snapshot(T + 3_000).await.unwrap();
    // Places in line: p3, p4, p5 (s1 and s2 went straight in).
    assert_eq!((s.queue_length, s.active_users, s.places_issued), (2, 3, 3));

    // Sessions slide with requests and lapse when idle.
    assert!(store.touch_session(s1, T + 5_000).await.unwrap());
    // p5 keeps polling; p4 stops (last poll at T + 1.1 s, deadline 5 s later).
    store.poll(p5, T + 4_000).await.unwrap();
    store.poll(p5, T + 8_000).await.unwrap();
    // p4 departed at the head: passed over without an admission (capacity is full anyway).
    let r = store.pump(T + 8_000).await.unwrap();
    assert_eq!((r.called, r.passed_over), (0, 1));
    assert_eq!(
        position(store.poll(p5, T + 9_000).await.unwrap()),
        1,
        "the departed do not count"
    );
    assert!(
        !store.touch_session(s2, T + 10_000).await.unwrap(),
        "s2 lapsed at T + 10 s"
    );
    assert_eq!(store.poll(s2, T + 10_000).await.unwrap(), Poll::Ended);

    // s2's slot is free: p5 is called.
    let r = store.pump(T + 10_500).await.unwrap();
    assert_eq!((r.called, r.passed_over), (1, 0));
    assert_eq!(
        store.poll(p5, T + 10_600).await.unwrap(),
        Poll::Admitted { sid: p5 }
    );

    // p4 comes back: their turn has passed, so they go first, before a newcomer.
    assert_eq!(position(store.poll(p4, T + 10_700).await.unwrap()), 1);
    let (p6, pos6) = queued(store.arrive(T + 10_700).await.unwrap());
    assert_eq!(pos6, 2);
    // p3's session lapses at T + 11.1 s: p4 is called first.
    let r = store.pump(T + 11_200).await.unwrap();
    assert_eq!(r.called, 1);
    assert_eq!(
        store.poll(p4, T + 11_300).await.unwrap(),
        Poll::Admitted { sid: p4 }
    );
    assert_eq!(position(store.poll(p6, T + 11_300).await.unwrap()), 1);

    // Settings change for everybody; paused, nobody is called.
    let s = store
        .update_settings(
            SettingsPatch {
                paused: Some(true),
                max_active_users: Some(10),
                ..Default::default()
            },
            T + 11_300,
        )
        .await
        .unwrap();
    assert_eq!(
        (s.paused, s.max_active_users, s.new_users_per_minute),
        (true, 10, 60)
    );
    assert_eq!(store.pump(T + 20_000).await.unwrap().called, 0);
    let Poll::Waiting(w) = store.poll(p6, T + 20_000).await.unwrap() else {
        panic!()
    };
    assert!(
        matches!(w.gate, Gate::Paused { since: Some(_) }),
        "{:?}",
        w.gate
    );
    let s = store.snapshot(T + 20_000).await.unwrap();
    assert!(s.settings.paused);
    assert_eq!(s.queue_length, 1);

    // Resumed but closed: still nobody is called; closed outranks paused.
    let s = store
        .update_settings(
            SettingsPatch {
                paused: Some(false),
                closed: Some(true),
                ..Default::default()
            },
            T + 20_000,
        )
        .await
        .unwrap();
    assert!(s.closed && !s.paused);
    assert_eq!(store.pump(T + 21_000).await.unwrap().called, 0);
    let Poll::Waiting(w) = store.poll(p6, T + 21_000).await.unwrap() else {
        panic!()
    };
    assert_eq!(w.gate, Gate::Closed);

    // Reopened with an opening scheduled at T + 40 s: everyone queues until then,
    // newcomers too, and the wait counts the time to the opening.
    let opens_at = T + 40_000;
    let s = store
        .update_settings(
            SettingsPatch {
                closed: Some(false),
                opens_at: Some(Some(opens_at)),
                ..Default::default()
            },
            T + 21_000,
        )
        .await
        .unwrap();
    assert_eq!((s.closed, s.opens_at), (false, Some(opens_at)));
    assert_eq!(store.pump(T + 30_000).await.unwrap().called, 0);
    let (p7, pos7) = queued(store.arrive(T + 30_000).await.unwrap());
    assert_eq!(pos7, 2);
    let Poll::Waiting(w) = store.poll(p7, T + 30_000).await.unwrap() else {
        panic!()
    };
    assert_eq!(w.gate, Gate::Scheduled { opens_at });
    assert_eq!(
        w.eta_ms,
        10_000 + 2_000,
        "10 s to the opening, 2 places at 1/s"
    );
    assert_eq!(
        store.snapshot(T + 30_000).await.unwrap().settings.opens_at,
        Some(opens_at)
    );
    // At the opening the line moves, in order.
    assert_eq!(store.pump(T + 39_900).await.unwrap().called, 0);
    store.poll(p6, T + 39_900).await.unwrap();
    store.poll(p7, T + 39_900).await.unwrap();
    assert_eq!(store.pump(T + 40_000).await.unwrap().called, 2, "the burst");
    assert_eq!(
        store.poll(p6, T + 40_100).await.unwrap(),
        Poll::Admitted { sid: p6 }
    );
    // Cancelling the schedule clears it.
    let s = store
        .update_settings(
            SettingsPatch {
                opens_at: Some(None),
                ..Default::default()
            },
            T + 40_100,
        )
        .await
        .unwrap();
    assert_eq!(s.opens_at, None);
}

/// Capacity taken: the line moves no faster than sessions turn over (a session
/// lasts at least `session_ms`), whatever the configured outflow.
async fn capacity_bound_waits(store: Running) {
    store
        .update_settings(
            SettingsPatch {
                max_active_users: Some(1),
                ..Default::default()
            },
            T,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.arrive(T).await.unwrap(),
        Arrival::Admitted { .. }
    ));
    for position in 1..=2 {
        let Arrival::Queued { wait, .. } = store.arrive(T).await.unwrap() else {
            panic!("capacity is taken")
        };
        assert_eq!(wait.position, position);
        assert_eq!(wait.eta_ms, position * TIMING.session_ms, "not 1 a second");
    }
}

/// Pumps every 50 ms over `[from, to)` (keeping `waiting` polling each second) and
/// says how many were called.
async fn pump_between(store: &Running, from: u64, to: u64, waiting: &[u64]) -> u32 {
    let mut called = 0;
    for t in (from..to).step_by(50) {
        if t % 1_000 == 0 {
            for seq in waiting {
                store.poll(*seq, T + t).await.unwrap();
            }
        }
        called += store.pump(T + t).await.unwrap().called;
    }
    called
}

/// A raised rate applies at once; a hold for the origin stops every call, and the
/// line comes back gently after it.
async fn retimed_and_held(store: Running) {
    let patch = |rate| SettingsPatch {
        new_users_per_minute: Some(rate),
        max_active_users: Some(100),
        ..Default::default()
    };
    store.update_settings(patch(1), T).await.unwrap();
    // At 1/min two go straight in (the burst); the next is owed a minute or two.
    for _ in 0..2 {
        assert!(matches!(
            store.arrive(T).await.unwrap(),
            Arrival::Admitted { .. }
        ));
    }
    let mut waiting = Vec::new();
    for _ in 0..40 {
        waiting.push(queued(store.arrive(T).await.unwrap()).0);
    }
    assert_eq!(pump_between(&store, 0, 1_000, &waiting).await, 0);
    store.update_settings(patch(600), T + 1_000).await.unwrap();
    let called = pump_between(&store, 1_000, 2_000, &waiting).await;
    assert!(
        called >= 3,
        "from 1/min to 600/min: {called} called within a second"
    );
    let called = called + pump_between(&store, 2_000, 4_000, &waiting).await;
    assert!(called >= 10, "{called} called within 3 s");

    // The origin fails: an instance holds the line for 3 s.
    let s = store.hold(3_000, T + 4_000).await.unwrap();
    assert_eq!(s.held_until, Some(T + 7_000));
    assert_eq!(
        pump_between(&store, 4_000, 7_000, &waiting).await,
        0,
        "held"
    );
    let last = *waiting.last().unwrap();
    let Poll::Waiting(w) = store.poll(last, T + 6_000).await.unwrap() else {
        panic!("called while held")
    };
    assert_eq!(w.gate, Gate::Held { until: T + 7_000 });
    assert_eq!(
        store.snapshot(T + 6_000).await.unwrap().settings.held_until,
        Some(T + 7_000)
    );
    // After it, a tenth of the rate at first (600/min would call 10 a second).
    let called = pump_between(&store, 7_000, 8_000, &waiting).await;
    assert!(
        (1..=4).contains(&called),
        "{called} called in the first second after the hold"
    );
}

/// Called places whose holders come back together claim one slot apart.
async fn claims_come_one_slot_apart(store: Running) {
    let patch = SettingsPatch {
        new_users_per_minute: Some(600),
        max_active_users: Some(100),
        ..Default::default()
    };
    store.update_settings(patch, T).await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..12 {
        if let Arrival::Queued { seq, .. } = store.arrive(T).await.unwrap() {
            waiting.push(seq);
        }
    }
    // Called at 10 a second over a second, nobody polling meanwhile.
    let called = pump_between(&store, 1, 1_000, &[]).await;
    assert!(called >= 8, "{called}");
    let mut told = Vec::new();
    for seq in &waiting[..called as usize] {
        told.push(match store.poll(*seq, T + 1_000).await.unwrap() {
            Poll::Admitted { .. } => 0,
            Poll::Waiting(w) => w.poll_after_ms,
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(told[..2], [0, 0], "the burst goes in: {told:?}");
    assert!(
        told[2..].windows(2).all(|w| w[1] == w[0] + 100),
        "the others one slot apart: {told:?}"
    );
    // Ten times the rate: the slots already given out come ten times sooner.
    let faster = SettingsPatch {
        new_users_per_minute: Some(6_000),
        ..Default::default()
    };
    store.update_settings(faster, T + 1_000).await.unwrap();
    let (last, wait) = (waiting[called as usize - 1], *told.last().unwrap());
    assert!(wait >= 500, "{told:?}");
    assert_eq!(
        store.poll(last, T + 1_000 + wait / 10 + 1).await.unwrap(),
        Poll::Admitted { sid: last }
    );
}

fn called(p: Poll) -> bool {
    matches!(p, Poll::Admitted { .. })
}

/// A hoard of places, collected and never polled: back within the grace after
/// being passed over, they take at most half the calls (the main line keeps
/// moving, and positions say so); back later, they are worth nothing.
async fn hoards_are_worth_little(store: Running) {
    let paused = SettingsPatch {
        paused: Some(true),
        max_active_users: Some(1_000),
        ..Default::default()
    };
    store.update_settings(paused, T).await.unwrap();
    let mut hoard = Vec::new();
    for _ in 0..10 {
        hoard.push(queued(store.arrive(T).await.unwrap()).0);
    }
    let mut honest = Vec::new();
    for _ in 0..4 {
        honest.push(queued(store.arrive(T + 100).await.unwrap()).0);
    }
    // The hoard never polls and departs (a paused line polls slowly: after a
    // minute); the honest poll and stay.
    pump_between(&store, 100, 70_000, &honest).await;
    let resume = SettingsPatch {
        paused: Some(false),
        ..Default::default()
    };
    store.update_settings(resume, T + 70_000).await.unwrap();
    // The hoard was passed over meanwhile; at 60 a minute (burst 2), two honest
    // are called.
    assert_eq!(store.pump(T + 70_000).await.unwrap().called, 2);
    let p0 = store.poll(honest[0], T + 70_000).await.unwrap();
    assert!(called(p0), "{p0:?}");
    assert!(called(store.poll(honest[1], T + 70_000).await.unwrap()));

    // Half the hoard comes back within the grace: the returned lane, which takes
    // every other call while the main line waits.
    let mut back = Vec::new();
    for seq in &hoard[..5] {
        back.push(position(store.poll(*seq, T + 71_000).await.unwrap()));
    }
    assert_eq!(back, [1, 3, 5, 6, 7]);
    assert_eq!(
        position(store.poll(honest[2], T + 71_000).await.unwrap()),
        2
    );
    assert_eq!(
        position(store.poll(honest[3], T + 71_000).await.unwrap()),
        4
    );
    let mut order = Vec::new();
    for step in 0..4u64 {
        let at = T + 71_000 + step * 1_000;
        assert_eq!(store.pump(at).await.unwrap().called, 1, "one a second");
        let polled = hoard[..5].iter().chain(&honest[2..]);
        for seq in polled {
            if !order.contains(seq) && called(store.poll(*seq, at + 10).await.unwrap()) {
                order.push(*seq);
            }
        }
    }
    assert_eq!(order, [hoard[0], honest[2], hoard[1], honest[3]]);

    // The other half comes back long after the grace: no place at all.
    store.pump(T + 400_000).await.unwrap();
    for seq in &hoard[5..] {
        assert_eq!(store.poll(*seq, T + 400_000).await.unwrap(), Poll::Ended);
    }
}

/// The room's modes: `queue_all` gives everybody a place although there is room,
/// `passthrough` lets everybody in past both limits and owes nothing to them
/// after, and the end session frees its slot at once.
async fn modes_and_ends(store: Running) {
    let set = |patch: SettingsPatch, at: u64| {
        let store = store.clone();
        async move { store.update_settings(patch, at).await.unwrap() }
    };
    let s = set(
        SettingsPatch {
            queue_all: Some(true),
            ..Default::default()
        },
        T,
    )
    .await;
    assert!(s.queue_all && !s.passthrough);
    // Room for 3, a burst of 2: still everybody takes a place, called in order.
    let (a, pos_a) = queued(store.arrive(T).await.unwrap());
    let (b, pos_b) = queued(store.arrive(T).await.unwrap());
    // (`b`'s arrival called `a` first.)
    assert_eq!((pos_a, pos_b), (1, 1));
    store.pump(T + 10).await.unwrap();
    assert_eq!(
        store.poll(a, T + 20).await.unwrap(),
        Poll::Admitted { sid: a }
    );
    assert_eq!(
        store.poll(b, T + 20).await.unwrap(),
        Poll::Admitted { sid: b }
    );

    // Passthrough: capacity (3) and the rate (1/s) no longer apply.
    let s = set(
        SettingsPatch {
            queue_all: Some(false),
            passthrough: Some(true),
            ..Default::default()
        },
        T + 30,
    )
    .await;
    assert!(s.passthrough && !s.queue_all);
    let mut sessions = vec![a, b];
    for i in 0..20 {
        match store.arrive(T + 40 + i).await.unwrap() {
            Arrival::Admitted { sid } => sessions.push(sid),
            other => panic!("not let through in passthrough: {other:?}"),
        }
    }
    assert_eq!(store.snapshot(T + 100).await.unwrap().active_users, 22);

    // Back to normal: the 22 sessions fill the room; nothing is owed to the rate.
    set(
        SettingsPatch {
            passthrough: Some(false),
            ..Default::default()
        },
        T + 200,
    )
    .await;
    let (c, pos_c) = queued(store.arrive(T + 200).await.unwrap());
    assert_eq!(pos_c, 1);
    // Ending all but one session leaves room: the rate calls `c` within a second.
    for sid in &sessions[1..] {
        assert!(store.end_session(*sid, T + 300).await.unwrap());
    }
    assert!(!store.end_session(sessions[1], T + 300).await.unwrap());
    assert!(!store.touch_session(sessions[1], T + 300).await.unwrap());
    let called = store.pump(T + 1_300).await.unwrap().called;
    assert_eq!(called, 1);
    assert_eq!(
        store.poll(c, T + 1_400).await.unwrap(),
        Poll::Admitted { sid: c }
    );
}

/// A lottery opening: the places taken before it are the pre-queue, which does not
/// depart before the opening (plus `abandon_min`); at the opening its range is
/// recorded as the draw, once, and kept whatever the settings say later.
async fn lottery_pre_queue(store: Running) {
    let opens = T + 60_000;
    let patch = SettingsPatch {
        opens_at: Some(Some(opens)),
        lottery: Some(true),
        ..Default::default()
    };
    assert!(store.update_settings(patch, T).await.unwrap().lottery);
    let (a, _) = queued(store.arrive(T).await.unwrap());
    let (b, _) = queued(store.arrive(T + 1_000).await.unwrap());
    let s = store.snapshot(T + 2_000).await.unwrap();
    assert_eq!((s.prequeue, s.last_draw), (Some((a, b)), None));
    // Nobody polls for 50 s: still there at the opening (abandon_min is 5 s).
    let s = store.snapshot(T + 50_000).await.unwrap();
    assert_eq!(s.queue_length, 2);
    // The opening records the draw; newcomers after it are not in it.
    store.pump(opens).await.unwrap();
    let (c, _) = queued(store.arrive(opens + 10).await.unwrap());
    assert!(c > b);
    let s = store.snapshot(opens + 20).await.unwrap();
    assert_eq!((s.prequeue, s.last_draw), (None, Some((opens, a, b))));
    // The pre-queue's places wait for their new holders a while after the opening.
    let s = store.snapshot(opens + 4_000).await.unwrap();
    assert_eq!(s.queue_length + s.called_pending, 3, "{s:?}");
    // Cancelling the lottery or the opening afterwards changes nothing drawn.
    let off = SettingsPatch {
        lottery: Some(false),
        opens_at: Some(None),
        ..Default::default()
    };
    store.update_settings(off, opens + 1_000).await.unwrap();
    assert_eq!(
        store.snapshot(opens + 1_000).await.unwrap().last_draw,
        Some((opens, a, b))
    );
    // A later lottery opening: a new pre-queue, a new draw; nobody came: empty.
    let next = opens + 600_000;
    let again = SettingsPatch {
        lottery: Some(true),
        opens_at: Some(Some(next)),
        ..Default::default()
    };
    store.update_settings(again, opens + 2_000).await.unwrap();
    let (d, _) = queued(store.arrive(opens + 3_000).await.unwrap());
    assert_eq!(
        store.snapshot(opens + 3_000).await.unwrap().prequeue,
        Some((d, d))
    );
    store.pump(next).await.unwrap();
    assert_eq!(
        store.snapshot(next).await.unwrap().last_draw,
        Some((next, d, d))
    );
}

/// The line of `room` in the Redis at `target`, deciding with the story's times.
/// A session that lapsed comes back first (ahead of two who have not had their
/// turn); one the origin ended does not.
async fn lapsed_sessions_come_back_first(store: Running) {
    let patch = |max: Option<u32>, paused: Option<bool>| SettingsPatch {
        max_active_users: max,
        paused,
        ..Default::default()
    };
    store
        .update_settings(patch(Some(1), None), T)
        .await
        .unwrap();
    let Arrival::Admitted { sid } = store.arrive(T).await.unwrap() else {
        panic!("the first goes straight in")
    };
    let (b, _) = queued(store.arrive(T).await.unwrap());
    let (c, _) = queued(store.arrive(T).await.unwrap());
    store
        .update_settings(patch(None, Some(true)), T + 1)
        .await
        .unwrap();
    // The two keep polling while the first session lapses unused.
    let lapsed_at = T + TIMING.session_ms;
    for at in (T + 2_000..lapsed_at + 3_000).step_by(2_000) {
        store.pump(at).await.unwrap();
        for seq in [b, c] {
            assert!(!called(store.poll(seq, at).await.unwrap()));
        }
    }
    let back = lapsed_at + 3_000;
    assert!(!store.touch_session(sid, back).await.unwrap(), "lapsed");
    assert_eq!(position(store.rejoin(sid, back).await.unwrap()), 1);
    // The place token they are given then polls that place like any other.
    assert_eq!(position(store.poll(sid, back + 50).await.unwrap()), 1);
    store
        .update_settings(patch(None, Some(false)), back + 100)
        .await
        .unwrap();
    store.pump(back + 200).await.unwrap();
    assert_eq!(
        store.poll(sid, back + 300).await.unwrap(),
        Poll::Admitted { sid }
    );
    for seq in [b, c] {
        assert!(
            !called(store.poll(seq, back + 300).await.unwrap()),
            "{seq} went before the session that came back"
        );
    }
    assert!(store.end_session(sid, back + 400).await.unwrap());
    assert_eq!(store.rejoin(sid, back + 500).await.unwrap(), Poll::Ended);
}

/// A place kept in arrival order (`arrive_kept`, for a visitor over their
/// address's allowance who must still earn it) counts nowhere until its holder
/// checks in: nobody waits behind it, it is never called; a check-in makes it
/// theirs where it stands, ahead of everybody who came after. Under passthrough
/// it goes in.
async fn kept_places_wait_in_line(store: Running) {
    // Room for 3, a burst of 2: two go in, then a line forms.
    for _ in 0..2 {
        assert!(matches!(
            store.arrive(T).await.unwrap(),
            Arrival::Admitted { .. }
        ));
    }
    let (first, _) = queued(store.arrive(T).await.unwrap());
    let (kept, shown) = queued(store.arrive_kept(T).await.unwrap());
    assert_eq!(shown, 2, "where it would stand");
    let (later, pos) = queued(store.arrive(T).await.unwrap());
    assert_eq!(pos, 2, "a kept place counts nowhere until it is checked in");
    let (never, _) = queued(store.arrive_kept(T).await.unwrap());
    assert!(first < kept && kept < later && later < never);
    assert_eq!(store.snapshot(T + 10).await.unwrap().queue_length, 2);
    // Its holder checks in: theirs where it stands, ahead of the one who came later.
    assert_eq!(position(store.poll(kept, T + 100).await.unwrap()), 2);
    assert_eq!(position(store.poll(later, T + 100).await.unwrap()), 3);
    assert_eq!(store.snapshot(T + 110).await.unwrap().queue_length, 3);
    let s = store
        .update_settings(
            SettingsPatch {
                passthrough: Some(true),
                ..Default::default()
            },
            T + 200,
        )
        .await
        .unwrap();
    assert!(s.passthrough);
    assert!(matches!(
        store.arrive_kept(T + 300).await.unwrap(),
        Arrival::Admitted { .. }
    ));
}

async fn connect(target: &RedisTarget, room: &str) -> RedisStore {
    RedisStore::connect(target, room, TIMING, SETTINGS)
        .await
        .unwrap()
        .with_callers_clock()
}

/// Both stories, each in a room of its own, in the Redis at `target`.
async fn stories(target: &RedisTarget) {
    contract(Running::new(Arc::new(connect(target, "contract").await))).await;
    capacity_bound_waits(Running::new(Arc::new(connect(target, "capacity").await))).await;
    retimed_and_held(Running::new(Arc::new(connect(target, "held").await))).await;
    claims_come_one_slot_apart(Running::new(Arc::new(connect(target, "claims").await))).await;
    hoards_are_worth_little(Running::new(Arc::new(connect(target, "hoard").await))).await;
    modes_and_ends(Running::new(Arc::new(connect(target, "modes").await))).await;
    lottery_pre_queue(Running::new(Arc::new(connect(target, "lottery").await))).await;
    lapsed_sessions_come_back_first(Running::new(Arc::new(connect(target, "lapsed").await))).await;
    kept_places_wait_in_line(Running::new(Arc::new(connect(target, "kept").await))).await;
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    capacity_bound_waits(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    retimed_and_held(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    claims_come_one_slot_apart(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    hoards_are_worth_little(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    modes_and_ends(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    lottery_pre_queue(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
    lapsed_sessions_come_back_first(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS))))
        .await;
    kept_places_wait_in_line(Running::new(Arc::new(MemoryStore::new(TIMING, SETTINGS)))).await;
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    stories(&RedisServer::start().target()).await;
}

#[tokio::test]
async fn redis_over_tls_with_a_password_keeps_the_contract() {
    let redis = TlsRedis::start();
    contract(Running::new(Arc::new(
        connect(&redis.target(), "tls").await,
    )))
    .await;
    // The wrong password is refused with a clear error, not a hang.
    let mut wrong = redis.target();
    wrong.url = wrong.url.replace(redis.password, "wrong");
    let e = RedisStore::connect(&wrong, "tls", TIMING, SETTINGS)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("store unavailable"), "{e}");
}

#[tokio::test]
async fn redis_cluster_store_keeps_the_contract() {
    let cluster = RedisCluster::start();
    stories(&cluster.target()).await;
    // Rooms hash to different slots, so different nodes, and still each is whole.
    for room in ["a", "b", "c", "d"] {
        let s = connect(&cluster.target(), room).await;
        assert!(matches!(
            s.arrive(T).await.unwrap(),
            Arrival::Admitted { .. }
        ));
        assert_eq!(s.snapshot(T).await.unwrap().places_issued, 0);
        // The burst (2) goes straight in, then the first place in line.
        assert!(matches!(
            s.arrive(T).await.unwrap(),
            Arrival::Admitted { .. }
        ));
        assert!(matches!(s.arrive(T).await.unwrap(), Arrival::Queued { .. }));
        assert_eq!(s.snapshot(T).await.unwrap().places_issued, 1);
    }
}

#[tokio::test]
async fn two_redis_stores_share_one_line() {
    let redis = RedisServer::start();
    let a = connect(&redis.target(), "shared").await;
    let b = connect(&redis.target(), "shared").await;
    assert_eq!(a.line_id(), b.line_id());
    let other = connect(&redis.target(), "other-room").await;
    assert_ne!(a.line_id(), other.line_id());
    a.arrive(T).await.unwrap();
    b.arrive(T).await.unwrap();
    let (p3, _) = queued(a.arrive(T).await.unwrap());
    let (p4, pos4) = queued(b.arrive(T).await.unwrap());
    assert_eq!((p4, pos4), (p3 + 1, 2));
    b.update_settings(
        SettingsPatch {
            new_users_per_minute: Some(120),
            ..Default::default()
        },
        T,
    )
    .await
    .unwrap();
    assert_eq!(
        a.snapshot(T).await.unwrap().settings.new_users_per_minute,
        120
    );
}

/// The stories of [`pauses`], each on a store made by `make` with its settings.
async fn pause_stories<F, Fut>(make: F)
where
    F: Fn(&'static str, Settings) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    pauses::a_pause_keeps_the_order_of_the_line(make("order", pauses::queue_all(12, 100)).await)
        .await;
    pauses::a_pause_while_the_line_stands_still_keeps_its_order(
        make("still", Settings::open(600, 1)).await,
    )
    .await;
    pauses::a_lapsed_session_keeps_the_returned_lane_through_a_pause(
        make("lapsed", Settings::open(600, 1)).await,
    )
    .await;
    pauses::a_passed_over_place_keeps_the_returned_lane_through_a_pause(
        make("passed", pauses::queue_all(600, 100)).await,
    )
    .await;
}

#[tokio::test]
async fn memory_store_keeps_the_line_through_pauses() {
    pause_stories(|_, settings| async move {
        Arc::new(MemoryStore::new(pauses::TIMING, settings)) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test]
async fn redis_store_keeps_the_line_through_pauses() {
    let redis = RedisServer::start();
    let target = redis.target();
    pause_stories(|room, settings| {
        let target = target.clone();
        async move {
            let store = RedisStore::connect(&target, room, pauses::TIMING, settings)
                .await
                .unwrap()
                .with_callers_clock();
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
}

/// The seeds of one run: `SIM_SEED` alone, or 1,000 from `SIM_BASE` (a new base
/// each run unless set; printed, so that a failure names a seed to replay).
fn seeds() -> Vec<u64> {
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("SIM_SEED") {
        return vec![seed];
    }
    let base = var("SIM_BASE").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos % 1_000_000_000 * 1_000
    });
    eprintln!(
        "simulation: seeds {base}..{} (SIM_SEED=n replays one)",
        base + 1_000
    );
    (base..base + 1_000).collect()
}

#[tokio::test]
async fn memory_store_holds_the_line_s_invariants_over_a_thousand_seeds() {
    for seed in seeds() {
        let settings = simulation::settings(seed);
        let store = Arc::new(MemoryStore::new(simulation::TIMING, settings));
        simulation::run(store, seed, None).await.unwrap();
    }
}

#[tokio::test]
async fn memory_store_on_disk_holds_them_through_restarts_over_a_thousand_seeds() {
    for seed in seeds() {
        let settings = simulation::settings(seed);
        let dir = std::env::temp_dir().join(format!("waitroom-sim-{seed}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let open = {
            let dir = dir.clone();
            move || {
                // The dropped store's lock is released at once, but a process the
                // other tests of this binary spawn at that moment holds a copy of
                // its descriptor until it executes: wait for that, never longer
                // than a second.
                for _ in 0..100 {
                    match MemoryStore::open(&dir, simulation::TIMING, settings) {
                        Ok(store) => return Arc::new(store) as Arc<dyn Store>,
                        Err(waitroom::store::memory::StateError::Locked(_)) => {
                            std::thread::sleep(std::time::Duration::from_millis(10))
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                panic!(
                    "{} stayed locked after its store was dropped",
                    dir.display()
                )
            }
        };
        let store = open();
        // Dropped without a save: what it journaled is what the next one reads.
        let reopen: simulation::Reopen = Box::new(move |old| {
            drop(old);
            open()
        });
        simulation::run(store, seed, Some(reopen)).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_holds_the_line_s_invariants_over_a_thousand_seeds() {
    let redis = RedisServer::start();
    let target = redis.target();
    let mut running = tokio::task::JoinSet::new();
    let mut failures = Vec::new();
    for seed in seeds() {
        // Each new room first waits `JOIN_GRACE` for a line to appear: many at once.
        if running.len() >= 64 {
            if let Some(Err(e)) = running.join_next().await.map(Result::unwrap) {
                failures.push(e);
            }
        }
        let target = target.clone();
        running.spawn(async move {
            let settings = simulation::settings(seed);
            let room = format!("sim-{seed}");
            let store = RedisStore::connect(&target, &room, simulation::TIMING, settings)
                .await
                .map_err(|e| e.to_string())?
                .with_callers_clock();
            simulation::run(Arc::new(store), seed, None).await
        });
    }
    while let Some(done) = running.join_next().await {
        if let Err(e) = done.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn redis_store_issues_nothing_twice_when_redis_goes_back_in_time() {
    let redis = RedisServer::start();
    let target = redis.target();
    let settings = Settings {
        queue_all: true,
        ..Settings::open(600, 10)
    };
    let connect = || async {
        let store = RedisStore::connect(&target, "rollback", TIMING, settings)
            .await
            .unwrap()
            .with_callers_clock();
        Arc::new(store) as Arc<dyn Store>
    };
    let (store, other) = (connect().await, connect().await);
    rollback::nothing_is_issued_twice_after_a_roll_back(store, other, &target.url, "rollback", T)
        .await;
}
