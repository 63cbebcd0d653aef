//! Rules about fleets and allocation that the master, the spawner and exilectl share: the
//! label that ties an instance to its fleet, fleet names, allocation limits, and the buffer
//! autoscaler's arithmetic.

use crate::v1;

/// The label every instance of a fleet carries, valued with the fleet's name. Labels under
/// `exile/` belong to the platform: a game cannot set them through the SDK.
pub const FLEET_LABEL: &str = "exile/fleet";

/// Prefix of label keys only the platform may set.
pub const RESERVED_LABEL_PREFIX: &str = "exile/";

/// Largest metadata blob an allocation may carry to the game.
pub const MAX_ALLOCATION_METADATA: usize = 4096;

/// Most replicas a fleet may ask for.
pub const MAX_FLEET_REPLICAS: u32 = 10_000;

/// How long an idempotency key returns the same allocation, milliseconds.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 5 * 60 * 1000;

/// True when a label key is reserved to the platform.
pub fn is_reserved_label(key: &str) -> bool {
    key.starts_with(RESERVED_LABEL_PREFIX)
}

/// Checks a fleet name: 1 to 63 ASCII letters, digits, '-' or '_', starting with a letter or
/// digit (it becomes a label value and appears in terminals and URLs).
pub fn check_fleet_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "fleet name {name:?}: use 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// The (max surge, max unavailable) a fleet rolls to a new build with: as its spec says, or
/// one extra instance at a time when both are 0 (or unset).
pub fn rollout_limits(r: Option<&v1::FleetRolloutStrategy>) -> (u32, u32) {
    match r {
        Some(r) if r.max_surge > 0 || r.max_unavailable > 0 => (r.max_surge, r.max_unavailable),
        _ => (1, 0),
    }
}

/// The replica count a buffer policy asks for, given how many instances are allocated, kept
/// within `[min, max]`. A percentage (when non-zero) is of the allocated count, rounded up.
pub fn buffer_replicas(policy: &v1::BufferPolicy, allocated: u32, min: u32, max: u32) -> u32 {
    let spare = if policy.buffer_percent > 0 {
        let pct = u64::from(policy.buffer_percent.min(100));
        u32::try_from((u64::from(allocated) * pct).div_ceil(100)).unwrap_or(u32::MAX)
    } else {
        policy.buffer_size
    };
    allocated.saturating_add(spare).clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_names() {
        assert!(check_fleet_name("ctf-eu_1").is_ok());
        for bad in ["", "-x", "a b", "x\u{1b}[2J", &"a".repeat(64), "a/b"] {
            assert!(check_fleet_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn buffer_arithmetic() {
        let size = |n| v1::BufferPolicy {
            buffer_size: n,
            buffer_percent: 0,
        };
        // Allocate 8 of 10 with a buffer of 5: 13.
        assert_eq!(buffer_replicas(&size(5), 8, 2, 50), 13);
        // Nothing allocated: the buffer, but never below min.
        assert_eq!(buffer_replicas(&size(5), 0, 7, 50), 7);
        assert_eq!(buffer_replicas(&size(5), 0, 2, 50), 5);
        // Never above max.
        assert_eq!(buffer_replicas(&size(5), 48, 2, 50), 50);
        let pct = v1::BufferPolicy {
            buffer_size: 99,
            buffer_percent: 10,
        };
        // 10 % of 11 rounds up to 2; the size is ignored when a percentage is given.
        assert_eq!(buffer_replicas(&pct, 11, 0, 100), 13);
        assert_eq!(buffer_replicas(&pct, 0, 0, 100), 0);
    }

    #[test]
    fn reserved_labels() {
        assert!(is_reserved_label(FLEET_LABEL));
        assert!(!is_reserved_label("mode"));
    }

    #[test]
    fn rollouts_default_to_one_extra_instance_at_a_time() {
        assert_eq!(rollout_limits(None), (1, 0));
        let r = |max_surge, max_unavailable| v1::FleetRolloutStrategy {
            max_surge,
            max_unavailable,
        };
        assert_eq!(rollout_limits(Some(&r(0, 0))), (1, 0));
        assert_eq!(rollout_limits(Some(&r(0, 2))), (0, 2));
        assert_eq!(rollout_limits(Some(&r(3, 1))), (3, 1));
    }
}
