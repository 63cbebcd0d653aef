//! InstanceService: spawn and drive instances through their spawner's link.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::{Shared, SharedRef};
use crate::access::{ctx, may_read_game_output};
use crate::auth::new_id;
use crate::builds::BuildChoice;
use crate::convert::{check_id, check_labels, instances_for};
use crate::error::{Error, Result};
use crate::model::{InstanceRecord, Labels, SpawnSettings};
use crate::registry::{LogEvent, Placement, map_command_error};
use exile_api::v1 as pb;
use exile_api::v1::instance_service_server::InstanceService;
use exile_api::v1::stream_logs_request::Source;

/// Handlers of InstanceService.
pub struct InstanceApi(pub SharedRef);

fn check_env(env: &HashMap<String, String>) -> Result<()> {
    exile_api::limits::check_env(env.iter()).map_err(Error::InvalidArgument)
}

fn check_args(args: &[String]) -> Result<()> {
    exile_api::limits::check_args(args).map_err(Error::InvalidArgument)
}

fn check_restart_policy(p: &pb::RestartPolicy) -> Result<()> {
    exile_api::limits::check_restart_policy(p).map_err(Error::InvalidArgument)
}

fn check_health_check(h: &pb::HealthCheck) -> Result<()> {
    exile_api::limits::check_health_check(h).map_err(Error::InvalidArgument)
}

/// Most lines a log stream may start with.
const MAX_TAIL_LINES: u32 = 10_000;

fn check_console_line(line: &str) -> Result<()> {
    exile_api::limits::check_console_line(line).map_err(Error::InvalidArgument)
}

/// Whose log a StreamLogs request reads.
#[derive(Debug, PartialEq, Eq)]
enum LogTarget {
    /// An instance's output (`id`).
    Instance(String),
    /// A spawner's own log (`spawner_id`).
    Spawner(String),
}

/// Checks that the request names a log (the `oneof` lets it name one at most), and that the
/// id is well formed.
fn log_target(source: Option<Source>) -> Result<LogTarget> {
    match source {
        Some(Source::Id(id)) => {
            check_id("id", &id)?;
            Ok(LogTarget::Instance(id))
        }
        Some(Source::SpawnerId(spawner_id)) => {
            check_id("spawner_id", &spawner_id)?;
            Ok(LogTarget::Spawner(spawner_id))
        }
        None => Err(Error::InvalidArgument(
            "set id to read an instance's log, or spawner_id to read a spawner's own log".into(),
        )),
    }
}

type LogChunks =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

impl InstanceApi {
    /// Sends `action` for `id` to its spawner and returns the instance afterwards.
    async fn drive(&self, id: &str, action: pb::command::Action) -> Result<pb::Instance> {
        let (spawner_id, link) = self.0.registry.route(id)?;
        let result = map_command_error(link.request(action, self.0.command_timeout).await?)?;
        if let Some(status) = result.instance {
            self.0.registry.apply_status(&spawner_id, status);
        }
        self.0.registry.get_instance(id)
    }
}

/// Everything a spawn decides, validated.
pub struct SpawnPlan {
    /// Where.
    pub placement: Placement,
    /// Which build.
    pub choice: BuildChoice,
    /// Version of the host build, when `choice` is the host build.
    pub host_version: String,
    /// Instance labels.
    pub labels: Labels,
    /// Env, args, restart and health asked for.
    pub settings: SpawnSettings,
}

/// An instance whose slot is taken (recorded Starting on its spawner) but not started yet.
pub struct Reserved {
    rec: InstanceRecord,
    link: crate::registry::Link,
    build: Option<pb::BuildRef>,
    labels: Labels,
    settings: SpawnSettings,
}

impl Reserved {
    /// The instance's id.
    pub fn id(&self) -> &str {
        &self.rec.id
    }

    /// Where it went, for the audit log.
    pub fn detail(&self) -> String {
        match &self.build {
            Some(b) => format!(
                "on spawner {} with build {}@{}",
                self.rec.spawner_id, b.name, b.version
            ),
            None => format!("on spawner {}", self.rec.spawner_id),
        }
    }
}

