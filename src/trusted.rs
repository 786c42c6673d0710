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
    /// From config entries (CIDRs or single addresses); validated before.
    pub fn parse(entries: &[String]) -> Trusted {
        let net = |e: &String| {
            e.parse::<IpNet>()
                .ok()
                .or_else(|| e.parse::<IpAddr>().ok().map(IpNet::from))
        };
        Trusted(entries.iter().filter_map(net).collect())
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
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|hop| !self.contains(**hop))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    /// A trusted peer's X-Forwarded-For names the client, skipping trusted hops.
    #[test]
    fn trusted_peer_names_the_client() {
        let trusted = Trusted::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let client = trusted.client_ip(peer, &xff("198.51.100.7, 203.0.113.9, 192.0.2.1"));
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    /// An untrusted peer's header is ignored.
    #[test]
    fn untrusted_peer_cannot_choose() {
        let trusted = Trusted::parse(&["10.0.0.0/8".into()]);
        let peer: IpAddr = "203.0.113.50".parse().unwrap();
        assert_eq!(trusted.client_ip(peer, &xff("1.2.3.4")), peer);
    }
}
