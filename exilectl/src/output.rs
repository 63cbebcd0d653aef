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

pub use exile_api::format::{ago, bytes, duration as uptime, host_cpu, percent};

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
