//! Randomised input against everything that parses what strangers send: `Cookie`
//! headers, tokens, `Accept-Language` and `?lang=`, `X-Forwarded-For`, and the
//! configuration file. Each target takes random bytes and mutations of valid
//! input (bytes flipped, cut, repeated, spliced with separators) and checks that
//! nothing panics and what comes back keeps its promises.
//!
//! `FUZZ_ROUNDS` (default 20,000) sets the rounds per target; `FUZZ_SEED` replays
//! a run (each failure prints its seed). docs/security.md records a long run.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue, COOKIE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use waitroom::clients::TrustedProxies;
use waitroom::clock::Clock;
use waitroom::http::{cookies, replace_cookie};
use waitroom::queue_page::i18n::LANGUAGES;
use waitroom::queue_page::Page;
use waitroom::token::{KeyPair, Keyring, Kind, Tokens};

const PIECES: [&str; 16] = [
    "waitroom",
    "=",
    ";",
    "; ",
    "\"",
    " ",
    "pref",
    "caf\u{e9}",
    "\u{fc}",
    ",",
    ".",
    "==",
    "\t",
    "waitroom_pow",
    "%",
    "\u{0}",
];

fn rounds() -> u64 {
    std::env::var("FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn rng(target: &str) -> (StdRng, u64) {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{target}: FUZZ_SEED={seed}");
    (StdRng::seed_from_u64(seed), seed)
}

/// Random bytes, or `valid` mutated: bytes flipped, cut, repeated, or spliced with
/// pieces that mean something to a parser.
fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut out = if rng.random_bool(0.2) || valid.is_empty() {
        (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect()
    } else {
        valid.to_vec()
    };
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=out.len());
        match rng.random_range(0..5) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => out.truncate(at),
            2 => {
                let piece = PIECES[rng.random_range(0..PIECES.len())];
                out.splice(at..at, piece.bytes());
            }
            3 if !out.is_empty() => {
                let from = rng.random_range(0..out.len());
                let chunk: Vec<u8> = out[from..].iter().take(20).copied().collect();
                out.splice(at..at, chunk);
            }
            _ => out.insert(at, rng.random()),
        }
    }
    out
}

fn tokens() -> Tokens {
    Tokens::new(
        Keyring::new(KeyPair::generate(), Vec::new()),
        Clock::system(),
        3_600,
        3_600,
    )
}

#[test]
fn cookie_headers() {
    let (mut rng, seed) = rng("cookie_headers");
    let valid = b"pref=caf; waitroom=eyJ0.eyJr.sig; other=\"x\"";
    for _ in 0..rounds() {
        let bytes = mutate(&mut rng, valid);
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            continue; // hyper refuses such a header before we see it
        };
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, value);
        for v in cookies(&headers, "waitroom") {
            assert!(
                v.is_ascii() && !v.contains(';'),
                "seed {seed}: {v:?} from {bytes:?}"
            );
        }
        replace_cookie(&mut headers, "waitroom", "new.token");
        assert_eq!(
            cookies(&headers, "waitroom"),
            ["new.token"],
            "seed {seed}: {bytes:?}"
        );
    }
}

#[test]
fn tokens_altered_never_verify_as_something_else() {
    let (mut rng, seed) = rng("tokens");
    let t = tokens();
    let valid = t.issue_place(42, 7, 3);
    let claims = t.verify(&valid).unwrap();
    for _ in 0..rounds() {
        let bytes = mutate(&mut rng, valid.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(c) = t.verify(&text) {
            // Only an encoding of the very same token may pass.
            assert_eq!(c, claims, "seed {seed}: {text:?}");
        }
    }
    // A challenge is never a place, whatever is done to it.
    let challenge = t.issue_challenge(5, 4);
    assert_eq!(t.verify(&challenge).unwrap().k, Kind::Challenge);
}

#[test]
fn languages() {
    let (mut rng, seed) = rng("languages");
    let page = Page::builtin();
    for _ in 0..rounds() {
        let accept = mutate(&mut rng, b"fr-LU,fr;q=0.9,de;q=0.8,en;q=0.5");
        let query = mutate(&mut rng, b"lb");
        let chosen = mutate(&mut rng, b"pt");
        let (accept, query, chosen) = (
            String::from_utf8_lossy(&accept),
            String::from_utf8_lossy(&query),
            String::from_utf8_lossy(&chosen),
        );
        let lang = page.language(Some(&query), Some(&chosen), Some(&accept));
        assert!(LANGUAGES.contains(&lang), "seed {seed}: {lang}");
    }
}

#[test]
fn forwarded_for() {
    let (mut rng, seed) = rng("forwarded_for");
    let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    for _ in 0..rounds() {
        let bytes = mutate(&mut rng, b"203.0.113.7, [2001:db8::1]:443, 10.1.2.3");
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", value);
        let client = trusted.client(peer, &headers);
        let text = String::from_utf8_lossy(&bytes);
        // The client is the peer or one of the addresses written in the header.
        let written: Vec<IpAddr> = text
            .split(',')
            .filter_map(|e| {
                let e = e.trim();
                e.parse::<IpAddr>()
                    .ok()
                    .or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
                    .map(|ip| ip.to_canonical())
            })
            .collect();
        assert!(
            client == peer || written.contains(&client),
            "seed {seed}: {client} from {text:?}"
        );
        // Only a trusted peer's header is read at all.
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(trusted.client(outsider, &headers), outsider);
    }
}

#[test]
fn configuration_files() {
    let (mut rng, seed) = rng("configuration_files");
    let example = include_str!("../../config/example.toml");
    for _ in 0..rounds() / 10 {
        let bytes = mutate(&mut rng, example.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = waitroom::config::Config::from_toml(&text, None) {
            assert!(!e.to_string().is_empty(), "seed {seed}");
        }
    }
}
