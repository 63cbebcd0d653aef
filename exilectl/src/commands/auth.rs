//! `login`, `logout`, `whoami` and `context …`: sessions and the contexts that store them.

use anyhow::{Result, anyhow};
use exile_api::v1::{LoginRequest, LogoutRequest, WhoAmIRequest};
use tonic::Code;

use super::{Ctx, read_password};
use crate::cli::{ContextCommand, GlobalArgs, LoginArgs};
use crate::client::{RpcResult, Session, Target};
use crate::config::{Config, Context, context_name_for};
use crate::output::{self, emit, fields, print_line};
use crate::view::{ContextView, LoginView, WhoAmIView, rfc3339, rfc3339_secs, role};

/// Signs in, stores the session token in a context and makes it current.
pub async fn login(global: &GlobalArgs, args: LoginArgs) -> Result<()> {
    let path = Config::default_path()?;
    let mut config = Config::load(&path)?;
    let master = match &global.master {
        Some(m) => m.trim_end_matches('/').to_owned(),
        None => config
            .select(global.context.as_deref())?
            .map(|c| c.master.clone())
            .ok_or_else(|| anyhow!("no master given: pass --master URL"))?,
    };
    let password = read_password(
        args.password.password,
        args.password.password_stdin,
        &format!("Password for {} at {master}: ", args.username),
    )?;
    // A CA file given now is kept (as an absolute path, as the config is used from anywhere);
    // logging in again without one keeps the context's.
    let ca_file = match &global.ca_file {
        Some(p) => Some(std::path::absolute(p)?),
        None => config
            .contexts
            .iter()
            .find(|c| c.master == master && global.context.as_ref().is_none_or(|n| *n == c.name))
            .and_then(|c| c.ca_file.clone()),
    };
    let target = Target {
        master: master.clone(),
        token: None,
        ca_file: ca_file.clone(),
        context: None,
    };
    let session = Session::connect(&target, global.timeout, false).await?;
    let resp = session
        .auth()
        .login(LoginRequest {
            username: args.username.clone(),
            password,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| match s.code() {
            Code::Unauthenticated => anyhow::Error::new(crate::exit::Failed {
                code: Code::Unauthenticated,
                message: format!("login failed: {}", s.message()),
            }),
            _ => session.error(&s),
        })?;

    // Logging in again to a known master refreshes its context instead of adding another.
    let name = global.context.clone().unwrap_or_else(|| {
        config
            .contexts
            .iter()
            .find(|c| c.master == session.master)
            .map_or_else(|| context_name_for(&session.master), |c| c.name.clone())
    });
    config.upsert(Context {
        name: name.clone(),
        master: session.master.clone(),
        token: resp.token,
        ca_file,
    });
    config.use_context(&name)?;
    config.save(&path)?;

    let user = resp.user.unwrap_or_default();
    let view = LoginView {
        master: session.master.clone(),
        context: name,
        username: if user.username.is_empty() {
            args.username
        } else {
            user.username
        },
        role: role(user.role),
        expires_at: rfc3339(resp.expires_at_unix_ms),
    };
    let expires = resp.expires_at_unix_ms;
    emit(global.output, &view, |v| {
        format!(
            "Logged in to {} as {} ({}), session expires {}. Context `{}` is now current.",
            v.master,
            v.username,
            v.role,
            when(expires),
            v.context
        )
    })
}

/// Revokes the session and forgets its token; the context keeps its master URL.
pub async fn logout(ctx: &Ctx) -> Result<()> {
    match ctx.session.auth().logout(LogoutRequest {}).await {
        Ok(_) => {}
        // Already expired or revoked: forgetting it locally is all that is left to do.
        Err(s) if s.code() == Code::Unauthenticated => {}
        Err(s) => return Err(ctx.session.error(&s)),
    }
    let mut config = Config::load(&ctx.config_path)?;
    let forgotten = match &ctx.target.context {
        Some(name) => {
            let stored = config.get(name).cloned();
            match stored {
                Some(mut c) if Some(&c.token) == ctx.target.token.as_ref() => {
                    c.token.clear();
                    config.upsert(c);
                    config.save(&ctx.config_path)?;
                    true
                }
                _ => false,
            }
        }
        None => false,
    };
    if ctx.format == output::Format::Table {
        print_line(&format!("Logged out of {}.", ctx.session.master))?;
    } else {
        emit(
            ctx.format,
            &serde_json::json!({ "master": ctx.session.master, "context_cleared": forgotten }),
            |_| String::new(),
        )?;
    }
    Ok(())
}

/// Shows who the credential belongs to.
pub async fn whoami(ctx: &Ctx) -> Result<()> {
    let r = ctx
        .session
        .auth()
        .who_am_i(WhoAmIRequest {})
        .await
        .or_explain(&ctx.session)?;
    let view = WhoAmIView {
        master: ctx.session.master.clone(),
        context: ctx.session.context.clone(),
        subject: r.subject,
        role: role(r.role),
        kind: r.kind,
        expires_at: rfc3339(r.expires_at_unix_ms),
    };
    emit(ctx.format, &view, |v| {
        fields(&[
            ("Subject", v.subject.clone()),
            ("Role", v.role.clone()),
            ("Kind", v.kind.clone()),
            ("Expires", when(r.expires_at_unix_ms)),
            ("Master", v.master.clone()),
            ("Context", v.context.clone().unwrap_or_else(|| "-".into())),
        ])
    })
}

/// `context list|use|delete`: local only, no master needed.
pub fn context(global: &GlobalArgs, cmd: ContextCommand) -> Result<()> {
    let path = Config::default_path()?;
    let mut config = Config::load(&path)?;
    match cmd {
        ContextCommand::List => {
            let views: Vec<ContextView> = config
                .contexts
                .iter()
                .map(|c| ContextView {
                    name: c.name.clone(),
                    master: c.master.clone(),
                    current: config.current.as_deref() == Some(&c.name),
                    logged_in: !c.token.is_empty(),
                })
                .collect();
            emit(global.output, &views, |vs| {
                if vs.is_empty() {
                    return "No contexts: run `exilectl login --master URL`.".into();
                }
                let mut t = output::table(&["CURRENT", "NAME", "MASTER", "LOGGED IN"]);
                for v in vs {
                    t.add_row([
                        if v.current { "*" } else { "" },
                        &v.name,
                        &v.master,
                        if v.logged_in { "yes" } else { "no" },
                    ]);
                }
                output::render(&t)
            })
        }
        ContextCommand::Use { name } => {
            config.use_context(&name)?;
            config.save(&path)?;
            print_line(&format!("Switched to context `{name}`."))
        }
        ContextCommand::Delete { name } => {
            config.delete(&name)?;
            config.save(&path)?;
            print_line(&format!("Deleted context `{name}`."))
        }
    }
}

/// `2024-05-01T12:00:00Z (in 12h)` for a sentence; `never` for 0.
pub fn when(unix_ms: i64) -> String {
    match rfc3339_secs(unix_ms) {
        Some(t) => format!("{t} ({})", output::ago(unix_ms, exile_api::now_unix_ms())),
        None => "never".into(),
    }
}
