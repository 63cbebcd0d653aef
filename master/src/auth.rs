//! Passwords, secrets, sessions and API tokens: who a caller is.

mod cache;
pub mod throttle;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::entities::{session, user};
use crate::error::{Error, Result};
use crate::model::{Principal, Role};
use crate::store::Store;
use exile_api::now_unix_ms;
use throttle::{Key, Throttle};

/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "exs_";
/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "exa_";
/// Prefix of enrollment tokens.
pub const ENROLLMENT_PREFIX: &str = "exe_";
/// Prefix of spawner credentials.
pub const CREDENTIAL_PREFIX: &str = "exc_";

/// A new random secret: prefix + 256 bits in hex.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A new short random id with a prefix, e.g. `inst-3f9a1c2b7d4e`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// SHA-256 of a high-entropy secret, the only form in which secrets are stored.
/// (Passwords are low-entropy and use argon2id instead.)
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with argon2id. CPU-heavy: call from a blocking task.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hash: {e}")))
}

/// Checks a password against a stored hash. CPU-heavy: call from a blocking task.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a new password's strength.
pub fn check_password_policy(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(Error::InvalidArgument(
            "password: must be at least 8 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::InvalidArgument(
            "password: must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// Checks a user name.
pub fn check_username(name: &str) -> Result<()> {
    if exile_api::limits::is_plain_name(name, 64) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "username: 1 to 64 characters of letters, digits, '.', '_' or '-'".into(),
        ))
    }
}

/// Session lifetimes.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login whatever its use.
    pub max_age: Duration,
}

/// Authentication: turns bearer tokens into principals and passwords into sessions.
pub struct Auth {
    store: Store,
    /// std RwLock: copied out at each use, never held across an await; settings replace it.
    policy: std::sync::RwLock<SessionPolicy>,
    /// Failure scores of logins and enrollments.
    throttle: Throttle,
    /// Password hashes allowed to run at once (argon2 is CPU- and memory-heavy).
    hash_slots: Arc<tokio::sync::Semaphore>,
    /// Logins waiting for a hash slot.
    hash_waiting: AtomicUsize,
    /// Password hashes run to check logins.
    password_hashes: AtomicU64,
    /// Logins and enrollments refused by the throttle.
    throttled: AtomicU64,
    /// Hash checked when a user does not exist, so timing does not reveal user names.
    dummy_hash: String,
    /// Principals of recently seen tokens (see [`cache`] for when entries are dropped).
    cache: cache::PrincipalCache,
}

/// Logins that may wait for a hash slot; more are refused at once.
const MAX_HASH_WAITING: usize = 32;

/// How long a login waits for a hash slot before it is refused.
const HASH_WAIT: Duration = Duration::from_secs(3);

