//! Randomised input against everything that parses what strangers send: `Cookie`
//! headers, tokens, `Accept-Language` and `?lang=`, `X-Forwarded-For`, the
//! configuration file, request paths, and the fast lane's parsers of request
//! heads, answer heads and chunked bodies. Each target takes random bytes and mutations of valid
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

#[test]
fn request_heads() {
    use waitroom::h1::fuzz::{request_head, RequestSeen};
    let (mut rng, seed) = rng("request_heads");
    let valid = b"GET /register?x=1 HTTP/1.1\r\nHost: site.example\r\nCookie: waitroom=a.b.c\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n";
    for _ in 0..rounds() {
        let bytes = mutate(&mut rng, valid);
        match request_head(&bytes) {
            // Only a GET or HEAD without a body or an upgrade, its head taken
            // out and the rest left as it came.
            RequestSeen::Fit {
                method,
                target,
                names,
                rest,
            } => {
                assert!(method == "GET" || method == "HEAD", "seed {seed}: {method}");
                assert!(target.starts_with('/'), "seed {seed}: {target}");
                for refused in ["transfer-encoding", "upgrade", "expect"] {
                    assert!(
                        !names.iter().any(|n| n == refused),
                        "seed {seed}: {names:?}"
                    );
                }
                assert!(bytes.ends_with(&rest), "seed {seed}: {bytes:?}");
            }
            // Whatever is not the fast lane's goes to hyper whole.
            RequestSeen::Partial(left) | RequestSeen::Unfit(left) => {
                assert_eq!(left, bytes, "seed {seed}");
            }
        }
    }
}

#[test]
fn answer_heads() {
    use waitroom::h1::fuzz::{answer_head, AnswerSeen};
    let (mut rng, seed) = rng("answer_heads");
    let valid = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-private\r\nX-Private: 1\r\nWaitroom-Command: release\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for round in 0..rounds() {
        let bytes = mutate(&mut rng, valid);
        let head_only = round % 4 == 0;
        if let AnswerSeen::Final {
            status,
            framing,
            reusable,
            passed,
            used,
            ..
        } = answer_head(&bytes, head_only)
        {
            assert!(used <= bytes.len(), "seed {seed}");
            // A bodiless answer never leaves its connection to be used again,
            // and nothing waitroom must act on or that frames the message is
            // passed on as it came.
            if head_only || status == 204 || status == 304 {
                assert_eq!(framing, "empty", "seed {seed}: {bytes:?}");
            }
            if framing == "empty" || framing == "close" {
                assert!(!reusable, "seed {seed}: {bytes:?}");
            }
            let text = String::from_utf8_lossy(&passed).to_ascii_lowercase();
            let names: Vec<&str> = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split(':').next())
                .collect();
            for name in [
                "waitroom-command",
                "transfer-encoding",
                "content-length",
                "connection",
            ] {
                assert!(
                    !names.contains(&name),
                    "seed {seed}: {name} passed on from {bytes:?}"
                );
            }
        }
    }
}

#[test]
fn chunked_bodies() {
    use waitroom::h1::fuzz::chunked_body;
    let (mut rng, seed) = rng("chunked_bodies");
    let valid = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nwaitroom-command: revoke\r\nset-cookie: a=1\r\n\r\nNEXT";
    for _ in 0..rounds() {
        let bytes = mutate(&mut rng, valid);
        let whole = chunked_body(&bytes, &[]);
        let cuts: Vec<usize> = (0..rng.random_range(0..6))
            .map(|_| rng.random_range(0..=bytes.len()))
            .collect();
        // However the bytes come in, the scanner says the same of them.
        assert_eq!(
            chunked_body(&bytes, &cuts),
            whole,
            "seed {seed}: {cuts:?} {bytes:?}"
        );
        if let Ok((passed, Some(end))) = whole {
            // What is passed on is the body up to its last chunk's line; what is
            // left out is the trailer section alone, up to its empty line.
            assert!(passed.len() <= end && end <= bytes.len(), "seed {seed}");
            assert!(
                bytes.starts_with(&passed) && passed.ends_with(b"\n"),
                "seed {seed}"
            );
            let trailer = &bytes[passed.len()..end];
            assert!(
                trailer == b"\r\n"
                    || trailer == b"\n"
                    || trailer.ends_with(b"\n\r\n")
                    || trailer.ends_with(b"\n\n"),
                "seed {seed}: {trailer:?} of {bytes:?}"
            );
        }
    }
}

#[test]
fn paths() {
    use waitroom::path::normalize;
    let (mut rng, seed) = rng("paths");
    let valid = b"/static/../register/%2e%2E/a%2fb/./c//d%41;x=1/..%3B/caf%c3%a9?q=1";
    for _ in 0..rounds() {
        let bytes = mutate(&mut rng, valid);
        let Ok(path) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let path = path.split('?').next().unwrap_or_default();
        if let Ok(normal) = normalize(path) {
            let normal = normal.unwrap_or_else(|| path.to_owned());
            // Normal is final: nothing left to remove or decode, and no way
            // for an origin to read it as another path.
            assert_eq!(normalize(&normal), Ok(None), "seed {seed}: {path:?}");
            assert!(normal.starts_with('/'), "seed {seed}: {normal:?}");
            for segment in normal.split('/').skip(1) {
                assert!(segment != "." && segment != "..", "seed {seed}: {normal:?}");
            }
            let upper = normal.to_ascii_uppercase();
            for never in ["//", "%2F", "%5C", "%00", "\\", "%2E"] {
                assert!(!upper.contains(never), "seed {seed}: {never} in {normal:?}");
            }
        }
    }
}
