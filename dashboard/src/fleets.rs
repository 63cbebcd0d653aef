//! The fleets pages' pure side: the create-fleet and allocate forms (text as typed → the
//! request, or a sentence naming the bad field), the scale input, and how a fleet's placement,
//! autoscaler, counts and an allocation's ports read. Tested on the host.

use std::collections::HashMap;

use exile_api::fleet::{MAX_FLEET_REPLICAS, check_fleet_name, is_reserved_label};
use exile_api::limits::check_labels;
use exile_api::v1 as pb;

use crate::state::parse_labels;

/// Parses "k=v, …" into request labels, checked by the rules the master applies.
fn labels(field: &str, raw: &str) -> Result<HashMap<String, String>, String> {
    let l: HashMap<String, String> = parse_labels(raw)
        .map_err(|m| format!("{field}: {m}"))?
        .into_iter()
        .collect();
    check_labels(field, l.iter())?;
    Ok(l)
}

/// A replica count as typed: a whole number up to the fleet limit.
pub fn parse_replicas(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n) if n <= MAX_FLEET_REPLICAS => Ok(n),
        _ => Err(format!(
            "replicas: a whole number from 0 to {MAX_FLEET_REPLICAS}"
        )),
    }
}

/// What the create-fleet form holds (text as typed).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetForm {
    /// Fleet name.
    pub name: String,
    /// `name@version`, a build name (follows its active version) or blank (host build).
    pub build: String,
    /// Replica count.
    pub replicas: String,
    /// Regions, comma separated; blank: any.
    pub regions: String,
    /// Spawner selector `k=v` pairs.
    pub selector: String,
    /// Fill hosts instead of spreading.
    pub packed: bool,
    /// Labels every instance carries.
    pub labels: String,
}

impl Default for FleetForm {
    fn default() -> Self {
        FleetForm {
            name: String::new(),
            build: String::new(),
            replicas: "1".into(),
            regions: String::new(),
            selector: String::new(),
            packed: false,
            labels: String::new(),
        }
    }
}

impl FleetForm {
    /// The fleet's name and spec, or what is wrong.
    pub fn request(&self) -> Result<(String, pb::FleetSpec), String> {
        let name = self.name.trim().to_owned();
        check_fleet_name(&name)?;
        let build = self.build.trim().to_owned();
        if build.chars().any(char::is_whitespace) {
            return Err("build: name@version without spaces".into());
        }
        let replicas = parse_replicas(&self.replicas)?;
        let regions: Vec<String> = self
            .regions
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        let selector = labels("spawners", &self.selector)?;
        let labels = labels("labels", &self.labels)?;
        if let Some(k) = labels.keys().find(|k| is_reserved_label(k)) {
            return Err(format!("labels: {k} is set by the platform"));
        }
        let strategy = if self.packed {
            pb::PlacementStrategy::Packed
        } else {
            pb::PlacementStrategy::Distributed
        };
        Ok((
            name,
            pb::FleetSpec {
                build,
                replicas,
                placement: Some(pb::FleetPlacement {
                    regions,
                    spawner_selector: selector,
                    strategy: strategy as i32,
                }),
                labels,
                ..Default::default()
            },
        ))
    }
}

/// What the allocate form holds (text as typed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocateForm {
    /// Labels the instance must carry.
    pub labels: String,
    /// Least free player slots; blank: no condition.
    pub min_free_players: String,
}

impl AllocateForm {
    /// An allocation from fleet `fleet`, or what is wrong.
    pub fn request(&self, fleet: &str) -> Result<pb::AllocateRequest, String> {
        let min_free_players = match self.min_free_players.trim() {
            "" => 0,
            s => s
                .parse::<u32>()
                .map_err(|_| "free player slots: a whole number".to_owned())?,
        };
        Ok(pb::AllocateRequest {
            required: Some(pb::AllocationSelector {
                fleet: fleet.to_owned(),
                labels: labels("labels", &self.labels)?,
                min_free_players,
            }),
            ..Default::default()
        })
    }
}

/// "eu, us · region=eu · packed": where a fleet's instances go.
pub fn placement_text(p: Option<&pb::FleetPlacement>) -> String {
    let Some(p) = p else {
        return "any spawner · distributed".into();
    };
    let mut parts = Vec::new();
    parts.push(if p.regions.is_empty() {
        "any region".to_owned()
    } else {
        p.regions.join(", ")
    });
    if !p.spawner_selector.is_empty() {
        let mut kv: Vec<_> = p
            .spawner_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        kv.sort();
        parts.push(kv.join(", "));
    }
    parts.push(
        match pb::PlacementStrategy::try_from(p.strategy) {
            Ok(pb::PlacementStrategy::Packed) => "packed",
            _ => "distributed",
        }
        .to_owned(),
    );
    parts.join(" · ")
}

/// "2–10, buffer 3" / "1–5, webhook https://…" / "off": a fleet's autoscaler in a few words.
pub fn autoscaler_text(a: Option<&pb::FleetAutoscaler>) -> String {
    let Some(a) = a else {
        return "off".into();
    };
    let policy = match &a.policy {
        Some(pb::fleet_autoscaler::Policy::Buffer(b)) if b.buffer_percent > 0 => {
            format!("buffer {}%", b.buffer_percent)
        }
        Some(pb::fleet_autoscaler::Policy::Buffer(b)) => format!("buffer {}", b.buffer_size),
        Some(pb::fleet_autoscaler::Policy::Webhook(w)) => format!("webhook {}", w.url),
        None => "no policy".into(),
    };
    format!("{}–{}, {policy}", a.min_replicas, a.max_replicas)
}

