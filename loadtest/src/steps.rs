//! What a visitor does on the site: the steps of their journey, built in for
//! origin-stub's registration or read from a journey file (`--journey FILE`) for
//! any other site.
//!
//! ```toml
//! # The first step is where visitors arrive; a waiting room in front queues them
//! # there, and they take it again once let through.
//! [[steps]]
//! name = "home"
//! path = "/"
//! expect_text = "Welcome"
//!
//! [[steps]]
//! name = "contact"
//! method = "POST"
//! path = "/contact"
//! form = { email = "visitor{id}@example.org" }
//! expect_status = 200
//! think_ms = [1000, 3000]
//! ```
//!
//! `{id}` in a path or a form value is the visitor's number, `{nrn}` a 13-digit
//! number made from it (a registration number in origin-stub's form).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use http::Method;

/// One step: a request and what its answer must be.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Its name in the report.
    pub name: String,
    /// `GET` (the default), `POST`, `PUT`, `PATCH`, `DELETE` or `HEAD`.
    #[serde(default = "get")]
    pub method: String,
    /// The path and query, from `/`.
    pub path: String,
    /// Form fields, sent as `application/x-www-form-urlencoded`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub form: BTreeMap<String, String>,
    /// The status the answer must have; without it any 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// Text the answer's body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_text: Option<String>,
    /// Think time before the step, milliseconds `[low, high]`; without it the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_ms: Option<[u64; 2]>,
}

fn get() -> String {
    "GET".into()
}

/// The steps of a journey, in order.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    /// The steps; the first is where visitors arrive.
    pub steps: Vec<Step>,
    /// Where they came from: the file, or "origin-stub registration".
    #[serde(skip_deserializing)]
    pub source: String,
}

impl Steps {
    /// origin-stub's registration: the landing page, the form, the submission (which
    /// must show a confirmation number) and the check of that number.
    pub fn origin_stub() -> Self {
        let step = |name: &str, method: &str, path: &str| Step {
            name: name.into(),
            method: method.into(),
            path: path.into(),
            form: BTreeMap::new(),
            expect_status: None,
            expect_text: None,
            think_ms: None,
        };
        let mut submit = step("submit", "POST", "/register");
        submit.form = BTreeMap::from([
            ("nrn".into(), "{nrn}".into()),
            ("email".into(), "visitor{id}@example.org".into()),
        ]);
        submit.expect_text = Some("data-confirmation=".into());
        Self {
            steps: vec![
                step("landing", "GET", "/"),
                step("form", "GET", "/register"),
                submit,
                step("check", "GET", "/check?nrn={nrn}"),
            ],
            source: "origin-stub registration (built in)".into(),
        }
    }

    /// The journey in the TOML file at `path`, checked.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the journey {}", path.display()))?;
        let mut steps: Self =
            toml::from_str(&text).with_context(|| format!("the journey {}", path.display()))?;
        steps.source = path.display().to_string();
        steps
            .check()
            .with_context(|| format!("the journey {}", path.display()))?;
        Ok(steps)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.steps.is_empty(), "has no [[steps]]");
        for (i, s) in self.steps.iter().enumerate() {
            let at = format!("steps[{i}] ({:?})", s.name);
            anyhow::ensure!(!s.name.is_empty(), "{at}: name is empty");
            anyhow::ensure!(s.path.starts_with('/'), "{at}: path must start with '/'");
            anyhow::ensure!(
                matches!(
                    s.method.as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
                ),
                "{at}: method {:?} is not GET, POST, PUT, PATCH, DELETE or HEAD",
                s.method
            );
            if let Some(code) = s.expect_status {
                anyhow::ensure!(
                    (100..=599).contains(&code),
                    "{at}: expect_status {code} is no HTTP status"
                );
            }
            if let Some([lo, hi]) = s.think_ms {
                anyhow::ensure!(lo <= hi, "{at}: think_ms [{lo}, {hi}] goes backwards");
            }
        }
        Ok(())
    }
}

impl Step {
    /// The method.
    pub fn method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).unwrap_or(Method::GET)
    }

    /// The path for visitor `id`.
    pub fn path_for(&self, id: u32) -> String {
        fill(&self.path, id)
    }

    /// The form body for visitor `id`, if the step sends one.
    pub fn form_for(&self, id: u32) -> Option<String> {
        if self.form.is_empty() {
            return None;
        }
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.form {
            form.append_pair(k, &fill(v, id));
        }
        Some(form.finish())
    }

    /// Whether an answer with `status` and `body` is what the step expects.
    pub fn accepts(&self, status: u16, body: &str) -> bool {
        let status_ok = match self.expect_status {
            Some(code) => status == code,
            None => (200..400).contains(&status),
        };
        status_ok && self.expect_text.as_deref().is_none_or(|t| body.contains(t))
    }
}

/// A visitor's registration number, from their number.
pub fn nrn(id: u32) -> String {
    format!("{:013}", 1_000_000_000_000u64 + u64::from(id))
}

fn fill(template: &str, id: u32) -> String {
    template
        .replace("{id}", &id.to_string())
        .replace("{nrn}", &nrn(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_journey_is_origin_stubs_registration() {
        let s = Steps::origin_stub();
        assert_eq!(s.steps.len(), 4);
        assert_eq!(
            s.steps[2].form_for(7).unwrap(),
            "email=visitor7%40example.org&nrn=1000000000007"
        );
        assert_eq!(s.steps[3].path_for(7), "/check?nrn=1000000000007");
        assert!(s.steps[2].accepts(200, "<b data-confirmation=\"WL-1\">"));
        assert!(!s.steps[2].accepts(200, "<p>try again</p>"));
        assert!(!s.steps[0].accepts(503, ""));
    }

    #[test]
    fn a_journey_file_is_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("loadtest-steps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("journey.toml");
        std::fs::write(
            &file,
            "[[steps]]\nname = \"home\"\npath = \"/\"\nexpect_text = \"Welcome\"\n\
             [[steps]]\nname = \"contact\"\nmethod = \"POST\"\npath = \"/contact\"\n\
             form = { email = \"v{id}@example.org\" }\nexpect_status = 201\nthink_ms = [0, 10]\n",
        )
        .unwrap();
        let s = Steps::read(&file).unwrap();
        assert_eq!(s.steps[1].method(), Method::POST);
        assert!(s.steps[1].accepts(201, "") && !s.steps[1].accepts(200, ""));
        assert!(!s.steps[0].accepts(200, "Goodbye"));
        std::fs::write(&file, "[[steps]]\nname = \"x\"\npath = \"x\"\n").unwrap();
        let e = format!("{:#}", Steps::read(&file).unwrap_err());
        assert!(
            e.contains("steps[0]") && e.contains("must start with '/'"),
            "{e}"
        );
        std::fs::write(
            &file,
            "[[steps]]\nname = \"x\"\npath = \"/\"\nmethdo = \"GET\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Steps::read(&file).unwrap_err());
        assert!(e.contains("methdo"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
