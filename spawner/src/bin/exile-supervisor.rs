//! `exile-supervisor` binary: started by the spawner, one per instance; see
//! `exile_spawner::supervisor` for what it does and why.

use clap::Parser;

fn main() {
    let args = exile_spawner::supervisor::SupervisorArgs::parse();
    std::process::exit(exile_spawner::supervisor::run(args));
}
