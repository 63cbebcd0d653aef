//! A TCP proxy between a spawner and the master that can cut the link (black-hole: the
//! sockets stay open but no byte passes, as in a network partition) and heal it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Handle to a running proxy.
pub struct LinkProxy {
    /// Address clients connect to.
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    stop: CancellationToken,
}

impl LinkProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let stop = CancellationToken::new();
        let (c, s) = (cut.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let rx = c.subscribe();
                let s = s.clone();
                tokio::spawn(serve(client, upstream, rx, s));
            }
        });
        Ok(LinkProxy { addr, cut, stop })
    }

    /// Stops passing bytes; open connections hang, new ones are accepted and hang too.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Passes bytes again. Connections that hung during the cut are closed, as a real
    /// network's would be after timeouts, so clients reconnect.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    if *cut.borrow() {
        hang(&mut cut, &stop).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let was_cut = tokio::select! {
        _ = stop.cancelled() => false,
        _ = copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if was_cut {
        // Keep both sockets open and silent until healed, then drop them.
        hang(&mut cut, &stop).await;
    }
}

async fn hang(cut: &mut watch::Receiver<bool>, stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = cut.wait_for(|c| !*c) => {}
    }
}
