//! `user create|list|delete|passwd`: user accounts.

use anyhow::{Result, bail};
use exile_api::v1::{
    ChangePasswordRequest, CreateUserRequest, DeleteUserRequest, ListUsersRequest, Role,
};

use super::{Ctx, read_password, read_stdin_line};
use crate::cli::UserCommand;
use crate::client::RpcResult;
use crate::output::{self, emit, print_line};
use crate::view::UserView;

pub async fn run(ctx: &Ctx, cmd: UserCommand) -> Result<()> {
    let mut client = ctx.session.auth();
    let now = exile_api::now_unix_ms();
    match cmd {
        UserCommand::Create {
            name,
            role,
            password,
        } => {
            let pw = read_password(
                password.password,
                password.password_stdin,
                &format!("Password for new user {name}: "),
            )?;
            let r = client
                .create_user(CreateUserRequest {
                    username: name,
                    password: pw,
                    role: Role::from(role) as i32,
                })
                .await
                .or_explain(&ctx.session)?;
            let view = r.user.map(UserView::from);
            emit(ctx.format, &view, |v| match v {
                Some(u) => format!("Created user {} ({}).", u.username, u.role),
                None => "Created the user.".into(),
            })
        }
        UserCommand::List => {
            let r = client
                .list_users(ListUsersRequest {})
                .await
                .or_explain(&ctx.session)?;
            let created: Vec<i64> = r.users.iter().map(|u| u.created_at_unix_ms).collect();
            let views: Vec<UserView> = r.users.into_iter().map(Into::into).collect();
            emit(ctx.format, &views, |vs| {
                let mut t = output::table(&["USERNAME", "ROLE", "CREATED"]);
                for (v, at) in vs.iter().zip(&created) {
                    t.add_row([v.username.clone(), v.role.clone(), output::ago(*at, now)]);
                }
                output::render(&t)
            })
        }
        UserCommand::Delete { name } => {
            client
                .delete_user(DeleteUserRequest {
                    username: name.clone(),
                })
                .await
                .or_explain(&ctx.session)?;
            print_line(&format!("Deleted user {name}."))
        }
        UserCommand::Passwd { password_stdin } => {
            let (current, new) = if password_stdin {
                (read_stdin_line()?, read_stdin_line()?)
            } else {
                let current = read_password(None, false, "Current password: ")?;
                let new = read_password(None, false, "New password: ")?;
                let again = read_password(None, false, "New password again: ")?;
                if new != again {
                    bail!("the new passwords do not match");
                }
                (current, new)
            };
            if current.is_empty() || new.is_empty() {
                bail!(
                    "expected the current password and the new one on two lines of standard input"
                );
            }
            client
                .change_password(ChangePasswordRequest {
                    current_password: current,
                    new_password: new,
                })
                .await
                .or_explain(&ctx.session)?;
            print_line("Password changed; your other sessions were signed out.")
        }
    }
}
