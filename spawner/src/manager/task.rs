//! The manager task itself: the registry of instances, capacity and port checks, the
//! messages from instance actors, shutdown, and the coalescing state writer.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use exile_api::v1;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{BuildToRun, ManagerConfig, Request, SpawnSpec};
use crate::error::{Error, Result};
use crate::instance::{InstanceActor, Op, OpContext, Settings, ToManager};
use crate::manifest::{BuildSource, Resolved};
use crate::ports::{PortAllocator, is_free};
use crate::process::CommandTemplate;
use crate::state::{AgonesPorts, HeldPort, InstanceRecord, Snapshot, State};

pub(super) struct Entry {
    /// Shared with the persister's snapshots: replaced whole on each update.
    record: Arc<InstanceRecord>,
    ops: mpsc::UnboundedSender<Op>,
}

pub(super) struct ManagerTask {
    pub(super) config: ManagerConfig,
    pub(super) settings: Arc<Settings>,
    pub(super) instances: BTreeMap<String, Entry>,
    pub(super) ports: PortAllocator,
    /// Hands out the Agones SDK port pairs.
    pub(super) agones_ports: PortAllocator,
    pub(super) events: broadcast::Sender<v1::InstanceEvent>,
    pub(super) to_manager: mpsc::UnboundedSender<ToManager>,
    pub(super) persist: Option<watch::Sender<Snapshot>>,
}

