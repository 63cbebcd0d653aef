//! Drawing `top`: the header (who, where, link state, view tabs), the current view, and the
//! bottom line (prompt, confirmation, status or key hints). Pure functions of `App`.

pub mod builds;
pub mod detail;
pub mod help;
pub mod instances;
pub mod logpane;
pub mod spawners;
pub mod table;
pub mod theme;

#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::action::{Conn, View};
use super::app::{App, Mode};
use crate::output;
use theme::Role;

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    header(app, frame, head);
    match (&app.detail, app.view) {
        (Some(d), _) => detail::render(frame, body, app, d),
        (None, View::Spawners) => spawners::render(frame, body, app),
        (None, View::Instances) => instances::render(frame, body, app),
        (None, View::Builds) => builds::render(frame, body, app),
    }
    footer(app, frame, foot);
    if app.mode == Mode::Help {
        help::render(frame, body, app);
    }
}

/// `Instances 3/12 /eu`: rows shown of all, and the filter.
pub fn list_title(app: &App, name: &str, shown: usize, total: usize) -> String {
    let mut t = format!(" {name} {shown}/{total} ");
    if !app.filter.is_empty() {
        t.push_str(&format!("/{} ", output::clean(&app.filter)));
    }
    t
}

fn conn_span(app: &App) -> Span<'static> {
    match &app.conn {
        Conn::Live if app.synced => Span::styled("● live", theme::style(app, Role::Good)),
        Conn::Live => Span::styled("◌ resyncing", theme::style(app, Role::Warn)),
        Conn::Connecting { attempt: 0 } => {
            Span::styled("◌ connecting", theme::style(app, Role::Warn))
        }
        Conn::Connecting { attempt } => Span::styled(
            format!("◌ reconnecting (attempt {})", attempt + 1),
            theme::style(app, Role::Warn),
        ),
        Conn::Retrying {
            attempt,
            in_ms,
            error,
        } => Span::styled(
            format!(
                "✖ retry {} in {:.1}s: {}",
                attempt + 1,
                *in_ms as f64 / 1000.0,
                output::clean(error)
            ),
            theme::style(app, Role::Bad),
        ),
    }
}

fn header(app: &App, frame: &mut Frame, area: Rect) {
    let id = &app.identity;
    let sep = || Span::styled(" │ ", theme::style(app, Role::Border));
    let who = if id.subject.is_empty() {
        "-".to_owned()
    } else {
        format!("{} ({})", id.subject, id.role)
    };
    let first = Line::from(vec![
        Span::styled("exile top ", theme::style(app, Role::Title)),
        conn_span(app),
        sep(),
        Span::raw(format!("ctx {}", output::or_dash(&id.context))),
        sep(),
        Span::raw(id.master.clone()),
        sep(),
        Span::raw(output::clean(&who)),
    ]);
    let mut tabs = Vec::new();
    for v in View::ALL {
        let count = match v {
            View::Spawners => app.spawners.len(),
            View::Instances => app.instances.len(),
            View::Builds => app.builds.len(),
        };
        let text = format!(" {} {} {count} ", v.index() + 1, v.title());
        let style = if v == app.view && app.detail.is_none() {
            theme::style(app, Role::Selected)
        } else {
            theme::style(app, Role::Dim)
        };
        tabs.push(Span::styled(text, style));
    }
    let players: u32 = app.instances.values().map(|i| i.players).sum();
    tabs.push(Span::raw(format!("  players {players}")));
    frame.render_widget(Paragraph::new(vec![first, Line::from(tabs)]), area);
}

fn footer(app: &App, frame: &mut Frame, area: Rect) {
    let key = |k: &'static str| Span::styled(k, theme::style(app, Role::Key));
    let line = match &app.mode {
        Mode::Filter => Line::from(vec![
            key("/"),
            Span::raw(output::clean(&app.filter)),
            Span::raw("█"),
        ]),
        Mode::Command(text) => Line::from(vec![
            key(":"),
            Span::raw(output::clean(text)),
            Span::raw("█"),
        ]),
        Mode::Console(text) => {
            let mut spans = vec![
                key("console"),
                Span::raw(format!(
                    " {}> {}█",
                    app.detail.as_ref().map_or("", |d| d.target.id()),
                    output::clean(text)
                )),
            ];
            // The answer to the last line stays in sight while the next one is typed.
            if let Some(s) = &app.status {
                spans.push(Span::raw("  "));
                spans.push(Span::styled(
                    output::clean(&s.text),
                    theme::style(app, if s.error { Role::Bad } else { Role::Good }),
                ));
            }
            Line::from(spans)
        }
        Mode::Confirm(op) => Line::from(vec![
            Span::styled(output::clean(&op.question()), theme::style(app, Role::Warn)),
            Span::raw(" "),
            key("[y/N]"),
        ]),
        Mode::Help | Mode::Normal => match &app.status {
            Some(s) => Line::from(Span::styled(
                output::clean(&s.text),
                theme::style(app, if s.error { Role::Bad } else { Role::Good }),
            )),
            None => Line::from(hints(app, key)),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hints(app: &App, key: impl Fn(&'static str) -> Span<'static>) -> Vec<Span<'static>> {
    let pairs: &[(&str, &str)] = match (&app.detail, app.view) {
        (Some(_), _) => &[
            ("esc", "back"),
            ("c", "console"),
            ("p", "pause"),
            ("↑↓", "scroll"),
            ("G", "follow"),
            ("?", "help"),
        ],
        (None, View::Spawners) => &[
            ("enter", "detail"),
            ("n", "spawn here"),
            ("d/u", "drain/undrain"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (None, View::Instances) => &[
            ("enter", "detail"),
            ("n", "spawn"),
            ("s", "stop"),
            ("r", "restart"),
            ("X", "remove"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (None, View::Builds) => &[("/", "filter"), ("o", "sort"), ("?", "help"), ("q", "quit")],
    };
    let mut spans = Vec::new();
    for (k, what) in pairs {
        spans.push(key(k));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    spans
}
