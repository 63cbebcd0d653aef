//! `top`'s whole state: the fleet as the Watch stream last described it, what the screen
//! shows (view, selection, filter, sort, prompt, detail) and the link's health. Rendering
//! reads it; only `update` changes it.

use std::collections::{BTreeMap, VecDeque};

use exile_api::v1::{self as pb, watch_event::Kind};

use super::action::{Conn, Op, Target, View};
use super::logbuf::LogBuf;
use super::views::table::Column;
use super::views::{builds, instances, spawners};

/// Event lines kept for detail views.
const MAX_EVENTS: usize = 500;
/// Metric points kept per detail sparkline.
const MAX_POINTS: usize = 300;

/// What the bottom line is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing into `App::filter` (applied as typed).
    Filter,
    /// Typing a `:` command.
    Command(String),
    /// Typing a console line for the instance in the detail view.
    Console(String),
    /// Waiting for y/n before running the operation.
    Confirm(Op),
    Help,
}

/// A sentence on the bottom line; errors stand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// The detail view of one spawner or instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub target: Target,
    /// Resource history from the master, then live samples from the Watch stream.
    pub history: Vec<pb::MetricPoint>,
    /// When the history was last asked for, Unix milliseconds.
    pub history_at_ms: i64,
    pub log: LogBuf,
}

/// Who and where, for the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub context: String,
    pub master: String,
    pub subject: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub identity: Identity,
    pub conn: Conn,
    /// A snapshot has arrived since the last (re)connect.
    pub synced: bool,
    pub spawners: BTreeMap<String, pb::Spawner>,
    pub instances: BTreeMap<String, pb::Instance>,
    pub builds: BTreeMap<String, pb::Build>,
    /// Recent event lines with the id they are about, oldest first.
    pub events: VecDeque<(String, String)>,
    pub view: View,
    pub detail: Option<Detail>,
    pub mode: Mode,
    pub filter: String,
    /// Sort column and descending flag, per view.
    pub sort: [(usize, bool); 3],
    /// Selected row id and its last index, per view.
    pub selected: [(Option<String>, usize); 3],
    pub status: Option<Status>,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
    pub now_ms: i64,
    pub dirty: bool,
    pub quit: bool,
}

impl App {
    pub fn new(identity: Identity, color: bool, now_ms: i64) -> Self {
        Self {
            identity,
            conn: Conn::Connecting { attempt: 0 },
            synced: false,
            spawners: BTreeMap::new(),
            instances: BTreeMap::new(),
            builds: BTreeMap::new(),
            events: VecDeque::new(),
            view: View::Instances,
            detail: None,
            mode: Mode::Normal,
            filter: String::new(),
            sort: [(0, false); 3],
            selected: Default::default(),
            status: None,
            color,
            now_ms,
            dirty: true,
            quit: false,
        }
    }

    /// Applies one Watch event to the fleet.
    pub fn apply(&mut self, event: pb::WatchEvent) {
        let Some(kind) = event.kind else { return };
        if !matches!(kind, Kind::Snapshot(_) | Kind::SpawnerMetrics(_)) {
            let e = pb::WatchEvent {
                kind: Some(kind.clone()),
                ..event
            };
            let about = match &kind {
                Kind::SpawnerUpdated(s) => s.id.clone(),
                Kind::InstanceUpdated(i) => i.id.clone(),
                Kind::BuildUpdated(b) => b.id.clone(),
                Kind::SpawnerRemoved(id) | Kind::InstanceRemoved(id) | Kind::BuildRemoved(id) => {
                    id.clone()
                }
                _ => String::new(),
            };
            self.events
                .push_back((about, crate::commands::watch::line(&e)));
            if self.events.len() > MAX_EVENTS {
                self.events.pop_front();
            }
        }
        match kind {
            Kind::Snapshot(s) => {
                self.spawners = s.spawners.into_iter().map(|s| (s.id.clone(), s)).collect();
                self.instances = s.instances.into_iter().map(|i| (i.id.clone(), i)).collect();
                self.builds = s.builds.into_iter().map(|b| (b.id.clone(), b)).collect();
                self.synced = true;
            }
            Kind::SpawnerUpdated(s) => {
                self.spawners.insert(s.id.clone(), s);
            }
            Kind::SpawnerRemoved(id) => {
                self.spawners.remove(&id);
            }
            Kind::InstanceUpdated(i) => {
                if let Some(r) = i.resources {
                    self.sample(
                        &Target::Instance(i.id.clone()),
                        r,
                        i.players,
                        event.at_unix_ms,
                    );
                }
                self.instances.insert(i.id.clone(), i);
            }
            Kind::InstanceRemoved(id) => {
                self.instances.remove(&id);
            }
            Kind::SpawnerMetrics(m) => {
                if let Some(r) = m.resources {
                    let players = self
                        .instances
                        .values()
                        .filter(|i| i.spawner_id == m.id)
                        .map(|i| i.players)
                        .sum();
                    self.sample(&Target::Spawner(m.id.clone()), r, players, event.at_unix_ms);
                }
                if let Some(s) = self.spawners.get_mut(&m.id) {
                    s.resources = m.resources;
                    s.instance_count = m.instance_count;
                    s.capacity = m.capacity;
                    s.last_seen_unix_ms = m.last_seen_unix_ms.max(s.last_seen_unix_ms);
                }
            }
            Kind::BuildUpdated(b) => {
                self.builds.insert(b.id.clone(), b);
            }
            Kind::BuildRemoved(id) => {
                self.builds.remove(&id);
            }
            // Top has no fleets view yet; their instances show in the instances view.
            Kind::RolloutUpdated(_)
            | Kind::FleetUpdated(_)
            | Kind::FleetRemoved(_)
            | Kind::FleetScaled(_) => {}
            Kind::Lagged(n) => {
                self.synced = false;
                self.status = Some(Status {
                    text: format!("fell behind by {n} events: a fresh snapshot follows"),
                    error: true,
                });
            }
        }
        self.dirty = true;
    }

