//! Named database queries. Everything the master persists goes through here.

mod builds;
mod fleets;
mod settings;
mod spawner_certs;

pub use fleets::StoredFleet;
pub use settings::SettingWrite;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::db::entities::{
    api_token, audit, enrollment_token, instance, metric_sample, session, spawner, user,
};
use crate::error::{Error, Result};
use crate::model::Sample;
use crate::model::{InstanceRecord, Labels, PortSpec, SpawnerInfo};
use exile_api::v1 as pb;

/// The master's persistent store.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Bumped after every change that ends or weakens a credential (a session deleted, a
    /// token revoked, a user deleted or changed, a spawner removed), so the principal cache
    /// in [`crate::auth`] drops what it holds on the very next call. Any new method that
    /// ends or weakens a credential must begin with [`Store::revoking`]. Open streams watch
    /// it too, to end when their caller's credential no longer holds.
    credential_epoch: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

/// Moves the credential epoch on when dropped (see [`Store::revoking`]).
struct EpochBump<'a>(&'a tokio::sync::watch::Sender<u64>);

impl Drop for EpochBump<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|e| *e += 1);
    }
}

/// Which audit entries to list; empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Text the actor contains.
    pub actor: String,
    /// Text the action contains.
    pub action: String,
    /// Text the target contains.
    pub target: String,
    /// "ok", "failed" or an exact result.
    pub outcome: String,
    /// Earliest time, Unix ms; 0: none.
    pub from_unix_ms: i64,
    /// Time bound (exclusive), Unix ms; 0: none.
    pub to_unix_ms: i64,
}

/// One audit entry to write.
#[derive(Clone, Debug, Default)]
pub struct AuditRecord {
    /// When, Unix ms.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// RPC name.
    pub action: String,
    /// Target id.
    pub target: String,
    /// "ok" or an error code.
    pub result: String,
    /// Error message or detail.
    pub detail: String,
    /// Client address.
    pub peer: String,
}

impl Store {
    /// Wraps an open connection.
    pub fn new(db: DatabaseConnection) -> Self {
        Store {
            db,
            credential_epoch: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The credential epoch: changes after any credential was ended or weakened.
    pub fn credential_epoch(&self) -> u64 {
        *self.credential_epoch.borrow()
    }

    /// Wakes after every change of the credential epoch.
    pub fn credential_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.credential_epoch.subscribe()
    }

    /// Call first in a method that ends or weakens credentials: when the method returns
    /// (after its writes, whatever their outcome), the epoch moves on. A lookup that read
    /// the old rows meanwhile cached them under the old epoch, so they are dropped too.
    fn revoking(&self) -> EpochBump<'_> {
        EpochBump(&self.credential_epoch)
    }

    // ---- users ----

    /// Number of users.
    pub async fn count_users(&self) -> Result<u64> {
        Ok(user::Entity::find().count(&self.db).await?)
    }

    /// Creates a user; fails with AlreadyExists when the name is taken.
    pub async fn insert_user(&self, u: user::Model) -> Result<()> {
        if user::Entity::find_by_id(u.username.clone())
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(Error::AlreadyExists(format!(
                "user {} exists already",
                u.username
            )));
        }
        user::Entity::insert(user::ActiveModel {
            username: Set(u.username),
            password_hash: Set(u.password_hash),
            role: Set(u.role),
            created_at: Set(u.created_at),
        })
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// Looks a user up by name.
    pub async fn get_user(&self, username: &str) -> Result<Option<user::Model>> {
        Ok(user::Entity::find_by_id(username.to_owned())
            .one(&self.db)
            .await?)
    }

    /// All users, by name.
    pub async fn list_users(&self) -> Result<Vec<user::Model>> {
        Ok(user::Entity::find()
            .order_by_asc(user::Column::Username)
            .all(&self.db)
            .await?)
    }

