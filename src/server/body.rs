//! Response bodies: fixed text, or a round's metrics rendered chunk by chunk and gzipped when
//! the client accepts it; and the small request helpers every endpoint uses.

use std::convert::Infallible;
use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::metrics::ChunkedRender;
use crate::round::Round;

/// Content type of the text exposition format.
pub(super) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of plain-text answers.
pub(super) const TEXT: &str = "text/plain; charset=utf-8";

/// Content type of JSON answers.
pub(super) const JSON: &str = "application/json";

/// Content type of the HTML pages.
pub(super) const HTML: &str = "text/html; charset=utf-8";

/// A response body: for `/metrics`, the round's probe metrics rendered chunk by chunk as
/// hyper asks for them, then fixed chunks (the exporter's own metrics); for the rest, fixed
/// chunks only.
#[derive(Debug, Default)]
pub struct Chunks {
    /// Renders the probe metrics, while there are any left.
    probes: Option<ChunkedRender>,
    /// Sent after the probe metrics.
    tail: std::collections::VecDeque<Bytes>,
    /// Compresses every chunk when the client accepts gzip; finished after the last chunk.
    gzip: Option<GzEncoder<Vec<u8>>>,
}

impl Chunks {
    /// The next uncompressed chunk.
    fn next_plain(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.probes.as_mut().and_then(ChunkedRender::next_chunk) {
            return Some(chunk);
        }
        self.probes = None;
        self.tail.pop_front()
    }

    /// The next chunk as sent: compressed when gzip is on.
    fn next_sent(&mut self) -> Option<Bytes> {
        loop {
            let plain = self.next_plain();
            let Some(encoder) = self.gzip.as_mut() else {
                return plain;
            };
            match plain {
                Some(chunk) => {
                    // Writing into a Vec cannot fail.
                    let _ = encoder.write_all(&chunk);
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                None => {
                    let out = self
                        .gzip
                        .take()
                        .and_then(|e| e.finish().ok())
                        .unwrap_or_default();
                    return Some(Bytes::from(out));
                }
            }
        }
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.next_sent().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.probes.is_none() && self.tail.is_empty() && self.gzip.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.probes.is_some() || self.gzip.is_some() {
            return hyper::body::SizeHint::default();
        }
        let n: usize = self.tail.iter().map(Bytes::len).sum();
        hyper::body::SizeHint::with_exact(n as u64)
    }
}

impl Chunks {
    /// A round's probe metrics followed by `tail`, gzipped when `gzip`.
    pub(super) fn metrics(round: std::sync::Arc<Round>, tail: Vec<u8>, gzip: bool) -> Chunks {
        Chunks {
            probes: Some(ChunkedRender::new(round)),
            tail: [Bytes::from(tail)].into(),
            // The fastest level: a round's text is very repetitive anyway.
            gzip: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
        }
    }
}

/// Whether an `Accept-Encoding` header accepts gzip: `gzip` (or `*` when gzip is not named)
/// with a quality above zero (RFC 9110 §12.5.3: `q=0`, `q=0.0`, `q=0.000` refuse it).
pub(super) fn accepts_gzip(header: Option<&HeaderValue>) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let mut gzip = None;
    let mut star = None;
    for part in value.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let coding = fields.next().unwrap_or_default();
        let quality = fields
            .filter_map(|f| {
                let (k, v) = f.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .next_back()
            .map_or(1.0, |v| v.parse::<f64>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(quality > 0.0);
        } else if coding == "*" {
            star = Some(quality > 0.0);
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// A request's query string as decoded pairs.
pub(super) fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// A response with a body and content type.
pub(super) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Chunks> {
    respond(
        status,
        content_type,
        Chunks {
            probes: None,
            tail: [body.into()]
                .into_iter()
                .filter(|b| !b.is_empty())
                .collect(),
            gzip: None,
        },
    )
}

/// A response with a prepared body.
pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Chunks,
) -> Response<Chunks> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&h("gzip"))));
        assert!(accepts_gzip(Some(&h("br, GZIP;q=0.5, deflate"))));
        assert!(!accepts_gzip(Some(&h("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&h("gzip; q=0.000"))));
        assert!(!accepts_gzip(Some(&h("gzip;Q=0.0, identity"))));
        assert!(accepts_gzip(Some(&h("gzip;q=0.001"))));
        assert!(accepts_gzip(Some(&h("*"))));
        assert!(!accepts_gzip(Some(&h("*, gzip;q=0"))));
        assert!(!accepts_gzip(Some(&h("*;q=0"))));
        assert!(!accepts_gzip(Some(&h("identity"))));
        assert!(!accepts_gzip(None));
    }
}
