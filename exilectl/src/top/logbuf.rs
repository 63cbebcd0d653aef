//! The log pane's memory: the last lines of a followed log, neutralised once as they arrive,
//! with pause and scroll-back that hold the view still while new output keeps coming.

use std::collections::VecDeque;

use crate::output;

/// Lines kept; older ones fall off.
pub const MAX_LINES: usize = 2000;

/// A followed log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogBuf {
    lines: VecDeque<String>,
    /// Bytes of a line not yet ended by a newline.
    partial: Vec<u8>,
    /// Lines between the view's last line and the end (0: at the end).
    back: usize,
    /// Paused: new lines do not move the view.
    pub paused: bool,
    /// Why the follow ended, when it did.
    pub ended: Option<String>,
}

impl LogBuf {
    /// Appends raw output; `skipped` bytes were lost before it.
    pub fn push(&mut self, data: &[u8], skipped: u64) {
        if skipped > 0 {
            self.add(format!("[… {skipped} bytes of output skipped …]"));
        }
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..nl]);
            let bytes = std::mem::take(&mut self.partial);
            self.add(line_text(&bytes));
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        // A line that never ends must not grow without bound.
        if self.partial.len() > 64 * 1024 {
            let bytes = std::mem::take(&mut self.partial);
            self.add(line_text(&bytes));
        }
    }

    fn add(&mut self, line: String) {
        self.lines.push_back(line);
        if self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
        // Scrolled back or paused: keep showing the same lines.
        if (self.paused || self.back > 0) && self.back < self.lines.len() {
            self.back += 1;
        }
    }

    /// Scrolls by `rows` (negative: back in time).
    pub fn scroll(&mut self, rows: isize) {
        let max = self.lines.len().saturating_sub(1);
        self.back = if rows < 0 {
            (self.back + rows.unsigned_abs()).min(max)
        } else {
            self.back.saturating_sub(rows.unsigned_abs())
        };
    }

    /// Back to the end, following.
    pub fn follow(&mut self) {
        self.back = 0;
        self.paused = false;
    }

    /// The `height` lines the pane shows, oldest first.
    pub fn visible(&self, height: usize) -> impl Iterator<Item = &str> {
        let end = self.lines.len().saturating_sub(self.back);
        let start = end.saturating_sub(height);
        self.lines.range(start..end).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Lines hidden below the view.
    pub fn back(&self) -> usize {
        self.back
    }
}

/// One line of game output made safe for the terminal: tabs become spaces, a carriage
/// return at the end goes, every other control or escape sequence is shown, not obeyed.
fn line_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches('\r').replace('\t', "    ");
    output::clean(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(b: &LogBuf, h: usize) -> Vec<String> {
        b.visible(h).map(str::to_owned).collect()
    }

    #[test]
    fn lines_split_across_chunks_and_escapes_are_neutralised() {
        let mut b = LogBuf::default();
        b.push(b"one\ntw", 0);
        b.push(b"o\r\n\x1b]0;owned\x07x\n", 0);
        assert_eq!(shown(&b, 10), ["one", "two", "\\u{1b}]0;owned\\u{7}x"]);
        b.push(b"", 12);
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn pause_and_scroll_hold_the_view() {
        let mut b = LogBuf::default();
        for i in 0..10 {
            b.push(format!("{i}\n").as_bytes(), 0);
        }
        assert_eq!(shown(&b, 2), ["8", "9"]);
        b.paused = true;
        b.push(b"10\n", 0);
        assert_eq!(shown(&b, 2), ["8", "9"]);
        b.scroll(-3);
        assert_eq!(shown(&b, 2), ["5", "6"]);
        b.scroll(100);
        assert_eq!(shown(&b, 2), ["9", "10"]);
        b.scroll(-100);
        assert_eq!(shown(&b, 2), ["0"]);
        b.follow();
        b.push(b"11\n", 0);
        assert_eq!(shown(&b, 2), ["10", "11"]);
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut b = LogBuf::default();
        for i in 0..MAX_LINES + 5 {
            b.push(format!("{i}\n").as_bytes(), 0);
        }
        assert_eq!(b.len(), MAX_LINES);
        assert_eq!(shown(&b, 1), [(MAX_LINES + 4).to_string()]);
    }
}
