//! `token create|list|revoke`: API tokens for services.

use anyhow::Result;
use exile_api::v1::{CreateApiTokenRequest, ListApiTokensRequest, RevokeApiTokenRequest, Role};

use super::Ctx;
use crate::cli::TokenCommand;
use crate::client::RpcResult;
use crate::output::{self, emit, print_line};
use crate::view::{ApiTokenView, NewApiTokenView};

pub async fn run(ctx: &Ctx, cmd: TokenCommand) -> Result<()> {
    let mut client = ctx.session.auth();
    let now = exile_api::now_unix_ms();
    match cmd {
        TokenCommand::Create { name, role, ttl } => {
            let r = client
                .create_api_token(CreateApiTokenRequest {
                    name,
                    role: Role::from(role) as i32,
                    ttl_seconds: ttl.map_or(0, |d| d.as_secs().max(1)),
                })
                .await
                .or_explain(&ctx.session)?;
            let expires = r.token.as_ref().map_or(0, |t| t.expires_at_unix_ms);
            let view = NewApiTokenView {
                token: r.token.map(Into::into),
                secret: r.secret,
            };
            emit(ctx.format, &view, |v| {
                let (id, name, role) = v
                    .token
                    .as_ref()
                    .map(|t| (t.id.as_str(), t.name.as_str(), t.role.as_str()))
                    .unwrap_or_default();
                format!(
                    "Created API token {name} ({role}), id {id}, expires {}.\n\
                     Secret (shown once, store it now):\n{}",
                    super::auth::when(expires),
                    v.secret
                )
            })
        }
        TokenCommand::List => {
            let r = client
                .list_api_tokens(ListApiTokensRequest {})
                .await
                .or_explain(&ctx.session)?;
            let times: Vec<(i64, i64)> = r
                .tokens
                .iter()
                .map(|t| (t.created_at_unix_ms, t.expires_at_unix_ms))
                .collect();
            let views: Vec<ApiTokenView> = r.tokens.into_iter().map(Into::into).collect();
            emit(ctx.format, &views, |vs| {
                let mut t =
                    output::table(&["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "BY", "STATUS"]);
                for (v, (created, expires)) in vs.iter().zip(&times) {
                    let status = if v.revoked {
                        "revoked"
                    } else if *expires > 0 && *expires <= now {
                        "expired"
                    } else {
                        "active"
                    };
                    t.add_row([
                        v.id.clone(),
                        v.name.clone(),
                        v.role.clone(),
                        output::ago(*created, now),
                        output::ago(*expires, now),
                        output::or_dash(&v.created_by),
                        status.into(),
                    ]);
                }
                output::render(&t)
            })
        }
        TokenCommand::Revoke { id } => {
            client
                .revoke_api_token(RevokeApiTokenRequest { id: id.clone() })
                .await
                .or_explain(&ctx.session)?;
            print_line(&format!("Revoked API token {id}."))
        }
    }
}
