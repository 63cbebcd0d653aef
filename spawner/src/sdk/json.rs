//! The JSON shapes of the HTTP SDK: request bodies and the instance view, with the proto's
//! field names (snake_case) and enum value names, so a reader of `sdk.proto` knows them.
//!
//! Integers are JSON numbers (not the strings proto3's JSON mapping uses for 64-bit values):
//! engines and `jq` read them as they are, and no value here comes near 2^53.

use std::collections::BTreeMap;

use exile_api::v1;
use serde::{Deserialize, Serialize};

/// Body of the calls that take no parameters: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Body of `POST /v1/players`, as `SdkSetPlayersRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPlayers {
    pub count: u32,
    #[serde(default)]
    pub max: u32,
}

/// Body of `POST /v1/label`, as `SdkSetLabelRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLabel {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// Body of `POST /v1/reserve`, as `SdkReserveRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    pub ttl_seconds: u32,
}

/// The answer of the calls that return the instance, as `SdkReadyResponse` and its kin; also
/// one line of `GET /v1/watch`.
#[derive(Debug, Serialize)]
pub struct InstanceAnswer {
    pub instance: Instance,
}

impl From<v1::InstanceStatus> for InstanceAnswer {
    fn from(status: v1::InstanceStatus) -> Self {
        Self {
            instance: status.into(),
        }
    }
}

/// The answer of the calls that return nothing: `{}`.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// An error: one sentence saying what to change.
#[derive(Debug, Serialize)]
pub struct ErrorAnswer {
    pub error: String,
}

/// `InstanceStatus` as the game sees it.
#[derive(Debug, Serialize)]
pub struct Instance {
    id: String,
    /// An `InstanceState` value name, e.g. `INSTANCE_STATE_READY`.
    state: &'static str,
    build_version: String,
    ports: Vec<Port>,
    pid: u32,
    restart_count: u32,
    labels: BTreeMap<String, String>,
    players: u32,
    max_players: u32,
    resources: Option<Resources>,
    started_at_unix_ms: i64,
    exit_code: Option<i32>,
    message: String,
    revision: u64,
    /// Set by the allocation that handed the instance out.
    annotations: BTreeMap<String, String>,
    /// The allocation's blob, base64 as in proto3's JSON mapping of `bytes`.
    allocation_metadata: String,
}

/// Standard base64 with padding (proto3's JSON form of `bytes`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Port`.
#[derive(Debug, Serialize)]
struct Port {
    name: String,
    port: u32,
    /// A `Protocol` value name, e.g. `PROTOCOL_TCP_UDP`.
    protocol: &'static str,
}

/// `Resources`.
#[derive(Debug, Serialize)]
struct Resources {
    cpu_percent: f64,
    memory_bytes: u64,
    memory_total_bytes: u64,
    disk_used_bytes: u64,
    disk_total_bytes: u64,
    cpu_count: u32,
}

impl From<v1::InstanceStatus> for Instance {
    fn from(s: v1::InstanceStatus) -> Self {
        Self {
            state: s.state().as_str_name(),
            ports: s
                .ports
                .iter()
                .map(|p| Port {
                    name: p.name.clone(),
                    port: p.port,
                    protocol: p.protocol().as_str_name(),
                })
                .collect(),
            resources: s.resources.map(|r| Resources {
                cpu_percent: r.cpu_percent,
                memory_bytes: r.memory_bytes,
                memory_total_bytes: r.memory_total_bytes,
                disk_used_bytes: r.disk_used_bytes,
                disk_total_bytes: r.disk_total_bytes,
                cpu_count: r.cpu_count,
            }),
            labels: s.labels.into_iter().collect(),
            id: s.id,
            build_version: s.build_version,
            pid: s.pid,
            restart_count: s.restart_count,
            players: s.players,
            max_players: s.max_players,
            started_at_unix_ms: s.started_at_unix_ms,
            exit_code: s.exit_code,
            message: s.message,
            revision: s.revision,
            annotations: s.annotations.into_iter().collect(),
            allocation_metadata: base64(&s.allocation_metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{\"map\":\"dust\"}"), "eyJtYXAiOiJkdXN0In0=");
    }

    #[test]
    fn the_instance_keeps_the_proto_names() {
        let status = v1::InstanceStatus {
            id: "g1".into(),
            state: v1::InstanceState::Ready.into(),
            ports: vec![v1::Port {
                name: "game".into(),
                port: 7777,
                protocol: v1::Protocol::TcpUdp.into(),
            }],
            labels: [("map".to_owned(), "dust".to_owned())].into(),
            players: 3,
            max_players: 16,
            revision: 9,
            ..Default::default()
        };
        let json = serde_json::to_value(InstanceAnswer::from(status)).unwrap();
        let i = &json["instance"];
        assert_eq!(i["id"], "g1");
        assert_eq!(i["state"], "INSTANCE_STATE_READY");
        assert_eq!(i["ports"][0]["protocol"], "PROTOCOL_TCP_UDP");
        assert_eq!(i["ports"][0]["port"], 7777);
        assert_eq!(i["labels"]["map"], "dust");
        assert_eq!(
            (i["players"].clone(), i["max_players"].clone()),
            (3.into(), 16.into())
        );
        assert_eq!(i["revision"], 9);
        assert!(i["exit_code"].is_null() && i["resources"].is_null());
    }

    #[test]
    fn bodies_name_their_fields_like_the_proto_and_refuse_others() {
        let p: SetPlayers = serde_json::from_str(r#"{"count":3}"#).unwrap();
        assert_eq!((p.count, p.max), (3, 0));
        let e = serde_json::from_str::<SetPlayers>(r#"{"current":3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `current`"), "{e}");
        assert!(serde_json::from_str::<SetPlayers>(r#"{"count":-1}"#).is_err());
        assert!(serde_json::from_str::<Reserve>("{}").is_err());
        assert!(serde_json::from_str::<NoParams>(r#"{"x":1}"#).is_err());
        let l: SetLabel = serde_json::from_str(r#"{"key":"map"}"#).unwrap();
        assert_eq!((l.key.as_str(), l.value.as_str()), ("map", ""));
    }
}
