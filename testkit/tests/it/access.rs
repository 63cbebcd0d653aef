//! Every method of every service the master lists in reflection, walked from the descriptor
//! sets: no token → UNAUTHENTICATED, too low a role → PERMISSION_DENIED, enough → neither.

use bytes::{Buf, BufMut};
use futures::stream;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use exile_api::v1 as pb;
use exile_master::access::{Access, rule_for};
use exile_master::model::Role;
use exile_testkit::{Sandbox, SandboxOptions};

/// Sends raw bytes, receives raw bytes: lets one call reach any method.
#[derive(Default, Clone)]
struct Raw;
#[derive(Default, Clone)]
struct RawEnc;
#[derive(Default, Clone)]
struct RawDec;

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

/// Calls `path` with one empty message and `token`; returns the status code it ends with
/// (Ok when the call got past the access layer without an error in the headers).
pub async fn call_raw(ch: Channel, path: &str, token: Option<&str>, body: Vec<u8>) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(ch).max_encoding_message_size(64 << 20);
    if grpc.ready().await.is_err() {
        return tonic::Code::Unavailable;
    }
    let mut req = tonic::Request::new(stream::iter(vec![body]));
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::try_from(path.to_owned()).unwrap();
    match grpc.streaming(req, path, Raw).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// The services the master lists in gRPC reflection.
