//! The terminal while `top` owns it: raw mode, the alternate screen and a hidden cursor,
//! given back on every way out — normal exit, error, panic (a hook) — and around Ctrl-Z.

use std::io::{self, Stdout, stdout};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::app::App;
use super::views;

/// The screen; dropping it restores the terminal.
pub struct Term {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Term {
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        setup()?;
        match Terminal::new(CrosstermBackend::new(stdout())) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                let _ = restore();
                Err(e)
            }
        }
    }

    /// Draws the screen; ratatui writes only the cells that changed since the last draw.
    pub fn draw(&mut self, app: &App) -> io::Result<()> {
        self.terminal.draw(|frame| views::render(app, frame))?;
        Ok(())
    }

    /// Gives the terminal back and stops the process as Ctrl-Z would have without raw mode;
    /// when the shell resumes it (`fg`), takes the terminal again and repaints everything.
    pub fn suspend(&mut self) -> io::Result<()> {
        restore()?;
        #[cfg(unix)]
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTSTP).map_err(io::Error::from)?;
        setup()?;
        self.terminal.clear()
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = restore();
    }
}

fn setup() -> io::Result<()> {
    enable_raw_mode()?;
    execute!(stdout(), EnterAlternateScreen, Hide)
}

/// Leaves raw mode and the alternate screen and shows the cursor again. Safe to call twice.
pub fn restore() -> io::Result<()> {
    disable_raw_mode()?;
    execute!(stdout(), LeaveAlternateScreen, Show)
}

/// A panic prints its message on the normal screen, after the terminal is given back.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}
