//! Grammar of `exilectl config …`.

use clap::Subcommand;

/// `exilectl config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List settings with their values and defaults.
    #[command(visible_alias = "ls")]
    List {
        /// Only this category: master, spawners, security or builds.
        #[arg(long, short = 'c', value_parser = parse_category)]
        category: Option<String>,
    },
    /// Show one setting: value, default, bounds, overrides.
    Get {
        /// Key, e.g. spawners.heartbeat_interval.
        key: String,
    },
    /// Set a value (admin): `30s`, `8MiB`, `true`, `a,b`.
    Set {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Only for spawners of this region (settings spawners apply).
        #[arg(long, conflicts_with = "label")]
        region: Option<String>,
        /// Only for spawners with this label, KEY=VALUE (settings spawners apply).
        #[arg(long)]
        label: Option<String>,
    },
    /// Go back to the default, or remove one override (admin).
    Reset {
        /// Key.
        key: String,
        /// Remove the override of this region.
        #[arg(long, conflicts_with = "label")]
        region: Option<String>,
        /// Remove the override of this label, KEY=VALUE.
        #[arg(long)]
        label: Option<String>,
    },
    /// Changes of one setting, newest first: who, when, old and new value.
    History {
        /// Key.
        key: String,
        /// Most changes to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn parse_category(text: &str) -> Result<String, String> {
    exile_api::settings::Category::parse(text).map(|c| c.as_str().to_owned())
}

/// The wire scope of `--region`/`--label`.
pub fn scope(region: Option<&str>, label: Option<&str>) -> String {
    match (region, label) {
        (Some(r), _) => format!("region:{r}"),
        (None, Some(l)) => format!("label:{l}"),
        (None, None) => String::new(),
    }
}
