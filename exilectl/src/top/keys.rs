//! Terminal input to actions: which key means what in which mode. Pure, so the key map is
//! tested without a terminal.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::{Action, OpKind, View};
use super::app::{App, Mode};

/// The action a terminal event asks for, if any.
pub fn from_event(app: &App, event: &Event) -> Option<Action> {
    match event {
        Event::Key(k) if k.kind != KeyEventKind::Release => from_key(app, *k),
        Event::Resize(..) | Event::FocusGained => Some(Action::Redraw),
        _ => None,
    }
}

/// The action a key asks for in the current mode.
pub fn from_key(app: &App, key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => return Some(Action::Quit),
        KeyCode::Char('z') if ctrl => return Some(Action::Suspend),
        _ if ctrl => return None,
        _ => {}
    }
    match &app.mode {
        Mode::Filter | Mode::Command(_) | Mode::Console(_) => match key.code {
            KeyCode::Esc => Some(Action::Cancel),
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Backspace => Some(Action::Erase),
            KeyCode::Char(c) => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Confirm(_) => Some(Action::Answer(matches!(key.code, KeyCode::Char('y' | 'Y')))),
        Mode::Help => match key.code {
            KeyCode::Esc | KeyCode::Char('?' | 'q') | KeyCode::Enter => Some(Action::ToggleHelp),
            _ => None,
        },
        Mode::Normal => normal(key.code),
    }
}

fn normal(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('1') => Action::Show(View::Spawners),
        KeyCode::Char('2') => Action::Show(View::Instances),
        KeyCode::Char('3') => Action::Show(View::Builds),
        KeyCode::Char(':') => Action::StartCommand,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Esc => Action::Back,
        KeyCode::Enter | KeyCode::Char('l') => Action::Open,
        KeyCode::Up | KeyCode::Char('k') => Action::Move(-1),
        KeyCode::Down | KeyCode::Char('j') => Action::Move(1),
        KeyCode::PageUp => Action::Move(-10),
        KeyCode::PageDown => Action::Move(10),
        KeyCode::Home | KeyCode::Char('g') => Action::Jump(false),
        KeyCode::End | KeyCode::Char('G') => Action::Jump(true),
        KeyCode::Char('o') => Action::SortNext,
        KeyCode::Char('O') => Action::SortReverse,
        KeyCode::Char('n') => Action::Ask(OpKind::Spawn),
        KeyCode::Char('S') => Action::Ask(OpKind::Start),
        KeyCode::Char('s') => Action::Ask(OpKind::Stop),
        KeyCode::Char('r') => Action::Ask(OpKind::Restart),
        KeyCode::Char('X') | KeyCode::Delete => Action::Ask(OpKind::Remove),
        KeyCode::Char('d') => Action::Ask(OpKind::Drain),
        KeyCode::Char('u') => Action::Ask(OpKind::Undrain),
        KeyCode::Char('c') => Action::StartConsole,
        KeyCode::Char('p') => Action::LogPause,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::action::Op;
    use crate::top::app::Identity;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_mean_different_things_per_mode() {
        let mut app = App::new(Identity::default(), true, 0);
        assert_eq!(from_key(&app, key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(
            from_key(&app, key(KeyCode::Char('2'))),
            Some(Action::Show(View::Instances))
        );
        assert_eq!(from_key(&app, key(KeyCode::Char('x'))), None);
        app.mode = Mode::Filter;
        assert_eq!(
            from_key(&app, key(KeyCode::Char('q'))),
            Some(Action::Input('q'))
        );
        assert_eq!(from_key(&app, key(KeyCode::Esc)), Some(Action::Cancel));
        app.mode = Mode::Confirm(Op::Stop("i".into()));
        assert_eq!(
            from_key(&app, key(KeyCode::Char('y'))),
            Some(Action::Answer(true))
        );
        assert_eq!(
            from_key(&app, key(KeyCode::Enter)),
            Some(Action::Answer(false))
        );
        app.mode = Mode::Help;
        assert_eq!(
            from_key(&app, key(KeyCode::Char('q'))),
            Some(Action::ToggleHelp)
        );
        // Ctrl-C quits and Ctrl-Z suspends whatever is being typed.
        app.mode = Mode::Console(String::new());
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(from_key(&app, ctrl('c')), Some(Action::Quit));
        assert_eq!(from_key(&app, ctrl('z')), Some(Action::Suspend));
        assert_eq!(from_key(&app, ctrl('x')), None);
    }

    #[test]
    fn releases_are_ignored_and_resizes_redraw() {
        let app = App::new(Identity::default(), true, 0);
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(from_event(&app, &Event::Key(release)), None);
        assert_eq!(
            from_event(&app, &Event::Resize(80, 24)),
            Some(Action::Redraw)
        );
    }
}
