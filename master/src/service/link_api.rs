//! SpawnerLink: enrollment and the spawner's live stream.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::SharedRef;
use crate::access::ctx;
use crate::auth::{CREDENTIAL_PREFIX, hash_secret, new_id, new_secret};
use crate::error::Error;
use crate::model::{Principal, SpawnerInfo};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
use exile_api::v1::spawner_link_server::SpawnerLink;

/// Handlers of SpawnerLink.
pub struct LinkApi(pub SharedRef);

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

pub(crate) fn check_hello(h: &pb::Hello) -> Result<(), Error> {
    if h.capacity == 0 || h.capacity > 100_000 {
        return Err(Error::InvalidArgument(
            "hello.capacity: must be 1 to 100000".into(),
        ));
    }
    if h.region.is_empty() || h.region.len() > 64 {
        return Err(Error::InvalidArgument("hello.region: 1 to 64 bytes".into()));
    }
    if h.instances.len() > 100_000 {
        return Err(Error::InvalidArgument("hello.instances: too many".into()));
    }
    if h.builds.len() > crate::registry::MAX_HELD_BUILDS {
        return Err(Error::InvalidArgument(format!(
            "hello.builds: at most {}",
            crate::registry::MAX_HELD_BUILDS
        )));
    }
    crate::convert::check_labels("hello.labels", &h.labels)?;
    Ok(())
}

