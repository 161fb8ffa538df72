//! Small network value types: CIDR blocks for the allow and bypass lists,
//! and socket options for long-lived connections.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// An IP network such as `10.0.0.0/8` or `::1/128`. A bare address is a
/// network of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Compare IPv4-mapped IPv6 clients (::ffff:a.b.c.d) as IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct CidrParseError;

impl FromStr for Cidr {
    type Err = CidrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| CidrParseError)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().map_err(|_| CidrParseError)?,
        };
        if prefix > max {
            return Err(CidrParseError);
        }
        // An IPv4-mapped network (::ffff:a.b.c.d/104) is an IPv4 one: store
        // it so, since clients are compared as IPv4 too.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(Cidr {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// TCP keepalive probes start after this much idle time, so NAT boxes and
/// firewalls between us and the upstream don't forget long-poll requests
/// and quiet tunnels (many drop idle flows after 5 minutes).
pub const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Turns on TCP keepalive and disables Nagle (proxies forward small writes
/// such as TLS handshakes, where Nagle's delay costs a round trip).
pub fn tune_socket(stream: &tokio::net::TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::debug!("could not enable TCP keepalive: {e}");
    }
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("could not set TCP_NODELAY: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn v4_and_v6_blocks() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        let c: Cidr = "::1".parse().expect("cidr");
        assert!(c.contains(ip("::1")));
        assert!(!c.contains(ip("::2")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("8.8.8.8")));
    }

    #[test]
    fn ipv4_mapped_networks_are_ipv4() {
        let c: Cidr = "::ffff:10.0.0.0/104".parse().expect("cidr");
        assert!(c.contains(ip("10.1.2.3")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        let one: Cidr = "::ffff:0:0".parse().expect("cidr");
        assert!(one.contains(ip("::ffff:0:0")));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["10.0.0.0/33", "::/129", "host", "10.0.0/8", "1.2.3.4/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
