//! Queries of uploaded builds: their rows and chunk lists, activations and their history.

use std::collections::HashSet;

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use crate::builds::{Activation, BuildMeta, Chunk, selector_json};
use crate::db::entities::{build, build_activation, build_activation_history, build_chunk};
use crate::error::{Error, Result};
use crate::model::Labels;
use exile_api::v1 as pb;

/// Most values bound in one `IN (…)`: well under SQLite's variable limit.
const IN_BATCH: usize = 500;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn meta_from(m: build::Model) -> BuildMeta {
    let mut meta = BuildMeta {
        format: pb::ArchiveFormat::from_str_name(&m.format)
            .unwrap_or(pb::ArchiveFormat::Unspecified),
        size: to_u64(m.size),
        chunk_count: u32::try_from(m.chunk_count).unwrap_or(0),
        file_count: to_u64(m.file_count),
        unpacked_bytes: to_u64(m.unpacked_bytes),
        id: m.id,
        name: m.name,
        version: m.version,
        sha256: m.sha256,
        manifest: m.manifest,
        created_by: m.created_by,
        created_at: m.created_at,
        command: String::new(),
        ports: Vec::new(),
    };
    if !meta.manifest.is_empty() {
        match exile_api::build::Manifest::parse(&meta.manifest) {
            Ok(parsed) => meta.describe(&parsed),
            // Checked at upload; a manifest rule that tightened since should not hide it.
            Err(e) => {
                tracing::warn!(build = %meta.reference(), error = %e, "stored manifest no longer parses")
            }
        }
    }
    meta
}

fn activation_from(m: build_activation::Model) -> Activation {
    Activation {
        selector: serde_json::from_str::<Labels>(&m.selector).unwrap_or_default(),
        name: m.name,
        build_id: m.build_id,
        activated_at: m.activated_at,
        activated_by: m.activated_by,
    }
}