impl ManagerTask {
    pub(super) async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut from_actors: mpsc::UnboundedReceiver<ToManager>,
        persister: JoinHandle<()>,
    ) {
        let done = loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::Shutdown { stop, done }) => {
                        self.detach_all(stop, &mut from_actors).await;
                        break Some(done);
                    }
                    Some(request) => self.on_request(request),
                    None => {
                        self.detach_all(false, &mut from_actors).await;
                        break None;
                    }
                },
                Some(msg) = from_actors.recv() => self.on_actor(msg),
            }
        };
        // Closing the watch lets the persister write the last snapshot and end.
        self.persist = None;
        let _ = persister.await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Spawn { spec, ctx, reply } => {
                if let Err(e) = self.spawn(*spec, ctx, reply) {
                    tracing::debug!(error = %e, "spawn refused");
                }
            }
            Request::Forward { id, op } => match self.instances.get(&id) {
                Some(entry) => {
                    if let Err(mpsc::error::SendError(op)) = entry.ops.send(op) {
                        op.fail(Error::Internal(format!("instance {id} is being torn down")));
                    }
                }
                None => op.fail(Error::NotFound(id)),
            },
            Request::List { reply } => {
                let _ = reply.send(
                    self.instances
                        .values()
                        .map(|e| InstanceRecord::clone(&e.record))
                        .collect(),
                );
            }
            Request::Shutdown { .. } => {}
        }
    }

    /// Validates and registers a new instance, then asks its actor to launch it. On a refusal
    /// the error has already been sent to `reply`.
    fn spawn(
        &mut self,
        spec: SpawnSpec,
        ctx: OpContext,
        reply: oneshot::Sender<Result<InstanceRecord>>,
    ) -> Result<()> {
        let checked = ctx.check().and_then(|()| self.check_spawn(&spec));
        let checked = checked.and_then(|ok| Ok((ok, self.assign_uid(&spec.id)?)));
        let ((build_version, resolved, ports, agones), run_uid) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                let text = e.to_string();
                let _ = reply.send(Err(e));
                return Err(Error::FailedPrecondition(text));
            }
        };
        let agones_counts = resolved.run.agones_counts.clone();
        let rec = InstanceRecord {
            id: spec.id.clone(),
            build_version,
            build: Some(resolved.run),
            ports,
            legacy_port: None,
            pid: None,
            start_ticks: None,
            supervisor_pid: None,
            supervisor_ticks: None,
            labels: spec.labels,
            env: spec.env,
            args: spec.args,
            state: State::Starting,
            restart_count: 0,
            created_at_unix_ms: exile_api::now_unix_ms(),
            started_at_unix_ms: 0,
            exit_code: None,
            message: "starting".into(),
            revision: 0,
            restart_policy: resolved.restart,
            sdk_token: new_sdk_token(),
            players: 0,
            max_players: 0,
            health: Some(resolved.health),
            restarts: Default::default(),
            pending_restart: None,
            annotations: BTreeMap::new(),
            allocation_metadata: Vec::new(),
            allocation_id: String::new(),
            agones,
            reserved_until_unix_ms: 0,
            player_ids: Vec::new(),
            agones_counts,
            run_uid,
        };
        self.add_actor(rec, false);
        self.save();
        if let Some(entry) = self.instances.get(&spec.id) {
            let op = Op::Start {
                first: true,
                ctx,
                reply,
            };
            if let Err(mpsc::error::SendError(op)) = entry.ops.send(op) {
                op.fail(Error::Internal("the instance task ended at once".into()));
            }
        }
        Ok(())
    }

    /// Checks a spawn and resolves, once, everything the instance takes from its build; then
    /// chooses its ports.
    fn check_spawn(
        &mut self,
        spec: &SpawnSpec,
    ) -> Result<(String, Resolved, Vec<HeldPort>, Option<AgonesPorts>)> {
        validate_id(&spec.id)?;
        exile_api::limits::check_args(&spec.args).map_err(Error::InvalidArgument)?;
        exile_api::limits::check_labels("labels", spec.labels.iter())
            .map_err(Error::InvalidArgument)?;
        let name = &self.config.name;
        if self.instances.contains_key(&spec.id) {
            return Err(Error::FailedPrecondition(format!(
                "instance {} already exists on spawner {name}",
                spec.id
            )));
        }
        crate::state::check_room_for_instance(&self.config.data_dir)?;
        let count = self.instances.len();
        let capacity = self.config.capacity;
        if count >= usize::try_from(capacity).unwrap_or(usize::MAX) {
            return Err(Error::FailedPrecondition(format!(
                "spawner {name} is at capacity ({count}/{capacity} instances)"
            )));
        }
        let fallback = self.config.template.as_ref().map(CommandTemplate::words);
        // The spawner's defaults as the settings say now (each unset one: its flag).
        let (restart, health) = self.settings.live.defaults();
        let flags = (&restart, &health);
        let grace = self.settings.live.stop_grace();
        let (version, source) = match &spec.build {
            Some(build) => (
                build.version.clone(),
                uploaded_source(name, spec, build, fallback)?,
            ),
            None => {
                let Some(template) = &self.config.template else {
                    return Err(Error::FailedPrecondition(format!(
                        "spawner {name} has no host build (--build-command); name an uploaded build"
                    )));
                };
                let version = if spec.build_version.is_empty()
                    || spec.build_version == self.config.build_version
                {
                    self.config.build_version.clone()
                } else {
                    return Err(Error::FailedPrecondition(format!(
                        "build {} is not installed on spawner {name} (its host build is {})",
                        spec.build_version, self.config.build_version
                    )));
                };
                let source = BuildSource {
                    name: "",
                    version: &self.config.build_version,
                    dir: template.build_dir(),
                    manifest: &self.config.host_manifest,
                    fallback_command: fallback,
                };
                (version, source)
            }
        };
        let resolved = crate::manifest::resolve(
            &source,
            name,
            spec.restart_policy.as_ref(),
            spec.health_check.as_ref(),
            flags,
            grace,
        )?;
        let wanted = resolved.ports.clone();
        let ports = self.assign_ports(&spec.id, &wanted)?;
        let agones = if spec.agones || resolved.agones {
            Some(self.assign_agones_ports(&spec.id)?)
        } else {
            None
        };
        Ok((version, resolved, ports, agones))
    }

    /// The user a new instance's game runs as, when the spawner hands them out: one no other
    /// instance holds.
    fn assign_uid(&self, id: &str) -> Result<Option<u32>> {
        let iso = &self.config.isolation;
        let Some(range) = &iso.uids else {
            return Ok(None);
        };
        let held: HashSet<u32> = self
            .instances
            .values()
            .filter_map(|e| e.record.run_uid)
            .collect();
        iso.pick_uid(&held)
            .map(Some)
            .ok_or_else(|| crate::isolation::no_uid_left(&self.config.name, range, id))
    }

    /// A loopback port pair for the Agones SDK of a new instance, from `--agones-port-range`:
    /// never one another instance holds, never one bound by another process.
    fn assign_agones_ports(&mut self, id: &str) -> Result<AgonesPorts> {
        let mut held: HashSet<u16> = self
            .instances
            .values()
            .filter_map(|e| e.record.agones)
            .flat_map(|a| [a.grpc, a.http])
            .collect();
        let mut pick = || {
            let port = self
                .agones_ports
                .allocate(&held, crate::ports::Protocol::Tcp)?;
            held.insert(port);
            Some(port)
        };
        match (pick(), pick()) {
            (Some(grpc), Some(http)) => Ok(AgonesPorts { grpc, http }),
            _ => {
                let range = self.agones_ports.range();
                Err(Error::FailedPrecondition(format!(
                    "spawner {} has no free port pair left in {}-{} (--agones-port-range) for the Agones SDK of instance {id}",
                    self.config.name,
                    range.start(),
                    range.end()
                )))
            }
        }
    }

    /// A number for each port of `wanted`, never one another instance holds: its previous
    /// number while that is still free, else a new one.
    fn assign_ports(&mut self, id: &str, wanted: &[HeldPort]) -> Result<Vec<HeldPort>> {
        let range = self.settings.live.port_range();
        if *self.ports.range() != range {
            // The setting changed: ports held elsewhere stay theirs, new ones come from here.
            tracing::info!(
                first = range.start(),
                last = range.end(),
                "port range for instances from now on"
            );
            self.ports = PortAllocator::new(range);
        }
        let mut held = self.held_ports(Some(id));
        let mut chosen = Vec::with_capacity(wanted.len());
        for p in wanted {
            let previous = Some(p.port).filter(|n| {
                *n != 0
                    && self.ports.range().contains(n)
                    && !held.contains(n)
                    && is_free(*n, p.protocol)
            });
            let Some(port) = previous.or_else(|| self.ports.allocate(&held, p.protocol)) else {
                return Err(self.no_port_error(id, p, wanted.len(), chosen.len()));
            };
            held.insert(port);
            chosen.push(HeldPort { port, ..p.clone() });
        }
        Ok(chosen)
    }

    fn no_port_error(&self, id: &str, missing: &HeldPort, needed: usize, found: usize) -> Error {
        let range = self.ports.range();
        let of = match (needed, found) {
            (1, _) => String::new(),
            (_, 1) => format!(" (it needs {needed} ports and only 1 is free)"),
            _ => format!(" (it needs {needed} ports and only {found} are free)"),
        };
        Error::FailedPrecondition(format!(
            "spawner {} has no free port left in {}-{} for port `{}` ({}) of instance {id}{of}",
            self.config.name,
            range.start(),
            range.end(),
            missing.name,
            missing.protocol.name(),
        ))
    }

    /// Ports held by every instance except `except`.
    fn held_ports(&self, except: Option<&str>) -> HashSet<u16> {
        self.instances
            .values()
            .filter(|e| Some(e.record.id.as_str()) != except)
            .flat_map(|e| e.record.ports.iter().map(|p| p.port))
            .filter(|p| *p != 0)
            .collect()
    }

    fn on_actor(&mut self, msg: ToManager) {
        match msg {
            ToManager::Update(rec) => {
                // The event first: the master and its watchers need not wait for the snapshot.
                let _ = self.events.send(v1::InstanceEvent {
                    status: Some(rec.to_status()),
                    removed: false,
                });
                if let Some(entry) = self.instances.get_mut(&rec.id) {
                    entry.record = Arc::new(rec);
                }
                self.save();
            }
            ToManager::ReservePorts { id, wanted, reply } => {
                let result = self.assign_ports(&id, &wanted);
                if let (Ok(ports), Some(entry)) = (&result, self.instances.get_mut(&id)) {
                    Arc::make_mut(&mut entry.record).ports.clone_from(ports);
                }
                let _ = reply.send(result);
            }
            ToManager::Respond { reply, result } => {
                let _ = reply.send(result);
            }
            ToManager::Removed(rec) => {
                let _ = self.events.send(v1::InstanceEvent {
                    status: Some(rec.to_status()),
                    removed: true,
                });
                self.instances.remove(&rec.id);
                self.save();
            }
        }
    }

    pub(super) fn add_actor(&mut self, rec: InstanceRecord, adopted: bool) {
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let actor = if adopted {
            InstanceActor::adopted(rec.clone(), self.settings.clone(), self.to_manager.clone())
        } else {
            InstanceActor::new(rec.clone(), self.settings.clone(), self.to_manager.clone())
        };
        crate::own_log::spawn(actor.run(ops_rx));
        self.instances.insert(
            rec.id.clone(),
            Entry {
                record: Arc::new(rec),
                ops,
            },
        );
    }

    /// Detaches (or stops) every actor, still serving their messages meanwhile: an actor in
    /// the middle of a start may be waiting for a port.
    async fn detach_all(
        &mut self,
        stop: bool,
        from_actors: &mut mpsc::UnboundedReceiver<ToManager>,
    ) {
        let mut pending: FuturesUnordered<_> = self
            .instances
            .values()
            .filter_map(|entry| {
                let (done, rx) = oneshot::channel();
                entry.ops.send(Op::Detach { stop, done }).ok().map(|()| rx)
            })
            .collect();
        while !pending.is_empty() {
            tokio::select! {
                _ = pending.next() => {}
                Some(msg) = from_actors.recv() => self.on_actor(msg),
            }
        }
        while let Ok(msg) = from_actors.try_recv() {
            self.on_actor(msg);
        }
        self.save();
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            instances: self.instances.values().map(|e| e.record.clone()).collect(),
        }
    }

    pub(super) fn save(&self) {
        if let Some(persist) = &self.persist {
            persist.send_replace(self.snapshot());
        }
    }
}

