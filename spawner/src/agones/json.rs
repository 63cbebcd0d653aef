//! The JSON shapes of the Agones SDK's HTTP face, as Agones' own REST gateway writes and reads
//! them: the proto's field names (`object_meta`, `creation_timestamp`, …), 64-bit integers as
//! strings, every field present even when empty. Request bodies take 64-bit integers as
//! numbers or strings and ignore fields they do not know, as that gateway does.

use std::collections::BTreeMap;

use exile_api::agones as pb;
use serde::{Deserialize, Deserializer, Serialize};

/// A 64-bit integer from JSON: a number or a string holding one (proto3's JSON form).
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole number"))),
    }
}

/// An optional 64-bit integer from JSON (a `google.protobuf.Int64Value`): absent or `null`
/// for none, else a number or a string holding one.
fn opt_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "int64")] i64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(n)| n))
}

/// Body of `PATCH /v1beta1/counters/{name}`: Agones' `CounterUpdateRequest` (its `name`, if
/// any, gives way to the path's).
#[derive(Debug, Default, Deserialize)]
pub struct CounterUpdateRequest {
    #[serde(default, deserialize_with = "opt_int64")]
    pub count: Option<i64>,
    #[serde(default, deserialize_with = "opt_int64")]
    pub capacity: Option<i64>,
    #[serde(rename = "countDiff", default, deserialize_with = "int64")]
    pub count_diff: i64,
}

/// Body of `PATCH /v1beta1/lists/{name}`: Agones' `List`, each field `None` when the body
/// leaves it out (which tells the update mask when the query names none).
#[derive(Debug, Default, Deserialize)]
pub struct ListPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_int64")]
    pub capacity: Option<i64>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

impl ListPatch {
    /// The update mask the gateway derives from the body: the fields it holds.
    pub fn mask(&self) -> Vec<&'static str> {
        let mut paths = Vec::new();
        if self.capacity.is_some() {
            paths.push("capacity");
        }
        if self.values.is_some() {
            paths.push("values");
        }
        paths
    }
}

/// Body of `POST /v1beta1/lists/{name}:addValue` and `:removeValue`.
#[derive(Debug, Deserialize)]
pub struct ListValue {
    #[serde(default)]
    pub value: String,
}

/// A counter as the gateway writes it.
#[derive(Debug, Serialize)]
pub struct BetaCounter {
    name: String,
    count: String,
    capacity: String,
}

impl From<exile_api::agones::beta::Counter> for BetaCounter {
    fn from(c: exile_api::agones::beta::Counter) -> Self {
        Self {
            name: c.name,
            count: c.count.to_string(),
            capacity: c.capacity.to_string(),
        }
    }
}

/// A list as the gateway writes it.
#[derive(Debug, Serialize)]
pub struct BetaList {
    name: String,
    capacity: String,
    values: Vec<String>,
}

impl From<exile_api::agones::beta::List> for BetaList {
    fn from(l: exile_api::agones::beta::List) -> Self {
        Self {
            name: l.name,
            capacity: l.capacity.to_string(),
            values: l.values,
        }
    }
}

/// Body of `PUT /metadata/label` and `PUT /metadata/annotation`.
#[derive(Debug, Deserialize)]
pub struct KeyValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// Body of `POST /reserve`.
#[derive(Debug, Deserialize)]
pub struct Duration {
    #[serde(default, deserialize_with = "int64")]
    pub seconds: i64,
}

/// Body of the player calls that name a player.
#[derive(Debug, Deserialize)]
pub struct PlayerId {
    #[serde(rename = "playerID", default)]
    pub player_id: String,
}

/// Body of `PUT /alpha/player/capacity`, and the answer of the capacity and count reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Count {
    #[serde(default, deserialize_with = "int64", serialize_with = "as_text")]
    pub count: i64,
}

/// A yes or no answer.
#[derive(Debug, Serialize)]
pub struct Bool {
    pub bool: bool,
}

