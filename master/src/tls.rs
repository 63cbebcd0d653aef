//! TLS on the master's one port: the certificate and key come from files and are swapped in
//! when the files change or on SIGHUP, for new connections only (open links and watches keep
//! the session they made). ALPN offers h2 and http/1.1, so native gRPC, grpc-web, the
//! dashboard and /metrics all work over the same HTTPS port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are looked at for changes.
const POLL: Duration = Duration::from_secs(2);

/// The crypto provider every TLS config of the master uses (ring, like the clients).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and its private key, and checks they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| format!("unsupported private key in {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "the key {} does not belong to the certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}

/// Size and modification time of a file, to notice it changed.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// The server certificate in use, reloadable from its files.
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads `cert` and `key`; fails with a sentence when they cannot be used.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let stamps = (stamp(cert), stamp(key));
        let certified = load_certified_key(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(certified)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// Loads the files again and serves them to new connections. On failure (a half-written
    /// file, a key that does not match yet) the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let certified = load_certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        Ok(())
    }

    /// Whether either file changed since it was last loaded.
    fn changed(&self) -> bool {
        let now = (stamp(&self.cert), stamp(&self.key));
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// The end-entity certificate in use (DER).
    pub fn current_cert(&self) -> CertificateDer<'static> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .cert
            .first()
            .cloned()
            .unwrap_or_else(|| CertificateDer::from(Vec::new()))
    }

    /// Reloads on file changes and on SIGHUP until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot catch SIGHUP; certificate files are still watched");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if !self.changed() {
                        continue;
                    }
                    "the files changed"
                }
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => "SIGHUP",
            };
            match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.cert.display(), reason = why, "TLS certificate reloaded")
                }
                Err(e) => {
                    // Do not try again until the files change once more.
                    let stamps = (stamp(&self.cert), stamp(&self.key));
                    *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
                    tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in use");
                }
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The rustls server configuration: the reloadable certificate, ALPN h2 and http/1.1, and
/// optionally a verifier of client certificates.
pub fn server_config(
    certs: Arc<CertStore>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Who is on the other end of a connection: its address and, over TLS, the client
/// certificate it presented (already verified against the accepted CAs).
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub client_cert: Option<CertificateDer<'static>>,
}

impl exile_api::serve::Source for Peer {
    fn socket_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The master's TCP listener: its connections name their peer as a [`Peer`], without a
/// certificate until a [`TlsHandshake`] adds the one the client presented.
pub struct PlainListener(pub TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (
            io,
            Peer {
                addr,
                client_cert: None,
            },
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.0.local_addr()?,
            client_cert: None,
        })
    }
}

/// The TLS handshake on each connection of the master's port. `exile_api::serve` runs it
/// inside the connection's slot, bounded by the header timeout, so connections still
/// handshaking count against the connection caps.
#[derive(Clone)]
pub struct TlsHandshake(pub TlsAcceptor);

impl exile_api::serve::Handshake<TcpStream, Peer> for TlsHandshake {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn handshake(&self, io: TcpStream, peer: Peer) -> Result<(Self::Io, Peer), String> {
        let tls = self
            .0
            .accept(io)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let client_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        Ok((
            tls,
            Peer {
                addr: peer.addr,
                client_cert,
            },
        ))
    }
}

/// Spawner mTLS: the CA that issues spawners' client certificates at enrollment, whether
/// links need one, and the serials revoked by removing their spawner.
pub struct SpawnerTls {
    /// Links must present a client certificate naming their spawner.
    pub required: bool,
    /// CA that signs spawners' certificates at enrollment.
    pub issuer: Option<crate::certs::CaPem>,
    revoked: RwLock<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for SpawnerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnerTls")
            .field("required", &self.required)
            .field("issues", &self.issuer.is_some())
            .finish_non_exhaustive()
    }
}

impl SpawnerTls {
    /// Neither issuing nor requiring client certificates.
    pub fn off() -> Self {
        Self::new(false, None, Vec::new())
    }

    pub fn new(required: bool, issuer: Option<crate::certs::CaPem>, revoked: Vec<String>) -> Self {
        Self {
            required,
            issuer,
            revoked: RwLock::new(revoked.into_iter().collect()),
        }
    }

    /// Refuses these serials from now on (new handshakes; open links are closed by the
    /// removal itself).
    pub fn revoke(&self, serials: impl IntoIterator<Item = String>) {
        self.revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(serials);
    }

    /// Whether `serial_hex` was revoked.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(serial_hex)
    }

    /// Checks the client certificate of a link by spawner `spawner_id`: with mTLS on, one
    /// must be there, name this spawner and not be revoked.
    pub fn check_link(&self, peer: Option<&Peer>, spawner_id: &str) -> Result<(), String> {
        if !self.required {
            return Ok(());
        }
        let Some(der) = peer.and_then(|p| p.client_cert.as_ref()) else {
            return Err(format!(
                "this master requires spawner links to present a client certificate \
                 (--spawner-mtls) and spawner {spawner_id} presented none: enroll it again to \
                 get one, or give it one signed by the master's client CA"
            ));
        };
        let id = crate::certs::ClientIdentity::parse(der)?;
        if self.is_revoked(&id.serial_hex) {
            return Err(format!(
                "the client certificate {} was revoked",
                id.serial_hex
            ));
        }
        match id.spawner_id() {
            Some(named) if named == spawner_id => Ok(()),
            Some(named) => Err(format!(
                "the client certificate names spawner {named}, not {spawner_id}"
            )),
            None => Err(format!(
                "the client certificate names no spawner (it needs the DNS name {})",
                crate::certs::spawner_dns_name(spawner_id)
            )),
        }
    }

    /// The verifier of client certificates: signed by one of `roots` (PEM) and not revoked.
    /// Clients without a certificate (exilectl, browsers) are let through; the link handler
    /// decides whether a spawner needed one.
    pub fn verifier(
        self: &Arc<Self>,
        roots_pem: &[Vec<u8>],
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for pem in roots_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("cannot read a client CA certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable client CA certificate: {e}"))?;
            }
        }
        if roots.is_empty() {
            return Err("no client CA certificate given".into());
        }
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))?;
        Ok(Arc::new(RevocationChecking {
            inner,
            state: self.clone(),
        }))
    }
}

/// WebPKI client verification plus the revoked serials: a removed spawner's certificate
/// fails the handshake.
#[derive(Debug)]
struct RevocationChecking {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    state: Arc<SpawnerTls>,
}

impl rustls::server::danger::ClientCertVerifier for RevocationChecking {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = crate::certs::ClientIdentity::parse(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self.state.is_revoked(&id.serial_hex) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