async fn listed_services(ch: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(ch)
        .server_reflection_info(stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reflection answer {first:?}")
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// Every method of every service the master lists in reflection, from the descriptor sets.
async fn methods(ch: Channel) -> Vec<String> {
    let listed = listed_services(ch).await;
    // GameServerSdk shares the descriptor set but is served by each spawner on loopback, with
    // per-instance secrets (checked in spawner/tests/it/sdk.rs); the master must not offer it.
    assert!(
        !listed.iter().any(|s| s.ends_with(".GameServerSdk")),
        "the master lists a service it does not serve: {listed:?}"
    );
    let mut services = Vec::new();
    for set in [
        exile_api::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let fds = prost_types::FileDescriptorSet::decode(set).unwrap();
        for f in fds.file {
            for s in &f.service {
                let name = format!("{}.{}", f.package(), s.name());
                let methods: Vec<String> = s
                    .method
                    .iter()
                    .map(|m| format!("/{name}/{}", m.name()))
                    .collect();
                services.push((name, methods));
            }
        }
    }
    let mut out = Vec::new();
    for name in &listed {
        let (_, methods) = services
            .iter()
            .find(|(s, _)| s == name)
            .unwrap_or_else(|| panic!("{name} is listed but in no descriptor set"));
        out.extend(methods.iter().cloned());
    }
    assert!(
        out.len() > 25,
        "the walk found only {} methods in {listed:?}",
        out.len()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_checks_token_and_role() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let mut tokens = Vec::new();
    for role in [pb::Role::Allocator, pb::Role::Viewer, pb::Role::Operator] {
        let t = admin
            .auth
            .clone()
            .create_api_token(pb::CreateApiTokenRequest {
                name: format!("{role:?}"),
                role: role as i32,
                ttl_seconds: 600,
            })
            .await
            .unwrap()
            .into_inner()
            .secret;
        tokens.push((
            match role {
                pb::Role::Allocator => Role::Allocator,
                pb::Role::Viewer => Role::Viewer,
                _ => Role::Operator,
            },
            t,
        ));
    }
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    for path in methods(ch.clone()).await {
        let rule = rule_for(&path).unwrap_or_else(|| panic!("{path} has no access rule"));
        let anon = call_raw(ch.clone(), &path, None, vec![]).await;
        let bad = call_raw(ch.clone(), &path, Some("exs_0000"), vec![]).await;
        match rule.access {
            Access::Public => {
                assert_ne!(anon, tonic::Code::Unauthenticated, "{path} is public");
                assert_ne!(anon, tonic::Code::PermissionDenied, "{path} is public");
                continue;
            }
            _ => {
                assert_eq!(anon, tonic::Code::Unauthenticated, "{path} without a token");
                assert_eq!(
                    bad,
                    tonic::Code::Unauthenticated,
                    "{path} with a made-up token"
                );
            }
        }
        for (role, token) in &tokens {
            let got = call_raw(ch.clone(), &path, Some(token), vec![]).await;
            let allowed = match rule.access {
                Access::Role(need) => *role >= need,
                // Allocation: the allocator role, and operators up.
                Access::Allocate => matches!(role, Role::Allocator | Role::Operator),
                // Asking who one is: any person or token.
                Access::SignedIn => true,
                _ => false,
            };
            if allowed {
                assert_ne!(got, tonic::Code::PermissionDenied, "{path} as {role}");
                assert_ne!(got, tonic::Code::Unauthenticated, "{path} as {role}");
            } else {
                assert_eq!(got, tonic::Code::PermissionDenied, "{path} as {role}");
            }
        }
    }
    // An unknown method of our package is refused even to an admin.
    let got = call_raw(
        ch.clone(),
        "/exile.v1.InstanceService/Nope",
        Some(sb.admin_token()),
        vec![],
    )
    .await;
    assert_eq!(got, tonic::Code::PermissionDenied);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawner_credentials_cannot_use_the_control_api_and_revocation_bites() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let cred_file =
        std::fs::read_to_string(sb.dir().join("spawner-0").join("credential.json")).unwrap();
    let credential = cred_file
        .split('"')
        .find(|s| s.starts_with("exc_"))
        .expect("credential in credential.json")
        .to_owned();
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let got = call_raw(
        ch.clone(),
        "/exile.v1.InstanceService/ListInstances",
        Some(&credential),
        vec![],
    )
    .await;
    assert_eq!(got, tonic::Code::PermissionDenied);
    // Not even to ask who it is (that is for people and API tokens).
    let got = call_raw(
        ch.clone(),
        "/exile.v1.AuthService/WhoAmI",
        Some(&credential),
        vec![],
    )
    .await;
    assert_eq!(got, tonic::Code::PermissionDenied);
    // The credential file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sb.dir().join("spawner-0").join("credential.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "credential.json must not be readable by others"
    );

    // Wrong passwords are refused, then rate limited.
    let mut auth = exile_api::v1::auth_service_client::AuthServiceClient::new(ch.clone());
    let mut codes = Vec::new();
    for _ in 0..7 {
        let e = auth
            .login(pb::LoginRequest {
                username: "admin".into(),
                password: "wrong-password".into(),
            })
            .await
            .unwrap_err();
        codes.push(e.code());
    }
    assert_eq!(codes[0], tonic::Code::Unauthenticated);
    assert_eq!(
        *codes.last().unwrap(),
        tonic::Code::ResourceExhausted,
        "{codes:?}"
    );
    // Failed logins are audited under the account they named.
    let audit = sb
        .admin()
        .await
        .unwrap()
        .system
        .list_audit_log(pb::ListAuditLogRequest {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let failed = audit
        .iter()
        .filter(|e| e.action == "Login" && e.actor == "admin" && e.result != "ok")
        .count();
    assert_eq!(failed, 7, "{audit:?}");
    // The same, filtered on the master (case-insensitive text, outcome), a page at a time.
    let mut system = sb.admin().await.unwrap().system;
    let page = |before_id: i64| pb::ListAuditLogRequest {
        limit: 4,
        before_id,
        actor: "ADM".into(),
        action: "login".into(),
        outcome: "failed".into(),
        ..Default::default()
    };
    let first = system
        .list_audit_log(page(0))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let rest = system
        .list_audit_log(page(first.last().unwrap().id))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!((first.len(), rest.len()), (4, 3), "{first:?} {rest:?}");
    let ids: Vec<i64> = first.iter().chain(&rest).map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(
        first
            .iter()
            .chain(&rest)
            .all(|e| e.action == "Login" && e.actor == "admin" && e.result != "ok")
    );
    let oks = system
        .list_audit_log(pb::ListAuditLogRequest {
            action: "Login".into(),
            outcome: "ok".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(oks.iter().all(|e| e.result == "ok"), "{oks:?}");
    let future = system
        .list_audit_log(pb::ListAuditLogRequest {
            from_unix_ms: exile_api::now_unix_ms() + 3_600_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(future.is_empty(), "{future:?}");
    let bad = system
        .list_audit_log(pb::ListAuditLogRequest {
            from_unix_ms: 2,
            to_unix_ms: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // Removing the spawner revokes its credential.
    let id = sb.spawner_ids().await.unwrap().remove(0);
    sb.admin()
        .await
        .unwrap()
        .spawners
        .remove_spawner(pb::RemoveSpawnerRequest { id })
        .await
        .unwrap();
    let got = call_raw(
        ch.clone(),
        "/exile.v1.SpawnerLink/Link",
        Some(&credential),
        vec![],
    )
    .await;
    assert_eq!(got, tonic::Code::Unauthenticated);
    sb.shutdown().await;
}

/// Principals are cached between calls; every way of ending a credential must still bite on
/// the very next call: a revoked token, a logged-out session, a deleted user's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocator_asks_who_it_is_and_ended_credentials_fail_on_the_next_call() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let created = admin
        .auth
        .clone()
        .create_api_token(pb::CreateApiTokenRequest {
            name: "matchmaker".into(),
            role: pb::Role::Allocator as i32,
            ttl_seconds: 600,
        })
        .await
        .unwrap()
        .into_inner();
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let mm = exile_testkit::clients(ch.clone(), &created.secret).unwrap();
    // The matchmaker checks its credential: who and which role.
    for _ in 0..3 {
        let me = mm
            .auth
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.subject, "matchmaker");
        assert_eq!(me.role(), pb::Role::Allocator);
        assert_eq!(me.kind, "api_token");
    }
    // Still nothing else.
    let e = mm
        .instances
        .clone()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Revoked: its very next call fails.
    admin
        .auth
        .clone()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            id: created.token.unwrap().id,
        })
        .await
        .unwrap();
    let e = mm
        .auth
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("revoked"), "{e:?}");

    // A session, used (so cached), then logged out: its next call fails.
    admin
        .auth
        .clone()
        .create_user(pb::CreateUserRequest {
            username: "ops".into(),
            password: "ops-password".into(),
            role: pb::Role::Operator as i32,
        })
        .await
        .unwrap();
    let login = || exile_testkit::login(sb.master_addr(), "ops", "ops-password");
    let ops = exile_testkit::clients(ch.clone(), &login().await.unwrap()).unwrap();
    let list = |c: &exile_testkit::Clients| {
        let mut i = c.instances.clone();
        async move { i.list_instances(pb::ListInstancesRequest::default()).await }
    };
    list(&ops).await.unwrap();
    list(&ops).await.unwrap();
    ops.auth.clone().logout(pb::LogoutRequest {}).await.unwrap();
    let e = list(&ops).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    // Another session of the same person, used, then the person deleted: next call fails.
    let ops = exile_testkit::clients(ch.clone(), &login().await.unwrap()).unwrap();
    list(&ops).await.unwrap();
    admin
        .auth
        .clone()
        .delete_user(pb::DeleteUserRequest {
            username: "ops".into(),
        })
        .await
        .unwrap();
    let e = list(&ops).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    sb.shutdown().await;
}
