//! IP networks written as CIDRs (`10.0.0.0/8`, `fd00::/8`, or a bare address for one host): the
//! proxies whose client address the gateway believes and the networks task targets may be in.

use std::fmt;
use std::net::IpAddr;

/// A network: its first address and prefix length. Built by [`Cidr::parse`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `<address>/<prefix>` or a bare address. Host bits must be zero (`10.1.0.0/8` is refused,
    /// naming `10.0.0.0/8`): an operator who wrote it likely meant something else.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (address, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let network: IpAddr =
            address.parse().map_err(|_| format!("{raw:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: Rust would also read "+8", which nginx does not.
            Some(p) => (p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u8>().ok())
                .flatten()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?} has a prefix length that is not a number in 0-{max}"))?,
        };
        let cidr = Self { network, prefix };
        let masked = cidr.masked(network);
        if masked != network {
            return Err(format!(
                "{raw:?} has bits set after the /{prefix} prefix; did you mean {masked}/{prefix}?"
            ));
        }
        Ok(cidr)
    }

    /// Comma-separated CIDRs (blank items skipped).
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Self::parse).collect()
    }

    /// `ip` with the bits after this prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.2.3.4".parse().unwrap()));
        assert!(net.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::5".parse().unwrap()));
        assert_eq!(Cidr::parse_list(" 10.0.0.0/8, ,192.168.0.0/16").unwrap().len(), 2);
    }

    #[test]
    fn bad_cidrs_say_why() {
        assert!(Cidr::parse("10.1.0.0/8").unwrap_err().contains("did you mean 10.0.0.0/8"));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "10.0.0/8", "host", "fd00::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
