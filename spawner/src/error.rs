//! The spawner's error type and its mapping to the command error classes of the link.

use std::path::PathBuf;

use exile_api::v1::CommandErrorKind;

/// Everything that can go wrong in the spawner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable; the sentence says which flag to fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A command named an instance this spawner does not hold.
    #[error("instance {0} does not exist on this spawner")]
    NotFound(String),
    /// A command named another spawner than this one.
    #[error("this is spawner {mine}, not {asked}")]
    OtherSpawner {
        /// This spawner's id.
        mine: String,
        /// The id the command named.
        asked: String,
    },
    /// The command is valid but cannot run now (capacity, ports, wrong state).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The command itself is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The command's deadline passed before it finished.
    #[error("the command's deadline passed before it finished")]
    DeadlineExceeded,
    /// The master cancelled the command.
    #[error("the command was cancelled")]
    Cancelled,
    /// A file operation on the host failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What the spawner was doing, e.g. "could not write".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A game-server process could not be started.
    #[error("could not start `{program}`: {source}")]
    Launch {
        /// The program of the build command.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A state or credential file holds something unreadable.
    #[error("could not parse {path}: {source}")]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The build's `exile-build.toml` cannot be used; the spawner refuses to start.
    #[error("the build manifest {} is malformed: {problem}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it, with its line when known.
        problem: String,
    },
    /// The master refused the enrollment token.
    #[error(
        "the master rejected the enrollment token ({0}); create a new token with `exilectl spawner token create` and pass it with --enrollment-token"
    )]
    EnrollmentRejected(String),
    /// The master address is malformed.
    #[error("invalid master address {address}: {source}")]
    MasterAddress {
        /// The address given with --master.
        address: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// An SDK call without a secret, or with one that names no instance.
    #[error("missing or unknown SDK secret: send `authorization: Bearer $EXILE_SDK_TOKEN`")]
    Unauthenticated,
    /// A call to an instance's own SDK port from a process outside the instance.
    #[error("{0}")]
    PermissionDenied(String),
    /// A call of the Agones SDK that Exile does not serve.
    #[error("{0}")]
    Unimplemented(String),
    /// A game's Agones counter or list call broke a rule of counters and lists.
    #[error(transparent)]
    Counts(#[from] exile_api::counts::CountsError),
    /// An internal task went away (the spawner is shutting down).
    #[error("the instance manager has shut down")]
    ManagerGone,
    /// An uploaded build could not be installed.
    #[error(transparent)]
    Build(#[from] crate::builds::BuildError),
    /// Something failed that the operator can only read about in the logs.
    #[error("{0}")]
    Internal(String),
}

/// Result with the spawner's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error class reported to the master in a `CommandResult`.
    pub fn kind(&self) -> CommandErrorKind {
        match self {
            Error::NotFound(_) | Error::OtherSpawner { .. } => CommandErrorKind::NotFound,
            Error::FailedPrecondition(_)
            | Error::Unauthenticated
            | Error::PermissionDenied(_)
            | Error::Unimplemented(_) => CommandErrorKind::FailedPrecondition,
            Error::InvalidArgument(_) | Error::Config(_) => CommandErrorKind::InvalidArgument,
            Error::DeadlineExceeded | Error::Cancelled => CommandErrorKind::DeadlineExceeded,
            Error::Build(e) => e.kind(),
            // Only the game's own SDK calls fail so; no command does.
            Error::Counts(e) => match e {
                exile_api::counts::CountsError::NotFound(_) => CommandErrorKind::NotFound,
                exile_api::counts::CountsError::InvalidArgument(_) => {
                    CommandErrorKind::InvalidArgument
                }
                exile_api::counts::CountsError::OutOfRange(_)
                | exile_api::counts::CountsError::AlreadyExists(_) => {
                    CommandErrorKind::FailedPrecondition
                }
            },
            Error::Io { .. }
            | Error::Launch { .. }
            | Error::Parse { .. }
            | Error::Manifest { .. }
            | Error::EnrollmentRejected(_)
            | Error::MasterAddress { .. }
            | Error::ManagerGone
            | Error::Internal(_) => CommandErrorKind::Internal,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
