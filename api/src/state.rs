//! What each instance state allows, defined once for the master, the spawner, exilectl and
//! the dashboard. The truth table test below pins it.

use crate::v1::{InstanceState, SpawnerState};

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

    /// The game runs and is not on its way out (healthy or not): it may act through the SDK.
    pub fn is_up(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Ready | Self::Allocated | Self::Unhealthy
        )
    }

    /// The game runs and answers its health checks: counted as running, waited for by a
    /// spawn, its health clock ticking.
    pub fn is_serving(self) -> bool {
        matches!(self, Self::Running | Self::Ready | Self::Allocated)
    }

    /// Only a game that speaks the SDK reaches this state (the spawner alone never sets it);
    /// such a game is health-checked again after an adoption.
    pub fn set_by_game(self) -> bool {
        matches!(self, Self::Ready | Self::Allocated | Self::Unhealthy)
    }

    /// Its console takes lines: the game runs and is not on its way out.
    pub fn accepts_console(self) -> bool {
        self.is_up()
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

impl SpawnerState {
    /// The state of a wire value; an unknown number (a newer peer) reads as Unspecified.
    pub fn from_wire(v: i32) -> Self {
        Self::try_from(v).unwrap_or(Self::Unspecified)
    }

    /// The spawner's link is up (it may be draining): it counts as online.
    pub fn is_attached(self) -> bool {
        matches!(self, Self::Online | Self::Draining)
    }
}

/// Joins a crash message to the end of the game's output that the spawner appends to it.
/// That output is the game's own text, readable like its log by operators only; the master
/// cuts it off (with [`without_game_output`]) for everyone else.
pub const GAME_OUTPUT_MARKER: &str = "\nlast output:\n";

/// An instance message with the game's output cut off.
pub fn without_game_output(message: &str) -> &str {
    message
        .split_once(GAME_OUTPUT_MARKER)
        .map_or(message, |(own, _)| own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_truth_table() {
        use InstanceState as S;
        // state, has_process, can_stop, accepts_console, can_start, can_remove, is_up,
        // is_serving, set_by_game
        let (t, f) = (true, false);
        let table = [
            (S::Unspecified, f, f, f, f, f, f, f, f),
            (S::Starting, t, t, f, f, f, f, f, f),
            (S::Running, t, t, t, f, f, t, t, f),
            (S::Ready, t, t, t, f, f, t, t, t),
            (S::Allocated, t, t, t, f, f, t, t, t),
            (S::Unhealthy, t, t, t, f, f, t, f, t),
            (S::Stopping, t, f, f, f, f, f, f, f),
            (S::Stopped, f, f, f, t, t, f, f, f),
            (S::Crashed, f, f, f, t, t, f, f, f),
            (S::Unknown, f, f, f, f, f, f, f, f),
        ];
        assert_eq!(table.len(), 10, "every state is in the table");
        for (s, process, stop, console, start, remove, up, serving, by_game) in table {
            assert_eq!(s.is_up(), up, "{s:?} is_up");
            assert_eq!(s.is_serving(), serving, "{s:?} is_serving");
            assert_eq!(s.set_by_game(), by_game, "{s:?} set_by_game");
            assert_eq!(s.has_process(), process, "{s:?} has_process");
            assert_eq!(s.can_stop(), stop, "{s:?} can_stop");
            assert_eq!(s.accepts_console(), console, "{s:?} accepts_console");
            assert_eq!(s.can_start(), start, "{s:?} can_start");
            assert_eq!(s.can_remove(), remove, "{s:?} can_remove");
        }
        assert_eq!(S::from_wire(999), S::Unspecified);

        use SpawnerState as P;
        let attached = [
            (P::Unspecified, f),
            (P::Online, t),
            (P::Draining, t),
            (P::Unreachable, f),
            (P::Offline, f),
        ];
        for (s, a) in attached {
            assert_eq!(s.is_attached(), a, "{s:?} is_attached");
        }
        assert_eq!(S::from_wire(S::Ready as i32), S::Ready);
    }

    #[test]
    fn game_output_is_cut_off_at_the_first_marker_only() {
        let own = "crashed: exit code 3";
        let msg = format!("{own}{GAME_OUTPUT_MARKER}boom{GAME_OUTPUT_MARKER}more");
        assert_eq!(without_game_output(&msg), own);
        assert_eq!(without_game_output(own), own);
        assert_eq!(without_game_output(""), "");
    }
}
