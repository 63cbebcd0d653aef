//! Exit codes, documented in `exilectl --help` and README, and the one mapping from a
//! failed call's gRPC code to them, so scripts can tell "not there" from "not allowed"
//! from "master down" without parsing sentences.

use std::fmt;

use tonic::Code;

/// Success.
pub const OK: u8 = 0;
/// Any other failure.
pub const ERROR: u8 = 1;
/// The command line is wrong, or the master rejected an argument.
pub const USAGE: u8 = 2;
/// What was named does not exist.
pub const NOT_FOUND: u8 = 3;
/// Not logged in, or the role does not allow it.
pub const DENIED: u8 = 4;
/// The master (or the spawner behind it) cannot be reached or did not answer in time.
pub const UNAVAILABLE: u8 = 5;
/// Refused in the current state (already exists, not running, …).
pub const REFUSED: u8 = 6;

/// The text for `--help`.
pub const HELP: &str = "Exit codes: 0 ok, 1 error, 2 usage or invalid argument, 3 not found, \
4 not logged in or permission denied, 5 master unreachable or too slow, 6 refused in the \
current state.";

/// A failed call to the master: the sentence for people and the code for the exit status.
#[derive(Debug)]
pub struct Failed {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

/// The exit code of a gRPC status code.
pub fn from_grpc(code: Code) -> u8 {
    match code {
        Code::Ok => OK,
        Code::InvalidArgument | Code::OutOfRange => USAGE,
        Code::NotFound => NOT_FOUND,
        Code::PermissionDenied | Code::Unauthenticated => DENIED,
        Code::Unavailable | Code::DeadlineExceeded => UNAVAILABLE,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => REFUSED,
        _ => ERROR,
    }
}

/// The exit code for an error: that of the failed call in its chain, else 1.
pub fn of(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Failed>())
        .map_or(ERROR, |f| from_grpc(f.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_documented() {
        for (code, want) in [
            (Code::InvalidArgument, 2),
            (Code::NotFound, 3),
            (Code::PermissionDenied, 4),
            (Code::Unauthenticated, 4),
            (Code::Unavailable, 5),
            (Code::DeadlineExceeded, 5),
            (Code::FailedPrecondition, 6),
            (Code::AlreadyExists, 6),
            (Code::Internal, 1),
        ] {
            assert_eq!(from_grpc(code), want, "{code:?}");
            assert!(HELP.contains(&format!("{want} ")), "{want} undocumented");
        }
        let e = anyhow::Error::new(Failed {
            code: Code::NotFound,
            message: "no instance x".into(),
        })
        .context("while getting");
        assert_eq!(of(&e), NOT_FOUND);
        assert_eq!(of(&anyhow::anyhow!("plain")), ERROR);
    }
}