#[tonic::async_trait]
impl SpawnerLink for LinkApi {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        if r.token.is_empty() || r.token.len() > 256 {
            return Err(Error::InvalidArgument("token: required".into()).into());
        }
        if r.name.len() > 64 || r.host.len() > 255 {
            return Err(Error::InvalidArgument("name or host: too long".into()).into());
        }
        let id = new_id("spw");
        c.set_target(id.clone());
        // Tokens are long random secrets, but a source that keeps presenting bad ones is
        // slowed all the same, like a login.
        let attempt = self.0.auth.admit_enrollment(&c.peer)?;
        let consumed = self
            .0
            .store
            .consume_enrollment_token(&hash_secret(&r.token), &id, now_unix_ms())
            .await;
        match consumed {
            Ok(true) => attempt.succeeded(),
            Ok(false) => {
                attempt.failed();
                return Err(Error::Unauthenticated(
                    "enrollment token is unknown, used, revoked or expired".into(),
                )
                .into());
            }
            Err(e) => {
                attempt.not_judged();
                return Err(e.into());
            }
        }
        let credential = new_secret(CREDENTIAL_PREFIX);
        let now = now_unix_ms();
        let name = if r.name.is_empty() {
            r.host.clone()
        } else {
            r.name
        };
        let info = SpawnerInfo {
            id: id.clone(),
            name: if name.is_empty() { id.clone() } else { name },
            region: String::new(),
            host: r.host,
            advertised_address: String::new(),
            capacity: 0,
            labels: Default::default(),
            agent_version: String::new(),
            active_build: String::new(),
            drained: false,
            enrolled_at: now,
            last_seen_at: now,
        };
        c.set_detail(format!("name {}", info.name));
        self.0
            .store
            .insert_spawner(&info, hash_secret(&credential))
            .await?;
        self.0.registry.enrolled(info);
        // With a spawner CA the spawner also gets a client certificate (the key is made
        // here and sent once over this TLS connection, like the credential).
        let (client_cert_pem, client_key_pem) = match &self.0.spawner_tls.issuer {
            Some(ca) => {
                let leaf = crate::certs::spawner_cert(ca, &id).map_err(Error::Internal)?;
                self.0
                    .store
                    .insert_spawner_cert(&leaf.serial_hex, &id, now)
                    .await?;
                (leaf.cert, leaf.key)
            }
            None => (String::new(), String::new()),
        };
        tracing::info!(spawner = %id, "spawner enrolled");
        Ok(Response::new(pb::EnrollResponse {
            spawner_id: id,
            credential,
            client_cert_pem,
            client_key_pem,
        }))
    }

    type LinkStream = Outbound;

    async fn link(
        &self,
        req: Request<Streaming<pb::SpawnerMessage>>,
    ) -> Result<Response<Self::LinkStream>, Status> {
        let c = ctx(&req)?;
        let Principal::Spawner { id } = c.principal else {
            return Err(Error::PermissionDenied("only spawners may link".into()).into());
        };
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
            .map(|c| &c.0);
        self.0
            .spawner_tls
            .check_link(peer, &id)
            .map_err(Error::Unauthenticated)?;
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.next())
            .await
            .map_err(|_| Error::InvalidArgument("no hello within 10 s".into()))?;
        let hello = match first {
            Some(Ok(pb::SpawnerMessage {
                kind: Some(pb::spawner_message::Kind::Hello(h)),
            })) => h,
            Some(Ok(_)) => {
                return Err(
                    Error::InvalidArgument("the first message must be a hello".into()).into(),
                );
            }
            Some(Err(s)) => return Err(s),
            None => {
                return Err(
                    Error::InvalidArgument("the stream ended before the hello".into()).into(),
                );
            }
        };
        check_hello(&hello)?;
        let (tx, rx) = mpsc::channel(1024);
        let link = self.0.registry.attach(&id, &hello, tx.clone())?;
        let welcome = pb::MasterMessage {
            kind: Some(pb::master_message::Kind::Welcome(pb::Welcome {
                spawner_id: id.clone(),
                heartbeat_interval_ms: u32::try_from(
                    self.0
                        .settings
                        .duration(exile_api::settings::HEARTBEAT_INTERVAL)
                        .as_millis(),
                )
                .unwrap_or(5000),
            })),
        };
        tx.send(welcome)
            .await
            .map_err(|_| Error::Unavailable("link closed".into()))?;
        drop(tx);
        // After the welcome: the builds to fetch ahead of spawns.
        self.0.registry.push_wanted_builds(&id)?;
        // And the settings of this moment, which it acknowledges: a spawner that was away
        // catches up here.
        self.0.settings.push(&self.0.registry, Some(&id));
        tracing::info!(spawner = %id, generation = link.generation, instances = hello.instances.len(), "spawner linked");
        let shared = self.0.clone();
        let closed = link.closed();
        let out_closed = link.closed();
        tokio::spawn(async move {
            let clean = loop {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break true,
                    _ = closed.cancelled() => break true,
                    msg = inbound.next() => match msg {
                        None => break true,
                        Some(Err(status)) => {
                            tracing::warn!(spawner = %id, error = %status.message(), "link broke");
                            break false;
                        }
                        Some(Ok(m)) => handle(&shared, &id, &link, m),
                    }
                }
            };
            shared.registry.detach(&id, link.generation, clean);
            // Ends the outbound half too, even while requests in flight still hold senders.
            link.close();
            tracing::info!(spawner = %id, generation = link.generation, clean, "spawner link closed");
        });
        let out = ReceiverStream::new(rx)
            .map(Ok)
            .take_until(async move { out_closed.cancelled().await });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_build_chunks(
        &self,
        req: Request<pb::GetBuildChunksRequest>,
    ) -> Result<Response<pb::GetBuildChunksResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.0.builds.chunk_list(&r.build_id).await?))
    }

    type FetchChunksStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ChunkData, Status>> + Send>>;

    async fn fetch_chunks(
        &self,
        req: Request<pb::FetchChunksRequest>,
    ) -> Result<Response<Self::FetchChunksStream>, Status> {
        let hashes = req.into_inner().sha256;
        self.0.builds.check_fetch(&hashes).await?;
        // Chunks are read ahead of the client by at most READ_AHEAD, only as it takes them:
        // memory stays at a few chunks per stream whatever the build's size, and the next
        // chunk is off the disk by the time the last one is sent. A failed read ends the
        // stream.
        const READ_AHEAD: usize = 2;
        let builds = self.0.builds.clone();
        let chunks = futures::stream::iter(hashes)
            .map(move |sha256| {
                let builds = builds.clone();
                async move { builds.read_chunk(sha256).await.map_err(Status::from) }
            })
            .buffered(READ_AHEAD)
            .scan(false, |failed, chunk| {
                let out = (!*failed).then_some(chunk);
                *failed = matches!(out, Some(Err(_)));
                futures::future::ready(out)
            });
        Ok(Response::new(Box::pin(chunks)))
    }
}

fn handle(shared: &super::Shared, id: &str, link: &crate::registry::Link, m: pb::SpawnerMessage) {
    use pb::spawner_message::Kind;
    match m.kind {
        Some(Kind::Heartbeat(mut hb)) => {
            shared
                .counters
                .heartbeats
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The registry keeps only the spawner's own instances in it; their history is
            // recorded from what is left.
            if shared
                .registry
                .heartbeat(id, link.generation, &mut hb, true)
            {
                shared
                    .metrics
                    .record_heartbeat(id, exile_api::now_unix_ms(), &hb);
            }
        }
        Some(Kind::InstanceEvent(ev)) => shared.registry.instance_event(id, link.generation, ev),
        Some(Kind::CommandResult(r)) => link.complete(r),
        Some(Kind::LogData(d)) => link.log_data(d),
        Some(Kind::Hello(_)) => tracing::warn!(spawner = %id, "second hello on one link ignored"),
        Some(Kind::SettingsApplied(applied)) => {
            shared
                .registry
                .settings_applied(id, link.generation, applied);
        }
        Some(Kind::BuildsHeld(held)) => {
            shared
                .registry
                .builds_held(id, link.generation, held.builds);
        }
        None => tracing::warn!(spawner = %id, "empty message ignored"),
    }
}
