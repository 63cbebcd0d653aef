//! Client certificates issued to spawners (spawner mTLS) and their revocation.

use sea_orm::{ConnectionTrait, Statement, Value};

use super::Store;
use crate::error::Result;

impl Store {
    /// Records a certificate issued to `spawner_id`.
    pub async fn insert_spawner_cert(
        &self,
        serial: &str,
        spawner_id: &str,
        now: i64,
    ) -> Result<()> {
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO spawner_certs (serial, spawner_id, issued_at, revoked_at) \
                 VALUES (?, ?, ?, NULL)",
                [
                    Value::from(serial.to_owned()),
                    Value::from(spawner_id.to_owned()),
                    Value::from(now),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Revokes every certificate of `spawner_id`; returns their serials.
    pub async fn revoke_spawner_certs(&self, spawner_id: &str, now: i64) -> Result<Vec<String>> {
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "UPDATE spawner_certs SET revoked_at = ? WHERE spawner_id = ? AND revoked_at IS NULL",
                [Value::from(now), Value::from(spawner_id.to_owned())],
            ))
            .await?;
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                "SELECT serial FROM spawner_certs WHERE spawner_id = ? AND revoked_at IS NOT NULL",
                [Value::from(spawner_id.to_owned())],
            ))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String>("", "serial").ok())
            .collect())
    }

    /// Every revoked serial.
    pub async fn revoked_spawner_certs(&self) -> Result<Vec<String>> {
        let backend = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT serial FROM spawner_certs WHERE revoked_at IS NOT NULL",
            ))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String>("", "serial").ok())
            .collect())
    }
}
