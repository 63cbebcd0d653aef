//! The spawner's own log: what the agent itself reports (links, enrollment, spawns, failed
//! commands), kept in `<data-dir>/logs/spawner.log` and rotated by size like an instance's
//! output, so an operator can read it through the master (`exilectl logs --spawner`).
//!
//! # One dispatcher per spawner
//!
//! The file belongs to one spawner, not to the process: the test sandbox runs several
//! spawners in one process and one runtime, and a program embedding the spawner may install
//! any global subscriber, or none. So [`crate::run`] does not rely on the global subscriber.
//! It builds a [`Dispatch`] of its own — a layer writing to this spawner's file, plus a layer
//! that hands every event on to the dispatcher that was current when the spawner started
//! (stderr in the binary, the test writer in tests) — and runs the whole agent under it.
//!
//! A tracing dispatcher travels with a future, not with a task, so every task the agent starts
//! is started through [`spawn`] (or `with_current_subscriber`). An event from a task that
//! a server library starts on its own (tonic's per-connection tasks of the SDK endpoint)
//! still reaches stderr, but not the file.
//!
//! The alternative, one global layer routing events by a span field naming the spawner,
//! needs the same care at every spawn (tokio does not carry spans into new tasks either), and
//! on top of it only works when the host process installs that layer, which a library cannot
//! ensure.
//!
//! Writing never makes the agent wait on the disk: formatted events are queued to a writer
//! thread; when the queue is full they are dropped and counted, and the count is written to
//! the file when the writer catches up.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use tracing::instrument::WithSubscriber;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber, span};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, filter::LevelFilter, fmt::MakeWriter};

use crate::error::{Error, Result};
use crate::supervisor::logfile::{LogLimits, RotatingLog};

/// Name of the live file of the spawner's own log.
pub const LOG_NAME: &str = "spawner.log";
/// Formatted events waiting for the writer thread before new ones are dropped.
const QUEUE: usize = 4096;

/// Directory of the spawner's own log in its data dir.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    crate::layout::Layout::new(data_dir).own_logs()
}

/// `tokio::spawn` that keeps the caller's dispatcher, so the task's events reach this
/// spawner's log file.
pub(crate) fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.with_current_subscriber())
}

