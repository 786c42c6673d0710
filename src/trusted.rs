//! Who the client is: the TCP peer, unless the peer is a trusted proxy, whose word (its
//! PROXY protocol header, its `X-Forwarded-For`) is taken. Untrusted peers cannot choose
//! their address.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The trusted proxies' networks.
#[derive(Debug, Clone, Default)]
pub struct Trusted(Vec<IpNet>);

impl Trusted {
    /// The networks of `edge.trusted_proxies`.
    pub fn new(networks: Vec<IpNet>) -> Trusted {
        Trusted(networks)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: the rightmost `X-Forwarded-For` entry that is not itself
    /// a trusted proxy, when the peer is trusted; the peer otherwise.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        // From the right: trusted hops are skipped; the first other one is the client. An
        // entry that is not an address stops the walk: what stands left of it was written
        // by someone unknown, so the peer is all that is sure.
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.contains(ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
        hops.first().and_then(|hop| parse_hop(hop)).unwrap_or(peer)
    }
}

/// An X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:443`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(networks: &[&str]) -> Trusted {
        Trusted::new(networks.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    /// A trusted peer's X-Forwarded-For names the client, skipping trusted hops.
    #[test]
    fn trusted_peer_names_the_client() {
        let trusted = trusting(&["10.0.0.0/8", "192.0.2.1/32"]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let client = trusted.client_ip(peer, &xff("198.51.100.7, 203.0.113.9, 192.0.2.1"));
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    /// Ports and brackets are read; an entry that is no address ends the trust, so a
    /// client's own entry left of it cannot win.
    #[test]
    fn odd_entries_do_not_let_the_client_choose() {
        let trusted = trusting(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let client = trusted.client_ip(peer, &xff("6.6.6.6, 203.0.113.9:443"));
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
        let client = trusted.client_ip(peer, &xff("6.6.6.6, [2001:db8::1]"));
        assert_eq!(client, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(trusted.client_ip(peer, &xff("6.6.6.6, unknown")), peer);
    }

    /// An untrusted peer's header is ignored.
    #[test]
    fn untrusted_peer_cannot_choose() {
        let trusted = trusting(&["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.50".parse().unwrap();
        assert_eq!(trusted.client_ip(peer, &xff("1.2.3.4")), peer);
    }
}
