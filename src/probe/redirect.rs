//! Redirects: which answers are followed, where a `Location` leads, and whether the chain goes
//! on to that URL (no loop, within `follow_redirects`) and with what of the first request.
//! Pure: the requests themselves are [`super::request`]'s.

use super::Failure;
use crate::outcome::FailureReason;
use crate::probe_url::ProbeUrl;
use crate::request::Hop;

/// The codes whose `Location` is followed.
pub fn is_redirect(code: u16) -> bool {
    matches!(code, 301 | 302 | 303 | 307 | 308)
}

/// Where the `location` answered to a request for `url` leads; or why the redirect is not
/// followed (a `Location` that does not make a probe URL leaves the 3xx as the answer).
pub fn resolve(url: &ProbeUrl, location: &str) -> Result<ProbeUrl, String> {
    crate::probe_url::redirect_target(url, location).ok_or_else(|| {
        let shown = crate::peer_text::printable(location);
        format!("its Location \"{shown}\" is not an http(s) URL")
    })
}

/// How the next request of a chain that started at `first` is made, after `followed`
/// redirects and requests to the `visited` URLs, the last of them made as `hop` and answered
/// `code` with a redirect to `next`. The chain ends with a `redirect_limit` failure on a loop
/// or past `limit` redirects.
pub fn next_hop(
    (first, limit): (&ProbeUrl, u8),
    visited: &[ProbeUrl],
    followed: u8,
    hop: Hop,
    code: u16,
    next: &ProbeUrl,
) -> Result<Hop, Failure> {
    let same = |a: &ProbeUrl, b: &ProbeUrl| {
        (a.scheme, &a.host, a.port, &a.path_and_query)
            == (b.scheme, &b.host, b.port, &b.path_and_query)
    };
    if visited.iter().any(|v| same(v, next)) {
        return Err(Failure::new(
            FailureReason::RedirectLimit,
            format!("redirect loop: {code} back to {}", next.raw),
        ));
    }
    if followed >= limit {
        return Err(Failure::new(
            FailureReason::RedirectLimit,
            format!(
                "more than {limit} redirects (the next, {code}, to {})",
                next.raw
            ),
        ));
    }
    Ok(Hop {
        same_origin: (next.scheme, &next.host, next.port)
            == (first.scheme, &first.host, first.port),
        keep_method: hop.keep_method && matches!(code, 307 | 308),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_url::parse_url;

    fn url(raw: &str) -> ProbeUrl {
        parse_url(raw).unwrap()
    }

    #[test]
    fn a_location_resolves_against_the_request_url_or_is_not_followed() {
        let base = url("http://example.com/a/b?q");
        assert_eq!(resolve(&base, "c").unwrap().raw, "http://example.com/a/c");
        assert_eq!(
            resolve(&base, "ftp://example.com/").unwrap_err(),
            "its Location \"ftp://example.com/\" is not an http(s) URL"
        );
    }

    #[test]
    fn the_chain_stops_at_a_loop_or_past_its_limit_and_keeps_what_the_code_allows() {
        let first = url("http://example.com/");
        let visited = [first.clone()];
        let back = next_hop((&first, 5), &visited, 0, Hop::FIRST, 302, &first).unwrap_err();
        assert_eq!(back.reason, FailureReason::RedirectLimit);
        assert_eq!(
            back.detail,
            "redirect loop: 302 back to http://example.com/"
        );
        let other = url("https://example.com/");
        let past = next_hop((&first, 1), &visited, 1, Hop::FIRST, 301, &other).unwrap_err();
        assert_eq!(
            past.detail,
            "more than 1 redirects (the next, 301, to https://example.com/)"
        );
        // Another scheme is another origin; a 307 keeps the method, a 302 does not.
        let hop = next_hop((&first, 5), &visited, 0, Hop::FIRST, 307, &other).unwrap();
        assert_eq!(
            hop,
            Hop {
                same_origin: false,
                keep_method: true
            }
        );
        let same = url("http://example.com/login");
        let hop = next_hop((&first, 5), &visited, 0, Hop::FIRST, 302, &same).unwrap();
        assert_eq!(
            hop,
            Hop {
                same_origin: true,
                keep_method: false
            }
        );
    }
}
