//! The path as the origin will understand it, decided once per request.
//!
//! Every decision about a request (the `/_waitroom/` namespace, `routes.bypass`,
//! which room, `origin.idempotent_paths`) is taken on the path [`normalize`]
//! returns, and that same path is what is forwarded: waitroom and the origin can
//! never read one request two ways. The rules (RFC 3986 §6.2.2, plus what common
//! origins do beyond it):
//!
//! - percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is
//!   `A`); every other escape is kept, its hex digits in capitals;
//! - runs of `/` become one (nginx's `merge_slashes`, on by default);
//! - `.` and `..` segments are removed (RFC 3986 §5.2.4).
//!
//! A path that cannot be made unambiguous is refused ([`PathError`], answered
//! 400): an encoded `/` or `\` (nginx, and frameworks, decode them into
//! separators), a raw `\` (a separator on Windows servers), an encoded NUL, a bad
//! escape, a `..` that would climb above the root, and a `.` or `..` segment with
//! parameters (`..;x`, which Tomcat and others read as `..`).

use std::fmt;

/// Why a path cannot be made unambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// It does not start with `/` (`*`, or nothing).
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`: a `/` inside a segment, which some origins decode into a separator.
    EncodedSlash,
    /// `\` or `%5C`: a separator to some origins, not to others.
    Backslash,
    /// `%00`.
    Nul,
    /// A `..` with nothing left to remove.
    AboveRoot,
    /// A `.` or `..` segment with parameters (`..;x`).
    DotWithParameters,
}

impl PathError {
    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotAbsolute => "not_absolute",
            Self::BadEscape => "bad_escape",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::Nul => "nul",
            Self::AboveRoot => "above_root",
            Self::DotWithParameters => "dot_with_parameters",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "the path does not start with '/'",
            Self::BadEscape => "a '%' is not followed by two hex digits",
            Self::EncodedSlash => "an encoded '/' (%2F) in the path",
            Self::Backslash => "a '\\' (or %5C) in the path",
            Self::Nul => "an encoded NUL (%00) in the path",
            Self::AboveRoot => "a '..' climbs above the root",
            Self::DotWithParameters => "a '.' or '..' segment with parameters (';')",
        })
    }
}

impl std::error::Error for PathError {}

/// `path` as the origin will understand it: `Ok(None)` when it already is (nearly
/// every request: checked in one pass, nothing allocated), `Ok(Some(normal))`
/// when it was rewritten, or why it cannot be.
pub fn normalize(path: &str) -> Result<Option<String>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(bytes) {
        return Ok(None);
    }
    let decoded = decode(path)?;
    let normal = remove_dots(&decoded)?;
    Ok((normal != path).then_some(normal))
}

/// Whether `bytes` (starting with `/`) has nothing to rewrite or refuse: no
/// escape, no `\`, no empty segment and no segment starting with a dot.
fn is_plain(bytes: &[u8]) -> bool {
    let mut after_slash = false;
    for &b in bytes {
        match b {
            b'%' | b'\\' => return false,
            b'/' | b'.' if after_slash => return false,
            _ => {}
        }
        after_slash = b == b'/';
    }
    true
}

/// Whether `b` is unreserved (RFC 3986 §2.3): never needs escaping.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of hex digit `b`.
fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `path` with unreserved characters decoded and other escapes in capitals.
fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (h, l),
                    _ => return Err(PathError::BadEscape),
                };
                let value = match (hex(hi), hex(lo)) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err(PathError::BadEscape),
                };
                match value {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    0 => return Err(PathError::Nul),
                    v if unreserved(v) => out.push(v),
                    _ => out.extend_from_slice(&[
                        b'%',
                        hi.to_ascii_uppercase(),
                        lo.to_ascii_uppercase(),
                    ]),
                }
                i += 3;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    // Only ASCII was put in or taken out: still UTF-8.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// Whether `segment` is `.` or `..` with parameters after it (`..;x`, `.%3Bx`).
fn dot_with_parameters(segment: &str) -> bool {
    let name = segment.split_once(';').map_or(segment, |(name, _)| name);
    let name = match name.find("%3B") {
        Some(at) => &name[..at],
        None => name,
    };
    name != segment && (name == "." || name == "..")
}

/// `path` (decoded, starting with `/`) with runs of `/` made one and dot
/// segments removed.
fn remove_dots(path: &str) -> Result<String, PathError> {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    // Whether the path ends with `/` (a directory): after `.` or `..` too.
    let mut trailing = false;
    for (i, segment) in segments.into_iter().enumerate() {
        let at_end = i == last;
        match segment {
            "" => trailing = at_end,
            "." => trailing = at_end,
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = at_end;
            }
            s if dot_with_parameters(s) => return Err(PathError::DotWithParameters),
            s => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `host` (a `Host` header's or an authority's host, without the port) as rooms
/// are matched on: in lower case, without a trailing dot.
pub fn normal_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str) -> Result<String, PathError> {
        normalize(path).map(|p| p.unwrap_or_else(|| path.to_owned()))
    }

    #[test]
    fn plain_paths_are_left_as_they_are_without_a_copy() {
        for p in [
            "/",
            "/register",
            "/static/app.css",
            "/a/b/",
            "/file.tar.gz",
            "/x-y_z~",
            "/a;b=c",
        ] {
            assert_eq!(normalize(p), Ok(None), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_escapes_come_out_as_the_origin_reads_them() {
        let cases = [
            ("/static/../register", "/register"),
            ("/favicon.ico/../register", "/register"),
            ("/static/%2e%2e/register", "/register"),
            ("/static/%2E%2E/register", "/register"),
            ("/static/.%2e/register", "/register"),
            ("/static/%2e./register", "/register"),
            ("/static//../register", "/register"),
            ("/static/./../register", "/register"),
            ("/./static/../register", "/register"),
            ("/%73tatic/../register", "/register"),
            ("/static/sub/../app.css", "/static/app.css"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a//b//", "/a/b/"),
            ("//", "/"),
            ("/.", "/"),
            ("/.well-known/x", "/.well-known/x"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%7euser", "/~user"),
            ("/a%3bb", "/a%3Bb"),
            ("/%252e%252e/x", "/%252e%252e/x"),
            ("/static;x=1/../register", "/register"),
        ];
        for (path, normal) in cases {
            assert_eq!(n(path), Ok(normal.to_owned()), "{path}");
            assert_eq!(normalize(normal), Ok(None), "{normal} is normal");
        }
    }

    #[test]
    fn what_cannot_be_read_one_way_only_is_refused() {
        let cases = [
            ("/static/..%2fregister", PathError::EncodedSlash),
            ("/static%2F..%2Fregister", PathError::EncodedSlash),
            ("/static/..%5cregister", PathError::Backslash),
            ("/static\\..\\register", PathError::Backslash),
            ("/static/..%00/register", PathError::Nul),
            ("/static/%zz", PathError::BadEscape),
            ("/static/%4", PathError::BadEscape),
            ("/static/%", PathError::BadEscape),
            ("/../register", PathError::AboveRoot),
            ("/static/../../register", PathError::AboveRoot),
            ("/static/..;/register", PathError::DotWithParameters),
            ("/static/.;x/register", PathError::DotWithParameters),
            ("/static/%2e%2e%3b/register", PathError::DotWithParameters),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (path, why) in cases {
            assert_eq!(normalize(path), Err(why), "{path}");
        }
    }

    #[test]
    fn hosts_match_in_any_case_and_with_a_trailing_dot() {
        assert_eq!(normal_host("Shop.Example."), "shop.example");
        assert_eq!(normal_host("shop.example"), "shop.example");
        assert_eq!(normal_host("[::1]"), "[::1]");
    }
}
