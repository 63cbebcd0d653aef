//! The Builds view: uploaded versions, where they are active and how much they are used.

use exile_api::v1 as pb;
use ratatui::Frame;
use ratatui::layout::Rect;

use super::table::{self, Column, SortKey};
use crate::output;
use crate::top::action::View;
use crate::top::app::App;

fn text(s: impl Into<String>) -> SortKey {
    SortKey::Text(s.into())
}

pub const COLUMNS: &[Column<pb::Build>] = &[
    Column {
        title: "NAME",
        width: 16,
        priority: 0,
        cell: |_, b| b.name.clone(),
        key: |_, b| text(&b.name),
        tone: None,
    },
    Column {
        title: "VERSION",
        width: 12,
        priority: 0,
        cell: |_, b| b.version.clone(),
        key: |_, b| text(&b.version),
        tone: None,
    },
    Column {
        title: "ID",
        width: 16,
        priority: 4,
        cell: |_, b| b.id.clone(),
        key: |_, b| text(&b.id),
        tone: None,
    },
    Column {
        title: "ACTIVE",
        width: 6,
        priority: 1,
        cell: |_, b| {
            if b.activations.is_empty() {
                "no"
            } else {
                "yes"
            }
            .into()
        },
        key: |_, b| SortKey::Num(if b.activations.is_empty() { 0.0 } else { 1.0 }),
        tone: None,
    },
    Column {
        title: "INSTANCES",
        width: 9,
        priority: 1,
        cell: |_, b| b.instance_count.to_string(),
        key: |_, b| SortKey::Num(f64::from(b.instance_count)),
        tone: None,
    },
    Column {
        title: "SPAWNERS",
        width: 8,
        priority: 2,
        cell: |_, b| b.spawner_count.to_string(),
        key: |_, b| SortKey::Num(f64::from(b.spawner_count)),
        tone: None,
    },
    Column {
        title: "SIZE",
        width: 9,
        priority: 3,
        cell: |_, b| output::bytes(b.size),
        #[allow(clippy::cast_precision_loss)]
        key: |_, b| SortKey::Num(b.size as f64),
        tone: None,
    },
    Column {
        title: "UPLOADED",
        width: 9,
        priority: 3,
        cell: |app, b| output::ago(b.created_at_unix_ms, app.now_ms),
        #[allow(clippy::cast_precision_loss)]
        key: |_, b| SortKey::Num(b.created_at_unix_ms as f64),
        tone: None,
    },
    Column {
        title: "BY",
        width: 10,
        priority: 5,
        cell: |_, b| output::or_dash(&b.created_by),
        key: |_, b| text(&b.created_by),
        tone: None,
    },
];

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.build_rows();
    let title = super::list_title(app, "Builds", rows.len(), app.builds.len());
    table::render(frame, area, app, View::Builds, title, COLUMNS, &rows);
}
