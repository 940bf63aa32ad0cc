//! The ops console: one self-contained page at `/` of the admin listener (its
//! script and style beside it, nothing from elsewhere). The page itself holds no
//! data; everything it shows comes from the admin API with the operator's token.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY};
use http::{Response, StatusCode};

use crate::http::{self as h, Body};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Only this listener's own script, style and API; never framed by another site.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's page (`/`), script (`/console.js`) or style (`/console.css`).
pub fn asset(path: &str) -> Response<Body> {
    let (content_type, body) = match path {
        "/console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/console.css" => ("text/css; charset=utf-8", STYLE),
        _ => ("text/html; charset=utf-8", PAGE),
    };
    let mut r = h::respond(StatusCode::OK, content_type, body);
    let headers = r.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}
