//! The builds page's logic: the build list (order, grouping, where each version is active and
//! used), the rollout panel's figures, the upload, activate and rollout forms, and the upload
//! itself as a state machine (hash pass, parts at the offset the master reports, retries,
//! restart, cancel). No browser APIs here, so all of it is unit-tested on the host; the page
//! reads the file and makes the calls.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use exile_api::build::{MAX_MANIFEST_BYTES, MAX_UPLOAD_PART, Manifest, check_name, check_version};
use exile_api::v1 as pb;
use sha2::{Digest, Sha256};

use crate::state::{Fleet, backoff_ms, format_bytes, instance_is_live, percent};

/// Bytes read from the file at a time while hashing: large enough that the browser's per-read
/// cost does not dominate, small enough to keep memory flat for a file of several GiB.
pub const HASH_SLICE: u64 = 4 << 20;

/// Bytes sent in one `UploadPart`: the most the master takes.
pub const PART_BYTES: u64 = MAX_UPLOAD_PART as u64;

/// Failed calls retried in a row before an upload gives up.
pub const MAX_RETRIES: u32 = 4;

/// Rollouts the panel lists at most (running ones always show).
pub const MAX_RECENT_ROLLOUTS: usize = 10;

/// `name@version` of a build.
pub fn build_ref(b: &pb::Build) -> String {
    format!("{}@{}", b.name, b.version)
}

/// The first 12 hex digits of a SHA-256, as a column shows it (the full one goes in a tooltip).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Builds newest first (ties: name, then version, then id, so the order never flickers).
pub fn newest_first(builds: impl IntoIterator<Item = pb::Build>) -> Vec<pb::Build> {
    let mut v: Vec<_> = builds.into_iter().collect();
    v.sort_by(|a, b| {
        b.created_at_unix_ms
            .cmp(&a.created_at_unix_ms)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| b.version.cmp(&a.version))
            .then_with(|| a.id.cmp(&b.id))
    });
    v
}

/// How the build list is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildOrder {
    /// One list, newest upload first.
    #[default]
    Newest,
    /// Grouped by name (names A to Z), each name's versions newest first.
    ByName,
}

/// The versions of one build name.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildGroup {
    /// Build name; empty in [`BuildOrder::Newest`], where there is one group of all builds.
    pub name: String,
    /// Its versions, newest first.
    pub builds: Vec<pb::Build>,
}

/// The build list in the chosen order, as groups (one unnamed group when not grouped).
pub fn arrange(builds: impl IntoIterator<Item = pb::Build>, order: BuildOrder) -> Vec<BuildGroup> {
    let all = newest_first(builds);
    match order {
        BuildOrder::Newest if all.is_empty() => Vec::new(),
        BuildOrder::Newest => vec![BuildGroup {
            name: String::new(),
            builds: all,
        }],
        BuildOrder::ByName => {
            let mut by_name: BTreeMap<String, Vec<pb::Build>> = BTreeMap::new();
            for b in all {
                by_name.entry(b.name.clone()).or_default().push(b);
            }
            by_name
                .into_iter()
                .map(|(name, builds)| BuildGroup { name, builds })
                .collect()
        }
    }
}

/// A selector as people write it: `k=v, k2=v2` sorted by key; "all spawners" when empty.
pub fn format_selector(selector: &HashMap<String, String>) -> String {
    if selector.is_empty() {
        return "all spawners".into();
    }
    let sorted: BTreeMap<_, _> = selector.iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a spawner selector: `k=v` pairs separated by commas or spaces; blank is the empty
/// selector (every spawner). Errors name the bad part.
pub fn parse_selector(s: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for part in s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("selector part \"{part}\" is not key=value"));
        };
        if k.is_empty() {
            return Err(format!("selector part \"{part}\" has no key"));
        }
        if v.is_empty() {
            return Err(format!("selector key \"{k}\" has no value"));
        }
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("selector key \"{k}\" is given twice"));
        }
    }
    Ok(out)
}

/// Where a version is active, one entry per activation, e.g. `["all spawners", "region=eu"]`.
pub fn active_where(b: &pb::Build) -> Vec<String> {
    let mut v: Vec<_> = b
        .activations
        .iter()
        .map(|a| format_selector(&a.selector))
        .collect();
    v.sort();
    v
}

/// "12 files · 40.0 MiB" (what the archive unpacks to).
pub fn contents_summary(b: &pb::Build) -> String {
    let files = if b.file_count == 1 { "file" } else { "files" };
    format!(
        "{} {files} · {}",
        b.file_count,
        format_bytes(b.unpacked_bytes)
    )
}

/// How long ago `at_ms` was at `now_ms`: "5m 12s ago", "just now" within a second.
pub fn format_age(now_ms: i64, at_ms: i64) -> String {
    // The browser's clock may run behind the master's: what the master just did is "just
    // now", never "in 3s".
    if at_ms > now_ms {
        return "just now".into();
    }
    exile_api::format::ago(at_ms, now_ms)
}

/// Who uses a version right now, from the live fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Instances of this version known to the master (any state).
    pub instances: usize,
    /// Those of them with a live process.
    pub running: usize,
    /// Names of the spawners that hold it on disk, sorted.
    pub spawners: Vec<String>,
}

