//! The reconciler's decisions, from members to actions.

use std::collections::{HashMap, HashSet};

use super::*;
use pb::InstanceState as S;

fn m(id: &str, spawner: &str, state: S) -> Member {
    Member {
        id: id.into(),
        spawner_id: spawner.into(),
        state,
        unknown: false,
        since: 0,
        build_name: "g".into(),
        build_version: "1".into(),
    }
}

fn loads(v: &[(&str, u32, u32)]) -> HashMap<String, SpawnerLoad> {
    v.iter()
        .map(|(id, n, cap)| {
            (
                (*id).to_owned(),
                SpawnerLoad {
                    instances: *n,
                    capacity: *cap,
                },
            )
        })
        .collect()
}

struct T {
    removing: HashSet<String>,
    loads: HashMap<String, SpawnerLoad>,
}

impl T {
    fn new() -> Self {
        T {
            removing: HashSet::new(),
            loads: loads(&[("a", 5, 10), ("b", 2, 10)]),
        }
    }
    fn ctx(&self, replicas: u32) -> Context<'_> {
        Context {
            replicas,
            target: Target::Any,
            limits: Limits::new(0, 0),
            packed: false,
            now: 100_000,
            grace_ms: 10_000,
            counted_from: 0,
            removing: &self.removing,
            rollout_running: false,
            loads: &self.loads,
        }
    }
}

#[test]
fn short_fleets_grow_and_dead_instances_are_replaced_and_removed() {
    let t = T::new();
    let ms = vec![
        m("1", "a", S::Ready),
        m("2", "a", S::Crashed),
        m("3", "b", S::Stopping),
    ];
    let d = decide(&t.ctx(3), &ms);
    assert_eq!(d.spawn, 2);
    assert_eq!(d.remove, vec!["2".to_owned()]);
    assert_eq!(d.status.current, 1);
}

#[test]
fn unknown_instances_count_until_the_grace_then_are_replaced() {
    let t = T::new();
    let mut lost = m("1", "a", S::Ready);
    lost.unknown = true;
    lost.since = 95_000;
    let ms = vec![lost.clone(), m("2", "b", S::Ready)];
    let d = decide(&t.ctx(2), &ms);
    assert_eq!((d.spawn, d.status.unknown), (0, 1));
    lost.since = 80_000;
    let d = decide(&t.ctx(2), &[lost.clone(), m("2", "b", S::Ready)]);
    assert_eq!((d.spawn, d.status.unknown), (1, 0));
    // Never removed while unreachable.
    assert!(d.remove.is_empty());
    // After a master restart the grace starts at the restart, not at the stored time.
    let mut ctx = t.ctx(2);
    ctx.counted_from = 99_000;
    let d = decide(&ctx, &[lost, m("2", "b", S::Ready)]);
    assert_eq!(d.spawn, 0);
}

#[test]
fn surplus_goes_from_ready_never_allocated() {
    let t = T::new();
    let ms = vec![
        m("1", "a", S::Allocated),
        m("2", "a", S::Allocated),
        m("3", "a", S::Ready),
        m("4", "b", S::Ready),
        m("5", "b", S::Starting),
    ];
    let d = decide(&t.ctx(2), &ms);
    assert_eq!(d.spawn, 0);
    // Not-ready first, then the Ready ones; the Allocated two stay although they are surplus.
    assert_eq!(
        d.remove,
        vec!["5".to_owned(), "3".to_owned(), "4".to_owned()]
    );
    let d = decide(&t.ctx(0), &ms);
    assert_eq!(d.remove.len(), 3);
}

#[test]
fn packed_removes_from_the_least_packed_spawner_first() {
    let t = T::new();
    let ms = vec![m("1", "a", S::Ready), m("2", "b", S::Ready)];
    let mut ctx = t.ctx(1);
    ctx.packed = true;
    assert_eq!(decide(&ctx, &ms).remove, vec!["2".to_owned()]);
    ctx.packed = false;
    assert_eq!(decide(&ctx, &ms).remove, vec!["1".to_owned()]);
}

#[test]
fn removals_under_way_are_not_counted_twice() {
    let mut t = T::new();
    t.removing.insert("1".into());
    let ms = vec![m("1", "a", S::Ready), m("2", "b", S::Ready)];
    let d = decide(&t.ctx(2), &ms);
    assert_eq!(d.spawn, 1);
    assert!(d.remove.is_empty());
}

