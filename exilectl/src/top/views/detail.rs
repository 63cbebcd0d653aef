//! The detail view of one spawner or instance: its fields and labels, sparklines of CPU,
//! memory and players (history from the master, then live), its last events and its log.

use exile_api::v1 as pb;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};

use super::logpane;
use super::spawners::{cpu_fraction, fraction};
use super::table::bar;
use super::theme::{self, Role};
use crate::commands::instance::ports;
use crate::output;
use crate::top::action::Target;
use crate::top::app::{App, Detail};
use crate::view::{instance_build, instance_state, spawner_state};

pub fn render(frame: &mut Frame, area: Rect, app: &App, d: &Detail) {
    let [info, events, log] = Layout::vertical([
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Min(3),
    ])
    .areas(area);
    let [fields, charts] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(info);
    let (title, lines) = match &d.target {
        Target::Instance(id) => match app.instances.get(id) {
            Some(i) if !i.display_name.is_empty() => (
                format!(" Instance {id} · {} ", output::clean(&i.display_name)),
                instance_lines(app, i),
            ),
            Some(i) => (format!(" Instance {id} "), instance_lines(app, i)),
            None => (format!(" Instance {id} "), vec![Line::raw("removed")]),
        },
        Target::Spawner(id) => match app.spawners.get(id) {
            Some(s) => (format!(" Spawner {id} "), spawner_lines(app, s)),
            None => (format!(" Spawner {id} "), vec![Line::raw("removed")]),
        },
    };
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme::style(app, Role::Border))
                .title(Span::styled(title, theme::style(app, Role::Title))),
        ),
        fields,
    );
    sparklines(frame, charts, app, &d.history);
    let h = usize::from(events.height.saturating_sub(2));
    let mut recent: Vec<Line> = app
        .events_about(d.target.id())
        .rev()
        .take(h)
        .map(|l| Line::raw(output::clean(l)))
        .collect();
    recent.reverse();
    frame.render_widget(
        Paragraph::new(recent).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme::style(app, Role::Border))
                .title(" Last events "),
        ),
        events,
    );
    logpane::render(frame, log, app, &d.log);
}

fn field(app: &App, name: &'static str, value: String) -> [Span<'static>; 2] {
    [
        Span::styled(format!("{name} "), theme::style(app, Role::Dim)),
        Span::raw(format!("{}  ", output::clean(&value))),
    ]
}

fn labels(map: &std::collections::HashMap<String, String>) -> String {
    let mut v: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    output::or_dash(&v.join(","))
}

fn instance_lines(app: &App, i: &pb::Instance) -> Vec<Line<'static>> {
    let f = |n, v| field(app, n, v);
    let players = if i.max_players > 0 {
        format!("{}/{}", i.players, i.max_players)
    } else {
        i.players.to_string()
    };
    let uptime = if i.pid == 0 || i.started_at_unix_ms <= 0 {
        "-".into()
    } else {
        output::uptime(u64::try_from((app.now_ms - i.started_at_unix_ms) / 1000).unwrap_or(0))
    };
    vec![
        Line::from(
            [
                f("state", output::title(&instance_state(i.state))),
                f("since", output::ago(i.state_changed_at_unix_ms, app.now_ms)),
            ]
            .concat(),
        ),
        Line::from(
            [
                f("spawner", i.spawner_id.clone()),
                f("build", output::or_dash(&instance_build(i))),
            ]
            .concat(),
        ),
        Line::from(
            [
                f("address", output::or_dash(&i.address)),
                f("ports", ports(i)),
            ]
            .concat(),
        ),
        Line::from(
            [
                f("players", players),
                f("restarts", i.restart_count.to_string()),
                f("uptime", uptime),
            ]
            .concat(),
        ),
        Line::from(f("labels", labels(&i.labels)).to_vec()),
        Line::from(f("message", output::or_dash(&i.message)).to_vec()),
    ]
}

fn spawner_lines(app: &App, s: &pb::Spawner) -> Vec<Line<'static>> {
    let f = |n, v| field(app, n, v);
    let r = s.resources.unwrap_or_default();
    vec![
        Line::from(
            [
                f("state", output::title(&spawner_state(s.state))),
                f("drained", if s.drained { "yes" } else { "no" }.into()),
                f("name", output::or_dash(&s.name)),
            ]
            .concat(),
        ),
        Line::from(
            [
                f("region", output::or_dash(&s.region)),
                f("host", output::or_dash(&s.host)),
            ]
            .concat(),
        ),
        Line::from(
            [
                f("load", format!("{}/{}", s.instance_count, s.capacity)),
                f("version", output::or_dash(&s.agent_version)),
                f("seen", output::ago(s.last_seen_unix_ms, app.now_ms)),
            ]
            .concat(),
        ),
        Line::from(
            [
                f("cpu", bar(cpu_fraction(&r), 5)),
                f(
                    "mem",
                    bar(fraction(r.memory_bytes, r.memory_total_bytes), 5),
                ),
            ]
            .concat(),
        ),
        Line::from(
            f(
                "disk",
                bar(fraction(r.disk_used_bytes, r.disk_total_bytes), 5),
            )
            .to_vec(),
        ),
        Line::from(f("labels", labels(&s.labels)).to_vec()),
    ]
}

/// CPU, memory and players over time, each a label line above a sparkline.
fn sparklines(frame: &mut Frame, area: Rect, app: &App, points: &[pb::MetricPoint]) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme::style(app, Role::Border))
        .title(" History ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::vertical([Constraint::Length(2); 3]).split(inner);
    // Sparklines draw the newest points that fit.
    let keep = usize::from(inner.width);
    let tail = &points[points.len().saturating_sub(keep)..];
    let last = points.last().cloned().unwrap_or_default();
    // Tenths of a percent keep small CPU figures visible as integers.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let cpu: Vec<u64> = tail.iter().map(|p| (p.cpu_percent * 10.0) as u64).collect();
    let mem: Vec<u64> = tail.iter().map(|p| p.memory_bytes).collect();
    let players: Vec<u64> = tail.iter().map(|p| u64::from(p.players)).collect();
    let series = [
        (
            format!("cpu {}", output::percent(last.cpu_percent)),
            cpu,
            Role::Good,
        ),
        (
            format!("mem {}", output::bytes(last.memory_bytes)),
            mem,
            Role::Warn,
        ),
        (format!("players {}", last.players), players, Role::Key),
    ];
    for ((label, data, role), row) in series.into_iter().zip(rows.iter()) {
        let [text, spark] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(*row);
        frame.render_widget(
            Paragraph::new(Span::styled(label, theme::style(app, Role::Dim))),
            text,
        );
        frame.render_widget(
            Sparkline::default()
                .data(&data)
                .style(theme::style(app, role)),
            spark,
        );
    }
}
