//! Resource history of spawners and instances: recent heartbeat samples in memory, one-minute
//! averages persisted to the database (never one write per heartbeat), queries that merge both.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::error::Result;
use crate::store::Store;
use exile_api::v1 as pb;

/// One-minute buckets: the persisted resolution.
pub const MINUTE_MS: i64 = 60_000;

pub use crate::model::Sample;

impl Sample {
    fn from_resources(at: i64, r: &pb::Resources, players: u32) -> Self {
        #[allow(clippy::cast_possible_truncation)]
        let cpu = r.cpu_percent as f32;
        Sample {
            at,
            cpu,
            players,
            memory: r.memory_bytes,
            disk: r.disk_used_bytes,
        }
    }
}

/// Running sums of one bucket.
#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    start: i64,
    n: u64,
    cpu: f64,
    players: u64,
    memory: u128,
    disk: u128,
}

impl Acc {
    fn add(&mut self, s: &Sample) {
        self.n += 1;
        self.cpu += f64::from(s.cpu);
        self.players += u64::from(s.players);
        self.memory += u128::from(s.memory);
        self.disk += u128::from(s.disk);
    }

    fn mean(&self) -> Sample {
        let n = self.n.max(1);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        Sample {
            at: self.start,
            cpu: (self.cpu / n as f64) as f32,
            players: u32::try_from(self.players / n).unwrap_or(u32::MAX),
            memory: u64::try_from(self.memory / u128::from(n)).unwrap_or(u64::MAX),
            disk: u64::try_from(self.disk / u128::from(n)).unwrap_or(u64::MAX),
        }
    }
}

#[derive(Default)]
struct Series {
    raw: VecDeque<Sample>,
    minute: Option<Acc>,
    /// Finished minutes not yet written to the database.
    pending: Vec<Sample>,
}

/// Series key: `s:<spawner id>` or `i:<instance id>`.
pub fn key(target: pb::MetricsTarget, id: &str) -> String {
    match target {
        pb::MetricsTarget::Spawner => format!("s:{id}"),
        _ => format!("i:{id}"),
    }
}

#[derive(Default)]
struct Maps {
    spawners: HashMap<String, Series>,
    instances: HashMap<String, Series>,
}

impl Maps {
    fn of(&mut self, target: pb::MetricsTarget) -> &mut HashMap<String, Series> {
        match target {
            pb::MetricsTarget::Spawner => &mut self.spawners,
            _ => &mut self.instances,
        }
    }
}

/// How long raw samples of one kind of target stay in memory.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Raw samples older than this (relative to the newest) are dropped, ms.
    pub window_ms: i64,
    /// At most this many raw samples per series.
    pub max: usize,
}

/// The in-memory side of the history.
pub struct MetricsHistory {
    spawners: Retention,
    instances: Retention,
    // std Mutex: pushes and copies only, never held across an await. Keyed by bare id so the
    // lookups of a heartbeat allocate nothing.
    series: Mutex<Maps>,
}

impl MetricsHistory {
    /// Keeps raw samples of spawners and of instances as the two retentions say.
    pub fn new(spawners: Retention, instances: Retention) -> Self {
        MetricsHistory {
            spawners,
            instances,
            series: Mutex::new(Maps::default()),
        }
    }

