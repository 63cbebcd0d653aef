//! The one place `top`'s state changes: `update(app, action)` applies an action and returns
//! the effects (calls, follows, suspending) the event loop must carry out. No I/O here, so
//! every action is unit-tested.

#[cfg(test)]
mod tests;

use super::action::{Action, Effect, Op, OpKind, Target, View};
use super::app::{App, Detail, Mode, Status};
use super::logbuf::LogBuf;
use super::views::{builds, instances, spawners};

/// How often an open detail view asks the master for its history again.
pub const HISTORY_EVERY_MS: i64 = 10_000;

/// Applies `action` to `app`.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    if is_from_user(&action) {
        app.status = None;
    }
    app.dirty = true;
    match action {
        Action::Quit => {
            app.quit = true;
            vec![]
        }
        Action::Suspend => vec![Effect::Suspend],
        Action::Redraw => vec![],
        Action::Tick(now) => tick(app, now),
        Action::Show(view) => {
            let fx = close_detail(app);
            app.mode = Mode::Normal;
            if app.view != view {
                app.filter.clear();
            }
            app.view = view;
            fx
        }
        Action::Move(rows) => {
            match &mut app.detail {
                Some(d) => d.log.scroll(rows),
                None => move_selection(app, rows),
            }
            vec![]
        }
        Action::Jump(to_end) => {
            match &mut app.detail {
                Some(d) if to_end => d.log.follow(),
                Some(d) => d.log.scroll(isize::MIN / 2),
                None => {
                    let n = app.row_ids(app.view).len();
                    let rows = if to_end { n as isize } else { -(n as isize) };
                    move_selection(app, rows);
                }
            }
            vec![]
        }
        Action::Open => open(app),
        Action::Back => {
            if app.mode == Mode::Help {
                app.mode = Mode::Normal;
                vec![]
            } else if app.detail.is_some() {
                close_detail(app)
            } else {
                app.filter.clear();
                vec![]
            }
        }
        Action::StartFilter => {
            if app.detail.is_none() {
                app.mode = Mode::Filter;
            }
            vec![]
        }
        Action::StartCommand => {
            app.mode = Mode::Command(String::new());
            vec![]
        }
        Action::StartConsole => {
            match app.detail.as_ref().map(|d| &d.target) {
                Some(Target::Instance(_)) => app.mode = Mode::Console(String::new()),
                _ => error(
                    app,
                    "the console is in an instance's detail view: select one, enter",
                ),
            }
            vec![]
        }
        Action::Input(c) => {
            match &mut app.mode {
                Mode::Filter => app.filter.push(c),
                Mode::Command(t) | Mode::Console(t) => t.push(c),
                _ => {}
            }
            vec![]
        }
        Action::Erase => {
            match &mut app.mode {
                Mode::Filter => {
                    app.filter.pop();
                }
                Mode::Command(t) | Mode::Console(t) => {
                    t.pop();
                }
                _ => {}
            }
            vec![]
        }
        Action::Submit => submit(app),
        Action::Cancel => {
            match std::mem::replace(&mut app.mode, Mode::Normal) {
                Mode::Filter => app.filter.clear(),
                Mode::Confirm(_) => info(app, "cancelled"),
                _ => {}
            }
            vec![]
        }
        Action::SortNext => {
            let n = column_count(app.view);
            let s = &mut app.sort[app.view.index()];
            *s = ((s.0 + 1) % n, s.1);
            vec![]
        }
        Action::SortReverse => {
            let s = &mut app.sort[app.view.index()];
            s.1 = !s.1;
            vec![]
        }
        Action::ToggleHelp => {
            app.mode = if app.mode == Mode::Help {
                Mode::Normal
            } else {
                Mode::Help
            };
            vec![]
        }
        Action::Ask(kind) => {
            match operation(app, kind) {
                Ok(op) => app.mode = Mode::Confirm(op),
                Err(why) => error(app, why),
            }
            vec![]
        }
        Action::Answer(yes) => match std::mem::replace(&mut app.mode, Mode::Normal) {
            Mode::Confirm(op) if yes => {
                info(app, &format!("{}…", op.question().trim_end_matches('?')));
                vec![Effect::Run(op)]
            }
            Mode::Confirm(_) => {
                info(app, "cancelled");
                vec![]
            }
            other => {
                app.mode = other;
                vec![]
            }
        },
        Action::LogPause => {
            if let Some(d) = &mut app.detail {
                if d.log.paused {
                    d.log.follow();
                } else {
                    d.log.paused = true;
                }
            }
            vec![]
        }
        Action::Watch(event) => {
            app.apply(*event);
            vec![]
        }
        Action::Conn(conn) => {
            app.conn = conn;
            vec![]
        }
        Action::Identity { subject, role } => {
            app.identity.subject = subject;
            app.identity.role = role;
            vec![]
        }
        Action::Done { result, .. } => {
            app.status = Some(match result {
                Ok(text) => Status { text, error: false },
                Err(text) => Status { text, error: true },
            });
            vec![]
        }
        Action::History { target, points } => {
            if let Some(d) = app.detail.as_mut().filter(|d| d.target == target) {
                d.history = points;
            }
            vec![]
        }
        Action::Log {
            target,
            data,
            skipped,
        } => {
            if let Some(d) = app.detail.as_mut().filter(|d| d.target == target) {
                d.log.push(&data, skipped);
            }
            vec![]
        }
        Action::LogEnded { target, error } => {
            if let Some(d) = app.detail.as_mut().filter(|d| d.target == target) {
                d.log.ended = Some(error.unwrap_or_else(|| "the log stream ended".into()));
            }
            vec![]
        }
    }
}