/// Instances running a version and spawners holding it, as the watch stream last showed them.
pub fn usage(fleet: &Fleet, b: &pb::Build) -> Usage {
    let of_build = fleet
        .instances
        .values()
        .filter(|i| i.build_name == b.name && i.build_version == b.version);
    let (mut instances, mut running) = (0, 0);
    for i in of_build {
        instances += 1;
        if instance_is_live(i.state) {
            running += 1;
        }
    }
    let mut spawners: Vec<String> = fleet
        .spawners
        .values()
        .filter(|s| {
            s.builds
                .iter()
                .any(|h| h.name == b.name && h.version == b.version)
        })
        .map(|s| s.name.clone())
        .collect();
    spawners.sort();
    Usage {
        instances,
        running,
        spawners,
    }
}

/// Whether a rollout is still replacing instances.
pub fn rollout_running(r: &pb::Rollout) -> bool {
    r.state == pb::RolloutState::Running as i32
}

/// Human name of a rollout state.
pub fn rollout_state_label(state: i32) -> &'static str {
    match pb::RolloutState::try_from(state) {
        Ok(pb::RolloutState::Running) => "Running",
        Ok(pb::RolloutState::Succeeded) => "Succeeded",
        Ok(pb::RolloutState::Cancelled) => "Cancelled",
        Ok(pb::RolloutState::RolledBack) => "Rolled back",
        Ok(pb::RolloutState::Failed) => "Failed",
        _ => "Unknown",
    }
}

/// Colour class of a rollout state badge (as `state::state_tone`).
pub fn rollout_tone(state: i32) -> &'static str {
    match pb::RolloutState::try_from(state) {
        Ok(pb::RolloutState::Succeeded) => "ok",
        Ok(pb::RolloutState::Running) => "warn",
        Ok(pb::RolloutState::RolledBack | pb::RolloutState::Failed) => "bad",
        _ => "idle",
    }
}

/// Rollouts for the panel: running ones first, then the most recent finished ones, each
/// newest first; at most [`MAX_RECENT_ROLLOUTS`] finished ones.
pub fn panel_rollouts(fleet: &Fleet) -> Vec<pb::Rollout> {
    let newest = |a: &pb::Rollout, b: &pb::Rollout| {
        b.started_at_unix_ms
            .cmp(&a.started_at_unix_ms)
            .then_with(|| b.id.cmp(&a.id))
    };
    let (mut running, mut done): (Vec<_>, Vec<_>) =
        fleet.rollouts.values().cloned().partition(rollout_running);
    running.sort_by(newest);
    done.sort_by(newest);
    done.truncate(MAX_RECENT_ROLLOUTS);
    running.extend(done);
    running
}

/// Share of a rollout's instances replaced, 0..=100 (a rollout with nothing to replace is
/// complete once it ended, empty while it runs).
pub fn rollout_percent(r: &pb::Rollout) -> f64 {
    if r.total == 0 {
        return if rollout_running(r) { 0.0 } else { 100.0 };
    }
    percent(f64::from(r.replaced), f64::from(r.total))
}

/// "3/6 replaced · 1 in progress · 1 waiting (allocated) · 0 failed".
pub fn rollout_summary(r: &pb::Rollout) -> String {
    format!(
        "{}/{} replaced · {} in progress · {} waiting (allocated) · {} failed",
        r.replaced, r.total, r.in_progress, r.waiting_allocated, r.failed
    )
}

/// What the upload form holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UploadForm {
    /// Build name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Optional `exile-build.toml` text given beside the archive.
    pub manifest: String,
    /// Size of the chosen file, when one is chosen.
    pub file_size: Option<u64>,
}

/// What is wrong with each field of the upload form (shown beside the field).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadErrors {
    /// The archive.
    pub file: Option<String>,
    /// The name.
    pub name: Option<String>,
    /// The version.
    pub version: Option<String>,
    /// The manifest.
    pub manifest: Option<String>,
}

impl UploadErrors {
    /// No field has a problem.
    pub fn is_empty(&self) -> bool {
        self.file.is_none()
            && self.name.is_none()
            && self.version.is_none()
            && self.manifest.is_none()
    }
}

/// Checks the form with the rules the master applies, so mistakes show before any byte moves.
pub fn check_upload(f: &UploadForm) -> UploadErrors {
    let manifest = if f.manifest.trim().is_empty() {
        None
    } else if f.manifest.len() > MAX_MANIFEST_BYTES {
        Some(format!(
            "the manifest is {}; at most {} is allowed",
            format_bytes(f.manifest.len() as u64),
            format_bytes(MAX_MANIFEST_BYTES as u64)
        ))
    } else {
        Manifest::parse(&f.manifest)
            .err()
            .map(|e| format!("manifest {e}"))
    };
    UploadErrors {
        file: match f.file_size {
            None => Some("choose an archive (.zip, .tar.gz, .tar.zst or .tar)".into()),
            Some(0) => Some("the file is empty".into()),
            Some(_) => None,
        },
        name: check_name(f.name.trim()).err(),
        version: check_version(f.version.trim()).err(),
        manifest,
    }
}

