//! Each machine gets its own address, so every machine can listen on 8080. The process
//! driver binds loopback addresses; the sandbox driver routes its range over veth pairs,
//! with the range's first address as the host side of every link.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where range claims are kept: the host's lock directory (FHS), else its temp dir.
const LOCK_DIR: &str = "/run/lock";

/// A CIDR block from which machine addresses are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    base: u32,
    size: u32,
}

/// Offsets below this are never handed out: the network address and the gateway.
const FIRST_MACHINE_OFFSET: u32 = 2;
/// Longer prefixes leave no room for machines; shorter ones are more than a host needs.
const PREFIX_LENGTHS: std::ops::RangeInclusive<u32> = 8..=29;

impl AddressRange {
    /// The block of `network`/`prefix_len`, if the prefix leaves room for machines.
    /// `const`, so the config's defaults are ranges checked at compile time.
    pub const fn new(network: Ipv4Addr, prefix_len: u32) -> Option<AddressRange> {
        if prefix_len < *PREFIX_LENGTHS.start() || prefix_len > *PREFIX_LENGTHS.end() {
            return None;
        }
        let size = 1u32 << (32 - prefix_len);
        Some(AddressRange {
            base: network.to_bits() & !(size - 1),
            size,
        })
    }

    /// Parses `a.b.c.d/n`; the range must leave room for machines.
    pub fn parse(text: &str) -> Result<AddressRange, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR block like 127.20.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        len.parse()
            .ok()
            .and_then(|len| AddressRange::new(addr, len))
            .ok_or_else(|| format!("prefix length `/{len}` must be between /8 and /29"))
    }

    /// Parses a range the process driver can bind: inside 127.0.0.0/8.
    pub fn parse_loopback(text: &str) -> Result<AddressRange, String> {
        let range = AddressRange::parse(text)?;
        if !range.gateway().is_loopback() {
            return Err(format!(
                "`{text}` must lie inside 127.0.0.0/8 (the process driver binds loopback)"
            ));
        }
        Ok(range)
    }

    /// Parses a range for sandboxed machines: private (RFC 1918 or 100.64.0.0/10), so
    /// machine addresses never shadow the host's loopback or public destinations.
    pub fn parse_private(text: &str) -> Result<AddressRange, String> {
        let range = AddressRange::parse(text)?;
        let first = range.gateway();
        let shared = first.octets()[0] == 100 && (first.octets()[1] & 0xc0) == 64;
        if !(first.is_private() || shared) {
            return Err(format!(
                "`{text}` must be a private range (10/8, 172.16/12, 192.168/16 or 100.64/10)"
            ));
        }
        Ok(range)
    }

    /// The host side of every sandboxed machine's link; never a machine's address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < self.size
    }

    /// How many machine addresses the range has (not the network, gateway or
    /// broadcast address).
    fn machine_addresses(&self) -> u32 {
        self.size - 1 - FIRST_MACHINE_OFFSET
    }

    /// The `n`th machine address, counting round the range.
    fn machine_address(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + FIRST_MACHINE_OFFSET + n % self.machine_addresses())
    }
}

/// The addresses of a range that machines hold, handed out round the range: a search
/// starts after the last address handed out, so it does not walk every held address,
/// and an address given back (a destroyed machine's, whose process may still be on its
/// way out) is the last to be handed out again.
#[derive(Debug)]
pub struct AddressPool {
    range: AddressRange,
    held: HashSet<Ipv4Addr>,
    /// Where the next search starts, counted in machine addresses.
    next: u32,
}

impl AddressPool {
    pub fn new(range: AddressRange) -> AddressPool {
        AddressPool {
            range,
            held: HashSet::new(),
            next: 0,
        }
    }

    pub fn range(&self) -> AddressRange {
        self.range
    }

    /// Marks an address as a machine's (one that existed before this pool).
    pub fn hold(&mut self, ip: Ipv4Addr) {
        self.held.insert(ip);
    }

    /// Gives a machine's address back.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.held.remove(&ip);
    }

    /// The next address that no machine holds and nothing else uses (`busy`: a socket
    /// listens there), held from now on; none when the range is full.
    pub fn take(&mut self, busy: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let count = self.range.machine_addresses();
        let n = (0..count)
            .map(|i| self.next.wrapping_add(i) % count)
            .find(|n| {
                let ip = self.range.machine_address(*n);
                !self.held.contains(&ip) && !busy.contains(&ip)
            })?;
        self.next = (n + 1) % count;
        let ip = self.range.machine_address(n);
        self.held.insert(ip);
        Some(ip)
    }
}

/// One edgewake's claim on a range: while it is held, no other edgewake on this host
/// can claim the same range (flock(2) on a file named by the range, which the kernel
/// releases when the holder exits, however it exits). Two edgewakes handing out the
/// same addresses would send one's requests to the other's machines.
#[derive(Debug)]
pub struct RangeClaim {
    _file: File,
}

