//! The server page's pure side: request, error and traffic rates from two successive stats
//! answers. Tested on the host.

use exile_api::v1 as pb;

/// A stats answer with the browser time it arrived at.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Browser clock, Unix ms.
    pub at_ms: i64,
    /// The answer.
    pub stats: pb::GetStatsResponse,
}

/// Per-second rates between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Calls per second.
    pub requests: f64,
    /// Failed calls per second.
    pub errors: f64,
    /// Request bytes per second.
    pub bytes_in: f64,
    /// Response bytes per second.
    pub bytes_out: f64,
}

/// Rates from `prev` to `cur`; None when they are not ordered or a counter went back (the
/// master restarted in between).
pub fn rates(prev: &Sample, cur: &Sample) -> Option<Rates> {
    let secs = (cur.at_ms - prev.at_ms) as f64 / 1000.0;
    if secs <= 0.0 {
        return None;
    }
    let (a, b) = (&prev.stats, &cur.stats);
    let per = |x: u64, y: u64| y.checked_sub(x).map(|d| d as f64 / secs);
    Some(Rates {
        requests: per(a.requests_total, b.requests_total)?,
        errors: per(a.errors_total, b.errors_total)?,
        bytes_in: per(a.bytes_in, b.bytes_in)?,
        bytes_out: per(a.bytes_out, b.bytes_out)?,
    })
}

/// Share of calls that failed since start, in percent.
pub fn error_share(s: &pb::GetStatsResponse) -> f64 {
    if s.requests_total == 0 {
        0.0
    } else {
        s.errors_total as f64 * 100.0 / s.requests_total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, req: u64, err: u64, bin: u64, bout: u64) -> Sample {
        Sample {
            at_ms,
            stats: pb::GetStatsResponse {
                requests_total: req,
                errors_total: err,
                bytes_in: bin,
                bytes_out: bout,
                ..Default::default()
            },
        }
    }

    #[test]
    fn rates_between_samples() {
        let r = rates(
            &sample(1_000, 10, 1, 100, 1_000),
            &sample(3_000, 30, 5, 300, 5_000),
        )
        .unwrap();
        assert_eq!(r.requests, 10.0);
        assert_eq!(r.errors, 2.0);
        assert_eq!(r.bytes_in, 100.0);
        assert_eq!(r.bytes_out, 2_000.0);
        // A restarted master's counters start again: no rate rather than a negative one.
        assert_eq!(
            rates(&sample(1_000, 10, 1, 0, 0), &sample(2_000, 3, 0, 0, 0)),
            None
        );
        assert_eq!(
            rates(&sample(2_000, 1, 0, 0, 0), &sample(2_000, 3, 0, 0, 0)),
            None
        );
        assert_eq!(error_share(&sample(0, 200, 5, 0, 0).stats), 2.5);
        assert_eq!(error_share(&sample(0, 0, 0, 0, 0).stats), 0.0);
    }
}
