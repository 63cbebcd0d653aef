//! Stored contexts (name, master URL, token) in `<config dir>/exile/config.toml`, written 0600.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// Environment variable that points at another config file (tests use it).
pub const CONFIG_ENV: &str = "EXILECTL_CONFIG";

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Name of the context used when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Stored contexts.
    #[serde(default, rename = "context")]
    pub contexts: Vec<Context>,
}

/// One master and the credential used with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Name chosen at login (default: the master's host and port).
    pub name: String,
    /// Master URL.
    pub master: String,
    /// Session or API token; empty after logout.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// CA certificate (PEM) trusted for this master instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Config {
    /// Where the config file lives: `$EXILECTL_CONFIG`, else the user's config dir.
    pub fn default_path() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let dir = dirs::config_dir()
            .ok_or_else(|| anyhow!("cannot find the user's config directory; set {CONFIG_ENV}"))?;
        Ok(dir.join("exile").join("config.toml"))
    }

    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("cannot parse config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    /// Writes the file atomically with mode 0600, since it holds tokens.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).context("cannot encode the config")?;
        // A missing config directory is created 0700.
        exile_api::fs::write_private(path, text.as_bytes())
            .with_context(|| format!("cannot write config file {}", path.display()))
    }

    /// The context with this name.
    pub fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The named context, else the current one; `None` when neither exists.
    pub fn select(&self, name: Option<&str>) -> Result<Option<&Context>> {
        match name {
            Some(n) => self
                .get(n)
                .map(Some)
                .ok_or_else(|| anyhow!("no context named `{n}`: see `exilectl context list`")),
            None => Ok(self.current.as_deref().and_then(|n| self.get(n))),
        }
    }

    /// Adds or replaces a context.
    pub fn upsert(&mut self, ctx: Context) {
        match self.contexts.iter_mut().find(|c| c.name == ctx.name) {
            Some(slot) => *slot = ctx,
            None => self.contexts.push(ctx),
        }
    }

    /// Makes a stored context current.
    pub fn use_context(&mut self, name: &str) -> Result<()> {
        if self.get(name).is_none() {
            bail!("no context named `{name}`: see `exilectl context list`");
        }
        self.current = Some(name.to_owned());
        Ok(())
    }

    /// Deletes a context; the current one is unset when it is the one deleted.
    pub fn delete(&mut self, name: &str) -> Result<()> {
        let before = self.contexts.len();
        self.contexts.retain(|c| c.name != name);
        if self.contexts.len() == before {
            bail!("no context named `{name}`: see `exilectl context list`");
        }
        if self.current.as_deref() == Some(name) {
            self.current = None;
        }
        Ok(())
    }
}

/// Default context name for a master URL: its host and port.
pub fn context_name_for(master: &str) -> String {
    let rest = master.split_once("://").map_or(master, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() {
        master.to_owned()
    } else {
        authority.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(name: &str, token: &str) -> Context {
        Context {
            name: name.into(),
            master: format!("http://{name}:7700"),
            token: token.into(),
            ca_file: None,
        }
    }

    #[test]
    fn round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());

        let mut cfg = Config::default();
        cfg.upsert(ctx("a", "secret-a"));
        cfg.upsert(ctx("b", ""));
        cfg.use_context("a").unwrap();
        cfg.save(&path).unwrap();

        let back = Config::load(&path).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.select(None).unwrap().unwrap().token, "secret-a");
        assert_eq!(back.select(Some("b")).unwrap().unwrap().token, "");
        assert!(back.select(Some("zzz")).is_err());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn upsert_use_delete() {
        let mut cfg = Config::default();
        cfg.upsert(ctx("a", "1"));
        cfg.upsert(ctx("a", "2"));
        assert_eq!(cfg.contexts.len(), 1);
        assert_eq!(cfg.get("a").unwrap().token, "2");
        assert!(cfg.use_context("nope").is_err());
        cfg.use_context("a").unwrap();
        cfg.delete("a").unwrap();
        assert_eq!(cfg.current, None);
        assert!(cfg.delete("a").is_err());
        assert!(cfg.select(None).unwrap().is_none());
    }

    #[test]
    fn bad_file_is_a_readable_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "current = [").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(format!("{err:#}").contains("cannot parse config file"));
    }

    #[test]
    fn context_names() {
        assert_eq!(context_name_for("http://127.0.0.1:7700"), "127.0.0.1:7700");
        assert_eq!(context_name_for("https://exile.example/x"), "exile.example");
        assert_eq!(context_name_for("host:1"), "host:1");
    }
}