/// Password hashes that run at once: one per core (at least two). Each argon2 check takes
/// 19 MiB and a core for a while, so a flood of logins cannot pile up hash work and memory
/// beyond that.
fn hash_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// A session's use is written to the store at most this often, ms.
const TOUCH_EVERY_MS: i64 = 60_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Auth {
    /// Session lifetimes in force.
    pub fn policy(&self) -> SessionPolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes after every change that ended or weakened a credential.
    pub fn credential_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.credential_changes()
    }

    /// Replaces the session lifetimes (settings changed); sessions are checked against the
    /// new ones from their next use.
    pub fn set_policy(&self, policy: SessionPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Creates the authenticator; `login_limits` gives the address-and-account throttle
    /// policy in force, read at each login.
    pub fn new(
        store: Store,
        policy: SessionPolicy,
        login_limits: throttle::PairPolicy,
    ) -> Result<Self> {
        Ok(Auth {
            store,
            policy: std::sync::RwLock::new(policy),
            throttle: Throttle::new(login_limits),
            hash_slots: Arc::new(tokio::sync::Semaphore::new(hash_slots())),
            hash_waiting: AtomicUsize::new(0),
            password_hashes: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            dummy_hash: hash_password("not a real password")?,
            cache: cache::PrincipalCache::default(),
        })
    }

    /// Creates the first admin when there is no user at all. Returns the generated password
    /// when none was given, so the caller can print it once.
    pub async fn bootstrap_admin(&self, password: Option<String>) -> Result<Option<String>> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (new_secret("")[..24].to_owned(), true),
        };
        check_password_policy(&password)?;
        let hash = blocking_hash(password.clone()).await?;
        self.store
            .insert_user(user::Model {
                username: "admin".into(),
                password_hash: hash,
                role: Role::Admin.as_str().into(),
                created_at: now_unix_ms(),
            })
            .await?;
        Ok(generated.then_some(password))
    }

    /// Checks a password and opens a session. Attempts are throttled per source, per source
    /// and account, and per account for sources that fail (see [`throttle`]); failures all
    /// say the same thing so they reveal nothing.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        peer: &str,
    ) -> Result<(String, i64, user::Model)> {
        let source = crate::client_addr::throttle_source(peer);
        let attempt = self
            .throttle
            .admit(
                vec![
                    Key::Source(source.clone()),
                    Key::Pair(source, username.to_owned()),
                ],
                vec![Key::User(username.to_owned())],
            )
            .map_err(|wait| self.refused("failed logins from this address", wait))?;
        let user = match self.store.get_user(username).await {
            Ok(u) => u,
            Err(e) => {
                attempt.not_judged();
                return Err(e);
            }
        };
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let ok = match self.check_password(hash, password.to_owned()).await {
            Ok(ok) => ok,
            Err(e) => {
                attempt.not_judged();
                return Err(e);
            }
        };
        let user = match (ok, user) {
            (true, Some(u)) => {
                attempt.succeeded();
                u
            }
            _ => {
                attempt.failed();
                return Err(Error::Unauthenticated("wrong user name or password".into()));
            }
        };
        let token = new_secret(SESSION_PREFIX);
        let now = now_unix_ms();
        let expires = now.saturating_add(ms(self.policy().max_age));
        self.store
            .insert_session(session::Model {
                token_hash: hash_secret(&token),
                username: user.username.clone(),
                created_at: now,
                last_used_at: now,
                expires_at: expires,
                peer: peer.to_owned(),
            })
            .await?;
        Ok((token, expires, user))
    }

    /// Admits an enrollment attempt from `peer`, throttled like logins. The caller settles
    /// the attempt: a used-up or unknown token is a failure.
    pub fn admit_enrollment(&self, peer: &str) -> Result<throttle::Attempt<'_>> {
        self.throttle
            .admit(
                vec![Key::Enroll(crate::client_addr::throttle_source(peer))],
                vec![],
            )
            .map_err(|wait| self.refused("failed enrollments from this address", wait))
    }

    /// Admits a ChangePassword check of the current password by the session `session_hash`,
    /// throttled per session. The caller settles the attempt: a wrong password is a failure.
    pub fn admit_password_change(&self, session_hash: &str) -> Result<throttle::Attempt<'_>> {
        self.throttle
            .admit(vec![Key::PasswordChange(session_hash.to_owned())], vec![])
            .map_err(|wait| self.refused("wrong current passwords from this session", wait))
    }

    fn refused(&self, what: &str, wait: Duration) -> Error {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        // Rounded up: "try again in 0 s" would be refused again.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Error::ResourceExhausted(format!("too many {what}; try again in {secs} s"))
    }

    /// A slot to run one password hash in, waiting a little when all are busy; refused
    /// rather than queued without bound when the master is flooded.
    async fn hash_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let busy = || {
            Error::Unavailable(
                "the master is checking too many passwords at once; try again in a few seconds"
                    .into(),
            )
        };
        if let Ok(slot) = self.hash_slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        if self.hash_waiting.fetch_add(1, Ordering::AcqRel) >= MAX_HASH_WAITING {
            self.hash_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        let got = tokio::time::timeout(HASH_WAIT, self.hash_slots.clone().acquire_owned()).await;
        self.hash_waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(busy()),
        }
    }

    /// Checks a password against a stored hash in one of the master's hash slots (see
    /// `hash_slots`): Unavailable when they are all busy for a while.
    pub async fn check_password(&self, hash: String, password: String) -> Result<bool> {
        let slot = self.hash_slot().await?;
        self.password_hashes.fetch_add(1, Ordering::Relaxed);
        // The slot moves into the task: a caller that goes away does not free it while the
        // hash still runs.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_password(&hash, &password)
        })
        .await
        .map_err(|e| Error::Internal(format!("verify task: {e}")))
    }

    /// Password hashes run to check passwords since start.
    pub fn password_hashes(&self) -> u64 {
        self.password_hashes.load(Ordering::Relaxed)
    }

    /// Logins and enrollments refused by the throttle since start.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Resolves a bearer token into a principal: from the cache while the entry is fresh and
    /// no credential changed since, else from the store.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let now = now_unix_ms();
        let hash = hash_secret(token);
        // Read before the lookup: a change that lands during it moves the epoch past this.
        let epoch = self.store.credential_epoch();
        if let Some(c) = self.cache.get(&hash, epoch)
            && self.still_valid(&c, now)
        {
            return Ok(c.principal);
        }
        let (principal, last_used_at) = self.lookup(token, &hash, now).await?;
        self.cache.put(hash, principal.clone(), last_used_at, epoch);
        Ok(principal)
    }

    /// Whether a cached principal may be used as is at `now`: not expired, and for a session
    /// not idle and not due for its use to be recorded (the store lookup does that).
    fn still_valid(&self, c: &cache::Cached, now: i64) -> bool {
        match &c.principal {
            Principal::User { expires_at, .. } => {
                *expires_at > now
                    && c.last_used_at
                        .saturating_add(ms(self.policy().idle_timeout))
                        > now
                    && now - c.last_used_at <= TOUCH_EVERY_MS
            }
            Principal::ApiToken { expires_at, .. } => *expires_at > now,
            Principal::Spawner { .. } => true,
            Principal::Anonymous => false,
        }
    }

    /// Resolves a token from the store; for a session also returns when it was last used.
    async fn lookup(&self, token: &str, hash: &str, now: i64) -> Result<(Principal, i64)> {
        let hash = hash.to_owned();
        if token.starts_with(SESSION_PREFIX) {
            let Some((s, u)) = self.store.get_session(&hash).await? else {
                return Err(Error::Unauthenticated(
                    "session is unknown, expired or revoked; log in again".into(),
                ));
            };
            let idle = ms(self.policy().idle_timeout);
            if s.expires_at <= now || s.last_used_at.saturating_add(idle) <= now {
                self.store.delete_session(&hash).await?;
                return Err(Error::Unauthenticated(
                    "session expired; log in again".into(),
                ));
            }
            // Sliding idle timeout, written at most once a minute rather than on every call.
            let mut last_used_at = s.last_used_at;
            if now - s.last_used_at > TOUCH_EVERY_MS {
                self.store.touch_session(&hash, now).await?;
                self.cache.touched(&hash, now);
                last_used_at = now;
            }
            let role = Role::parse(&u.role)
                .ok_or_else(|| Error::Internal(format!("bad role {}", u.role)))?;
            return Ok((
                Principal::User {
                    username: u.username,
                    role,
                    session_hash: hash,
                    expires_at: s.expires_at,
                },
                last_used_at,
            ));
        }
        if token.starts_with(API_TOKEN_PREFIX) {
            let Some(t) = self.store.get_api_token_by_hash(&hash).await? else {
                return Err(Error::Unauthenticated("API token is unknown".into()));
            };
            if t.revoked {
                return Err(Error::Unauthenticated(format!(
                    "API token {} was revoked",
                    t.name
                )));
            }
            if t.expires_at <= now {
                return Err(Error::Unauthenticated(format!(
                    "API token {} expired",
                    t.name
                )));
            }
            let role = Role::parse(&t.role)
                .ok_or_else(|| Error::Internal(format!("bad role {}", t.role)))?;
            return Ok((
                Principal::ApiToken {
                    id: t.id,
                    name: t.name,
                    role,
                    expires_at: t.expires_at,
                },
                0,
            ));
        }
        if token.starts_with(CREDENTIAL_PREFIX) {
            return match self.store.spawner_by_credential(&hash).await? {
                Some(id) => Ok((Principal::Spawner { id }, 0)),
                None => Err(Error::Unauthenticated(
                    "spawner credential is unknown or revoked".into(),
                )),
            };
        }
        Err(Error::Unauthenticated("malformed bearer token".into()))
    }

    /// Drops expired and idle sessions.
    pub async fn sweep_sessions(&self) -> Result<u64> {
        let now = now_unix_ms();
        self.store
            .delete_stale_sessions(now, now - ms(self.policy().idle_timeout))
            .await
    }
}

