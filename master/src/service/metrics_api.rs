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

/// Latest time a range may name: the end of year 9999. With both ends in
/// `0..=LATEST_MS`, no sum or difference of the window's figures can overflow.
const LATEST_MS: i64 = 253_402_300_799_999;

/// The range `[from, to]` and bucket width a history request asks for, with the defaults
/// filled in (the last hour; about 300 points) and the bounds checked.
fn window(from_ms: i64, to_ms: i64, step_ms: u64) -> Result<(i64, i64, i64), Status> {
    let bad = |m: &str| -> Status { Error::InvalidArgument(m.into()).into() };
    if !(0..=LATEST_MS).contains(&from_ms) || !(0..=LATEST_MS).contains(&to_ms) {
        return Err(bad(
            "from_unix_ms, to_unix_ms: must be Unix times in milliseconds between 1970 and 9999 (0: the default)",
        ));
    }
    let to = if to_ms == 0 { now_unix_ms() } else { to_ms };
    let from = if from_ms == 0 {
        to.saturating_sub(3_600_000).max(0)
    } else {
        from_ms
    };
    if from >= to {
        return Err(bad("from_unix_ms: must be before to_unix_ms"));
    }
    let span = to - from;
    if span > MAX_RANGE_MS {
        return Err(bad("range: at most 31 days per call"));
    }
    let auto = (span / 300).max(1000);
    let step = match i64::try_from(step_ms) {
        Ok(0) => auto,
        // Never more than 10,000 points in one answer.
        Ok(s) => s.max((span + 9_999) / 10_000).max(1),
        Err(_) => return Err(bad("step_ms: too large")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_bounds_and_errors() {
        let now = now_unix_ms();
        let (from, to, step) = window(0, 0, 0).unwrap();
        assert!(to >= now && to - from == 3_600_000, "{from} {to}");
        assert_eq!(step, 12_000);
        assert!(window(-1, 0, 0).is_err());
        assert!(window(0, i64::MIN, 0).is_err());
        assert!(window(i64::MIN, i64::MAX, 0).is_err());
        assert!(window(LATEST_MS + 1, 0, 0).is_err());
        assert!(window(2_000, 1_000, 0).is_err());
        assert!(window(1, 1 + MAX_RANGE_MS + 1, 0).is_err());
        assert!(window(1_000, 2_000, u64::MAX).is_err());
        // Ten thousand points at most.
        assert_eq!(
            window(1, 1 + MAX_RANGE_MS, 1).unwrap().2,
            MAX_RANGE_MS / 10_000
        );
        // A `to` near the epoch still gets a range that starts at it.
        assert_eq!(window(0, 5, 0).unwrap(), (0, 5, 1000));
    }

    proptest! {
        /// Any figures at all: an answer or an error, never a panic (debug builds check
        /// overflow), and an accepted window is ordered, bounded and has a positive step.
        #[test]
        fn any_request_is_answered_or_refused(from in any::<i64>(), to in any::<i64>(), step in any::<u64>()) {
            if let Ok((f, t, s)) = window(from, to, step) {
                prop_assert!(0 <= f && f < t && t - f <= MAX_RANGE_MS);
                prop_assert!(s >= 1);
                prop_assert!((t - f) / s <= 10_000);
            }
        }

        /// Extreme but valid ends near both limits.
        #[test]
        fn ranges_at_the_limits(end in (LATEST_MS - MAX_RANGE_MS)..=LATEST_MS, len in 1..=MAX_RANGE_MS, step in any::<u64>()) {
            let (f, t, s) = window(end - len, end, step % (u64::MAX / 2)).unwrap();
            prop_assert_eq!((f, t), (end - len, end));
            prop_assert!(s >= 1);
        }
    }
}
