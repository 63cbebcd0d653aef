//! Schema migrations, run at start. Additive only: never edit a migration that shipped.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Initial), Box::new(MetricSamples)]
    }
}

struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let serial = match db.get_database_backend() {
            DatabaseBackend::Postgres => "BIGSERIAL PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        let statements = [
            "CREATE TABLE users (
                username TEXT PRIMARY KEY NOT NULL,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )"
            .to_owned(),
            "CREATE TABLE sessions (
                token_hash TEXT PRIMARY KEY NOT NULL,
                username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                peer TEXT NOT NULL
            )"
            .to_owned(),
            "CREATE INDEX sessions_username ON sessions(username)".to_owned(),
            "CREATE TABLE api_tokens (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked BOOLEAN NOT NULL
            )"
            .to_owned(),
            "CREATE TABLE enrollment_tokens (
                id TEXT PRIMARY KEY NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                description TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                used_by_spawner TEXT NOT NULL,
                revoked BOOLEAN NOT NULL
            )"
            .to_owned(),
            "CREATE TABLE spawners (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                credential_hash TEXT NOT NULL UNIQUE,
                region TEXT NOT NULL,
                host TEXT NOT NULL,
                advertised_address TEXT NOT NULL,
                capacity INTEGER NOT NULL,
                labels TEXT NOT NULL,
                agent_version TEXT NOT NULL,
                active_build TEXT NOT NULL,
                drained BOOLEAN NOT NULL,
                enrolled_at BIGINT NOT NULL,
                last_seen_at BIGINT NOT NULL
            )"
            .to_owned(),
            "CREATE TABLE instances (
                id TEXT PRIMARY KEY NOT NULL,
                spawner_id TEXT NOT NULL,
                state TEXT NOT NULL,
                build_version TEXT NOT NULL,
                ports TEXT NOT NULL,
                pid BIGINT NOT NULL,
                restart_count BIGINT NOT NULL,
                labels TEXT NOT NULL,
                players BIGINT NOT NULL,
                max_players BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                started_at BIGINT NOT NULL,
                state_changed_at BIGINT NOT NULL,
                exit_code BIGINT,
                message TEXT NOT NULL
            )"
            .to_owned(),
            "CREATE INDEX instances_spawner ON instances(spawner_id)".to_owned(),
            format!(
                "CREATE TABLE audit_log (
                id {serial},
                at BIGINT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                result TEXT NOT NULL,
                detail TEXT NOT NULL,
                peer TEXT NOT NULL
            )"
            ),
        ];
        for sql in statements {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "the initial schema cannot be rolled back".into(),
        ))
    }
}

struct MetricSamples;

impl MigrationName for MetricSamples {
    fn name(&self) -> &str {
        "m0002_metric_samples"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for MetricSamples {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE metric_samples (
                target TEXT NOT NULL,
                at BIGINT NOT NULL,
                cpu DOUBLE PRECISION NOT NULL,
                memory BIGINT NOT NULL,
                disk BIGINT NOT NULL,
                players BIGINT NOT NULL,
                PRIMARY KEY (target, at)
            )",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX metric_samples_at ON metric_samples(at)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE metric_samples")
            .await?;
        Ok(())
    }
}
