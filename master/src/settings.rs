//! Run-time settings on the master: the values set (loaded at start, written through to the
//! store with their history), typed reads for the code that applies them, and the push of
//! spawner settings over the links. Declarations live in `exile_api::settings`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use exile_api::settings::{self as decl, AppliedBy, Category, Scope, Value};
use exile_api::v1 as pb;

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::store::{SettingWrite, Store};

/// Values in memory.
#[derive(Default)]
struct Values {
    /// Settings version: the id of the last change.
    version: u64,
    /// Key → scope → canonical text, for values set.
    set: BTreeMap<String, BTreeMap<Scope, String>>,
    /// Key → version of its last change.
    changed_at: HashMap<String, u64>,
}

/// The settings of this master.
pub struct Settings {
    store: Store,
    /// Default text per key on this master: a flag where the master has one, else the
    /// declared default.
    defaults: HashMap<&'static str, String>,
    /// std Mutex: short sections, never held across an await; a change updates it and pushes
    /// to the links inside one section so pushes leave in version order.
    values: Mutex<Values>,
    /// Serialises changes, so the store's order and the memory's agree.
    writer: tokio::sync::Mutex<()>,
    /// The version, for the master's own parts that apply settings.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Settings {
    /// Loads the values set. `flag_defaults` are this master's flags for keys that have one
    /// (each validated like a value; a flag outside the bounds is refused at start).
    pub async fn load(store: Store, flag_defaults: &[(&'static str, String)]) -> Result<Self> {
        let mut defaults: HashMap<&'static str, String> = decl::SETTINGS
            .iter()
            .map(|s| (s.key, s.default.to_owned()))
            .collect();
        for (key, text) in flag_defaults {
            let setting = decl::lookup(key).map_err(Error::Internal)?;
            let value = setting
                .parse(text)
                .map_err(|e| Error::InvalidArgument(format!("flag for {e}")))?;
            defaults.insert(setting.key, value.to_text());
        }
        let mut values = Values {
            version: store.settings_version().await?,
            ..Values::default()
        };
        for row in store.list_setting_values().await? {
            // A key no longer declared, or a value no longer valid, is skipped with a warning:
            // the default applies until someone sets it again.
            let parsed = decl::lookup(&row.key).and_then(|s| {
                let scope = Scope::parse(&row.scope)?;
                s.parse(&row.value).map(|v| (scope, v))
            });
            match parsed {
                Ok((scope, v)) => {
                    values
                        .set
                        .entry(row.key.clone())
                        .or_default()
                        .insert(scope, v.to_text());
                }
                Err(e) => tracing::warn!(key = %row.key, error = %e, "stored setting ignored"),
            }
        }
        for s in decl::SETTINGS {
            let v = store.setting_last_version(s.key).await?;
            if v > 0 {
                values.changed_at.insert(s.key.to_owned(), v);
            }
        }
        let (changed, _) = tokio::sync::watch::channel(values.version);
        Ok(Settings {
            store,
            defaults,
            values: Mutex::new(values),
            writer: tokio::sync::Mutex::new(()),
            changed,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Values> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The global value in force of a declared key.
    pub fn value(&self, key: &str) -> Value {
        let text = self.global_text(&self.lock(), key);
        decl::find(key)
            .and_then(|s| s.parse(&text).ok())
            .unwrap_or(Value::Str(text))
    }

    /// A duration setting.
    pub fn duration(&self, key: &str) -> Duration {
        Duration::from_millis(self.value(key).as_u64())
    }

    /// Environment names games may be given despite the default refusal
    /// (`security.env_allowed`).
    pub fn env_allowed(&self) -> Vec<String> {
        match self.value(exile_api::limits::ENV_ALLOWED_SETTING) {
            Value::List(names) => names,
            _ => Vec::new(),
        }
    }

    /// Checks the names of a game's environment against the policy.
    pub fn check_env_policy<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Result<()> {
        exile_api::limits::check_env_policy(names, &self.env_allowed())
            .map_err(Error::InvalidArgument)
    }

    /// A bytes or int setting.
    pub fn number(&self, key: &str) -> u64 {
        self.value(key).as_u64()
    }

    /// Wakes on every change (the value is the settings version).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The current settings version.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    fn default_text(&self, key: &str) -> String {
        self.defaults.get(key).cloned().unwrap_or_default()
    }

    fn global_text(&self, v: &Values, key: &str) -> String {
        v.set
            .get(key)
            .and_then(|m| m.get(&Scope::Global))
            .cloned()
            .unwrap_or_else(|| self.default_text(key))
    }

    fn entry_locked(&self, v: &Values, s: &decl::Setting) -> pb::SettingEntry {
        let scopes = v.set.get(s.key);
        pb::SettingEntry {
            key: s.key.to_owned(),
            category: s.category.as_str().to_owned(),
            r#type: s.ty.name().to_owned(),
            value: self.global_text(v, s.key),
            default_value: self.default_text(s.key),
            description: s.description.to_owned(),
            bounds: s.ty.bounds(),
            allowed: match s.ty {
                decl::Type::Enum(words) => words.iter().map(|w| (*w).to_owned()).collect(),
                _ => Vec::new(),
            },
            read_only: s.read_only,
            needs_restart: s.needs_restart,
            applied_by: match s.applied_by {
                AppliedBy::Master => "master",
                AppliedBy::Spawner => "spawners",
            }
            .to_owned(),
            is_set: scopes.is_some_and(|m| m.contains_key(&Scope::Global)),
            overrides: scopes
                .into_iter()
                .flatten()
                .filter(|(scope, _)| **scope != Scope::Global)
                .map(|(scope, value)| pb::SettingOverride {
                    scope: scope.to_text(),
                    value: value.clone(),
                })
                .collect(),
            version: v.changed_at.get(s.key).copied().unwrap_or(0),
        }
    }

    /// Every setting, or one category's, in declaration order, with the current version.
    pub fn list(&self, category: &str) -> Result<pb::ListSettingsResponse> {
        let only = if category.is_empty() {
            None
        } else {
            Some(Category::parse(category).map_err(Error::InvalidArgument)?)
        };
        let v = self.lock();
        Ok(pb::ListSettingsResponse {
            settings: decl::SETTINGS
                .iter()
                .filter(|s| only.is_none_or(|c| s.category == c))
                .map(|s| self.entry_locked(&v, s))
                .collect(),
            version: v.version,
        })
    }

    /// One setting.
    pub fn get(&self, key: &str) -> Result<pb::SettingEntry> {
        let s = decl::lookup(key).map_err(Error::NotFound)?;
        Ok(self.entry_locked(&self.lock(), s))
    }

    /// Sets (`Some`) or resets (`None`) a value in a scope, records the change and pushes
    /// spawner settings to every linked spawner. Returns the entry and the audit detail.
    pub async fn change(
        &self,
        registry: &Registry,
        actor: &str,
        key: &str,
        scope: &str,
        text: Option<&str>,
    ) -> Result<(pb::SettingEntry, String)> {
        let s = decl::lookup(key).map_err(Error::NotFound)?;
        let scope =
            Scope::parse(scope).map_err(|e| Error::InvalidArgument(format!("{key}: {e}")))?;
        decl::check_settable(s, &scope).map_err(Error::FailedPrecondition)?;
        let canonical = match text {
            Some(text) => {
                let value = s.parse(text).map_err(Error::InvalidArgument)?;
                self.check_against_others(s, &value)?;
                Some(value.to_text())
            }
            None => None,
        };
        let _writer = self.writer.lock().await;
        let (version, old) = self
            .store
            .write_setting(SettingWrite {
                key,
                scope: &scope.to_text(),
                value: canonical.as_deref(),
                actor,
                at: exile_api::now_unix_ms(),
            })
            .await?;
        let where_ = match &scope {
            Scope::Global => String::new(),
            other => format!(" for {}", other.to_text()),
        };
        let detail = format!(
            "{key}{where_}: {} -> {} (version {version})",
            old.as_deref().unwrap_or("(default)"),
            canonical.as_deref().unwrap_or("(default)")
        );
        let entry = {
            let mut v = self.lock();
            let scopes = v.set.entry(key.to_owned()).or_default();
            match &canonical {
                Some(text) => {
                    scopes.insert(scope, text.clone());
                }
                None => {
                    scopes.remove(&scope);
                }
            }
            if scopes.is_empty() {
                v.set.remove(key);
            }
            v.version = version;
            v.changed_at.insert(key.to_owned(), version);
            self.push_locked(&v, registry, None);
            self.entry_locked(&v, s)
        };
        self.changed.send_replace(version);
        tracing::info!(%actor, %detail, "setting changed");
        Ok((entry, detail))
    }

    /// Rules between settings that bounds alone cannot say.
    fn check_against_others(&self, s: &decl::Setting, value: &Value) -> Result<()> {
        if s.key == decl::HEARTBEAT_INTERVAL {
            let ttl = self.duration("master.heartbeat_ttl");
            if Duration::from_millis(value.as_u64()) >= ttl {
                return Err(Error::InvalidArgument(format!(
                    "{}: {} is not below master.heartbeat_ttl ({}); spawners would be marked \
                     Unreachable between heartbeats",
                    s.key,
                    value.to_text(),
                    decl::format_duration(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                )));
            }
        }
        Ok(())
    }

    /// Changes of one setting, newest first.
    pub async fn history(&self, key: &str, limit: u32) -> Result<Vec<pb::SettingChange>> {
        decl::lookup(key).map_err(Error::NotFound)?;
        let limit = if limit == 0 { 100 } else { limit.min(1000) };
        let rows = self.store.setting_history(key, u64::from(limit)).await?;
        Ok(rows
            .into_iter()
            .map(|c| pb::SettingChange {
                version: u64::try_from(c.id).unwrap_or(0),
                key: c.key,
                scope: c.scope,
                had_old: c.old_value.is_some(),
                has_new: c.new_value.is_some(),
                old_value: c.old_value.unwrap_or_default(),
                new_value: c.new_value.unwrap_or_default(),
                actor: c.actor,
                at_unix_ms: c.at,
            })
            .collect())
    }

    /// The settings a spawner of `region` with `labels` applies. The heartbeat interval is
    /// always there (its default is the master's); other keys only when set, so a spawner's
    /// own flags stay in force until someone sets a value.
    fn for_spawner_locked(
        &self,
        v: &Values,
        region: &str,
        labels: &BTreeMap<String, String>,
    ) -> pb::SpawnerSettings {
        let spawner_keys: BTreeMap<String, BTreeMap<Scope, String>> = v
            .set
            .iter()
            .filter(|(k, _)| decl::find(k).is_some_and(|s| s.applied_by == AppliedBy::Spawner))
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        let lookup = |k: &str| labels.get(k).cloned();
        let mut values: HashMap<String, String> = decl::resolve_for(&spawner_keys, region, &lookup)
            .into_iter()
            .collect();
        values
            .entry(decl::HEARTBEAT_INTERVAL.to_owned())
            .or_insert_with(|| self.default_text(decl::HEARTBEAT_INTERVAL));
        pb::SpawnerSettings {
            version: v.version,
            values,
        }
    }

    /// Pushes the current spawner settings to one linked spawner, or to all.
    pub fn push(&self, registry: &Registry, only: Option<&str>) {
        let v = self.lock();
        self.push_locked(&v, registry, only);
    }

    fn push_locked(&self, v: &Values, registry: &Registry, only: Option<&str>) {
        for s in registry.linked(only) {
            let settings = self.for_spawner_locked(v, &s.region, &s.labels);
            tracing::debug!(spawner = %s.id, version = settings.version, "pushing settings");
            s.link.push_config(pb::ConfigPush {
                heartbeat_interval_ms: 0,
                drained: s.drained,
                wanted_builds: None,
                settings: Some(settings),
            });
        }
    }
}
