//! Rendering against ratatui's `TestBackend`: what the cells say after a given state.

use exile_api::v1::{self as pb, InstanceState, watch_event::Kind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::render;
use crate::top::action::{Action, Conn, Target, View};
use crate::top::app::{App, Identity};
use crate::top::update::update;

fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| render(app, f)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

fn instance(n: u32) -> pb::Instance {
    pb::Instance {
        id: format!("inst-00000000000{n}"),
        spawner_id: "spw-aaaaaaaaaaaa".into(),
        state: InstanceState::Running as i32,
        build_version: "demo-1".into(),
        players: n,
        max_players: 16,
        pid: 100 + n,
        started_at_unix_ms: 1_700_000_000_000 - 65_000,
        ..Default::default()
    }
}

fn watch(app: &mut App, kind: Kind) {
    update(
        app,
        Action::Watch(Box::new(pb::WatchEvent {
            sequence: 1,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(kind),
        })),
    );
}

fn fleet() -> App {
    let mut app = App::new(
        Identity {
            context: "local".into(),
            master: "http://127.0.0.1:7700".into(),
            subject: "admin".into(),
            role: "admin".into(),
        },
        true,
        1_700_000_000_000,
    );
    watch(
        &mut app,
        Kind::Snapshot(pb::Snapshot {
            spawners: vec![pb::Spawner {
                id: "spw-aaaaaaaaaaaa".into(),
                state: pb::SpawnerState::Online as i32,
                capacity: 10,
                instance_count: 5,
                region: "eu".into(),
                ..Default::default()
            }],
            instances: (1..=5).map(instance).collect(),
            ..Default::default()
        }),
    );
    update(&mut app, Action::Conn(Conn::Live));
    app
}

#[test]
fn a_watch_delta_changes_exactly_one_row() {
    let mut app = fleet();
    let before = screen(&app, 140, 20);
    let mut changed = instance(3);
    changed.players = 12;
    changed.resources = Some(pb::Resources {
        cpu_percent: 42.0,
        memory_bytes: 64 << 20,
        ..Default::default()
    });
    watch(&mut app, Kind::InstanceUpdated(changed));
    let after = screen(&app, 140, 20);
    // Only the body of the table (below its header row) is compared: the header's player
    // total rightly moves too.
    let table_rows = 4..before.len() - 1;
    let differing: Vec<usize> = table_rows.filter(|&y| before[y] != after[y]).collect();
    assert_eq!(differing.len(), 1, "{before:#?}\n{after:#?}");
    let row = &after[differing[0]];
    assert!(
        row.contains("inst-000000000003") && row.contains("12/16") && row.contains("42.0%"),
        "{row}"
    );
}

#[test]
fn a_narrow_terminal_hides_columns_instead_of_garbling() {
    let app = fleet();
    let wide = screen(&app, 160, 24);
    let header = |s: &[String]| {
        s.iter()
            .find(|l| l.contains("ID") && l.contains("STATE"))
            .cloned()
            .unwrap()
    };
    for col in [
        "SPAWNER", "BUILD", "PORTS", "PLAYERS", "CPU", "MEMORY", "UPTIME", "RESTARTS",
    ] {
        assert!(
            header(&wide).contains(col),
            "{col} missing at 160: {wide:#?}"
        );
    }
    let narrow = screen(&app, 80, 24);
    let h = header(&narrow);
    for col in ["ID", "STATE", "CPU", "PLAYERS"] {
        assert!(h.contains(col), "{col} missing at 80: {narrow:#?}");
    }
    for col in ["BUILD", "PORTS", "RESTARTS"] {
        assert!(!h.contains(col), "{col} shown at 80: {narrow:#?}");
    }
    // Whole ids stay readable at 80 columns.
    assert!(
        narrow.iter().any(|l| l.contains("inst-000000000001")),
        "{narrow:#?}"
    );
    let tiny = screen(&app, 40, 12);
    assert!(
        tiny.iter().any(|l| l.contains("ID") && l.contains("STATE")),
        "{tiny:#?}"
    );
}

#[test]
fn hostile_text_is_neutralised_in_cells() {
    let mut app = fleet();
    let mut evil = instance(9);
    evil.build_version = "\x1b]0;pwned\x07".into();
    evil.message = "crashed \x1b[2J\x1b[31mred".into();
    evil.labels.insert("x\x1b[1m".into(), "\u{9b}31m".into());
    watch(&mut app, Kind::InstanceUpdated(evil.clone()));
    app.sort[View::Instances.index()] = (0, true);
    let list = screen(&app, 160, 24);
    update(&mut app, Action::Open);
    update(
        &mut app,
        Action::Log {
            target: Target::Instance(evil.id.clone()),
            data: b"boom \x1b]52;c;ZXZpbA==\x07 done\n".to_vec(),
            skipped: 0,
        },
    );
    let detail = screen(&app, 120, 30);
    for s in [&list, &detail] {
        let all = s.join("\n");
        assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{all}");
    }
    let list = list.join("\n");
    assert!(list.contains("\\u{1b}]0;pwned"), "{list}");
    let detail = detail.join("\n");
    assert!(detail.contains("\\u{1b}[2J"), "{detail}");
    assert!(detail.contains("x\\u{1b}[1m=\\u{9b}31m"), "{detail}");
    assert!(detail.contains("boom \\u{1b}]52;c;"), "{detail}");
}

#[test]
fn no_color_draws_without_colours() {
    let mut app = fleet();
    app.color = false;
    let mut t = Terminal::new(TestBackend::new(100, 20)).unwrap();
    t.draw(|f| render(&app, f)).unwrap();
    let buf = t.backend().buffer();
    assert!(
        buf.content()
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
    );
    app.color = true;
    t.draw(|f| render(&app, f)).unwrap();
    assert!(
        t.backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg != Color::Reset)
    );
}

