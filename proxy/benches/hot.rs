//! The hot pure functions of a request, each on its own (issue 12): signing and
//! verifying a token, a verified token found again, a place's position in a long
//! line, and rendering the queue page and the status JSON.
//!
//!     cargo bench -p waitroom --bench hot
//!
//! These say where a request's time goes and catch a regression in one piece; the
//! requests themselves are measured against nginx by `scripts/bench-hot.sh`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use waitroom::admission::line::{Arrival, Line, Poll, Settings, Timing};
use waitroom::clock::Clock;
use waitroom::queue_page::{Page, Status};
use waitroom::token::keys::{KeyPair, Keyring};
use waitroom::token::Tokens;

fn tokens(c: &mut Criterion) {
    let ring = Keyring::new(KeyPair::generate(), Vec::new());
    let clock = Clock::system();
    let tokens = Tokens::new(ring.clone(), clock.clone(), 3_600, 3_600);
    let token = tokens.issue_place(7, 123_456, 42);
    c.bench_function("token/sign", |b| {
        b.iter(|| tokens.issue_place(black_box(7), black_box(123_456), 42))
    });
    c.bench_function("token/verify (first time: the signature)", |b| {
        b.iter_batched(
            || Tokens::new(ring.clone(), clock.clone(), 3_600, 3_600),
            |fresh| fresh.verify(black_box(&token)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    tokens.verify(&token).unwrap();
    c.bench_function("token/verify (again: the cache)", |b| {
        b.iter(|| tokens.verify(black_box(&token)).unwrap())
    });
}

fn line(c: &mut Criterion) {
    let mut line = Line::new(Timing::default(), Settings::open(1, 1));
    let mut seqs = Vec::with_capacity(1_000_000);
    for i in 0..1_000_001u64 {
        if let Arrival::Queued { seq, .. } = line.arrive(1_000 + i / 1_000) {
            seqs.push(seq);
        }
    }
    let (front, back) = (seqs[0], *seqs.last().unwrap());
    let mut now = 2_000;
    for (name, seq) in [("front", front), ("back", back)] {
        c.bench_function(&format!("line/poll at the {name} of 1,000,000"), |b| {
            b.iter(|| {
                now += 1;
                match line.poll(black_box(seq), now) {
                    Poll::Waiting(w) => w.position,
                    _ => unreachable!("everyone waits"),
                }
            })
        });
    }
}

fn page(c: &mut Criterion) {
    let mut line = Line::new(Timing::default(), Settings::open(60, 1));
    line.arrive(1_000);
    let Arrival::Queued { wait, .. } = line.arrive(1_000) else {
        unreachable!("the second waits")
    };
    let status = Status::waiting(&wait, 1_000);
    let page = Page::builtin();
    c.bench_function("page/render (de)", |b| {
        b.iter(|| page.render(black_box(&status), "de", "/register"))
    });
    c.bench_function("status/json", |b| {
        b.iter(|| serde_json::to_vec(&black_box(&status).to_json()).unwrap())
    });
}

criterion_group!(benches, tokens, line, page);
criterion_main!(benches);
