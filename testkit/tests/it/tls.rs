//! TLS on the master's port and spawner mTLS, whatever `EXILE_TEST_TLS` says: these
//! sandboxes always serve TLS.

use std::time::Duration;

use exile_api::v1 as pb;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use exile_testkit::tls::{cert_der, handshake, test_ca};
use exile_testkit::{Bearer, Sandbox, SandboxOptions, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;

use crate::support::Watcher;

fn tls_options(spawners: usize) -> SandboxOptions {
    SandboxOptions {
        spawners,
        tls: true,
        ..Default::default()
    }
}

/// One HTTP/1.1 GET over a fresh TLS connection; the whole answer.
async fn https_get(sb: &Sandbox, path: &str) -> String {
    let ca = test_ca().unwrap().cert.clone();
    let mut h = handshake(sb.master_addr(), ca.as_bytes(), &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(h.alpn.as_deref(), Some(&b"http/1.1"[..]));
    h.stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    h.stream.read_to_end(&mut out).await.unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_links_metrics_and_health_share_the_https_port() {
    let sb = Sandbox::start(tls_options(1)).await.unwrap();
    assert!(
        sb.master_url().starts_with("https://"),
        "{}",
        sb.master_url()
    );
    // The spawner linked over TLS (Sandbox::start waits for it) and admin calls work.
    let stats = sb
        .admin()
        .await
        .unwrap()
        .system
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.spawners_online, 1);
    // ALPN: h2 for gRPC clients, http/1.1 for browsers and scrapers.
    let ca = test_ca().unwrap().cert.clone();
    let h2 = handshake(sb.master_addr(), ca.as_bytes(), &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let metrics = https_get(&sb, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("exile_spawners_online 1"), "{metrics}");
    let health = https_get(&sb, "/healthz").await;
    assert!(health.contains("{\"status\":\"ok\"}"), "{health}");
    // Plain HTTP on the TLS port gets nowhere.
    let plain = exile_api::tls::ClientTls::default()
        .apply(
            tonic::transport::Endpoint::from_shared(format!("http://{}", sb.master_addr()))
                .unwrap(),
        )
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = exile_api::v1::system_service_client::SystemServiceClient::new(ch)
            .get_stats(pb::GetStatsRequest {})
            .await;
        assert!(
            r.is_err(),
            "a plain HTTP call was answered over the TLS port"
        );
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_is_refused_with_a_reason() {
    let sb = Sandbox::start(tls_options(0)).await.unwrap();
    let other = exile_master::certs::new_ca("someone else").unwrap();
    let e = handshake(sb.master_addr(), other.cert.as_bytes(), &[b"h2"], None)
        .await
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("UnknownIssuer"),
        "unexpected error: {e:#}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_reaches_new_clients_while_open_streams_stay() {
    let sb = Sandbox::start(tls_options(1)).await.unwrap();
    let certs = sb.tls_certs().unwrap().clone();
    let ca = test_ca().unwrap();
    let admin = sb.admin().await.unwrap();
    let mut watch = Watcher::open(&admin).await.unwrap();
    let before = handshake(sb.master_addr(), ca.cert.as_bytes(), &[b"h2"], None)
        .await
        .unwrap()
        .server_cert;
    assert_eq!(before, cert_der(&certs.cert).unwrap());

    let renewed =
        exile_master::certs::server_cert(ca, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    certs.write_server(&renewed).unwrap();
    let after = cert_der(&certs.cert).unwrap();
    assert_ne!(before, after);
    eventually(
        "a fresh client to see the new certificate",
        Duration::from_secs(15),
        || {
            let (addr, ca, after) = (sb.master_addr(), ca.cert.clone(), after.clone());
            async move {
                let seen = handshake(addr, ca.as_bytes(), &[b"h2"], None)
                    .await
                    .ok()?
                    .server_cert;
                (seen == after).then_some(())
            }
        },
    )
    .await
    .unwrap();

    // The watch opened before the reload still delivers, over its old connection, and the
    // spawner's link never dropped (still online).
    let id = sb.spawner_ids().await.unwrap().remove(0);
    admin
        .spawners
        .clone()
        .drain_spawner(pb::DrainSpawnerRequest { id: id.clone() })
        .await
        .unwrap();
    watch
        .until("the spawner draining", |w| {
            w.spawners.get(&id) == Some(&pb::SpawnerState::Draining)
        })
        .await
        .unwrap();

    // A file that does not load leaves the served certificate alone.
    std::fs::write(&certs.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = handshake(sb.master_addr(), ca.cert.as_bytes(), &[b"h2"], None)
        .await
        .unwrap()
        .server_cert;
    assert_eq!(still, after);
    sb.shutdown().await;
}

/// A sandbox whose master issues spawner certificates at enrollment and requires them.
async fn mtls_sandbox(spawners: usize) -> Sandbox {
    let mut opts = tls_options(0);
    opts.issue_spawner_certs = true;
    opts.master_args = vec!["--spawner-mtls".into()];
    let mut sb = Sandbox::start(opts).await.unwrap();
    for i in 0..spawners {
        sb.add_spawner(&format!("spawner-{i}")).await.unwrap();
    }
    sb.wait_spawners_online(spawners, Duration::from_secs(20))
        .await
        .unwrap();
    sb
}

/// Opens a Link as spawner `credential` over a connection that presents `identity`;
/// returns the status it ends with (Ok when the master accepted it).
async fn try_link(
    sb: &Sandbox,
    credential: &str,
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<(), tonic::Status> {
    let mut tls = exile_api::tls::ClientTls {
        ca_pem: Some(test_ca().unwrap().cert.clone().into_bytes()),
        identity: None,
    };
    if let Some((c, k)) = identity {
        tls = tls.with_identity(c, k);
    }
    let endpoint = tls
        .apply(tonic::transport::Endpoint::from_shared(sb.master_url()).unwrap())
        .unwrap();
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    let mut client = SpawnerLinkClient::new(InterceptedService::new(
        channel,
        Bearer::new(credential).unwrap(),
    ));
    let hello = pb::SpawnerMessage {
        kind: Some(pb::spawner_message::Kind::Hello(pb::Hello {
            region: "local".into(),
            capacity: 1,
            ..Default::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(hello).await.unwrap();
    let r = client
        .link(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map(|_| ());
    drop(tx);
    r
}

fn spawner_files(sb: &Sandbox, i: usize) -> (String, Vec<u8>, Vec<u8>) {
    let dir = sb.dir().join(sb.spawner_name(i));
    let cred: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("credential.json")).unwrap()).unwrap();
    (
        cred["credential"].as_str().unwrap().to_owned(),
        std::fs::read(dir.join("client.pem")).unwrap(),
        std::fs::read(dir.join("client-key.pem")).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_a_link_needs_the_client_certificate_of_its_own_spawner() {
    let mut sb = mtls_sandbox(2).await;
    // Enrollment stored a certificate and key, owner-only, and the spawners linked with them.
    use std::os::unix::fs::PermissionsExt;
    let key = sb.dir().join(sb.spawner_name(0)).join("client-key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (cred0, cert0, key0) = spawner_files(&sb, 0);
    let (_, cert1, key1) = spawner_files(&sb, 1);
    sb.stop_spawner(0).await.unwrap();

    // The right credential without a certificate: refused, saying why.
    let e = try_link(&sb, &cred0, None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("client certificate"), "{e:?}");
    // Another spawner's certificate: refused.
    let e = try_link(&sb, &cred0, Some((cert1, key1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("names spawner"), "{e:?}");
    // Its own: accepted.
    try_link(&sb, &cred0, Some((cert0, key0))).await.unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_spawners_certificate_is_refused_at_the_handshake() {
    let mut sb = mtls_sandbox(1).await;
    let (_, cert, key) = spawner_files(&sb, 0);
    let ca = test_ca().unwrap();
    // Before: the certificate is accepted by the TLS layer.
    let mut ok = handshake(
        sb.master_addr(),
        ca.cert.as_bytes(),
        &[b"http/1.1"],
        Some((&cert, &key)),
    )
    .await
    .unwrap();
    ok.stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    ok.stream.read_to_end(&mut out).await.unwrap_or_default();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));

    let id = sb.spawner_ids().await.unwrap().remove(0);
    sb.stop_spawner(0).await.unwrap();
    sb.admin()
        .await
        .unwrap()
        .spawners
        .remove_spawner(pb::RemoveSpawnerRequest { id })
        .await
        .unwrap();

    // After: the handshake fails (TLS 1.3 reports the client's rejection on first read).
    let attempt = async {
        let mut h = handshake(
            sb.master_addr(),
            ca.cert.as_bytes(),
            &[b"http/1.1"],
            Some((&cert, &key)),
        )
        .await?;
        h.stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        h.stream.read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let e = attempt.await.unwrap_err();
    assert!(
        format!("{e:#}").contains("CertificateRevoked"),
        "unexpected: {e:#}"
    );
    sb.shutdown().await;
}