    /// A live sample for the open detail view's sparklines.
    fn sample(&mut self, target: &Target, r: pb::Resources, players: u32, at: i64) {
        let Some(d) = self.detail.as_mut().filter(|d| &d.target == target) else {
            return;
        };
        d.history.push(pb::MetricPoint {
            at_unix_ms: at,
            cpu_percent: r.cpu_percent,
            memory_bytes: r.memory_bytes,
            disk_used_bytes: r.disk_used_bytes,
            players,
        });
        if d.history.len() > MAX_POINTS {
            d.history.remove(0);
        }
    }

    /// Spawners as the view lists them: filtered, then sorted.
    pub fn spawner_rows(&self) -> Vec<&pb::Spawner> {
        self.ordered(self.spawners.values(), spawners::COLUMNS, View::Spawners)
    }

    pub fn instance_rows(&self) -> Vec<&pb::Instance> {
        self.ordered(self.instances.values(), instances::COLUMNS, View::Instances)
    }

    pub fn build_rows(&self) -> Vec<&pb::Build> {
        self.ordered(self.builds.values(), builds::COLUMNS, View::Builds)
    }

    /// Ids of a view's rows in display order.
    pub fn row_ids(&self, view: View) -> Vec<&str> {
        match view {
            View::Spawners => self.spawner_rows().into_iter().map(|s| &*s.id).collect(),
            View::Instances => self.instance_rows().into_iter().map(|i| &*i.id).collect(),
            View::Builds => self.build_rows().into_iter().map(|b| &*b.id).collect(),
        }
    }

    fn ordered<'a, T: Searchable>(
        &self,
        items: impl Iterator<Item = &'a T>,
        columns: &[Column<T>],
        view: View,
    ) -> Vec<&'a T> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&T> = items
            .filter(|t| {
                needle.is_empty()
                    || t.search_text().to_lowercase().contains(&needle)
                    || columns
                        .iter()
                        .any(|c| (c.cell)(self, t).to_lowercase().contains(&needle))
            })
            .collect();
        let (col, desc) = self.sort[view.index()];
        if let Some(c) = columns.get(col) {
            rows.sort_by_cached_key(|t| (c.key)(self, t));
        }
        if desc {
            rows.reverse();
        }
        rows
    }

    /// Index of the selected row among `ids`, following the row when others move.
    pub fn selected_index(&self, view: View, ids: &[&str]) -> Option<usize> {
        if ids.is_empty() {
            return None;
        }
        let (id, last) = &self.selected[view.index()];
        id.as_deref()
            .and_then(|id| ids.iter().position(|r| *r == id))
            .or(Some((*last).min(ids.len() - 1)))
    }

    /// Id of the selected row of the current list view.
    pub fn selected_id(&self) -> Option<String> {
        let ids = self.row_ids(self.view);
        self.selected_index(self.view, &ids)
            .map(|i| ids[i].to_owned())
    }

    /// Event lines about `id`, newest last.
    pub fn events_about<'a>(&'a self, id: &'a str) -> impl DoubleEndedIterator<Item = &'a str> {
        self.events
            .iter()
            .filter(move |(about, _)| about == id)
            .map(|(_, line)| line.as_str())
    }
}

/// Text a filter matches beyond the visible cells (labels, host names).
pub trait Searchable {
    fn id(&self) -> &str;
    fn search_text(&self) -> String;
}

fn labels_text(labels: &std::collections::HashMap<String, String>) -> String {
    let mut v: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    v.join(" ")
}

impl Searchable for pb::Instance {
    fn id(&self) -> &str {
        &self.id
    }

    fn search_text(&self) -> String {
        labels_text(&self.labels)
    }
}

impl Searchable for pb::Spawner {
    fn id(&self) -> &str {
        &self.id
    }

    fn search_text(&self) -> String {
        format!("{} {}", self.host, labels_text(&self.labels))
    }
}

impl Searchable for pb::Build {
    fn id(&self) -> &str {
        &self.id
    }

    fn search_text(&self) -> String {
        format!("{}@{} {}", self.name, self.version, self.created_by)
    }
}
