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
    let text = match format {
        Format::Table => table(value),
        Format::Json => serde_json::to_string_pretty(value).context("cannot encode JSON")?,
        Format::Yaml => serde_yaml::to_string(value).context("cannot encode YAML")?,
    };
    print_line(text.trim_end())
}

/// Prints one line, treating a closed pipe (`| head`) as success.
pub fn print_line(text: &str) -> Result<()> {
    print_bytes(format!("{text}\n").as_bytes())
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
