//! Exile's performance targets, as ratios, in one run: spawn overhead against a raw
//! fork/exec, the master at scale, Watch fan-out and footprints, each next to a baseline
//! measured in the same run. `cargo xtask bench` builds the release binaries and runs it;
//! `--quick` (seconds, small sizes) is what `cargo xtask test` runs after the tests. It fails
//! on errors only: a missed target is shown as "miss", since figures depend on the machine.

use std::process::ExitCode;

use clap::Parser;

use exile_testkit::bench::{self, BenchArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = BenchArgs::parse();
    match bench::binaries() {
        Ok(dir) => println!("binaries: {}", dir.display()),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let started = std::time::Instant::now();
    let (rows, errors) = bench::run(&args).await;
    println!();
    print!("{}", bench::table(&rows));
    let missed = rows.iter().filter(|r| r.pass() == Some(false)).count();
    println!(
        "\n{} figures, {missed} targets missed, in {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if errors.is_empty() {
        return ExitCode::SUCCESS;
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    ExitCode::FAILURE
}
