//! SystemService: master statistics and the audit log.

use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::error::Error;
use crate::store::AuditFilter;
use exile_api::v1 as pb;
use exile_api::v1::system_service_server::SystemService;

/// Handlers of SystemService.
pub struct SystemApi(pub SharedRef);

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn own_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Builds the stats answer (also used by /metrics).
pub fn stats(shared: &super::Shared) -> pb::GetStatsResponse {
    let c = shared.registry.counts();
    pb::GetStatsResponse {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: shared.started.elapsed().as_secs(),
        spawners_total: c.spawners_total,
        spawners_online: c.spawners_online,
        instances_total: c.instances_total,
        instances_running: c.instances_running,
        requests_total: shared.counters.requests.load(Ordering::Relaxed),
        errors_total: shared.counters.errors.load(Ordering::Relaxed),
        memory_bytes: own_rss_bytes(),
        players_total: c.players,
        open_links: c.links,
        watch_subscribers: c.watchers,
        bytes_in: shared.counters.bytes_in.load(Ordering::Relaxed),
        bytes_out: shared.counters.bytes_out.load(Ordering::Relaxed),
    }
}

#[tonic::async_trait]
impl SystemService for SystemApi {
    async fn get_stats(
        &self,
        _req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(stats(&self.0)))
    }

    async fn list_errors(
        &self,
        req: Request<pb::ListErrorsRequest>,
    ) -> Result<Response<pb::ListErrorsResponse>, Status> {
        let r = req.into_inner();
        let counters = &self.0.counters;
        Ok(Response::new(pb::ListErrorsResponse {
            errors: counters.recent_errors(&r),
            capacity: u32::try_from(crate::access::RECENT_ERRORS).unwrap_or(u32::MAX),
            errors_total: counters.errors.load(Ordering::Relaxed),
        }))
    }

    async fn list_audit_log(
        &self,
        req: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => u64::from(n.min(1000)),
        };
        let long = |s: &str| s.chars().count() > 256;
        if long(&r.actor) || long(&r.action) || long(&r.target) || long(&r.outcome) {
            return Err(Error::InvalidArgument(
                "audit filters: at most 256 characters each".into(),
            )
            .into());
        }
        if r.from_unix_ms > 0 && r.to_unix_ms > 0 && r.from_unix_ms >= r.to_unix_ms {
            return Err(Error::InvalidArgument(
                "audit filters: the time range ends before it starts".into(),
            )
            .into());
        }
        let filter = AuditFilter {
            actor: r.actor.trim().to_owned(),
            action: r.action.trim().to_owned(),
            target: r.target.trim().to_owned(),
            outcome: r.outcome.trim().to_owned(),
            from_unix_ms: r.from_unix_ms.max(0),
            to_unix_ms: r.to_unix_ms.max(0),
        };
        let rows = self.0.store.list_audit(limit, r.before_id, &filter).await?;
        let entries = rows
            .into_iter()
            .map(|a| pb::AuditEntry {
                id: a.id,
                at_unix_ms: a.at,
                actor: a.actor,
                action: a.action,
                target: a.target,
                result: a.result,
                detail: a.detail,
                peer: a.peer,
            })
            .collect();
        Ok(Response::new(pb::ListAuditLogResponse { entries }))
    }
}