    fn retention(&self, target: pb::MetricsTarget) -> Retention {
        match target {
            pb::MetricsTarget::Spawner => self.spawners,
            _ => self.instances,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one sample.
    pub fn record(&self, target: pb::MetricsTarget, id: &str, s: Sample) {
        let keep = self.retention(target);
        let mut all = self.lock();
        let map = all.of(target);
        if !map.contains_key(id) {
            map.insert(id.to_owned(), Series::default());
        }
        let Some(series) = map.get_mut(id) else {
            return;
        };
        let start = s.at - s.at.rem_euclid(MINUTE_MS);
        match &mut series.minute {
            Some(acc) if acc.start == start => acc.add(&s),
            slot => {
                if let Some(done) = slot.take() {
                    series.pending.push(done.mean());
                }
                let mut acc = Acc {
                    start,
                    ..Acc::default()
                };
                acc.add(&s);
                *slot = Some(acc);
            }
        }
        // Make room before pushing, so a full series never grows its buffer.
        while series.raw.len() >= keep.max.max(1)
            || series
                .raw
                .front()
                .is_some_and(|f| s.at - f.at > keep.window_ms)
        {
            series.raw.pop_front();
        }
        series.raw.push_back(s);
    }

    /// Records a heartbeat: the host and every instance in it.
    pub fn record_heartbeat(&self, spawner_id: &str, at: i64, hb: &pb::Heartbeat) {
        let players: u32 = hb
            .instances
            .iter()
            .map(|i| i.players)
            .fold(0, u32::saturating_add);
        let host = hb.host.unwrap_or_default();
        self.record(
            pb::MetricsTarget::Spawner,
            spawner_id,
            Sample::from_resources(at, &host, players),
        );
        for i in &hb.instances {
            let r = i.resources.unwrap_or_default();
            self.record(
                pb::MetricsTarget::Instance,
                &i.id,
                Sample::from_resources(at, &r, i.players),
            );
        }
    }

    /// Takes finished minutes to persist (and, when `all`, the minutes still open), and
    /// forgets series that have gone quiet.
    pub fn drain(&self, now: i64, all: bool) -> Vec<(String, Sample)> {
        let mut out = Vec::new();
        let mut maps = self.lock();
        for target in [pb::MetricsTarget::Spawner, pb::MetricsTarget::Instance] {
            let window = self.retention(target).window_ms;
            let map = maps.of(target);
            for (id, s) in map.iter_mut() {
                let k = key(target, id);
                out.extend(s.pending.drain(..).map(|x| (k.clone(), x)));
                let stale = s
                    .raw
                    .back()
                    .is_none_or(|b| now - b.at > window.max(MINUTE_MS));
                if (all || stale)
                    && let Some(acc) = s.minute.take()
                {
                    out.push((k, acc.mean()));
                }
            }
            map.retain(|_, s| {
                s.minute.is_some() || s.raw.back().is_some_and(|b| now - b.at <= window)
            });
        }
        out
    }

    /// Samples held in memory for one target in [from, to]: minute means (pending and open)
    /// that start before the raw samples do, then the raw samples. Returns where raw ones start.
    fn memory_points(
        &self,
        target: pb::MetricsTarget,
        id: &str,
        from: i64,
        to: i64,
    ) -> (Vec<Sample>, Option<i64>) {
        let mut all = self.lock();
        let Some(s) = all.of(target).get(id) else {
            return (vec![], None);
        };
        let raw_start = s.raw.front().map(|f| f.at);
        let mut pts: Vec<Sample> = s
            .pending
            .iter()
            .copied()
            .chain(s.minute.map(|a| a.mean()))
            .filter(|p| raw_start.is_none_or(|r| p.at < r) && p.at + MINUTE_MS > from && p.at <= to)
            .map(|p| Sample {
                at: p.at.max(from),
                ..p
            })
            .collect();
        pts.extend(s.raw.iter().copied().filter(|p| p.at >= from && p.at <= to));
        (pts, raw_start)
    }

    /// The series of one target over [from, to] in buckets of `step` ms, merging the database.
    pub async fn query(
        &self,
        store: &Store,
        target: pb::MetricsTarget,
        id: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<Sample>> {
        let (mem, raw_start) = self.memory_points(target, id, from, to);
        // A minute mean stands for the minute it starts; raw samples replace the minutes that
        // start after they do (the minute they start in may hold both, averaged together).
        let db_to = raw_start.map_or(to, |r| r.min(to));
        let mut pts: Vec<Sample> = store
            .metric_samples(&key(target, id), from - MINUTE_MS + 1, db_to)
            .await?
            .into_iter()
            .map(|p| Sample {
                at: p.at.max(from),
                ..p
            })
            .collect();
        // The database may hold a minute memory still has (flushed at shutdown, then reopened).
        let have: std::collections::HashSet<i64> = mem.iter().map(|p| p.at).collect();
        pts.retain(|p| !have.contains(&p.at));
        pts.extend(mem);
        pts.sort_by_key(|p| p.at);
        Ok(downsample(&pts, from, step))
    }
}

/// Averages samples into buckets of `step` ms aligned on `from`; empty buckets are skipped.
pub fn downsample(pts: &[Sample], from: i64, step: i64) -> Vec<Sample> {
    let step = step.max(1);
    let mut out: Vec<Sample> = Vec::new();
    let mut acc: Option<Acc> = None;
    for p in pts {
        let start = from + (p.at - from).div_euclid(step) * step;
        match &mut acc {
            Some(a) if a.start == start => a.add(p),
            slot => {
                if let Some(done) = slot.take() {
                    out.push(done.mean());
                }
                let mut a = Acc {
                    start,
                    ..Acc::default()
                };
                a.add(p);
                *slot = Some(a);
            }
        }
    }
    if let Some(a) = acc {
        out.push(a.mean());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: i64, cpu: f32, memory: u64) -> Sample {
        Sample {
            at,
            cpu,
            players: 1,
            memory,
            disk: 0,
        }
    }

    #[test]
    fn downsample_averages_and_skips_gaps() {
        let pts = [s(0, 10.0, 100), s(500, 30.0, 300), s(2500, 50.0, 500)];
        let out = downsample(&pts, 0, 1000);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].at, 0);
        assert!((out[0].cpu - 20.0).abs() < 1e-6);
        assert_eq!(out[0].memory, 200);
        assert_eq!(out[1].at, 2000);
        assert_eq!(out[1].memory, 500);
    }

    #[test]
    fn minutes_close_into_pending_and_raw_is_bounded() {
        let keep = Retention {
            window_ms: 120_000,
            max: 5,
        };
        let h = MetricsHistory::new(keep, keep);
        for i in 0..10 {
            h.record(pb::MetricsTarget::Instance, "x", s(i * 20_000, 1.0, 10));
        }
        // 10 samples over 200 s: minutes 0, 1 and 2 closed, minute 3 open; raw keeps 5.
        let (pts, raw_start) = h.memory_points(pb::MetricsTarget::Instance, "x", 0, i64::MAX);
        assert_eq!(raw_start, Some(100_000));
        assert_eq!(pts.iter().filter(|p| p.at >= 100_000).count(), 5);
        let drained = h.drain(180_000, false);
        assert_eq!(
            drained.iter().map(|(_, p)| p.at).collect::<Vec<_>>(),
            vec![0, 60_000, 120_000]
        );
        let rest = h.drain(180_000, true);
        assert_eq!(rest.len(), 1, "the open minute is flushed on demand");
    }
}
