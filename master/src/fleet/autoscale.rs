//! Fleet autoscalers: what replica count a fleet's policy asks for. The buffer policy is
//! arithmetic on the counts (in `exile_api::fleet`); the webhook policy POSTs the fleet to a
//! service (http, or https checked against the bundled web roots plus any CA the master was
//! told to trust) and reads back `{"replicas": N}`, bounded by a timeout and by min/max.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};
use exile_api::fleet::{MAX_FLEET_REPLICAS, buffer_replicas};
use exile_api::v1 as pb;

/// Default seconds between evaluations.
const DEFAULT_SYNC_SECS: u32 = 5;
/// Largest webhook answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Checks an autoscaler; errors name the field.
pub fn check(a: &pb::FleetAutoscaler) -> Result<()> {
    if a.max_replicas == 0 || a.max_replicas > MAX_FLEET_REPLICAS {
        return Err(Error::InvalidArgument(format!(
            "autoscaler.max_replicas: 1 to {MAX_FLEET_REPLICAS}"
        )));
    }
    if a.min_replicas > a.max_replicas {
        return Err(Error::InvalidArgument(
            "autoscaler.min_replicas: at most max_replicas".into(),
        ));
    }
    if a.sync_interval_seconds > 3600 {
        return Err(Error::InvalidArgument(
            "autoscaler.sync_interval_seconds: at most 3600".into(),
        ));
    }
    match &a.policy {
        None => Err(Error::InvalidArgument(
            "autoscaler: give a buffer or a webhook policy".into(),
        )),
        Some(pb::fleet_autoscaler::Policy::Buffer(b)) => {
            if b.buffer_percent > 100 {
                return Err(Error::InvalidArgument(
                    "autoscaler.buffer.buffer_percent: 0 to 100".into(),
                ));
            }
            if b.buffer_percent == 0 && b.buffer_size > MAX_FLEET_REPLICAS {
                return Err(Error::InvalidArgument(format!(
                    "autoscaler.buffer.buffer_size: at most {MAX_FLEET_REPLICAS}"
                )));
            }
            Ok(())
        }
        Some(pb::fleet_autoscaler::Policy::Webhook(w)) => {
            parse_url(&w.url)?;
            if w.timeout_ms != 0 && !(100..=10_000).contains(&w.timeout_ms) {
                return Err(Error::InvalidArgument(
                    "autoscaler.webhook.timeout_ms: 100 to 10000 (0 for 1000)".into(),
                ));
            }
            Ok(())
        }
    }
}

/// How often an autoscaler is evaluated on its own.
pub fn sync_interval(a: &pb::FleetAutoscaler) -> Duration {
    let secs = if a.sync_interval_seconds == 0 {
        DEFAULT_SYNC_SECS
    } else {
        a.sync_interval_seconds
    };
    Duration::from_secs(u64::from(secs))
}

/// The count a buffer policy asks for; None for other policies.
pub fn buffer_target(a: &pb::FleetAutoscaler, allocated: u32) -> Option<u32> {
    match &a.policy {
        Some(pb::fleet_autoscaler::Policy::Buffer(b)) => Some(buffer_replicas(
            b,
            allocated,
            a.min_replicas,
            a.max_replicas,
        )),
        _ => None,
    }
}

/// `http://` or `https://host[:port]/path`.
fn parse_url(url: &str) -> Result<http::Uri> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::InvalidArgument("autoscaler.webhook.url: not a URL".into()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(Error::InvalidArgument(
            "autoscaler.webhook.url: give http://host[:port]/path or https://host[:port]/path"
                .into(),
        ));
    }
    Ok(uri)
}

/// The TLS client settings webhooks over https use: the web's roots (bundled, so the answer
/// does not depend on the host's certificate store) plus every certificate in `extra_ca`, a
/// PEM file (a private CA, or a webhook's self-signed certificate). Ring provider, TLS 1.2+.
pub fn webhook_tls(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        use rustls_pki_types::pem::PemObject;
        let bad = |e: &dyn std::fmt::Display| {
            Error::InvalidArgument(format!("webhook CA file {}: {e}", path.display()))
        };
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad(&"holds no PEM certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Asks a webhook for the fleet's replica count, bounded by min/max. The body is the fleet
/// (spec and status) as JSON; the answer `{"replicas": N}`.
pub async fn webhook_target(
    a: &pb::FleetAutoscaler,
    w: &pb::WebhookPolicy,
    fleet: &pb::Fleet,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<u32> {
    let timeout = Duration::from_millis(u64::from(if w.timeout_ms == 0 {
        1000
    } else {
        w.timeout_ms
    }));
    let uri = parse_url(&w.url)?;
    let status = fleet.status.clone().unwrap_or_default();
    let body = serde_json::json!({
        "name": fleet.name,
        "replicas": fleet.spec.as_ref().map_or(0, |s| s.replicas),
        "min_replicas": a.min_replicas,
        "max_replicas": a.max_replicas,
        "status": {
            "current": status.current,
            "ready": status.ready,
            "allocated": status.allocated,
            "starting": status.starting,
            "unknown": status.unknown,
        },
    })
    .to_string();
    let answer = tokio::time::timeout(timeout, post(&uri, body, tls))
        .await
        .map_err(|_| {
            Error::DeadlineExceeded(format!("the webhook did not answer within {timeout:?}"))
        })??;
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| Error::FailedPrecondition(format!("the webhook's answer is not JSON: {e}")))?;
    let n = v
        .get("replicas")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            Error::FailedPrecondition(
                "the webhook's answer has no non-negative integer `replicas`".into(),
            )
        })?;
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    Ok(n.clamp(a.min_replicas, a.max_replicas))
}