impl Store {
    /// Stores a build and its chunk list in one transaction. AlreadyExists when its name and
    /// version are taken.
    pub async fn insert_build(&self, meta: &BuildMeta, chunks: &[Chunk]) -> Result<()> {
        let txn = crate::db::begin_write(&self.db).await?;
        let row = build::ActiveModel {
            id: Set(meta.id.clone()),
            name: Set(meta.name.clone()),
            version: Set(meta.version.clone()),
            sha256: Set(meta.sha256.clone()),
            size: Set(to_i64(meta.size)),
            format: Set(meta.format.as_str_name().to_owned()),
            manifest: Set(meta.manifest.clone()),
            created_by: Set(meta.created_by.clone()),
            created_at: Set(meta.created_at),
            chunk_count: Set(i64::from(meta.chunk_count)),
            file_count: Set(to_i64(meta.file_count)),
            unpacked_bytes: Set(to_i64(meta.unpacked_bytes)),
        };
        if let Err(e) = build::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
        {
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) {
                return Err(Error::AlreadyExists(format!(
                    "{} exists already; upload under another version or delete it first",
                    meta.reference()
                )));
            }
            return Err(e.into());
        }
        for (b, batch) in chunks.chunks(IN_BATCH).enumerate() {
            let first = b * IN_BATCH;
            let rows = batch
                .iter()
                .enumerate()
                .map(|(i, c)| build_chunk::ActiveModel {
                    build_id: Set(meta.id.clone()),
                    seq: Set(i64::try_from(first + i).unwrap_or(i64::MAX)),
                    sha256: Set(c.sha256.clone()),
                    size: Set(i64::from(c.size)),
                });
            build_chunk::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Every build.
    pub async fn list_builds(&self) -> Result<Vec<BuildMeta>> {
        Ok(build::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(meta_from)
            .collect())
    }

    /// Whether a build of this name and version is stored.
    pub async fn build_exists(&self, name: &str, version: &str) -> Result<bool> {
        Ok(build::Entity::find()
            .filter(build::Column::Name.eq(name))
            .filter(build::Column::Version.eq(version))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// A build's chunks in archive order.
    pub async fn build_chunks(&self, build_id: &str) -> Result<Vec<Chunk>> {
        Ok(build_chunk::Entity::find()
            .filter(build_chunk::Column::BuildId.eq(build_id))
            .order_by_asc(build_chunk::Column::Seq)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| Chunk {
                sha256: m.sha256,
                size: u32::try_from(m.size).unwrap_or(0),
            })
            .collect())
    }

    /// Which of `hashes` some stored build uses.
    pub async fn referenced_chunks(&self, hashes: &[String]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for batch in hashes.chunks(IN_BATCH) {
            let found: Vec<String> = build_chunk::Entity::find()
                .select_only()
                .column(build_chunk::Column::Sha256)
                .filter(build_chunk::Column::Sha256.is_in(batch.iter().cloned()))
                .distinct()
                .into_tuple()
                .all(&self.db)
                .await?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Every chunk hash some stored build uses.
    pub async fn all_chunk_hashes(&self) -> Result<HashSet<String>> {
        let found: Vec<String> = build_chunk::Entity::find()
            .select_only()
            .column(build_chunk::Column::Sha256)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(found.into_iter().collect())
    }

    /// Deletes a build, its chunk rows and its activation history in one transaction;
    /// returns the chunks it had (the caller collects those no other build uses). Refused
    /// while the build is activated anywhere.
    pub async fn delete_build(&self, build_id: &str) -> Result<Vec<Chunk>> {
        let txn = crate::db::begin_write(&self.db).await?;
        // Write first: an SQLite transaction that reads and then writes fails (BUSY_SNAPSHOT)
        // when another connection wrote in between; one that starts by writing holds the
        // write lock from its first statement. Dropping `txn` on an error rolls this back.
        build::Entity::delete_by_id(build_id.to_owned())
            .exec(&txn)
            .await?;
        let active = build_activation::Entity::find()
            .filter(build_activation::Column::BuildId.eq(build_id))
            .one(&txn)
            .await?;
        if active.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "build {build_id} is activated; activate another version first"
            )));
        }
        let chunks = build_chunk::Entity::find()
            .filter(build_chunk::Column::BuildId.eq(build_id))
            .order_by_asc(build_chunk::Column::Seq)
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| Chunk {
                sha256: m.sha256,
                size: u32::try_from(m.size).unwrap_or(0),
            })
            .collect();
        build_chunk::Entity::delete_many()
            .filter(build_chunk::Column::BuildId.eq(build_id))
            .exec(&txn)
            .await?;
        build_activation_history::Entity::delete_many()
            .filter(build_activation_history::Column::BuildId.eq(build_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(chunks)
    }

    /// Every activation.
    pub async fn list_activations(&self) -> Result<Vec<Activation>> {
        Ok(build_activation::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(activation_from)
            .collect())
    }

    /// Sets the activation of a name and selector (replacing the one before) and records it
    /// in the history, in one transaction.
    pub async fn activate_build(&self, a: &Activation) -> Result<()> {
        let selector = a.selector_json();
        let txn = crate::db::begin_write(&self.db).await?;
        build_activation::Entity::insert(build_activation::ActiveModel {
            name: Set(a.name.clone()),
            selector: Set(selector.clone()),
            build_id: Set(a.build_id.clone()),
            activated_at: Set(a.activated_at),
            activated_by: Set(a.activated_by.clone()),
        })
        .on_conflict(
            OnConflict::columns([
                build_activation::Column::Name,
                build_activation::Column::Selector,
            ])
            .update_columns([
                build_activation::Column::BuildId,
                build_activation::Column::ActivatedAt,
                build_activation::Column::ActivatedBy,
            ])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        build_activation_history::Entity::insert(build_activation_history::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            name: Set(a.name.clone()),
            selector: Set(selector),
            build_id: Set(a.build_id.clone()),
            activated_at: Set(a.activated_at),
            activated_by: Set(a.activated_by.clone()),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The build that was active for a name and selector before `current`: the newest
    /// history entry naming another build that still exists (what a rollback returns to).
    pub async fn previous_activation(
        &self,
        name: &str,
        selector: &Labels,
        current: &str,
    ) -> Result<Option<String>> {
        // Deleting a build removes its history, so the newest row names one that exists.
        Ok(build_activation_history::Entity::find()
            .filter(build_activation_history::Column::Name.eq(name))
            .filter(build_activation_history::Column::Selector.eq(selector_json(selector)))
            .filter(build_activation_history::Column::BuildId.ne(current))
            .order_by_desc(build_activation_history::Column::Id)
            .one(&self.db)
            .await?
            .map(|m| m.build_id))
    }
}
