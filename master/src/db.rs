//! Database connection, schema migrations and the entity definitions.

pub mod entities;
mod migration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

use crate::error::{Error, Result};

/// Opens (creating it when needed) the database at `url` and runs pending migrations.
pub async fn open(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(8)
        .min_connections(1)
        .sqlx_logging(false);
    let db = Database::connect(opts).await.map_err(Error::Database)?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        // WAL lets readers (auth lookups, lists) proceed while a write is in progress.
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .await
        .map_err(Error::Database)?;
    }
    migration::Migrator::up(&db, None)
        .await
        .map_err(Error::Database)?;
    Ok(db)
}
