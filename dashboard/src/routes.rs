//! Every page's address: the router's table, shared by the shell and every link.

use yew_router::prelude::*;

/// Every page of the dashboard.
#[derive(Clone, Debug, PartialEq, Routable)]
pub enum Route {
    /// Sign in.
    #[at("/login")]
    Login,
    /// Master figures and all spawners.
    #[at("/")]
    Overview,
    /// All spawners.
    #[at("/spawners")]
    Spawners,
    /// One spawner and its instances.
    #[at("/spawners/:id")]
    Spawner {
        /// Spawner id.
        id: String,
    },
    /// Uploaded builds and rollouts.
    #[at("/builds")]
    Builds,
    /// Fleets: counts, placement, autoscaler; create one.
    #[at("/fleets")]
    Fleets,
    /// One fleet: its instances live, scale, allocate, delete.
    #[at("/fleets/:name")]
    Fleet {
        /// Fleet name.
        name: String,
    },
    /// The master: its figures, error log and builds.
    #[at("/server")]
    Server,
    /// The master's and the fleet's performance over time.
    #[at("/performance")]
    Performance,
    /// Run-time settings, every category.
    #[at("/config")]
    Config,
    /// Run-time settings of one category.
    #[at("/config/:category")]
    ConfigCategory {
        /// Category (`master`, `spawners`, …).
        category: String,
    },
    /// Users, API tokens and enrollment tokens (admin).
    #[at("/users")]
    Users,
    /// The audit log (admin).
    #[at("/audit")]
    Audit,
    /// One instance: its log, console and resource history.
    #[at("/instances/:id")]
    Instance {
        /// Instance id.
        id: String,
    },
    /// Anything else.
    #[not_found]
    #[at("/404")]
    NotFound,
}
