//! What is kept of a command's output, and how it is cut into lines.
//!
//! A host decides how much it prints, so nothing here grows with it: [`Tail`] keeps the
//! last [`KEEP_MAX`] bytes of a stream (the end of an output is where errors are) and says
//! how much it dropped; [`Lines`] looks at each byte once when splitting lines (a long line
//! arriving in many chunks is not searched again from its start at every chunk) and hands
//! out a line longer than [`LINE_MAX`] in pieces. [`redact`] takes secrets out of
//! whatever is returned or printed.

use crate::secret::Secret;

/// Most bytes kept per output stream of one command. Far above what rpiprov's own commands
/// print (a probe, a node list), low enough that a flood from a host cannot exhaust memory.
pub(crate) const KEEP_MAX: usize = 8 * 1024 * 1024;

/// Longest line handed out whole; a longer one comes in pieces of this size.
pub(crate) const LINE_MAX: usize = 64 * 1024;

/// The text a secret is replaced with.
const REDACTED: &[u8] = b"<redacted>";

/// The tail of one output stream.
pub(crate) struct Tail {
    buf: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl Default for Tail {
    fn default() -> Self {
        Tail::new(KEEP_MAX)
    }
}

impl Tail {
    pub fn new(max: usize) -> Self {
        Tail {
            buf: Vec::new(),
            max,
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Cut in batches, at twice the limit, so that each byte is moved at most once.
        if self.buf.len() > 2 * self.max {
            self.cut();
        }
    }

    fn cut(&mut self) {
        let excess = self.buf.len().saturating_sub(self.max);
        if excess > 0 {
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The kept bytes with `secret` redacted; when some were dropped, a first line says
    /// how many, so that nobody mistakes the tail for the whole output.
    pub fn finish(mut self, secret: Option<&Secret>) -> Vec<u8> {
        self.cut();
        let mut kept = redact(self.buf, secret);
        if self.dropped == 0 {
            return kept;
        }
        let mut out = format!(
            "[rpiprov: output too long: the first {} bytes were dropped, the last {} follow]\n",
            self.dropped, self.max
        )
        .into_bytes();
        out.append(&mut kept);
        out
    }
}

/// Splits a byte stream into lines: the bytes of each line without `\n` (and `\r\n`), and
/// whether it is a whole line (`false` for the pieces of an over-long line).
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` known to hold no newline.
    scanned: usize,
    max: usize,
    /// The line being read was already handed out in part.
    cut: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new(LINE_MAX)
    }
}

impl Lines {
    pub fn new(max: usize) -> Self {
        Lines {
            buf: Vec::new(),
            scanned: 0,
            max,
            cut: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8], mut f: impl FnMut(&str, bool)) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + nl;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.len() <= self.max {
                f(&String::from_utf8_lossy(line), !self.cut);
            } else {
                for piece in line.chunks(self.max) {
                    f(&String::from_utf8_lossy(piece), false);
                }
            }
            self.cut = false;
            start = end + 1;
            self.scanned = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        while self.buf.len() >= self.max {
            let piece: Vec<u8> = self.buf.drain(..self.max).collect();
            f(&String::from_utf8_lossy(&piece), false);
            self.cut = true;
            self.scanned = self.buf.len();
        }
    }

    /// Hands out a last line that had no newline.
    pub fn finish(&mut self, mut f: impl FnMut(&str, bool)) {
        if !self.buf.is_empty() {
            f(&String::from_utf8_lossy(&self.buf), !self.cut);
            self.buf.clear();
        }
        self.scanned = 0;
        self.cut = false;
    }
}

/// `bytes` with the secret replaced by `<redacted>` wherever it stands as a word of its own
/// (not inside a longer run of letters and digits). An echoed password stands alone; a weak
/// one that is also part of ordinary output (`raspberry` in the host name `raspberrypi`)
/// must not garble what rpiprov parses, nor point at itself by being cut out there.
pub(crate) fn redact(bytes: Vec<u8>, secret: Option<&Secret>) -> Vec<u8> {
    let Some(needle) = secret
        .map(|s| s.expose().as_bytes())
        .filter(|s| !s.is_empty())
    else {
        return bytes;
    };
    if bytes.len() < needle.len() || !bytes.windows(needle.len()).any(|w| w == needle) {
        return bytes;
    }
    let word = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    // Joined to a letter or digit before or after: part of a longer word.
    let glued_before = |at: usize| word(needle.first()) && at > 0 && word(bytes.get(at - 1));
    let glued_after = |end: usize| word(needle.last()) && word(bytes.get(end));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let end = i + needle.len();
        if bytes[i..].starts_with(needle) && !glued_before(i) && !glued_after(end) {
            out.extend_from_slice(REDACTED);
            i = end;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// [`redact`] for text.
pub(crate) fn redact_str(text: &str, secret: Option<&Secret>) -> String {
    match secret.map(Secret::expose).filter(|s| !s.is_empty()) {
        Some(s) if text.contains(s) => {
            String::from_utf8_lossy(&redact(text.as_bytes().to_vec(), secret)).into_owned()
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// `n` bytes of a pattern that shows where each byte came from.
    fn pattern(from: usize, n: usize) -> Vec<u8> {
        (from..from + n).map(|i| b'a' + (i % 26) as u8).collect()
    }

    #[test]
    fn a_short_output_is_kept_whole() {
        let mut t = Tail::new(10);
        t.push(b"hello ");
        t.push(b"you");
        assert_eq!(t.finish(None), b"hello you");
    }

    /// Issue 9, item 8: 100 MiB from a host keeps 8 MiB, its end, and says what went.
    #[test]
    fn a_large_output_keeps_its_tail_and_says_how_much_was_dropped() {
        let mut t = Tail::default();
        let chunk = 32 * 1024;
        let total = 100 * 1024 * 1024;
        let mut most = 0;
        for from in (0..total).step_by(chunk) {
            t.push(&pattern(from, chunk));
            most = most.max(t.buf.len());
        }
        assert!(most <= 2 * KEEP_MAX, "{most} bytes held at once");
        let out = t.finish(None);
        let note = format!(
            "[rpiprov: output too long: the first {} bytes were dropped, the last {KEEP_MAX} follow]\n",
            total - KEEP_MAX
        );
        assert_eq!(&out[..note.len()], note.as_bytes());
        assert!(out[note.len()..] == pattern(total - KEEP_MAX, KEEP_MAX));
    }

    #[test]
    fn lines_are_split_across_chunks_and_flushed() {
        let mut l = Lines::default();
        let mut got = Vec::new();
        l.push(b"one\ntw", |s, whole| got.push((s.to_string(), whole)));
        l.push(b"o\r\nthree", |s, whole| got.push((s.to_string(), whole)));
        l.finish(|s, whole| got.push((s.to_string(), whole)));
        let want = [("one", true), ("two", true), ("three", true)];
        assert_eq!(got, want.map(|(s, w)| (s.to_string(), w)));
    }

    #[test]
    fn an_over_long_line_comes_in_pieces_that_are_not_whole_lines() {
        let mut l = Lines::new(4);
        let mut got = Vec::new();
        l.push(b"abcdefghij\nok\nxy", |s, whole| {
            got.push((s.to_string(), whole))
        });
        l.finish(|s, whole| got.push((s.to_string(), whole)));
        let want = [
            ("abcd", false),
            ("efgh", false),
            ("ij", false),
            ("ok", true),
            ("xy", true),
        ];
        assert_eq!(got, want.map(|(s, w)| (s.to_string(), w)));
    }

    /// Issue 9, item 8: one 64 MiB line in 32 KiB chunks. Searching the whole pending line
    /// for a newline at every chunk took minutes; each byte is now looked at once.
    #[test]
    fn a_huge_line_is_scanned_once_and_never_held_whole() {
        let mut l = Lines::default();
        let chunk = vec![b'x'; 32 * 1024];
        let started = Instant::now();
        let (mut pieces, mut bytes, mut most) = (0, 0, 0);
        for _ in 0..2048 {
            l.push(&chunk, |s, whole| {
                assert!(!whole);
                pieces += 1;
                bytes += s.len();
            });
            most = most.max(l.buf.len());
        }
        l.push(b"\nnext\n", |s, whole| {
            if whole {
                assert_eq!(s, "next");
            } else {
                bytes += s.len();
            }
        });
        assert_eq!(bytes, 64 * 1024 * 1024);
        assert_eq!(pieces, 1024);
        assert!(most < LINE_MAX, "{most} bytes of one line held");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn secrets_are_redacted_in_bytes_and_text() {
        let s = Secret::new("pw1");
        assert_eq!(
            redact(b"pw1\na pw1 b=pw1; pw\npw1".to_vec(), Some(&s)),
            b"<redacted>\na <redacted> b=<redacted>; pw\n<redacted>"
        );
        // Inside a longer word it is ordinary text.
        assert_eq!(
            redact(b"xpw1 pw1x pw1pw1".to_vec(), Some(&s)),
            b"xpw1 pw1x pw1pw1"
        );
        let weak = Secret::new("raspberry");
        assert_eq!(
            redact_str("raspberrypi: raspberry", Some(&weak)),
            "raspberrypi: <redacted>"
        );
        // Edges that are not letters or digits need no boundary.
        let sym = Secret::new("#pw!");
        assert_eq!(redact_str("a#pw!b", Some(&sym)), "a<redacted>b");
        assert_eq!(redact(b"pw1".to_vec(), None), b"pw1");
        assert_eq!(redact(b"x".to_vec(), Some(&Secret::new(""))), b"x");
        assert_eq!(redact_str("say pw1", Some(&s)), "say <redacted>");
        let mut t = Tail::new(8);
        t.push(b"0123456789 pw1");
        assert_eq!(
            t.finish(Some(&s)),
            b"[rpiprov: output too long: the first 6 bytes were dropped, the last 8 follow]\n6789 <redacted>"
        );
    }
}
