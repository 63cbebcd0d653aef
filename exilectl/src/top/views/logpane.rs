//! The detail view's live log: the followed output's last lines, with its pause and
//! scroll state in the title.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};

use super::theme::{self, Role};
use crate::output;
use crate::top::app::App;
use crate::top::logbuf::LogBuf;

pub fn render(frame: &mut Frame, area: Rect, app: &App, log: &LogBuf) {
    let height = usize::from(area.height.saturating_sub(2));
    let state = match (&log.ended, log.paused, log.back()) {
        (Some(why), _, _) => format!("ended: {}", output::clean(why)),
        (None, true, 0) => "paused".into(),
        (None, true, n) => format!("paused, {n} lines below"),
        (None, false, 0) => "following".into(),
        (None, false, n) => format!("scrolled back, {n} lines below"),
    };
    let lines: Vec<Line> = log.visible(height).map(Line::raw).collect();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme::style(app, Role::Border))
        .title(format!(" Log ({state}, {} lines) ", log.len()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
