//! `exilectl top`: the live terminal monitor. The event loop here turns terminal input,
//! Watch events and the clock into actions, hands each to the pure `update`, carries out
//! the effects it returns, and redraws only when something changed.

pub mod action;
pub mod app;
pub mod keys;
pub mod logbuf;
pub mod net;
pub mod term;
pub mod update;
pub mod views;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use crossterm::event::EventStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::{GlobalArgs, TopArgs};
use crate::client::{Session, Target};
use crate::config::Config;
use action::{Action, Effect};
use app::{App, Identity};

/// Actions applied before one redraw at most, so a burst of events costs one frame.
const BATCH: usize = 512;
/// Shortest time between two frames: a busy fleet changes many times a second, and a
/// screen a person reads gains nothing past ~30 frames a second while each frame costs CPU.
const MIN_FRAME: Duration = Duration::from_millis(30);

pub async fn run(global: &GlobalArgs, args: TopArgs) -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("`exilectl top` needs a terminal; use `exilectl watch` in scripts");
    }
    let config = Config::load(&Config::default_path()?)?;
    let target = Target::resolve(global, &config)?;
    let session = Session::connect_lazy(&target, global.timeout)?;
    let identity = Identity {
        context: target.context.clone().unwrap_or_default(),
        master: session.master.clone(),
        ..Identity::default()
    };
    let color = views::theme::color_allowed(std::env::var("NO_COLOR").ok().as_deref());
    let mut app = App::new(identity, color, exile_api::now_unix_ms());
    if let Some(view) = args.view {
        app.view = view.into();
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut net = net::Net::new(session, tx, global.timeout);
    net.identify();
    let watch = net.follow_watch();

    let mut term = term::Term::enter().context("cannot take over the terminal")?;
    let result = event_loop(&mut app, &mut term, &mut net, &mut rx, args.tick).await;
    watch.abort();
    drop(term);
    result
}

async fn event_loop(
    app: &mut App,
    term: &mut term::Term,
    net: &mut net::Net,
    rx: &mut mpsc::UnboundedReceiver<Action>,
    tick: Duration,
) -> Result<()> {
    let mut input = EventStream::new();
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut terminate = stop_signals()?;
    let mut last_frame: Option<Instant> = None;
    loop {
        let next_frame = last_frame.map_or_else(Instant::now, |t| t + MIN_FRAME);
        if app.dirty && Instant::now() >= next_frame {
            app.dirty = false;
            term.draw(app).context("cannot draw")?;
            last_frame = Some(Instant::now());
        }
        let action = tokio::select! {
            // A change waits for the next frame rather than drawing at once.
            () = tokio::time::sleep_until(next_frame), if app.dirty => None,
            event = input.next() => match event {
                Some(Ok(event)) => keys::from_event(app, &event),
                Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                None => Some(Action::Quit),
            },
            Some(action) = rx.recv() => Some(action),
            _ = ticker.tick() => Some(Action::Tick(exile_api::now_unix_ms())),
            _ = terminate.recv() => Some(Action::Quit),
        };
        let Some(action) = action else { continue };
        apply(app, term, net, action)?;
        // Take everything already queued before drawing once.
        for _ in 0..BATCH {
            match rx.try_recv() {
                Ok(action) => apply(app, term, net, action)?,
                Err(_) => break,
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}

fn apply(app: &mut App, term: &mut term::Term, net: &mut net::Net, action: Action) -> Result<()> {
    for effect in update::update(app, action) {
        match effect {
            Effect::Suspend => {
                term.suspend().context("cannot suspend")?;
                app.dirty = true;
            }
            other => net.run(other),
        }
    }
    Ok(())
}

/// SIGTERM and SIGHUP end `top` through the same path as `q`, so the terminal is restored.
fn stop_signals() -> Result<mpsc::UnboundedReceiver<()>> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for kind in [SignalKind::terminate(), SignalKind::hangup()] {
            let mut s = signal(kind).context("cannot listen for signals")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    let _ = tx.send(());
                }
            });
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    Ok(rx)
}
