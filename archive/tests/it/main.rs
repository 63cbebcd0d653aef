//! exile-archive: hostile archives, caps, happy paths and a property test, all through the
//! public `inspect`/`extract`.

// Helpers outside `#[test]` fns build archives: a failure there is a broken test, so unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod caps;
mod happy;
mod hostile;
mod prop;
mod support;
