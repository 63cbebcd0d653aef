//! Runs the demo game binary and talks to it over UDP, TCP and stdin.

// Helpers outside #[test] fns are test code too; clippy.toml's test allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A port free for both TCP and UDP.
fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && UdpSocket::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port");
}

struct Game {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Game {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Game {
    fn start(port: u16, max_players: u32, use_env: bool) -> Game {
        let mut command = Command::new(env!("CARGO_BIN_EXE_exile-demo-game"));
        if use_env {
            command.env("EXILE_PORT", port.to_string());
        } else {
            command.args(["--port", &port.to_string()]);
        }
        let mut child = command
            .args(["--max-players", &max_players.to_string()])
            .env("EXILE_INSTANCE_ID", "inst-7")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut game = Game { child, stdout };
        assert_eq!(game.line(), format!("listening on port {port}"));
        game
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the game did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn udp(port: u16, command: &str) -> serde_json::Value {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
        .send_to(command.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).unwrap();
    serde_json::from_slice(&buf[..n]).unwrap()
}

#[test]
fn answers_udp_and_tcp_and_exits_zero_on_sigterm() {
    let port = free_port();
    let mut game = Game::start(port, 2, false);

    let status = udp(port, "status");
    assert_eq!(status["players"], 0);
    assert_eq!(status["max_players"], 2);
    assert_eq!(status["instance"], "inst-7");
    assert_eq!(udp(port, "join")["players"], 1);

    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut tcp = |command: &str| {
        (&stream)
            .write_all(format!("{command}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    assert_eq!(tcp("status")["players"], 1);
    assert_eq!(tcp("join")["players"], 2);
    assert_eq!(tcp("join")["error"], "server full");
    assert_eq!(tcp("leave")["players"], 1);
    assert!(tcp("dance")["error"].is_string());
    assert_eq!(udp(port, "leave")["players"], 0);
    assert_eq!(
        udp(port, "leave")["players"],
        0,
        "players never go negative"
    );

    let pid = Pid::from_raw(i32::try_from(game.child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(game.line(), "shutting down");
    assert_eq!(game.wait_exit().code(), Some(0));
}

#[test]
fn console_commands_and_stdin_eof_is_ignored() {
    let port = free_port();
    let mut game = Game::start(port, 16, true);
    let mut stdin = game.child.stdin.take().unwrap();
    writeln!(stdin, "say hello there").unwrap();
    assert_eq!(game.line(), "[console] hello there");
    udp(port, "join");
    writeln!(stdin, "players").unwrap();
    assert_eq!(game.line(), "players: 1/16");
    drop(stdin);
    // Still running and serving for a while after EOF on stdin.
    for _ in 0..25 {
        assert_eq!(udp(port, "status")["players"], 1);
        assert!(
            game.child.try_wait().unwrap().is_none(),
            "exited on stdin EOF"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = Pid::from_raw(i32::try_from(game.child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    assert_eq!(game.line(), "shutting down");
    assert_eq!(game.wait_exit().code(), Some(0));
}

#[test]
fn quit_on_the_console_exits_zero() {
    let port = free_port();
    let mut game = Game::start(port, 16, false);
    let mut stdin = game.child.stdin.take().unwrap();
    writeln!(stdin, "quit").unwrap();
    assert_eq!(game.line(), "shutting down");
    assert_eq!(game.wait_exit().code(), Some(0));
}
