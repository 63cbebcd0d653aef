//! Agones counters and lists as an instance keeps them: the declared set a build manifest
//! gives (`[agones.counters.NAME]`, `[agones.lists.NAME]`), its bounds, and the rules of
//! Agones' beta SDK calls that change them. The master checks manifests with it, the spawner
//! applies the game's calls with it, so both read the same rules.
//!
//! The rules follow Agones' SDK server: a counter's count stays within `[0, capacity]`; a
//! list holds distinct values, at most `capacity` (0 to [`MAX_LIST_CAPACITY`]) of them. An
//! update that would break a rule is refused whole and changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most counters one build may declare.
pub const MAX_COUNTERS: usize = 16;
/// Most lists one build may declare.
pub const MAX_LISTS: usize = 16;
/// Longest counter or list name, bytes.
pub const MAX_NAME: usize = 63;
/// Highest list capacity, Agones' own bound.
pub const MAX_LIST_CAPACITY: i64 = 1000;
/// Longest list value, bytes.
pub const MAX_VALUE: usize = 128;
/// Capacity of a counter or list whose declaration names none, as Agones defaults it.
pub const DEFAULT_CAPACITY: i64 = 1000;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Value, 0 to `capacity`.
    pub count: i64,
    /// Highest value, at least 0.
    pub capacity: i64,
}

/// One list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// Most values it may hold, 0 to [`MAX_LIST_CAPACITY`].
    pub capacity: i64,
    /// Distinct values, in the order they were added.
    pub values: Vec<String>,
}

/// An instance's counters and lists by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Counters.
    #[serde(default)]
    pub counters: BTreeMap<String, Counter>,
    /// Lists.
    #[serde(default)]
    pub lists: BTreeMap<String, List>,
}

/// A change to a counter, as Agones' UpdateCounter carries it; the parts apply in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterUpdate {
    /// New capacity.
    pub capacity: Option<i64>,
    /// New count.
    pub count: Option<i64>,
    /// Added to the count.
    pub diff: i64,
}

/// A change to a list, as Agones' UpdateList carries it (the fields its mask names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListUpdate {
    /// New capacity.
    pub capacity: Option<i64>,
    /// New values (duplicates dropped, then those past the capacity).
    pub values: Option<Vec<String>>,
}

impl ListUpdate {
    /// The update a field mask selects from `capacity` and `values`: the paths `capacity` and
    /// `values` take them, `name` (the list's key, never changed) is ignored, any other path
    /// is refused.
    pub fn from_mask<S: AsRef<str>>(
        paths: &[S],
        capacity: i64,
        values: Vec<String>,
    ) -> Result<Self, CountsError> {
        let mut update = Self::default();
        let mut values = Some(values);
        for path in paths {
            match path.as_ref() {
                "capacity" => update.capacity = Some(capacity),
                "values" => {
                    if let Some(v) = values.take() {
                        update.values = Some(v);
                    }
                }
                "name" => {}
                other => {
                    return Err(CountsError::InvalidArgument(format!(
                        "update_mask: {other:?} is not a field of a list; use capacity and/or values"
                    )));
                }
            }
        }
        Ok(update)
    }
}

/// Why a counter or list call is refused, in the gRPC terms Agones documents for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountsError {
    /// No counter or list of that name, or no such value in the list.
    NotFound(String),
    /// The count, a capacity or the list's size would leave its bounds.
    OutOfRange(String),
    /// The value is in the list already.
    AlreadyExists(String),
    /// The request itself is malformed.
    InvalidArgument(String),
}

impl std::fmt::Display for CountsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(m)
            | Self::OutOfRange(m)
            | Self::AlreadyExists(m)
            | Self::InvalidArgument(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CountsError {}

/// Checks a counter or list name: 1 to [`MAX_NAME`] letters, digits, '.', '_' or '-' (it
/// travels in REST paths).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if crate::limits::is_plain_name(name, MAX_NAME) {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must be 1 to {MAX_NAME} letters, digits, '.', '_' or '-'"
        ))
    }
}

