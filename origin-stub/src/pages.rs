//! The registration site's pages: small, plain HTML.

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><main>{body}</main></body></html>\n"
    )
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /`: the landing page.
pub fn landing() -> String {
    page(
        "Vaccination waitlist",
        "<h1 id=\"origin\">Vaccination waitlist</h1>\
         <p>Put your name on the list; we will write to you with an appointment.</p>\
         <p><a href=\"/register\">Register</a> · <a href=\"/check\">Check a registration</a></p>",
    )
}

/// `GET /register`: the form.
pub fn form() -> String {
    page(
        "Register",
        "<h1 id=\"origin\">Register for the waitlist</h1>\
         <form method=\"post\" action=\"/register\">\
         <p><label>National registration number <input name=\"nrn\" inputmode=\"numeric\" required></label></p>\
         <p><label>E-mail <input name=\"email\" type=\"email\" required></label></p>\
         <p><button>Register</button></p></form>",
    )
}

/// `POST /register`: the confirmation.
pub fn confirmed(nrn: &str, confirmation: &str, new: bool) -> String {
    let note = if new {
        "A confirmation e-mail is on its way."
    } else {
        "You were already registered; this is your confirmation."
    };
    page(
        "Registered",
        &format!(
            "<h1 id=\"origin\">You are on the list</h1>\
             <p>Registration number {}: confirmation <strong id=\"confirmation\" data-confirmation=\"{}\">{}</strong></p>\
             <p>{note}</p>",
            escape(nrn),
            escape(confirmation),
            escape(confirmation)
        ),
    )
}

/// A refused submit.
pub fn invalid(message: &str) -> String {
    page(
        "Please check",
        &format!("<h1 id=\"origin\">Please check your entry</h1><p role=\"alert\">{}</p><p><a href=\"/register\">Back</a></p>", escape(message)),
    )
}

/// `GET /check`: the answer.
pub fn check(nrn: &str, confirmation: Option<&str>) -> String {
    let body = match confirmation {
        Some(c) => format!(
            "<p id=\"registered\" data-confirmation=\"{}\">{} is on the list (confirmation {}).</p>",
            escape(c),
            escape(nrn),
            escape(c)
        ),
        None if nrn.is_empty() => "<form><label>National registration number <input name=\"nrn\"></label> <button>Check</button></form>".to_owned(),
        None => format!("<p id=\"not-registered\">{} is not on the list.</p>", escape(nrn)),
    };
    page(
        "Check a registration",
        &format!("<h1 id=\"origin\">Check a registration</h1>{body}"),
    )
}

/// Any other path.
pub fn other(path: &str) -> String {
    page(
        "Registration site",
        &format!(
            "<h1 id=\"origin\">Registration site</h1><p>You reached {}</p>",
            escape(path)
        ),
    )
}
