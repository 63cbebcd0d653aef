//! Printing results as a compact table, JSON or YAML, and the human units tables use.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// Output format chosen with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty JSON (one compact object per line for `watch`).
    Json,
    /// YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML, or hands it to `table` to print for people.
pub fn emit<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<()> {
    match format {
        Format::Table => print_line(table(value).trim_end()),
        Format::Json => print_data_line(&json(value, true)?),
        // The YAML emitter writes any character a terminal could obey as an escape in a
        // double-quoted scalar.
        Format::Yaml => print_data_line(
            serde_yaml::to_string(value)
                .context("cannot encode YAML")?
                .trim_end(),
        ),
    }
}

/// JSON text of `value` (pretty or one line) with no character a terminal would obey:
/// serde_json escapes C0 controls, and this escapes what it leaves raw (DEL, C1 such as
/// U+009B, a one-character CSI) the JSON way, which only occurs inside strings.
pub fn json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Result<String> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .context("cannot encode JSON")?;
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return Ok(text);
    }
    Ok(text
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect())
}

/// Prints one line of JSON or YAML made by [`emit`] or [`json`], which escape in their own
/// syntax, treating a closed pipe as success.
pub fn print_data_line(text: &str) -> Result<()> {
    print_bytes(format!("{text}\n").as_bytes())
}

/// Prints one line, treating a closed pipe (`| head`) as success. Whatever a table or a
/// sentence carries from a game or a user, control and escape sequences are shown, not
/// obeyed (cells are cleaned too, so columns stay aligned; this is the safety net).
pub fn print_line(text: &str) -> Result<()> {
    print_bytes(format!("{}\n", clean_text(text)).as_bytes())
}

/// Writes raw bytes to standard output; a closed pipe ends the program quietly.
pub fn print_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write to standard output"),
    }
}

/// A borderless table with a header row, like kubectl's.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// Renders a table, trimming the padding comfy-table leaves at line ends.
pub fn render(t: &Table) -> String {
    t.lines()
        .map(|l| {
            let l = l.trim_end();
            l.strip_prefix(' ').unwrap_or(l).to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two-column `KEY  VALUE` listing for a single object.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| {
            format!("{:width$}  {v}", format!("{k}:"))
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub use exile_api::format::{ago, bytes, duration as uptime, host_cpu, percent};

/// A spinner with `msg` and the time elapsed, on stderr when it is a terminal (hidden
/// otherwise, so scripts and pipes see only the result), for work that gives no progress of
/// its own to show: waiting for a spawn, a backup, a restore.
pub fn spinner(msg: impl Into<std::borrow::Cow<'static, str>>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(msg);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// `RUNNING` → `Running`, `TCP_UDP` → `Tcp udp`… for tables.
pub fn title(upper_snake: &str) -> String {
    let lower = upper_snake.to_ascii_lowercase().replace('_', " ");
    let mut chars = lower.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `-` for an empty string, so table columns stay readable.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// Text a user or a game chose (a command, a message), made harmless for a terminal on one
/// line: control characters, escape sequences' ESC included, are shown as `\u{1b}`.
pub fn clean(s: &str) -> String {
    escape_controls(s, |_| false)
}

/// Like [`clean`] for text of several lines (a manifest): line feeds and tabs stay.
pub fn clean_text(s: &str) -> String {
    escape_controls(s, |c| matches!(c, '\n' | '\t'))
}

/// Neutralises a byte stream of output (a followed log) chunk by chunk: like [`clean_text`],
/// and a carriage return before a line feed stays; a UTF-8 character or a CRLF split
/// across chunks is held until the next one.
#[derive(Debug, Default)]
pub struct OutputCleaner {
    pending: Vec<u8>,
}

impl OutputCleaner {
    /// The printable text of `bytes`, appended to whatever the last chunk left pending.
    pub fn feed(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut hold = match std::str::from_utf8(&self.pending) {
            Ok(_) => 0,
            // An incomplete character at the very end waits for its other bytes.
            Err(e) if e.error_len().is_none() => self.pending.len() - e.valid_up_to(),
            Err(_) => 0,
        };
        if self.pending.len() > hold && self.pending[self.pending.len() - hold - 1] == b'\r' {
            hold += 1;
        }
        let rest = self.pending.split_off(self.pending.len() - hold);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        clean_output(&text)
    }

    /// What is still held, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        clean_output(&text)
    }
}

fn clean_output(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let crlf = c == '\r' && chars.peek() == Some(&'\n');
        if c.is_control() && !matches!(c, '\n' | '\t') && !crlf {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn escape_controls(s: &str, keep: impl Fn(char) -> bool) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() && !keep(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(title("RUNNING"), "Running");
        assert_eq!(title("TCP_UDP"), "Tcp udp");
        assert_eq!(or_dash(""), "-");
    }

    #[test]
    fn user_text_cannot_drive_the_terminal() {
        assert_eq!(clean("./oa --port {port}"), "./oa --port {port}");
        assert_eq!(clean("a\x1b[2Jb\nc"), "a\\u{1b}[2Jb\\u{a}c");
        assert_eq!(
            clean_text("[run]\n\tx = \"\x07\"\n"),
            "[run]\n\tx = \"\\u{7}\"\n"
        );
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m");
    }

    #[test]
    fn output_streams_are_neutralised_across_chunk_boundaries() {
        let mut c = OutputCleaner::default();
        let euro = "€".as_bytes();
        let mut out = c.feed(b"ok\r");
        out += &c.feed(b"\nx\x1b]0;t\x07\t");
        out += &c.feed(&euro[..1]);
        out += &c.feed(&euro[1..]);
        out += &c.feed(b"\x9b\r");
        out += &c.finish();
        assert_eq!(out, "ok\r\nx\\u{1b}]0;t\\u{7}\t€\u{fffd}\\u{d}");
    }

    #[test]
    fn json_escapes_what_serde_json_leaves_raw() {
        let v = serde_json::json!({"l": "\x1b]0;t\x07\u{9b}2J\x7f"});
        let text = json(&v, false).unwrap();
        assert_eq!(text, r#"{"l":"\u001b]0;t\u0007\u009b2J\u007f"}"#);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert!(json(&v, true).unwrap().contains('\n'));
    }

    #[test]
    fn fields_align() {
        let s = fields(&[
            ("id", "x".into()),
            ("state", "Running".into()),
            ("e", String::new()),
        ]);
        assert_eq!(s, "id:     x\nstate:  Running\ne:");
    }

    #[test]
    fn tables_are_compact() {
        let mut t = table(&["ID", "STATE"]);
        t.add_row(["a", "Running"]);
        let out = render(&t);
        assert!(out.starts_with("ID"), "{out:?}");
        assert!(out.lines().all(|l| !l.ends_with(' ')));
    }
}
