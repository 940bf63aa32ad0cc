//! Commands from the origin: a response header `waitroom-command` by which the site
//! ends a visitor's session, removed before the response leaves.
//!
//! - `release`: the visitor's business is done (the registration is confirmed);
//!   their slot goes to the next in line at once instead of when the session lapses.
//! - `revoke`: the session must not go on; its slot is freed likewise and the
//!   visitor's admission cookie is deleted with this very response.
//!
//! Several values (comma-separated or repeated headers) may be sent; `revoke`
//! wins over `release`. Other values are ignored (logged at debug).

use http::{HeaderMap, HeaderName};

/// The response header the origin sends a command in.
pub static HEADER: HeaderName = HeaderName::from_static("waitroom-command");

/// What the origin asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Command {
    /// The session's business is done.
    Release,
    /// The session must not go on.
    Revoke,
}

impl Command {
    /// The command's name, as in the header and the metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Revoke => "revoke",
        }
    }
}

/// Removes every `waitroom-command` header from `headers`, returning the strongest
/// command among them.
pub fn take(headers: &mut HeaderMap) -> Option<Command> {
    let mut strongest = None;
    for value in headers.get_all(&HEADER) {
        for word in value.as_bytes().split(|b| *b == b',') {
            let word = word.trim_ascii();
            let command = if word.eq_ignore_ascii_case(b"release") {
                Command::Release
            } else if word.eq_ignore_ascii_case(b"revoke") {
                Command::Revoke
            } else {
                tracing::debug!(value = ?String::from_utf8_lossy(word), "unknown waitroom-command ignored");
                continue;
            };
            strongest = strongest.max(Some(command));
        }
    }
    headers.remove(&HEADER);
    strongest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&HEADER, v.parse().unwrap());
        }
        h.insert("content-type", "text/html".parse().unwrap());
        h
    }

    #[test]
    fn commands_are_read_and_always_removed() {
        for (values, expected) in [
            (&["release"][..], Some(Command::Release)),
            (&["Revoke"], Some(Command::Revoke)),
            (&["release, revoke"], Some(Command::Revoke)),
            (&["revoke", "release"], Some(Command::Revoke)),
            (&["dance"], None),
            (&[], None),
        ] {
            let mut h = headers(values);
            assert_eq!(take(&mut h), expected, "{values:?}");
            assert!(h.get(&HEADER).is_none(), "{values:?}");
            assert!(h.get("content-type").is_some());
        }
    }
}
