//! BuildService: uploads (streamed or in resumable parts), listing, activation and deletion
//! of builds; rollouts are handed to [`crate::rollout`].

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::SharedRef;
use crate::access::{CallCtx, ctx};
use crate::builds::{Upload, selector_text, upload::check_part};
use crate::convert::{check_id, check_labels};
use crate::error::{Error, Result};
use exile_api::v1 as pb;
use exile_api::v1::build_service_server::BuildService;

/// Handlers of BuildService.
pub struct BuildApi(pub SharedRef);

/// Checks a `build` field (`name@version` or an id) before it reaches the audit log: set and
/// no longer than the longest `name@version`.
fn check_build_field(build: &str) -> Result<()> {
    const LONGEST: usize = 2 * exile_api::build::MAX_NAME_LEN + 1;
    if build.is_empty() {
        return Err(Error::InvalidArgument(
            "build: required (name@version)".into(),
        ));
    }
    if build.len() > LONGEST {
        return Err(Error::InvalidArgument(format!(
            "build: longer than {LONGEST} bytes"
        )));
    }
    Ok(())
}

/// Names an upload in the audit log before its checks run, cut to a sane length.
fn audit_upload(c: &CallCtx, m: &pb::UploadBuildMetadata) {
    let short = |s: &str| s.chars().take(64).collect::<String>();
    c.set_target(format!("{}@{}", short(&m.name), short(&m.version)));
    c.set_detail(format!("{} bytes, sha256 {}", m.size, short(&m.sha256)));
}

/// Records the stored build in the audit detail.
fn audit_stored(c: &CallCtx, r: &pb::UploadBuildResponse) {
    if let Some(b) = &r.build {
        c.set_detail(format!(
            "stored as {} ({} bytes, sha256 {}, {} new chunks)",
            b.id, b.size, b.sha256, r.new_chunks
        ));
    }
}

