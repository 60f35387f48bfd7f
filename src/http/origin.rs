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
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(chain) = forwarded_for else { return Some(peer) };
    let hops: Vec<IpAddr> = chain.split(',').map(str::trim).map_while(|s| s.parse::<IpAddr>().ok()).collect();
    if hops.len() != chain.split(',').count() {
        // A malformed chain: trust only what we saw ourselves.
        return Some(peer);
    }
    Some(hops.iter().rev().find(|ip| !is_trusted(ip)).or(hops.first()).copied().unwrap_or(peer))
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
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let ip = client_ip(peer, forwarded, trusted);
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
        assert_eq!(client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4"), &trusted), Some(ip("203.0.113.9")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(Some(ip("10.0.0.2")), Some("198.51.100.7, 203.0.113.5, 10.0.0.3"), &trusted);
        assert_eq!(got, Some(ip("203.0.113.5")));
        // All hops trusted: the left-most is the best we know.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), Some("10.1.1.1"), &trusted), Some(ip("10.1.1.1")));
        // Garbage in the chain: fall back to the peer.
        assert_eq!(client_ip(Some(ip("10.0.0.2")), Some("evil, 1.2.3.4"), &trusted), Some(ip("10.0.0.2")));
        assert_eq!(client_ip(Some(ip("10.0.0.2")), None, &trusted), Some(ip("10.0.0.2")));
    }
}
