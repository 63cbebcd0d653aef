//! MetricsService: resource history for charts.

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::convert::check_id;
use crate::error::Error;
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
use exile_api::v1::metrics_service_server::MetricsService;

/// Handlers of MetricsService.
pub struct MetricsApi(pub SharedRef);

/// Longest range one call may ask for.
const MAX_RANGE_MS: i64 = 31 * 86_400_000;

/// The range `[from, to]` and bucket width a history request asks for, with the defaults
/// filled in (the last hour; about 300 points) and the bounds checked.
fn window(from_ms: i64, to_ms: i64, step_ms: u64) -> Result<(i64, i64, i64), Status> {
    let to = if to_ms == 0 { now_unix_ms() } else { to_ms };
    let from = if from_ms == 0 {
        to - 3_600_000
    } else {
        from_ms
    };
    if from >= to {
        return Err(
            Error::InvalidArgument("from_unix_ms: must be before to_unix_ms".into()).into(),
        );
    }
    if to - from > MAX_RANGE_MS {
        return Err(Error::InvalidArgument("range: at most 31 days per call".into()).into());
    }
    let auto = ((to - from) / 300).max(1000);
    let step = match i64::try_from(step_ms) {
        Ok(0) => auto,
        // Never more than ~10,000 points in one answer.
        Ok(s) => s.max((to - from) / 10_000).max(1),
        Err(_) => return Err(Error::InvalidArgument("step_ms: too large".into()).into()),
    };
    Ok((from, to, step))
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    async fn get_metrics_history(
        &self,
        req: Request<pb::GetMetricsHistoryRequest>,
    ) -> Result<Response<pb::GetMetricsHistoryResponse>, Status> {
        let r = req.into_inner();
        check_id("id", &r.id)?;
        let target = pb::MetricsTarget::try_from(r.target)
            .ok()
            .filter(|t| *t != pb::MetricsTarget::Unspecified)
            .ok_or_else(|| Error::InvalidArgument("target: must be spawner or instance".into()))?;
        let (from, to, step) = window(r.from_unix_ms, r.to_unix_ms, r.step_ms)?;
        let known = match target {
            pb::MetricsTarget::Spawner => self.0.registry.get_spawner(&r.id).is_ok(),
            _ => self.0.registry.get_instance(&r.id).is_ok(),
        };
        let points = self
            .0
            .metrics
            .query(&self.0.store, target, &r.id, from, to, step)
            .await?;
        if !known && points.is_empty() {
            return Err(Error::NotFound(format!(
                "no {} with id {} and no history for it",
                if target == pb::MetricsTarget::Spawner {
                    "spawner"
                } else {
                    "instance"
                },
                r.id
            ))
            .into());
        }
        Ok(Response::new(pb::GetMetricsHistoryResponse {
            points: points.into_iter().map(|p| p.to_pb()).collect(),
            step_ms: u64::try_from(step).unwrap_or(0),
        }))
    }

    async fn get_master_history(
        &self,
        req: Request<pb::GetMasterHistoryRequest>,
    ) -> Result<Response<pb::GetMasterHistoryResponse>, Status> {
        let r = req.into_inner();
        let (from, to, step) = window(r.from_unix_ms, r.to_unix_ms, r.step_ms)?;
        let perf = &self.0.perf;
        // Buckets narrower than the sampling period would only repeat points.
        let step = step.max(perf.sample_ms());
        Ok(Response::new(pb::GetMasterHistoryResponse {
            points: perf.query(from, to, step),
            step_ms: u64::try_from(step).unwrap_or(0),
            sample_ms: u64::try_from(perf.sample_ms()).unwrap_or(0),
        }))
    }
}