/// Keys clear the last status sentence; news from the master and the clock do not.
fn is_from_user(a: &Action) -> bool {
    !matches!(
        a,
        Action::Tick(_)
            | Action::Redraw
            | Action::Watch(_)
            | Action::Conn(_)
            | Action::Identity { .. }
            | Action::Done { .. }
            | Action::History { .. }
            | Action::Log { .. }
            | Action::LogEnded { .. }
    )
}

fn info(app: &mut App, text: &str) {
    app.status = Some(Status {
        text: text.into(),
        error: false,
    });
}

fn error(app: &mut App, text: &str) {
    app.status = Some(Status {
        text: text.into(),
        error: true,
    });
}

fn tick(app: &mut App, now: i64) -> Vec<Effect> {
    app.now_ms = now;
    match &mut app.detail {
        Some(d) if now - d.history_at_ms >= HISTORY_EVERY_MS => {
            d.history_at_ms = now;
            vec![Effect::FetchHistory(d.target.clone())]
        }
        _ => vec![],
    }
}

fn column_count(view: View) -> usize {
    match view {
        View::Spawners => spawners::COLUMNS.len(),
        View::Instances => instances::COLUMNS.len(),
        View::Builds => builds::COLUMNS.len(),
    }
}

fn move_selection(app: &mut App, rows: isize) {
    let view = app.view;
    let ids = app.row_ids(view);
    let Some(cur) = app.selected_index(view, &ids) else {
        return;
    };
    let last = ids.len() - 1;
    let next = cur.saturating_add_signed(rows).min(last);
    let id = ids[next].to_owned();
    app.selected[view.index()] = (Some(id), next);
}

fn open(app: &mut App) -> Vec<Effect> {
    if app.detail.is_some() {
        return vec![];
    }
    let Some(id) = app.selected_id() else {
        error(app, "nothing selected");
        return vec![];
    };
    let target = match app.view {
        View::Spawners => Target::Spawner(id),
        View::Instances => Target::Instance(id),
        View::Builds => {
            error(
                app,
                "builds have no detail view: `exilectl build get` shows one",
            );
            return vec![];
        }
    };
    app.detail = Some(Detail {
        target: target.clone(),
        history: Vec::new(),
        history_at_ms: app.now_ms,
        log: LogBuf::default(),
    });
    vec![
        Effect::FollowLogs(target.clone()),
        Effect::FetchHistory(target),
    ]
}

fn close_detail(app: &mut App) -> Vec<Effect> {
    if app.detail.take().is_some() {
        if matches!(app.mode, Mode::Console(_)) {
            app.mode = Mode::Normal;
        }
        vec![Effect::StopLogs]
    } else {
        vec![]
    }
}

fn submit(app: &mut App) -> Vec<Effect> {
    match std::mem::replace(&mut app.mode, Mode::Normal) {
        Mode::Command(text) => command(app, &text),
        Mode::Console(line) => {
            let Some(Target::Instance(id)) = app.detail.as_ref().map(|d| d.target.clone()) else {
                return vec![];
            };
            // The console stays open for the next line, as a terminal's would.
            app.mode = Mode::Console(String::new());
            if line.trim().is_empty() {
                return vec![];
            }
            if let Err(why) = exile_api::limits::check_console_line(&line) {
                error(app, &why);
                return vec![];
            }
            info(app, &format!("sending `{line}`…"));
            vec![Effect::Run(Op::Console { id, line })]
        }
        other => {
            if other != Mode::Filter {
                app.mode = other;
            }
            vec![]
        }
    }
}

/// Runs a `:` command line.
fn command(app: &mut App, text: &str) -> Vec<Effect> {
    let mut words = text.split_whitespace();
    let Some(verb) = words.next() else {
        return vec![];
    };
    let arg = words.next().map(str::to_owned);
    match verb {
        "q" | "quit" => {
            app.quit = true;
            vec![]
        }
        "help" | "h" => {
            app.mode = Mode::Help;
            vec![]
        }
        "spawn" => {
            app.mode = Mode::Confirm(Op::Spawn(arg));
            vec![]
        }
        v => match View::parse(v) {
            Some(view) => update(app, Action::Show(view)),
            None => {
                error(
                    app,
                    &format!(
                        "unknown command `{v}`: try :spawners, :instances, :builds, :spawn [spawner], :help, :q"
                    ),
                );
                vec![]
            }
        },
    }
}

/// The operation a key asks for, on the detail view's target or the selected row.
fn operation(app: &App, kind: OpKind) -> Result<Op, &'static str> {
    let (spawner, instance) = match (&app.detail, app.view) {
        (Some(d), _) => match &d.target {
            Target::Spawner(id) => (Some(id.clone()), None),
            Target::Instance(id) => (None, Some(id.clone())),
        },
        (None, View::Spawners) => (app.selected_id(), None),
        (None, View::Instances) => (None, app.selected_id()),
        (None, View::Builds) => (None, None),
    };
    let need_instance = "select an instance first (2 shows them)";
    let need_spawner = "select a spawner first (1 shows them)";
    Ok(match kind {
        OpKind::Spawn => Op::Spawn(spawner),
        OpKind::Start => Op::Start(instance.ok_or(need_instance)?),
        OpKind::Stop => Op::Stop(instance.ok_or(need_instance)?),
        OpKind::Restart => Op::Restart(instance.ok_or(need_instance)?),
        OpKind::Remove => match (instance, spawner) {
            (Some(i), _) => Op::Remove(i),
            (None, Some(s)) => Op::RemoveSpawner(s),
            (None, None) => return Err(need_instance),
        },
        OpKind::Drain => Op::Drain(spawner.ok_or(need_spawner)?),
        OpKind::Undrain => Op::Undrain(spawner.ok_or(need_spawner)?),
    })
}
