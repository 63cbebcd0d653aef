//! Anonymous failures flooding the audit log: per source address and action, the first
//! [`ROWS_PER_WINDOW`] of each minute are written one row each; the rest are counted and
//! written as one summary row when the minute is over, so a flood cannot grow the database
//! by a row per attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one source and action written as rows each minute.
pub const ROWS_PER_WINDOW: u32 = 10;

/// The window over which failures are counted.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Sources tracked at once; failures of sources beyond it share one window, keyed `*`.
const MAX_WINDOWS: usize = 10_000;

/// Rows written per minute for all sources together: past it, a flood spread over many
/// addresses is counted in the `*` window too.
pub const ROWS_PER_WINDOW_ALL: u32 = 1_000;

struct Window {
    started: Instant,
    /// When it started, for the summary's wording.
    started_unix_ms: i64,
    written: u32,
    counted: u64,
}

/// Failures counted rather than written: one summary row.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    /// Source address (`*` for sources past the tracking limit).
    pub source: String,
    /// The RPC's method name, e.g. `Login`.
    pub action: String,
    /// Failures not written one by one.
    pub count: u64,
    /// When the window started, ms since the epoch.
    pub since_unix_ms: i64,
}

impl Summary {
    /// The summary's audit detail.
    pub fn detail(&self) -> String {
        let since = exile_api::format::rfc3339_secs(self.since_unix_ms)
            .unwrap_or_else(|| format!("{} ms", self.since_unix_ms));
        format!(
            "{} more failed anonymous {} calls from this address in the minute from {since}; \
             counted, not written one by one",
            self.count, self.action
        )
    }
}

/// Decides which anonymous failures get a row.
#[derive(Default)]
pub struct FloodGate {
    // std Mutex: a map lookup per failed call, never held across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    windows: HashMap<(String, String), Window>,
    /// Start of the current minute of the overall budget, and rows written in it.
    all: Option<(Instant, u32)>,
}

impl FloodGate {
    /// Whether this failure gets its own row; a summary of the source's previous minute
    /// comes back when that minute has just been found over.
    pub fn admit(&self, source: &str, action: &str) -> (bool, Option<Summary>) {
        self.admit_at(source, action, Instant::now(), exile_api::now_unix_ms())
    }

    fn admit_at(
        &self,
        source: &str,
        action: &str,
        now: Instant,
        now_ms: i64,
    ) -> (bool, Option<Summary>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { windows, all } = &mut *inner;
        let all = match all {
            Some((started, n)) if now.saturating_duration_since(*started) < WINDOW => n,
            _ => &mut all.insert((now, 0)).1,
        };
        let over_budget = *all >= ROWS_PER_WINDOW_ALL;
        let mut key = (source.to_owned(), action.to_owned());
        if over_budget || (!windows.contains_key(&key) && windows.len() >= MAX_WINDOWS) {
            key.0 = "*".to_owned();
        }
        let fresh = || Window {
            started: now,
            started_unix_ms: now_ms,
            written: 0,
            counted: 0,
        };
        let w = windows.entry(key.clone()).or_insert_with(fresh);
        let mut summary = None;
        if now.saturating_duration_since(w.started) >= WINDOW {
            summary = summary_of(&key, w);
            *w = fresh();
        }
        if w.written < ROWS_PER_WINDOW && !over_budget {
            w.written += 1;
            *all += 1;
            (true, summary)
        } else {
            w.counted += 1;
            (false, summary)
        }
    }

    /// Summaries of the windows that are over (all of them when `all`, at shutdown); those
    /// windows are forgotten.
    pub fn closed(&self, all: bool) -> Vec<Summary> {
        self.closed_at(Instant::now(), all)
    }

    fn closed_at(&self, now: Instant, all: bool) -> Vec<Summary> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        inner.windows.retain(|key, w| {
            if all || now.saturating_duration_since(w.started) >= WINDOW {
                out.extend(summary_of(key, w));
                false
            } else {
                true
            }
        });
        out
    }
}

fn summary_of(key: &(String, String), w: &Window) -> Option<Summary> {
    (w.counted > 0).then(|| Summary {
        source: key.0.clone(),
        action: key.1.clone(),
        count: w.counted,
        since_unix_ms: w.started_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_a_few_rows_and_one_summary_a_minute() {
        let g = FloodGate::default();
        let t0 = Instant::now();
        let rows = (0..1000)
            .filter(|_| {
                let (row, summary) = g.admit_at("6.6.6.6", "Enroll", t0, 1000);
                assert!(summary.is_none());
                row
            })
            .count();
        assert_eq!(rows, ROWS_PER_WINDOW as usize);
        // Another source and another action have their own allowance.
        assert!(g.admit_at("10.0.0.1", "Enroll", t0, 1000).0);
        assert!(g.admit_at("6.6.6.6", "Login", t0, 1000).0);
        // Nothing is over yet.
        assert!(g.closed_at(t0 + Duration::from_secs(59), false).is_empty());
        // The next failure after the minute gets a row and brings the summary.
        let t1 = t0 + WINDOW;
        let (row, summary) = g.admit_at("6.6.6.6", "Enroll", t1, 61_000);
        assert!(row);
        let summary = summary.expect("summary of the first minute");
        assert_eq!(
            summary,
            Summary {
                source: "6.6.6.6".into(),
                action: "Enroll".into(),
                count: 990,
                since_unix_ms: 1000,
            }
        );
        assert!(
            summary
                .detail()
                .starts_with("990 more failed anonymous Enroll calls")
        );
        // A flood that stops is summed up by the sweep.
        for _ in 0..15 {
            g.admit_at("6.6.6.6", "Enroll", t1, 61_000);
        }
        let swept = g.closed_at(t1 + WINDOW, false);
        assert_eq!(
            swept.len(),
            1,
            "only windows with counted failures: {swept:?}"
        );
        assert_eq!(swept[0].count, 6);
        assert!(
            g.closed_at(t1 + WINDOW, true).is_empty(),
            "forgotten once swept"
        );
    }

    #[test]
    fn a_flood_spread_over_many_sources_is_bounded_too() {
        let g = FloodGate::default();
        let t0 = Instant::now();
        let rows = (0..100_000u32)
            .filter(|i| {
                g.admit_at(&format!("10.{}.{}.1", i / 256, i % 256), "Login", t0, 1)
                    .0
            })
            .count();
        assert_eq!(rows, ROWS_PER_WINDOW_ALL as usize);
        let swept = g.closed_at(t0 + WINDOW, false);
        let star: Vec<_> = swept.iter().filter(|s| s.source == "*").collect();
        assert_eq!(star.len(), 1, "{swept:?}");
        assert_eq!(star[0].count, 100_000 - u64::from(ROWS_PER_WINDOW_ALL));
        // The next minute has a fresh budget.
        assert!(g.admit_at("10.0.0.1", "Login", t0 + WINDOW, 2).0);
    }
}
