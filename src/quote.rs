//! One quoting rule for every value, both ways.
//!
//! Field values come from the kernel as bytes: a command name need not be
//! UTF-8 and may hold a newline or an escape sequence. sockwatch prints them
//! in a form a condition reads back unchanged, and that cannot break a line
//! or drive a terminal:
//!
//! - Bytes become Rust text by a lossless mapping ([`text_from_bytes`]):
//!   valid UTF-8 stays as it is, and each byte of an invalid sequence
//!   becomes one character of the Supplementary Private Use Area,
//!   U+10FF00 + the byte (so U+10FF80..=U+10FFFF, as only bytes 0x80..=0xFF
//!   are ever invalid on their own). [`bytes_from_text`] undoes it. The one
//!   ambiguity: a value that really is valid UTF-8 holding one of those
//!   private-use characters reads back as the raw byte. No program name
//!   uses them; the price buys text that every part of sockwatch can handle.
//! - [`quote`] writes a value bare when that is unambiguous, and otherwise
//!   in double quotes with `\"`, `\\`, `\n`, `\t`, `\r` and `\xNN` for every
//!   other control byte and every mapped byte. The condition parser reads
//!   exactly that form.
//! - [`escape_controls`] makes text from a user safe to echo in a message:
//!   a condition cannot forge a log line.

use std::borrow::Cow;
use std::fmt::Write;

/// The character that carries byte 0x00 of an invalid sequence; bytes
/// 0x80..=0xFF map to `MAPPED_BASE + byte`.
const MAPPED_BASE: u32 = 0x10_FF00;

/// The bytes as text: valid UTF-8 as it is, each byte of an invalid
/// sequence as the private-use character U+10FF00 + byte.
pub fn text_from_bytes(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        text.extend(chunk.invalid().iter().map(|&b| mapped_char(b)));
    }
    text
}

/// The bytes that [`text_from_bytes`] turned into `text`.
pub fn bytes_from_text(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(|c| mapped_byte(c).is_some()) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match mapped_byte(c) {
            Some(b) => bytes.push(b),
            None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Cow::Owned(bytes)
}

/// The character that carries byte `b` (0x80..=0xFF) of an invalid sequence.
fn mapped_char(b: u8) -> char {
    char::from_u32(MAPPED_BASE + u32::from(b)).expect("U+10FF80..=U+10FFFF are characters")
}

/// The raw byte a character carries, when it is one of the mapped ones.
pub fn mapped_byte(c: char) -> Option<u8> {
    let b = u32::from(c).checked_sub(MAPPED_BASE)?;
    u8::try_from(b).ok().filter(|b| *b >= 0x80)
}

/// Whether `c` must be written as `\xNN` bytes: a control character, a
/// mapped byte, or one of the invisible characters that reorder or hide
/// text on a terminal (bidirectional overrides, zero-width characters, line
/// and paragraph separators).
fn needs_hex(c: char) -> bool {
    c.is_control()
        || mapped_byte(c).is_some()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// Whether a value can be written without quotes: not empty, and every
/// character printable, not white space, not a quote, a backslash or a
/// parenthesis (which the condition parser would split at).
fn is_bare(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| !needs_hex(c) && !c.is_whitespace() && !matches!(c, '"' | '\\' | '(' | ')'))
}

/// Writes `c` as `\xNN`, one escape per byte.
fn push_hex(out: &mut String, c: char) {
    match mapped_byte(c) {
        Some(b) => {
            let _ = write!(out, "\\x{b:02x}");
        }
        None => {
            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// A value as events print it and conditions read it: bare when
/// unambiguous, else `"..."` with backslash escapes.
pub fn quote(value: &str) -> Cow<'_, str> {
    if is_bare(value) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_hex(c) => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Text from a user, safe to echo in a message: control and invisible
/// characters (and mapped bytes) as `\n`, `\t`, `\r` or `\xNN`; everything
/// else, backslashes and quotes included, as it is, so the user recognises
/// what they typed.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_hex) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_hex(c) => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// How many columns [`escape_controls`] gives `c`.
pub(crate) fn escaped_width(c: char) -> usize {
    match c {
        '\n' | '\t' | '\r' => 2,
        c if needs_hex(c) => 4 * mapped_byte(c).map_or(c.len_utf8(), |_| 1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_text() {
        let cases: [&[u8]; 6] = [
            b"nginx",
            b"",
            b"\xff\xfeabc",
            "caf\u{e9}".as_bytes(),
            b"a\xc3",
            b"\xe2\x82",
        ];
        for bytes in cases {
            let text = text_from_bytes(bytes);
            assert_eq!(&*bytes_from_text(&text), bytes, "{text:?}");
        }
        assert_eq!(text_from_bytes(b"\xffa"), "\u{10FFFF}a");
        assert_eq!(text_from_bytes("café".as_bytes()), "café");
        assert!(matches!(bytes_from_text("café"), Cow::Borrowed(_)));
    }

    #[test]
    fn only_invalid_bytes_are_mapped() {
        assert_eq!(mapped_byte('\u{10FF80}'), Some(0x80));
        assert_eq!(mapped_byte('\u{10FF7F}'), None, "ASCII is never invalid");
        assert_eq!(mapped_byte('a'), None);
    }

    #[test]
    fn quoting() {
        let cases = [
            ("nginx", "nginx"),
            ("my server", r#""my server""#),
            (r#"a"b\c"#, r#""a\"b\\c""#),
            ("", r#""""#),
            ("a\nb", r#""a\nb""#),
            ("tab\there\r", r#""tab\there\r""#),
            ("\u{1b}[31m", r#""\x1b[31m""#),
            ("del\u{7f}", r#""del\x7f""#),
            ("(x)", r#""(x)""#),
            ("café", "café"),
            ("a\u{202e}b", r#""a\xe2\x80\xaeb""#),
            ("nel\u{85}", r#""nel\xc2\x85""#),
            ("10.0.0.*", "10.0.0.*"),
        ];
        for (value, quoted) in cases {
            assert_eq!(quote(value), quoted, "{value:?}");
        }
        assert_eq!(quote(&text_from_bytes(b"\xff\xfeabc")), r#""\xff\xfeabc""#);
        assert!(matches!(quote("nginx"), Cow::Borrowed(_)));
    }

    #[test]
    fn messages_escape_controls_only() {
        assert_eq!(escape_controls("tcp\\"), "tcp\\");
        assert_eq!(
            escape_controls("a\nsockwatch: forged"),
            "a\\nsockwatch: forged"
        );
        assert_eq!(escape_controls("\u{1b}]0;x\u{7}"), "\\x1b]0;x\\x07");
        for c in ['a', '\n', '\u{1b}', '\u{10FFFF}', '\u{202e}'] {
            assert_eq!(
                escape_controls(c.encode_utf8(&mut [0; 4])).chars().count(),
                escaped_width(c),
                "{c:?}"
            );
        }
    }
}
