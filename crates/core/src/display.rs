//! Names and paths as text for people: escaped and bounded.
//!
//! The names in a volume are the container's choice, and so, in the agent, are the paths
//! its callers send. Printed raw, a name with a newline forges a line of output (a file
//! named `a\nerror: forged` makes a report or a log line that volsec never wrote), an
//! escape sequence reaches the operator's terminal, and a 3 MB path fills a log. So every
//! text printer and every log line shows a path through [`path`] (or [`text`], [`bytes`]),
//! which escapes the way `ls -b` does:
//! - `\` as `\\`, so what follows a backslash is always an escape;
//! - the C escapes `\a \b \t \n \v \f \r`, and ESC as `\e`;
//! - any other control byte, and each byte that is not valid UTF-8, as `\xNN`;
//! - the other control characters (DEL's neighbours U+0080 to U+009F, which some terminals
//!   obey as ESC sequences) and the Unicode bidirectional and line-separator controls,
//!   which reorder or break what the reader sees, as `\u{NNNN}`.
//!
//! Two different names therefore never print the same. And a path longer than
//! [`MAX_SHOWN`] bytes is shown as its first [`HEAD`] and last [`TAIL`] bytes with its
//! length between them, so a message stays a line and the entry's own name stays visible.
//!
//! JSON output is not made here: it keeps names exactly (serde escapes control
//! characters itself).

use std::fmt::{self, Write};
use std::path::Path;

/// The longest path shown whole, in bytes.
pub const MAX_SHOWN: usize = 512;
/// How much of the start of a longer path is shown.
pub const HEAD: usize = 256;
/// How much of the end of a longer path is shown.
pub const TAIL: usize = 128;

/// Bytes shown escaped, and cut short past [`MAX_SHOWN`] bytes; see the module docs.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(&'a [u8], Bound);

/// Whether a long path is cut short.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// Past [`MAX_SHOWN`] bytes, only the head and the tail are shown.
    Shortened,
    /// Shown whole: a listing, where each line is one entry a reader may act on.
    Whole,
}

/// A path for a message or a log line.
pub fn path(path: &Path) -> Escaped<'_> {
    Escaped(
        std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()),
        Bound::Shortened,
    )
}

/// A path escaped but never shortened, for a listing of entries (`--dry-run --list`),
/// where the line is the entry and a cut path would name another.
pub fn whole_path(path: &Path) -> Escaped<'_> {
    Escaped(
        std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()),
        Bound::Whole,
    )
}

/// Text that came from outside (a caller's path as sent, a message that quotes one).
pub fn text(text: &str) -> Escaped<'_> {
    Escaped(text.as_bytes(), Bound::Shortened)
}

/// Raw bytes, such as a name read from a directory.
pub fn bytes(bytes: &[u8]) -> Escaped<'_> {
    Escaped(bytes, Bound::Shortened)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.len() <= MAX_SHOWN || self.1 == Bound::Whole {
            return escape(b, f);
        }
        // Cut at character boundaries, so a multi-byte character is not shown as bytes.
        let mut head = HEAD;
        while head > 0 && is_continuation(b[head]) {
            head -= 1;
        }
        let mut tail = b.len() - TAIL;
        while tail < b.len() && is_continuation(b[tail]) {
            tail += 1;
        }
        escape(&b[..head], f)?;
        write!(f, "...({} bytes)...", b.len())?;
        escape(&b[tail..], f)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

fn escape(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\x07' => f.write_str("\\a")?,
                '\x08' => f.write_str("\\b")?,
                '\t' => f.write_str("\\t")?,
                '\n' => f.write_str("\\n")?,
                '\x0b' => f.write_str("\\v")?,
                '\x0c' => f.write_str("\\f")?,
                '\r' => f.write_str("\\r")?,
                '\x1b' => f.write_str("\\e")?,
                c if c.is_ascii_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() || is_layout_control(c) => {
                    write!(f, "\\u{{{:04x}}}", c as u32)?
                }
                c => f.write_char(c)?,
            }
        }
        for byte in chunk.invalid() {
            write!(f, "\\x{byte:02x}")?;
        }
    }
    Ok(())
}

/// Characters that change how the text around them is laid out: the bidirectional
/// controls (a right-to-left override shows `gpj.exe` as `exe.jpg`) and the line and
/// paragraph separators.
fn is_layout_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn shown(b: &[u8]) -> String {
        path(Path::new(OsStr::from_bytes(b))).to_string()
    }

    #[test]
    fn control_characters_and_invalid_bytes_are_escaped_as_ls_b_does() {
        assert_eq!(shown(b"/v/a\nerror: forged"), "/v/a\\nerror: forged");
        assert_eq!(shown(b"/v/\x1b[31mred"), "/v/\\e[31mred");
        assert_eq!(shown(b"a\tb\rc\x07\x08\x0b\x0c"), "a\\tb\\rc\\a\\b\\v\\f");
        assert_eq!(shown(b"nul\x01del\x7f"), "nul\\x01del\\x7f");
        assert_eq!(shown(b"bad\xff\xfe"), "bad\\xff\\xfe");
        assert_eq!(shown(b"back\\slash"), "back\\\\slash");
        assert_eq!(shown("c1\u{9b}31m".as_bytes()), "c1\\u{009b}31m");
        assert_eq!(
            shown("rlo\u{202e}gpj.exe".as_bytes()),
            "rlo\\u{202e}gpj.exe"
        );
        assert_eq!(shown("naïve 名前 ok".as_bytes()), "naïve 名前 ok");
    }

    #[test]
    fn two_names_never_print_the_same() {
        // A literal backslash-n and a newline; an invalid byte and its escape spelled out.
        assert_ne!(shown(b"a\\nb"), shown(b"a\nb"));
        assert_ne!(shown(b"a\\xffb"), shown(b"a\xffb"));
    }

    #[test]
    fn a_long_path_shows_its_ends_and_its_length() {
        let long = format!("/v/{}name", "d/".repeat(1_572_864));
        let s = shown(long.as_bytes());
        assert!(s.len() < MAX_SHOWN + 40, "{}", s.len());
        assert!(s.starts_with("/v/d/d/"), "{s}");
        assert!(s.ends_with("d/d/name"), "{s}");
        assert!(s.contains(&format!("...({} bytes)...", long.len())), "{s}");
        let exact = "x".repeat(MAX_SHOWN);
        assert_eq!(shown(exact.as_bytes()), exact);
    }

    #[test]
    fn a_long_path_is_cut_between_characters() {
        let long = "é".repeat(400);
        let s = shown(long.as_bytes());
        assert!(!s.contains("\\x"), "{s}");
    }
}
