//! Our own recording HTTP server: it keeps every request it gets, head and body.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request our recording server received: head and body.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line and headers.
    pub head: String,
    /// The body, as long as its Content-Length said.
    pub body: Vec<u8>,
}

/// A server on 127.0.0.1 that records every request and answers by path: `/post307` and
/// `/post303` redirect to `/echo` with their code, `/cross` redirects to the same server under
/// the name `localhost`, `/noloc` is a 302 without `Location`, `/badloc` one whose `Location`
/// is no URL, anything else 200 with the request body echoed back.
pub fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut raw = Vec::new();
                let mut byte = [0u8; 1];
                while !raw.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    raw.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&raw).into_owned();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0usize);
                let mut body = vec![0u8; len];
                s.read_exact(&mut body).unwrap();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(Seen {
                    head: head.clone(),
                    body: body.clone(),
                });
                let port = addr.port();
                let answer = match path.as_str() {
                    "/post307" => "HTTP/1.1 307 Temporary Redirect\r\nLocation: /echo\r\n".into(),
                    "/post303" => "HTTP/1.1 303 See Other\r\nLocation: /echo\r\n".into(),
                    "/cross" => {
                        format!("HTTP/1.1 302 Found\r\nLocation: http://localhost:{port}/echo\r\n")
                    }
                    "/noloc" => "HTTP/1.1 302 Found\r\n".into(),
                    "/badloc" => "HTTP/1.1 302 Found\r\nLocation: http://[::1/\r\n".into(),
                    _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len()),
                };
                let _ = s.write_all(format!("{answer}Connection: close\r\n\r\n").as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    (addr, seen)
}
