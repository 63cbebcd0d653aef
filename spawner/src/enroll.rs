//! The spawner's identity: the stored credential, and enrollment with a one-time token when
//! there is none yet.

use std::path::{Path, PathBuf};
use std::time::Duration;

use exile_api::v1::EnrollRequest;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::backoff::Backoff;
use crate::config::{Config, host_name};
use crate::error::{Error, Result};
use crate::state::write_atomic;

/// What enrollment gave this spawner, stored in `<data_dir>/credential.json` (mode 0600).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Id the master assigned.
    pub spawner_id: String,
    /// Secret presented on every Connect; never logged.
    pub credential: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("spawner_id", &self.spawner_id)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// Paths of the client certificate and key the master issued at enrollment (spawner mTLS),
/// next to the credential.
pub fn client_cert_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("client.pem"), data_dir.join("client-key.pem"))
}

/// The stored client certificate and key (PEM), if the master issued them.
pub fn load_client_cert(data_dir: &Path) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let (cert, key) = client_cert_paths(data_dir);
    let read = |path: &Path| match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("could not read", path.to_owned(), e)),
    };
    match (read(&cert)?, read(&key)?) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        _ => Ok(None),
    }
}

impl Credential {
    /// Path of the credential file in a data dir.
    pub fn path(data_dir: &Path) -> PathBuf {
        crate::layout::Layout::new(data_dir).credential_file()
    }

    /// The stored credential, if any.
    pub fn load(data_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("could not read", path, e)),
        }
    }

    /// Stores the credential atomically, readable by the owner only.
    pub fn store(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes, 0o600)
    }
}

/// The stored credential, or a new one from enrollment. `None` when shut down meanwhile.
pub async fn obtain(
    config: &Config,
    endpoint: &Endpoint,
    shutdown: &CancellationToken,
) -> Result<Option<Credential>> {
    if let Some(credential) = Credential::load(&config.data_dir)? {
        tracing::info!(spawner_id = %credential.spawner_id, "using the stored credential");
        return Ok(Some(credential));
    }
    let Some(token) = config.read_enrollment_token()? else {
        return Err(Error::Config(format!(
            "no credential is stored in {} and no enrollment token was given; pass \
             --enrollment-token or --enrollment-token-file",
            Credential::path(&config.data_dir).display()
        )));
    };
    let request = EnrollRequest {
        token,
        name: config.spawner_name(),
        host: host_name(),
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let channel = endpoint.connect().await.map_err(|e| {
                tonic::Status::unavailable(format!("could not reach the master: {e}"))
            })?;
            SpawnerLinkClient::new(channel)
                .enroll(request.clone())
                .await
                .map(tonic::Response::into_inner)
        };
        let result = tokio::select! {
            result = attempt => result,
            () = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Ok(response) => {
                let credential = Credential {
                    spawner_id: response.spawner_id,
                    credential: response.credential,
                };
                if !response.client_cert_pem.is_empty() && !response.client_key_pem.is_empty() {
                    let (cert, key) = client_cert_paths(&config.data_dir);
                    // The key first: a certificate without its key is never left behind.
                    write_atomic(&key, response.client_key_pem.as_bytes(), 0o600)?;
                    write_atomic(&cert, response.client_cert_pem.as_bytes(), 0o600)?;
                    tracing::info!(cert = %cert.display(), "stored the client certificate the master issued");
                }
                credential.store(&config.data_dir)?;
                tracing::info!(spawner_id = %credential.spawner_id, "enrolled with the master");
                return Ok(Some(credential));
            }
            Err(status) if is_rejection(status.code()) => {
                return Err(Error::EnrollmentRejected(status.message().to_owned()));
            }
            Err(status) => {
                let delay = backoff.next_delay();
                tracing::warn!(code = ?status.code(), error = %status.message(), ?delay, "enrollment failed, retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Codes that mean the token itself is refused: retrying cannot help.
fn is_rejection(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Unimplemented
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_round_trips_with_owner_only_mode_and_redacted_debug() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Credential::load(dir.path()).unwrap(), None);
        let cred = Credential {
            spawner_id: "sp-1".into(),
            credential: "very-secret".into(),
        };
        cred.store(dir.path()).unwrap();
        assert_eq!(Credential::load(dir.path()).unwrap(), Some(cred.clone()));
        let mode = std::fs::metadata(Credential::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{cred:?}").contains("very-secret"));
    }

    #[test]
    fn rejections_are_not_retried() {
        assert!(is_rejection(Code::Unauthenticated));
        assert!(is_rejection(Code::PermissionDenied));
        assert!(is_rejection(Code::InvalidArgument));
        assert!(!is_rejection(Code::Unavailable));
        assert!(!is_rejection(Code::DeadlineExceeded));
    }
}
