//! Open responses end when their caller's credential stops holding. A Watch, a followed log
//! or any other answer still being sent is cut with UNAUTHENTICATED as soon as the caller
//! logs out, its token is revoked, its user is deleted, its password is reset or its role
//! changes (each moves the store's credential epoch), and when the session or token expires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

use crate::auth::Auth;
use crate::error::Error;
use crate::model::Principal;

/// Why the stream ended, sent to the caller as UNAUTHENTICATED.
type Ending = Pin<Box<dyn Future<Output = String> + Send>>;

/// Wraps the body of an answer to `principal` (who called with `token`) so it ends when that
/// credential no longer holds. Only people and API tokens: a spawner's link has its own
/// ending (removal closes it), and public calls carry no credential.
pub fn revocable(body: Body, auth: &Arc<Auth>, token: &str, principal: &Principal) -> Body {
    let expires_at = match principal {
        Principal::User { expires_at, .. } | Principal::ApiToken { expires_at, .. } => *expires_at,
        Principal::Spawner { .. } | Principal::Anonymous => return body,
    };
    let ends = credential_ends(
        auth.clone(),
        token.to_owned(),
        principal.clone(),
        expires_at,
    );
    Body::new(Revocable {
        inner: body,
        ends: Box::pin(ends),
        finished: false,
    })
}

/// Resolves when `token` no longer authenticates as `principal` did: checked after every
/// change of the credential epoch, and at the credential's expiry.
async fn credential_ends(
    auth: Arc<Auth>,
    token: String,
    principal: Principal,
    expires_at: i64,
) -> String {
    let mut changes = auth.credential_changes();
    let expiry = async {
        loop {
            let left = expires_at.saturating_sub(exile_api::now_unix_ms());
            if left <= 0 {
                return;
            }
            // In steps: an API token may be valid for years.
            let step = u64::try_from(left).unwrap_or(0).min(3_600_000);
            tokio::time::sleep(Duration::from_millis(step)).await;
        }
    };
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            () = &mut expiry => return "your credential expired; log in again".into(),
            changed = changes.changed() => {
                if changed.is_err() {
                    // The store is gone: the master is shutting down and ends streams itself.
                    std::future::pending::<()>().await;
                }
            }
        }
        match auth.authenticate(&token).await {
            Ok(now) if now.role() == principal.role() => {}
            Ok(now) => {
                return format!(
                    "the role of {} changed to {}; open this stream again",
                    principal.actor(),
                    now.role().map_or("none", |r| r.as_str())
                );
            }
            Err(Error::Unauthenticated(why)) => {
                return format!("your credential no longer holds ({why}); log in again");
            }
            // The store could not answer: keep the stream rather than cut it on a hiccup;
            // the next change or the expiry checks again.
            Err(e) => {
                tracing::warn!(error = %e, "could not recheck a streaming caller's credential")
            }
        }
    }
}

/// An answer body that ends with UNAUTHENTICATED when `ends` resolves first.
struct Revocable {
    inner: Body,
    ends: Ending,
    finished: bool,
}

impl HttpBody for Revocable {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(why) = this.ends.as_mut().poll(cx) {
            this.finished = true;
            tracing::info!(reason = %why, "ended an open answer: its caller's credential no longer holds");
            let mut trailers = http::HeaderMap::new();
            // Only fails on a message that cannot be a header value, which ours never are.
            let _ = tonic::Status::unauthenticated(why).add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finished = true,
            Poll::Ready(Some(Ok(f))) if f.is_trailers() => this.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
