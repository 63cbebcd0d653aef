//! Exile web dashboard. Its pages are built in a later step; until then the master serves
//! whatever static bundle is placed in its `--dashboard-dir`.

fn main() {}
