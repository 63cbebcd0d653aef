//! The Spawners view: hosts with their state, region, load and resource gauges.

use exile_api::v1 as pb;
use ratatui::Frame;
use ratatui::layout::Rect;

use super::table::{self, Column, SortKey};
use super::theme;
use crate::output;
use crate::top::action::View;
use crate::top::app::App;
use crate::view::spawner_state;

fn text(s: impl Into<String>) -> SortKey {
    SortKey::Text(s.into())
}

/// Host CPU use as a fraction of all its cores (`exile_api::format::cpu_share`, as every
/// client shows it).
pub fn cpu_fraction(r: &pb::Resources) -> f64 {
    exile_api::format::cpu_share(r) / 100.0
}

/// `used / total` as a fraction, 0 when the total is unknown.
#[allow(clippy::cast_precision_loss)] // display only
pub fn fraction(used: u64, total: u64) -> f64 {
    exile_api::format::percent_of(used as f64, total as f64) / 100.0
}

fn res(s: &pb::Spawner) -> pb::Resources {
    s.resources.unwrap_or_default()
}

pub const COLUMNS: &[Column<pb::Spawner>] = &[
    Column {
        title: "ID",
        width: 16,
        priority: 0,
        cell: |_, s| s.id.clone(),
        key: |_, s| text(&s.id),
        tone: None,
    },
    Column {
        title: "NAME",
        width: 14,
        priority: 3,
        cell: |_, s| output::or_dash(&s.name),
        key: |_, s| text(&s.name),
        tone: None,
    },
    Column {
        title: "STATE",
        width: 11,
        priority: 0,
        cell: |_, s| output::title(&spawner_state(s.state)),
        key: |_, s| text(spawner_state(s.state)),
        tone: Some(|s| theme::spawner_role(s.state)),
    },
    Column {
        title: "REGION",
        width: 10,
        priority: 2,
        cell: |_, s| output::or_dash(&s.region),
        key: |_, s| text(&s.region),
        tone: None,
    },
    Column {
        title: "LOAD",
        width: 7,
        priority: 1,
        cell: |_, s| format!("{}/{}", s.instance_count, s.capacity),
        key: |_, s| SortKey::Num(fraction(u64::from(s.instance_count), u64::from(s.capacity))),
        tone: None,
    },
    Column {
        title: "CPU",
        width: 10,
        priority: 1,
        cell: |_, s| table::bar(cpu_fraction(&res(s)), 5),
        key: |_, s| SortKey::Num(cpu_fraction(&res(s))),
        tone: None,
    },
    Column {
        title: "MEM",
        width: 10,
        priority: 2,
        cell: |_, s| table::bar(fraction(res(s).memory_bytes, res(s).memory_total_bytes), 5),
        key: |_, s| SortKey::Num(fraction(res(s).memory_bytes, res(s).memory_total_bytes)),
        tone: None,
    },
    Column {
        title: "DISK",
        width: 10,
        priority: 4,
        cell: |_, s| table::bar(fraction(res(s).disk_used_bytes, res(s).disk_total_bytes), 5),
        key: |_, s| SortKey::Num(fraction(res(s).disk_used_bytes, res(s).disk_total_bytes)),
        tone: None,
    },
    Column {
        title: "DRAINED",
        width: 7,
        priority: 2,
        cell: |_, s| if s.drained { "yes" } else { "no" }.into(),
        key: |_, s| text(if s.drained { "yes" } else { "no" }),
        tone: None,
    },
    Column {
        title: "SEEN",
        width: 8,
        priority: 5,
        cell: |app, s| output::ago(s.last_seen_unix_ms, app.now_ms),
        #[allow(clippy::cast_precision_loss)]
        key: |_, s| SortKey::Num(s.last_seen_unix_ms as f64),
        tone: None,
    },
];

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.spawner_rows();
    let title = super::list_title(app, "Spawners", rows.len(), app.spawners.len());
    table::render(frame, area, app, View::Spawners, title, COLUMNS, &rows);
}
