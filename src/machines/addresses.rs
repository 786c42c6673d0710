//! Each machine gets its own loopback address, so every machine can listen on 8080.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// A CIDR block inside 127.0.0.0/8 from which machine addresses are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    base: u32,
    size: u32,
}

impl AddressRange {
    /// Parses `127.x.y.z/n`; the range must be loopback and leave room for machines.
    pub fn parse(text: &str) -> Result<AddressRange, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR block like 127.20.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("prefix length `/{len}` must be between /8 and /30"))?;
        if !addr.is_loopback() {
            return Err(format!(
                "`{text}` must lie inside 127.0.0.0/8 (the process driver binds loopback)"
            ));
        }
        let size = 1u32 << (32 - len);
        Ok(AddressRange {
            base: u32::from(addr) & !(size - 1),
            size,
        })
    }

    /// The lowest address not in `taken`, skipping the block's first and last address.
    pub fn allocate(&self, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (1..self.size - 1)
            .map(|offset| Ipv4Addr::from(self.base + offset))
            .find(|ip| !taken.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses are handed out lowest first and never twice.
    #[test]
    fn allocates_lowest_free() {
        let range = AddressRange::parse("127.20.0.0/16").unwrap();
        let mut taken = HashSet::new();
        let first = range.allocate(&taken).unwrap();
        assert_eq!(first, Ipv4Addr::new(127, 20, 0, 1));
        taken.insert(first);
        assert_eq!(
            range.allocate(&taken).unwrap(),
            Ipv4Addr::new(127, 20, 0, 2)
        );
    }

    /// A full block yields nothing rather than reusing an address.
    #[test]
    fn full_range_is_exhausted() {
        let range = AddressRange::parse("127.9.9.0/30").unwrap();
        let taken: HashSet<_> = [Ipv4Addr::new(127, 9, 9, 1), Ipv4Addr::new(127, 9, 9, 2)].into();
        assert_eq!(range.allocate(&taken), None);
    }

    /// Non-loopback ranges are refused: the process driver binds loopback only.
    #[test]
    fn refuses_non_loopback() {
        assert!(
            AddressRange::parse("10.0.0.0/8")
                .unwrap_err()
                .contains("127.0.0.0/8")
        );
        assert!(AddressRange::parse("127.0.0.0").is_err());
    }
}
