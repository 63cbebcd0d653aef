//! The master's own performance over time, for `/performance` and
//! `MetricsService.GetMasterHistory`: a latency histogram every call passes through (the
//! access layer records the time to its response headers), and a sampler that every
//! `--performance-sample-ms` turns the counters' deltas into one point: master CPU and memory,
//! requests and errors per second, p50/p99 latency, heartbeats per second, spawner links,
//! Watch streams, and the fleet's aggregate CPU, memory and players. Points stay in memory
//! (a bounded ring of [`KEEP`] points, 24 hours at the default period) and are lost with a
//! restart; queries average them into buckets like the resource history.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exile_api::v1 as pb;

use crate::access::Counters;
use crate::registry::Registry;

/// Points kept: 24 hours at the default period of 10 s (`--performance-sample-ms`).
pub const KEEP: usize = 24 * 360;

/// Upper bounds of the latency buckets, microseconds (the last one catches everything).
const BOUNDS_US: [u64; 28] = [
    50,
    100,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    50_000,
    75_000,
    100_000,
    150_000,
    200_000,
    300_000,
    500_000,
    750_000,
    1_000_000,
    2_000_000,
    5_000_000,
    u64::MAX,
];

/// Call latencies, counted into fixed buckets without a lock.
#[derive(Default)]
pub struct Latency {
    buckets: [AtomicU64; BOUNDS_US.len()],
}

impl Latency {
    /// Counts one call that took `d`.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> [u64; BOUNDS_US.len()] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// The `q` quantile (0..=1) of the calls counted in `counts`, as the upper bound of its bucket
/// in milliseconds; 0 when there were none.
pub fn quantile_ms(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            // The catch-all bucket reports the largest finite bound.
            let b = BOUNDS_US[i.min(BOUNDS_US.len() - 2)];
            #[allow(clippy::cast_precision_loss)]
            return b as f64 / 1000.0;
        }
    }
    0.0
}

/// CPU time this process has used, from /proc/self/stat (Linux; None elsewhere).
fn own_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name, in clock
    // ticks of USER_HZ, which Linux fixes at 100 for this interface.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Counter values at one point, to take deltas from.
#[derive(Clone, Copy)]
struct Mark {
    at_ms: i64,
    cpu: Option<Duration>,
    requests: u64,
    errors: u64,
    heartbeats: u64,
    latency: [u64; BOUNDS_US.len()],
}

/// The sampled history.
pub struct PerfHistory {
    every: Duration,
    points: Mutex<VecDeque<pb::MasterPoint>>,
    last: Mutex<Option<Mark>>,
}

impl PerfHistory {
    /// A history sampled every `every` (the caller runs the clock and calls [`Self::sample`]).
    pub fn new(every: Duration) -> Self {
        PerfHistory {
            every,
            points: Mutex::new(VecDeque::with_capacity(64)),
            last: Mutex::new(None),
        }
    }

    /// The sampling period, ms.
    pub fn sample_ms(&self) -> i64 {
        i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX)
    }

    /// The sampling period.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Takes one point from the counters' changes since the previous call (the first call
    /// only marks where they stand).
    pub fn sample(&self, now_ms: i64, counters: &Counters, registry: &Registry) {
        let mark = Mark {
            at_ms: now_ms,
            cpu: own_cpu_time(),
            requests: counters.requests.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            heartbeats: counters.heartbeats.load(Ordering::Relaxed),
            latency: counters.latency.counts(),
        };
        let prev = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(mark);
        let Some(prev) = prev else { return };
        let Some(point) = point_between(&prev, &mark, registry) else {
            return;
        };
        let mut pts = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if pts.len() >= KEEP {
            pts.pop_front();
        }
        pts.push_back(point);
    }

    /// Points in [from, to] averaged into buckets of `step` ms aligned on `from`.
    pub fn query(&self, from: i64, to: i64, step: i64) -> Vec<pb::MasterPoint> {
        let pts = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let inside: Vec<&pb::MasterPoint> = pts
            .iter()
            .filter(|p| p.at_unix_ms >= from && p.at_unix_ms <= to)
            .collect();
        downsample(&inside, from, step.max(1))
    }
}

