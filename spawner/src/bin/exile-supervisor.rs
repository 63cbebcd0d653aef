//! `exile-supervisor` binary: started by the spawner, one per instance; see
//! `exile_spawner::supervisor` for what it does and why.

fn main() {
    std::process::exit(exile_spawner::supervisor::main());
}
