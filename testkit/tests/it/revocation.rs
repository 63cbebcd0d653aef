//! Revocation reaches open streams: a logout, a revoked token, a role change and a deleted
//! user end that caller's Watch and log streams with UNAUTHENTICATED, and API tokens die
//! with the user who made them.

use std::time::Duration;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, clients, connect, login};
use futures::{FutureExt, Stream, StreamExt};

use crate::support::spawn;

/// Reads `stream` until it ends; the status it ended with (None: a clean end). A stream still
/// open after `BOUND` fails the test: the revocation did not reach it.
async fn ending<T, S>(stream: &mut S) -> Option<tonic::Status>
where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    const BOUND: Duration = Duration::from_secs(10);
    tokio::time::timeout(BOUND, async {
        while let Some(item) = stream.next().await {
            if let Err(status) = item {
                return Some(status);
            }
        }
        None
    })
    .await
    .expect("the stream was still open after the revocation")
}

async fn watch(c: &Clients) -> tonic::Streaming<pb::WatchEvent> {
    let mut w = c
        .events
        .clone()
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The snapshot: the stream is open and the caller was let in.
    assert!(w.next().await.unwrap().is_ok());
    w
}

async fn user(admin: &Clients, name: &str, role: pb::Role) {
    admin
        .auth
        .clone()
        .create_user(pb::CreateUserRequest {
            username: name.into(),
            password: "correct horse battery".into(),
            role: role as i32,
        })
        .await
        .unwrap();
}

async fn session(sb: &Sandbox, name: &str) -> (Clients, String) {
    let token = login(sb.master_addr(), name, "correct horse battery")
        .await
        .unwrap();
    (
        clients(connect(sb.master_addr()).await.unwrap(), &token).unwrap(),
        token,
    )
}

async fn token_id(admin: &Clients, name: &str) -> String {
    admin
        .auth
        .clone()
        .list_api_tokens(pb::ListApiTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .find(|t| t.name == name)
        .unwrap()
        .id
}

async fn who(c: &Clients) -> Result<pb::WhoAmIResponse, tonic::Status> {
    c.auth
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_credential_ends_its_open_streams() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let spawner = sb.spawner_ids().await.unwrap()[0].clone();
    let game = spawn(&admin, &spawner).await.unwrap();

    // A revoked API token: its Watch ends; another viewer's stays open.
    let (viewer, _) = sb
        .clients_with_role("dash", pb::Role::Viewer)
        .await
        .unwrap();
    let (bystander, _) = sb
        .clients_with_role("wall", pb::Role::Viewer)
        .await
        .unwrap();
    let mut revoked = watch(&viewer).await;
    let mut kept = watch(&bystander).await;
    admin
        .auth
        .clone()
        .revoke_api_token(pb::RevokeApiTokenRequest {
            id: token_id(&admin, "dash").await,
        })
        .await
        .unwrap();
    let status = ending(&mut revoked).await.expect("ended without a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("log in again"), "{status:?}");

    // A logout ends the session's followed log.
    user(&admin, "ops", pb::Role::Operator).await;
    let (ops, _) = session(&sb, "ops").await;
    let mut logs = ops
        .instances
        .clone()
        .stream_logs(pb::StreamLogsRequest {
            source: Some(pb::stream_logs_request::Source::Id(game.id.clone())),
            follow: true,
            tail_lines: 10,
        })
        .await
        .unwrap()
        .into_inner();
    ops.auth.clone().logout(pb::LogoutRequest {}).await.unwrap();
    let status = ending(&mut logs).await.expect("ended without a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    // A role change ends the user's streams (what they may see changed with it).
    let (ops, _) = session(&sb, "ops").await;
    let mut w = watch(&ops).await;
    admin
        .auth
        .clone()
        .update_user(pb::UpdateUserRequest {
            username: "ops".into(),
            role: pb::Role::Viewer as i32,
            new_password: String::new(),
        })
        .await
        .unwrap();
    let status = ending(&mut w).await.expect("ended without a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("role"), "{status:?}");
    assert_eq!(
        who(&ops).await.unwrap().role,
        pb::Role::Viewer as i32,
        "the session goes on with the new role"
    );
    // The other viewer's stream outlived all of it.
    assert!(
        !matches!(kept.next().now_or_never(), Some(None | Some(Err(_)))),
        "a stream of another credential ended too"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_end_with_the_user_who_made_them() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    user(&admin, "lead", pb::Role::Admin).await;
    let (lead, _) = session(&sb, "lead").await;
    let make = |name: &'static str, role: pb::Role| {
        let lead = lead.clone();
        let addr = sb.master_addr();
        async move {
            let secret = lead
                .auth
                .clone()
                .create_api_token(pb::CreateApiTokenRequest {
                    name: name.into(),
                    role: role as i32,
                    ttl_seconds: 3600,
                })
                .await
                .unwrap()
                .into_inner()
                .secret;
            clients(connect(addr).await.unwrap(), &secret).unwrap()
        }
    };
    let ci = make("ci", pb::Role::Operator).await;
    let board = make("board", pb::Role::Viewer).await;
    assert!(who(&ci).await.is_ok() && who(&board).await.is_ok());

    // Lowered to viewer: the operator token the lead made would outrank them and ends; the
    // viewer token stays.
    let mut ci_watch = watch(&ci).await;
    admin
        .auth
        .clone()
        .update_user(pb::UpdateUserRequest {
            username: "lead".into(),
            role: pb::Role::Viewer as i32,
            new_password: String::new(),
        })
        .await
        .unwrap();
    let status = ending(&mut ci_watch).await.expect("ended without a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(
        who(&ci).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert!(who(&board).await.is_ok());

    // Deleted: every token they made ends, open streams included.
    let mut board_watch = watch(&board).await;
    admin
        .auth
        .clone()
        .delete_user(pb::DeleteUserRequest {
            username: "lead".into(),
        })
        .await
        .unwrap();
    let status = ending(&mut board_watch)
        .await
        .expect("ended without a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(
        who(&board).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    // The admin's own calls go on.
    assert!(who(&admin).await.is_ok());
    sb.shutdown().await;
}
