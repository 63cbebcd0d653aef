//! The list widget every view uses: columns that drop out by priority when the terminal is
//! narrow, a sort marker, the selection kept in view, and every cell neutralised.

use std::cmp::Ordering;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Row, Table};

use super::theme::{self, Role};
use crate::output;
use crate::top::action::View;
use crate::top::app::{App, Searchable};

/// What a column sorts by.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Text(String),
    Num(f64),
}

impl Eq for SortKey {}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Num(_), SortKey::Text(_)) => Ordering::Less,
            (SortKey::Text(_), SortKey::Num(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One column of a list view.
pub struct Column<T> {
    pub title: &'static str,
    /// Width in cells; text beyond it is cut.
    pub width: u16,
    /// 0 is always shown; higher numbers are hidden first when space runs out.
    pub priority: u8,
    pub cell: fn(&App, &T) -> String,
    pub key: fn(&App, &T) -> SortKey,
    /// The cell's colour by meaning (a state), when it has one.
    pub tone: Option<fn(&T) -> Role>,
}

/// Indexes of the columns that fit in `width`, in their own order: the most important
/// first, each further one only while the row still fits.
pub fn fitting<T>(columns: &[Column<T>], width: u16) -> Vec<usize> {
    let mut by_priority: Vec<usize> = (0..columns.len()).collect();
    by_priority.sort_by_key(|&i| columns[i].priority);
    let mut used = 0u16;
    let mut chosen = Vec::new();
    for i in by_priority {
        let need = columns[i].width + u16::from(!chosen.is_empty());
        if used + need > width && columns[i].priority > 0 {
            continue;
        }
        used += need;
        chosen.push(i);
    }
    chosen.sort_unstable();
    chosen
}

/// Draws a view's `rows` as a table in `area` with a titled border.
pub fn render<T: Searchable>(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    view: View,
    title: String,
    columns: &[Column<T>],
    rows: &[&T],
) {
    let ids: Vec<&str> = rows.iter().map(|r| r.id()).collect();
    let selected = app.selected_index(view, &ids);
    let sort = app.sort[view.index()];
    let inner_width = area.width.saturating_sub(2);
    let shown = fitting(columns, inner_width);
    // Rows that fit under the border and the header line.
    let height = usize::from(area.height.saturating_sub(3));
    let offset = match selected {
        Some(s) if height > 0 && s >= height => s + 1 - height,
        _ => 0,
    };
    let header = Row::new(shown.iter().map(|&i| {
        let c = &columns[i];
        let mark = match sort {
            (col, false) if col == i => "▲",
            (col, true) if col == i => "▼",
            _ => "",
        };
        Cell::from(format!("{}{mark}", c.title))
    }))
    .style(theme::style(app, Role::Header));
    let body = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(n, row)| {
            let r = Row::new(shown.iter().map(|&i| {
                let c = &columns[i];
                let cell = Cell::from(output::clean(&(c.cell)(app, row)));
                match c.tone {
                    Some(tone) => cell.style(theme::style(app, tone(row))),
                    None => cell,
                }
            }));
            if Some(n) == selected {
                r.style(theme::style(app, Role::Selected))
            } else {
                r
            }
        });
    let widths = shown.iter().map(|&i| Constraint::Length(columns[i].width));
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(1)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme::style(app, Role::Border))
                .title(Line::from(title)),
        );
    frame.render_widget(table, area);
}

/// `███░░ 45%` for a table cell of `width` bars.
pub fn bar(fraction: f64, width: usize) -> String {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Rounding a value in 0..=width to a count of cells.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let full = (f * width as f64).round() as usize;
    format!(
        "{}{} {:>3.0}%",
        "█".repeat(full),
        "░".repeat(width - full),
        f * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(title: &'static str, width: u16, priority: u8) -> Column<()> {
        Column {
            title,
            width,
            priority,
            cell: |_, ()| String::new(),
            key: |_, ()| SortKey::Num(0.0),
            tone: None,
        }
    }

    #[test]
    fn narrow_widths_drop_the_least_important_columns_first() {
        let cols = [col("A", 10, 0), col("B", 10, 2), col("C", 10, 1)];
        assert_eq!(fitting(&cols, 40), [0, 1, 2]);
        assert_eq!(fitting(&cols, 25), [0, 2]);
        assert_eq!(fitting(&cols, 12), [0]);
        // The must-have column stays even when nothing fits.
        assert_eq!(fitting(&cols, 3), [0]);
    }

    #[test]
    fn keys_sort_numbers_numerically() {
        let mut v = [SortKey::Num(10.0), SortKey::Num(9.0), SortKey::Num(100.0)];
        v.sort();
        assert_eq!(
            v,
            [SortKey::Num(9.0), SortKey::Num(10.0), SortKey::Num(100.0)]
        );
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0.5, 4), "██░░  50%");
        assert_eq!(bar(f64::NAN, 2), "░░   0%");
        assert_eq!(bar(3.0, 2), "██ 100%");
    }
}
