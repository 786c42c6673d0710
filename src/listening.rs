//! Which TCP sockets listen where, as the kernel lists them in `/proc/<pid>/net/tcp`
//! and `tcp6` (each process sees its own network namespace there): the address
//! allocator skips addresses something already listens on, and the readiness probe
//! checks that what answers is the machine's own socket.

use crate::addresses::AddressRange;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The kernel's code for a listening socket (`TCP_LISTEN`) in the `st` column.
const LISTEN_STATE: &str = "0A";
/// How much of a table one read asks for: a few hundred rows.
const TABLE_READ_BYTES: usize = 32 * 1024;

/// A listening socket: where, and its inode (what `/proc/<pid>/fd` links name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub inode: u64,
}

impl Listener {
    /// Whether a connection to `to` reaches this socket: the same port, and the same
    /// address or a wildcard one (`0.0.0.0`, `::`, which takes IPv4 too).
    pub fn answers(&self, to: SocketAddr) -> bool {
        self.addr.port() == to.port()
            && (self.addr.ip() == to.ip()
                || self.addr.ip().is_unspecified()
                || v4_mapped(self.addr.ip()) == Some(to.ip()))
    }
}

/// The sockets listening in edgewake's own network namespace, IPv4 and IPv6: asked of
/// the kernel's socket diagnostics (which list listening sockets without walking every
/// connection, as `ss -l` does), else read from `/proc/self/net`.
pub fn listeners_here() -> Vec<Listener> {
    match diag::listeners() {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!("socket diagnostics unavailable ({e}); reading /proc/self/net");
            listeners("self")
        }
    }
}

/// The sockets listening in the network namespace of `/proc/<pid>` (`self` for
/// edgewake's own): IPv4 and IPv6. A table that cannot be read lists nothing.
pub fn listeners(pid: &str) -> Vec<Listener> {
    let proc = Path::new("/proc").join(pid).join("net");
    ["tcp", "tcp6"]
        .iter()
        .flat_map(|table| listening_rows(&proc.join(table)))
        .collect()
}

/// The listening rows of one table. The kernel lists listening sockets first, then
/// every connection; reading stops at the first connection, because producing the rest
/// walks the whole connection table again on every read (milliseconds on a busy host,
/// and the allocator asks on every create).
fn listening_rows(table: &Path) -> Vec<Listener> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(table) else {
        return Vec::new();
    };
    std::io::BufReader::with_capacity(TABLE_READ_BYTES, file)
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .map_while(|line| parse_line(&line))
        .collect()
}

/// The addresses of `range` that some socket on this host (edgewake's namespace)
/// listens on, whatever the port.
pub fn addresses_in(range: AddressRange) -> HashSet<Ipv4Addr> {
    listeners_here()
        .into_iter()
        .filter_map(|l| match l.addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            ip => match v4_mapped(ip) {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            },
        })
        .filter(|ip| range.contains(*ip))
        .collect()
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
fn v4_mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// One row of the table, if it is a listening socket:
/// `sl local_address rem_address st ... uid timeout inode ...`.
fn parse_line(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&LISTEN_STATE) {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let addr = SocketAddr::new(parse_ip(ip)?, u16::from_str_radix(port, 16).ok()?);
    let inode = fields.get(9)?.parse().ok()?;
    Some(Listener { addr, inode })
}

/// The kernel prints an address as 32-bit words in the host's byte order.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let text = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(text, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// `NETLINK_SOCK_DIAG` (sock_diag(7)): one dump request per address family for TCP
/// sockets in the listening state, answered without the kernel walking connections.
mod diag {
    use super::Listener;
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::time::Duration;

    // From linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h (stable kernel ABI).
    const AF_NETLINK: i32 = 16;
    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const IPPROTO_TCP: u8 = 6;
    const TCP_LISTEN: u32 = 10;
    /// `struct nlmsghdr`.
    const HEADER_LEN: usize = 16;
    /// `struct inet_diag_req_v2`.
    const REQUEST_LEN: usize = 56;
    /// `struct inet_diag_msg` up to and with `idiag_inode`.
    const MESSAGE_LEN: usize = 72;
    /// A dump never stalls for longer: the kernel answers at once or not at all.
    const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

