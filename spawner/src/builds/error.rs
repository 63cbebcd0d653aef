//! Why a build could not be installed, in a form many waiters of one install can share.

use exile_api::v1::CommandErrorKind;

/// An install failure. Cloneable (plain sentences, no sources) because every caller waiting
/// on one shared download receives the same outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The build reference is malformed (name, version, hash or id).
    #[error("{0}")]
    Invalid(String),
    /// The master does not hold the build, or a chunk of it.
    #[error("{0}")]
    NotFound(String),
    /// The master's build differs from the reference (another hash or size), or the version
    /// is held with another archive and instances still use it.
    #[error("{0}")]
    Conflict(String),
    /// Not enough free disk space.
    #[error(
        "not enough disk space to {what}: {needed} bytes are needed but {free} are free in {path}; free some space and install again"
    )]
    DiskFull {
        /// What the space was for, e.g. "assemble the archive of openarena@1".
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
        /// The directory whose file system is full.
        path: String,
    },
    /// The master could not be reached or kept cutting the transfer.
    #[error("{0}")]
    Unavailable(String),
    /// Bytes did not match their SHA-256 (a chunk, or the whole archive).
    #[error("{0}")]
    Corrupt(String),
    /// The archive could not be unpacked.
    #[error("{0}")]
    Archive(String),
    /// A file operation on the host failed.
    #[error("{0}")]
    Io(String),
    /// The spawner is shutting down, or an install task went away.
    #[error("{0}")]
    Internal(String),
}

impl BuildError {
    /// The error class reported to the master.
    pub fn kind(&self) -> CommandErrorKind {
        match self {
            BuildError::Invalid(_) => CommandErrorKind::InvalidArgument,
            BuildError::NotFound(_) => CommandErrorKind::NotFound,
            BuildError::Conflict(_) | BuildError::DiskFull { .. } => {
                CommandErrorKind::FailedPrecondition
            }
            BuildError::Unavailable(_)
            | BuildError::Corrupt(_)
            | BuildError::Archive(_)
            | BuildError::Io(_)
            | BuildError::Internal(_) => CommandErrorKind::Internal,
        }
    }

    /// A file operation failure, naming the file.
    pub(crate) fn io(action: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        BuildError::Io(format!("{action} {}: {e}", path.display()))
    }
}

/// Refuses `needed` bytes when fewer are `free`.
pub(crate) fn check_space(
    what: impl FnOnce() -> String,
    needed: u64,
    free: u64,
    path: &std::path::Path,
) -> Result<(), BuildError> {
    if needed > free {
        return Err(BuildError::DiskFull {
            what: what(),
            needed,
            free,
            path: path.display().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_names_the_bytes_and_is_a_precondition() {
        let path = std::path::Path::new("/data/builds");
        assert!(check_space(|| "x".into(), 10, 10, path).is_ok());
        let err = check_space(|| "unpack openarena@1".into(), 11, 10, path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unpack openarena@1")
                && text.contains("11 bytes are needed")
                && text.contains("10 are free")
                && text.contains("/data/builds"),
            "{text}"
        );
        assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
        assert_eq!(
            BuildError::NotFound("x".into()).kind(),
            CommandErrorKind::NotFound
        );
        assert_eq!(
            BuildError::Unavailable("x".into()).kind(),
            CommandErrorKind::Internal
        );
    }
}
