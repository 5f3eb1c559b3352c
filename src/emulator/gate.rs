//! The emulator's public TCP port. It forwards connections to the HTTP server and, while the
//! emulated ClearML is "down", closes API connections without an answer (new ones right after
//! accept, open ones at once), which is what a client sees when the real server dies.
//! Admin requests (`/_emulator/...`) always pass, so a test can bring the server back.

use std::net::SocketAddr;

use tokio::io::{copy_bidirectional, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest request head inspected to find the request line.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// Accepts until `stop` turns true.
pub async fn run(
    listener: TcpListener,
    backend: SocketAddr,
    up: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            _ = until(&mut stopped, true) => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(serve(client, backend, up.clone(), stop.clone()));
                }
                Err(err) => {
                    tracing::warn!(%err, "emulator accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
}

async fn serve(
    mut client: TcpStream,
    backend: SocketAddr,
    mut up: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut head = Vec::with_capacity(1024);
    let admin = loop {
        if let Some(end) = head.iter().position(|&b| b == b'\n') {
            break is_admin_request(&head[..end]);
        }
        if head.len() >= MAX_REQUEST_LINE {
            break false;
        }
        let read = tokio::select! {
            read = client.read_buf(&mut head) => read,
            _ = until(&mut stop, true) => return,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
    };
    if !admin && !*up.borrow_and_update() {
        return; // dropping the socket closes it unanswered
    }
    let Ok(mut server) = TcpStream::connect(backend).await else {
        return;
    };
    if server.write_all(&head).await.is_err() {
        return;
    }
    let pipe = copy_bidirectional(&mut client, &mut server);
    if admin {
        tokio::select! {
            _ = pipe => {}
            _ = until(&mut stop, true) => {}
        }
    } else {
        tokio::select! {
            _ = pipe => {}
            _ = until(&mut up, false) => {}
            _ = until(&mut stop, true) => {}
        }
    }
}

/// Resolves once the watched flag equals `value` (at once if it already does); the borrow
/// guard is dropped here so callers' futures stay `Send`.
async fn until(rx: &mut watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|current| *current == value).await;
}

/// Whether an HTTP request line targets the admin API (`POST /_emulator/... HTTP/1.1`).
fn is_admin_request(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line);
    line.split_whitespace()
        .nth(1)
        .is_some_and(|target| target == "/_emulator" || target.starts_with("/_emulator/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognises_admin_requests() {
        assert!(super::is_admin_request(b"POST /_emulator/available HTTP/1.1\r"));
        assert!(!super::is_admin_request(b"GET /v2.23/tasks.get_all HTTP/1.1\r"));
        assert!(!super::is_admin_request(b"GET /_emulatorx HTTP/1.1"));
    }
}
