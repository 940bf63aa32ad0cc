//! A proof-of-work challenge before a place is issued, switched on by an operator
//! (`/admin/protection`) while bots farm places: a newcomer's browser spends about a
//! second finding a counter whose SHA-256 with the challenge starts with
//! `difficulty` zero bits; a farmer pays that for every place.
//!
//! The challenge is a signed token ([`crate::token::Kind::Challenge`]: any instance
//! sharing the keys verifies it, it expires after [`CHALLENGE_TTL_SECS`]); the
//! answer comes back in the cookie `<name>_pow` as `challenge.counter`, is checked
//! with one hash, and is accepted once (per instance). Nothing third-party: the page
//! carries its own SHA-256.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::token::{Kind, Tokens};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL_SECS: u64 = 300;
/// The hardest challenge that may be set (bits).
pub const MAX_DIFFICULTY: u32 = 28;

/// Whether challenges are on, how hard they are, and the answers already used.
#[derive(Debug)]
pub struct ProofOfWork {
    enabled: AtomicBool,
    difficulty: AtomicU32,
    /// Nonces of challenges answered, with when their challenge expires.
    used: Mutex<HashMap<u64, u64>>,
}

/// The number of leading zero bits of `hash`.
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// The hash an answer is judged by: SHA-256 of `challenge:counter`.
pub fn work(challenge: &str, counter: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(b":");
    h.update(counter.to_string().as_bytes());
    h.finalize().into()
}

impl ProofOfWork {
    /// Challenges `enabled` or not, at `difficulty` bits.
    pub fn new(enabled: bool, difficulty: u32) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            difficulty: AtomicU32::new(difficulty.clamp(1, MAX_DIFFICULTY)),
            used: Mutex::default(),
        }
    }

    /// Whether newcomers must answer a challenge.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Bits of zeros a new challenge asks for.
    pub fn difficulty(&self) -> u32 {
        self.difficulty.load(Ordering::Relaxed)
    }

    /// Switches challenges on or off and sets their difficulty.
    pub fn set(&self, enabled: Option<bool>, difficulty: Option<u32>) {
        if let Some(d) = difficulty {
            self.difficulty
                .store(d.clamp(1, MAX_DIFFICULTY), Ordering::Relaxed);
        }
        if let Some(on) = enabled {
            self.enabled.store(on, Ordering::Relaxed);
        }
    }

    /// A new challenge (a signed token) at the difficulty in force.
    pub fn challenge(&self, tokens: &Tokens) -> String {
        tokens.issue_challenge(rand::random::<u64>() >> 12, self.difficulty())
    }

    /// The claims of the challenge `answer` (`challenge.counter`) solves: one of
    /// ours, not expired, its work done.
    fn solved(tokens: &Tokens, answer: &str) -> Option<crate::token::Claims> {
        let (challenge, counter) = answer.rsplit_once('.')?;
        let counter = counter.parse::<u64>().ok()?;
        let claims = tokens.verify(challenge).ok()?;
        let asked = claims.p.unwrap_or(u64::MAX);
        if claims.k != Kind::Challenge || asked > u64::from(MAX_DIFFICULTY) {
            return None;
        }
        (u64::from(leading_zero_bits(&work(challenge, counter))) >= asked).then_some(claims)
    }

    /// Whether `answer` solves the challenge of kept place `seq` of line `line`
    /// (see [`Tokens::issue_kept_challenge`]). It may be shown again: it earns
    /// that one place, whatever is done with it.
    pub fn accept_kept(tokens: &Tokens, answer: &str, line: u64, seq: u64) -> bool {
        Self::solved(tokens, answer).is_some_and(|c| c.l == line && c.n == seq)
    }

    /// Whether `answer` (`challenge.counter`) solves one of our challenges, not
    /// expired and not used before; a good answer is used up.
    pub fn accept(&self, tokens: &Tokens, answer: &str, now_secs: u64) -> bool {
        let Some(claims) = Self::solved(tokens, answer) else {
            return false;
        };
        if claims.l != 0 {
            // A kept place's: good for that place only.
            return false;
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() > 100_000 {
            used.retain(|_, expires| *expires > now_secs);
        }
        used.insert(claims.n, claims.exp).is_none()
    }

    /// Forgets answers whose challenge has expired anyway.
    pub fn sweep(&self, now_secs: u64) {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, expires| *expires > now_secs);
    }
}

/// What a challenge page says, in the visitor's language.
pub struct Texts<'a> {
    /// The tab's title and the heading.
    pub title: &'a str,
    /// While the work is done.
    pub checking: &'a str,
    /// Without JavaScript.
    pub needs_js: &'a str,
}