    /// Deletes a user and its sessions; false when it did not exist.
    pub async fn delete_user(&self, username: &str) -> Result<bool> {
        let _epoch = self.revoking();
        session::Entity::delete_many()
            .filter(session::Column::Username.eq(username))
            .exec(&self.db)
            .await?;
        // API tokens belong to the user who made them and end with that user.
        self.revoke_tokens_of(username, None).await?;
        let r = user::Entity::delete_by_id(username.to_owned())
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Replaces a user's password hash.
    pub async fn set_password(&self, username: &str, hash: String) -> Result<()> {
        let _epoch = self.revoking();
        user::Entity::update_many()
            .col_expr(
                user::Column::PasswordHash,
                sea_orm::sea_query::Expr::value(hash),
            )
            .filter(user::Column::Username.eq(username))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ---- sessions ----

    /// Stores a new session.
    pub async fn insert_session(&self, s: session::Model) -> Result<()> {
        session::Entity::insert(session::ActiveModel {
            token_hash: Set(s.token_hash),
            username: Set(s.username),
            created_at: Set(s.created_at),
            last_used_at: Set(s.last_used_at),
            expires_at: Set(s.expires_at),
            peer: Set(s.peer),
        })
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// A session and its user, by token hash.
    pub async fn get_session(&self, hash: &str) -> Result<Option<(session::Model, user::Model)>> {
        let Some(s) = session::Entity::find_by_id(hash.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let Some(u) = self.get_user(&s.username).await? else {
            return Ok(None);
        };
        Ok(Some((s, u)))
    }

    /// Records use of a session (sliding idle timeout).
    pub async fn touch_session(&self, hash: &str, at: i64) -> Result<()> {
        session::Entity::update_many()
            .col_expr(
                session::Column::LastUsedAt,
                sea_orm::sea_query::Expr::value(at),
            )
            .filter(session::Column::TokenHash.eq(hash))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes one session.
    pub async fn delete_session(&self, hash: &str) -> Result<()> {
        let _epoch = self.revoking();
        session::Entity::delete_by_id(hash.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes every session of a user but `keep`.
    pub async fn delete_sessions_of(&self, username: &str, keep: &str) -> Result<()> {
        let _epoch = self.revoking();
        session::Entity::delete_many()
            .filter(session::Column::Username.eq(username))
            .filter(session::Column::TokenHash.ne(keep))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes sessions past their expiry or idle timeout.
    pub async fn delete_stale_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        let r = session::Entity::delete_many()
            .filter(
                sea_orm::Condition::any()
                    .add(session::Column::ExpiresAt.lte(now))
                    .add(session::Column::LastUsedAt.lt(idle_before)),
            )
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    // ---- API tokens ----

    /// Stores a new API token.
    pub async fn insert_api_token(&self, t: api_token::Model) -> Result<()> {
        api_token::Entity::insert(api_token::ActiveModel {
            id: Set(t.id),
            name: Set(t.name),
            token_hash: Set(t.token_hash),
            role: Set(t.role),
            created_by: Set(t.created_by),
            created_at: Set(t.created_at),
            expires_at: Set(t.expires_at),
            revoked: Set(t.revoked),
        })
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// An API token by hash.
    pub async fn get_api_token_by_hash(&self, hash: &str) -> Result<Option<api_token::Model>> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await?)
    }

    /// All API tokens, newest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<api_token::Model>> {
        Ok(api_token::Entity::find()
            .order_by_desc(api_token::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Revokes the API tokens `username` made: all, or those whose role is above `above`.
    async fn revoke_tokens_of(
        &self,
        username: &str,
        above: Option<crate::model::Role>,
    ) -> Result<()> {
        let theirs = api_token::Entity::find()
            .filter(api_token::Column::CreatedBy.eq(username))
            .filter(api_token::Column::Revoked.eq(false))
            .all(&self.db)
            .await?;
        let ids: Vec<String> = theirs
            .into_iter()
            .filter(|t| {
                above.is_none_or(|max| crate::model::Role::parse(&t.role).is_none_or(|r| r > max))
            })
            .map(|t| t.id)
            .collect();
        if !ids.is_empty() {
            api_token::Entity::update_many()
                .col_expr(
                    api_token::Column::Revoked,
                    sea_orm::sea_query::Expr::value(true),
                )
                .filter(api_token::Column::Id.is_in(ids))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Revokes an API token; false when it does not exist.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let _epoch = self.revoking();
        let r = api_token::Entity::update_many()
            .col_expr(
                api_token::Column::Revoked,
                sea_orm::sea_query::Expr::value(true),
            )
            .filter(api_token::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    // ---- enrollment tokens ----

    /// Stores a new enrollment token.
    pub async fn insert_enrollment_token(&self, t: enrollment_token::Model) -> Result<()> {
        enrollment_token::Entity::insert(enrollment_token::ActiveModel {
            id: Set(t.id),
            token_hash: Set(t.token_hash),
            description: Set(t.description),
            created_by: Set(t.created_by),
            created_at: Set(t.created_at),
            expires_at: Set(t.expires_at),
            used_by_spawner: Set(t.used_by_spawner),
            revoked: Set(t.revoked),
        })
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// All enrollment tokens, newest first.
    pub async fn list_enrollment_tokens(&self) -> Result<Vec<enrollment_token::Model>> {
        Ok(enrollment_token::Entity::find()
            .order_by_desc(enrollment_token::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Revokes an unused enrollment token; false when no such unused token exists.
    pub async fn revoke_enrollment_token(&self, id: &str) -> Result<bool> {
        let r = enrollment_token::Entity::update_many()
            .col_expr(
                enrollment_token::Column::Revoked,
                sea_orm::sea_query::Expr::value(true),
            )
            .filter(enrollment_token::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Marks a valid token used by `spawner_id`, atomically: exactly one caller wins.
    /// Returns false when the token is unknown, used, revoked or expired.
    pub async fn consume_enrollment_token(
        &self,
        hash: &str,
        spawner_id: &str,
        now: i64,
    ) -> Result<bool> {
        let r = enrollment_token::Entity::update_many()
            .col_expr(
                enrollment_token::Column::UsedBySpawner,
                sea_orm::sea_query::Expr::value(spawner_id.to_owned()),
            )
            .filter(enrollment_token::Column::TokenHash.eq(hash))
            .filter(enrollment_token::Column::UsedBySpawner.eq(""))
            .filter(enrollment_token::Column::Revoked.eq(false))
            .filter(enrollment_token::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    // ---- spawners ----

    /// Stores a newly enrolled spawner with its credential hash.
    pub async fn insert_spawner(&self, info: &SpawnerInfo, credential_hash: String) -> Result<()> {
        let mut am = spawner_active(info);
        am.credential_hash = Set(credential_hash);
        spawner::Entity::insert(am).exec(&self.db).await?;
        Ok(())
    }

    /// Updates a spawner's durable facts (never its credential). A spawner removed in the
    /// meantime stays removed.
    pub async fn update_spawner(&self, info: &SpawnerInfo) -> Result<()> {
        update_spawner_on(&self.db, info).await
    }

    /// The spawner id a credential hash belongs to.
    pub async fn spawner_by_credential(&self, hash: &str) -> Result<Option<String>> {
        Ok(spawner::Entity::find()
            .filter(spawner::Column::CredentialHash.eq(hash))
            .one(&self.db)
            .await?
            .map(|m| m.id))
    }

    /// Deletes a spawner (and so its credential) and its instances.
    pub async fn delete_spawner(&self, id: &str) -> Result<()> {
        let _epoch = self.revoking();
        instance::Entity::delete_many()
            .filter(instance::Column::SpawnerId.eq(id))
            .exec(&self.db)
            .await?;
        spawner::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// All spawners.
    pub async fn list_spawners(&self) -> Result<Vec<SpawnerInfo>> {
        let rows = spawner::Entity::find().all(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|m| SpawnerInfo {
                labels: serde_json::from_str::<Labels>(&m.labels).unwrap_or_default(),
                capacity: u32::try_from(m.capacity).unwrap_or(0),
                id: m.id,
                name: m.name,
                region: m.region,
                host: m.host,
                advertised_address: m.advertised_address,
                agent_version: m.agent_version,
                active_build: m.active_build,
                drained: m.drained,
                enrolled_at: m.enrolled_at,
                last_seen_at: m.last_seen_at,
            })
            .collect())
    }

    // ---- instances ----

    /// Inserts or replaces an instance.
    pub async fn upsert_instance(&self, r: &InstanceRecord) -> Result<()> {
        upsert_instance_on(&self.db, r).await
    }

    /// Sets an instance's display name (empty: none).
    pub async fn set_instance_display_name(&self, id: &str, name: &str) -> Result<()> {
        instance::Entity::update_many()
            .col_expr(
                instance::Column::DisplayName,
                sea_orm::sea_query::Expr::value(name.to_owned()),
            )
            .filter(instance::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Display names of the instances that have one, by id.
    pub async fn instance_display_names(&self) -> Result<Vec<(String, String)>> {
        let rows = instance::Entity::find()
            .filter(instance::Column::DisplayName.ne(""))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|m| (m.id, m.display_name)).collect())
    }

    /// Deletes an instance.
    pub async fn delete_instance(&self, id: &str) -> Result<()> {
        instance::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Writes a batch of registry changes in one transaction: one commit for the lot instead
    /// of one per change (an allocation alone changes an instance two or three times). When
    /// the batch fails as a whole, its writes are retried one by one so that one bad row
    /// does not lose the others; those that still fail are returned with their errors.
    pub async fn write_batch(&self, ops: &[Write]) -> Vec<Error> {
        // Only the last write of each row matters: an instance allocated, confirmed and
        // released within one batch is one upsert.
        let mut seen = std::collections::HashSet::new();
        let mut last: Vec<&Write> = ops
            .iter()
            .rev()
            .filter(|op| seen.insert(op.key()))
            .collect();
        last.reverse();
        // Names after rows: a name given to an instance whose row is written in the same
        // batch must find the row.
        last.sort_by_key(|op| matches!(op, Write::DisplayName { .. }));
        let ops = last;
        let attempt = async {
            let tx = crate::db::begin_write(&self.db).await?;
            // Runs of instance rows go out as multi-row upserts; the order of the writes is
            // otherwise kept.
            let mut rows: Vec<&InstanceRecord> = Vec::new();
            for op in &ops {
                if let Write::Instance(r) = op {
                    rows.push(r);
                    continue;
                }
                upsert_instances_on(&tx, &rows).await?;
                rows.clear();
                write_on(&tx, op).await?;
            }
            upsert_instances_on(&tx, &rows).await?;
            tx.commit().await?;
            Ok::<(), Error>(())
        };
        if attempt.await.is_ok() {
            return Vec::new();
        }
        let mut errors = Vec::new();
        for op in ops {
            if let Err(e) = write_on(&self.db, op).await {
                errors.push(e);
            }
        }
        errors
    }

    /// All instances.
    pub async fn list_instances(&self) -> Result<Vec<InstanceRecord>> {
        let rows = instance::Entity::find().all(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|m| InstanceRecord {
                state: pb::InstanceState::from_str_name(&m.state)
                    .unwrap_or(pb::InstanceState::Unknown),
                ports: serde_json::from_str::<Vec<PortSpec>>(&m.ports).unwrap_or_default(),
                labels: serde_json::from_str::<Labels>(&m.labels).unwrap_or_default(),
                pid: u32::try_from(m.pid).unwrap_or(0),
                restart_count: u32::try_from(m.restart_count).unwrap_or(0),
                players: u32::try_from(m.players).unwrap_or(0),
                max_players: u32::try_from(m.max_players).unwrap_or(0),
                exit_code: m.exit_code.and_then(|c| i32::try_from(c).ok()),
                resources: pb::Resources::default(),
                id: m.id,
                spawner_id: m.spawner_id,
                build_version: m.build_version,
                build_name: m.build_name,
                spawn: crate::model::SpawnSettings::decode(&m.spawn_settings),
                created_at: m.created_at,
                started_at: m.started_at,
                state_changed_at: m.state_changed_at,
                message: m.message,
                revision: 0,
            })
            .collect())
    }

    // ---- audit ----

    /// Appends an audit entry.
    pub async fn insert_audit(&self, a: AuditRecord) -> Result<()> {
        audit::Entity::insert(audit::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            at: Set(a.at),
            actor: Set(a.actor),
            action: Set(a.action),
            target: Set(a.target),
            result: Set(a.result),
            detail: Set(a.detail),
            peer: Set(a.peer),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Audit entries matching `f`, newest first, older than `before_id` when it is positive.
    pub async fn list_audit(
        &self,
        limit: u64,
        before_id: i64,
        f: &AuditFilter,
    ) -> Result<Vec<audit::Model>> {
        let mut q = audit::Entity::find().order_by_desc(audit::Column::Id);
        if before_id > 0 {
            q = q.filter(audit::Column::Id.lt(before_id));
        }
        // SQLite's LIKE ignores ASCII case, which is what a search box wants.
        for (col, text) in [
            (audit::Column::Actor, &f.actor),
            (audit::Column::Action, &f.action),
            (audit::Column::Target, &f.target),
        ] {
            if !text.is_empty() {
                q = q.filter(col.contains(text.as_str()));
            }
        }
        match f.outcome.as_str() {
            "" => {}
            "failed" => q = q.filter(audit::Column::Result.ne("ok")),
            o => q = q.filter(audit::Column::Result.eq(o)),
        }
        if f.from_unix_ms > 0 {
            q = q.filter(audit::Column::At.gte(f.from_unix_ms));
        }
        if f.to_unix_ms > 0 {
            q = q.filter(audit::Column::At.lt(f.to_unix_ms));
        }
        Ok(q.limit(limit).all(&self.db).await?)
    }

    /// Sets a user's role; false when there is no such user.
    pub async fn set_role(&self, username: &str, role: crate::model::Role) -> Result<bool> {
        // Cached principals carry the old role; a token of the user's above the new role
        // would outrank its owner, so it is revoked.
        let _epoch = self.revoking();
        self.revoke_tokens_of(username, Some(role)).await?;
        let role = role.as_str();
        let r = user::Entity::update_many()
            .col_expr(
                user::Column::Role,
                sea_orm::sea_query::Expr::value(role.to_owned()),
            )
            .filter(user::Column::Username.eq(username))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    // ---- metrics ----

    /// Writes minute samples (a minute written twice keeps the later value).
    pub async fn insert_metric_samples(&self, samples: Vec<(String, Sample)>) -> Result<()> {
        for chunk in samples.chunks(500) {
            let rows = chunk.iter().map(|(k, p)| metric_sample::ActiveModel {
                target: Set(k.clone()),
                at: Set(p.at),
                cpu: Set(f64::from(p.cpu)),
                memory: Set(i64::try_from(p.memory).unwrap_or(i64::MAX)),
                disk: Set(i64::try_from(p.disk).unwrap_or(i64::MAX)),
                players: Set(i64::from(p.players)),
            });
            metric_sample::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([metric_sample::Column::Target, metric_sample::Column::At])
                        .update_columns([
                            metric_sample::Column::Cpu,
                            metric_sample::Column::Memory,
                            metric_sample::Column::Disk,
                            metric_sample::Column::Players,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Minute samples of one series in [from, to).
    pub async fn metric_samples(&self, target: &str, from: i64, to: i64) -> Result<Vec<Sample>> {
        let rows = metric_sample::Entity::find()
            .filter(metric_sample::Column::Target.eq(target))
            .filter(metric_sample::Column::At.gte(from))
            .filter(metric_sample::Column::At.lt(to))
            .order_by_asc(metric_sample::Column::At)
            .all(&self.db)
            .await?;
        #[allow(clippy::cast_possible_truncation)]
        Ok(rows
            .into_iter()
            .map(|m| Sample {
                at: m.at,
                cpu: m.cpu as f32,
                players: u32::try_from(m.players).unwrap_or(0),
                memory: u64::try_from(m.memory).unwrap_or(0),
                disk: u64::try_from(m.disk).unwrap_or(0),
            })
            .collect())
    }

    /// Deletes samples older than `before`.
    pub async fn prune_metric_samples(&self, before: i64) -> Result<u64> {
        let r = metric_sample::Entity::delete_many()
            .filter(metric_sample::Column::At.lt(before))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }
}

fn spawner_active(info: &SpawnerInfo) -> spawner::ActiveModel {
    spawner::ActiveModel {
        id: Set(info.id.clone()),
        name: Set(info.name.clone()),
        credential_hash: sea_orm::ActiveValue::NotSet,
        region: Set(info.region.clone()),
        host: Set(info.host.clone()),
        advertised_address: Set(info.advertised_address.clone()),
        capacity: Set(i32::try_from(info.capacity).unwrap_or(i32::MAX)),
        labels: Set(serde_json::to_string(&info.labels).unwrap_or_else(|_| "{}".into())),
        agent_version: Set(info.agent_version.clone()),
        active_build: Set(info.active_build.clone()),
        drained: Set(info.drained),
        enrolled_at: Set(info.enrolled_at),
        last_seen_at: Set(info.last_seen_at),
    }
}

/// Inserts or replaces an instance, on `db` (the pool or a transaction).
async fn upsert_instance_on<C: ConnectionTrait>(db: &C, r: &InstanceRecord) -> Result<()> {
    upsert_instances_on(db, &[r]).await
}

/// Most instance rows in one statement (17 bound values each, far below SQLite's limit).
const ROWS_PER_UPSERT: usize = 256;

/// Inserts or replaces instances, many rows per statement: a batch of registry changes is
/// mostly instance rows, and one statement for many rows costs a fraction of one per row.
async fn upsert_instances_on<C: ConnectionTrait>(db: &C, rows: &[&InstanceRecord]) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let models = chunk.iter().map(|r| instance::ActiveModel {
            id: Set(r.id.clone()),
            spawner_id: Set(r.spawner_id.clone()),
            state: Set(r.state.as_str_name().to_owned()),
            build_version: Set(r.build_version.clone()),
            build_name: Set(r.build_name.clone()),
            spawn_settings: Set(r.spawn.encode()),
            ports: Set(serde_json::to_string(&r.ports).unwrap_or_else(|_| "[]".into())),
            pid: Set(i64::from(r.pid)),
            restart_count: Set(i64::from(r.restart_count)),
            labels: Set(serde_json::to_string(&r.labels).unwrap_or_else(|_| "{}".into())),
            players: Set(i64::from(r.players)),
            max_players: Set(i64::from(r.max_players)),
            created_at: Set(r.created_at),
            started_at: Set(r.started_at),
            state_changed_at: Set(r.state_changed_at),
            exit_code: Set(r.exit_code.map(i64::from)),
            message: Set(r.message.clone()),
            // Written by RenameInstance alone; a new row starts with the column's default.
            display_name: NotSet,
        });
        instance::Entity::insert_many(models)
            .on_conflict(
                OnConflict::column(instance::Column::Id)
                    .update_columns([
                        instance::Column::SpawnerId,
                        instance::Column::State,
                        instance::Column::BuildVersion,
                        instance::Column::BuildName,
                        instance::Column::Ports,
                        instance::Column::Pid,
                        instance::Column::RestartCount,
                        instance::Column::Labels,
                        instance::Column::Players,
                        instance::Column::MaxPlayers,
                        instance::Column::StartedAt,
                        instance::Column::StateChangedAt,
                        instance::Column::ExitCode,
                        instance::Column::Message,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Updates a spawner's durable facts on `db`; a spawner removed meanwhile stays removed.
async fn update_spawner_on<C: ConnectionTrait>(db: &C, info: &SpawnerInfo) -> Result<()> {
    match spawner::Entity::update(spawner_active(info)).exec(db).await {
        Ok(_) | Err(sea_orm::DbErr::RecordNotUpdated) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_on<C: ConnectionTrait>(db: &C, op: &Write) -> Result<()> {
    match op {
        Write::Spawner(info) => update_spawner_on(db, info).await,
        Write::Instance(r) => upsert_instance_on(db, r).await,
        Write::DeleteInstance(id) => {
            instance::Entity::delete_by_id(id.clone()).exec(db).await?;
            Ok(())
        }
        Write::DisplayName { id, name } => {
            instance::Entity::update_many()
                .col_expr(
                    instance::Column::DisplayName,
                    sea_orm::sea_query::Expr::value(name.clone()),
                )
                .filter(instance::Column::Id.eq(id))
                .exec(db)
                .await?;
            Ok(())
        }
    }
}

impl Write {
    /// What it writes: the table (0 spawners, 1 instance rows, 2 instance display names)
    /// and the row.
    fn key(&self) -> (u8, &str) {
        match self {
            Write::Spawner(info) => (0, info.id.as_str()),
            Write::Instance(r) => (1, r.id.as_str()),
            Write::DeleteInstance(id) => (1, id.as_str()),
            Write::DisplayName { id, .. } => (2, id.as_str()),
        }
    }
}

/// One registry change to persist.
#[derive(Debug)]
pub enum Write {
    /// A spawner's durable facts.
    Spawner(SpawnerInfo),
    /// An instance, inserted or replaced.
    Instance(Box<InstanceRecord>),
    /// An instance removed.
    DeleteInstance(String),
    /// The name people gave an instance (a column the instance upsert never writes).
    DisplayName {
        /// The instance.
        id: String,
        /// Its display name; empty clears it.
        name: String,
    },
}
