//! Writing HTML by hand, safely: every value that did not come from this file goes through
//! [`esc`] (the one escaping function), and [`Html`] is the only thing the pages build.
//!
//! Why no template crate: the pages are a few tables and forms; a builder of a few
//! functions keeps the dependency tree as it is and the escaping rule in one place.

use std::fmt::Display;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sluice_common::time::Timestamp;

/// Escapes text for an HTML element's content or a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// [`esc`] of anything displayable.
pub fn t(v: impl Display) -> String {
    esc(&v.to_string())
}

/// Percent-encodes a query-string value.
pub fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The wire name of an enum value (`in_progress`, `rolling_back`).
pub fn wire(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A timestamp as RFC 3339 with its age (`… (3 m ago)`), in a `<time>` element.
pub fn when(at: Timestamp) -> String {
    let now = Timestamp::from_system(SystemTime::now());
    format!(
        "<time datetime=\"{at}\">{at}</time> <span class=\"age\">({} ago)</span>",
        age(now.since(at))
    )
}

/// A short human duration: `850 ms`, `12 s`, `4 m`, `3 h`, `2 d`.
pub fn age(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{} s", ms / 1_000),
        60_000..=3_599_999 => format!("{} m", ms / 60_000),
        3_600_000..=86_399_999 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// A table: a caption, the header cells, and rows of already-escaped cells.
pub fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table><caption>{}</caption><thead><tr>",
        esc(caption)
    );
    for h in head {
        out.push_str(&format!("<th scope=\"col\">{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"empty\">none</td></tr>",
            head.len()
        ));
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{c}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A coloured badge for a state word (the class is the word, the text says it too, so
/// colour is never the only signal).
pub fn badge(word: &str) -> String {
    let class: String = word
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("<span class=\"badge b-{class}\">{}</span>", esc(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(q("a b/c&d"), "a%20b%2Fc%26d");
        assert_eq!(
            badge("in_progress\"><x"),
            "<span class=\"badge b-in_progressx\">in_progress&quot;&gt;&lt;x</span>"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(Duration::from_millis(850)), "850 ms");
        assert_eq!(age(Duration::from_secs(75)), "1 m");
        assert_eq!(age(Duration::from_secs(3 * 86_400)), "3 d");
    }
}
