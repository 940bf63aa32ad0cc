//! Optional: refuse requests that did not come through the waiting room, by
//! verifying the admission token in the cookie with waitroom's published keys.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// Verifies waitroom admission tokens against a JWKS URL.
pub struct Verifier {
    url: hyper::Uri,
    cookie: String,
    keys: RwLock<Keys>,
}

/// The keys by `kid`, and when they were fetched.
type Keys = (Vec<(String, DecodingKey)>, Option<Instant>);

#[derive(serde::Deserialize)]
struct Claims {
    k: String,
}

impl Verifier {
    /// A verifier reading keys from `url` and the token from cookie `cookie`.
    pub fn new(url: hyper::Uri, cookie: String) -> Self {
        Self {
            url,
            cookie,
            keys: RwLock::new((Vec::new(), None)),
        }
    }

    async fn refresh(&self) -> Result<(), String> {
        {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            if keys.1.is_some_and(|t| t.elapsed() < REFRESH_AT_MOST_EVERY) {
                return Ok(());
            }
        }
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let resp = tokio::time::timeout(Duration::from_secs(5), client.get(self.url.clone()))
            .await
            .map_err(|_| "JWKS fetch timed out".to_owned())?
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("JWKS is not valid: {e}"))?;
        let fresh = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (fresh, Some(Instant::now()));
        Ok(())
    }

    fn check(&self, token: &str, kid: &str) -> Option<bool> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let (_, key) = keys.0.iter().find(|(k, _)| k == kid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp"]);
        Some(
            jsonwebtoken::decode::<Claims>(token, key, &validation)
                .is_ok_and(|d| d.claims.k == "a"),
        )
    }

    /// Whether the request carries a valid admission token.
    pub async fn admitted(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = cookie(headers, &self.cookie) else {
            return false;
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return false;
        };
        if header.alg != Algorithm::EdDSA {
            return false;
        }
        let Some(kid) = header.kid else { return false };
        if let Some(ok) = self.check(token, &kid) {
            return ok;
        }
        // A key we have not seen (rotation, or a restart): fetch the keys again.
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "could not refresh the JWKS");
        }
        self.check(token, &kid).unwrap_or(false)
    }
}

fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