fn point_between(prev: &Mark, cur: &Mark, registry: &Registry) -> Option<pb::MasterPoint> {
    #[allow(clippy::cast_precision_loss)]
    let secs = (cur.at_ms - prev.at_ms) as f64 / 1000.0;
    if secs <= 0.0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let window: Vec<u64> = cur
        .latency
        .iter()
        .zip(prev.latency.iter())
        .map(|(c, p)| c.saturating_sub(*p))
        .collect();
    let cpu_percent = match (prev.cpu, cur.cpu) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 100.0 / secs,
        _ => 0.0,
    };
    let c = registry.counts();
    let fleet = registry.host_totals();
    Some(pb::MasterPoint {
        at_unix_ms: cur.at_ms,
        cpu_percent,
        memory_bytes: crate::service::system_api::own_rss_bytes(),
        requests_per_sec: per_sec(prev.requests, cur.requests),
        errors_per_sec: per_sec(prev.errors, cur.errors),
        p50_ms: quantile_ms(&window, 0.50),
        p99_ms: quantile_ms(&window, 0.99),
        heartbeats_per_sec: per_sec(prev.heartbeats, cur.heartbeats),
        links: c.links,
        watchers: c.watchers,
        fleet_cpu_percent: fleet.cpu_percent,
        fleet_memory_bytes: fleet.memory_bytes,
        players: c.players,
    })
}

/// Averages points into buckets of `step` ms aligned on `from` (empty buckets left out).
/// Rates, latencies and gauges are averaged; a bucket's p99 is the largest p99 in it, so a
/// spike does not average away.
fn downsample(pts: &[&pb::MasterPoint], from: i64, step: i64) -> Vec<pb::MasterPoint> {
    let mut out: Vec<pb::MasterPoint> = Vec::new();
    let mut group: Vec<&pb::MasterPoint> = Vec::new();
    let mut start = None;
    let flush = |group: &mut Vec<&pb::MasterPoint>, start: i64, out: &mut Vec<pb::MasterPoint>| {
        if group.is_empty() {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let n = group.len() as f64;
        let mean = |f: fn(&pb::MasterPoint) -> f64| group.iter().map(|p| f(p)).sum::<f64>() / n;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let mean_u64 = |f: fn(&pb::MasterPoint) -> f64| mean(f).round() as u64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let mean_u32 = |f: fn(&pb::MasterPoint) -> f64| mean(f).round() as u32;
        out.push(pb::MasterPoint {
            at_unix_ms: start,
            cpu_percent: mean(|p| p.cpu_percent),
            #[allow(clippy::cast_precision_loss)]
            memory_bytes: mean_u64(|p| p.memory_bytes as f64),
            requests_per_sec: mean(|p| p.requests_per_sec),
            errors_per_sec: mean(|p| p.errors_per_sec),
            p50_ms: mean(|p| p.p50_ms),
            p99_ms: group.iter().map(|p| p.p99_ms).fold(0.0, f64::max),
            heartbeats_per_sec: mean(|p| p.heartbeats_per_sec),
            links: mean_u32(|p| f64::from(p.links)),
            watchers: mean_u32(|p| f64::from(p.watchers)),
            fleet_cpu_percent: mean(|p| p.fleet_cpu_percent),
            #[allow(clippy::cast_precision_loss)]
            fleet_memory_bytes: mean_u64(|p| p.fleet_memory_bytes as f64),
            players: mean_u32(|p| f64::from(p.players)),
        });
        group.clear();
    };
    for p in pts {
        let s = from + (p.at_unix_ms - from).div_euclid(step) * step;
        if start != Some(s) {
            if let Some(prev) = start {
                flush(&mut group, prev, &mut out);
            }
            start = Some(s);
        }
        group.push(p);
    }
    if let Some(s) = start {
        flush(&mut group, s, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let l = Latency::default();
        for _ in 0..98 {
            l.record(Duration::from_micros(400));
        }
        l.record(Duration::from_millis(40));
        l.record(Duration::from_secs(30));
        let c = l.counts();
        assert_eq!(quantile_ms(&c, 0.5), 0.5);
        assert_eq!(quantile_ms(&c, 0.99), 50.0);
        // The catch-all bucket reads as the largest finite bound.
        assert_eq!(quantile_ms(&c, 1.0), 5_000.0);
        assert_eq!(quantile_ms(&[0; BOUNDS_US.len()], 0.99), 0.0);
    }

    #[test]
    fn buckets_average_and_keep_the_worst_p99() {
        let p = |at: i64, rps: f64, p99: f64| pb::MasterPoint {
            at_unix_ms: at,
            requests_per_sec: rps,
            p99_ms: p99,
            links: 2,
            ..Default::default()
        };
        let pts = [p(0, 10.0, 1.0), p(10_000, 30.0, 9.0), p(70_000, 5.0, 2.0)];
        let refs: Vec<&pb::MasterPoint> = pts.iter().collect();
        let out = downsample(&refs, 0, 60_000);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].at_unix_ms, 0);
        assert_eq!(out[0].requests_per_sec, 20.0);
        assert_eq!(out[0].p99_ms, 9.0);
        assert_eq!(out[0].links, 2);
        assert_eq!(out[1].at_unix_ms, 60_000);
    }

    #[test]
    fn own_cpu_time_reads() {
        // Linux CI: the test process has used some CPU by now.
        assert!(own_cpu_time().is_some());
    }
}
