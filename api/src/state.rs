//! What each instance state allows, defined once for the master, the spawner, exilectl and
//! the dashboard. The truth table test below pins it.

use crate::v1::InstanceState;

impl InstanceState {
    /// The state of a wire value; an unknown number (a newer peer) reads as Unspecified.
    pub fn from_wire(v: i32) -> Self {
        Self::try_from(v).unwrap_or(Self::Unspecified)
    }

    /// A game-server process is (or may still be) alive: it holds ports, uses resources and
    /// must be stopped before it can be started again.
    pub fn has_process(self) -> bool {
        matches!(
            self,
            Self::Starting
                | Self::Running
                | Self::Ready
                | Self::Allocated
                | Self::Unhealthy
                | Self::Stopping
        )
    }

    /// A stop may be asked for (one already under way is not asked again).
    pub fn can_stop(self) -> bool {
        self.has_process() && self != Self::Stopping
    }

    /// Its console takes lines: the game runs and is not on its way out.
    pub fn accepts_console(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Ready | Self::Allocated | Self::Unhealthy
        )
    }

    /// It may be started again: its process ended.
    pub fn can_start(self) -> bool {
        matches!(self, Self::Stopped | Self::Crashed)
    }

    /// It may be removed without stopping a live game first.
    pub fn can_remove(self) -> bool {
        matches!(self, Self::Stopped | Self::Crashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_truth_table() {
        use InstanceState as S;
        // state, has_process, can_stop, accepts_console, can_start, can_remove
        let table = [
            (S::Unspecified, false, false, false, false, false),
            (S::Starting, true, true, false, false, false),
            (S::Running, true, true, true, false, false),
            (S::Ready, true, true, true, false, false),
            (S::Allocated, true, true, true, false, false),
            (S::Unhealthy, true, true, true, false, false),
            (S::Stopping, true, false, false, false, false),
            (S::Stopped, false, false, false, true, true),
            (S::Crashed, false, false, false, true, true),
            (S::Unknown, false, false, false, false, false),
        ];
        assert_eq!(table.len(), 10, "every state is in the table");
        for (s, process, stop, console, start, remove) in table {
            assert_eq!(s.has_process(), process, "{s:?} has_process");
            assert_eq!(s.can_stop(), stop, "{s:?} can_stop");
            assert_eq!(s.accepts_console(), console, "{s:?} accepts_console");
            assert_eq!(s.can_start(), start, "{s:?} can_start");
            assert_eq!(s.can_remove(), remove, "{s:?} can_remove");
        }
        assert_eq!(S::from_wire(999), S::Unspecified);
        assert_eq!(S::from_wire(S::Ready as i32), S::Ready);
    }
}
