//! The builds the master stores and where each is active, as the registry holds them in
//! memory: which version a spawner runs when a spawn names only a build name (or none), which
//! builds a spawner should keep on disk, and the counts a `Build` message shows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use exile_api::build::{Manifest, selector_matches};
use exile_api::v1 as pb;

use crate::error::{Error, Result};
use crate::model::Labels;

/// A stored build (its chunk list stays in the database).
#[derive(Clone, Debug, PartialEq)]
pub struct BuildMeta {
    /// Id, `bld-…`.
    pub id: String,
    /// Build name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of the archive, lowercase hex.
    pub sha256: String,
    /// Archive size, bytes.
    pub size: u64,
    /// Archive format.
    pub format: pb::ArchiveFormat,
    /// Text of its `exile-build.toml`; empty when it has none.
    pub manifest: String,
    /// Who uploaded it.
    pub created_by: String,
    /// Upload time, Unix ms.
    pub created_at: i64,
    /// Chunks it is stored as.
    pub chunk_count: u32,
    /// Files in the archive.
    pub file_count: u64,
    /// Bytes it unpacks to.
    pub unpacked_bytes: u64,
    /// Start command of its manifest for people (shell-quoted); empty when it has none.
    pub command: String,
    /// Ports of its manifest (numbers 0).
    pub ports: Vec<pb::Port>,
}

impl BuildMeta {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// What a spawner needs to fetch and run it.
    pub fn build_ref(&self) -> pb::BuildRef {
        pb::BuildRef {
            id: self.id.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }

    /// Fills `command` and `ports` from a parsed manifest.
    pub fn describe(&mut self, manifest: &Manifest) {
        // Quoted only where a word needs it, so placeholders read as written.
        let shown = |w: &String| {
            if !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
                return w.clone();
            }
            shlex::try_quote(w).map_or_else(|_| w.clone(), |q| q.into_owned())
        };
        self.command = manifest
            .command
            .as_ref()
            .map(|words| words.iter().map(shown).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        self.ports = manifest
            .ports
            .iter()
            .map(|p| pb::Port {
                name: p.name.clone(),
                port: 0,
                protocol: p.protocol as i32,
            })
            .collect();
    }
}

/// A version made the default of its name on the spawners a selector picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// Build name.
    pub name: String,
    /// `region` matches a spawner's region, other keys its labels; empty: every spawner.
    pub selector: Labels,
    /// The active build.
    pub build_id: String,
    /// When, Unix ms.
    pub activated_at: i64,
    /// Who.
    pub activated_by: String,
}

impl Activation {
    /// Canonical JSON of the selector (keys sorted): the key it is stored under.
    pub fn selector_json(&self) -> String {
        selector_json(&self.selector)
    }

    fn matches(&self, region: &str, labels: &HashMap<String, String>) -> bool {
        let selector: HashMap<String, String> = self
            .selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        selector_matches(&selector, region, labels)
    }

    fn to_pb(&self) -> pb::BuildActivation {
        pb::BuildActivation {
            selector: self
                .selector
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            activated_at_unix_ms: self.activated_at,
            activated_by: self.activated_by.clone(),
        }
    }
}

/// Canonical JSON of a selector: a sorted map, so equal selectors are equal strings.
pub fn selector_json(selector: &Labels) -> String {
    serde_json::to_string(selector).unwrap_or_else(|_| "{}".into())
}

