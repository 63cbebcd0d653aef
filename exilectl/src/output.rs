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

/// `12.5%`.
pub fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

/// `1.2 GiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // display only
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `3m ago`, `in 2h`, `-` for an unset time (0).
pub fn ago(at_unix_ms: i64, now_unix_ms: i64) -> String {
    if at_unix_ms <= 0 {
        return "-".into();
    }
    let delta = now_unix_ms - at_unix_ms;
    if delta >= 0 {
        format!("{} ago", span(delta / 1000))
    } else {
        // Round up so a token made for 1h reads "in 1h", not "in 59m".
        format!("in {}", span((-delta + 999) / 1000))
    }
}

/// `45s`, `3m`, `2h`, `5d`: the largest whole unit.
pub fn span(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `1d 2h 3m` for an uptime.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h) {
        (0, 0) if m == 0 => format!("{s}s"),
        (0, 0) => format!("{m}m {s}s"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
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
    fn human_units() {
        assert_eq!(percent(12.49), "12.5%");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(ago(0, 10_000), "-");
        assert_eq!(ago(1_000, 181_000), "3m ago");
        assert_eq!(ago(7_200_000 + 1000, 1000), "in 2h");
        assert_eq!(uptime(3 * 86_400 + 3600 + 120), "3d 1h 2m");
        assert_eq!(uptime(59), "59s");
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
