//! The log view's buffer: raw output chunks from `InstanceService.StreamLogs` turned into
//! lines of text, capped in number. Pure, so it is unit-tested on the host.
//!
//! Chunks are cut wherever the spawner's reader happened to stop, so one may end in the middle
//! of a line or of a multi-byte character. Bytes are therefore kept until their line ends and
//! only whole lines are decoded (lossy UTF-8: a game printing invalid bytes still shows up).

use std::collections::VecDeque;

/// Lines kept by default: enough to scroll back through a busy minute, small enough to
/// re-render on every chunk.
pub const DEFAULT_MAX_LINES: usize = 2000;

/// An unfinished line longer than this is shown as a line of its own, so a game that never
/// prints a newline cannot grow the buffer without bound.
const MAX_PARTIAL_BYTES: usize = 16 * 1024;

/// Output of one instance as lines, the oldest dropped past a cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBuffer {
    lines: VecDeque<String>,
    /// Bytes after the last newline (possibly ending inside a character).
    partial: Vec<u8>,
    max_lines: usize,
    /// Lines dropped from the front to respect `max_lines`.
    dropped_lines: u64,
    /// Bytes the server reported as skipped since the buffer was made.
    skipped_bytes: u64,
}

impl Default for LogBuffer {
    fn default() -> Self {
        LogBuffer::new(DEFAULT_MAX_LINES)
    }
}

impl LogBuffer {
    /// An empty buffer keeping at most `max_lines` lines (at least one).
    pub fn new(max_lines: usize) -> Self {
        LogBuffer {
            lines: VecDeque::new(),
            partial: Vec::new(),
            max_lines: max_lines.max(1),
            dropped_lines: 0,
            skipped_bytes: 0,
        }
    }

    /// Appends one chunk. `skipped` bytes were lost before it: the unfinished line (if any)
    /// cannot continue across the gap, so it is closed and a marker line shows the gap.
    pub fn push(&mut self, data: &[u8], skipped: u64) {
        if skipped > 0 {
            self.skipped_bytes = self.skipped_bytes.saturating_add(skipped);
            self.flush_partial();
            self.push_line(format!("… {skipped} bytes of output skipped …"));
        }
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            self.partial.extend_from_slice(line);
            let bytes = std::mem::take(&mut self.partial);
            self.push_line(decode_line(&bytes));
            rest = &tail[1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_PARTIAL_BYTES {
            // Keep a character cut by the chunk boundary for the next chunk to finish.
            let cut = complete_prefix_len(&self.partial);
            let tail = self.partial.split_off(cut);
            let head = std::mem::replace(&mut self.partial, tail);
            self.push_line(decode_line(&head));
        }
    }

    /// Adds a line of our own (a marker such as "reconnected"), closing any unfinished line.
    pub fn note(&mut self, text: &str) {
        self.flush_partial();
        self.push_line(text.to_owned());
    }

    /// Empties the buffer (counters included).
    pub fn clear(&mut self) {
        *self = LogBuffer::new(self.max_lines);
    }

    /// Whole lines, oldest first (the unfinished one is [`LogBuffer::partial`]).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// The unfinished last line as far as it decodes (a prompt such as `> ` shows at once).
    pub fn partial(&self) -> String {
        let done = complete_prefix_len(&self.partial);
        decode_line(&self.partial[..done])
    }

    /// The whole view as one text: lines joined by newlines, unfinished line last.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in self.lines() {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(&self.partial());
        out
    }

    /// Number of whole lines held.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when nothing at all was received.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.partial.is_empty()
    }

    /// Lines dropped from the front because of the cap.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// Bytes the server skipped (reader behind or log rotated).
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let bytes = std::mem::take(&mut self.partial);
            self.push_line(decode_line(&bytes));
        }
    }

    fn push_line(&mut self, line: String) {
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines {
            self.lines.pop_front();
            self.dropped_lines += 1;
        }
    }
}

