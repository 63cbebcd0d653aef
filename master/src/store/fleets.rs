//! Queries of fleets: one row per fleet holding its spec.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};

use super::Store;
use crate::db::entities::fleet;
use crate::error::{Error, Result};
use exile_api::v1 as pb;

/// A fleet as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFleet {
    /// Name.
    pub name: String,
    /// Spec.
    pub spec: pb::FleetSpec,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl Store {
    /// Inserts a new fleet; ALREADY_EXISTS when the name is taken.
    pub async fn insert_fleet(&self, f: &StoredFleet) -> Result<()> {
        if fleet::Entity::find_by_id(f.name.clone())
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists(format!(
                "a fleet named {} exists already",
                f.name
            )));
        }
        self.save_fleet(f).await
    }

    /// Inserts or replaces a fleet.
    pub async fn save_fleet(&self, f: &StoredFleet) -> Result<()> {
        use prost::Message;
        let am = fleet::ActiveModel {
            name: Set(f.name.clone()),
            spec: Set(hex::encode(f.spec.encode_to_vec())),
            created_at: Set(f.created_at),
            updated_at: Set(f.updated_at),
        };
        fleet::Entity::insert(am)
            .on_conflict(
                OnConflict::column(fleet::Column::Name)
                    .update_columns([fleet::Column::Spec, fleet::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes a fleet; false when there was none.
    pub async fn delete_fleet(&self, name: &str) -> Result<bool> {
        let r = fleet::Entity::delete_by_id(name.to_owned())
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// All fleets by name. A row whose spec cannot be read is skipped with an error logged
    /// (it was written by this code, so that means a damaged database).
    pub async fn list_fleets(&self) -> Result<Vec<StoredFleet>> {
        use prost::Message;
        let rows = fleet::Entity::find()
            .order_by_asc(fleet::Column::Name)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|m| {
                let spec = hex::decode(&m.spec)
                    .ok()
                    .and_then(|b| pb::FleetSpec::decode(b.as_slice()).ok());
                match spec {
                    Some(spec) => Some(StoredFleet {
                        name: m.name,
                        spec,
                        created_at: m.created_at,
                        updated_at: m.updated_at,
                    }),
                    None => {
                        tracing::error!(fleet = %m.name, "unreadable fleet spec in the database; skipped");
                        None
                    }
                }
            })
            .collect())
    }
}