/// Handle to the writer thread of one spawner's log file. Clones share the thread, which ends
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct OwnLog {
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl OwnLog {
    /// Opens (appending to) the log in `dir`, creating the directory, and starts its writer.
    pub fn open(dir: &Path, limits: LogLimits) -> Result<Self> {
        let log = RotatingLog::open_named(dir, LOG_NAME, limits)
            .map_err(|e| Error::io("could not open the spawner log in", dir, e))?;
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            log,
            dir: dir.to_owned(),
            limits,
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("spawner-log".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| Error::Internal(format!("could not start the log writer: {e}")))?;
        Ok(Self { tx, dropped })
    }

    /// Queues one formatted event; counts it as dropped when the writer is behind.
    fn push(&self, bytes: &[u8]) {
        if self.tx.try_send(bytes.to_vec()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A dispatcher writing the events `filter` lets through to this log, and handing every
    /// event on to `outer` (which applies its own filter).
    pub fn dispatch(&self, filter: EnvFilter, outer: Dispatch) -> Dispatch {
        let file = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(self.clone());
        Dispatch::new(tracing_subscriber::registry().with(Tee {
            file,
            filter,
            outer,
            // The most verbose level any dispatcher wanted before ours existed: an upper
            // bound for `outer`, whose own hint tracing does not expose.
            outer_max: LevelFilter::current(),
        }))
    }
}

/// Writes one event per `write` call: the fmt layer formats an event whole, then writes it
/// with a single `write_all`.
pub struct EventWriter<'a>(&'a OwnLog);

impl io::Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for OwnLog {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

/// The writer thread's state.
struct Writer {
    log: RotatingLog,
    dir: PathBuf,
    limits: LogLimits,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<Vec<u8>>) {
        let mut failing = false;
        while let Ok(event) = rx.recv() {
            let lost = self.dropped.swap(0, Ordering::Relaxed);
            let mut written = Ok(());
            if lost > 0 {
                let note = format!("[{lost} log lines dropped: the log writer fell behind]\n");
                written = self.log.write(note.as_bytes());
            }
            written = written.and_then(|()| self.log.write(&event));
            match written {
                Ok(()) => failing = false,
                Err(e) => {
                    // Most likely the directory was deleted under us: start afresh (the event
                    // that failed is lost). Said once per failure streak, outside this log.
                    if !failing {
                        eprintln!(
                            "exile-spawner: could not write its log in {}: {e}",
                            self.dir.display()
                        );
                        failing = true;
                    }
                    if let Ok(log) = RotatingLog::open_named(&self.dir, LOG_NAME, self.limits) {
                        self.log = log;
                    }
                }
            }
        }
    }
}

/// The file layer behind `filter`, and `outer` behind its own filter.
///
/// Not two layers with per-layer filters: those keep their verdicts in a thread-local shared
/// by every registry on the thread, and asking `outer` (maybe a registry with per-layer
/// filters too) from inside our own filter pass would mix the two. Here our registry has no
/// per-layer filter, and `outer` is asked and given the event in one go, from `on_event`.
struct Tee<L> {
    file: L,
    filter: EnvFilter,
    outer: Dispatch,
    outer_max: LevelFilter,
}

impl<S, L> Layer<S> for Tee<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // The filter learns the callsite (for span-field directives); whether `outer` wants
        // it is only known per event.
        let _ = Layer::<S>::register_callsite(&self.filter, meta);
        Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        *meta.level() <= self.outer_max || Layer::<S>::enabled(&self.filter, meta, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let file = Layer::<S>::max_level_hint(&self.filter).unwrap_or(LevelFilter::TRACE);
        Some(file.max(self.outer_max))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.filter.on_new_span(attrs, id, ctx.clone());
        self.file.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.filter.on_record(id, values, ctx.clone());
        self.file.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.file.on_follows_from(id, follows, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.filter.on_enter(id, ctx.clone());
        self.file.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.filter.on_exit(id, ctx.clone());
        self.file.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.filter.on_close(id.clone(), ctx.clone());
        self.file.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.file.on_id_change(old, new, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if Layer::<S>::enabled(&self.filter, meta, ctx.clone()) {
            self.file.on_event(event, ctx);
        }
        if self.outer.enabled(meta) {
            self.outer.event(event);
        }
    }
}

/// What a `logs` command naming the spawner reads: this spawner's id and its log directory
/// (`None` when it keeps no log file).
#[derive(Debug, Clone)]
pub struct Source {
    /// The spawner's id, as the master knows it.
    pub spawner_id: String,
    /// Directory of the log files.
    pub dir: Option<PathBuf>,
}

impl Source {
    /// Sends the log of spawner `asked` (which must be this one) like an instance's log.
    pub async fn stream<F, Fut>(
        &self,
        asked: &str,
        tail_lines: u32,
        follow: bool,
        send: F,
    ) -> Result<()>
    where
        F: FnMut(crate::logs::Piece) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        if asked != self.spawner_id {
            return Err(Error::OtherSpawner {
                mine: self.spawner_id.clone(),
                asked: asked.to_owned(),
            });
        }
        let Some(dir) = &self.dir else {
            return Err(Error::FailedPrecondition(format!(
                "spawner {} keeps no log file (it was started with --own-log-max-bytes=0)",
                self.spawner_id
            )));
        };
        if !dir.is_dir() {
            return Err(Error::FailedPrecondition(format!(
                "the log directory {} of spawner {} is missing; restart the spawner to create it \
                 again",
                dir.display(),
                self.spawner_id
            )));
        }
        crate::logs::stream_named(dir.clone(), LOG_NAME, tail_lines, follow, send).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::logfile::rotated_path;

    /// Waits until the writer thread has written `needle` to the live file.
    fn wait_for(dir: &Path, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let live = std::fs::read_to_string(rotated_path(dir, LOG_NAME, 0)).unwrap_or_default();
            if live.contains(needle) {
                return live;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in {live:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn events_of_its_dispatcher_only_reach_the_file_and_go_on_outward() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_bytes: 1 << 20,
            keep: 1,
        };
        let log = OwnLog::open(dir.path(), limits).unwrap();
        let outer_dir = tempfile::tempdir().unwrap();
        let outer_log = OwnLog::open(outer_dir.path(), limits).unwrap();
        let outer = outer_log.dispatch(EnvFilter::new("warn"), Dispatch::none());
        let ours = log.dispatch(EnvFilter::new("info"), outer.clone());
        tracing::dispatcher::with_default(&ours, || {
            tracing::debug!("too verbose for the file");
            tracing::info!("linked for the file only");
            tracing::warn!("a warning for both");
        });
        tracing::dispatcher::with_default(&outer, || tracing::warn!("outside the spawner"));
        let live = wait_for(dir.path(), "a warning for both");
        assert!(live.contains("linked for the file only"), "{live}");
        assert!(!live.contains("too verbose"), "{live}");
        assert!(!live.contains("outside the spawner"), "{live}");
        let outer_live = wait_for(outer_dir.path(), "outside the spawner");
        assert!(outer_live.contains("a warning for both"), "{outer_live}");
        assert!(
            !outer_live.contains("linked for the file only"),
            "{outer_live}"
        );
    }

    #[test]
    fn a_deleted_directory_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let limits = LogLimits {
            max_bytes: 64,
            keep: 1,
        };
        let log = OwnLog::open(&logs, limits).unwrap();
        let ours = log.dispatch(EnvFilter::new("info"), Dispatch::none());
        tracing::dispatcher::with_default(&ours, || tracing::info!("first"));
        wait_for(&logs, "first");
        std::fs::remove_dir_all(&logs).unwrap();
        // The next rotation fails on the missing directory; the writer opens it afresh.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rotated_path(&logs, LOG_NAME, 0).exists() {
            tracing::dispatcher::with_default(&ours, || tracing::info!("again"));
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not created again"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
