//! The status JSON written straight into bytes, as serde would write it: the
//! answer to nearly every poll, so no serializer and no JSON tree in between.

use super::{Reason, State, Status};

impl Status {
    /// This status as JSON: the very bytes `serde_json::to_vec` gives (the
    /// fields in the same order, the absent ones left out).
    pub fn json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"{\"state\":\"");
        out.extend_from_slice(match self.state {
            State::Queued => b"queued",
            State::Admitted => b"admitted",
            State::Paused => b"paused",
            State::Closed => b"closed",
        });
        out.push(b'"');
        number(&mut out, "position", self.position);
        number(&mut out, "ahead", self.ahead);
        number(&mut out, "eta_seconds", self.eta_seconds);
        number(&mut out, "poll_after_ms", self.poll_after_ms);
        if let Some(at) = self.opens_at {
            // RFC 3339 is digits, `-`, `:`, `T` and `Z`: nothing to escape.
            out.extend_from_slice(b",\"opens_at\":\"");
            out.extend_from_slice(crate::clock::format_rfc3339(at).as_bytes());
            out.push(b'"');
        }
        if let Some(n) = self.opens_in_seconds {
            number(&mut out, "opens_in_seconds", n);
        }
        if let Some(at) = self.paused_at {
            out.extend_from_slice(b",\"paused_at\":\"");
            out.extend_from_slice(crate::clock::format_rfc3339(at).as_bytes());
            out.push(b'"');
        }
        if let Some(n) = self.progress_percent {
            number(&mut out, "progress_percent", n.into());
        }
        // Every reason named here: one added later cannot be left out silently.
        match self.reason {
            Some(Reason::Origin) => out.extend_from_slice(b",\"reason\":\"origin\""),
            None => {}
        }
        for (name, flag) in [
            ("announce", self.announce),
            ("lottery", self.lottery),
            ("drawn", self.drawn),
        ] {
            if let Some(flag) = flag {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(if flag { b"\":true" } else { b"\":false" });
            }
        }
        out.push(b'}');
        out
    }
}

/// `,"name":n`.
fn number(out: &mut Vec<u8>, name: &str, n: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::line::{Gate, Wait};

    /// What a page that showed `eta_seconds` a moment ago says it showed.
    fn shown(eta_seconds: u64) -> super::super::steady::Before {
        super::super::steady::Before {
            eta_seconds,
            shown_ms_ago: 1_000,
            position: 2,
            said_ms_ago: 1_000,
        }
    }

    #[test]
    fn gives_the_bytes_serde_gives() {
        let gates = [
            Gate::Open,
            Gate::Paused { since: None },
            Gate::Paused {
                since: Some(1_795_999_000_000),
            },
            Gate::Held { until: 1 },
            Gate::Closed,
            Gate::Scheduled {
                opens_at: 1_795_999_922_123,
            },
        ];
        let mut seen = 0;
        let mut announced = [false; 2];
        for gate in gates {
            for position in [0, 1, 2, 999, u64::MAX] {
                for eta_ms in [0, 1, 59_999, u64::MAX] {
                    for first in [None, Some(0), Some(1), Some(5_000)] {
                        let long_ago = super::super::steady::Before {
                            said_ms_ago: 61_000,
                            ..shown(600)
                        };
                        for before in [None, Some(shown(60)), Some(shown(1)), Some(long_ago)] {
                            let wait = Wait {
                                position,
                                eta_ms,
                                poll_after_ms: 20_120,
                                gate,
                            };
                            let status = Status::waiting(&wait, 1_795_999_000_000)
                                .progress_from(first)
                                .steadied(before)
                                .lottery(position % 2 == 0, position % 3 == 0);
                            let json = String::from_utf8(status.json_bytes()).unwrap();
                            assert_eq!(json, serde_json::to_string(&status).unwrap());
                            announced[0] |= json.contains("\"announce\":false");
                            announced[1] |= json.contains("\"announce\":true");
                            seen += 1;
                        }
                    }
                }
            }
        }
        for status in [Status::admitted(), Status::held(1_500)] {
            assert_eq!(status.json_bytes(), serde_json::to_vec(&status).unwrap());
            seen += 1;
        }
        assert_eq!(seen, 6 * 5 * 4 * 4 * 4 + 2);
        assert_eq!(
            announced,
            [true, true],
            "both kinds of announce were written"
        );
    }
}
