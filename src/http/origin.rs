//! Where a request comes from: client IP and user agent.
//!
//! `X-Forwarded-For` is only believed when the direct peer is a configured
//! trusted proxy (`LATCHKEY_TRUSTED_PROXIES`); then the client is the
//! right-most address that is not itself a trusted proxy. Anyone else could
//! put anything in the header.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::{FromRequest, Request, RequestBody};

use crate::refresh::Origin;
use crate::state::AppState;

/// The client address behind `trusted` proxies.
///
/// Proxies append the address they saw to the right of the chain, so the
/// chain is read from the right: trusted hops are skipped and the first
/// untrusted one is the client. Anything to its left was written by the
/// client and is ignored. If that entry is not an address, a trusted proxy
/// forwarded a header without appending to it; trust only the peer then.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.map(|p| p.to_canonical())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops = forwarded_for.iter().flat_map(|line| line.split(',')).map(str::trim).rev();
    let mut nearest = peer;
    for hop in hops.by_ref() {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return Some(peer);
        };
        if !is_trusted(&ip) {
            return Some(ip);
        }
        nearest = ip;
    }
    // Every hop is trusted: the left-most is the best we know.
    Some(nearest)
}

/// Extractor for [`Origin`].
pub struct ClientOrigin(pub Origin);

impl<'a> FromRequest<'a> for ClientOrigin {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let trusted = req.data::<AppState>().map(|s| s.settings.trusted_proxies.as_slice()).unwrap_or(&[]);
        let peer = match req.remote_addr().0 {
            poem::Addr::SocketAddr(addr) => Some(addr.ip().to_canonical()),
            _ => None,
        };
        // Every header line: a proxy may append a line instead of extending one.
        let forwarded: Vec<&str> =
            req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        let ip = client_ip(peer, &forwarded, trusted);
        let user_agent = req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(ClientOrigin(Origin { ip, user_agent }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(Some(ip("203.0.113.9")), &["1.2.3.4"], &trusted), Some(ip("203.0.113.9")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(Some(ip("10.0.0.2")), &["198.51.100.7, 203.0.113.5, 10.0.0.3"], &trusted);
        assert_eq!(got, Some(ip("203.0.113.5")));
        // All hops trusted: the left-most is the best we know.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &["10.1.1.1"], &trusted), Some(ip("10.1.1.1")));
        // Client-written garbage to the left of the real hop is ignored (nginx appends).
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &["evil, 1.2.3.4"], &trusted), Some(ip("1.2.3.4")));
        // A proxy that appends a second header line (HAProxy): the last line counts.
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), &["198.51.100.1", "203.0.113.8"], &trusted),
            Some(ip("203.0.113.8"))
        );
        // Garbage where the proxy's entry should be: only the peer is certain.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &["1.2.3.4, garbage"], &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &[], &trusted), Some(ip("10.0.0.2")));
        // IPv4-mapped addresses are canonical.
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), &["::ffff:203.0.113.5"], &trusted),
            Some(ip("203.0.113.5"))
        );
    }
}
