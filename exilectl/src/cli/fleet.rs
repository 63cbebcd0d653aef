//! Grammar of `exilectl fleet …` and `exilectl allocate`.

use clap::{Args, Subcommand};

use super::{StrategyArg, parse_build_spec, parse_key_val};

/// `exilectl fleet …`.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create a fleet: the master keeps --replicas instances of --build running (operator).
    Create {
        /// Fleet name: letters, digits, '-' or '_'.
        #[arg(value_parser = parse_fleet_name)]
        name: String,
        #[command(flatten)]
        spec: FleetSpecArgs,
    },
    /// Change a fleet: only the flags given change (operator).
    Update {
        /// Fleet name.
        #[arg(value_parser = parse_fleet_name)]
        name: String,
        #[command(flatten)]
        spec: FleetSpecArgs,
        /// Remove the fleet's autoscaler.
        #[arg(long, conflicts_with_all = ["buffer", "buffer_percent", "webhook"])]
        no_autoscaler: bool,
    },
    /// Set a fleet's replica count (operator).
    Scale {
        /// Fleet name.
        #[arg(value_parser = parse_fleet_name)]
        name: String,
        /// New replica count.
        #[arg(long, short = 'r')]
        replicas: u32,
    },
    /// Show one fleet with its counts.
    Get {
        /// Fleet name.
        #[arg(value_parser = parse_fleet_name)]
        name: String,
    },
    /// List fleets.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a fleet: its Ready and starting instances are removed, Allocated ones finish
    /// their match (operator).
    Delete {
        /// Fleet name.
        #[arg(value_parser = parse_fleet_name)]
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// The parts of a fleet's spec set from flags.
#[derive(Debug, Args, Default)]
pub struct FleetSpecArgs {
    /// Uploaded build: NAME@VERSION, or NAME to follow its active version (default on
    /// create: the spawners' host build).
    #[arg(long, value_name = "NAME[@VERSION]", value_parser = parse_build_spec)]
    pub build: Option<String>,
    /// Instances to keep (default on create: 1).
    #[arg(long, short = 'r')]
    pub replicas: Option<u32>,
    /// Region a spawner may be in (repeatable; none: any).
    #[arg(long = "region")]
    pub regions: Vec<String>,
    /// Label a spawner must carry (repeatable).
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub selectors: Vec<(String, String)>,
    /// Placement strategy.
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Label of every instance (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<(String, String)>,
    /// Extra environment variable (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub env: Vec<(String, String)>,
    /// Autoscale: keep this many Ready instances above the Allocated ones.
    #[arg(long, conflicts_with_all = ["buffer_percent", "webhook"])]
    pub buffer: Option<u32>,
    /// Autoscale: keep this percentage of the Allocated count Ready above it.
    #[arg(long, conflicts_with = "webhook")]
    pub buffer_percent: Option<u32>,
    /// Autoscale: ask this http:// or https:// URL for the replica count (https is checked
    /// against the web's roots and the master's --webhook-ca-file).
    #[arg(long)]
    pub webhook: Option<String>,
    /// Deadline of a webhook call, milliseconds.
    #[arg(long, requires = "webhook")]
    pub webhook_timeout_ms: Option<u32>,
    /// Autoscaler's fewest replicas.
    #[arg(long)]
    pub min: Option<u32>,
    /// Autoscaler's most replicas.
    #[arg(long)]
    pub max: Option<u32>,
    /// Seconds between the autoscaler's own evaluations.
    #[arg(long)]
    pub sync_interval: Option<u32>,
    /// Moving to a new build: most instances above the replica count (with
    /// --max-unavailable 0 too, 1).
    #[arg(long)]
    pub max_surge: Option<u32>,
    /// Moving to a new build: most instances below the replica count out of service
    /// (Allocated ones are never touched).
    #[arg(long)]
    pub max_unavailable: Option<u32>,
}

/// `exilectl allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// Only instances of this fleet.
    #[arg(long, value_parser = parse_fleet_name)]
    pub fleet: Option<String>,
    /// Label the instance must carry (repeatable).
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub selectors: Vec<(String, String)>,
    /// Free player slots the instance must have.
    #[arg(long)]
    pub min_free_players: Option<u32>,
    /// Among matches, the spawner with the most (packed) or fewest (distributed) allocated.
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Label to set on the allocated instance (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<(String, String)>,
    /// Annotation to set on the allocated instance (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub annotations: Vec<(String, String)>,
    /// The same key within 5 minutes returns the same instance.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Text handed to the game through the SDK's WatchInstance.
    #[arg(long)]
    pub metadata: Option<String>,
}

fn parse_fleet_name(s: &str) -> Result<String, String> {
    exile_api::fleet::check_fleet_name(s).map(|()| s.to_owned())
}
