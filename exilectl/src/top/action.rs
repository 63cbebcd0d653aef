//! What can happen to `top`: the actions its event loop feeds to `update`, and the effects
//! `update` asks the loop to carry out (calls to the master, log follows, suspending).

use exile_api::v1 as pb;

/// A list view, chosen with the number keys or the `:` command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Spawners,
    Instances,
    Builds,
}

impl View {
    /// Every list view, in number-key order.
    pub const ALL: [View; 3] = [View::Spawners, View::Instances, View::Builds];

    /// Index into per-view state, and the number key minus one.
    pub fn index(self) -> usize {
        match self {
            View::Spawners => 0,
            View::Instances => 1,
            View::Builds => 2,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            View::Spawners => "Spawners",
            View::Instances => "Instances",
            View::Builds => "Builds",
        }
    }

    /// The view a `:` command names (`:inst`, `:spawners`, `:b`…), by unambiguous prefix.
    pub fn parse(word: &str) -> Option<View> {
        let w = word.trim().to_ascii_lowercase();
        if w.is_empty() {
            return None;
        }
        View::ALL
            .into_iter()
            .find(|v| v.title().to_ascii_lowercase().starts_with(&w))
    }
}

/// What a detail view shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Spawner(String),
    Instance(String),
}

impl Target {
    pub fn id(&self) -> &str {
        match self {
            Target::Spawner(id) | Target::Instance(id) => id,
        }
    }
}

/// A change to the fleet that `top` asks the master for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Spawn on this spawner, or where the master places it (`None`).
    Spawn(Option<String>),
    Start(String),
    Stop(String),
    Restart(String),
    Remove(String),
    Drain(String),
    Undrain(String),
    RemoveSpawner(String),
    /// One line for an instance's console (needs no confirmation: the line is the intent).
    Console {
        id: String,
        line: String,
    },
}

impl Op {
    /// The confirmation question.
    pub fn question(&self) -> String {
        match self {
            Op::Spawn(None) => "Spawn an instance where the master places it?".into(),
            Op::Spawn(Some(s)) => format!("Spawn an instance on spawner {s}?"),
            Op::Start(id) => format!("Start instance {id}?"),
            Op::Stop(id) => format!("Stop instance {id}?"),
            Op::Restart(id) => format!("Restart instance {id}?"),
            Op::Remove(id) => format!("Remove instance {id} and its files?"),
            Op::Drain(id) => format!("Drain spawner {id} (no new placements)?"),
            Op::Undrain(id) => format!("Undrain spawner {id}?"),
            Op::RemoveSpawner(id) => format!("Remove spawner {id}?"),
            Op::Console { id, line } => format!("Send `{line}` to {id}?"),
        }
    }
}

/// Which operation a key asks for; `update` applies it to the selected row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Spawn,
    Start,
    Stop,
    Restart,
    Remove,
    Drain,
    Undrain,
}

/// The link to the master as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// Opening the event stream (attempt 0 is the first).
    Connecting { attempt: u32 },
    /// Snapshot received, deltas flowing.
    Live,
    /// The stream failed; the next attempt starts in `in_ms`.
    Retrying {
        attempt: u32,
        in_ms: u64,
        error: String,
    },
}

/// Everything `update` reacts to: keys already turned into intents, and news from the master.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Quit,
    /// Ctrl-Z: give the terminal back to the shell until resumed.
    Suspend,
    /// The terminal changed size or was handed back: draw again.
    Redraw,
    /// The clock moved (uptimes, ages); carries the time, Unix milliseconds.
    Tick(i64),
    Show(View),
    /// Moves the selection (or scrolls the log in a detail view) by rows.
    Move(isize),
    /// To the first (`false`) or last (`true`) row.
    Jump(bool),
    /// Opens the detail view of the selected row.
    Open,
    /// Closes the detail view, the help, or clears the filter.
    Back,
    StartFilter,
    StartCommand,
    StartConsole,
    /// A character typed into the prompt line (filter, command, console).
    Input(char),
    Erase,
    Submit,
    Cancel,
    SortNext,
    SortReverse,
    ToggleHelp,
    Ask(OpKind),
    /// Answer to the confirmation prompt.
    Answer(bool),
    LogPause,
    // From the master.
    Watch(Box<pb::WatchEvent>),
    Conn(Conn),
    Identity {
        subject: String,
        role: String,
    },
    /// An operation ended: the sentence to show, or the master's refusal.
    Done {
        op: Op,
        result: Result<String, String>,
    },
    History {
        target: Target,
        points: Vec<pb::MetricPoint>,
    },
    Log {
        target: Target,
        data: Vec<u8>,
        skipped: u64,
    },
    LogEnded {
        target: Target,
        error: Option<String>,
    },
}

/// Work `update` hands back to the event loop, which owns the connection and the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Run(Op),
    /// Follows this target's log, replacing any other follow.
    FollowLogs(Target),
    StopLogs,
    FetchHistory(Target),
    Suspend,
}
