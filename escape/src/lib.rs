//! One rule for text that came from outside (a peer, a file, the kernel
//! command line) on its way to a console, a log or a terminal: every
//! character that could end a line, move the cursor, reprogram a terminal
//! or hide or reorder what a reader sees is written as a visible escape,
//! and what is too long is cut and says how much was cut.
//!
//! The rule is applied once, at the sinks (`runtime::journal::note`, the
//! console's service lines, sporectl's terminal output), so no caller can
//! forget it; [`field`] caps one value inside a line, where a caller puts a
//! peer's words (a method name, a namespace, a key comment) into a longer
//! message. Escaping is idempotent: the escaped text contains only
//! printable characters, so escaping it again changes nothing.

//!
//! A leaf: it depends on no crate. spore's journal, the node API, the RPC
//! transport, the beacon and sporectl all write through it.

use std::fmt::Write;

/// A line at a sink holds at most this many bytes (before the mark that
/// says how many were cut).
pub const LINE_BYTES: usize = 4096;

/// One value from outside inside a line holds at most this many bytes.
pub const FIELD_BYTES: usize = 256;

/// Whether `c` must be shown as an escape: control characters (C0, DEL,
/// C1, except tab), the bidirectional overrides and isolates (the
/// "Trojan Source" characters, CVE-2021-42574), invisible separators and
/// joiners, and the line and paragraph separators some viewers break on.
pub fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` with every character of [`needs_escape`] written as Rust writes
/// it (`\n`, `\r`, `\u{1b}`, `\u{202e}`), cut to at most `max_bytes` bytes
/// of escaped text plus a `…[N more bytes]` mark when longer.
pub fn escape(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 16);
    for (at, c) in text.char_indices() {
        let before = out.len();
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max_bytes {
            out.truncate(before);
            let _ = write!(out, "…[{} more bytes]", text.len() - at);
            break;
        }
    }
    out
}

/// A whole line for a sink: escaped, at most [`LINE_BYTES`].
pub fn line(text: &str) -> String {
    escape(text, LINE_BYTES)
}

/// One value from outside, to be put into a longer line: escaped, at most
/// [`FIELD_BYTES`].
pub fn field(text: &str) -> String {
    escape(text, FIELD_BYTES)
}

/// Bytes that may not be UTF-8 (a file's contents, a pipe): invalid
/// sequences become U+FFFD, then [`escape`] applies.
pub fn bytes(raw: &[u8], max_bytes: usize) -> String {
    escape(&String::from_utf8_lossy(raw), max_bytes)
}

/// Hostile strings every sink is tested with (here and in the
/// integration tests): line breaks, terminal sequences, NUL, bidi
/// overrides, invisible characters, C1 controls.
pub const HOSTILE: &[&str] = &[
    "a\nspore: rpc audit: SHA256:x (root) from 1.2.3.4:5: node.poweroff -> ok",
    "\r\u{1b}[2J\u{1b}]0;owned\u{7}",
    "nul\0byte",
    "bidi \u{202e}txt.exe\u{202c} \u{2066}x\u{2069}",
    "zero\u{200b}width\u{feff}",
    "c1 \u{9b}31m \u{85}next",
    "line\u{2028}sep",
    "del\u{7f}",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_escaped_string_can_break_a_line_or_drive_a_terminal() {
        for hostile in HOSTILE {
            let escaped = line(hostile);
            assert!(
                !escaped.chars().any(needs_escape),
                "{escaped:?} still holds a character that needs escaping"
            );
            assert_eq!(
                line(&escaped),
                escaped,
                "escaping twice changed {hostile:?}"
            );
        }
        assert_eq!(line("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(line("tab\tstays"), "tab\tstays");
        assert_eq!(line("é ✓ 日本"), "é ✓ 日本");
    }

    #[test]
    fn long_text_is_cut_and_says_how_much() {
        let big = "x".repeat(1_000_000);
        let cut = field(&big);
        assert!(cut.len() < FIELD_BYTES + 32, "{} bytes", cut.len());
        assert!(cut.ends_with("…[999744 more bytes]"), "{cut}");
        assert!(line(&big).len() < LINE_BYTES + 32);
        // A cut never splits a character or an escape.
        let wide = "日".repeat(200);
        assert!(field(&wide).starts_with(&"日".repeat(85)));
        let escapes = "\u{1b}".repeat(100);
        let cut = field(&escapes);
        assert!(cut.starts_with(&"\\u{1b}".repeat(42)), "{cut}");
        assert!(cut.contains("…["), "{cut}");
    }

    #[test]
    fn invalid_utf8_is_shown_as_replacement_characters() {
        assert_eq!(bytes(b"ok\xff\xfe\n", 64), "ok\u{fffd}\u{fffd}\\n");
    }
}