/// Lossy UTF-8 of one line without its `\r` (Windows-style line ends).
fn decode_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Length of `bytes` without a trailing, incomplete UTF-8 sequence (one a later chunk may
/// finish). Invalid bytes are not "incomplete": they stay and decode as U+FFFD.
pub fn complete_prefix_len(bytes: &[u8]) -> usize {
    // A sequence is at most 4 bytes, so only the last 3 can start an unfinished one.
    for back in 1..=bytes.len().min(3) {
        let i = bytes.len() - back;
        let b = bytes[i];
        if b & 0b1100_0000 == 0b1000_0000 {
            // Continuation byte: look further back for the lead.
            continue;
        }
        let want = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 1,
        };
        return if want > back { i } else { bytes.len() };
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &LogBuffer) -> Vec<&str> {
        b.lines().collect()
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut b = LogBuffer::new(10);
        b.push(b"listening on port 7000\nrea", 0);
        assert_eq!(all(&b), ["listening on port 7000"]);
        assert_eq!(b.partial(), "rea");
        b.push(b"dy (instance i-1)\r\n", 0);
        assert_eq!(all(&b), ["listening on port 7000", "ready (instance i-1)"]);
        assert_eq!(b.partial(), "");
        assert_eq!(b.text(), "listening on port 7000\nready (instance i-1)\n");
    }

    #[test]
    fn a_character_cut_by_a_chunk_boundary_decodes_whole() {
        let word = "héllo €𝄞\n".as_bytes();
        // Every cut point, including inside the 2-, 3- and 4-byte characters.
        for cut in 0..word.len() {
            let mut b = LogBuffer::new(10);
            b.push(&word[..cut], 0);
            assert!(!b.partial().contains('\u{FFFD}'), "cut at {cut}");
            b.push(&word[cut..], 0);
            assert_eq!(all(&b), ["héllo €𝄞"], "cut at {cut}");
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_not_dropped() {
        let mut b = LogBuffer::new(10);
        b.push(b"a\xFFb\n", 0);
        assert_eq!(all(&b), ["a\u{FFFD}b"]);
    }

    #[test]
    fn keeps_only_the_newest_lines() {
        let mut b = LogBuffer::new(3);
        for i in 0..5 {
            b.push(format!("line {i}\n").as_bytes(), 0);
        }
        assert_eq!(all(&b), ["line 2", "line 3", "line 4"]);
        assert_eq!(b.dropped_lines(), 2);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn skipped_bytes_close_the_line_and_leave_a_marker() {
        let mut b = LogBuffer::new(10);
        b.push(b"half a li", 0);
        b.push(b"new\n", 4096);
        assert_eq!(
            all(&b),
            ["half a li", "… 4096 bytes of output skipped …", "new"]
        );
        assert_eq!(b.skipped_bytes(), 4096);
    }

    #[test]
    fn an_endless_line_is_flushed_without_cutting_a_character() {
        let mut b = LogBuffer::new(10);
        let mut big = vec![b'x'; MAX_PARTIAL_BYTES];
        big.extend_from_slice(&"€".as_bytes()[..2]);
        b.push(&big, 0);
        assert_eq!(b.len(), 1);
        assert_eq!(b.lines().next().map(str::len), Some(MAX_PARTIAL_BYTES));
        b.push(&"€".as_bytes()[2..], 0);
        assert_eq!(b.partial(), "€");
    }

    #[test]
    fn complete_prefix_only_holds_back_unfinished_sequences() {
        assert_eq!(complete_prefix_len(b""), 0);
        assert_eq!(complete_prefix_len(b"abc"), 3);
        assert_eq!(complete_prefix_len(&"é".as_bytes()[..1]), 0);
        assert_eq!(complete_prefix_len("é".as_bytes()), 2);
        assert_eq!(complete_prefix_len(&"a𝄞".as_bytes()[..4]), 1);
        // A lone continuation byte or 0xFF is invalid, not unfinished.
        assert_eq!(complete_prefix_len(b"a\x80"), 2);
        assert_eq!(complete_prefix_len(b"a\xFF"), 2);
    }

    #[test]
    fn notes_and_clear() {
        let mut b = LogBuffer::new(10);
        b.push(b"prompt> ", 0);
        b.note("— reconnected —");
        assert_eq!(all(&b), ["prompt> ", "— reconnected —"]);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.skipped_bytes(), 0);
    }
}
