//! The surge/unavailable arithmetic of a rolling update of a counted set (a fleet moving to
//! a new build): how many new instances may be started and how many old serving ones may be
//! taken away now. Pure; the fleet reconciler feeds it counts and acts on the answer.
//!
//! Rules: never more than `replicas + max_surge` instances counted, never fewer than
//! `replicas - max_unavailable` serving (Ready or Allocated), and old instances that are
//! held (Allocated) are never touched: they keep their place among the replicas until they
//! are Ready again, so only `replicas - held` new ones are wanted.

/// How far a rolling update may stretch the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most instances above the replica count.
    pub max_surge: u32,
    /// Most instances below the replica count out of service.
    pub max_unavailable: u32,
}

impl Limits {
    /// The limits a fleet spec asks for (both 0 or unset: one extra instance at a time).
    pub fn of(r: Option<&exile_api::v1::FleetRolloutStrategy>) -> Self {
        let (max_surge, max_unavailable) = exile_api::fleet::rollout_limits(r);
        Limits {
            max_surge,
            max_unavailable,
        }
    }

    /// The limits given; both 0 means one extra instance at a time.
    #[cfg(test)]
    pub fn new(max_surge: u32, max_unavailable: u32) -> Self {
        Limits::of(Some(&exile_api::v1::FleetRolloutStrategy {
            max_surge,
            max_unavailable,
        }))
    }
}

/// The set as it stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Replicas wanted.
    pub replicas: u32,
    /// Instances counted (any version, serving or starting or briefly lost).
    pub current: u32,
    /// Serving instances (Ready or Allocated, any version).
    pub serving: u32,
    /// Counted instances on the new build.
    pub new: u32,
    /// Old instances that may not be touched (Allocated).
    pub held: u32,
}

/// What may be done now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// New instances to start.
    pub spawn: u32,
    /// Old serving (Ready) instances that may be taken away.
    pub remove_serving: u32,
    /// New instances beyond what is wanted (old held ones came back as replicas).
    pub surplus_new: u32,
}

/// One step of a rolling update.
pub fn step(l: Limits, c: Counts) -> Step {
    let ceiling = c.replicas.saturating_add(l.max_surge);
    let floor = c.replicas.saturating_sub(l.max_unavailable);
    let want_new = c.replicas.saturating_sub(c.held);
    Step {
        spawn: ceiling
            .saturating_sub(c.current)
            .min(want_new.saturating_sub(c.new)),
        remove_serving: c.serving.saturating_sub(floor),
        surplus_new: c.new.saturating_sub(want_new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a rollout of `replicas` old serving instances (`held` of them Allocated)
    /// where every started instance serves by the next step; returns the fewest serving
    /// and most counted seen, and the steps taken.
    fn simulate(l: Limits, replicas: u32, held: u32) -> (u32, u32, u32) {
        let (mut old_ready, mut new_starting, mut new_ready) = (replicas - held, 0, 0);
        let (mut fewest, mut most, mut steps) = (replicas, replicas, 0);
        while old_ready > 0 || new_starting > 0 || new_ready + held < replicas {
            steps += 1;
            assert!(
                steps < 100,
                "no progress: {old_ready} {new_starting} {new_ready}"
            );
            // Started ones serve now.
            new_ready += new_starting;
            new_starting = 0;
            let c = Counts {
                replicas,
                current: old_ready + held + new_ready,
                serving: old_ready + held + new_ready,
                new: new_ready,
                held,
            };
            let s = step(l, c);
            let gone = s.remove_serving.min(old_ready);
            old_ready -= gone;
            new_starting += s.spawn;
            fewest = fewest.min(old_ready + held + new_ready);
            most = most.max(old_ready + held + new_ready + new_starting);
        }
        assert_eq!(new_ready + held, replicas);
        (fewest, most, steps)
    }

    #[test]
    fn bounds_hold_and_the_roll_ends() {
        for (surge, unavailable) in [(1, 0), (0, 1), (2, 1), (3, 3), (0, 6)] {
            let l = Limits::new(surge, unavailable);
            for held in [0, 2] {
                let (fewest, most, _) = simulate(l, 6, held);
                assert!(fewest >= 6 - unavailable, "{l:?} held {held}: {fewest}");
                assert!(most <= 6 + l.max_surge, "{l:?} held {held}: {most}");
            }
        }
    }

    #[test]
    fn more_room_rolls_in_fewer_steps() {
        let (_, _, slow) = simulate(Limits::new(1, 0), 6, 0);
        let (_, _, fast) = simulate(Limits::new(3, 3), 6, 0);
        assert!(fast < slow, "{fast} >= {slow}");
    }

    #[test]
    fn held_instances_keep_their_place() {
        // 6 replicas, 2 old ones Allocated, 4 new Ready: done, nothing more.
        let c = Counts {
            replicas: 6,
            current: 6,
            serving: 6,
            new: 4,
            held: 2,
        };
        assert_eq!(step(Limits::new(1, 1), c).spawn, 0);
        // One of them is Ready again (so no longer held): one more new one may start.
        let c = Counts { held: 1, ..c };
        assert_eq!(step(Limits::new(1, 1), c).spawn, 1);
        // Both released while 6 new are there: none is surplus; one fewer replica: one is.
        let c = Counts {
            new: 6,
            held: 0,
            current: 8,
            serving: 8,
            ..c
        };
        assert_eq!(step(Limits::new(1, 1), c).surplus_new, 0);
        let c = Counts { replicas: 5, ..c };
        assert_eq!(step(Limits::new(1, 1), c).surplus_new, 1);
    }
}