#[test]
fn a_pinned_build_rolls_one_at_a_time_keeping_allocated() {
    let t = T::new();
    let mut ctx = t.ctx(2);
    ctx.target = Target::Pinned("g", "2");
    let old = vec![m("1", "a", S::Ready), m("2", "b", S::Allocated)];
    // Surge one new instance first.
    let d = decide(&ctx, &old);
    assert_eq!((d.spawn, d.remove.len()), (1, 0));
    // While it starts, nothing serving is taken away.
    let mut new = m("3", "b", S::Starting);
    new.build_version = "2".into();
    let mut ms = old.clone();
    ms.push(new.clone());
    let d = decide(&ctx, &ms);
    assert_eq!((d.spawn, d.remove.len()), (0, 0));
    // Once it serves, the old Ready one goes; the Allocated old one stays.
    new.state = S::Ready;
    let ms = vec![old[0].clone(), old[1].clone(), new];
    let d = decide(&ctx, &ms);
    assert_eq!(d.remove, vec!["1".to_owned()]);
    // A running build rollout of the same name removes old instances itself.
    ctx.rollout_running = true;
    assert!(decide(&ctx, &ms).remove.is_empty());
}

fn v(id: &str, spawner: &str, state: S, version: &str) -> Member {
    let mut x = m(id, spawner, state);
    x.build_version = version.into();
    x
}

#[test]
fn a_roll_stays_within_surge_and_unavailable_and_leaves_allocated_alone() {
    let t = T::new();
    let mut ctx = t.ctx(6);
    ctx.target = Target::Pinned("g", "2");
    ctx.limits = Limits::new(2, 1);
    let mut ms: Vec<Member> = (0..4)
        .map(|i| v(&format!("o{i}"), "a", S::Ready, "1"))
        .collect();
    ms.push(v("a1", "b", S::Allocated, "1"));
    ms.push(v("a2", "b", S::Allocated, "1"));
    // Two extra on the new build, and one old Ready may go (6 serving, at least 5 stay).
    let d = decide(&ctx, &ms);
    assert_eq!(d.spawn, 2);
    assert_eq!(d.remove.len(), 1);
    assert_eq!(d.status.outdated, 6);
    assert!(!d.remove.iter().any(|id| id.starts_with('a')));
    // Played out to the end, with new ones serving at once: never fewer than 5 serving,
    // never more than 8 counted, and the Allocated ones never touched.
    let mut next = 0;
    for _ in 0..20 {
        let d = decide(&ctx, &ms);
        assert!(!d.remove.iter().any(|id| id.starts_with('a')), "{d:?}");
        ms.retain(|m| !d.remove.contains(&m.id));
        for _ in 0..d.spawn {
            ms.push(v(&format!("n{next}"), "b", S::Ready, "2"));
            next += 1;
        }
        let serving = ms
            .iter()
            .filter(|m| matches!(m.state, S::Ready | S::Allocated))
            .count();
        assert!(serving >= 5, "{serving} serving: {ms:?}");
        assert!(ms.len() <= 8, "{} counted", ms.len());
    }
    let new = ms.iter().filter(|m| m.build_version == "2").count();
    assert_eq!(new, 4, "{ms:?}");
    assert_eq!(ms.len(), 6, "{ms:?}");
    // One match ends: that old one is Ready again and moves too.
    ms.iter_mut().find(|m| m.id == "a1").unwrap().state = S::Ready;
    let d = decide(&ctx, &ms);
    assert_eq!(d.spawn, 1);
}

#[test]
fn a_following_fleet_rolls_where_the_active_version_changed() {
    let t = T::new();
    let mut ctx = t.ctx(2);
    let active: HashMap<String, (String, String)> = [
        ("a".to_owned(), ("g".to_owned(), "2".to_owned())),
        ("b".to_owned(), ("g".to_owned(), "1".to_owned())),
    ]
    .into();
    ctx.target = Target::PerSpawner(&active);
    let ms = vec![v("1", "a", S::Ready, "1"), v("2", "b", S::Ready, "1")];
    let d = decide(&ctx, &ms);
    // Only the one on spawner a is outdated; one extra starts first.
    assert_eq!(d.status.outdated, 1);
    assert_eq!((d.spawn, d.remove.len()), (1, 0));
}

#[test]
fn a_removal_not_yet_stopping_counts_against_the_surge() {
    let mut t = T::new();
    t.removing.insert("o0".into());
    let mut ctx = t.ctx(6);
    ctx.target = Target::Pinned("g", "2");
    ctx.limits = Limits::new(1, 1);
    // o0's removal was sent, it is still Ready; one new one starts: 7 there already.
    let mut ms: Vec<Member> = (0..6)
        .map(|i| v(&format!("o{i}"), "a", S::Ready, "1"))
        .collect();
    ms.push(v("n0", "b", S::Starting, "2"));
    let d = decide(&ctx, &ms);
    assert_eq!(d.spawn, 0, "{d:?}");
    assert!(d.remove.is_empty(), "5 serving already: {d:?}");
    // Once it is stopping it is on its way out: one more new one may start.
    ms[0].state = S::Stopping;
    let d = decide(&ctx, &ms);
    assert_eq!(d.spawn, 1, "{d:?}");
}
