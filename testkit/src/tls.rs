//! TLS for sandboxes: with `EXILE_TEST_TLS=1` every sandbox's master serves HTTPS with a
//! certificate from one private CA generated for the test process, and every client the
//! testkit makes (and the spawners it starts) trusts that CA only.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Result, anyhow};
pub use exile_master::certs::{self, CaPem};

/// Whether sandboxes use TLS unless told otherwise: `EXILE_TEST_TLS=1` (or `true`).
pub fn from_env() -> bool {
    std::env::var("EXILE_TEST_TLS").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The CA of this test process, made on first use.
pub fn test_ca() -> Result<&'static CaPem> {
    static CA: OnceLock<Result<CaPem, String>> = OnceLock::new();
    CA.get_or_init(|| certs::new_ca("Exile test CA"))
        .as_ref()
        .map_err(|e| anyhow!("cannot make the test CA: {e}"))
}

/// Masters that serve TLS, so [`crate::connect`] knows to use https:// for them.
fn tls_addrs() -> &'static Mutex<HashSet<SocketAddr>> {
    static ADDRS: OnceLock<Mutex<HashSet<SocketAddr>>> = OnceLock::new();
    ADDRS.get_or_init(Default::default)
}

pub(crate) fn mark(addr: SocketAddr, tls: bool) {
    let mut set = tls_addrs().lock().unwrap_or_else(|e| e.into_inner());
    if tls {
        set.insert(addr);
    } else {
        set.remove(&addr);
    }
}

/// Whether the sandbox master at `addr` serves TLS.
pub fn is_tls(addr: SocketAddr) -> bool {
    tls_addrs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&addr)
}

/// The files a sandbox's master serves with and clients trust.
#[derive(Clone, Debug)]
pub struct SandboxCerts {
    pub ca_file: PathBuf,
    /// The test CA's key, for a master that issues spawner certificates (mTLS tests).
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl SandboxCerts {
    /// Writes the test CA and a server certificate for localhost, 127.0.0.1 and `ip` into
    /// `dir`.
    pub fn write(dir: &Path, ip: std::net::IpAddr) -> Result<Self> {
        let ca = test_ca()?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let leaf = certs::server_cert(ca, &names).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(dir)?;
        let me = Self {
            ca_file: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        };
        std::fs::write(&me.ca_file, &ca.cert)?;
        exile_api::fs::write_private(&me.ca_key, ca.key.as_bytes())?;
        me.write_server(&leaf)?;
        Ok(me)
    }

    /// Replaces the server certificate with `leaf` (the master picks it up by itself).
    pub fn write_server(&self, leaf: &certs::Leaf) -> Result<()> {
        // Key first, then the certificate: the master reloads once both match.
        exile_api::fs::write_private(&self.key, leaf.key.as_bytes())?;
        exile_api::fs::write_private(&self.cert, leaf.cert.as_bytes())?;
        Ok(())
    }
}

/// What one TLS handshake with a master showed.
#[derive(Debug)]
pub struct Handshake {
    /// The server's end-entity certificate (DER).
    pub server_cert: Vec<u8>,
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<Vec<u8>>,
    /// The connection, for a request by hand.
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

/// Makes a TLS connection to `addr` trusting `ca_pem` only, offering `alpn`, presenting
/// `identity` (PEM cert, key) if given.
pub async fn handshake(
    addr: SocketAddr,
    ca_pem: &[u8],
    alpn: &[&[u8]],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Handshake> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_slice(key)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (_, conn) = stream.get_ref();
    Ok(Handshake {
        server_cert: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        stream,
    })
}

/// The DER of the first certificate in the PEM file `path`.
pub fn cert_der(path: &Path) -> Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_file(path)?.to_vec())
}
