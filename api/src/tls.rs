//! TLS for clients of the master (exilectl, the spawner, the testkit): an `https://` master
//! is trusted through the system's roots (and webpki's bundled ones), or only through a CA
//! file when one is given; a client certificate can be added (spawner mTLS). `http://`
//! masters get no TLS at all.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// What a client trusts and presents.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM of the CA(s) to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Trusts the CA in `ca_file` when given, the system roots otherwise.
    pub fn from_ca_file(ca_file: Option<&Path>) -> Result<Self, String> {
        let ca_pem = ca_file
            .map(|p| {
                let pem = std::fs::read(p)
                    .map_err(|e| format!("cannot read the CA file {}: {e}", p.display()))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(format!(
                        "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        p.display()
                    ));
                }
                Ok(pem)
            })
            .transpose()?;
        Ok(Self {
            ca_pem,
            identity: None,
        })
    }

    /// Presents this client certificate (PEM) with its key.
    pub fn with_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    /// `endpoint` with TLS set up when its URL is `https://`.
    pub fn apply(&self, endpoint: Endpoint) -> Result<Endpoint, tonic::transport::Error> {
        if endpoint.uri().scheme_str() != Some("https") {
            return Ok(endpoint);
        }
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_enabled_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint.tls_config(config)
    }
}

/// Whether a failed connection's innermost cause is the server's certificate being refused
/// (unknown issuer, wrong name, expired, ...), rather than the server being unreachable.
pub fn is_certificate_error(cause: &str) -> bool {
    let lower = cause.to_ascii_lowercase();
    lower.contains("invalid peer certificate")
        || lower.contains("unknownissuer")
        || lower.contains("notvalidforname")
        || lower.contains("not valid for name")
}

/// One sentence for a failed connection whose innermost cause is `cause`, adding what to do
/// when it is a certificate the client does not trust.
pub fn explain_connect_error(cause: &str) -> String {
    let lower = cause.to_ascii_lowercase();
    if lower.contains("invalid peer certificate") || lower.contains("unknownissuer") {
        format!(
            "the master's TLS certificate is not trusted ({cause}); pass --ca-file with the CA \
             that signed it (the ca.pem of `exile-master certs init`)"
        )
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        format!(
            "the master's TLS certificate does not name the address used ({cause}); connect \
             by a name the certificate lists or make it a new one (`exile-master certs init --san`)"
        )
    } else {
        cause.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "hello").unwrap();
        let e = ClientTls::from_ca_file(Some(&bad)).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = ClientTls::from_ca_file(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(e.contains("cannot read the CA file"), "{e}");
        assert!(ClientTls::from_ca_file(None).unwrap().ca_pem.is_none());
    }

    #[test]
    fn plain_http_gets_no_tls() {
        let tls = ClientTls::default();
        let e = tls
            .apply(Endpoint::from_static("http://127.0.0.1:1"))
            .unwrap();
        assert_eq!(e.uri().scheme_str(), Some("http"));
        tls.apply(Endpoint::from_static("https://127.0.0.1:1"))
            .unwrap();
    }

    #[test]
    fn untrusted_certificates_get_a_hint() {
        let s = explain_connect_error("invalid peer certificate: UnknownIssuer");
        assert!(s.contains("--ca-file"), "{s}");
        assert_eq!(
            explain_connect_error("Connection refused"),
            "Connection refused"
        );
        assert!(is_certificate_error(
            "invalid peer certificate: NotValidForName"
        ));
        assert!(!is_certificate_error("Connection refused"));
    }
}