/// Picks a spawner and records the instance as Starting there, at once (no await), so that
/// whoever places next sees the slot taken. `named` hears its id as soon as it has one.
pub fn reserve(shared: &Shared, plan: SpawnPlan, named: impl FnOnce(&str)) -> Result<Reserved> {
    let SpawnPlan {
        placement,
        choice,
        host_version,
        labels,
        settings,
    } = plan;
    let id = new_id("inst");
    named(&id);
    let rec = InstanceRecord {
        id: id.clone(),
        spawner_id: String::new(),
        state: pb::InstanceState::Starting,
        build_version: host_version,
        build_name: String::new(),
        spawn: settings.clone(),
        ports: vec![],
        pid: 0,
        restart_count: 0,
        labels: labels.clone(),
        players: 0,
        max_players: 0,
        resources: pb::Resources::default(),
        created_at: 0,
        started_at: 0,
        state_changed_at: 0,
        exit_code: None,
        message: String::new(),
        revision: 0,
    };
    let (rec, link, build) = shared.registry.reserve(&placement, &choice, rec)?;
    Ok(Reserved {
        rec,
        link,
        build,
        labels,
        settings,
    })
}

/// Installs (an uploaded build) and starts a reserved instance; its slot is released if it
/// cannot be started.
pub async fn launch(shared: &Shared, r: Reserved) -> Result<pb::Instance> {
    let Reserved {
        rec,
        link,
        build,
        labels,
        settings,
    } = r;
    let id = rec.id.clone();
    if let Some(b) = &build {
        // Fetching and unpacking a large build takes far longer than a command.
        let install = pb::command::Action::InstallBuild(pb::InstallBuildCommand {
            build: Some(b.clone()),
        });
        let installed = match link.request(install, shared.build_install_timeout).await {
            Ok(res) => map_command_error(res),
            Err(e) => Err(e),
        };
        if let Err(e) = installed {
            // Nothing was started: release the reserved slot.
            shared.registry.forget_instance(&id);
            return Err(e.prefixed(&format!(
                "installing {}@{} on spawner {}",
                b.name, b.version, rec.spawner_id
            )));
        }
    }
    let action = pb::command::Action::Spawn(pb::SpawnCommand {
        instance_id: id.clone(),
        build_version: rec.build_version.clone(),
        labels: labels.into_iter().collect(),
        env: settings.env.into_iter().collect(),
        args: settings.args,
        restart_policy: settings.restart_policy,
        health_check: settings.health_check,
        agones_sdk: settings.agones_sdk,
        build,
    });
    let outcome = match link.request(action, shared.command_timeout).await {
        Ok(res) => map_command_error(res),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(res) => {
            if let Some(status) = res.instance {
                shared.registry.apply_status(&rec.spawner_id, status);
            }
            shared.registry.get_instance(&id)
        }
        Err(e) => {
            // Unless the spawner may still be starting it, release the reserved slot.
            if !matches!(e, Error::DeadlineExceeded(_)) {
                shared.registry.forget_instance(&id);
            }
            Err(e)
        }
    }
}

/// Places, installs (an uploaded build) and starts one instance. `named` hears its id as soon
/// as it has one and `detail` where it went, for the audit log. Used by SpawnInstance and by
/// rollouts.
pub async fn spawn(
    shared: &Shared,
    plan: SpawnPlan,
    named: impl FnOnce(&str),
    detail: impl FnOnce(String),
) -> Result<pb::Instance> {
    let reserved = reserve(shared, plan, named)?;
    detail(reserved.detail());
    launch(shared, reserved).await
}

#[tonic::async_trait]
impl InstanceService for InstanceApi {
    type StreamLogsStream = LogChunks;

