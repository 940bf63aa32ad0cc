//! Registrations and the outbox of confirmation e-mails.
//!
//! Submitting is idempotent by registration number: a second submit (after a
//! timeout, a crash page, a double click) returns the same confirmation and sends
//! no second e-mail. Check-and-insert happens under one lock, so concurrent
//! duplicates cannot both register.
//!
//! Kept in memory, or also in a file (one JSON line per registration, written
//! before the answer), as a site with a database: registrations then survive the
//! process being killed and started again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

/// One confirmation e-mail in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mail {
    /// The national registration number.
    pub nrn: String,
    /// Where it was sent.
    pub email: String,
    /// The confirmation number it carries.
    pub confirmation: String,
}

/// The outcome of a submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The confirmation number (the same on every submit of one number).
    pub confirmation: String,
    /// Whether this submit created the registration.
    pub new: bool,
}

/// Why a submit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not 11 or 13 digits.
    RegistrationNumber,
    /// Not an e-mail address.
    Email,
}

impl Invalid {
    /// The message shown to the person.
    pub fn message(self) -> &'static str {
        match self {
            Self::RegistrationNumber => {
                "The national registration number must have 11 or 13 digits."
            }
            Self::Email => "Please enter a valid e-mail address.",
        }
    }
}

#[derive(Default)]
struct Inner {
    by_nrn: HashMap<String, String>,
    outbox: Vec<Mail>,
    resubmits: u64,
    /// Where registrations are also written, if anywhere.
    file: Option<File>,
}

/// The list of registrations.
#[derive(Default)]
pub struct Registry(Mutex<Inner>);

impl Registry {
    /// The registrations kept in `path` (created if absent), written there as they
    /// come.
    pub fn in_file(path: &Path) -> std::io::Result<Self> {
        let mut inner = Inner::default();
        if let Ok(existing) = File::open(path) {
            for line in std::io::BufReader::new(existing).lines() {
                // A line cut short by a crash is not a registration.
                if let Ok(mail) = serde_json::from_str::<Mail>(&line?) {
                    inner
                        .by_nrn
                        .insert(mail.nrn.clone(), mail.confirmation.clone());
                    inner.outbox.push(mail);
                }
            }
        }
        inner.file = Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        );
        Ok(Self(Mutex::new(inner)))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `nrn`, or returns its existing confirmation.
    pub fn submit(&self, nrn: &str, email: &str) -> Result<Submitted, Invalid> {
        let nrn = nrn.trim();
        let email = email.trim();
        if !(nrn.len() == 11 || nrn.len() == 13) || !nrn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::RegistrationNumber);
        }
        let valid_email = email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        });
        if !valid_email {
            return Err(Invalid::Email);
        }
        let mut inner = self.inner();
        if let Some(existing) = inner.by_nrn.get(nrn) {
            let confirmation = existing.clone();
            inner.resubmits += 1;
            return Ok(Submitted {
                confirmation,
                new: false,
            });
        }
        let serial = inner.by_nrn.len() as u64 + 1;
        let confirmation = confirmation_number(serial, nrn);
        let mail = Mail {
            nrn: nrn.to_owned(),
            email: email.to_owned(),
            confirmation: confirmation.clone(),
        };
        if let Some(file) = &mut inner.file {
            let mut line = serde_json::to_vec(&mail).expect("a mail serializes");
            line.push(b'\n');
            if let Err(e) = file.write_all(&line) {
                tracing::error!(error = %e, "could not write the registration down");
            }
        }
        inner.by_nrn.insert(nrn.to_owned(), confirmation.clone());
        inner.outbox.push(mail);
        Ok(Submitted {
            confirmation,
            new: true,
        })
    }

    /// The confirmation of `nrn`, if registered.
    pub fn lookup(&self, nrn: &str) -> Option<String> {
        self.inner().by_nrn.get(nrn.trim()).cloned()
    }

    /// The outbox, in sending order.
    pub fn outbox(&self) -> Vec<Mail> {
        self.inner().outbox.clone()
    }

    /// `(registrations, confirmations sent, resubmits answered from the list)`.
    pub fn counts(&self) -> (usize, usize, u64) {
        let i = self.inner();
        (i.by_nrn.len(), i.outbox.len(), i.resubmits)
    }

    /// Forgets everything (between benchmark runs).
    pub fn clear(&self) {
        let mut inner = self.inner();
        let file = inner.file.take().filter(|f| f.set_len(0).is_ok());
        *inner = Inner {
            file,
            ..Inner::default()
        };
    }
}

/// `WL-000123-K`: a serial and a check letter derived from the number.
fn confirmation_number(serial: u64, nrn: &str) -> String {
    let sum: u64 = nrn.bytes().map(|b| u64::from(b - b'0')).sum::<u64>() + serial;
    let check = (b'A' + (sum % 26) as u8) as char;
    format!("WL-{serial:06}-{check}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn resubmits_get_the_same_confirmation_and_no_second_mail() {
        let r = Registry::default();
        let first = r.submit("1990010112345", "a@example.org").unwrap();
        assert!(first.new);
        let again = r.submit(" 1990010112345 ", "other@example.org").unwrap();
        assert_eq!(again.confirmation, first.confirmation);
        assert!(!again.new);
        assert_eq!(r.counts(), (1, 1, 1));
        assert_eq!(r.lookup("1990010112345"), Some(first.confirmation));
        assert_eq!(
            r.submit("12", "a@example.org"),
            Err(Invalid::RegistrationNumber)
        );
        assert_eq!(
            r.submit("1990010112345x", "a@example.org"),
            Err(Invalid::RegistrationNumber)
        );
        assert_eq!(r.submit("19900101123", "nobody"), Err(Invalid::Email));
    }

    #[test]
    fn registrations_in_a_file_survive_the_process() {
        let path = std::env::temp_dir().join(format!("stub-registry-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = Registry::in_file(&path).unwrap();
        let a = first.submit("1990010112345", "a@example.org").unwrap();
        drop(first);
        let again = Registry::in_file(&path).unwrap();
        assert_eq!(again.lookup("1990010112345"), Some(a.confirmation.clone()));
        let b = again.submit("1990010112346", "b@example.org").unwrap();
        assert_ne!(a.confirmation, b.confirmation, "serials continue");
        assert_eq!(again.counts(), (2, 2, 0));
        again.clear();
        assert_eq!(Registry::in_file(&path).unwrap().counts(), (0, 0, 0));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn concurrent_duplicates_register_once() {
        let r = Arc::new(Registry::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|i| {
                            r.submit(&format!("{:013}", i), "x@example.org")
                                .unwrap()
                                .confirmation
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for other in &results[1..] {
            assert_eq!(
                other, &results[0],
                "every thread saw the same confirmations"
            );
        }
        assert_eq!(r.counts(), (500, 500, 3_500));
    }
}
