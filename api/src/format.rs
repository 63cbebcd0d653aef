//! How figures read, in exilectl and the dashboard alike: bytes, durations, ages,
//! percentages, a host's CPU and timestamps. One home, so the same figure never reads two
//! ways (a host's CPU once showed as 128.5 % in a table and 64 % on a page).

use std::time::Duration;

use crate::v1;

/// `512 B`, `1.5 KiB`, `1.2 GiB`: binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // display only
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration as its two largest units: `3d 4h`, `2h 5m`, `5m 12s`, `42s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// How far `at_unix_ms` is from `now_unix_ms`: `5m 12s ago`, `just now` within a second,
/// `in 2h 0m` for a time ahead (rounded up, so a token made for an hour reads `in 1h 0m`),
/// `-` when unset (0).
pub fn ago(at_unix_ms: i64, now_unix_ms: i64) -> String {
    if at_unix_ms <= 0 {
        return "-".into();
    }
    let delta = now_unix_ms.saturating_sub(at_unix_ms);
    let secs = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
    if delta >= 1000 {
        format!("{} ago", duration(secs(delta)))
    } else if delta > -1000 {
        "just now".into()
    } else {
        format!(
            "in {}",
            duration(secs(delta.saturating_neg().saturating_add(999)))
        )
    }
}

/// `12.5%`.
pub fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

/// `used` as a percentage of `total`, within 0..=100; 0 when the total is unknown.
pub fn percent_of(used: f64, total: f64) -> f64 {
    if total <= 0.0 || !used.is_finite() {
        0.0
    } else {
        (used / total * 100.0).clamp(0.0, 100.0)
    }
}

/// A host's CPU use as a share of the whole machine, 0..=100. Spawners report processes the
/// way `top` does, 100 % per core, so a busy 2-core host reports 200.
pub fn cpu_share(r: &v1::Resources) -> f64 {
    let cores = f64::from(r.cpu_count.max(1));
    (r.cpu_percent / cores).clamp(0.0, 100.0)
}

/// A host's CPU for people: `64% · 2 cores`.
pub fn host_cpu(r: &v1::Resources) -> String {
    let n = r.cpu_count.max(1);
    let cores = if n == 1 { "core" } else { "cores" };
    format!("{:.0}% · {n} {cores}", cpu_share(r))
}

/// `2023-11-14T22:13:20.123Z` (UTC, RFC 3339); None for an unset time (0 or less).
pub fn rfc3339(unix_ms: i64) -> Option<String> {
    if unix_ms <= 0 {
        return None;
    }
    let (secs, ms) = (unix_ms.div_euclid(1000), unix_ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    ))
}

/// Like [`rfc3339`] but to the second, for sentences: `2023-11-14T22:13:20Z`.
pub fn rfc3339_secs(unix_ms: i64) -> Option<String> {
    rfc3339(unix_ms - unix_ms.rem_euclid(1000)).map(|s| s.replace(".000Z", "Z"))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses a duration such as `30s`, `15m`, `1h`, `7d`, `1h30m` or `500ms`; a bare number is seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration: use e.g. 30s, 15m, 1h or 7d".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration `{input}`: use e.g. 30s, 15m, 1h or 7d"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{input}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = |mult: u64| {
            n.checked_mul(mult)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("invalid duration `{input}`: too large"))
        };
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => secs(1)?,
            "m" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            "w" => secs(604_800)?,
            "" => {
                return Err(format!(
                    "invalid duration `{input}`: missing unit after {n} (ms, s, m, h, d or w)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{input}`: unknown unit `{other}` (ms, s, m, h, d or w)"
                ));
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration `{input}`: too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        for bad in [
            "",
            "s",
            "10x",
            "1h30",
            "abc",
            "-5s",
            "1.5h",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn figures_read_one_way() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(312), "5m 12s");
        assert_eq!(duration(7_500), "2h 5m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 120), "3d 4h");
        assert_eq!(ago(0, 10_000), "-");
        assert_eq!(ago(10_000, 10_500), "just now");
        assert_eq!(ago(1_000, 181_000), "3m 0s ago");
        assert_eq!(ago(7_200_000 + 1000, 1000), "in 2h 0m");
        assert_eq!(ago(1_000 + 3_599_500, 1000), "in 1h 0m");
        assert!(ago(1, i64::MAX).ends_with(" ago"), "no overflow");
        assert!(ago(i64::MAX, 1).starts_with("in "), "no overflow");
        assert_eq!(percent(12.49), "12.5%");
        assert_eq!(percent_of(1.0, 4.0), 25.0);
        assert_eq!(percent_of(5.0, 0.0), 0.0);
        assert_eq!(percent_of(f64::NAN, 1.0), 0.0);
        let host = v1::Resources {
            cpu_percent: 128.5,
            cpu_count: 2,
            ..Default::default()
        };
        assert!((cpu_share(&host) - 64.25).abs() < 1e-9);
        assert_eq!(host_cpu(&host), "64% · 2 cores");
        let unknown = v1::Resources {
            cpu_percent: 50.0,
            ..Default::default()
        };
        assert_eq!(host_cpu(&unknown), "50% · 1 core");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), None);
        assert_eq!(rfc3339(1).as_deref(), Some("1970-01-01T00:00:00.001Z"));
        assert_eq!(
            rfc3339(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        // Leap day and the day after.
        assert_eq!(
            rfc3339(951_782_400_000).as_deref(),
            Some("2000-02-29T00:00:00.000Z")
        );
        assert_eq!(
            rfc3339(951_868_799_999).as_deref(),
            Some("2000-02-29T23:59:59.999Z")
        );
        assert_eq!(
            rfc3339(4_107_542_400_000).as_deref(),
            Some("2100-03-01T00:00:00.000Z")
        );
        assert_eq!(
            rfc3339_secs(1_700_000_000_999).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }

    #[test]
    fn civil_matches_a_day_by_day_walk() {
        let month_len = |y: i64, m: i64| match m {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..200_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
