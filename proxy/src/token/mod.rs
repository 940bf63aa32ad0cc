//! Signed tokens: a place in line (`q`) or an admission (`a`), as EdDSA JWTs.
//!
//! A visitor's place lives in their token, so a reload, a closed tab or a second
//! request keeps it. Expiry is checked against [`Clock`], not the system clock, so
//! tests with paused time control it too.

mod cache;
pub mod keys;

use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, Validation};

use crate::clock::Clock;
pub use keys::{KeyError, KeyPair, Keyring};

/// Longest token accepted; anything longer is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 2048;

/// What a token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A place in line.
    #[serde(rename = "q")]
    Queue,
    /// An admitted session.
    #[serde(rename = "a")]
    Admission,
    /// A newcomer who arrived while the store was away: numbered at their next
    /// request once it is back.
    #[serde(rename = "p")]
    Provisional,
    /// A proof-of-work challenge (see [`crate::pow`]): never a place.
    #[serde(rename = "c")]
    Challenge,
    /// A place kept in arrival order for a visitor over their address's
    /// allowance, not theirs until earned (see [`crate::public`]): never polled
    /// as it is.
    #[serde(rename = "w")]
    Kept,
}

/// The claims of a waitroom token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// Place in line or admission.
    pub k: Kind,
    /// The line the place belongs to (see [`crate::store::Store::line_id`]): a place
    /// number means nothing in another line, such as one started after a restart.
    pub l: u64,
    /// The place number (for an admission, the session number, which is the same).
    pub n: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// For a place in line: its position at arrival (for the progress shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<u64>,
}

/// Why a presented token was refused. The label names the metric series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, undecodable, too long, or with unexpected claims.
    #[error("malformed token")]
    Malformed,
    /// The algorithm is not EdDSA (`none`, HMAC, ...).
    #[error("wrong algorithm")]
    Algorithm,
    /// Signed with a key that is not ours.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not match the content.
    #[error("bad signature")]
    Signature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

impl TokenError {
    /// Every reason, in the order of their labels' metric series.
    pub const ALL: [Self; 5] = [
        Self::Malformed,
        Self::Algorithm,
        Self::UnknownKey,
        Self::Signature,
        Self::Expired,
    ];

    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
        }
    }
}

/// Issues and verifies tokens.
#[derive(Clone)]
pub struct Tokens {
    /// Replaced at run time when instances sharing a store converge on one ring.
    keys: Arc<RwLock<Keyring>>,
    /// Tokens whose signature verified (emptied when the keys change).
    verified: Arc<cache::Verified>,
    /// Counts key changes, so a verification under the old keys that ends after a
    /// change is not kept.
    generation: Arc<std::sync::atomic::AtomicU64>,
    clock: Clock,
    queue_ttl_secs: u64,
    admission_ttl_secs: u64,
}

impl Tokens {
    /// A token service signing with `keys`; tokens live for the given seconds.
    pub fn new(keys: Keyring, clock: Clock, queue_ttl_secs: u64, admission_ttl_secs: u64) -> Self {
        Self {
            keys: Arc::new(RwLock::new(keys)),
            verified: Arc::default(),
            generation: Arc::default(),
            clock,
            queue_ttl_secs,
            admission_ttl_secs,
        }
    }

    /// The same keys (replaced together) with other lifetimes: another room's.
    pub fn with_ttls(&self, queue_ttl_secs: u64, admission_ttl_secs: u64) -> Self {
        Self {
            keys: self.keys.clone(),
            verified: self.verified.clone(),
            generation: self.generation.clone(),
            clock: self.clock.clone(),
            queue_ttl_secs,
            admission_ttl_secs,
        }
    }

    /// The keyring now (for the JWKS).
    pub fn keys(&self) -> Keyring {
        self.ring().clone()
    }