/// The connected player ids.
#[derive(Debug, Serialize)]
pub struct PlayerIdList {
    pub list: Vec<String>,
}

/// Writes a 64-bit integer as a string.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn as_text<S: serde::Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

/// One line of `GET /watch/gameserver`.
#[derive(Debug, Serialize)]
pub struct WatchLine {
    pub result: GameServer,
}

/// `GameServer`.
#[derive(Debug, Serialize)]
pub struct GameServer {
    object_meta: ObjectMeta,
    spec: Spec,
    status: Status,
}

#[derive(Debug, Serialize)]
struct ObjectMeta {
    name: String,
    namespace: String,
    uid: String,
    resource_version: String,
    generation: String,
    creation_timestamp: String,
    deletion_timestamp: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct Spec {
    health: Health,
}

#[derive(Debug, Serialize)]
struct Health {
    disabled: bool,
    period_seconds: i32,
    failure_threshold: i32,
    initial_delay_seconds: i32,
}

#[derive(Debug, Serialize)]
struct Status {
    state: String,
    address: String,
    addresses: Vec<Address>,
    ports: Vec<Port>,
    players: Players,
    counters: BTreeMap<String, Counter>,
    lists: BTreeMap<String, List>,
}

#[derive(Debug, Serialize)]
struct Address {
    r#type: String,
    address: String,
}

#[derive(Debug, Serialize)]
struct Port {
    name: String,
    port: i32,
}

#[derive(Debug, Serialize)]
struct Players {
    count: String,
    capacity: String,
    ids: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Counter {
    count: String,
    capacity: String,
}

#[derive(Debug, Serialize)]
struct List {
    capacity: String,
    values: Vec<String>,
}

impl From<pb::GameServer> for GameServer {
    fn from(gs: pb::GameServer) -> Self {
        let meta = gs.object_meta.unwrap_or_default();
        let health = gs.spec.unwrap_or_default().health.unwrap_or_default();
        let status = gs.status.unwrap_or_default();
        let players = status.players.unwrap_or_default();
        Self {
            object_meta: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                generation: meta.generation.to_string(),
                creation_timestamp: meta.creation_timestamp.to_string(),
                deletion_timestamp: meta.deletion_timestamp.to_string(),
                annotations: meta.annotations.into_iter().collect(),
                labels: meta.labels.into_iter().collect(),
            },
            spec: Spec {
                health: Health {
                    disabled: health.disabled,
                    period_seconds: health.period_seconds,
                    failure_threshold: health.failure_threshold,
                    initial_delay_seconds: health.initial_delay_seconds,
                },
            },
            status: Status {
                state: status.state,
                address: status.address,
                addresses: status
                    .addresses
                    .into_iter()
                    .map(|a| Address {
                        r#type: a.r#type,
                        address: a.address,
                    })
                    .collect(),
                ports: status
                    .ports
                    .into_iter()
                    .map(|p| Port {
                        name: p.name,
                        port: p.port,
                    })
                    .collect(),
                players: Players {
                    count: players.count.to_string(),
                    capacity: players.capacity.to_string(),
                    ids: players.ids,
                },
                counters: status
                    .counters
                    .into_iter()
                    .map(|(k, c)| {
                        let counter = Counter {
                            count: c.count.to_string(),
                            capacity: c.capacity.to_string(),
                        };
                        (k, counter)
                    })
                    .collect(),
                lists: status
                    .lists
                    .into_iter()
                    .map(|(k, l)| {
                        let list = List {
                            capacity: l.capacity.to_string(),
                            values: l.values,
                        };
                        (k, list)
                    })
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_game_server_reads_like_agones_rest() {
        let gs = pb::GameServer {
            object_meta: Some(pb::game_server::ObjectMeta {
                name: "g-1".into(),
                namespace: "eu".into(),
                generation: 4,
                creation_timestamp: 1_700_000_000,
                labels: [("agones.dev/sdk-map".to_owned(), "dust".to_owned())].into(),
                ..Default::default()
            }),
            spec: None,
            status: Some(pb::game_server::Status {
                state: "Ready".into(),
                ports: vec![pb::game_server::status::Port {
                    name: "game".into(),
                    port: 7777,
                }],
                ..Default::default()
            }),
        };
        let json = serde_json::to_value(WatchLine { result: gs.into() }).unwrap();
        let r = &json["result"];
        assert_eq!(r["object_meta"]["name"], "g-1");
        assert_eq!(r["object_meta"]["generation"], "4");
        assert_eq!(r["object_meta"]["creation_timestamp"], "1700000000");
        assert_eq!(r["object_meta"]["labels"]["agones.dev/sdk-map"], "dust");
        assert_eq!(r["object_meta"]["annotations"], serde_json::json!({}));
        assert_eq!(r["status"]["state"], "Ready");
        assert_eq!(r["status"]["ports"][0]["port"], 7777);
        assert_eq!(r["status"]["players"]["count"], "0");
        assert_eq!(r["spec"]["health"]["disabled"], false);
    }

    #[test]
    fn counters_and_lists_read_like_agones_rest() {
        let c = serde_json::to_value(BetaCounter::from(exile_api::agones::beta::Counter {
            name: "rooms".into(),
            count: 1,
            capacity: 10,
        }))
        .unwrap();
        assert_eq!(
            c,
            serde_json::json!({"name": "rooms", "count": "1", "capacity": "10"})
        );
        let l = serde_json::to_value(BetaList::from(exile_api::agones::beta::List {
            name: "players".into(),
            capacity: 100,
            values: vec!["p0".into()],
        }))
        .unwrap();
        assert_eq!(
            l,
            serde_json::json!({"name": "players", "capacity": "100", "values": ["p0"]})
        );
    }

    #[test]
    fn bodies_take_integers_as_numbers_or_strings_and_skip_unknown_fields() {
        let d: Duration = serde_json::from_str(r#"{"seconds":"5"}"#).unwrap();
        assert_eq!(d.seconds, 5);
        let d: Duration = serde_json::from_str(r#"{"seconds":7,"nanos":0}"#).unwrap();
        assert_eq!(d.seconds, 7);
        assert!(serde_json::from_str::<Duration>(r#"{"seconds":"soon"}"#).is_err());
        let kv: KeyValue = serde_json::from_str(r#"{"key":"map","value":"dust"}"#).unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("map", "dust"));
        let p: PlayerId = serde_json::from_str(r#"{"playerID":"p1"}"#).unwrap();
        assert_eq!(p.player_id, "p1");
        let c: CounterUpdateRequest =
            serde_json::from_str(r#"{"count":"5","capacity":11,"countDiff":"-2"}"#).unwrap();
        assert_eq!((c.count, c.capacity, c.count_diff), (Some(5), Some(11), -2));
        let c: CounterUpdateRequest =
            serde_json::from_str(r#"{"countDiff":1,"count":null,"name":"rooms"}"#).unwrap();
        assert_eq!((c.count, c.capacity, c.count_diff), (None, None, 1));
        assert!(serde_json::from_str::<CounterUpdateRequest>(r#"{"count":"many"}"#).is_err());
        let l: ListPatch = serde_json::from_str(r#"{"capacity":"120","values":["a"]}"#).unwrap();
        assert_eq!(l.mask(), ["capacity", "values"]);
        assert_eq!(
            (l.capacity, l.values.as_deref()),
            (Some(120), Some(&["a".to_owned()][..]))
        );
        let l: ListPatch = serde_json::from_str(r#"{"capacity":7}"#).unwrap();
        assert_eq!(l.mask(), ["capacity"]);
        let v: ListValue = serde_json::from_str(r#"{"value":"player9"}"#).unwrap();
        assert_eq!(v.value, "player9");
        let c: Count = serde_json::from_str(r#"{"count":"10"}"#).unwrap();
        assert_eq!(c.count, 10);
        assert_eq!(
            serde_json::to_string(&Count { count: 10 }).unwrap(),
            r#"{"count":"10"}"#
        );
    }
}
