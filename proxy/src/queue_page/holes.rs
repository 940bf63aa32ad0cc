//! The built-in page rendered once per language and shape, with holes where one
//! visitor's values go.
//!
//! Rendering the template is most of what a newcomer costs. The page's text
//! around a visitor's place, estimate and links is the same for everyone who sees
//! the same language in the same shape (the same state, and the same of its values
//! present or absent, zero or not). So the template is rendered once per shape with
//! a marker in place of each such value; the result is cut at the markers, and a
//! page is the pieces with the values put in, escaped as the template would have
//! escaped them. Each shape's pieces are checked once against a full render before
//! they are used ([`super::Page`]); only the built-in template is served this way.

use std::fmt::Write;

/// A value that changes from visitor to visitor, as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Text, escaped for HTML where it is put in.
    Text(String),
    /// A number.
    Number(u64),
    /// Absent.
    None,
}

impl Fill {
    /// Whether the template is given this value itself rather than a marker: a
    /// value it may test (absent, empty, zero) is part of the shape, not a hole.
    fn plain(&self) -> bool {
        match self {
            Self::Text(s) => s.is_empty(),
            Self::Number(n) => *n == 0,
            Self::None => true,
        }
    }

    /// What the template tests of it: 0 absent, 1 empty or zero, 2 a hole.
    fn shape(&self) -> u64 {
        match self {
            Self::None => 0,
            _ if self.plain() => 1,
            _ => 2,
        }
    }

    /// The value for the template: itself, or the marker of hole `i`.
    pub fn value(&self, i: usize, marked: bool) -> minijinja::Value {
        if marked && !self.plain() {
            return minijinja::Value::from(marker(i));
        }
        match self {
            Self::Text(s) => minijinja::Value::from(s.as_str()),
            Self::Number(n) => minijinja::Value::from(*n),
            Self::None => minijinja::Value::from(()),
        }
    }
}

/// The shape of a set of values: two bits each (at most 32 values).
pub fn shape(fills: &[Fill]) -> u64 {
    fills
        .iter()
        .enumerate()
        .fold(0, |acc, (i, f)| acc | f.shape() << (2 * i))
}

/// Starts a marker: characters of Unicode's private use area, which no message
/// of ours has and HTML escaping leaves alone.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

fn marker(i: usize) -> String {
    format!("{OPEN}{i}{CLOSE}")
}

/// A page cut at its holes.
#[derive(Debug)]
pub struct Holes {
    pieces: Vec<Piece>,
    /// The length of the text pieces together.
    fixed: usize,
}

#[derive(Debug)]
enum Piece {
    Text(Box<str>),
    Hole(usize),
}

impl Holes {
    /// Cuts `rendered` (rendered with markers in place of `fills`) at its
    /// markers; `None` when a marker is not whole or names no value given as a
    /// marker. (A value the page does not show in this shape has no marker in it.)
    pub fn cut(rendered: &str, fills: &[Fill]) -> Option<Self> {
        let mut pieces = Vec::new();
        let mut rest = rendered;
        while let Some(at) = rest.find(OPEN) {
            pieces.push(Piece::Text(rest[..at].into()));
            let after = &rest[at + OPEN.len_utf8()..];
            let end = after.find(CLOSE)?;
            let i: usize = after[..end].parse().ok()?;
            if i >= fills.len() || fills[i].plain() {
                return None;
            }
            pieces.push(Piece::Hole(i));
            rest = &after[end + CLOSE.len_utf8()..];
        }
        if rest.contains(CLOSE) {
            return None;
        }
        pieces.push(Piece::Text(rest.into()));
        let fixed = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Hole(_) => 0,
            })
            .sum();
        Some(Self { pieces, fixed })
    }

    /// The page with `fills` put in its holes (of the same shape as those it was
    /// cut with).
    pub fn fill(&self, fills: &[Fill]) -> String {
        let mut page = String::with_capacity(self.fixed + 256);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => page.push_str(t),
                Piece::Hole(i) => match &fills[*i] {
                    Fill::Text(s) => {
                        let _ = write!(page, "{}", minijinja::HtmlEscape(s));
                    }
                    Fill::Number(n) => {
                        let _ = write!(page, "{n}");
                    }
                    Fill::None => {}
                },
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_markers_and_fills_escaped() {
        let fills = [
            Fill::Text("a<b".into()),
            Fill::Number(7),
            Fill::Number(0),
            Fill::None,
        ];
        let rendered = format!("<p>{}</p><i>{}</i>0", marker(0), marker(1));
        let holes = Holes::cut(&rendered, &fills).unwrap();
        assert_eq!(holes.fill(&fills), "<p>a&lt;b</p><i>7</i>0");
        // A value this shape does not show is no hole; a broken marker, or one
        // that names a value given plainly, is refused.
        assert_eq!(
            Holes::cut("<p></p>", &fills).unwrap().fill(&fills),
            "<p></p>"
        );
        assert!(Holes::cut(&format!("{}{OPEN}1", marker(0)), &fills).is_none());
        assert!(Holes::cut(&format!("{}{}{}", marker(0), marker(1), marker(2)), &fills).is_none());
        assert_ne!(
            shape(&fills),
            shape(&[
                Fill::Text("x".into()),
                Fill::Number(7),
                Fill::Number(1),
                Fill::None
            ])
        );
    }
}
