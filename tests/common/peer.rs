//! Our own misbehaving HTTP server: its behaviour is picked by the request path.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The deadline the misbehaviours are designed around: `/late` answers after it.
pub const TIMEOUT: Duration = Duration::from_millis(400);

/// Every path with its expected (status code, failure reason label) under [`TIMEOUT`].
pub const CASES: &[(&str, u16, Option<&str>)] = &[
    ("/late", 0, Some("timeout")),
    ("/silent", 0, Some("timeout")),
    ("/close", 0, Some("closed")),
    ("/partial", 0, Some("closed")),
    ("/ssh", 0, Some("invalid_response")),
    ("/binary", 0, Some("invalid_response")),
    ("/emptyline", 0, Some("invalid_response")),
    ("/version", 0, Some("invalid_response")),
    ("/shortcode", 0, Some("invalid_response")),
    ("/longcode", 0, Some("invalid_response")),
    ("/noreason", 299, None),
    ("/huge", 0, Some("invalid_response")),
    ("/bytewise", 200, None),
    ("/split", 204, None),
    ("/slow-trickle", 0, Some("timeout")),
    ("/http10", 200, None),
    ("/bare-lf", 200, None),
    ("/interim", 201, None),
    ("/reset", 0, Some("reset")),
    ("/reset-now", 0, Some("reset")),
];

/// Read the request head (up to the blank line), returning its bytes.
pub async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    buf
}

/// Write `chunks` with `gap` between them.
pub async fn trickle(s: &mut TcpStream, chunks: &[&[u8]], gap: Duration) {
    for c in chunks {
        if s.write_all(c).await.is_err() {
            return;
        }
        let _ = s.flush().await;
        tokio::time::sleep(gap).await;
    }
}

/// `n` header lines of 4 KiB cookies each.
fn cookies(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("Set-Cookie: c{i}={}\r\n", "v".repeat(4096)).into_bytes())
        .collect()
}

/// Serve one connection, misbehaving as the request path says.
// SO_LINGER 0 is how a test server sends a reset; dropping such a socket does not block.
#[allow(deprecated)]
pub async fn misbehave(mut s: TcpStream) {
    let head = read_head(&mut s).await;
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let long = Duration::from_secs(30);
    match path.as_str() {
        "/late" => {
            tokio::time::sleep(TIMEOUT + Duration::from_millis(300)).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        }
        "/silent" => tokio::time::sleep(long).await,
        "/close" => {}
        "/partial" => {
            let _ = s.write_all(b"HTTP/1.1 20").await;
        }
        "/ssh" => {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
            tokio::time::sleep(long).await;
        }
        "/binary" => {
            let _ = s.write_all(&[0x00, 0x01, 0xfe, 0xff, 0x16, 0x03]).await;
            tokio::time::sleep(long).await;
        }
        "/emptyline" => {
            let _ = s.write_all(b"\r\nHTTP/1.1 200 OK\r\n\r\n").await;
        }
        "/version" => {
            let _ = s.write_all(b"HTTP/2.0 200 OK\r\n\r\n").await;
        }
        "/shortcode" => {
            let _ = s.write_all(b"HTTP/1.1 20 OK\r\n\r\n").await;
        }
        "/longcode" => {
            let _ = s.write_all(b"HTTP/1.1 2000 OK\r\n\r\n").await;
        }
        "/noreason" => {
            let _ = s.write_all(b"HTTP/1.1 299\r\n\r\n").await;
        }
        "/huge" => {
            // A first line that never ends: the probe must give up after a few KiB.
            let chunk = vec![b'a'; 64 * 1024];
            let _ = s.write_all(b"HTTP/1.1 200 ").await;
            for _ in 0..64 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(long).await;
        }
        "/bytewise" => {
            let line = b"HTTP/1.1 200 OK\r\n\r\n";
            let chunks: Vec<&[u8]> = line.chunks(1).collect();
            trickle(&mut s, &chunks, Duration::from_millis(5)).await;
        }
        "/split" => {
            trickle(
                &mut s,
                &[
                    b"HT", b"TP/1", b".1 2", b"04 No", b" Conte", b"nt\r", b"\n\r\n",
                ],
                Duration::from_millis(10),
            )
            .await;
        }
        "/slow-trickle" => {
            // Completes long after the deadline.
            let line = b"HTTP/1.1 200 OK\r\n\r\n";
            let chunks: Vec<&[u8]> = line.chunks(1).collect();
            trickle(&mut s, &chunks, Duration::from_millis(50)).await;
        }
        "/http10" => {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
        }
        "/bare-lf" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\nServer: x\n\nbody").await;
        }
        "/interim" => {
            let _ = s
                .write_all(
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\n\r\n",
                )
                .await;
        }
        "/reset" => {
            let _ = s.write_all(b"HTTP/1.1 2").await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
            return;
        }
        "/reset-now" => {
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
            return;
        }
        "/r302-cookies" => {
            // A redirect whose Location comes after 40 KiB of cookies: past what is read.
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\n").await;
            let _ = s.write_all(&cookies(10)).await;
            let _ = s.write_all(b"Location: /ok\r\n\r\n").await;
        }
        "/r302-cookies-after" => {
            // The same cookies after the Location: it is followed.
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: /ok\r\n")
                .await;
            let _ = s.write_all(&cookies(10)).await;
            let _ = s.write_all(b"\r\n").await;
        }
        "/r302-long-location" => {
            let long = format!("Location: /{}\r\n\r\n", "l".repeat(20 * 1024));
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\n").await;
            let _ = s.write_all(long.as_bytes()).await;
        }
        "/r302-stall" => {
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\nServer: x\r\n").await;
            tokio::time::sleep(long).await;
        }
        "/r302-close" => {
            let _ = s.write_all(b"HTTP/1.1 302 Found\r\n").await;
        }
        "/r302-bad-location" => {
            // Not an http(s) URL, with a right-to-left override (U+202E) in it.
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: ftp://x/\xe2\x80\xaeevil\r\n\r\n")
                .await;
        }
        _ => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    }
    let _ = s.shutdown().await;
}

/// Start the misbehaving server on `addr` (port 0 for a free one).
pub async fn start_server(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(misbehave(s));
        }
    });
    local
}

/// Start the misbehaving server on its own thread and runtime; returns its address.
pub fn spawn_thread(addr: &'static str) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tx.send(start_server(addr).await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// A server that accepts every connection and never answers nor closes it (for 30 s): a
/// stalled proxy. Returns its address.
pub fn silent_listener() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}