    async fn stream_logs(
        &self,
        req: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let r = req.into_inner();
        let target = log_target(r.source)?;
        if r.tail_lines > MAX_TAIL_LINES {
            return Err(
                Error::InvalidArgument(format!("tail_lines: at most {MAX_TAIL_LINES}")).into(),
            );
        }
        let tail_lines = if r.tail_lines == 0 && !r.follow {
            100
        } else {
            r.tail_lines
        };
        let (link, instance_id, spawner_id) = match target {
            LogTarget::Instance(id) => (self.0.registry.route(&id)?.1, id, String::new()),
            LogTarget::Spawner(id) => (self.0.registry.spawner_link(&id)?, String::new(), id),
        };
        let logs = link
            .stream_logs(
                pb::LogsCommand {
                    instance_id,
                    follow: r.follow,
                    tail_lines,
                    spawner_id,
                },
                self.0.command_timeout,
            )
            .await?;
        let chunks = futures::stream::unfold(Some(logs), |state| async move {
            let mut logs = state?;
            match logs.next().await {
                Ok(LogEvent::Data(d)) => Some((
                    Ok(pb::LogChunk {
                        data: d.data,
                        skipped_bytes: d.skipped_bytes,
                    }),
                    Some(logs),
                )),
                Ok(LogEvent::Done(result)) => match map_command_error(*result) {
                    Ok(_) => None,
                    Err(e) => Some((Err(e.into()), None)),
                },
                Err(e) => Some((Err(e.into()), None)),
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn send_console_command(
        &self,
        req: Request<pb::SendConsoleCommandRequest>,
    ) -> Result<Response<pb::SendConsoleCommandResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        // Audited with the line itself: the console is how an operator changes a live game.
        let shown: String = r
            .line
            .chars()
            .take(exile_api::limits::MAX_CONSOLE_LINE)
            .collect();
        c.set_detail(format!("console: {}", shown.escape_debug()));
        check_console_line(&r.line)?;
        let (_, link) = self.0.registry.route(&r.id)?;
        let action = pb::command::Action::Console(pb::ConsoleCommand {
            instance_id: r.id,
            line: r.line,
        });
        map_command_error(link.request(action, self.0.command_timeout).await?)?;
        Ok(Response::new(pb::SendConsoleCommandResponse {}))
    }

    async fn rename_instance(
        &self,
        req: Request<pb::RenameInstanceRequest>,
    ) -> Result<Response<pb::RenameInstanceResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        c.set_detail(format!("display name: {}", r.display_name.escape_debug()));
        exile_api::limits::check_display_name(&r.display_name).map_err(Error::InvalidArgument)?;
        let instance = self.0.registry.rename_instance(&r.id, &r.display_name)?;
        Ok(Response::new(pb::RenameInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn spawn_instance(
        &self,
        req: Request<pb::SpawnInstanceRequest>,
    ) -> Result<Response<pb::SpawnInstanceResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        let labels = check_labels("labels", &r.labels)?;
        if let Some(k) = labels
            .keys()
            .find(|k| exile_api::fleet::is_reserved_label(k))
        {
            return Err(Error::InvalidArgument(format!(
                "labels: {k}: keys under {} belong to the platform (fleets set them)",
                exile_api::fleet::RESERVED_LABEL_PREFIX
            ))
            .into());
        }
        let selector = check_labels("spawner_selector", &r.spawner_selector)?;
        check_env(&r.env)?;
        self.0.settings.check_env_policy(r.env.keys())?;
        check_args(&r.args)?;
        if let Some(policy) = &r.restart_policy {
            check_restart_policy(policy)?;
        }
        if let Some(health) = &r.health_check {
            check_health_check(health)?;
        }
        if r.build_version.len() > 128 || r.region.len() > 64 || r.spawner_id.len() > 128 {
            return Err(Error::InvalidArgument(
                "build_version, region or spawner_id: too long".into(),
            )
            .into());
        }
        let choice = BuildChoice::parse(&r.build, &r.build_version)?;
        let packed = pb::PlacementStrategy::try_from(r.strategy)
            .map_err(|_| Error::InvalidArgument("strategy: unknown value".into()))?
            == pb::PlacementStrategy::Packed;
        let plan = SpawnPlan {
            placement: Placement {
                spawner_id: r.spawner_id,
                region: r.region,
                selector,
                packed,
            },
            choice,
            host_version: r.build_version,
            labels,
            settings: SpawnSettings {
                env: r.env.into_iter().collect(),
                args: r.args,
                restart_policy: r.restart_policy,
                health_check: r.health_check,
                agones_sdk: r.agones_sdk,
            },
        };
        let instance = spawn(
            &self.0,
            plan,
            |id| c.set_target(id.to_owned()),
            |d| c.set_detail(d),
        )
        .await?;
        Ok(Response::new(pb::SpawnInstanceResponse {
            instance: Some(instance),
        }))
    }

    async fn list_instances(
        &self,
        req: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        let sees_output = may_read_game_output(&ctx(&req)?.principal);
        let r = req.into_inner();
        let mut instances = self.0.registry.snapshot().instances;
        if !r.spawner_id.is_empty() {
            instances.retain(|i| i.spawner_id == r.spawner_id);
        }
        if !r.states.is_empty() {
            instances.retain(|i| r.states.contains(&i.state));
        }
        Ok(Response::new(pb::ListInstancesResponse {
            instances: instances_for(instances, sees_output),
        }))
    }

    async fn get_instance(
        &self,
        req: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::GetInstanceResponse>, Status> {
        let sees_output = may_read_game_output(&ctx(&req)?.principal);
        let r = req.into_inner();
        check_id("id", &r.id)?;
        let instance = self.0.registry.get_instance(&r.id)?;
        Ok(Response::new(pb::GetInstanceResponse {
            instance: instances_for(vec![instance], sees_output).pop(),
        }))
    }

    async fn start_instance(
        &self,
        req: Request<pb::StartInstanceRequest>,
    ) -> Result<Response<pb::StartInstanceResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        let action = pb::command::Action::Start(pb::InstanceRef {
            instance_id: r.id.clone(),
        });
        Ok(Response::new(pb::StartInstanceResponse {
            instance: Some(self.drive(&r.id, action).await?),
        }))
    }

    async fn stop_instance(
        &self,
        req: Request<pb::StopInstanceRequest>,
    ) -> Result<Response<pb::StopInstanceResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        let action = pb::command::Action::Stop(pb::StopCommand {
            instance_id: r.id.clone(),
            grace_period_seconds: r.grace_period_seconds,
        });
        Ok(Response::new(pb::StopInstanceResponse {
            instance: Some(self.drive(&r.id, action).await?),
        }))
    }

    async fn restart_instance(
        &self,
        req: Request<pb::RestartInstanceRequest>,
    ) -> Result<Response<pb::RestartInstanceResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        let action = pb::command::Action::Restart(pb::StopCommand {
            instance_id: r.id.clone(),
            grace_period_seconds: r.grace_period_seconds,
        });
        Ok(Response::new(pb::RestartInstanceResponse {
            instance: Some(self.drive(&r.id, action).await?),
        }))
    }

    async fn remove_instance(
        &self,
        req: Request<pb::RemoveInstanceRequest>,
    ) -> Result<Response<pb::RemoveInstanceResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        let (_, link) = self.0.registry.route(&r.id)?;
        let action = pb::command::Action::Remove(pb::InstanceRef {
            instance_id: r.id.clone(),
        });
        match link
            .request(action, self.0.command_timeout)
            .await
            .and_then(map_command_error)
        {
            Ok(_) | Err(Error::NotFound(_)) => {
                // Gone on the spawner either way; make sure the registry agrees.
                self.0.registry.forget_instance(&r.id);
                Ok(Response::new(pb::RemoveInstanceResponse {}))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_request_names_exactly_one_target() {
        assert_eq!(
            log_target(Some(Source::Id("i-1".into()))).unwrap(),
            LogTarget::Instance("i-1".into())
        );
        assert_eq!(
            log_target(Some(Source::SpawnerId("sp-1".into()))).unwrap(),
            LogTarget::Spawner("sp-1".into())
        );
        let neither = log_target(None).unwrap_err().to_string();
        assert!(neither.contains("spawner_id"), "{neither}");
        assert!(log_target(Some(Source::SpawnerId("x".repeat(200)))).is_err());
        assert!(log_target(Some(Source::Id(String::new()))).is_err());
    }

    /// The oneof kept the numbers of the two plain fields it replaced: what an older client
    /// sent decodes to the same target, and what a newer one sends reads the same for an
    /// older decoder.
    #[test]
    fn the_log_source_oneof_is_wire_compatible() {
        use prost::Message;
        // Field 1 (id) and field 4 (spawner_id) as strings, field 2 (follow) true.
        let old_instance = [0x0a, 0x03, b'i', b'-', b'1', 0x10, 0x01];
        let r = pb::StreamLogsRequest::decode(&old_instance[..]).unwrap();
        assert_eq!(r.source, Some(Source::Id("i-1".into())));
        assert!(r.follow);
        let old_spawner = [0x22, 0x04, b's', b'p', b'-', b'1'];
        let r = pb::StreamLogsRequest::decode(&old_spawner[..]).unwrap();
        assert_eq!(r.source, Some(Source::SpawnerId("sp-1".into())));
        let new = pb::StreamLogsRequest {
            source: Some(Source::Id("i-1".into())),
            follow: true,
            tail_lines: 0,
        };
        // The same two fields, in whatever order the encoder writes them.
        let bytes = new.encode_to_vec();
        assert_eq!(bytes.len(), old_instance.len(), "{bytes:x?}");
        assert!(
            bytes.windows(5).any(|w| w == &old_instance[..5]),
            "{bytes:x?}"
        );
        assert!(bytes.windows(2).any(|w| w == [0x10, 0x01]), "{bytes:x?}");
    }
}
