//! Signing keys: Ed25519 key pairs with a `kid`, kept in the state directory, and
//! the JWKS that publishes their public halves.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

/// Why keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file exists but does not hold keys.
    #[error("key file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What the place key is derived for (see [`KeyPair::derive`]).
const PLACE_KEY_LABEL: &[u8] = b"place tokens (HS256)";

/// 32 bytes derived from `seed` for `label`'s own use.
fn derive(seed: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"waitroom derive\0");
    h.update(label);
    h.update([0]);
    h.update(seed);
    h.finalize().into()
}

/// One Ed25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    kid: String,
    seed: [u8; 32],
    /// Parsed once: signing a token is then the signature's work alone.
    signing: SigningKey,
    /// The token header for this key, base64url: `{"typ":"JWT","alg":"EdDSA","kid":…}`.
    header_b64: String,
    /// The key that signs places in line (HMAC-SHA256, derived from the seed: only
    /// waitroom instances holding this key pair can make or check it).
    place_key: [u8; 32],
    /// The header of a place token: `{"typ":"JWT","alg":"HS256","kid":…}`, base64url.
    place_header_b64: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_b64: String,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// The key pair derived from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes();
        let der = signing
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        let public_b64 = URL_SAFE_NO_PAD.encode(public);
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
        let header = serde_json::json!({ "typ": "JWT", "alg": "EdDSA", "kid": kid });
        let place_header = serde_json::json!({ "typ": "JWT", "alg": "HS256", "kid": kid });
        Self {
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            place_key: derive(&seed, PLACE_KEY_LABEL),
            place_header_b64: URL_SAFE_NO_PAD.encode(place_header.to_string()),
            kid,
            seed,
            signing,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&public_b64)
                .expect("a base64url public key always decodes"),
            public_b64,
        }
    }

    /// 32 bytes derived from the secret key for `label`'s own use (they reveal
    /// nothing of the key, nor of what is derived for another label).
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        derive(&self.seed, label)
    }

    /// A JWT of `claims` (a place's) made with this key pair's place key: the kept
    /// header, the claims and their HMAC-SHA256, each base64url. A place is only
    /// ever checked by waitroom itself, and a MAC costs a microsecond where an
    /// Ed25519 signature costs fifteen (docs/benchmarks.md).
    pub(crate) fn mac_jwt(&self, claims: &[u8]) -> String {
        let mut jwt =
            String::with_capacity(self.place_header_b64.len() + claims.len() * 4 / 3 + 48);
        jwt.push_str(&self.place_header_b64);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
        let tag = hmac::Mac::finalize(self.place_mac(jwt.as_bytes())).into_bytes();
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut jwt);
        jwt
    }

    /// Whether `tag` is the place key's HMAC of `signed` (compared in constant time).
    pub(crate) fn mac_matches(&self, signed: &[u8], tag: &[u8]) -> bool {
        hmac::Mac::verify_slice(self.place_mac(signed), tag).is_ok()
    }

    fn place_mac(&self, data: &[u8]) -> hmac::Hmac<Sha256> {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&self.place_key)
            .expect("HMAC takes a key of any length");
        mac.update(data);
        mac
    }

    /// A JWT of `claims` (their JSON) signed with this key: the kept header, the
    /// claims and the Ed25519 signature of both, each base64url.
    pub(crate) fn sign_jwt(&self, claims: &[u8]) -> String {
        use ed25519_dalek::Signer;
        let mut jwt = String::with_capacity(self.header_b64.len() + claims.len() * 4 / 3 + 90);
        jwt.push_str(&self.header_b64);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
        let signature = self.signing.sign(jwt.as_bytes());
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut jwt);
        jwt
    }

    /// The key id carried in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key, for signing tokens outside [`super::Tokens`] (tools, tests).
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": self.public_b64,
        })
    }
}

/// The keys of a waiting room: the first signs, all verify.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<KeyPair>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    kid: String,
    seed: String,
}

impl Keyring {
    /// A keyring of the given keys; the first signs.
    pub fn new(first: KeyPair, more: Vec<KeyPair>) -> Self {
        let mut keys = vec![first];
        keys.extend(more);
        Self { keys }
    }

    /// Loads `keys.json` from `dir`, or creates it with a new key (mode 0600).
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join("keys.json");
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes).map_err(|reason| KeyError::Invalid {
                path: shown.clone(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let ring = Self::new(KeyPair::generate(), Vec::new());
                let tmp = dir.join("keys.json.tmp");
                write_private(&tmp, &ring.serialize()).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok(ring)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads keys written by [`Keyring::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        Self::parse(bytes)
    }

    /// The keys, private halves included, as stored in `keys.json` or a shared store.
    pub fn to_json(&self) -> Vec<u8> {
        self.serialize()
    }

    fn parse(bytes: &[u8]) -> Result<Self, String> {
        let stored: Vec<StoredKey> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut keys = stored.iter().map(|k| {
            let seed: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&k.seed)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| format!("key {}: seed is not 32 base64url bytes", k.kid))?;
            Ok(KeyPair::from_seed(seed))
        });
        let first = keys.next().ok_or("no keys")??;
        Ok(Self::new(first, keys.collect::<Result<_, String>>()?))
    }

    fn serialize(&self) -> Vec<u8> {
        let stored: Vec<StoredKey> = self
            .keys
            .iter()
            .map(|k| StoredKey {
                kid: k.kid.clone(),
                seed: URL_SAFE_NO_PAD.encode(k.seed),
            })
            .collect();
        serde_json::to_vec_pretty(&stored).expect("keys serialize")
    }

    /// The key that signs new tokens.
    pub fn signing(&self) -> &KeyPair {
        &self.keys[0]
    }

    /// The key with this `kid`, if it is ours.
    pub fn find(&self, kid: &str) -> Option<&KeyPair> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Every key of this ring, then those of `other` it lacks: this ring's key
    /// still signs, and tokens signed by either ring verify.
    pub fn merged(&self, other: &Keyring) -> Keyring {
        let mut keys = self.keys.clone();
        for k in &other.keys {
            if self.find(&k.kid).is_none() {
                keys.push(k.clone());
            }
        }
        Self { keys }
    }

    /// The key ids, the signing key's first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(KeyPair::kid).collect()
    }

    /// The JWKS document served at `/_waitroom/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(KeyPair::jwk).collect::<Vec<_>>() })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("waitroom-keys-{}", rand::random::<u64>()));
        let first = Keyring::load_or_create(&dir).unwrap();
        let again = Keyring::load_or_create(&dir).unwrap();
        assert_eq!(first.signing().kid(), again.signing().kid());
        assert_eq!(first.jwks(), again.jwks());
        std::fs::write(dir.join("keys.json"), b"[]").unwrap();
        let err = Keyring::load_or_create(&dir).err().unwrap().to_string();
        assert!(err.contains("no keys"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn merging_keeps_the_signer_and_adds_what_is_missing() {
        let a = Keyring::new(KeyPair::generate(), Vec::new());
        let b = Keyring::new(KeyPair::generate(), vec![a.signing().clone()]);
        let m = b.merged(&a);
        assert_eq!(m.kids(), b.kids(), "nothing new: unchanged");
        let c = Keyring::new(KeyPair::generate(), Vec::new());
        let m = c.merged(&b);
        assert_eq!(m.signing().kid(), c.signing().kid());
        assert_eq!(m.kids().len(), 3);
        assert!(m.find(a.signing().kid()).is_some() && m.find(b.signing().kid()).is_some());
    }
}