async fn post(uri: &http::Uri, body: String, tls: &Arc<rustls::ClientConfig>) -> Result<Vec<u8>> {
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        Error::Unavailable(format!("the webhook at {host}:{port}: {what}: {e}"))
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unavailable("connect", &e))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let req = http::Request::post(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Internal(format!("webhook request: {e}")))?;
    if !https {
        return exchange(stream, req, &unavailable).await;
    }
    // An IP address in the URL is checked against the certificate's IP names.
    let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|e| unavailable("server name", &e))?;
    let tls = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|e| unavailable("TLS handshake", &e))?;
    exchange(tls, req, &unavailable).await
}

/// One HTTP/1.1 request on a connected stream; `unavailable` words a failed step.
async fn exchange<S>(
    io: S,
    req: http::Request<Full<Bytes>>,
    unavailable: &(dyn Fn(&str, &dyn std::fmt::Display) -> Error + Sync),
) -> Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| unavailable("handshake", &e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unavailable("request", &e))?;
    if !resp.status().is_success() {
        return Err(Error::FailedPrecondition(format!(
            "the webhook answered HTTP {}",
            resp.status()
        )));
    }
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| unavailable("reading the answer", &e))?
        .to_bytes();
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str, timeout_ms: u32) -> pb::FleetAutoscaler {
        pb::FleetAutoscaler {
            min_replicas: 2,
            max_replicas: 20,
            sync_interval_seconds: 1,
            policy: Some(pb::fleet_autoscaler::Policy::Webhook(pb::WebhookPolicy {
                url: url.into(),
                timeout_ms,
            })),
        }
    }

    /// TLS settings with the web's roots only.
    fn plain() -> Arc<rustls::ClientConfig> {
        webhook_tls(None).unwrap()
    }

    #[test]
    fn specs_are_checked() {
        assert!(check(&webhook("http://127.0.0.1:9/scale", 500)).is_ok());
        assert!(check(&webhook("https://example.com/", 500)).is_ok());
        assert!(check(&webhook("ftp://x/", 500)).is_err());
        assert!(check(&webhook("http://127.0.0.1:9/", 50)).is_err());
        let mut a = webhook("http://127.0.0.1:9/", 0);
        a.min_replicas = 30;
        assert!(check(&a).is_err());
        a.policy = None;
        a.min_replicas = 0;
        assert!(check(&a).is_err());
    }

    /// A one-shot HTTP server answering `answer` after `delay`.
    async fn serve(answer: &'static str, delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(delay).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
        format!("http://{addr}/scale")
    }

    #[tokio::test]
    async fn a_webhook_answer_is_bounded() {
        let fleet = pb::Fleet {
            name: "f".into(),
            ..Default::default()
        };
        let url = serve(r#"{"replicas": 500}"#, Duration::ZERO).await;
        let a = webhook(&url, 1000);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        assert_eq!(webhook_target(&a, w, &fleet, &plain()).await.unwrap(), 20);
        let url = serve(r#"{"replicas": 7}"#, Duration::ZERO).await;
        let a = webhook(&url, 1000);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        assert_eq!(webhook_target(&a, w, &fleet, &plain()).await.unwrap(), 7);
        let url = serve(r#"{"nope": 1}"#, Duration::ZERO).await;
        let a = webhook(&url, 1000);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        assert!(webhook_target(&a, w, &fleet, &plain()).await.is_err());
    }

    #[tokio::test]
    async fn a_slow_webhook_times_out() {
        let fleet = pb::Fleet::default();
        let url = serve(r#"{"replicas": 7}"#, Duration::from_secs(5)).await;
        let a = webhook(&url, 100);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        let e = webhook_target(&a, w, &fleet, &plain()).await.unwrap_err();
        assert!(matches!(e, Error::DeadlineExceeded(_)), "{e:?}");
    }

    /// A one-shot HTTPS server with a self-signed certificate for 127.0.0.1, answering
    /// `{"replicas": 9}`; returns its URL and the certificate as PEM.
    async fn serve_tls() -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let pem = key.cert.pem();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            // Two connections: one refused by the client (unknown issuer), one served.
            for _ in 0..2 {
                let (s, _) = l.accept().await.unwrap();
                let Ok(mut s) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let answer = r#"{"replicas": 9}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (format!("https://{addr}/scale"), pem)
    }

    #[tokio::test]
    async fn an_https_webhook_is_trusted_only_through_the_given_ca() {
        let fleet = pb::Fleet::default();
        let (url, pem) = serve_tls().await;
        let a = webhook(&url, 2000);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        // The web's roots alone do not vouch for a self-signed certificate.
        let e = webhook_target(&a, w, &fleet, &plain()).await.unwrap_err();
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        // Told to trust it, the master asks and applies the answer.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("webhook-ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let tls = webhook_tls(Some(ca.as_path())).unwrap();
        assert_eq!(webhook_target(&a, w, &fleet, &tls).await.unwrap(), 9);
        // A CA file without a certificate is refused with its name.
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let e = webhook_tls(Some(empty.as_path())).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
    }
}