/// A fleet's build as people read it: the host build when blank.
pub fn build_text(spec: Option<&pb::FleetSpec>) -> String {
    match spec.map(|s| s.build.as_str()) {
        None | Some("") => "host build".into(),
        Some(b) => b.to_owned(),
    }
}

/// Counts of one fleet for its table row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetCounts {
    /// Replicas asked for.
    pub desired: u32,
    /// Instances counting toward them.
    pub current: u32,
    /// Ready (allocatable).
    pub ready: u32,
    /// Allocated (a reservation made through the SDK counts here too: it holds the instance
    /// as Allocated).
    pub allocated: u32,
    /// Starting or running, not Ready yet.
    pub starting: u32,
}

/// The figures of a fleet.
pub fn counts(f: &pb::Fleet) -> FleetCounts {
    let s = f.status.clone().unwrap_or_default();
    FleetCounts {
        desired: f.spec.as_ref().map_or(0, |s| s.replicas),
        current: s.current,
        ready: s.ready,
        allocated: s.allocated,
        starting: s.starting,
    }
}

/// "7777/udp, 7778/tcp+udp": ports players connect to.
pub fn ports_text(ports: &[pb::Port]) -> String {
    if ports.is_empty() {
        return "—".into();
    }
    ports
        .iter()
        .map(|p| {
            let proto = match pb::Protocol::try_from(p.protocol) {
                Ok(pb::Protocol::Tcp) => "tcp",
                Ok(pb::Protocol::Udp) => "udp",
                _ => "tcp+udp",
            };
            if p.name.is_empty() {
                format!("{}/{proto}", p.port)
            } else {
                format!("{} {}/{proto}", p.name, p.port)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_form_builds_the_spec() {
        let f = FleetForm {
            name: " arena ".into(),
            build: "demo@1.0.0".into(),
            replicas: "2".into(),
            regions: "eu, us".into(),
            selector: "gpu=no".into(),
            packed: true,
            labels: "mode=ctf".into(),
        };
        let (name, spec) = f.request().unwrap();
        assert_eq!(name, "arena");
        assert_eq!(spec.build, "demo@1.0.0");
        assert_eq!(spec.replicas, 2);
        let p = spec.placement.clone().unwrap();
        assert_eq!(p.regions, ["eu", "us"]);
        assert_eq!(p.strategy, pb::PlacementStrategy::Packed as i32);
        assert_eq!(spec.labels.get("mode").map(String::as_str), Some("ctf"));
        assert_eq!(placement_text(Some(&p)), "eu, us · gpu=no · packed");
    }

    #[test]
    fn fleet_form_names_the_bad_field() {
        let ok = FleetForm {
            name: "a".into(),
            ..Default::default()
        };
        assert!(ok.request().is_ok());
        let bad = |f: FleetForm| f.request().unwrap_err();
        assert!(
            bad(FleetForm {
                name: "no spaces".into(),
                ..ok.clone()
            })
            .contains("fleet name")
        );
        assert!(
            bad(FleetForm {
                replicas: "-1".into(),
                ..ok.clone()
            })
            .contains("replicas")
        );
        assert!(
            bad(FleetForm {
                replicas: "10001".into(),
                ..ok.clone()
            })
            .contains("replicas")
        );
        assert!(
            bad(FleetForm {
                labels: "exile/fleet=x".into(),
                ..ok.clone()
            })
            .contains("platform")
        );
        assert!(
            bad(FleetForm {
                selector: "oops".into(),
                ..ok.clone()
            })
            .starts_with("spawners:")
        );
        assert!(
            bad(FleetForm {
                build: "demo @1".into(),
                ..ok
            })
            .starts_with("build:")
        );
    }

    #[test]
    fn allocate_form() {
        let r = AllocateForm {
            labels: "map=dust".into(),
            min_free_players: " 4 ".into(),
        }
        .request("arena")
        .unwrap();
        let s = r.required.unwrap();
        assert_eq!(s.fleet, "arena");
        assert_eq!(s.min_free_players, 4);
        assert_eq!(s.labels.get("map").map(String::as_str), Some("dust"));
        assert!(
            AllocateForm {
                min_free_players: "x".into(),
                ..Default::default()
            }
            .request("a")
            .is_err()
        );
    }

    #[test]
    fn texts() {
        assert_eq!(autoscaler_text(None), "off");
        let a = pb::FleetAutoscaler {
            min_replicas: 2,
            max_replicas: 10,
            policy: Some(pb::fleet_autoscaler::Policy::Buffer(pb::BufferPolicy {
                buffer_size: 3,
                buffer_percent: 0,
            })),
            ..Default::default()
        };
        assert_eq!(autoscaler_text(Some(&a)), "2–10, buffer 3");
        assert_eq!(placement_text(None), "any spawner · distributed");
        assert_eq!(build_text(None), "host build");
        let ports = [
            pb::Port {
                name: "game".into(),
                port: 7777,
                protocol: pb::Protocol::Udp as i32,
            },
            pb::Port {
                name: String::new(),
                port: 7778,
                protocol: 0,
            },
        ];
        assert_eq!(ports_text(&ports), "game 7777/udp, 7778/tcp+udp");
        assert_eq!(ports_text(&[]), "—");
        assert_eq!(parse_replicas(" 3 "), Ok(3));
    }
}
