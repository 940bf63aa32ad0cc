//! A Redis that goes back in time: what a failover to a replica that lagged, or a
//! restore from an older snapshot, does to the line. The room's keys are copied
//! (`DUMP`) at one moment and put back (`RESTORE … REPLACE`) later, while the
//! instance remembers what it saw in between.

use std::sync::Arc;

use waitroom::admission::line::{Arrival, Poll, SettingsPatch};
use waitroom::store::Store;

use super::running::Running;

/// Copies of a room's keys.
pub struct Snapshot(Vec<(String, Vec<u8>)>);

/// Copies every key of `room` in the Redis at `url`.
pub async fn snapshot(url: &str, room: &str) -> Snapshot {
    let mut conn = connection(url).await;
    let mut copies = Vec::new();
    for key in keys(&mut conn, room).await {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        copies.push((key, dump));
    }
    Snapshot(copies)
}

/// Puts `room` back as `snapshot` had it: keys made since are gone.
pub async fn roll_back(url: &str, room: &str, snapshot: &Snapshot) {
    let mut conn = connection(url).await;
    for key in keys(&mut conn, room).await {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    for (key, dump) in &snapshot.0 {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(dump.as_slice())
            .arg("REPLACE")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Every key of `room`.
async fn keys(conn: &mut redis::aio::MultiplexedConnection, room: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{{waitroom:{room}}}:*"))
        .query_async(conn)
        .await
        .unwrap()
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Places and admissions handed out after the snapshot survive the roll-back:
/// no number is handed out twice, the admitted visitor stays admitted, the
/// waiting one keeps its place. `store` plays the story; `other`, another
/// instance on the same line that knows nothing of it (no session or view of its
/// own), answers the visitors afterwards. (Room `room`, queue_all, 600 a minute.)
pub async fn nothing_is_issued_twice_after_a_roll_back(
    store: Arc<dyn Store>,
    other: Arc<dyn Store>,
    url: &str,
    room: &str,
    t: u64,
) {
    let store = Running::new(store);
    let queued = |a: Arrival| match a {
        Arrival::Queued { seq, .. } => seq,
        other => panic!("expected a place, got {other:?}"),
    };
    // Three in line, called and let in.
    let mut early = Vec::new();
    for _ in 0..3 {
        early.push(queued(store.arrive(t).await.unwrap()));
    }
    store.pump(t + 1_000).await.unwrap();
    let mut at = t + 1_000;
    for seq in &early {
        at = let_in(&store, *seq, at).await;
    }
    let before = snapshot(url, room).await;
    // After the snapshot: one more let in, one more waiting (the line paused).
    let admitted = queued(store.arrive(at + 100).await.unwrap());
    store.pump(at + 500).await.unwrap();
    let t = let_in(&store, admitted, at + 600).await - 1_600;
    let pause = SettingsPatch {
        paused: Some(true),
        ..SettingsPatch::default()
    };
    store.update_settings(pause, t + 1_600).await.unwrap();
    let waiting = queued(store.arrive(t + 1_700).await.unwrap());
    store.pump(t + 2_000).await.unwrap();

    roll_back(url, room, &before).await;

    // A newcomer gets a number nobody had.
    let newcomer = queued(store.arrive(t + 2_100).await.unwrap());
    assert!(
        newcomer > waiting,
        "place {newcomer} handed out again (the last before the roll-back was {waiting})"
    );
    // The admitted stay admitted, those from before the snapshot and after.
    for sid in early.iter().chain([&admitted]) {
        assert!(
            other.touch_session(*sid, t + 2_200).await.unwrap(),
            "session {sid} sent back"
        );
    }
    // The waiting one keeps its place, ahead of the newcomer.
    let Poll::Waiting(w) = other.poll(waiting, t + 2_300).await.unwrap() else {
        panic!("place {waiting} forgotten")
    };
    let Poll::Waiting(n) = other.poll(newcomer, t + 2_300).await.unwrap() else {
        panic!("the newcomer forgotten")
    };
    assert!(w.position < n.position, "{w:?} not ahead of {n:?}");
}

/// Place `seq`, called, polls from `at` on at the times it is told until it is
/// let in; when it was.
async fn let_in(store: &Running, seq: u64, mut at: u64) -> u64 {
    for _ in 0..20 {
        match store.poll(seq, at).await.unwrap() {
            Poll::Admitted { sid } if sid == seq => return at,
            Poll::Waiting(w) => at += w.poll_after_ms.max(1),
            other => panic!("place {seq}: {other:?}"),
        }
    }
    panic!("place {seq} never let in")
}
