//! A pseudo-terminal to drive full-screen programs in: a private tmux server (its own
//! socket, no user config) whose pane can be typed into and read back as text.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One tmux server with one session running a command.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Whether tmux exists here. Under CI it must: a missing tool fails, never skips.
    pub fn available() -> bool {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "tmux is required under CI (.ci/run installs it)"
            );
            eprintln!("skipping: tmux is not installed");
        }
        found
    }

    /// Starts `shell_command` in a `width`×`height` terminal.
    pub fn start(dir: &Path, width: u16, height: u16, shell_command: &str) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(shell_command)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux runs");
        assert!(out.status.success(), "tmux new-session: {out:?}");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        c
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "t", "-l", text])
            .output()
            .expect("tmux runs");
        assert!(out.status.success(), "{out:?}");
    }

    /// Presses a named key (`Enter`, `Escape`, `C-c`…).
    pub fn key(&self, name: &str) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "t", name])
            .output()
            .expect("tmux runs");
        assert!(out.status.success(), "{out:?}");
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the pane is on the alternate screen (a full-screen program holds it).
    pub fn alternate_screen(&self) -> bool {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "t", "#{alternate_on}"])
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// The title programs in the pane set (OSC 0/2).
    pub fn pane_title(&self) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "t", "#{pane_title}"])
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits (20 s at most) until the screen satisfies `ok`; returns that screen.
    #[track_caller]
    pub fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never saw {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `needle` on the screen.
    #[track_caller]
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |s| s.contains(needle))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
