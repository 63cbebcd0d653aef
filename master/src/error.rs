//! The master's error type and its single mapping to gRPC statuses.

/// Everything that can go wrong in the master.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed; details are logged, callers see a generic message.
    #[error("database error")]
    Database(#[source] sea_orm::DbErr),
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but cannot be carried out in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// No or bad credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Credentials are fine but the role is too low.
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many attempts; try later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A spawner could not be reached or went away.
    #[error("{0}")]
    Unavailable(String),
    /// A command did not finish in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or host failure; details are logged, callers see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
    /// The server could not bind or serve.
    #[error("server error")]
    Serve(#[source] std::io::Error),
    /// TLS cannot be set up as configured (the sentence says what to pass or fix).
    #[error("{0}")]
    Tls(String),
}

impl Error {
    /// The same error with what was being done said first, for the variants whose message
    /// reaches the caller (internal causes are logged whole anyway).
    pub fn prefixed(self, doing: &str) -> Self {
        match self {
            Error::NotFound(m) => Error::NotFound(format!("{doing}: {m}")),
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{doing}: {m}")),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(format!("{doing}: {m}")),
            Error::AlreadyExists(m) => Error::AlreadyExists(format!("{doing}: {m}")),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(format!("{doing}: {m}")),
            Error::Unavailable(m) => Error::Unavailable(format!("{doing}: {m}")),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{doing}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{doing}: {m}")),
            other => other,
        }
    }
}

/// Result with the master's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Database(e)
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Status;
        match e {
            Error::Database(source) => {
                tracing::error!(error = %source, "database error");
                Status::internal("internal error; see the master's log")
            }
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal("internal error; see the master's log")
            }
            Error::Serve(source) => {
                tracing::error!(error = %source, "serve error");
                Status::internal("internal error; see the master's log")
            }
            Error::Tls(m) => {
                tracing::error!(error = %m, "TLS error");
                Status::internal("internal error; see the master's log")
            }
            Error::NotFound(m) => Status::not_found(m),
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
        }
    }
}