/// A selector as people write it: `region=eu,gpu=yes`, or `every spawner`.
pub fn selector_text(selector: &Labels) -> String {
    if selector.is_empty() {
        return "every spawner".into();
    }
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Which build a spawn asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildChoice {
    /// The spawner's host build (`--build-command`), optionally a named version of it.
    Host,
    /// `name@version`.
    Exact {
        /// Build name.
        name: String,
        /// Version.
        version: String,
    },
    /// The version of this name active on the chosen spawner.
    Active(String),
    /// The one build name active on the chosen spawner, else its host build.
    Auto,
}

impl BuildChoice {
    /// From a spawn's `build` and `build_version` fields. A `build_version` without `build`
    /// names a version of the spawner's host build, as before uploaded builds existed.
    pub fn parse(build: &str, build_version: &str) -> Result<Self> {
        if build.is_empty() {
            return Ok(if build_version.is_empty() {
                BuildChoice::Auto
            } else {
                BuildChoice::Host
            });
        }
        if !build_version.is_empty() {
            return Err(Error::InvalidArgument(
                "give build (an uploaded build, name or name@version) or build_version (a version of the spawner's host build), not both".into(),
            ));
        }
        let spec = exile_api::build::BuildSpec::parse(build)
            .map_err(|e| Error::InvalidArgument(format!("build: {e}")))?;
        Ok(match spec.version {
            Some(version) => BuildChoice::Exact {
                name: spec.name,
                version,
            },
            None => BuildChoice::Active(spec.name),
        })
    }
}

/// The activation in force for a spawner among `candidates` (all of one name): of those whose
/// selector matches it, the most specific (most keys) wins, then the newest.
pub fn winning<'a>(
    candidates: impl IntoIterator<Item = &'a Activation>,
    region: &str,
    labels: &HashMap<String, String>,
) -> Option<&'a Activation> {
    candidates
        .into_iter()
        .filter(|a| a.matches(region, labels))
        .max_by(|a, b| {
            a.selector
                .len()
                .cmp(&b.selector.len())
                .then(a.activated_at.cmp(&b.activated_at))
                // Same instant: any fixed order, so every caller agrees.
                .then_with(|| b.selector_json().cmp(&a.selector_json()))
        })
}

/// For each build name, the activation in force for a spawner.
pub fn active_for<'a>(
    activations: &'a [Activation],
    region: &str,
    labels: &HashMap<String, String>,
) -> BTreeMap<&'a str, &'a Activation> {
    let mut by_name: BTreeMap<&str, Vec<&Activation>> = BTreeMap::new();
    for a in activations {
        by_name.entry(a.name.as_str()).or_default().push(a);
    }
    by_name
        .into_iter()
        .filter_map(|(name, list)| winning(list, region, labels).map(|a| (name, a)))
        .collect()
}

/// Key of counts per version: (name, version).
type VersionKey = (String, String);

/// Builds, activations and the counts shown on builds; held inside the registry's state so
/// a `Build` message and the spawners and instances it counts are read under one lock.
#[derive(Default)]
pub struct Catalog {
    builds: HashMap<String, BuildMeta>,
    ids: HashMap<VersionKey, String>,
    activations: Vec<Activation>,
    /// Registry instances per version.
    instances: HashMap<VersionKey, u32>,
    /// Spawners holding a version, by (name, version, sha256): a version deleted and uploaded
    /// again with other bytes is not held by a spawner that has the old bytes.
    held: HashMap<(String, String, String), u32>,
    /// Builds whose counts changed since they were last announced.
    dirty: BTreeSet<String>,
}

impl Catalog {
    /// Adds or replaces a build.
    pub fn insert(&mut self, meta: BuildMeta) {
        self.ids
            .insert((meta.name.clone(), meta.version.clone()), meta.id.clone());
        self.dirty.remove(&meta.id);
        self.builds.insert(meta.id.clone(), meta);
    }

    /// Removes a build (its activations must be gone).
    pub fn remove(&mut self, id: &str) -> Option<BuildMeta> {
        let meta = self.builds.remove(id)?;
        self.ids.remove(&(meta.name.clone(), meta.version.clone()));
        self.dirty.remove(id);
        Some(meta)
    }

    /// A build by id.
    pub fn get(&self, id: &str) -> Option<&BuildMeta> {
        self.builds.get(id)
    }

    /// A build by name and version.
    pub fn find(&self, name: &str, version: &str) -> Option<&BuildMeta> {
        self.ids
            .get(&(name.to_owned(), version.to_owned()))
            .and_then(|id| self.builds.get(id))
    }

    /// A build by `name@version` or id.
    pub fn lookup(&self, spec: &str) -> Result<&BuildMeta> {
        if let Some(b) = self.builds.get(spec) {
            return Ok(b);
        }
        let (name, version) = exile_api::build::BuildSpec::parse_exact(spec)
            .map_err(|e| Error::InvalidArgument(format!("build: {e}")))?;
        self.find(&name, &version)
            .ok_or_else(|| Error::NotFound(format!("no build {name}@{version}")))
    }

