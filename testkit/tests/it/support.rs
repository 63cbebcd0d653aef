//! Helpers shared by the system tests.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, anyhow};
use futures::StreamExt;
use tonic::Streaming;

use exile_api::v1 as pb;

/// A Watch stream that keeps a view of instance states.
pub struct Watcher {
    stream: Streaming<pb::WatchEvent>,
    /// Every state each instance went through, in order.
    pub history: HashMap<String, Vec<pb::InstanceState>>,
    /// Current spawner states.
    pub spawners: HashMap<String, pb::SpawnerState>,
    /// Instances removed.
    pub removed: Vec<String>,
    /// Latest player count of each instance.
    pub players: HashMap<String, u32>,
    /// Latest view of each instance.
    pub last: HashMap<String, pb::Instance>,
}

impl Watcher {
    /// Opens a Watch and reads its snapshot.
    pub async fn open(c: &exile_testkit::Clients) -> Result<Self> {
        let stream = c
            .events
            .clone()
            .watch(pb::WatchRequest {
                include_metrics: false,
            })
            .await?
            .into_inner();
        let mut w = Watcher {
            stream,
            history: HashMap::new(),
            spawners: HashMap::new(),
            removed: vec![],
            players: HashMap::new(),
            last: HashMap::new(),
        };
        let first = w.next().await?;
        anyhow::ensure!(
            matches!(first.kind, Some(pb::watch_event::Kind::Snapshot(_))),
            "first event is not a snapshot"
        );
        Ok(w)
    }

    async fn next(&mut self) -> Result<pb::WatchEvent> {
        let ev = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
            .await
            .map_err(|_| anyhow!("no watch event within 20 s"))?
            .ok_or_else(|| anyhow!("watch ended"))??;
        use pb::watch_event::Kind;
        match &ev.kind {
            Some(Kind::Snapshot(s)) => {
                for sp in &s.spawners {
                    self.spawners.insert(sp.id.clone(), sp.state());
                }
                for i in &s.instances {
                    self.push(&i.id, i.state());
                    self.players.insert(i.id.clone(), i.players);
                    self.last.insert(i.id.clone(), i.clone());
                }
            }
            Some(Kind::InstanceUpdated(i)) => {
                self.push(&i.id, i.state());
                self.players.insert(i.id.clone(), i.players);
                self.last.insert(i.id.clone(), i.clone());
            }
            Some(Kind::InstanceRemoved(id)) => self.removed.push(id.clone()),
            Some(Kind::SpawnerUpdated(s)) => {
                self.spawners.insert(s.id.clone(), s.state());
            }
            _ => {}
        }
        Ok(ev)
    }

    fn push(&mut self, id: &str, s: pb::InstanceState) {
        let h = self.history.entry(id.to_owned()).or_default();
        if h.last() != Some(&s) {
            h.push(s);
        }
    }

    /// Reads events until `done(self)` holds.
    pub async fn until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Watcher) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(self) {
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("watch never showed {what}"));
            }
            self.next().await?;
        }
        Ok(())
    }

    /// Latest state of an instance.
    pub fn state(&self, id: &str) -> Option<pb::InstanceState> {
        self.history.get(id).and_then(|h| h.last().copied())
    }
}

/// Whether the game process is up: Running, or Ready once the demo game told the SDK so.
pub fn is_up(s: pb::InstanceState) -> bool {
    matches!(s, pb::InstanceState::Running | pb::InstanceState::Ready)
}

/// Asks a demo game for its status over UDP.
pub async fn udp_status(port: u32) -> Result<String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    for _ in 0..20 {
        sock.send_to(b"status", ("127.0.0.1", u16::try_from(port)?))
            .await?;
        let mut buf = [0u8; 512];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(250), sock.recv_from(&mut buf)).await
        {
            return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    Err(anyhow!("no UDP status answer on port {port}"))
}

/// Number of live processes whose environment carries EXILE_INSTANCE_ID=<id>.
pub fn processes_of(id: &str) -> usize {
    instance_ids_of_processes()
        .filter(|found| found == id)
        .count()
}

/// Live processes per EXILE_INSTANCE_ID, in one pass over /proc (for many instances at once).
pub fn process_census() -> HashMap<String, usize> {
    let mut census = HashMap::new();
    for id in instance_ids_of_processes() {
        *census.entry(id).or_insert(0) += 1;
    }
    census
}

/// The EXILE_INSTANCE_ID of every live process that has one.
fn instance_ids_of_processes() -> impl Iterator<Item = String> {
    const KEY: &[u8] = b"EXILE_INSTANCE_ID=";
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            // Zombies have no environment to read; they are not running.
            let env = std::fs::read(e.path().join("environ")).ok()?;
            env.split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(KEY))
                .map(|id| String::from_utf8_lossy(id).into_owned())
        })
}

/// Spawns an instance on `spawner` (empty: let the master pick).
pub async fn spawn(c: &exile_testkit::Clients, spawner: &str) -> Result<pb::Instance> {
    let r = c
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            spawner_id: spawner.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    r.instance
        .ok_or_else(|| anyhow!("no instance in the answer"))
}

/// Whether this is CI (`CI` set to anything but empty, `0` or `false`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// A test cannot run on this host: a loud skip, or under CI (where `.ci/run` provides what
/// every test needs, as root) a failure.
pub fn cannot_run(what: &str, why: &str) {
    assert!(!under_ci(), "{what} cannot run under CI=true: {why}");
    use std::io::Write as _;
    // Straight to stderr, past the harness's capture, so a passing skip is still seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}: {why}");
}

/// Sets a global setting as an admin would.
pub async fn set_setting(c: &exile_testkit::Clients, key: &str, value: &str) {
    c.settings
        .clone()
        .set_setting(pb::SetSettingRequest {
            key: key.into(),
            value: value.into(),
            scope: String::new(),
        })
        .await
        .unwrap();
}