/// Checks a list value: 1 to [`MAX_VALUE`] bytes without control characters.
pub fn check_value(list: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_VALUE || value.chars().any(char::is_control) {
        return Err(format!(
            "list {list}: value {value:?} must be 1 to {MAX_VALUE} bytes without control characters"
        ));
    }
    Ok(())
}

fn check_list_capacity(list: &str, capacity: i64) -> Result<(), CountsError> {
    if (0..=MAX_LIST_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(CountsError::OutOfRange(format!(
            "list {list}: capacity must be 0 to {MAX_LIST_CAPACITY}, not {capacity}"
        )))
    }
}

fn counter_not_found(name: &str) -> CountsError {
    CountsError::NotFound(format!(
        "no counter {name:?}: the build declares its counters in exile-build.toml ([agones.counters.NAME])"
    ))
}

fn list_not_found(name: &str) -> CountsError {
    CountsError::NotFound(format!(
        "no list {name:?}: the build declares its lists in exile-build.toml ([agones.lists.NAME])"
    ))
}

impl Counts {
    /// Whether there are neither counters nor lists.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.lists.is_empty()
    }

    /// Checks a declared set (a manifest's): how many, names, and every counter and list
    /// within its bounds.
    pub fn check(&self) -> Result<(), String> {
        if self.counters.len() > MAX_COUNTERS {
            return Err(format!("agones.counters: at most {MAX_COUNTERS}"));
        }
        if self.lists.len() > MAX_LISTS {
            return Err(format!("agones.lists: at most {MAX_LISTS}"));
        }
        for (name, c) in &self.counters {
            check_name("agones.counters: counter", name)?;
            if c.capacity < 0 || !(0..=c.capacity).contains(&c.count) {
                return Err(format!(
                    "agones.counters.{name}: count must be 0 to capacity and capacity at least 0, not count {} and capacity {}",
                    c.count, c.capacity
                ));
            }
        }
        for (name, l) in &self.lists {
            check_name("agones.lists: list", name)?;
            check_list_capacity(name, l.capacity).map_err(|e| format!("agones.lists.{e}"))?;
            if l.values.len() as u64 > l.capacity.unsigned_abs() {
                return Err(format!(
                    "agones.lists.{name}: {} values do not fit its capacity of {}",
                    l.values.len(),
                    l.capacity
                ));
            }
            for (i, v) in l.values.iter().enumerate() {
                check_value(name, v).map_err(|e| format!("agones.lists.{e}"))?;
                if l.values[..i].contains(v) {
                    return Err(format!("agones.lists.{name}: {v:?} is listed twice"));
                }
            }
        }
        Ok(())
    }

    /// The counter `name`.
    pub fn counter(&self, name: &str) -> Result<Counter, CountsError> {
        self.counters
            .get(name)
            .copied()
            .ok_or_else(|| counter_not_found(name))
    }

    /// The list `name`.
    pub fn list(&self, name: &str) -> Result<&List, CountsError> {
        self.lists.get(name).ok_or_else(|| list_not_found(name))
    }

    /// Applies `update` to counter `name` (capacity, then count, then difference) and returns
    /// the counter; on a refusal nothing changes. A capacity lowered below the count brings the
    /// count down to it.
    pub fn update_counter(
        &mut self,
        name: &str,
        update: CounterUpdate,
    ) -> Result<Counter, CountsError> {
        if update == CounterUpdate::default() {
            return Err(CountsError::InvalidArgument(format!(
                "counter {name}: the update sets nothing; give count, capacity or a non-zero countDiff"
            )));
        }
        let mut c = self.counter(name)?;
        if let Some(capacity) = update.capacity {
            if capacity < 0 {
                return Err(CountsError::OutOfRange(format!(
                    "counter {name}: capacity must be at least 0, not {capacity}"
                )));
            }
            c.capacity = capacity;
        }
        let out_of_range = |count: i128, capacity: i64| {
            CountsError::OutOfRange(format!(
                "counter {name}: count must be 0 to its capacity {capacity}, not {count}"
            ))
        };
        if let Some(count) = update.count {
            if !(0..=c.capacity).contains(&count) {
                return Err(out_of_range(i128::from(count), c.capacity));
            }
            c.count = count;
        }
        if update.diff != 0 {
            // In i128 so that no difference overflows before the range check.
            let count = i128::from(c.count) + i128::from(update.diff);
            if !(0..=i128::from(c.capacity)).contains(&count) {
                return Err(out_of_range(count, c.capacity));
            }
            c.count = i64::try_from(count).map_err(|_| out_of_range(count, c.capacity))?;
        }
        c.count = c.count.clamp(0, c.capacity);
        self.counters.insert(name.to_owned(), c);
        Ok(c)
    }

    /// Applies `update` to list `name` and returns the list; on a refusal nothing changes.
    /// New values lose their duplicates, then whatever does not fit the capacity, as in Agones.
    pub fn update_list(&mut self, name: &str, update: ListUpdate) -> Result<List, CountsError> {
        let mut list = self.list(name)?.clone();
        if let Some(capacity) = update.capacity {
            check_list_capacity(name, capacity)?;
            list.capacity = capacity;
        }
        if let Some(values) = update.values {
            let mut distinct: Vec<String> = Vec::with_capacity(values.len().min(1000));
            for v in values {
                check_value(name, &v).map_err(CountsError::InvalidArgument)?;
                if !distinct.contains(&v) {
                    distinct.push(v);
                }
            }
            list.values = distinct;
        }
        let fit = usize::try_from(list.capacity).unwrap_or(0);
        list.values.truncate(fit);
        self.lists.insert(name.to_owned(), list.clone());
        Ok(list)
    }

    /// Appends `value` to list `name` and returns the list.
    pub fn add_list_value(&mut self, name: &str, value: &str) -> Result<List, CountsError> {
        let list = self.list(name)?;
        check_value(name, value).map_err(CountsError::InvalidArgument)?;
        if list.values.iter().any(|v| v == value) {
            return Err(CountsError::AlreadyExists(format!(
                "list {name}: {value:?} is in it already"
            )));
        }
        if list.values.len() as u64 >= list.capacity.unsigned_abs() {
            return Err(CountsError::OutOfRange(format!(
                "list {name}: full at its capacity of {}",
                list.capacity
            )));
        }
        let list = self
            .lists
            .get_mut(name)
            .ok_or_else(|| list_not_found(name))?;
        list.values.push(value.to_owned());
        Ok(list.clone())
    }

    /// Removes `value` from list `name` and returns the list.
    pub fn remove_list_value(&mut self, name: &str, value: &str) -> Result<List, CountsError> {
        let list = self
            .lists
            .get_mut(name)
            .ok_or_else(|| list_not_found(name))?;
        let Some(at) = list.values.iter().position(|v| v == value) else {
            return Err(CountsError::NotFound(format!(
                "list {name}: {value:?} is not in it"
            )));
        };
        list.values.remove(at);
        Ok(list.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts() -> Counts {
        Counts {
            counters: [(
                "rooms".to_owned(),
                Counter {
                    count: 1,
                    capacity: 10,
                },
            )]
            .into(),
            lists: [(
                "players".to_owned(),
                List {
                    capacity: 2,
                    values: vec!["p1".into()],
                },
            )]
            .into(),
        }
    }

    fn code(e: &CountsError) -> &'static str {
        match e {
            CountsError::NotFound(_) => "NOT_FOUND",
            CountsError::OutOfRange(_) => "OUT_OF_RANGE",
            CountsError::AlreadyExists(_) => "ALREADY_EXISTS",
            CountsError::InvalidArgument(_) => "INVALID_ARGUMENT",
        }
    }

    fn diff(diff: i64) -> CounterUpdate {
        CounterUpdate {
            diff,
            ..Default::default()
        }
    }

    #[test]
    fn counters_move_within_zero_and_capacity_and_refusals_change_nothing() {
        let mut c = counts();
        assert_eq!(c.update_counter("rooms", diff(4)).unwrap().count, 5);
        assert_eq!(c.update_counter("rooms", diff(-5)).unwrap().count, 0);
        let e = c.update_counter("rooms", diff(-1)).unwrap_err();
        assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        let e = c.update_counter("rooms", diff(11)).unwrap_err();
        assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        let e = c.update_counter("rooms", diff(i64::MAX)).unwrap_err();
        assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        assert_eq!(
            c.counter("rooms").unwrap().count,
            0,
            "refusals change nothing"
        );
        let set = |count, capacity| CounterUpdate {
            count,
            capacity,
            diff: 0,
        };
        // Capacity first, so one request may raise it and set a count above the old one.
        let r = c.update_counter("rooms", set(Some(11), Some(12))).unwrap();
        assert_eq!((r.count, r.capacity), (11, 12));
        // A lower capacity brings the count down to it.
        let r = c.update_counter("rooms", set(None, Some(3))).unwrap();
        assert_eq!((r.count, r.capacity), (3, 3));
        let e = c.update_counter("rooms", set(Some(4), None)).unwrap_err();
        assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        let e = c.update_counter("rooms", set(None, Some(-1))).unwrap_err();
        assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        let e = c.update_counter("rooms", set(None, None)).unwrap_err();
        assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");
        let e = c.update_counter("games", diff(1)).unwrap_err();
        assert_eq!(code(&e), "NOT_FOUND", "{e}");
        assert!(e.to_string().contains("[agones.counters.NAME]"), "{e}");
        assert_eq!(code(&c.counter("games").unwrap_err()), "NOT_FOUND");
    }

    #[test]
    fn lists_hold_distinct_values_up_to_their_capacity() {
        let mut c = counts();
        assert_eq!(
            c.add_list_value("players", "p2").unwrap().values,
            ["p1", "p2"]
        );
        let e = c.add_list_value("players", "p2").unwrap_err();
        assert_eq!(code(&e), "ALREADY_EXISTS", "{e}");
        let e = c.add_list_value("players", "p3").unwrap_err();
        assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        assert_eq!(c.remove_list_value("players", "p1").unwrap().values, ["p2"]);
        let e = c.remove_list_value("players", "p1").unwrap_err();
        assert_eq!(code(&e), "NOT_FOUND", "{e}");
        let e = c.add_list_value("teams", "red").unwrap_err();
        assert_eq!(code(&e), "NOT_FOUND", "{e}");
        let e = c.add_list_value("players", "").unwrap_err();
        assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");
        let e = c.add_list_value("players", "a\u{1b}[2J").unwrap_err();
        assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");
    }

    #[test]
    fn update_list_takes_the_masked_fields_dedups_and_truncates() {
        let mut c = counts();
        let values = vec!["a".to_owned(), "b".into(), "a".into(), "c".into()];
        let only_capacity = ListUpdate::from_mask(&["capacity"], 3, values.clone()).unwrap();
        assert_eq!(only_capacity.values, None);
        let l = c.update_list("players", only_capacity).unwrap();
        assert_eq!((l.capacity, l.values.clone()), (3, vec!["p1".to_owned()]));
        let both = ListUpdate::from_mask(&["values", "capacity", "name"], 2, values).unwrap();
        let l = c.update_list("players", both).unwrap();
        assert_eq!(
            (l.capacity, l.values),
            (2, vec!["a".to_owned(), "b".into()])
        );
        let e = ListUpdate::from_mask(&["list.capacity"], 2, vec![]).unwrap_err();
        assert_eq!(code(&e), "INVALID_ARGUMENT", "{e}");
        for bad in [-1, MAX_LIST_CAPACITY + 1] {
            let update = ListUpdate::from_mask(&["capacity"], bad, vec![]).unwrap();
            let e = c.update_list("players", update).unwrap_err();
            assert_eq!(code(&e), "OUT_OF_RANGE", "{e}");
        }
        assert_eq!(
            c.list("players").unwrap().capacity,
            2,
            "refusals change nothing"
        );
        let nothing = ListUpdate::from_mask::<&str>(&[], 0, vec![]).unwrap();
        assert_eq!(
            c.update_list("players", nothing).unwrap().values,
            ["a", "b"]
        );
    }

    #[test]
    fn declared_sets_are_checked() {
        assert!(counts().check().is_ok());
        let mut c = counts();
        c.counters.get_mut("rooms").unwrap().count = 11;
        assert!(c.check().unwrap_err().contains("agones.counters.rooms"));
        let mut c = counts();
        c.lists.get_mut("players").unwrap().values = vec!["x".into(), "x".into()];
        assert!(c.check().unwrap_err().contains("twice"));
        let mut c = counts();
        c.lists.get_mut("players").unwrap().values = vec!["x".into(), "y".into(), "z".into()];
        assert!(c.check().unwrap_err().contains("do not fit"));
        let mut c = counts();
        c.lists.get_mut("players").unwrap().capacity = 1001;
        assert!(c.check().unwrap_err().contains("0 to 1000"));
        let mut c = counts();
        c.counters.insert(
            "a/b".into(),
            Counter {
                count: 0,
                capacity: 1,
            },
        );
        assert!(c.check().unwrap_err().contains("\"a/b\""));
        let mut c = Counts::default();
        for i in 0..=MAX_COUNTERS {
            c.counters.insert(
                format!("c{i}"),
                Counter {
                    count: 0,
                    capacity: 1,
                },
            );
        }
        assert!(c.check().unwrap_err().contains("at most"));
    }

    #[derive(Debug, Clone)]
    enum Call {
        Counter(CounterUpdate),
        List(Option<i64>, Option<Vec<String>>),
        Add(String),
        Remove(String),
    }

    fn call() -> impl Strategy<Value = Call> {
        let n = prop_oneof![-3i64..15, any::<i64>()];
        let value = "[a-e]";
        prop_oneof![
            (
                proptest::option::of(n.clone()),
                proptest::option::of(n.clone()),
                n.clone()
            )
                .prop_map(|(capacity, count, diff)| Call::Counter(CounterUpdate {
                    capacity,
                    count,
                    diff
                })),
            (
                proptest::option::of(prop_oneof![-2i64..8, any::<i64>()]),
                proptest::option::of(proptest::collection::vec(value, 0..8))
            )
                .prop_map(|(c, v)| Call::List(c, v)),
            value.prop_map(Call::Add),
            value.prop_map(Call::Remove),
        ]
    }

    proptest! {
        /// Whatever a game asks, in any order, a count never leaves [0, capacity] and a list
        /// never holds more than its capacity or a value twice.
        #[test]
        fn counts_and_lists_never_leave_their_bounds(calls in proptest::collection::vec(call(), 0..40)) {
            let mut c = counts();
            for call in calls {
                let before = c.clone();
                let result = match call {
                    Call::Counter(u) => c.update_counter("rooms", u).map(drop),
                    Call::List(capacity, values) => {
                        c.update_list("players", ListUpdate { capacity, values }).map(drop)
                    }
                    Call::Add(v) => c.add_list_value("players", &v).map(drop),
                    Call::Remove(v) => c.remove_list_value("players", &v).map(drop),
                };
                if result.is_err() {
                    prop_assert_eq!(&c, &before, "a refused call changed something");
                }
                let r = c.counter("rooms").unwrap();
                prop_assert!(r.capacity >= 0 && (0..=r.capacity).contains(&r.count), "{:?}", r);
                let l = c.list("players").unwrap();
                prop_assert!((0..=MAX_LIST_CAPACITY).contains(&l.capacity), "{:?}", l);
                prop_assert!(l.values.len() as u64 <= l.capacity.unsigned_abs(), "{:?}", l);
                let mut distinct = l.values.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), l.values.len());
                prop_assert!(c.check().is_ok());
            }
        }
    }
}