    /// Signs and verifies with `keys` from now on.
    pub fn replace_keys(&self, keys: Keyring) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.verified.clear();
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a token of this kind lives, in seconds.
    pub fn ttl_secs(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Queue | Kind::Provisional | Kind::Kept => self.queue_ttl_secs,
            Kind::Challenge => crate::pow::CHALLENGE_TTL_SECS,
            Kind::Admission => self.admission_ttl_secs,
        }
    }

    /// Signs a token of `kind` for place or session `n` of line `line`.
    pub fn issue(&self, kind: Kind, line: u64, n: u64) -> String {
        self.sign(kind, line, n, None)
    }

    /// Signs a place in line, `seq`, that stood at `position` on arrival.
    pub fn issue_place(&self, line: u64, seq: u64, position: u64) -> String {
        self.sign(Kind::Queue, line, seq, Some(position))
    }

    fn sign(&self, kind: Kind, line: u64, n: u64, p: Option<u64>) -> String {
        let iat = self.clock.now_secs();
        let claims = Claims {
            k: kind,
            l: line,
            n,
            iat,
            exp: iat + self.ttl_secs(kind),
            p,
        };
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        let ring = self.ring();
        match kind {
            // Only waitroom reads a place: a MAC will do (see `KeyPair::mac_jwt`).
            Kind::Queue | Kind::Provisional | Kind::Kept => ring.signing().mac_jwt(&json),
            Kind::Admission | Kind::Challenge => ring.signing().sign_jwt(&json),
        }
    }

    /// Signs a proof-of-work challenge: `nonce`, to be solved at `difficulty` bits.
    pub fn issue_challenge(&self, nonce: u64, difficulty: u32) -> String {
        self.sign(Kind::Challenge, 0, nonce, Some(u64::from(difficulty)))
    }

    /// Signs a place kept for a visitor: `seq` of line `line`, that would stand at
    /// `position`.
    pub fn issue_kept(&self, line: u64, seq: u64, position: u64) -> String {
        self.sign(Kind::Kept, line, seq, Some(position))
    }

    /// Signs the challenge that earns kept place `seq` of line `line`, at
    /// `difficulty` bits.
    pub fn issue_kept_challenge(&self, line: u64, seq: u64, difficulty: u32) -> String {
        self.sign(Kind::Challenge, line, seq, Some(u64::from(difficulty)))
    }

    /// Verifies a presented token: our key, EdDSA, intact, not expired. A token
    /// verified before is not checked again (see [`cache`]); its expiry is.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                use std::sync::atomic::Ordering::SeqCst;
                let generation = self.generation.load(SeqCst);
                let claims = self.verify_signature(token)?;
                self.verified.insert(token, claims.clone());
                if self.generation.load(SeqCst) != generation {
                    // The keys changed meanwhile: verified under the old ones.
                    self.verified.clear();
                }
                claims
            }
        };
        if claims.exp <= self.clock.now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Checks the token's header and signature with the keys in force: EdDSA, or
    /// for a place in line HS256 with the key pair's place key (an admission or a
    /// challenge made with a MAC is refused: only the former are ever issued).
    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA && header.alg != Algorithm::HS256 {
            return Err(TokenError::Algorithm);
        }
        let ring = self.ring();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| ring.find(kid))
            .ok_or(TokenError::UnknownKey)?;
        if header.alg == Algorithm::HS256 {
            return verify_mac(key, token);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, key.decoding(), &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::Signature,
                _ => TokenError::Malformed,
            },
        )?;
        Ok(data.claims)
    }
}