/// Name and version guessed from an archive's file name (`openarena-0.8.9.zip` →
/// `openarena`, `0.8.9`): the part before the last `-` or `_` that is followed by a digit.
/// Either is empty when the file name does not say.
pub fn guess_name_version(file_name: &str) -> (String, String) {
    let lower = file_name.to_ascii_lowercase();
    let stem_len = [".tar.gz", ".tar.zst", ".tgz", ".tzst", ".zip", ".tar"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(file_name.len(), |ext| file_name.len() - ext.len());
    let stem = &file_name[..stem_len];
    let split = stem.char_indices().rev().find(|&(i, c)| {
        (c == '-' || c == '_') && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit())
    });
    let (name, version) = match split {
        Some((i, _)) => (&stem[..i], &stem[i + 1..]),
        None => (stem, ""),
    };
    let keep = |s: &str, check: fn(&str) -> Result<(), String>| {
        if check(s).is_ok() {
            s.to_owned()
        } else {
            String::new()
        }
    };
    (keep(name, check_name), keep(version, check_version))
}

/// The incremental SHA-256 of the hash pass: fed slice by slice, never the whole file.
#[derive(Clone, Default)]
pub struct ArchiveHasher {
    hasher: Sha256,
}

impl ArchiveHasher {
    /// Adds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The digest as lowercase hex, as the master names builds.
    pub fn finish(self) -> String {
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where an upload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// First pass over the file: computing its SHA-256.
    Hashing,
    /// Announcing the upload (`BeginUpload`).
    Beginning,
    /// Sending parts (`UploadPart`).
    Sending,
    /// The master checks and stores the archive (`FinishUpload`).
    Finishing,
    /// Stored: a sentence saying what the master did.
    Done(String),
    /// Given up: why.
    Failed(String),
    /// Stopped by the user.
    Cancelled,
}

/// A failed call of an upload, as the upload handles it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The master holds a different number of bytes (`at`) than the part assumed: go on
    /// from there. `message` is the master's sentence, shown if the offset is of no use.
    Offset {
        /// Bytes the master holds.
        at: u64,
        /// What the master said.
        message: String,
    },
    /// The call may go through if made again (connection cut, master restarting).
    Transient(String),
    /// The master no longer has the upload (it expired or a write failed): begin again.
    Gone(String),
    /// Asking again cannot help (bad input, refused archive, no permission): the sentence.
    Fatal(String),
}

/// Sorts a failed call by what the upload can do about it. The master answers a part at the
/// wrong offset with FAILED_PRECONDITION ending in "send the part at offset N".
pub fn classify(code: tonic::Code, message: &str) -> CallError {
    use tonic::Code;
    match code {
        Code::FailedPrecondition => match reported_offset(message) {
            Some(at) => CallError::Offset {
                at,
                message: message.to_owned(),
            },
            None => CallError::Fatal(message.to_owned()),
        },
        Code::NotFound => CallError::Gone(message.to_owned()),
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal
        | Code::Cancelled => CallError::Transient(message.to_owned()),
        _ => CallError::Fatal(message.to_owned()),
    }
}

/// The number after the last "offset" in a message, if any.
fn reported_offset(message: &str) -> Option<u64> {
    let at = message.rfind("offset")?;
    let digits: String = message[at + "offset".len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What the caller does after a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Make the call the phase asks for again after this many milliseconds.
    After(u32),
    /// Stop: the upload failed (its phase says why).
    No,
}

/// The progress of one upload, and the rules for going on after each answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// File name it came from.
    pub file_name: String,
    /// Size of the file.
    pub size: u64,
    /// Where it is.
    pub phase: Phase,
    /// Bytes hashed in the first pass.
    pub hashed: u64,
    /// Bytes the master confirmed (the next part's offset).
    pub sent: u64,
    /// Failed calls in a row (reset by every call that goes through).
    pub retries: u32,
    /// The last failure being retried, for the user.
    pub retrying: Option<String>,
}

impl Upload {
    /// An upload of `size` bytes from `file_name`, starting with the hash pass.
    pub fn new(file_name: &str, size: u64) -> Self {
        Upload {
            file_name: file_name.to_owned(),
            size,
            phase: Phase::Hashing,
            hashed: 0,
            sent: 0,
            retries: 0,
            retrying: None,
        }
    }

    /// Still moving (not done, failed or cancelled).
    pub fn active(&self) -> bool {
        matches!(
            self.phase,
            Phase::Hashing | Phase::Beginning | Phase::Sending | Phase::Finishing
        )
    }

    /// The next slice to hash, or None when the pass is complete.
    pub fn next_hash_slice(&self) -> Option<Range<u64>> {
        (self.phase == Phase::Hashing && self.hashed < self.size)
            .then(|| self.hashed..self.size.min(self.hashed + HASH_SLICE))
    }

    /// `n` more bytes were hashed; the pass ends once the whole file was read.
    pub fn hashed_bytes(&mut self, n: u64) {
        if self.phase != Phase::Hashing {
            return;
        }
        self.hashed = self.size.min(self.hashed + n);
        if self.hashed == self.size {
            self.phase = Phase::Beginning;
        }
    }

    /// The master accepted the upload's metadata: parts start at 0.
    pub fn begun(&mut self) {
        if self.phase == Phase::Beginning {
            self.phase = Phase::Sending;
            self.sent = 0;
            self.ok();
        }
    }

    /// The bytes of the next part, or None once all were sent (or when not sending).
    pub fn next_part(&self) -> Option<Range<u64>> {
        (self.phase == Phase::Sending && self.sent < self.size)
            .then(|| self.sent..self.size.min(self.sent + PART_BYTES))
    }