    pub fn listeners() -> std::io::Result<Vec<Listener>> {
        let socket = Socket::new(
            Domain::from(AF_NETLINK),
            Type::DGRAM,
            Some(Protocol::from(NETLINK_SOCK_DIAG)),
        )?;
        socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let mut found = Vec::new();
        for family in [AF_INET, AF_INET6] {
            socket.send(&request(family))?;
            read_dump(&socket, &mut found)?;
        }
        Ok(found)
    }

    /// A dump request for TCP sockets of `family` in the listening state.
    fn request(family: u8) -> [u8; HEADER_LEN + REQUEST_LEN] {
        let mut message = [0u8; HEADER_LEN + REQUEST_LEN];
        message[0..4].copy_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
        message[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        message[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        message[HEADER_LEN] = family;
        message[HEADER_LEN + 1] = IPPROTO_TCP;
        let states = 1u32 << TCP_LISTEN;
        message[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&states.to_ne_bytes());
        message
    }

    /// Reads answers until the dump is done.
    fn read_dump(mut socket: &Socket, found: &mut Vec<Listener>) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = socket.read(&mut buf)?;
            let mut at = 0;
            while at + HEADER_LEN <= n {
                let len = u32::from_ne_bytes(word(&buf, at)) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if len < HEADER_LEN || at + len > n {
                    return Err(std::io::Error::other("a truncated sock_diag answer"));
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => return Err(std::io::Error::other("sock_diag refused")),
                    _ => found.extend(parse(&buf[at + HEADER_LEN..at + len])),
                }
                at += len.next_multiple_of(4);
            }
        }
    }

    fn word(buf: &[u8], at: usize) -> [u8; 4] {
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    }

    /// `inet_diag_msg`: family, then the socket id (ports and addresses in network
    /// order), then the inode.
    fn parse(msg: &[u8]) -> Option<Listener> {
        if msg.len() < MESSAGE_LEN {
            return None;
        }
        let port = u16::from_be_bytes([msg[4], msg[5]]);
        let ip = match msg[0] {
            AF_INET => IpAddr::V4(Ipv4Addr::from(word(msg, 8))),
            AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&msg[8..24]).ok()?)),
            _ => return None,
        };
        let inode = u32::from_ne_bytes(word(msg, 68));
        Some(Listener {
            addr: SocketAddr::new(ip, port),
            inode: u64::from(inode),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket this process listens on is listed with its address, and its address
    /// counts as in use in its range; wildcards answer for every address.
    #[test]
    fn finds_listening_sockets() {
        let socket = std::net::TcpListener::bind("127.61.0.9:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let found: Vec<_> = listeners("self")
            .into_iter()
            .filter(|l| l.addr == addr)
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].answers(addr));
        assert!(!found[0].answers(SocketAddr::new(addr.ip(), addr.port() + 1)));
        let here: Vec<_> = diag::listeners()
            .expect("socket diagnostics answer")
            .into_iter()
            .filter(|l| l.addr == addr)
            .collect();
        assert_eq!(here, found, "socket diagnostics and /proc agree");
        let range = AddressRange::parse("127.61.0.0/24").unwrap();
        assert!(addresses_in(range).contains(&Ipv4Addr::new(127, 61, 0, 9)));
        let wildcard = Listener {
            addr: "[::]:8080".parse().unwrap(),
            inode: 1,
        };
        assert!(wildcard.answers("127.61.0.9:8080".parse().unwrap()));
    }

    /// Rows as the kernel writes them: host-order words, hex ports; only LISTEN rows.
    #[test]
    fn parses_the_kernels_rows() {
        let v4 = "   0: 0900003D:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let ip = Ipv4Addr::from(u32::from_str_radix("0900003D", 16).unwrap().to_ne_bytes());
        assert_eq!(
            parse_line(v4),
            Some(Listener {
                addr: SocketAddr::new(IpAddr::V4(ip), 8080),
                inode: 4242
            })
        );
        let established = v4.replacen(" 0A ", " 01 ", 1);
        assert_eq!(parse_line(&established), None);
        let v6 = "   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1";
        let any = parse_line(v6).unwrap();
        assert_eq!(any.addr, "[::]:8080".parse().unwrap());
    }
}
