//! The Instances view: one row per game-server instance, live from the Watch stream.

use exile_api::v1 as pb;
use ratatui::Frame;
use ratatui::layout::Rect;

use super::table::{self, Column, SortKey};
use super::theme;
use crate::commands::instance::ports;
use crate::output;
use crate::top::action::View;
use crate::top::app::App;
use crate::view::{instance_build, instance_state};

fn text(s: impl Into<String>) -> SortKey {
    SortKey::Text(s.into())
}

/// Seconds the current process has run, 0 when none runs.
fn uptime_secs(app: &App, i: &pb::Instance) -> u64 {
    if i.started_at_unix_ms <= 0 || i.pid == 0 {
        return 0;
    }
    u64::try_from((app.now_ms - i.started_at_unix_ms) / 1000).unwrap_or(0)
}

fn players(i: &pb::Instance) -> String {
    if i.max_players > 0 {
        format!("{}/{}", i.players, i.max_players)
    } else {
        i.players.to_string()
    }
}

pub const COLUMNS: &[Column<pb::Instance>] = &[
    Column {
        title: "ID",
        width: 17,
        priority: 0,
        cell: |_, i| i.id.clone(),
        key: |_, i| text(&i.id),
        tone: None,
    },
    Column {
        title: "NAME",
        width: 14,
        priority: 4,
        cell: |_, i| output::or_dash(&i.display_name),
        key: |_, i| text(&i.display_name),
        tone: None,
    },
    Column {
        title: "SPAWNER",
        width: 16,
        priority: 3,
        cell: |_, i| i.spawner_id.clone(),
        key: |_, i| text(&i.spawner_id),
        tone: None,
    },
    Column {
        title: "STATE",
        width: 10,
        priority: 0,
        cell: |_, i| output::title(&instance_state(i.state)),
        key: |_, i| text(instance_state(i.state)),
        tone: Some(|i| theme::instance_role(i.state)),
    },
    Column {
        title: "BUILD",
        width: 16,
        priority: 4,
        cell: |_, i| output::or_dash(&instance_build(i)),
        key: |_, i| text(instance_build(i)),
        tone: None,
    },
    Column {
        title: "PORTS",
        width: 14,
        priority: 5,
        cell: |_, i| ports(i),
        key: |_, i| SortKey::Num(i.ports.first().map_or(0.0, |p| f64::from(p.port))),
        tone: None,
    },
    Column {
        title: "PLAYERS",
        width: 7,
        priority: 2,
        cell: |_, i| players(i),
        key: |_, i| SortKey::Num(f64::from(i.players)),
        tone: None,
    },
    Column {
        title: "CPU",
        width: 7,
        priority: 1,
        cell: |_, i| output::percent(i.resources.unwrap_or_default().cpu_percent),
        key: |_, i| SortKey::Num(i.resources.unwrap_or_default().cpu_percent),
        tone: None,
    },
    Column {
        title: "MEMORY",
        width: 9,
        priority: 3,
        cell: |_, i| output::bytes(i.resources.unwrap_or_default().memory_bytes),
        // Display only: precision past 2^53 bytes does not matter for ordering.
        #[allow(clippy::cast_precision_loss)]
        key: |_, i| SortKey::Num(i.resources.unwrap_or_default().memory_bytes as f64),
        tone: None,
    },
    Column {
        title: "UPTIME",
        width: 8,
        priority: 4,
        cell: |app, i| match uptime_secs(app, i) {
            0 => "-".into(),
            s => output::uptime(s),
        },
        #[allow(clippy::cast_precision_loss)]
        key: |app, i| SortKey::Num(uptime_secs(app, i) as f64),
        tone: None,
    },
    Column {
        title: "RESTARTS",
        width: 8,
        priority: 6,
        cell: |_, i| i.restart_count.to_string(),
        key: |_, i| SortKey::Num(f64::from(i.restart_count)),
        tone: None,
    },
];

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.instance_rows();
    let title = super::list_title(app, "Instances", rows.len(), app.instances.len());
    table::render(frame, area, app, View::Instances, title, COLUMNS, &rows);
}
