//! Colours by meaning, and none at all when `NO_COLOR` asks for that (https://no-color.org):
//! then only bold and reverse video mark things, which every terminal shows.

use exile_api::v1::{InstanceState, SpawnerState};
use ratatui::style::{Color, Modifier, Style};

use crate::top::app::App;

/// What a piece of text is, for its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Header,
    Selected,
    Border,
    Title,
    Good,
    Warn,
    Bad,
    Dim,
    Key,
}

/// Whether the environment allows colour: `NO_COLOR` set to anything non-empty forbids it.
pub fn color_allowed(no_color: Option<&str>) -> bool {
    no_color.is_none_or(str::is_empty)
}

pub fn style(app: &App, role: Role) -> Style {
    let plain = Style::default();
    if !app.color {
        return match role {
            Role::Header | Role::Title | Role::Key | Role::Bad => {
                plain.add_modifier(Modifier::BOLD)
            }
            Role::Selected => plain.add_modifier(Modifier::REVERSED),
            _ => plain,
        };
    }
    match role {
        Role::Header => plain.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        Role::Selected => plain.bg(Color::Blue).fg(Color::White),
        Role::Border => plain.fg(Color::DarkGray),
        Role::Title => plain.fg(Color::Cyan).add_modifier(Modifier::BOLD),
        Role::Good => plain.fg(Color::Green),
        Role::Warn => plain.fg(Color::Yellow),
        Role::Bad => plain.fg(Color::Red).add_modifier(Modifier::BOLD),
        Role::Dim => plain.fg(Color::DarkGray),
        Role::Key => plain.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    }
}

/// How an instance state reads at a glance.
pub fn instance_role(state: i32) -> Role {
    match InstanceState::try_from(state) {
        Ok(s) if s.is_serving() => Role::Good,
        Ok(InstanceState::Crashed | InstanceState::Unhealthy) => Role::Bad,
        Ok(InstanceState::Stopped | InstanceState::Unknown) => Role::Dim,
        _ => Role::Warn,
    }
}

pub fn spawner_role(state: i32) -> Role {
    match SpawnerState::try_from(state) {
        Ok(SpawnerState::Online) => Role::Good,
        Ok(SpawnerState::Unreachable) => Role::Bad,
        Ok(SpawnerState::Offline) => Role::Dim,
        _ => Role::Warn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_is_honoured_when_set_to_anything() {
        assert!(color_allowed(None));
        assert!(color_allowed(Some("")));
        assert!(!color_allowed(Some("1")));
    }
}
