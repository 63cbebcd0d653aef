//! Runs a parsed command line: connects when the command needs the master and dispatches per noun.

mod auth;
mod backup;
mod build;
mod config;
mod fleet;
pub mod instance;
mod list_watch;
mod logs;
mod metrics;
mod spawner;
mod system;
mod token;
mod user;
pub mod watch;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::cli::{Cli, Command, GlobalArgs, InstanceCommand, SpawnerCommand};
use crate::client::{Session, Target};
use crate::config::Config;
use crate::output::Format;

/// What a command that talks to the master gets.
pub struct Ctx {
    pub session: Session,
    pub target: Target,
    pub format: Format,
    pub config_path: PathBuf,
    /// Deadline of one call (`--timeout`), for calls on a connection opened for streams.
    pub timeout: Duration,
}

impl Ctx {
    async fn connect(global: &GlobalArgs, streaming: bool) -> Result<Self> {
        let config_path = Config::default_path()?;
        let config = Config::load(&config_path)?;
        let target = Target::resolve(global, &config)?;
        let session = Session::connect(&target, global.timeout, streaming).await?;
        Ok(Self {
            session,
            target,
            format: global.output,
            config_path,
            timeout: global.timeout,
        })
    }
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    let connect = || Ctx::connect(&global, false);
    match command {
        Command::Completion { shell } => system::completion(shell),
        Command::Context(cmd) => auth::context(&global, cmd),
        Command::Login(args) => auth::login(&global, args).await,
        Command::Logout => auth::logout(&connect().await?).await,
        Command::Whoami => auth::whoami(&connect().await?).await,
        Command::User(c) => user::run(&connect().await?, c).await,
        Command::Token(c) => token::run(&connect().await?, c).await,
        // `list --watch` follows a stream: its connection has no per-call deadline.
        Command::Spawner(c) => {
            let streams = matches!(c, SpawnerCommand::List { watch: true, .. });
            spawner::run(&Ctx::connect(&global, streams).await?, c).await
        }
        Command::Instance(c) => {
            let streams = matches!(c, InstanceCommand::List { watch: true, .. });
            instance::run(&Ctx::connect(&global, streams).await?, c).await
        }
        Command::Build(c) => build::run(&global, c).await,
        Command::Fleet(c) => fleet::run(&connect().await?, c).await,
        Command::Config(c) => config::run(&connect().await?, c).await,
        Command::Allocate(a) => fleet::allocate(&connect().await?, a).await,
        Command::Watch(args) => watch::run(&Ctx::connect(&global, true).await?, args).await,
        Command::Logs(args) => logs::logs(&Ctx::connect(&global, args.follow).await?, args).await,
        Command::Console(args) => logs::console(&Ctx::connect(&global, true).await?, args).await,
        Command::Top(args) => crate::top::run(&global, args).await,
        Command::Stats => system::stats(&connect().await?).await,
        Command::Audit(a) => system::audit(&connect().await?, a).await,
        Command::Errors(a) => system::errors(&connect().await?, a).await,
        Command::Metrics(a) => metrics::run(&connect().await?, a).await,
        Command::Backup(c) => backup::run(&connect().await?, c).await,
    }
}

/// A password from a flag or env, a line of stdin, or a no-echo prompt on a terminal.
fn read_password(given: Option<String>, from_stdin: bool, prompt: &str) -> Result<String> {
    let password = match given {
        Some(p) => {
            if exile_api::secret::given_on_command_line(std::env::args_os(), "--password") {
                eprintln!(
                    "warning: {}",
                    exile_api::secret::command_line_warning(
                        "--password",
                        "with EXILE_PASSWORD, --password-stdin or the prompt"
                    )
                );
            }
            p
        }
        None if from_stdin => read_stdin_line()?,
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(prompt).context("cannot read the password")?
        }
        None => bail!(
            "no password given: use --password-stdin, set EXILE_PASSWORD, or run on a terminal"
        ),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

/// One line of standard input without its line ending.
fn read_stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks a yes/no question on the terminal; refuses when there is no terminal to ask on.
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without a terminal to confirm on: pass --yes");
    }
    eprint!("{question} [y/N] ");
    let answer = read_stdin_line()?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
