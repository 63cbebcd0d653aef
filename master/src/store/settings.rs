//! Queries of settings: the values set (one row per key and scope) and every change, whose
//! row id is the settings version it made.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::Store;
use crate::db::entities::{audit, setting, setting_change};
use crate::error::Result;

/// One change to record.
#[derive(Clone, Debug)]
pub struct SettingWrite<'a> {
    /// Key.
    pub key: &'a str,
    /// Scope text ('' is global).
    pub scope: &'a str,
    /// New value; None removes it.
    pub value: Option<&'a str>,
    /// Who.
    pub actor: &'a str,
    /// When, Unix ms.
    pub at: i64,
}

impl Store {
    /// Every value set.
    pub async fn list_setting_values(&self) -> Result<Vec<setting::Model>> {
        Ok(setting::Entity::find()
            .order_by_asc(setting::Column::Key)
            .all(&self.db)
            .await?)
    }

    /// The current settings version: the id of the last change, 0 before any.
    pub async fn settings_version(&self) -> Result<u64> {
        let last = setting_change::Entity::find()
            .order_by_desc(setting_change::Column::Id)
            .one(&self.db)
            .await?;
        Ok(last.map_or(0, |c| u64::try_from(c.id).unwrap_or(0)))
    }

    /// Sets or removes one value and records the change, in one transaction. Returns the
    /// version the change made and the value before it.
    pub async fn write_setting(&self, w: SettingWrite<'_>) -> Result<(u64, Option<String>)> {
        let txn = crate::db::begin_write(&self.db).await?;
        let old = setting::Entity::find_by_id((w.key.to_owned(), w.scope.to_owned()))
            .one(&txn)
            .await?
            .map(|m| m.value);
        match w.value {
            Some(value) => {
                setting::Entity::insert(setting::ActiveModel {
                    key: Set(w.key.to_owned()),
                    scope: Set(w.scope.to_owned()),
                    value: Set(value.to_owned()),
                    updated_by: Set(w.actor.to_owned()),
                    updated_at: Set(w.at),
                })
                .on_conflict(
                    OnConflict::columns([setting::Column::Key, setting::Column::Scope])
                        .update_columns([
                            setting::Column::Value,
                            setting::Column::UpdatedBy,
                            setting::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            }
            None => {
                setting::Entity::delete_by_id((w.key.to_owned(), w.scope.to_owned()))
                    .exec(&txn)
                    .await?;
            }
        }
        let id = setting_change::Entity::insert(setting_change::ActiveModel {
            id: NotSet,
            key: Set(w.key.to_owned()),
            scope: Set(w.scope.to_owned()),
            old_value: Set(old.clone()),
            new_value: Set(w.value.map(str::to_owned)),
            actor: Set(w.actor.to_owned()),
            at: Set(w.at),
        })
        .exec(&txn)
        .await?
        .last_insert_id;
        txn.commit().await?;
        Ok((u64::try_from(id).unwrap_or(0), old))
    }

    /// Changes of one key, newest first.
    pub async fn setting_history(
        &self,
        key: &str,
        limit: u64,
    ) -> Result<Vec<setting_change::Model>> {
        Ok(setting_change::Entity::find()
            .filter(setting_change::Column::Key.eq(key))
            .order_by_desc(setting_change::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The version of the last change of one key, 0 if it never changed.
    pub async fn setting_last_version(&self, key: &str) -> Result<u64> {
        Ok(self
            .setting_history(key, 1)
            .await?
            .first()
            .map_or(0, |c| u64::try_from(c.id).unwrap_or(0)))
    }

    /// Deletes audit entries older than `before`.
    pub async fn prune_audit(&self, before: i64) -> Result<u64> {
        let r = audit::Entity::delete_many()
            .filter(audit::Column::At.lt(before))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers that read before they write (a setting's old value) run on several pooled
    /// connections at once: each waits its turn instead of failing "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_setting_writes_all_land_with_their_history() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::new(crate::db::open(&url).await.unwrap());
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let value = i.to_string();
                    store
                        .write_setting(SettingWrite {
                            key: "spawners.stop_grace",
                            scope: "",
                            value: Some(&value),
                            actor: "test",
                            at: i64::from(i),
                        })
                        .await
                })
            })
            .collect();
        let mut versions = Vec::new();
        for w in writers {
            versions.push(w.await.unwrap().expect("every write lands").0);
        }
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(versions.len(), 32, "each write has its own version");
        let history = store
            .setting_history("spawners.stop_grace", 100)
            .await
            .unwrap();
        assert_eq!(history.len(), 32);
    }
}