/// The page a newcomer's browser gets while challenges are on (or for a kept
/// place): it finds the answer, sets it as the cookie `cookie_name_pow` and loads
/// the page again. `refresh_secs`: without JavaScript, the page comes back by
/// itself this often (a kept place may be earned without the work).
pub fn page(
    lang: &str,
    texts: &Texts<'_>,
    challenge: &str,
    difficulty: u32,
    cookie_name: &str,
    refresh_secs: Option<u32>,
) -> String {
    let Texts {
        title,
        checking,
        needs_js,
    } = texts;
    let refresh = refresh_secs.map_or_else(String::new, |s| {
        format!("<noscript><meta http-equiv=\"refresh\" content=\"{s}\"></noscript>\n")
    });
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    // The challenge is base64url with dots and the cookie name letters, digits,
    // '_' and '-': both safe inside a JavaScript string.
    format!(
        r#"<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
{refresh}<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}}</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p id="checking" role="status">{checking}</p>
<noscript><p id="needs-js">{needs_js}</p></noscript>
</main>
<script>
(function () {{
  var C = "{challenge}", D = {difficulty}, NAME = "{cookie_name}_pow";
  var K = [0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
    0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
    0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
    0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
    0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
    0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
    0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
    0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
  var W = new Array(64);
  // SHA-256 of an ASCII string; returns the first two words (enough to count zeros).
  function sha256(s) {{
    var n = s.length, blocks = ((n + 8) >> 6) + 1, m = new Array(blocks * 16).fill(0), i;
    for (i = 0; i < n; i++) m[i >> 2] |= s.charCodeAt(i) << (24 - (i & 3) * 8);
    m[n >> 2] |= 0x80 << (24 - (n & 3) * 8);
    m[blocks * 16 - 1] = n * 8;
    var h0=0x6a09e667,h1=0xbb67ae85,h2=0x3c6ef372,h3=0xa54ff53a,h4=0x510e527f,h5=0x9b05688c,h6=0x1f83d9ab,h7=0x5be0cd19;
    for (var b = 0; b < blocks; b++) {{
      for (i = 0; i < 16; i++) W[i] = m[b * 16 + i];
      for (i = 16; i < 64; i++) {{
        var x = W[i - 15], y = W[i - 2];
        var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
      }}
      var a=h0,bb=h1,c=h2,d=h3,e=h4,f=h5,g=h6,h=h7;
      for (i = 0; i < 64; i++) {{
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
      }}
      h0=(h0+a)|0;h1=(h1+bb)|0;h2=(h2+c)|0;h3=(h3+d)|0;h4=(h4+e)|0;h5=(h5+f)|0;h6=(h6+g)|0;h7=(h7+h)|0;
    }}
    return [h0 >>> 0, h1 >>> 0];
  }}
  function zeros(w) {{
    if (w[0] !== 0) return Math.clz32(w[0]);
    return 32 + Math.clz32(w[1]);
  }}
  var counter = 0;
  function step() {{
    var until = Date.now() + 40;
    while (Date.now() < until) {{
      for (var k = 0; k < 500; k++, counter++) {{
        if (zeros(sha256(C + ":" + counter)) >= D) {{
          document.cookie = NAME + "=" + C + "." + counter + "; path=/; max-age=300; SameSite=Lax";
          location.reload();
          return;
        }}
      }}
    }}
    setTimeout(step, 0);
  }}
  step();
}})();
</script>
</body>
</html>
"#,
        title = esc(title),
        checking = esc(checking),
        needs_js = esc(needs_js),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::token::{KeyPair, Keyring};

    #[test]
    fn zero_bits_are_counted_from_the_left() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x1f, 0xff]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn an_answer_counts_once_and_only_for_its_own_challenge() {
        let tokens = Tokens::new(
            Keyring::new(KeyPair::generate(), Vec::new()),
            Clock::system(),
            3600,
            3600,
        );
        let pow = ProofOfWork::new(true, 8);
        let challenge = pow.challenge(&tokens);
        let counter = (0u64..)
            .find(|c| leading_zero_bits(&work(&challenge, *c)) >= 8)
            .unwrap();
        let wrong = (0u64..)
            .find(|c| leading_zero_bits(&work(&challenge, *c)) == 0)
            .unwrap();
        let now = crate::clock::wall_ms() / 1000;
        assert!(!pow.accept(&tokens, &format!("{challenge}.{wrong}"), now));
        assert!(!pow.accept(&tokens, "garbage", now));
        assert!(!pow.accept(&tokens, &format!("{challenge}.x"), now));
        // A place token is not a challenge, whatever its hash.
        let place = tokens.issue(Kind::Queue, 1, 5);
        let any = (0u64..)
            .find(|c| leading_zero_bits(&work(&place, *c)) >= 8)
            .unwrap();
        assert!(!pow.accept(&tokens, &format!("{place}.{any}"), now));
        assert!(pow.accept(&tokens, &format!("{challenge}.{counter}"), now));
        assert!(
            !pow.accept(&tokens, &format!("{challenge}.{counter}"), now),
            "used once"
        );
    }
}