/// Checks a place token made with `key`'s place key (see [`KeyPair::mac_jwt`]).
fn verify_mac(key: &KeyPair, token: &str) -> Result<Claims, TokenError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (_, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    if !key.mac_matches(signed.as_bytes(), &tag) {
        return Err(TokenError::Signature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    match claims.k {
        Kind::Queue | Kind::Provisional | Kind::Kept => Ok(claims),
        Kind::Admission | Kind::Challenge => Err(TokenError::Algorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn tokens() -> Tokens {
        Tokens::new(
            Keyring::new(KeyPair::generate(), Vec::new()),
            Clock::starting_at(1_700_000_000_000),
            3600,
            600,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn round_trip_and_expiry() {
        let t = tokens();
        let token = t.issue(Kind::Queue, 1, 42);
        let claims = t.verify(&token).unwrap();
        assert_eq!((claims.k, claims.n, claims.p), (Kind::Queue, 42, None));
        let place = t.verify(&t.issue_place(1, 43, 17)).unwrap();
        assert_eq!((place.k, place.n, place.p), (Kind::Queue, 43, Some(17)));
        tokio::time::advance(std::time::Duration::from_secs(3601)).await;
        assert_eq!(t.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_verified_before_is_refused_once_its_key_is_gone() {
        let t = tokens();
        let token = t.issue(Kind::Admission, 1, 7);
        assert!(t.verify(&token).is_ok());
        assert!(t.verify(&token).is_ok(), "from the cache");
        t.replace_keys(Keyring::new(KeyPair::generate(), Vec::new()));
        assert_eq!(t.verify(&token), Err(TokenError::UnknownKey));
        let other_room = t.with_ttls(60, 60);
        assert!(other_room
            .verify(&other_room.issue(Kind::Queue, 2, 1))
            .is_ok());
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let t = tokens();
        let token = t.issue(Kind::Admission, 1, 7);
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'_', b'.', b'x'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut altered = bytes.to_vec();
                altered[i] = replacement;
                let altered = String::from_utf8(altered).unwrap();
                assert!(t.verify(&altered).is_err(), "byte {i} -> {replacement}");
            }
        }
    }

    #[test]
    fn none_algorithm_foreign_key_and_garbage_are_refused() {
        let t = tokens();
        let token = t.issue(Kind::Admission, 1, 7);
        let payload = token.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(t.verify(&none).is_err());
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &t.verify(&token).unwrap(),
            &jsonwebtoken::EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        assert_eq!(t.verify(&hs), Err(TokenError::UnknownKey), "no kid");
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(t.keys().signing().kid().to_owned());
        let guessed = jsonwebtoken::encode(
            &header,
            &t.verify(&token).unwrap(),
            &jsonwebtoken::EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        assert_eq!(t.verify(&guessed), Err(TokenError::Signature));
        let other = tokens().issue(Kind::Admission, 1, 7);
        assert_eq!(t.verify(&other), Err(TokenError::UnknownKey));
        for garbage in ["", ".", "..", "a.b.c", &"x".repeat(5000), "\u{0}\u{1}"] {
            assert!(t.verify(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn places_carry_a_mac_and_an_admission_never_does() {
        let t = tokens();
        let place = t.issue_place(1, 43, 17);
        let header = jsonwebtoken::decode_header(&place).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(t.verify(&place).unwrap().n, 43);
        let admission = t.issue(Kind::Admission, 1, 7);
        assert_eq!(
            jsonwebtoken::decode_header(&admission).unwrap().alg,
            Algorithm::EdDSA
        );
        // An admission made with the place key is refused, MAC and all.
        let keys = t.keys();
        let forged_claims = serde_json::to_vec(&t.verify(&admission).unwrap()).unwrap();
        let forged = keys.signing().mac_jwt(&forged_claims);
        assert_eq!(t.verify(&forged), Err(TokenError::Algorithm));
        // A place signed the way it used to be (EdDSA) is still good.
        let claims = serde_json::to_vec(&t.verify(&place).unwrap()).unwrap();
        let older = keys.signing().sign_jwt(&claims);
        assert_eq!(t.verify(&older).unwrap().n, 43);
        // Every altered byte of a place is refused too.
        let bytes = place.as_bytes();
        for i in 0..bytes.len() {
            let mut altered = bytes.to_vec();
            altered[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(t.verify(&altered).is_err(), "byte {i}");
        }
        // Another key pair's place key does not make our places.
        let foreign = tokens();
        let theirs = foreign.issue_place(1, 1, 1);
        let mut header = jsonwebtoken::decode_header(&theirs).unwrap();
        header.kid = Some(keys.signing().kid().to_owned());
        let (_, rest) = theirs.split_once('.').unwrap();
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        assert_eq!(
            t.verify(&format!("{header_b64}.{rest}")),
            Err(TokenError::Signature)
        );
    }
}
