//! Fleet autoscalers: what replica count a fleet's policy asks for. The buffer policy is
//! arithmetic on the counts (in `exile_api::fleet`); the webhook policy POSTs the fleet to a
//! service and reads back `{"replicas": N}`, bounded by a timeout and by min/max.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

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

/// Only plain `http://host:port/path` is spoken (the webhook usually runs beside the master;
/// TLS to it is not supported yet and is refused rather than sent in clear).
fn parse_url(url: &str) -> Result<http::Uri> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::InvalidArgument("autoscaler.webhook.url: not a URL".into()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(Error::InvalidArgument(
            "autoscaler.webhook.url: give http://host[:port]/path (https is not supported)".into(),
        ));
    }
    Ok(uri)
}

/// Asks a webhook for the fleet's replica count, bounded by min/max. The body is the fleet
/// (spec and status) as JSON; the answer `{"replicas": N}`.
pub async fn webhook_target(
    a: &pb::FleetAutoscaler,
    w: &pb::WebhookPolicy,
    fleet: &pb::Fleet,
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
    let answer = tokio::time::timeout(timeout, post(&uri, body))
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

async fn post(uri: &http::Uri, body: String) -> Result<Vec<u8>> {
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        Error::Unavailable(format!("the webhook at {host}:{port}: {what}: {e}"))
    };
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unavailable("connect", &e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable("handshake", &e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let req = http::Request::post(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Internal(format!("webhook request: {e}")))?;
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

    #[test]
    fn specs_are_checked() {
        assert!(check(&webhook("http://127.0.0.1:9/scale", 500)).is_ok());
        assert!(check(&webhook("https://example.com/", 500)).is_err());
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
        assert_eq!(webhook_target(&a, w, &fleet).await.unwrap(), 20);
        let url = serve(r#"{"replicas": 7}"#, Duration::ZERO).await;
        let a = webhook(&url, 1000);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        assert_eq!(webhook_target(&a, w, &fleet).await.unwrap(), 7);
        let url = serve(r#"{"nope": 1}"#, Duration::ZERO).await;
        let a = webhook(&url, 1000);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        assert!(webhook_target(&a, w, &fleet).await.is_err());
    }

    #[tokio::test]
    async fn a_slow_webhook_times_out() {
        let fleet = pb::Fleet::default();
        let url = serve(r#"{"replicas": 7}"#, Duration::from_secs(5)).await;
        let a = webhook(&url, 100);
        let Some(pb::fleet_autoscaler::Policy::Webhook(w)) = &a.policy else {
            unreachable!()
        };
        let e = webhook_target(&a, w, &fleet).await.unwrap_err();
        assert!(matches!(e, Error::DeadlineExceeded(_)), "{e:?}");
    }
}