    /// The master answered a part starting at `offset` with `received` bytes held; once it
    /// holds the whole file the upload moves on to finishing.
    pub fn part_sent(&mut self, offset: u64, received: u64) {
        if self.phase != Phase::Sending {
            return;
        }
        if received <= offset || received > self.size {
            self.fail(format!(
                "the master reported {received} bytes received after a part at offset {offset} of a {}-byte file; upload it again",
                self.size
            ));
            return;
        }
        self.sent = received;
        self.ok();
        if self.sent == self.size {
            self.phase = Phase::Finishing;
        }
    }

    /// The master stored the build; `summary` says what it did.
    pub fn done(&mut self, summary: String) {
        if self.phase == Phase::Finishing {
            self.phase = Phase::Done(summary);
            self.ok();
        }
    }

    /// A call of the current phase failed: decides whether and how to go on.
    pub fn failed(&mut self, e: CallError) -> Retry {
        if !self.active() {
            // A late answer after a cancel or the end changes nothing.
            return Retry::No;
        }
        if self.phase == Phase::Hashing {
            // The hash pass reads the local file; a failed read cannot be retried usefully.
            let (CallError::Offset { message: m, .. }
            | CallError::Transient(m)
            | CallError::Gone(m)
            | CallError::Fatal(m)) = e;
            self.fail(m);
            return Retry::No;
        }
        let message = match &e {
            CallError::Fatal(m) => {
                self.fail(m.clone());
                return Retry::No;
            }
            CallError::Offset { message, .. } if self.phase != Phase::Sending => {
                self.fail(message.clone());
                return Retry::No;
            }
            CallError::Offset { at, .. } if *at > self.size => {
                self.fail(format!(
                    "the master expects offset {at}, which this {}-byte file does not have; upload it again",
                    self.size
                ));
                return Retry::No;
            }
            CallError::Offset { at, .. } => {
                format!("the master holds {at} bytes; going on from there")
            }
            CallError::Transient(m) | CallError::Gone(m) => m.clone(),
        };
        if self.retries >= MAX_RETRIES {
            self.fail(format!("{message} (gave up after {MAX_RETRIES} retries)"));
            return Retry::No;
        }
        self.retries += 1;
        self.retrying = Some(message);
        match e {
            CallError::Offset { at, .. } => {
                self.sent = at;
                if at == self.size {
                    self.phase = Phase::Finishing;
                }
                Retry::After(0)
            }
            CallError::Gone(_) => {
                // The master dropped what it had: announce the upload again and start over.
                self.phase = Phase::Beginning;
                self.sent = 0;
                Retry::After(backoff_ms(self.retries - 1))
            }
            _ => Retry::After(backoff_ms(self.retries - 1)),
        }
    }

    /// Gives up with `why`.
    pub fn fail(&mut self, why: String) {
        self.phase = Phase::Failed(why);
        self.retrying = None;
    }

    /// The user cancelled (only while moving).
    pub fn cancel(&mut self) {
        if self.active() {
            self.phase = Phase::Cancelled;
            self.retrying = None;
        }
    }

    fn ok(&mut self) {
        self.retries = 0;
        self.retrying = None;
    }

    /// Fill of the progress bar, 0..=100: the hash pass and the upload each have their own.
    pub fn percent(&self) -> f64 {
        match self.phase {
            Phase::Hashing => percent(self.hashed as f64, self.size as f64),
            Phase::Done(_) => 100.0,
            _ => percent(self.sent as f64, self.size as f64),
        }
    }

    /// What the progress line says, e.g. "Uploading: 12.0 MiB of 40.0 MiB (30%)".
    pub fn status(&self) -> String {
        let of = |n: u64| {
            format!(
                "{} of {} ({:.0}%)",
                format_bytes(n),
                format_bytes(self.size),
                self.percent().floor()
            )
        };
        match &self.phase {
            Phase::Hashing => format!("Computing SHA-256: {}", of(self.hashed)),
            Phase::Beginning => "Announcing the upload to the master…".into(),
            Phase::Sending => format!("Uploading: {}", of(self.sent)),
            Phase::Finishing => "The master is checking and storing the archive…".into(),
            Phase::Done(s) => s.clone(),
            Phase::Failed(why) => format!("Upload failed: {why}"),
            Phase::Cancelled => format!("Upload cancelled after {}.", of(self.sent)),
        }
    }
}

/// The sentence shown once the master stored an upload.
pub fn upload_summary(r: &pb::UploadBuildResponse) -> String {
    let Some(b) = &r.build else {
        return "The master stored the upload.".into();
    };
    let store = if r.new_chunks == 0 {
        "the master already held every byte of it".to_owned()
    } else {
        format!(
            "{} new {} ({}) added to the store",
            r.new_chunks,
            if r.new_chunks == 1 { "chunk" } else { "chunks" },
            format_bytes(r.new_bytes)
        )
    };
    format!(
        "Stored {} (SHA-256 {}…, {}): {store}.",
        build_ref(b),
        short_sha(&b.sha256),
        format_bytes(b.size)
    )
}

/// What the signed-in user may do on the builds page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Abilities {
    /// Upload, activate, start and cancel rollouts (operator).
    pub operate: bool,
    /// Delete builds (admin).
    pub delete: bool,
}

/// Abilities of a role as WhoAmI reports it. `None` (the role could not be learnt) offers
/// everything and leaves refusing to the master, whose sentence the page shows.
pub fn abilities(role: Option<i32>) -> Abilities {
    let Some(role) = role else {
        return Abilities {
            operate: true,
            delete: true,
        };
    };
    let role = pb::Role::try_from(role).unwrap_or(pb::Role::Unspecified);
    Abilities {
        operate: matches!(role, pb::Role::Operator | pb::Role::Admin),
        delete: role == pb::Role::Admin,
    }
}