/// Hashes a password on the blocking pool.
pub async fn blocking_hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::Internal(format!("hash task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong horse"));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret(SESSION_PREFIX);
        let b = new_secret(SESSION_PREFIX);
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_ne!(hash_secret(&a), a);
        assert_eq!(hash_secret(&a), hash_secret(&a));
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(check_username("ops.team-1").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_password_policy("short").is_err());
        assert!(check_password_policy("long enough").is_ok());
    }

    #[tokio::test]
    async fn a_cached_token_fails_on_the_call_after_its_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::new(crate::db::open(&url).await.unwrap());
        let auth = Auth::new(
            store.clone(),
            SessionPolicy {
                idle_timeout: Duration::from_secs(3600),
                max_age: Duration::from_secs(86_400),
            },
            Box::new(|| throttle::policy::PAIR),
        )
        .unwrap();
        let secret = new_secret(API_TOKEN_PREFIX);
        store
            .insert_api_token(crate::db::entities::api_token::Model {
                id: "tok-1".into(),
                name: "mm".into(),
                token_hash: hash_secret(&secret),
                role: "allocator".into(),
                created_by: "admin".into(),
                created_at: 0,
                expires_at: now_unix_ms() + 3_600_000,
                revoked: false,
            })
            .await
            .unwrap();
        for _ in 0..2 {
            let p = auth.authenticate(&secret).await.unwrap();
            assert_eq!(p.role(), Some(Role::Allocator));
        }
        assert_eq!(auth.cache.entries(), 1);
        store.revoke_api_token("tok-1").await.unwrap();
        let e = auth.authenticate(&secret).await.unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
    }
}
