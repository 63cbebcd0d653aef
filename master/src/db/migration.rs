//! Schema migrations, run at start. Additive only: never edit a migration that shipped.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(MetricSamples),
            Box::new(Builds),
            Box::new(SpawnSettings),
            Box::new(InstanceDisplayName),
            Box::new(Fleets),
            Box::new(Settings),
            Box::new(SpawnerCerts),
        ]
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

struct Builds;

impl MigrationName for Builds {
    fn name(&self) -> &str {
        "m0003_builds"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Builds {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let serial = match db.get_database_backend() {
            DatabaseBackend::Postgres => "BIGSERIAL PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        let statements = [
            "CREATE TABLE builds (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                size BIGINT NOT NULL,
                format TEXT NOT NULL,
                manifest TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                chunk_count BIGINT NOT NULL,
                file_count BIGINT NOT NULL,
                unpacked_bytes BIGINT NOT NULL,
                UNIQUE (name, version)
            )"
            .to_owned(),
            // A build's archive is its chunks in `seq` order; a chunk shared by several builds
            // has one row per build and one blob on disk.
            "CREATE TABLE build_chunks (
                build_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                size BIGINT NOT NULL,
                PRIMARY KEY (build_id, seq)
            )"
            .to_owned(),
            "CREATE INDEX build_chunks_sha256 ON build_chunks(sha256)".to_owned(),
            // The version of a name active on the spawners a selector (canonical JSON, keys
            // sorted) picks: one row per (name, selector).
            "CREATE TABLE build_activations (
                name TEXT NOT NULL,
                selector TEXT NOT NULL,
                build_id TEXT NOT NULL,
                activated_at BIGINT NOT NULL,
                activated_by TEXT NOT NULL,
                PRIMARY KEY (name, selector)
            )"
            .to_owned(),
            // Every activation ever made, so a rollback can find the version active before.
            format!(
                "CREATE TABLE build_activation_history (
                id {serial},
                name TEXT NOT NULL,
                selector TEXT NOT NULL,
                build_id TEXT NOT NULL,
                activated_at BIGINT NOT NULL,
                activated_by TEXT NOT NULL
            )"
            ),
            "CREATE INDEX build_activation_history_key ON build_activation_history(name, selector)"
                .to_owned(),
            "ALTER TABLE instances ADD COLUMN build_name TEXT NOT NULL DEFAULT ''".to_owned(),
        ];
        for sql in statements {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP TABLE build_activation_history",
            "DROP TABLE build_activations",
            "DROP TABLE build_chunks",
            "DROP TABLE builds",
            "ALTER TABLE instances DROP COLUMN build_name",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

struct SpawnSettings;

impl MigrationName for SpawnSettings {
    fn name(&self) -> &str {
        "m0004_spawn_settings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SpawnSettings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // What each spawn asked for (env, args, restart, health), so a rollout can spawn the
        // same instance on another version.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE instances ADD COLUMN spawn_settings TEXT NOT NULL DEFAULT ''",
            )
            .await?;
        Ok(())
    }
}

struct InstanceDisplayName;

impl MigrationName for InstanceDisplayName {
    fn name(&self) -> &str {
        "m0005_instance_display_name"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for InstanceDisplayName {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A name people give an instance; the master alone knows it (spawners never report it).
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE instances ADD COLUMN display_name TEXT NOT NULL DEFAULT ''",
            )
            .await?;
        Ok(())
    }
}

struct Fleets;

impl MigrationName for Fleets {
    fn name(&self) -> &str {
        "m0006_fleets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Fleets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A fleet's spec is the protobuf encoding of FleetSpec, in hex: one column that
        // grows with the message instead of a migration per field.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE fleets (
                    name TEXT PRIMARY KEY NOT NULL,
                    spec TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    updated_at BIGINT NOT NULL
                )",
            )
            .await?;
        Ok(())
    }
}

struct Settings;

impl MigrationName for Settings {
    fn name(&self) -> &str {
        "m0010_settings"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Settings {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let serial = match db.get_database_backend() {
            DatabaseBackend::Postgres => "BIGSERIAL PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        // Values set (a key with no row takes its default); scope '' is global. Every change
        // is a row of setting_changes, whose id is the settings version it made.
        db.execute_unprepared(
            "CREATE TABLE settings (
                key TEXT NOT NULL,
                scope TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_by TEXT NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (key, scope)
            )",
        )
        .await?;
        db.execute_unprepared(&format!(
            "CREATE TABLE setting_changes (
                id {serial},
                key TEXT NOT NULL,
                scope TEXT NOT NULL,
                old_value TEXT,
                new_value TEXT,
                actor TEXT NOT NULL,
                at BIGINT NOT NULL
            )"
        ))
        .await?;
        db.execute_unprepared("CREATE INDEX setting_changes_key ON setting_changes(key, id)")
            .await?;
        Ok(())
    }
}

struct SpawnerCerts;

impl MigrationName for SpawnerCerts {
    fn name(&self) -> &str {
        "m0012_spawner_certs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SpawnerCerts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Client certificates issued to spawners at enrollment (spawner mTLS), by serial;
        // removing a spawner revokes its certificates. Rows outlive their spawner so a
        // revoked serial stays refused.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE spawner_certs (
                serial TEXT PRIMARY KEY NOT NULL,
                spawner_id TEXT NOT NULL,
                issued_at BIGINT NOT NULL,
                revoked_at BIGINT
            )",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX spawner_certs_spawner ON spawner_certs(spawner_id)")
            .await?;
        Ok(())
    }
}
