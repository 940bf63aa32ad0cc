//! HTTP plumbing: the body type, small responses, cookies, and the one place where
//! internal errors become answers.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Errors a body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends: ours, or the origin's streamed.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What a request's body may be: hyper's (from a connection it serves) or an
/// empty one (a request head read by [`crate::h1`]).
pub trait ReqBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

impl<T> ReqBody for T where
    T: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response of our own, never cached.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

/// A JSON error answer: `{"error": reason}`.
pub fn error(status: StatusCode, reason: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": reason }))
}

/// The `name=value` pairs of the request's `Cookie` headers, read as bytes: a
/// browser sends every cookie of the site in one header, and another cookie's
/// content (UTF-8, quotes, `=`) must never hide ours.
fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| split_at_semicolons(v.as_bytes()))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match memchr::memchr(b'=', pair) {
            Some(i) => (pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()),
            None => (pair, &b""[..]),
        })
}

/// The pieces of `bytes` between `;` (found with `memchr`, not byte by byte: a
/// token is a few hundred bytes, and every request has one).
fn split_at_semicolons(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        Some(match memchr::memchr(b';', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                &r[..i]
            }
            None => {
                rest = None;
                r
            }
        })
    })
}

/// Every value of cookie `name` in the request's `Cookie` headers, in order,
/// unquoted; values that are not ASCII text (never one of our tokens) are left out.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    cookie_pairs(headers)
        .filter(|(k, _)| *k == name.as_bytes())
        .filter(|(_, v)| v.is_ascii())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
        .collect()
}

/// Sets cookie `name` to `value` in the request's `Cookie` header, replacing every
/// earlier value, so that the origin sees the token the visitor is about to get.
/// The other cookies pass on byte for byte.
pub fn replace_cookie(headers: &mut HeaderMap, name: &str, value: &str) {
    let mut joined: Vec<u8> = Vec::new();
    for (k, v) in cookie_pairs(headers).filter(|(k, _)| *k != name.as_bytes()) {
        joined.extend_from_slice(k);
        if !v.is_empty() || !k.is_empty() {
            joined.push(b'=');
            joined.extend_from_slice(v);
        }
        joined.extend_from_slice(b"; ");
    }
    joined.extend_from_slice(name.as_bytes());
    joined.push(b'=');
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.remove(COOKIE);
        headers.insert(COOKIE, v);
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}");
    // Names are validated by config and tokens are base64url with dots.
    HeaderValue::from_str(&text).expect("cookie value is a valid header")
}

/// The value of `key` in `uri`'s query, as written (the first, if several).
pub fn query_param<'a>(uri: &'a http::Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The names and options a message's `Connection` headers list (RFC 9110
/// §7.6.1), each trimmed, read as bytes.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Whether the client asked for JSON rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

/// Failures that end a request, mapped to answers in [`ProxyError::into_response`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The origin refused the connection or broke it.
    #[error("origin unreachable: {0}")]
    OriginUnreachable(String),
    /// The origin did not start answering in time.
    #[error("origin timed out")]
    OriginTimeout,
    /// The origin kept failing for as long as a request may wait for it.
    #[error("origin failing; the request waited and gave up")]
    OriginHeld,
    /// The client's request body broke off or was malformed.
    #[error("broken request body: {0}")]
    BrokenRequest(String),
    /// The client sent nothing of its request's body for `limits.body_timeout`.
    #[error("the request's body did not come in time")]
    SlowBody,
    /// The origin's answer broke the protocol in the way named (see
    /// [`crate::metrics::MISBEHAVIOUR`]).
    #[error("the origin's answer broke the protocol: {0}")]
    OriginProtocol(&'static str),
}

impl ProxyError {
    /// The status this failure answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::OriginUnreachable(_) | Self::OriginProtocol(_) => StatusCode::BAD_GATEWAY,
            Self::OriginTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::OriginHeld => StatusCode::SERVICE_UNAVAILABLE,
            Self::BrokenRequest(_) => StatusCode::BAD_REQUEST,
            Self::SlowBody => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A short code for JSON clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::OriginUnreachable(_) => "origin_unreachable",
            Self::OriginTimeout => "origin_timeout",
            Self::OriginHeld => "origin_failing",
            Self::BrokenRequest(_) => "broken_request",
            Self::OriginProtocol(_) => "origin_protocol",
            Self::SlowBody => "slow_body",
        }
    }

    /// Whether the site failed (rather than the client's request).
    pub fn is_origin(&self) -> bool {
        !matches!(self, Self::BrokenRequest(_) | Self::SlowBody)
    }
}

/// Whether `path` is under `prefix`, matching whole segments: `/tickets` takes
/// `/tickets` and `/tickets/…`, not `/ticketsale` (a prefix ending in `/` takes
/// what follows it).
pub fn path_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookies_among_many() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; waitroom=tok.en.x"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        h.append(
            COOKIE,
            HeaderValue::from_bytes("pref=caf\u{e9}; waitroom=\"second\"".as_bytes()).unwrap(),
        );
        assert_eq!(cookies(&h, "waitroom"), ["tok.en.x", "second"]);
        assert_eq!(cookies(&h, "b"), ["2"]);
        assert!(cookies(&h, "wait").is_empty());
        assert!(cookies(&h, "pref").is_empty(), "not ASCII: never a token");
        let mut odd = HeaderMap::new();
        odd.append(
            COOKIE,
            HeaderValue::from_static("; ;waitroom=a;;x=1;waitroom = b=c ;=v;waitroom;"),
        );
        assert_eq!(cookies(&odd, "waitroom"), ["a", "b=c", ""]);
        assert_eq!(cookies(&odd, ""), ["v"]);
        replace_cookie(&mut h, "waitroom", "new");
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(
            h[COOKIE].as_bytes(),
            "a=1; b=2; pref=caf\u{e9}; waitroom=new".as_bytes()
        );
    }

    #[test]
    fn json_only_when_asked_without_html() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        assert!(wants_json(&h));
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/html,application/json;q=0.9"),
        );
        assert!(!wants_json(&h));
    }
}
