//! A `text/event-stream` parser (the WHATWG HTML "server-sent events" rules), pure and
//! incremental: feed it bytes as they arrive, in chunks of any size, and it returns every
//! event completed so far.
//!
//! What the hand-rolled reader it replaces got wrong: lines end in CRLF, LF or a lone CR
//! (a chunk may end between the CR and the LF); an event's `data` may span several
//! `data:` lines, joined with newlines; lines starting with `:` are comments (keep-alives);
//! a chunk may end inside a UTF-8 sequence; a leading byte-order mark is dropped.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last `id:` seen so far in the stream, if any.
    pub id: Option<String>,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    bom: usize,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; returns the events they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Event> {
        if !self.started {
            // A byte-order mark may only open the stream, and may arrive split.
            const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
            while self.bom < 3 && bytes.first() == Some(&BOM[self.bom]) {
                self.bom += 1;
                bytes = &bytes[1..];
            }
            if self.bom < 3 && bytes.is_empty() {
                return Vec::new();
            }
            if self.bom < 3 {
                // Not a mark after all: those bytes were the start of a line.
                self.line.extend_from_slice(&BOM[..self.bom]);
            }
            self.started = true;
        }
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.end_line(&mut out);
                    self.after_cr = true;
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    event: if self.event.is_empty() {
                        "message".into()
                    } else {
                        std::mem::take(&mut self.event)
                    },
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        chunks.iter().flat_map(|c| p.feed(c)).collect()
    }

    fn msg(data: &str) -> Event {
        Event {
            event: "message".into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn lf_crlf_and_lone_cr_all_end_lines() {
        for text in [
            &b"data: {\"a\":1}\n\n"[..],
            b"data: {\"a\":1}\r\n\r\n",
            b"data: {\"a\":1}\r\r",
        ] {
            assert_eq!(all(&[text]), vec![msg("{\"a\":1}")], "{text:?}");
        }
    }

    #[test]
    fn multi_line_data_comments_fields_and_ids() {
        let got = all(&[
            b": keep-alive\nevent: update\nid: 7\ndata: one\ndata:two\nretry: 10\n\ndata\n\n",
        ]);
        assert_eq!(
            got,
            vec![
                Event {
                    event: "update".into(),
                    data: "one\ntwo".into(),
                    id: Some("7".into())
                },
                Event {
                    event: "message".into(),
                    data: String::new(),
                    id: Some("7".into())
                },
            ]
        );
        // An event with no data is not dispatched; an unfinished one neither.
        assert!(all(&[b"event: x\n\ndata: half"]).is_empty());
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let text =
            "\u{feff}data: caf\u{e9} \u{1f680}\r\ndata: b\r\n\r\n: c\r\ndata: 2\r\n\r\n".as_bytes();
        let whole = all(&[text]);
        assert_eq!(whole, vec![msg("caf\u{e9} \u{1f680}\nb"), msg("2")]);
        for size in 1..text.len() {
            let chunks: Vec<&[u8]> = text.chunks(size).collect();
            assert_eq!(all(&chunks), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_bom_is_dropped_only_at_the_start() {
        assert_eq!(all(&[b"\xEF\xBB", b"\xBFdata: x\n\n"]), vec![msg("x")]);
        // Later, it is part of the field name: `\u{feff}data` is no field.
        assert_eq!(
            all(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]),
            vec![msg("x")]
        );
    }
}
