//! Free loopback ports.
//!
//! Peers that can bind port 0 themselves (the origin, the hang server,
//! `gangway --port 0`) should do so; this helper is for programs that must be
//! told a port up front, such as Squid. The kernel may hand the same port to
//! someone else between our probe and the peer's bind, so callers confirm
//! that *their* peer is the one listening (Squid does, through its
//! cache.log).

use std::net::{Ipv4Addr, TcpListener};

/// The only address the harness binds or targets.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A loopback TCP port that was free a moment ago.
///
/// Binds `127.0.0.1:0`, reads the port the kernel chose and releases it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((LOOPBACK, port)).expect("the free port can be bound again");
    }
}
