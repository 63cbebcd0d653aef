//! exilectl: parse the command line, run it, print any error as one sentence and exit with
//! the code `exit` documents.

mod cli;
mod client;
mod commands;
mod config;
mod exit;
mod output;
mod top;
mod view;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote names and messages that came from users and games.
            eprintln!("error: {}", output::clean_text(&format!("{e:#}")));
            ExitCode::from(exit::of(&e))
        }
    }
}
