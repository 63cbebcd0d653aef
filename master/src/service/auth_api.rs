//! AuthService: login, sessions, users and API tokens.

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::ctx;
use crate::auth::{
    API_TOKEN_PREFIX, blocking_hash, check_password_policy, check_username, hash_secret, new_id,
    new_secret,
};
use crate::db::entities::{api_token, user};
use crate::error::Error;
use crate::model::{Principal, Role};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
use exile_api::v1::auth_service_server::AuthService;

/// Handlers of AuthService.
pub struct AuthApi(pub SharedRef);

fn user_pb(u: &user::Model) -> pb::User {
    let role = Role::parse(&u.role)
        .map(pb::Role::from)
        .unwrap_or(pb::Role::Unspecified);
    pb::User {
        username: u.username.clone(),
        role: role as i32,
        created_at_unix_ms: u.created_at,
    }
}

fn token_pb(t: &api_token::Model) -> pb::ApiToken {
    let role = Role::parse(&t.role)
        .map(pb::Role::from)
        .unwrap_or(pb::Role::Unspecified);
    pb::ApiToken {
        id: t.id.clone(),
        name: t.name.clone(),
        role: role as i32,
        created_at_unix_ms: t.created_at,
        expires_at_unix_ms: t.expires_at,
        created_by: t.created_by.clone(),
        revoked: t.revoked,
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.username.chars().take(64).collect::<String>());
        if r.username.is_empty() || r.password.is_empty() {
            return Err(Error::InvalidArgument("username and password are required".into()).into());
        }
        if r.username.len() > 64 || r.password.len() > 1024 {
            return Err(Error::Unauthenticated("wrong user name or password".into()).into());
        }
        let (token, expires, user) = self.0.auth.login(&r.username, &r.password, &c.peer).await?;
        Ok(Response::new(pb::LoginResponse {
            token,
            expires_at_unix_ms: expires,
            user: Some(user_pb(&user)),
        }))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let c = ctx(&req)?;
        match &c.principal {
            Principal::User {
                session_hash,
                username,
                ..
            } => {
                c.set_target(username.clone());
                self.0.store.delete_session(session_hash).await?;
                Ok(Response::new(pb::LogoutResponse {}))
            }
            _ => Err(Error::FailedPrecondition(
                "only a session can log out; revoke an API token instead".into(),
            )
            .into()),
        }
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let c = ctx(&req)?;
        let (kind, expires) = match &c.principal {
            Principal::User { expires_at, .. } => ("session", *expires_at),
            Principal::ApiToken { expires_at, .. } => ("api_token", *expires_at),
            _ => ("", 0),
        };
        let subject = match &c.principal {
            Principal::User { username, .. } => username.clone(),
            Principal::ApiToken { name, .. } => name.clone(),
            p => p.actor(),
        };
        let role = c
            .principal
            .role()
            .map(pb::Role::from)
            .unwrap_or(pb::Role::Unspecified);
        Ok(Response::new(pb::WhoAmIResponse {
            subject,
            role: role as i32,
            kind: kind.into(),
            expires_at_unix_ms: expires,
        }))
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.username.chars().take(64).collect::<String>());
        check_username(&r.username)?;
        check_password_policy(&r.password)?;
        let role = Role::try_from(r.role)?;
        c.set_detail(format!("role {role}"));
        if role == Role::Allocator {
            return Err(Error::InvalidArgument(
                "role: allocator is for API tokens (a matchmaker's credential), not people".into(),
            )
            .into());
        }
        let hash = blocking_hash(r.password).await?;
        let u = user::Model {
            username: r.username,
            password_hash: hash,
            role: role.as_str().into(),
            created_at: now_unix_ms(),
        };
        self.0.store.insert_user(u.clone()).await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_pb(&u)),
        }))
    }

    async fn list_users(
        &self,
        _req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let users = self.0.store.list_users().await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.iter().map(user_pb).collect(),
        }))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.username.chars().take(64).collect::<String>());
        if let Principal::User { username, .. } = &c.principal
            && *username == r.username
        {
            return Err(
                Error::FailedPrecondition("you cannot delete your own account".into()).into(),
            );
        }
        if !self.0.store.delete_user(&r.username).await? {
            return Err(Error::NotFound(format!("no user named {}", r.username)).into());
        }
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        let Principal::User {
            username,
            session_hash,
            ..
        } = &c.principal
        else {
            return Err(Error::FailedPrecondition(
                "only a signed-in user can change a password".into(),
            )
            .into());
        };
        c.set_target(username.clone());
        check_password_policy(&r.new_password)?;
        let u = self
            .0
            .store
            .get_user(username)
            .await?
            .ok_or_else(|| Error::NotFound("user is gone".into()))?;
        let hash = u.password_hash.clone();
        let current = r.current_password;
        let attempt = self.0.auth.admit_password_change(session_hash)?;
        let ok = match self.0.auth.check_password(hash, current).await {
            Ok(ok) => ok,
            Err(e) => {
                attempt.not_judged();
                return Err(e.into());
            }
        };
        if !ok {
            attempt.failed();
            return Err(Error::PermissionDenied("the current password is wrong".into()).into());
        }
        attempt.succeeded();
        let new_hash = blocking_hash(r.new_password).await?;
        self.0.store.set_password(username, new_hash).await?;
        self.0
            .store
            .delete_sessions_of(username, session_hash)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn create_api_token(
        &self,
        req: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        if r.name.is_empty() || r.name.len() > 64 {
            return Err(Error::InvalidArgument("name: 1 to 64 bytes".into()).into());
        }
        let role = Role::try_from(r.role)?;
        let max = self.0.settings.duration("security.api_token_max_ttl");
        // Unset: 90 days, or the longest allowed when that is shorter.
        let ttl = if r.ttl_seconds == 0 {
            (90 * 86_400).min(max.as_secs())
        } else {
            r.ttl_seconds
        };
        if ttl > max.as_secs() {
            return Err(Error::InvalidArgument(format!(
                "ttl_seconds: at most {} (security.api_token_max_ttl)",
                exile_api::settings::format_duration(
                    u64::try_from(max.as_millis()).unwrap_or(u64::MAX)
                )
            ))
            .into());
        }
        let secret = new_secret(API_TOKEN_PREFIX);
        let now = now_unix_ms();
        let t = api_token::Model {
            id: new_id("tok"),
            name: r.name,
            token_hash: hash_secret(&secret),
            role: role.as_str().into(),
            created_by: c.principal.actor(),
            created_at: now,
            expires_at: now.saturating_add(
                i64::try_from(ttl)
                    .unwrap_or(i64::MAX / 2)
                    .saturating_mul(1000),
            ),
            revoked: false,
        };
        c.set_target(t.id.clone());
        c.set_detail(format!("name {} role {role}", t.name));
        self.0.store.insert_api_token(t.clone()).await?;
        Ok(Response::new(pb::CreateApiTokenResponse {
            token: Some(token_pb(&t)),
            secret,
        }))
    }

    async fn list_api_tokens(
        &self,
        _req: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let tokens = self.0.store.list_api_tokens().await?;
        Ok(Response::new(pb::ListApiTokensResponse {
            tokens: tokens.iter().map(token_pb).collect(),
        }))
    }

    async fn revoke_api_token(
        &self,
        req: Request<pb::RevokeApiTokenRequest>,
    ) -> Result<Response<pb::RevokeApiTokenResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.id.chars().take(128).collect::<String>());
        if !self.0.store.revoke_api_token(&r.id).await? {
            return Err(Error::NotFound(format!("no API token with id {}", r.id)).into());
        }
        Ok(Response::new(pb::RevokeApiTokenResponse {}))
    }

    async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.username.chars().take(64).collect::<String>());
        let role = match r.role {
            0 => None,
            v => Some(Role::try_from(v)?),
        };
        if role.is_none() && r.new_password.is_empty() {
            return Err(Error::InvalidArgument(
                "nothing to change: give a role, a new password or both".into(),
            )
            .into());
        }
        if role == Some(Role::Allocator) {
            return Err(Error::InvalidArgument(
                "role: allocator is for API tokens (a matchmaker's credential), not people".into(),
            )
            .into());
        }
        let is_self =
            matches!(&c.principal, Principal::User { username, .. } if *username == r.username);
        if is_self && role.is_some_and(|r| r != Role::Admin) {
            return Err(Error::FailedPrecondition(
                "you cannot lower your own role; another admin can".into(),
            )
            .into());
        }
        if !r.new_password.is_empty() {
            check_password_policy(&r.new_password)?;
        }
        let Some(mut u) = self.0.store.get_user(&r.username).await? else {
            return Err(Error::NotFound(format!("no user named {}", r.username)).into());
        };
        let mut changed = Vec::new();
        if let Some(role) = role {
            self.0.store.set_role(&u.username, role).await?;
            u.role = role.as_str().into();
            changed.push(format!("role {role}"));
        }
        if !r.new_password.is_empty() {
            let hash = blocking_hash(r.new_password).await?;
            self.0.store.set_password(&u.username, hash).await?;
            // A reset password ends the user's sessions (but not the admin's own, when an
            // admin resets their own password here).
            let keep = match &c.principal {
                Principal::User { session_hash, .. } if is_self => session_hash.clone(),
                _ => String::new(),
            };
            self.0.store.delete_sessions_of(&u.username, &keep).await?;
            changed.push("password reset".into());
        }
        c.set_detail(changed.join(", "));
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(user_pb(&u)),
        }))
    }
}