impl BuildApi {
    /// Reads a streamed upload's data into `upload` until the stream ends.
    async fn receive(
        &self,
        upload: &mut Upload,
        stream: &mut Streaming<pb::UploadBuildRequest>,
    ) -> Result<(), Status> {
        use pb::upload_build_request::Kind;
        while let Some(msg) = stream.next().await {
            match msg?.kind {
                Some(Kind::Data(data)) => upload.write(data).await?,
                Some(Kind::Metadata(_)) => {
                    return Err(Error::InvalidArgument(
                        "the metadata comes once, in the first message".into(),
                    )
                    .into());
                }
                None => {
                    return Err(Error::InvalidArgument(
                        "an upload message carries neither metadata nor data".into(),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl BuildService for BuildApi {
    async fn upload_build(
        &self,
        req: Request<Streaming<pb::UploadBuildRequest>>,
    ) -> Result<Response<pb::UploadBuildResponse>, Status> {
        let c = ctx(&req)?;
        let mut stream = req.into_inner();
        let metadata = match stream.next().await {
            Some(Ok(pb::UploadBuildRequest {
                kind: Some(pb::upload_build_request::Kind::Metadata(m)),
            })) => m,
            Some(Ok(_)) => {
                return Err(Error::InvalidArgument(
                    "the first message of an upload must carry its metadata".into(),
                )
                .into());
            }
            Some(Err(s)) => return Err(s),
            None => {
                return Err(
                    Error::InvalidArgument("the upload ended before its metadata".into()).into(),
                );
            }
        };
        audit_upload(&c, &metadata);
        let mut upload = self.0.builds.begin(metadata)?;
        // On any error from here the upload (and so its file) is dropped; a refused stream
        // is not read further.
        self.receive(&mut upload, &mut stream).await?;
        let r = self
            .0
            .builds
            .finish(upload, &c.principal.actor(), &self.0.settings.env_allowed())
            .await?;
        audit_stored(&c, &r);
        Ok(Response::new(r))
    }

    async fn begin_upload(
        &self,
        req: Request<pb::BeginUploadRequest>,
    ) -> Result<Response<pb::BeginUploadResponse>, Status> {
        let c = ctx(&req)?;
        let metadata = req
            .into_inner()
            .metadata
            .ok_or_else(|| Error::InvalidArgument("metadata: required".into()))?;
        audit_upload(&c, &metadata);
        let upload = self.0.builds.begin(metadata)?;
        let upload_id = self.0.builds.sessions.insert(c.principal.actor(), upload);
        c.set_detail(format!("upload {upload_id}"));
        Ok(Response::new(pb::BeginUploadResponse { upload_id }))
    }

    async fn upload_part(
        &self,
        req: Request<pb::UploadPartRequest>,
    ) -> Result<Response<pb::UploadPartResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("upload_id", &r.upload_id)?;
        // Too large a part is the client's to split; the upload itself stays good.
        check_part(&r.data)?;
        let sessions = &self.0.builds.sessions;
        let session = sessions.get(&r.upload_id, &c.principal.actor()).await?;
        let mut s = session.lock().await;
        let Some(upload) = s.upload.as_mut() else {
            return Err(
                Error::NotFound(format!("upload {} is over; begin it again", r.upload_id)).into(),
            );
        };
        let received = upload.received();
        if r.offset != received {
            return Err(Error::FailedPrecondition(format!(
                "this part starts at offset {}, but {received} bytes of the upload arrived so far: send the part at offset {received}",
                r.offset
            ))
            .into());
        }
        if let Err(e) = upload.write(r.data).await {
            // More bytes than announced, or a write that failed: this upload cannot finish.
            s.upload = None;
            sessions.forget(&r.upload_id);
            return Err(e.into());
        }
        let received = upload.received();
        s.last_used = tokio::time::Instant::now();
        Ok(Response::new(pb::UploadPartResponse { received }))
    }

    async fn finish_upload(
        &self,
        req: Request<pb::FinishUploadRequest>,
    ) -> Result<Response<pb::UploadBuildResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("upload_id", &r.upload_id)?;
        c.set_detail(format!("upload {}", r.upload_id));
        let sessions = &self.0.builds.sessions;
        let session = sessions.get(&r.upload_id, &c.principal.actor()).await?;
        let mut s = session.lock().await;
        let upload = s.upload.take().ok_or_else(|| {
            Error::NotFound(format!("upload {} is over; begin it again", r.upload_id))
        })?;
        sessions.forget(&r.upload_id);
        drop(s);
        c.set_target(upload.announced.reference());
        let r = self
            .0
            .builds
            .finish(upload, &c.principal.actor(), &self.0.settings.env_allowed())
            .await?;
        audit_stored(&c, &r);
        Ok(Response::new(r))
    }

    async fn list_builds(
        &self,
        req: Request<pb::ListBuildsRequest>,
    ) -> Result<Response<pb::ListBuildsResponse>, Status> {
        let r = req.into_inner();
        if r.name.len() > exile_api::build::MAX_NAME_LEN {
            return Err(Error::InvalidArgument("name: too long".into()).into());
        }
        Ok(Response::new(pb::ListBuildsResponse {
            builds: self.0.registry.list_builds(&r.name),
        }))
    }

    async fn get_build(
        &self,
        req: Request<pb::GetBuildRequest>,
    ) -> Result<Response<pb::GetBuildResponse>, Status> {
        let r = req.into_inner();
        check_build_field(&r.build)?;
        Ok(Response::new(pb::GetBuildResponse {
            build: Some(self.0.registry.get_build(&r.build)?),
        }))
    }

    async fn activate_build(
        &self,
        req: Request<pb::ActivateBuildRequest>,
    ) -> Result<Response<pb::ActivateBuildResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_build_field(&r.build)?;
        c.set_target(r.build.clone());
        let selector = check_labels("spawner_selector", &r.spawner_selector)?;
        c.set_detail(format!("for {}", selector_text(&selector)));
        let build = self
            .0
            .builds
            .activate(&r.build, selector, &c.principal.actor())
            .await?;
        Ok(Response::new(pb::ActivateBuildResponse {
            build: Some(build),
        }))
    }

    async fn delete_build(
        &self,
        req: Request<pb::DeleteBuildRequest>,
    ) -> Result<Response<pb::DeleteBuildResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_build_field(&r.build)?;
        c.set_target(r.build.clone());
        let d = self.0.builds.delete(&r.build).await?;
        c.set_detail(format!(
            "{} ({}); freed {} chunks, {} bytes",
            d.build.reference(),
            d.build.id,
            d.freed_chunks,
            d.freed_bytes
        ));
        Ok(Response::new(pb::DeleteBuildResponse {
            freed_chunks: d.freed_chunks,
            freed_bytes: d.freed_bytes,
        }))
    }

    async fn start_rollout(
        &self,
        req: Request<pb::StartRolloutRequest>,
    ) -> Result<Response<pb::StartRolloutResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.build.chars().take(140).collect::<String>());
        let rollout = crate::rollout::start(&self.0, &c.principal.actor(), r).await?;
        Ok(Response::new(pb::StartRolloutResponse {
            rollout: Some(rollout),
        }))
    }

    async fn get_rollout(
        &self,
        req: Request<pb::GetRolloutRequest>,
    ) -> Result<Response<pb::GetRolloutResponse>, Status> {
        let rollout = crate::rollout::get(&self.0, req.into_inner()).await?;
        Ok(Response::new(pb::GetRolloutResponse {
            rollout: Some(rollout),
        }))
    }

    async fn list_rollouts(
        &self,
        req: Request<pb::ListRolloutsRequest>,
    ) -> Result<Response<pb::ListRolloutsResponse>, Status> {
        let rollouts = crate::rollout::list(&self.0, req.into_inner()).await?;
        Ok(Response::new(pb::ListRolloutsResponse { rollouts }))
    }

    async fn cancel_rollout(
        &self,
        req: Request<pb::CancelRolloutRequest>,
    ) -> Result<Response<pb::CancelRolloutResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.id.chars().take(128).collect::<String>());
        let rollout = crate::rollout::cancel(&self.0, &c.principal.actor(), r).await?;
        Ok(Response::new(pb::CancelRolloutResponse {
            rollout: Some(rollout),
        }))
    }

    async fn rollback_build(
        &self,
        req: Request<pb::RollbackBuildRequest>,
    ) -> Result<Response<pb::RollbackBuildResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.name.chars().take(64).collect::<String>());
        Ok(Response::new(
            crate::rollout::rollback(&self.0, &c.principal.actor(), r).await?,
        ))
    }
}