/// Writes the latest snapshot whenever it changes (coalescing bursts), off the manager task.
pub(super) async fn persist_loop(data_dir: PathBuf, mut rx: watch::Receiver<Snapshot>) {
    loop {
        let state = rx.borrow_and_update().clone();
        let dir = data_dir.clone();
        match tokio::task::spawn_blocking(move || state.save(&dir)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not save the instance state"),
            Err(e) => tracing::error!(error = %e, "state writer panicked"),
        }
        if rx.changed().await.is_err() {
            // Closed: write what arrived after the last save, if anything.
            if rx.has_changed().unwrap_or(false) {
                continue;
            }
            return;
        }
    }
}

/// Checks an uploaded build a spawn names, as the build it is spawned from.
fn uploaded_source<'a>(
    spawner: &str,
    spec: &SpawnSpec,
    build: &'a BuildToRun,
    fallback_command: Option<&'a [String]>,
) -> Result<BuildSource<'a>> {
    exile_api::build::check_name(&build.name).map_err(Error::InvalidArgument)?;
    exile_api::build::check_version(&build.version).map_err(Error::InvalidArgument)?;
    if !spec.build_version.is_empty() && spec.build_version != build.version {
        return Err(Error::InvalidArgument(format!(
            "the spawn names build version {} but build {}@{}",
            spec.build_version, build.name, build.version
        )));
    }
    // The game runs in its instance directory: a relative build path would point elsewhere.
    if !build.dir.is_absolute() || !build.dir.is_dir() {
        return Err(Error::FailedPrecondition(format!(
            "build {}@{} is not installed on spawner {spawner} (no directory {})",
            build.name,
            build.version,
            build.dir.display()
        )));
    }
    Ok(BuildSource {
        name: &build.name,
        version: &build.version,
        dir: &build.dir,
        manifest: &build.manifest,
        fallback_command,
    })
}

/// A fresh per-instance SDK secret: 32 random bytes, hex.
fn new_sdk_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Instance ids become directory names: keep them plain (the rule lives in exile-api).
pub(crate) fn validate_id(id: &str) -> Result<()> {
    exile_api::limits::check_instance_id(id).map_err(Error::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "inst-1", "A_b.c"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