/// What the rollout form holds (text as typed).
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutForm {
    /// Most instances out of service at once.
    pub max_unavailable: String,
    /// Canary share, percent ("10" or "10%").
    pub canary: String,
    /// New instances that may fail before it rolls back.
    pub failure_threshold: String,
    /// Spawner selector (`k=v` pairs), blank for all.
    pub selector: String,
    /// Also activate the version for that selector.
    pub activate: bool,
}

impl Default for RolloutForm {
    fn default() -> Self {
        RolloutForm {
            max_unavailable: "1".into(),
            canary: "0".into(),
            failure_threshold: "1".into(),
            selector: String::new(),
            activate: true,
        }
    }
}

fn whole_number(what: &str, s: &str, range: Range<u32>) -> Result<u32, String> {
    let t = s.trim();
    let n: u32 = t
        .parse()
        .map_err(|_| format!("{what} must be a whole number, not \"{t}\""))?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{what} must be between {} and {}",
            range.start,
            range.end - 1
        ))
    }
}

impl RolloutForm {
    /// The request to move instances to `build` (`name@version`), or what is wrong.
    pub fn request(&self, build: &str) -> Result<pb::StartRolloutRequest, String> {
        let max_unavailable = whole_number("max unavailable", &self.max_unavailable, 1..10_001)?;
        let canary = self.canary.trim();
        let canary_percent =
            whole_number("canary", canary.strip_suffix('%').unwrap_or(canary), 0..101)?;
        let failure_threshold =
            whole_number("failure threshold", &self.failure_threshold, 1..10_001)?;
        Ok(pb::StartRolloutRequest {
            build: build.to_owned(),
            max_unavailable,
            canary_percent,
            failure_threshold,
            spawner_selector: parse_selector(&self.selector)?,
            activate: self.activate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::watch_event::Kind;

    fn build(id: &str, name: &str, version: &str, at: i64) -> pb::Build {
        pb::Build {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            created_at_unix_ms: at,
            ..Default::default()
        }
    }

    fn names(v: &[pb::Build]) -> Vec<String> {
        v.iter().map(build_ref).collect()
    }

    #[test]
    fn builds_list_newest_first_or_grouped_by_name() {
        let all = vec![
            build("1", "oa", "1.0", 100),
            build("2", "zz", "0.1", 300),
            build("3", "oa", "1.1", 200),
            build("4", "aa", "2", 200),
        ];
        let newest = arrange(all.clone(), BuildOrder::Newest);
        assert_eq!(newest.len(), 1);
        assert_eq!(
            names(&newest[0].builds),
            ["zz@0.1", "aa@2", "oa@1.1", "oa@1.0"]
        );
        let grouped = arrange(all, BuildOrder::ByName);
        let summary: Vec<_> = grouped
            .iter()
            .map(|g| (g.name.as_str(), names(&g.builds)))
            .collect();
        assert_eq!(
            summary,
            [
                ("aa", vec!["aa@2".to_owned()]),
                ("oa", vec!["oa@1.1".to_owned(), "oa@1.0".to_owned()]),
                ("zz", vec!["zz@0.1".to_owned()]),
            ]
        );
        assert!(arrange(Vec::new(), BuildOrder::Newest).is_empty());
        assert!(arrange(Vec::new(), BuildOrder::ByName).is_empty());
    }

    #[test]
    fn selectors_parse_and_print_sorted() {
        let s = parse_selector(" region=eu, gpu=yes  tier=1").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(format_selector(&s), "gpu=yes, region=eu, tier=1");
        assert!(parse_selector("").unwrap().is_empty());
        assert_eq!(format_selector(&HashMap::new()), "all spawners");
        assert!(parse_selector("region").unwrap_err().contains("\"region\""));
        assert!(parse_selector("=eu").unwrap_err().contains("no key"));
        assert!(parse_selector("region=").unwrap_err().contains("no value"));
        assert!(
            parse_selector("a=1,a=2")
                .unwrap_err()
                .contains("given twice")
        );
    }

    #[test]
    fn formatting_of_a_build() {
        let mut b = build("1", "oa", "1", 0);
        b.sha256 = "0123456789abcdef".repeat(4);
        b.file_count = 12;
        b.unpacked_bytes = 40 << 20;
        b.activations = vec![
            pb::BuildActivation {
                selector: [("region".to_owned(), "eu".to_owned())].into(),
                ..Default::default()
            },
            pb::BuildActivation::default(),
        ];
        assert_eq!(short_sha(&b.sha256), "0123456789ab");
        assert_eq!(short_sha("abc"), "abc");
        assert_eq!(contents_summary(&b), "12 files · 40.0 MiB");
        assert_eq!(active_where(&b), ["all spawners", "region=eu"]);
        assert_eq!(format_age(10_500, 10_000), "just now");
        assert_eq!(format_age(72_000, 10_000), "1m 2s ago");
        assert_eq!(format_age(0, 10_000), "just now");
    }

    #[test]
    fn usage_counts_instances_and_holders_of_that_exact_version() {
        let mut f = Fleet::default();
        let inst = |id: &str, version: &str, state: pb::InstanceState| pb::Instance {
            id: id.into(),
            build_name: "oa".into(),
            build_version: version.into(),
            state: state as i32,
            ..Default::default()
        };
        let held = |version: &str| pb::HeldBuild {
            name: "oa".into(),
            version: version.into(),
            ..Default::default()
        };
        f.apply(pb::WatchEvent {
            sequence: 1,
            at_unix_ms: 0,
            kind: Some(Kind::Snapshot(pb::Snapshot {
                instances: vec![
                    inst("i1", "1", pb::InstanceState::Running),
                    inst("i2", "1", pb::InstanceState::Stopped),
                    inst("i3", "2", pb::InstanceState::Running),
                ],
                spawners: vec![
                    pb::Spawner {
                        id: "s1".into(),
                        name: "zeta".into(),
                        builds: vec![held("1"), held("2")],
                        ..Default::default()
                    },
                    pb::Spawner {
                        id: "s2".into(),
                        name: "alpha".into(),
                        builds: vec![held("1")],
                        ..Default::default()
                    },
                    pb::Spawner {
                        id: "s3".into(),
                        name: "none".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            })),
        });
        let u = usage(&f, &build("b", "oa", "1", 0));
        assert_eq!(
            u,
            Usage {
                instances: 2,
                running: 1,
                spawners: vec!["alpha".into(), "zeta".into()]
            }
        );
        let u = usage(&f, &build("b", "oa", "3", 0));
        assert_eq!(u, Usage::default());
    }

    fn rollout(id: &str, state: pb::RolloutState, at: i64) -> pb::Rollout {
        pb::Rollout {
            id: id.into(),
            state: state as i32,
            started_at_unix_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn rollouts_panel_puts_running_first_and_caps_the_finished() {
        let mut f = Fleet::default();
        f.rollouts.insert(
            "r-old".into(),
            rollout("r-old", pb::RolloutState::Running, 1),
        );
        f.rollouts.insert(
            "r-new".into(),
            rollout("r-new", pb::RolloutState::Running, 5),
        );
        for i in 0..15 {
            let id = format!("done-{i:02}");
            f.rollouts.insert(
                id.clone(),
                rollout(&id, pb::RolloutState::Succeeded, 10 + i),
            );
        }
        let ids: Vec<_> = panel_rollouts(&f).into_iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 2 + MAX_RECENT_ROLLOUTS);
        assert_eq!(&ids[..3], ["r-new", "r-old", "done-14"]);
        assert_eq!(ids.last().map(String::as_str), Some("done-05"));
    }

    #[test]
    fn rollout_figures() {
        let mut r = rollout("r", pb::RolloutState::Running, 0);
        assert_eq!(rollout_percent(&r), 0.0);
        r.total = 6;
        r.replaced = 3;
        r.in_progress = 1;
        r.waiting_allocated = 1;
        assert_eq!(rollout_percent(&r), 50.0);
        assert_eq!(
            rollout_summary(&r),
            "3/6 replaced · 1 in progress · 1 waiting (allocated) · 0 failed"
        );
        assert_eq!(rollout_state_label(r.state), "Running");
        assert_eq!(rollout_tone(r.state), "warn");
        let done = rollout("d", pb::RolloutState::Succeeded, 0);
        assert_eq!(rollout_percent(&done), 100.0);
        assert_eq!(
            rollout_state_label(pb::RolloutState::RolledBack as i32),
            "Rolled back"
        );
        assert_eq!(rollout_tone(pb::RolloutState::Failed as i32), "bad");
        assert_eq!(rollout_state_label(42), "Unknown");
    }

    #[test]
    fn upload_form_is_checked_before_any_byte_moves() {
        let good = UploadForm {
            name: "openarena".into(),
            version: "0.8.9+r2".into(),
            manifest: String::new(),
            file_size: Some(10),
        };
        assert!(check_upload(&good).is_empty());
        let bad = UploadForm {
            name: "../x".into(),
            version: String::new(),
            manifest: "[run]\ncommand = 5\n".into(),
            file_size: None,
        };
        let e = check_upload(&bad);
        assert!(e.name.unwrap().contains("build name"));
        assert!(e.version.unwrap().contains("1 to 64"));
        assert!(e.manifest.unwrap().starts_with("manifest"));
        assert!(e.file.unwrap().contains("choose"));
        let empty = UploadForm {
            file_size: Some(0),
            ..good.clone()
        };
        assert_eq!(
            check_upload(&empty).file.as_deref(),
            Some("the file is empty")
        );
        let huge = UploadForm {
            manifest: "#".repeat(MAX_MANIFEST_BYTES + 1),
            ..good
        };
        assert!(check_upload(&huge).manifest.unwrap().contains("at most"));
    }

    #[test]
    fn name_and_version_are_guessed_from_the_file_name() {
        let g = |s: &str| guess_name_version(s);
        assert_eq!(
            g("openarena-0.8.9.zip"),
            ("openarena".into(), "0.8.9".into())
        );
        assert_eq!(
            g("my-game_server-2.1.0-rc1.tar.gz"),
            ("my-game_server".into(), "2.1.0-rc1".into())
        );
        assert_eq!(g("server.tar.zst"), ("server".into(), String::new()));
        assert_eq!(g("v2.zip"), ("v2".into(), String::new()));
        // Nothing that would be refused anyway.
        assert_eq!(g(".hidden-1.zip"), (String::new(), "1".into()));
    }

    #[test]
    fn hash_fed_in_slices_equals_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = ArchiveHasher::default();
        whole.update(&data);
        let mut sliced = ArchiveHasher::default();
        for c in data.chunks(333) {
            sliced.update(c);
        }
        assert_eq!(whole.finish(), sliced.finish());
        let mut abc = ArchiveHasher::default();
        abc.update(b"abc");
        assert_eq!(
            abc.finish(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Runs the hash pass and the begin of an upload of `size` bytes.
    fn begun(size: u64) -> Upload {
        let mut u = Upload::new("a.zip", size);
        while let Some(r) = u.next_hash_slice() {
            u.hashed_bytes(r.end - r.start);
        }
        assert_eq!(u.phase, Phase::Beginning);
        u.begun();
        u
    }

    #[test]
    fn upload_hashes_then_sends_parts_then_finishes() {
        let size = 2 * PART_BYTES + 5;
        let mut u = Upload::new("a.zip", size);
        assert_eq!(u.next_hash_slice(), Some(0..size.min(HASH_SLICE)));
        assert!(u.status().starts_with("Computing SHA-256: 0 B of"));
        u.hashed_bytes(size);
        assert_eq!(
            u.percent(),
            0.0,
            "the upload bar starts empty after the hash pass"
        );
        u.begun();
        let mut parts = Vec::new();
        while let Some(r) = u.next_part() {
            parts.push(r.clone());
            u.part_sent(r.start, r.end);
        }
        assert_eq!(
            parts,
            [
                0..PART_BYTES,
                PART_BYTES..2 * PART_BYTES,
                2 * PART_BYTES..size
            ]
        );
        assert_eq!(u.phase, Phase::Finishing);
        assert_eq!(u.percent(), 100.0);
        u.done("Stored a@1.".into());
        assert_eq!(u.phase, Phase::Done("Stored a@1.".into()));
        assert!(!u.active());
    }

    #[test]
    fn progress_reads_in_bytes_and_percent() {
        let mut u = begun(4 * PART_BYTES);
        let r = u.next_part().unwrap();
        u.part_sent(r.start, r.end);
        assert_eq!(u.percent(), 25.0);
        assert_eq!(u.status(), "Uploading: 1.0 MiB of 4.0 MiB (25%)");
    }

    #[test]
    fn a_failed_part_resumes_at_the_offset_the_master_reports() {
        let mut u = begun(3 * PART_BYTES);
        let r = u.next_part().unwrap();
        u.part_sent(r.start, r.end);
        // The second part went through but its answer was lost: the retry at the old offset
        // is refused and the master names the offset it holds.
        let e = classify(
            tonic::Code::Unavailable,
            "connection reset while the part was in flight",
        );
        assert!(matches!(u.failed(e), Retry::After(ms) if ms > 0));
        assert_eq!(u.next_part(), Some(PART_BYTES..2 * PART_BYTES));
        let msg = format!(
            "this part starts at offset {PART_BYTES}, but {} bytes of the upload arrived so far: send the part at offset {}",
            2 * PART_BYTES,
            2 * PART_BYTES
        );
        let e = classify(tonic::Code::FailedPrecondition, &msg);
        assert!(matches!(e, CallError::Offset { at, .. } if at == 2 * PART_BYTES));
        assert_eq!(u.failed(e), Retry::After(0));
        assert_eq!(u.next_part(), Some(2 * PART_BYTES..3 * PART_BYTES));
        assert!(u.retrying.is_some());
        u.part_sent(2 * PART_BYTES, 3 * PART_BYTES);
        assert_eq!((u.retries, u.retrying.clone()), (0, None));
        assert_eq!(u.phase, Phase::Finishing);
    }

    #[test]
    fn an_offset_at_the_end_goes_straight_to_finishing_and_a_wild_one_fails() {
        let offset = |at: u64| CallError::Offset {
            at,
            message: format!("send the part at offset {at}"),
        };
        let mut u = begun(PART_BYTES);
        assert_eq!(u.failed(offset(PART_BYTES)), Retry::After(0));
        assert_eq!(u.phase, Phase::Finishing);
        let mut u = begun(PART_BYTES);
        assert_eq!(u.failed(offset(PART_BYTES + 1)), Retry::No);
        assert!(matches!(u.phase, Phase::Failed(ref m) if m.contains("does not have")));
        // Outside the parts an offset means nothing here: the master's sentence is shown.
        let mut u = begun(PART_BYTES);
        u.part_sent(0, PART_BYTES);
        assert_eq!(u.failed(offset(3)), Retry::No);
        assert_eq!(u.phase, Phase::Failed("send the part at offset 3".into()));
    }

    #[test]
    fn retries_stop_after_a_few_in_a_row_and_reset_on_progress() {
        let mut u = begun(3 * PART_BYTES);
        for _ in 0..MAX_RETRIES {
            assert!(matches!(
                u.failed(CallError::Transient("cut".into())),
                Retry::After(_)
            ));
        }
        // One part goes through: the count starts over.
        u.part_sent(0, PART_BYTES);
        for _ in 0..MAX_RETRIES {
            assert!(matches!(
                u.failed(CallError::Transient("cut".into())),
                Retry::After(_)
            ));
        }
        assert_eq!(u.failed(CallError::Transient("cut".into())), Retry::No);
        assert_eq!(
            u.phase,
            Phase::Failed(format!("cut (gave up after {MAX_RETRIES} retries)"))
        );
        assert_eq!(u.sent, PART_BYTES);
    }

    #[test]
    fn a_refusal_is_final_and_shown_as_the_master_said_it() {
        let mut u = begun(PART_BYTES);
        let e = classify(
            tonic::Code::PermissionDenied,
            "UploadPart needs the operator role",
        );
        assert_eq!(u.failed(e), Retry::No);
        assert_eq!(
            u.status(),
            "Upload failed: UploadPart needs the operator role"
        );
        // A refused archive at the end, too.
        let mut u = begun(PART_BYTES);
        u.part_sent(0, PART_BYTES);
        let e = classify(
            tonic::Code::InvalidArgument,
            "the archive's SHA-256 is not the one announced",
        );
        assert_eq!(u.failed(e), Retry::No);
        assert!(matches!(u.phase, Phase::Failed(ref m) if m.contains("SHA-256")));
        // FAILED_PRECONDITION without an offset is a refusal too.
        assert!(matches!(
            classify(tonic::Code::FailedPrecondition, "build oa@1 exists"),
            CallError::Fatal(_)
        ));
    }

    #[test]
    fn an_upload_the_master_dropped_begins_again() {
        let mut u = begun(3 * PART_BYTES);
        u.part_sent(0, PART_BYTES);
        let e = classify(
            tonic::Code::NotFound,
            "upload upl-1 is over; begin it again",
        );
        assert!(matches!(u.failed(e), Retry::After(_)));
        assert_eq!((u.phase.clone(), u.sent), (Phase::Beginning, 0));
        assert_eq!(u.next_part(), None);
        u.begun();
        assert_eq!(u.next_part(), Some(0..PART_BYTES));
    }

    #[test]
    fn a_master_answer_past_the_file_fails_instead_of_looping() {
        let mut u = begun(PART_BYTES);
        u.part_sent(0, PART_BYTES + 9);
        assert!(matches!(u.phase, Phase::Failed(_)));
        let mut u = begun(2 * PART_BYTES);
        u.part_sent(0, 0);
        assert!(matches!(u.phase, Phase::Failed(_)));
    }

    #[test]
    fn cancel_stops_a_moving_upload_only() {
        let mut u = begun(2 * PART_BYTES);
        u.part_sent(0, PART_BYTES);
        u.cancel();
        assert_eq!(u.phase, Phase::Cancelled);
        assert_eq!(u.next_part(), None);
        assert_eq!(
            u.status(),
            "Upload cancelled after 1.0 MiB of 2.0 MiB (50%)."
        );
        let mut done = begun(PART_BYTES);
        done.part_sent(0, PART_BYTES);
        done.done("ok".into());
        done.cancel();
        assert_eq!(done.phase, Phase::Done("ok".into()));
        // Late answers after a cancel change nothing.
        u.part_sent(PART_BYTES, 2 * PART_BYTES);
        assert_eq!(u.phase, Phase::Cancelled);
    }

    #[test]
    fn the_stored_sentence_says_what_the_store_gained() {
        let mut b = build("1", "oa", "2", 0);
        b.sha256 = "ab".repeat(32);
        b.size = 3 << 20;
        let mut r = pb::UploadBuildResponse {
            build: Some(b),
            new_chunks: 2,
            new_bytes: 1 << 20,
        };
        assert_eq!(
            upload_summary(&r),
            "Stored oa@2 (SHA-256 abababababab…, 3.0 MiB): 2 new chunks (1.0 MiB) added to the store."
        );
        r.new_chunks = 0;
        assert!(upload_summary(&r).ends_with("the master already held every byte of it."));
    }

    #[test]
    fn roles_decide_the_controls() {
        let viewer = abilities(Some(pb::Role::Viewer as i32));
        assert_eq!(viewer, Abilities::default());
        let op = abilities(Some(pb::Role::Operator as i32));
        assert!(op.operate && !op.delete);
        let admin = abilities(Some(pb::Role::Admin as i32));
        assert!(admin.operate && admin.delete);
        assert_eq!(abilities(Some(99)), Abilities::default());
        assert_eq!(abilities(None), admin);
    }

    #[test]
    fn rollout_form_makes_the_request_or_says_what_is_wrong() {
        let f = RolloutForm {
            max_unavailable: " 2 ".into(),
            canary: "10%".into(),
            failure_threshold: "3".into(),
            selector: "region=eu".into(),
            activate: true,
        };
        let r = f.request("oa@2").unwrap();
        assert_eq!(
            (
                r.build.as_str(),
                r.max_unavailable,
                r.canary_percent,
                r.failure_threshold,
                r.activate
            ),
            ("oa@2", 2, 10, 3, true)
        );
        assert_eq!(
            r.spawner_selector.get("region").map(String::as_str),
            Some("eu")
        );
        assert!(RolloutForm::default().request("oa@2").is_ok());
        let bad = |f: RolloutForm| f.request("oa@2").unwrap_err();
        assert!(
            bad(RolloutForm {
                canary: "101".into(),
                ..Default::default()
            })
            .contains("between 0 and 100")
        );
        assert!(
            bad(RolloutForm {
                max_unavailable: "0".into(),
                ..Default::default()
            })
            .contains("max unavailable")
        );
        assert!(
            bad(RolloutForm {
                failure_threshold: "x".into(),
                ..Default::default()
            })
            .contains("whole number")
        );
        assert!(
            bad(RolloutForm {
                selector: "eu".into(),
                ..Default::default()
            })
            .contains("key=value")
        );
    }
}
