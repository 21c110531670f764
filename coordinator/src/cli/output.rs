//! How read commands print: `--output json` is the API's answer verbatim (pretty-printed,
//! for `jq`), `--output text` a table for people.

use clap::{Args, ValueEnum};
use serde_json::Value;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// A readable table.
    #[default]
    Text,
    /// The API's JSON, pretty-printed.
    Json,
}

/// `--output text|json`, flattened into every read command.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArg {
    /// text (a table) or json (the API's answer, verbatim).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

impl OutputArg {
    /// Prints `v` as JSON, or calls `text` to print it for people.
    pub fn print(self, v: &Value, text: impl FnOnce(&Value)) {
        match self.output {
            Format::Json => print_json(v),
            Format::Text => text(v),
        }
    }
}

/// Pretty JSON on stdout.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// A JSON value as a table cell: strings bare, null as `-`, arrays comma-joined.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Left-aligned columns, as wide as their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 == widths.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "UP", "LABELS"],
            &[
                vec!["web-1".into(), "yes".into(), "env=prod".into()],
                vec!["w".into(), "no".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME   UP   LABELS\nweb-1  yes  env=prod\nw      no   -");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("a")), "a");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!(3)), "3");
    }
}