#[test]
fn the_header_shows_who_where_and_the_link() {
    let mut app = fleet();
    let s = screen(&app, 120, 10);
    assert!(
        s[0].contains("● live") && s[0].contains("ctx local"),
        "{s:#?}"
    );
    assert!(s[0].contains("http://127.0.0.1:7700") && s[0].contains("admin (admin)"));
    assert!(
        s[1].contains("1 Spawners 1") && s[1].contains("2 Instances 5"),
        "{s:#?}"
    );
    update(
        &mut app,
        Action::Conn(Conn::Retrying {
            attempt: 3,
            in_ms: 2000,
            error: "cannot reach the master".into(),
        }),
    );
    let s = screen(&app, 120, 10);
    assert!(
        s[0].contains("retry 4 in 2.0s: cannot reach the master"),
        "{s:#?}"
    );
}

#[test]
fn spawners_and_help_fit_a_small_terminal() {
    let mut app = fleet();
    update(&mut app, Action::Show(View::Spawners));
    let s = screen(&app, 80, 24);
    let row = s.iter().find(|l| l.contains("spw-aaaaaaaaaaaa")).unwrap();
    assert!(row.contains("Online") && row.contains("5/10"), "{s:#?}");
    update(&mut app, Action::ToggleHelp);
    let s = screen(&app, 80, 24).join("\n");
    for (key, what) in super::help::KEYS {
        assert!(
            s.contains(key) && s.contains(what),
            "{key} not in help:\n{s}"
        );
    }
}

#[test]
fn the_detail_view_shows_fields_history_events_and_log() {
    let mut app = fleet();
    update(&mut app, Action::Move(1));
    update(&mut app, Action::Open);
    let target = Target::Instance("inst-000000000002".into());
    update(
        &mut app,
        Action::History {
            target: target.clone(),
            points: (0..40)
                .map(|n| pb::MetricPoint {
                    cpu_percent: f64::from(n),
                    memory_bytes: 1 << 20,
                    players: n % 4,
                    ..Default::default()
                })
                .collect(),
        },
    );
    let mut moved = instance(2);
    moved.state = InstanceState::Allocated as i32;
    watch(&mut app, Kind::InstanceUpdated(moved));
    update(
        &mut app,
        Action::Log {
            target,
            data: b"listening on port 7801\n".to_vec(),
            skipped: 0,
        },
    );
    let s = screen(&app, 80, 24).join("\n");
    for want in [
        "Instance inst-000000000002",
        "state Allocated",
        "players 2/16",
        "cpu 39.0%",
        "state ALLOCATED",
        "listening on port 7801",
        "Log (following",
    ] {
        assert!(s.contains(want), "{want} missing:\n{s}");
    }
    assert!(
        s.contains('█') || s.contains('▇') || s.contains('▆'),
        "no sparkline:\n{s}"
    );
}
