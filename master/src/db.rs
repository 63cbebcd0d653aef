//! Database connection, schema migrations and the entity definitions.

pub mod entities;
mod migration;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::error::{Error, Result};

/// How long a statement waits for another connection's write to finish before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a transaction that writes: it takes the write lock at BEGIN (`BEGIN IMMEDIATE`),
/// waiting up to the busy timeout for another writer. A deferred one that reads first and
/// then writes fails at once with "database is locked" when another connection wrote in
/// between, since SQLite cannot upgrade its stale snapshot, and no wait helps.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> std::result::Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Opens (creating it when needed) the database at `url` and runs pending migrations.
pub async fn open(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(8)
        .min_connections(1)
        .sqlx_logging(false)
        // Per connection, not once: foreign keys, the sync level and the busy wait are
        // settings of each connection, and the pool opens up to eight.
        .map_sqlx_sqlite_opts(|o| {
            // WAL lets readers (auth lookups, lists) proceed while a write is in progress.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(BUSY_TIMEOUT)
        });
    let db = Database::connect(opts).await.map_err(Error::Database)?;
    migration::Migrator::up(&db, None)
        .await
        .map_err(Error::Database)?;
    Ok(db)
}
