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
/// The master's TLS certificate is not trusted (or does not name the address used): a
/// configuration problem (`--ca-file`), not an outage, so scripts must not retry it.
pub const UNTRUSTED: u8 = 7;

/// The text for `--help`.
pub const HELP: &str = "Exit codes: 0 ok, 1 error, 2 usage or invalid argument, 3 not found, \
4 not logged in or permission denied, 5 master unreachable or too slow, 6 refused in the \
current state, 7 the master's TLS certificate is not trusted (see --ca-file).";

/// A failed call to the master: the sentence for people and the code for the exit status.
#[derive(Debug)]
pub struct Failed {
    pub code: Code,
    pub message: String,
}

impl Failed {
    /// A connection to `master` that failed with `cause` (its innermost error): Unavailable,
    /// or [`UntrustedCert`] when the master's certificate is what was refused.
    pub fn connect(master: &str, cause: &str) -> anyhow::Error {
        let message = format!(
            "cannot reach the master at {master}: {}",
            exile_api::tls::explain_connect_error(cause)
        );
        if exile_api::tls::is_certificate_error(cause) {
            anyhow::Error::new(UntrustedCert(message))
        } else {
            anyhow::Error::new(Failed {
                code: Code::Unavailable,
                message,
            })
        }
    }
}

/// The master's TLS certificate was not accepted: exit code [`UNTRUSTED`].
#[derive(Debug)]
pub struct UntrustedCert(pub String);

impl fmt::Display for UntrustedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UntrustedCert {}

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
    if e.chain().any(|c| c.is::<UntrustedCert>()) {
        return UNTRUSTED;
    }
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
        let untrusted =
            Failed::connect("https://m:7700", "invalid peer certificate: UnknownIssuer")
                .context("while logging in");
        assert_eq!(of(&untrusted), UNTRUSTED);
        assert!(HELP.contains("7 the master's TLS certificate"));
        assert_eq!(
            of(&Failed::connect("https://m:7700", "Connection refused")),
            UNAVAILABLE
        );
    }
}
