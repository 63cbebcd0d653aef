//! The `?` overlay: every key, from the one list README also shows.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::theme::{self, Role};
use crate::top::app::App;

/// Every key `top` knows, with what it does.
pub const KEYS: &[(&str, &str)] = &[
    ("1 2 3", "Spawners, Instances, Builds"),
    (
        ":name",
        "switch view (:spawners :instances :builds), :q quits",
    ),
    (
        "↑↓ j k PgUp PgDn",
        "move the selection (detail: scroll the log)",
    ),
    (
        "g G / Home End",
        "first / last row (detail G: follow the log)",
    ),
    ("enter", "detail of the selected spawner or instance"),
    ("esc", "back: close detail, help, or clear the filter"),
    ("/", "filter rows (ids, names, states, labels…)"),
    ("o O", "sort by the next column / reverse the order"),
    ("n", "spawn (on the selected spawner, or the master places)"),
    ("S s r X", "start, stop, restart, remove the instance"),
    ("d u X", "drain, undrain, remove the spawner"),
    ("c", "console: send a line to the instance (detail)"),
    ("p", "pause or resume the log pane (detail)"),
    ("y n", "answer the confirmation"),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
    ("Ctrl-Z", "suspend to the shell (fg resumes)"),
];

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let width = area.width.min(76);
    let height = area
        .height
        .min(u16::try_from(KEYS.len() + 2).unwrap_or(u16::MAX));
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>17} "), theme::style(app, Role::Key)),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys (esc closes) ")
                .border_style(theme::style(app, Role::Title)),
        ),
        popup,
    );
}
