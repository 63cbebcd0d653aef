//! `exile-demo-game`: a small real game server for trying Exile out. It answers `status`,
//! `join` and `leave` over UDP datagrams and line-based TCP, reads console commands on stdin,
//! and exits 0 on SIGTERM/SIGINT. Under an Exile spawner it uses the SDK: Ready once its
//! sockets are bound, a health loop, and the player count on every join and leave; started by
//! hand it runs the same without. Console commands: `say`, `players`, `allocate`, `ready`,
//! `health on|off` (stop pinging, as a hung server would) and `quit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};

/// Exile demo game server.
#[derive(Parser, Debug)]
#[command(name = "exile-demo-game", version, about)]
struct Args {
    /// Port to listen on (TCP and UDP) on all interfaces.
    #[arg(long, env = "EXILE_PORT")]
    port: u16,
    /// Most players that can join at once.
    #[arg(long, default_value_t = 16)]
    max_players: u32,
    /// Seconds between SDK health pings.
    #[arg(long, default_value_t = 1.0)]
    health_period: f64,
}

/// The game's whole state.
struct Game {
    players: AtomicU32,
    max_players: u32,
    instance: String,
    /// The player count after each change, for the SDK reporter (which only needs the latest).
    changes: tokio::sync::watch::Sender<u32>,
}

impl Game {
    fn status(&self) -> String {
        serde_json::json!({
            "players": self.players.load(Ordering::SeqCst),
            "max_players": self.max_players,
            "instance": self.instance,
        })
        .to_string()
    }

    /// Answers one protocol command.
    fn handle(&self, command: &str) -> String {
        match command.trim() {
            "status" => self.status(),
            "join" => {
                let joined = self
                    .players
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n < self.max_players).then_some(n + 1)
                    })
                    .is_ok();
                if joined {
                    self.changes
                        .send_replace(self.players.load(Ordering::SeqCst));
                    self.status()
                } else {
                    serde_json::json!({"error": "server full"}).to_string()
                }
            }
            "leave" => {
                let _ = self
                    .players
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                self.changes
                    .send_replace(self.players.load(Ordering::SeqCst));
                self.status()
            }
            other => serde_json::json!({"error": format!("unknown command `{other}`")}).to_string(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (changes, players_rx) = tokio::sync::watch::channel(0);
    let game = Arc::new(Game {
        players: AtomicU32::new(0),
        max_players: args.max_players,
        instance: std::env::var("EXILE_INSTANCE_ID").unwrap_or_default(),
        changes,
    });
    let udp = UdpSocket::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("could not bind UDP port {}", args.port))?;
    let tcp = TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("could not bind TCP port {}", args.port))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    println!("listening on port {}", args.port);

    tokio::spawn(serve_udp(udp, game.clone()));
    tokio::spawn(serve_tcp(tcp, game.clone()));
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (ask_tx, ask_rx) = tokio::sync::mpsc::channel::<Ask>(8);
    tokio::spawn(console(game.clone(), quit_tx, ask_tx));
    let health_period = std::time::Duration::try_from_secs_f64(args.health_period)
        .context("--health-period must be a positive number of seconds")?;
    start_sdk(args.max_players, health_period, players_rx, ask_rx).await?;

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = quit_rx.recv() => {}
    }
    println!("shutting down");
    // Exit now: the runtime would otherwise wait for the blocking thread stuck reading stdin.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// Tells the spawner the game is ready, keeps it informed that the game is alive, and reports
/// the player count on every change. Without a spawner there is no one to tell.
async fn start_sdk(
    max_players: u32,
    health_period: std::time::Duration,
    mut players: tokio::sync::watch::Receiver<u32>,
    mut asks: tokio::sync::mpsc::Receiver<Ask>,
) -> anyhow::Result<()> {
    let sdk = match exile_sdk::Sdk::from_env().await {
        Ok(sdk) => sdk,
        // Started by hand: nothing to tell, and nothing to print either, so the output stays
        // what it was before the SDK (tests and crash messages read it).
        Err(exile_sdk::Error::NotManaged) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // A refused Ready is worth seeing, but the game still serves its players.
    match sdk.ready().await {
        Ok(instance) => println!("ready (instance {})", instance.id),
        Err(e) => eprintln!("{e}"),
    }
    if let Err(e) = sdk.set_players(0, max_players).await {
        eprintln!("{e}");
    }
    let mut health = Some(sdk.spawn_health_loop(health_period));
    // What an operator asks for at the console: a match starting (allocate) or ending (ready),
    // or the game going silent (health off) as a hung server would, and back.
    let asker = sdk.clone();
    tokio::spawn(async move {
        while let Some(ask) = asks.recv().await {
            let outcome = match ask {
                Ask::Allocate => asker.allocate().await.map(|_| "allocated"),
                Ask::Ready => asker.ready().await.map(|_| "ready again"),
                Ask::Health(false) => {
                    if let Some(h) = health.take() {
                        h.abort();
                    }
                    Ok("health pings stopped")
                }
                Ask::Health(true) => {
                    if health.is_none() {
                        health = Some(asker.spawn_health_loop(health_period));
                    }
                    Ok("health pings resumed")
                }
            };
            match outcome {
                Ok(what) => println!("[sdk] {what}"),
                Err(e) => println!("[sdk] refused: {e}"),
            }
        }
    });
    tokio::spawn(async move {
        while players.changed().await.is_ok() {
            let count = *players.borrow_and_update();
            if let Err(e) = sdk.set_players(count, max_players).await {
                eprintln!("{e}");
            }
        }
    });
    Ok(())
}

async fn serve_udp(socket: UdpSocket, game: Arc<Game>) {
    let mut buf = [0u8; 1500];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let reply = game.handle(&String::from_utf8_lossy(&buf[..n]));
                let _ = socket.send_to(reply.as_bytes(), from).await;
            }
            Err(e) => eprintln!("udp receive failed: {e}"),
        }
    }
}

async fn serve_tcp(listener: TcpListener, game: Arc<Game>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, game.clone()));
            }
            Err(e) => eprintln!("tcp accept failed: {e}"),
        }
    }
}

async fn serve_connection(stream: TcpStream, game: Arc<Game>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut reply = game.handle(&line);
        reply.push('\n');
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An SDK call asked for at the console.
enum Ask {
    /// The game was handed to players.
    Allocate,
    /// The match is over: the game takes players again.
    Ready,
    /// Health pings on (true) or off (false).
    Health(bool),
}

/// Console commands on stdin. EOF is not a reason to stop: the game keeps running when the
/// spawner that held its stdin goes away.
async fn console(
    game: Arc<Game>,
    quit: tokio::sync::mpsc::Sender<()>,
    asks: tokio::sync::mpsc::Sender<Ask>,
) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "" => {}
            "say" => println!("[console] {rest}"),
            "players" => println!(
                "players: {}/{}",
                game.players.load(Ordering::SeqCst),
                game.max_players
            ),
            "allocate" => {
                let _ = asks.send(Ask::Allocate).await;
            }
            "ready" => {
                let _ = asks.send(Ask::Ready).await;
            }
            "health" if matches!(rest, "on" | "off") => {
                let _ = asks.send(Ask::Health(rest == "on")).await;
            }
            "quit" => {
                let _ = quit.send(()).await;
                return;
            }
            other => println!(
                "unknown console command `{other}` (try say, players, allocate, ready, health on|off, quit)"
            ),
        }
    }
    // Hold `quit` open: a closed channel would read as a quit request.
    std::future::pending::<()>().await;
}