/// Why a range could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "the addresses {range} are in use by another edgewake on this host (it holds {}): \
         give each edgewake its own range (machines.private_ip_range, sandbox.network)",
        path.display()
    )]
    Taken { range: AddressRange, path: PathBuf },
    #[error("cannot claim the addresses {range} ({}): {source}", path.display())]
    Lock {
        range: AddressRange,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AddressRange {
    /// Claims the range for this edgewake until the claim is dropped.
    pub fn claim(&self) -> Result<RangeClaim, ClaimError> {
        let dir = Path::new(LOCK_DIR);
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        self.claim_in(&dir)
    }

    fn claim_in(&self, dir: &Path) -> Result<RangeClaim, ClaimError> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = self.to_string().replace('/', "_");
        let path = dir.join(format!("edgewake-range-{name}.lock"));
        let failed = |source| ClaimError::Lock {
            range: *self,
            path: path.clone(),
            source,
        };
        // Readable by all: any user's edgewake must be able to find it taken.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => Ok(RangeClaim { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ClaimError::Taken { range: *self, path }),
            Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
        }
    }
}

/// Any block with room for machines (tests and tools; the config checks the kind too).
impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<AddressRange, String> {
        AddressRange::parse(text)
    }
}

/// `a.b.c.d/n`, the network address first: what nftables and `ip route` are given.
impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix_len = 32 - self.size.trailing_zeros();
        write!(f, "{}/{prefix_len}", Ipv4Addr::from(self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses are handed out after the gateway, never twice, skipping those held
    /// and those something else listens on; one given back comes round last.
    #[test]
    fn hands_out_round_the_range() {
        let range = AddressRange::parse_loopback("127.20.0.0/29").unwrap();
        assert_eq!(range.gateway(), Ipv4Addr::new(127, 20, 0, 1));
        let mut pool = AddressPool::new(range);
        pool.hold(Ipv4Addr::new(127, 20, 0, 3));
        let busy = HashSet::from([Ipv4Addr::new(127, 20, 0, 4)]);
        let ip = |d| Some(Ipv4Addr::new(127, 20, 0, d));
        assert_eq!(pool.take(&busy), ip(2));
        assert_eq!(pool.take(&busy), ip(5));
        pool.release(Ipv4Addr::new(127, 20, 0, 2));
        assert_eq!(pool.take(&busy), ip(6));
        assert_eq!(pool.take(&busy), ip(2), "given back, handed out last");
    }

    /// A full block yields nothing rather than reusing an address.
    #[test]
    fn full_range_is_exhausted() {
        let range = AddressRange::parse("127.9.9.0/29").unwrap();
        let mut pool = AddressPool::new(range);
        for d in 2..7 {
            pool.hold(Ipv4Addr::new(127, 9, 9, d));
        }
        assert_eq!(pool.take(&HashSet::new()), None);
    }

    /// Each driver's range is checked: loopback for processes, private for sandboxes.
    #[test]
    fn checks_the_kind_of_range() {
        assert!(
            AddressRange::parse_loopback("10.0.0.0/8")
                .unwrap_err()
                .contains("127.0.0.0/8")
        );
        assert!(AddressRange::parse("127.0.0.0").is_err());
        assert!(AddressRange::parse_private("172.30.0.0/16").is_ok());
        assert!(AddressRange::parse_private("100.80.0.0/16").is_ok());
        assert!(AddressRange::parse_private("127.20.0.0/16").is_err());
        assert!(AddressRange::parse_private("8.8.0.0/16").is_err());
        let range = AddressRange::parse("172.30.0.0/16").unwrap();
        assert!(range.contains(Ipv4Addr::new(172, 30, 9, 9)));
        assert!(!range.contains(Ipv4Addr::new(172, 31, 0, 0)));
    }

    /// A claimed range cannot be claimed again until the claim is dropped; another
    /// range can.
    #[test]
    fn a_range_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let range = AddressRange::parse("127.63.0.0/24").unwrap();
        let claim = range.claim_in(dir.path()).unwrap();
        let err = range.claim_in(dir.path()).unwrap_err();
        assert!(matches!(err, ClaimError::Taken { .. }), "{err}");
        assert!(err.to_string().contains("127.63.0.0/24"), "{err}");
        let other = AddressRange::parse("127.63.1.0/24").unwrap();
        assert!(other.claim_in(dir.path()).is_ok());
        drop(claim);
        assert!(range.claim_in(dir.path()).is_ok());
    }

    /// A range is written back as its network and prefix, whatever host bits it was
    /// given, and reads back the same.
    #[test]
    fn displays_as_cidr() {
        let range = AddressRange::parse("127.20.5.9/16").unwrap();
        assert_eq!(range.to_string(), "127.20.0.0/16");
        assert_eq!(range.to_string().parse::<AddressRange>(), Ok(range));
        assert_eq!(AddressRange::new(Ipv4Addr::new(10, 0, 0, 0), 30), None);
    }
}
