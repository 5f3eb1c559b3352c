//! The emulator's public TCP port: a forwarder in front of the HTTP server that can cut a
//! client's connection without an answer, which is what a client sees when the real server
//! dies. The HTTP server asks for the cut (see `server.rs`) and recognizes the connection by
//! its peer address, which is the forwarder's own end of the backend connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Open forwarded connections, keyed by the backend-side address the HTTP server sees.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<HashMap<SocketAddr, oneshot::Sender<()>>>,
}

impl Connections {
    fn register(&self, backend_side: SocketAddr) -> oneshot::Receiver<()> {
        let (cut, on_cut) = oneshot::channel();
        self.lock().insert(backend_side, cut);
        on_cut
    }

    fn unregister(&self, backend_side: SocketAddr) {
        self.lock().remove(&backend_side);
    }

    /// Drops the client connection whose backend side is `peer`; false if there is none.
    pub fn cut(&self, peer: SocketAddr) -> bool {
        self.lock().remove(&peer).is_some_and(|cut| cut.send(()).is_ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, oneshot::Sender<()>>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Accepts and forwards until `stop` turns true, then cuts every connection.
pub async fn run(
    listener: TcpListener,
    backend: SocketAddr,
    connections: Arc<Connections>,
    stop: watch::Receiver<bool>,
) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            _ = until(&mut stopped, true) => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(forward(client, backend, connections.clone(), stop.clone()));
                }
                Err(err) => {
                    tracing::warn!(%err, "emulator accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
}

async fn forward(
    mut client: TcpStream,
    backend: SocketAddr,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut server) = TcpStream::connect(backend).await else {
        return;
    };
    let Ok(backend_side) = server.local_addr() else {
        return;
    };
    let on_cut = connections.register(backend_side);
    tokio::select! {
        biased; // a cut wins over forwarding bytes already on their way
        _ = on_cut => {}
        _ = until(&mut stop, true) => {}
        _ = copy_bidirectional(&mut client, &mut server) => {}
    }
    connections.unregister(backend_side);
}

/// Resolves once the watched flag equals `value` (at once if it already does); the borrow
/// guard is dropped here so callers' futures stay `Send`.
async fn until(rx: &mut watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|current| *current == value).await;
}