    /// Every build, newest first.
    pub fn all(&self) -> Vec<&BuildMeta> {
        let mut v: Vec<&BuildMeta> = self.builds.values().collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        v
    }

    /// Every activation.
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }

    /// Sets an activation, replacing the one of the same name and selector; returns the
    /// replaced one.
    pub fn activate(&mut self, a: Activation) -> Option<Activation> {
        let pos = self
            .activations
            .iter()
            .position(|x| x.name == a.name && x.selector == a.selector);
        match pos {
            Some(i) => Some(std::mem::replace(&mut self.activations[i], a)),
            None => {
                self.activations.push(a);
                None
            }
        }
    }

    /// The activations of one build.
    pub fn activations_of(&self, build_id: &str) -> Vec<&Activation> {
        self.activations
            .iter()
            .filter(|a| a.build_id == build_id)
            .collect()
    }

    /// Registry instances of a version.
    pub fn instance_count(&self, name: &str, version: &str) -> u32 {
        self.instances
            .get(&(name.to_owned(), version.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Counts an instance of `name@version` in (`delta` 1) or out (-1).
    pub fn count_instance(&mut self, name: &str, version: &str, added: bool) {
        let key = (name.to_owned(), version.to_owned());
        let n = self.instances.entry(key.clone()).or_default();
        *n = if added {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        if *n == 0 {
            self.instances.remove(&key);
        }
        self.mark(name, version);
    }

    /// A spawner's holdings changed from `old` to `new`.
    pub fn held_changed(&mut self, old: &[pb::HeldBuild], new: &[pb::HeldBuild]) {
        let key = |h: &pb::HeldBuild| (h.name.clone(), h.version.clone(), h.sha256.clone());
        let before: BTreeSet<_> = old.iter().map(key).collect();
        let after: BTreeSet<_> = new.iter().map(key).collect();
        for k in before.difference(&after) {
            if let Some(n) = self.held.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.held.remove(k);
                }
            }
            self.mark(&k.0, &k.1);
        }
        for k in after.difference(&before) {
            *self.held.entry(k.clone()).or_default() += 1;
            self.mark(&k.0, &k.1);
        }
    }

    fn mark(&mut self, name: &str, version: &str) {
        if let Some(id) = self.ids.get(&(name.to_owned(), version.to_owned())) {
            self.dirty.insert(id.clone());
        }
    }

    /// Builds whose counts changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Wire form of a build with its activations and counts.
    pub fn to_pb(&self, m: &BuildMeta) -> pb::Build {
        pb::Build {
            id: m.id.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: m.sha256.clone(),
            size: m.size,
            format: m.format as i32,
            manifest: m.manifest.clone(),
            created_by: m.created_by.clone(),
            created_at_unix_ms: m.created_at,
            chunk_count: m.chunk_count,
            file_count: m.file_count,
            unpacked_bytes: m.unpacked_bytes,
            activations: self
                .activations_of(&m.id)
                .into_iter()
                .map(Activation::to_pb)
                .collect(),
            instance_count: self.instance_count(&m.name, &m.version),
            spawner_count: self
                .held
                .get(&(m.name.clone(), m.version.clone(), m.sha256.clone()))
                .copied()
                .unwrap_or(0),
            command: m.command.clone(),
            ports: m.ports.clone(),
        }
    }

    /// For each build name, the build active on a spawner.
    fn active_builds(&self, region: &str, labels: &HashMap<String, String>) -> Vec<&BuildMeta> {
        active_for(&self.activations, region, labels)
            .into_values()
            .filter_map(|a| self.builds.get(&a.build_id))
            .collect()
    }

    /// The builds a spawner should hold on disk, so it fetches them ahead of spawns: for
    /// each name, the version active for it. (A rollout adds its target version here.)
    pub fn wanted_builds(
        &self,
        region: &str,
        labels: &HashMap<String, String>,
    ) -> Vec<pb::BuildRef> {
        self.active_builds(region, labels)
            .into_iter()
            .map(BuildMeta::build_ref)
            .collect()
    }

    /// The uploaded build a spawn runs on a spawner (`spawner` names it in messages); None
    /// runs the spawner's host build.
    pub fn resolve(
        &self,
        choice: &BuildChoice,
        spawner: &str,
        region: &str,
        labels: &HashMap<String, String>,
    ) -> Result<Option<&BuildMeta>> {
        match choice {
            BuildChoice::Host => Ok(None),
            BuildChoice::Exact { name, version } => self
                .find(name, version)
                .map(Some)
                .ok_or_else(|| Error::NotFound(format!("no build {name}@{version}"))),
            BuildChoice::Active(name) => {
                let a = winning(
                    self.activations.iter().filter(|a| &a.name == name),
                    region,
                    labels,
                )
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "no version of {name} is active on spawner {spawner}; activate one or name it as {name}@VERSION"
                    ))
                })?;
                self.builds.get(&a.build_id).map(Some).ok_or_else(|| {
                    Error::Internal(format!("activation of {name} names a missing build"))
                })
            }
            BuildChoice::Auto => {
                let active = self.active_builds(region, labels);
                match active.as_slice() {
                    [] => Ok(None),
                    [one] => Ok(Some(*one)),
                    several => Err(Error::InvalidArgument(format!(
                        "several builds are active on spawner {spawner} ({}); name the one to run",
                        several
                            .iter()
                            .map(|b| b.reference())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(id: &str, name: &str, version: &str) -> BuildMeta {
        BuildMeta {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            sha256: "a".repeat(64),
            size: 1,
            format: pb::ArchiveFormat::Zip,
            manifest: String::new(),
            created_by: "admin".into(),
            created_at: 1,
            chunk_count: 1,
            file_count: 1,
            unpacked_bytes: 1,
            command: String::new(),
            ports: vec![],
        }
    }

    fn activation(name: &str, pairs: &[(&str, &str)], build_id: &str, at: i64) -> Activation {
        Activation {
            name: name.into(),
            selector: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            build_id: build_id.into(),
            activated_at: at,
            activated_by: "op".into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.insert(build("b1", "oa", "1"));
        c.insert(build("b2", "oa", "2"));
        c.insert(build("b3", "oa", "3"));
        c.insert(build("q1", "quake", "1"));
        c
    }

    #[test]
    fn the_most_specific_selector_wins_then_the_newest() {
        let mut c = catalog();
        c.activate(activation("oa", &[], "b1", 10));
        c.activate(activation("oa", &[("region", "eu")], "b2", 5));
        c.activate(activation(
            "oa",
            &[("region", "eu"), ("gpu", "yes")],
            "b3",
            1,
        ));
        let choice = BuildChoice::Active("oa".into());
        let pick = |c: &Catalog, region: &str, l: &[(&str, &str)]| {
            c.resolve(&choice, "s", region, &labels(l))
                .unwrap()
                .map(|b| b.id.clone())
        };
        // Older but more specific beats newer and general.
        assert_eq!(pick(&c, "eu", &[("gpu", "yes")]).as_deref(), Some("b3"));
        assert_eq!(pick(&c, "eu", &[]).as_deref(), Some("b2"));
        assert_eq!(pick(&c, "us", &[("gpu", "yes")]).as_deref(), Some("b1"));

        // Equally specific: the newest activation wins.
        c.activate(activation("oa", &[("gpu", "yes")], "b1", 20));
        c.activate(activation("oa", &[("region", "us")], "b2", 30));
        assert_eq!(pick(&c, "us", &[("gpu", "yes")]).as_deref(), Some("b2"));
        c.activate(activation("oa", &[("gpu", "yes")], "b1", 40));
        assert_eq!(pick(&c, "us", &[("gpu", "yes")]).as_deref(), Some("b1"));
    }

    #[test]
    fn an_activation_replaces_the_one_with_the_same_name_and_selector() {
        let mut c = catalog();
        assert!(
            c.activate(activation("oa", &[("region", "eu")], "b1", 1))
                .is_none()
        );
        let old = c
            .activate(activation("oa", &[("region", "eu")], "b2", 2))
            .unwrap();
        assert_eq!(old.build_id, "b1");
        assert_eq!(c.activations().len(), 1);
        assert!(c.activations_of("b1").is_empty());
        assert_eq!(c.activations_of("b2").len(), 1);
    }

    #[test]
    fn spawns_resolve_exact_named_and_automatic_choices() {
        let mut c = catalog();
        let eu = labels(&[]);
        // Nothing active: a bare spawn runs the host build; a name alone is refused.
        assert_eq!(c.resolve(&BuildChoice::Auto, "s", "eu", &eu).unwrap(), None);
        let e = c
            .resolve(&BuildChoice::Active("oa".into()), "s", "eu", &eu)
            .unwrap_err();
        assert!(
            matches!(e, Error::FailedPrecondition(ref m) if m.contains("no version of oa")),
            "{e}"
        );
        // Exact always works while it exists, active or not.
        let exact = BuildChoice::Exact {
            name: "oa".into(),
            version: "2".into(),
        };
        assert_eq!(c.resolve(&exact, "s", "eu", &eu).unwrap().unwrap().id, "b2");
        let missing = BuildChoice::Exact {
            name: "oa".into(),
            version: "9".into(),
        };
        assert!(matches!(
            c.resolve(&missing, "s", "eu", &eu),
            Err(Error::NotFound(_))
        ));

        // One name active here: a bare spawn uses it; one active elsewhere does not count.
        c.activate(activation("oa", &[], "b1", 1));
        c.activate(activation("quake", &[("region", "us")], "q1", 2));
        assert_eq!(
            c.resolve(&BuildChoice::Auto, "s", "eu", &eu)
                .unwrap()
                .unwrap()
                .id,
            "b1"
        );
        // Two names active: a bare spawn must say which.
        let e = c
            .resolve(&BuildChoice::Auto, "s", "us", &eu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("oa@1") && e.contains("quake@1"), "{e}");
        assert_eq!(c.resolve(&BuildChoice::Host, "s", "us", &eu).unwrap(), None);
        // Wanted builds follow the same rule.
        let wanted: Vec<String> = c
            .wanted_builds("us", &eu)
            .into_iter()
            .map(|b| format!("{}@{}", b.name, b.version))
            .collect();
        assert_eq!(wanted, ["oa@1", "quake@1"]);
        assert_eq!(c.wanted_builds("eu", &eu).len(), 1);
    }

    #[test]
    fn spawn_fields_parse_into_a_choice() {
        assert_eq!(BuildChoice::parse("", "").unwrap(), BuildChoice::Auto);
        assert_eq!(BuildChoice::parse("", "demo-1").unwrap(), BuildChoice::Host);
        assert_eq!(
            BuildChoice::parse("oa", "").unwrap(),
            BuildChoice::Active("oa".into())
        );
        assert_eq!(
            BuildChoice::parse("oa@1.2", "").unwrap(),
            BuildChoice::Exact {
                name: "oa".into(),
                version: "1.2".into()
            }
        );
        assert!(BuildChoice::parse("oa@1", "demo-1").is_err());
        assert!(BuildChoice::parse("../oa", "").is_err());
    }

    #[test]
    fn counts_follow_instances_and_holdings_and_mark_builds_changed() {
        let mut c = catalog();
        c.count_instance("oa", "1", true);
        c.count_instance("oa", "1", true);
        c.count_instance("oa", "2", true);
        c.count_instance("oa", "2", false);
        assert_eq!(c.instance_count("oa", "1"), 2);
        assert_eq!(c.instance_count("oa", "2"), 0);
        assert_eq!(c.take_dirty(), ["b1", "b2"]);
        assert!(c.take_dirty().is_empty());

        let held = |v: &str, sha: &str| pb::HeldBuild {
            name: "oa".into(),
            version: v.into(),
            sha256: sha.into(),
            ..Default::default()
        };
        let a = "a".repeat(64);
        c.held_changed(&[], &[held("1", &a), held("2", "other")]);
        c.held_changed(&[], &[held("1", &a)]);
        let b1 = c.get("b1").unwrap().clone();
        let b2 = c.get("b2").unwrap().clone();
        assert_eq!(c.to_pb(&b1).spawner_count, 2);
        // Same name and version with other bytes is another build.
        assert_eq!(c.to_pb(&b2).spawner_count, 0);
        c.held_changed(&[held("1", &a)], &[]);
        assert_eq!(c.to_pb(&b1).spawner_count, 1);
        assert_eq!(c.to_pb(&b1).instance_count, 2);
    }
}
