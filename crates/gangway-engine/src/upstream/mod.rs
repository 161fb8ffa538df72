//! Reaching the next hop: the upstream proxy, or the origin itself for
//! direct routes.
//!
//! - [`connect`]: DNS + TCP + HTTP/1.1 handshake, under the connect timeout.
//! - [`pool`]: idle connections, checked out exclusively, noticed when dead.
//! - [`exchange`]: sends one request, running the 407 loop when the
//!   upstream wants authentication.
//! - [`auth`]: the per-request authentication state machine the loop drives.
//! - [`gate`]: lockout safety for the configured credentials.
//! - [`leg_body`]: the upload clock behind the response timeout, and the
//!   `Expect: 100-continue` gate that keeps a streamed body re-sendable.

pub mod auth;
pub mod connect;
pub mod exchange;
pub mod gate;
pub mod leg_body;
pub mod pool;

use std::sync::Arc;

use crate::settings::UpstreamSettings;
use crate::stats::Stats;

pub use connect::PeerKind;
pub use exchange::{Connector, Exchange, Payload};

/// One way to reach a peer: where, and the pool key its connections share.
#[derive(Clone, Debug)]
pub struct Link {
    pub host: String,
    pub port: u16,
    pub kind: PeerKind,
    pub key: String,
    /// For an upstream that authenticates: at most this many connections
    /// (busy or idle) are opened while requests can wait briefly for one,
    /// so that handshakes stay few. `None`: no limit.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl Link {
    pub fn new(host: &str, port: u16, kind: PeerKind) -> Self {
        let authority = connect::authority(host, port);
        let key = match kind {
            PeerKind::Upstream => format!("proxy|{authority}"),
            PeerKind::Origin => format!("origin|{authority}"),
        };
        Link {
            host: host.to_owned(),
            port,
            kind,
            key,
            slots: None,
        }
    }

    pub fn authority(&self) -> String {
        connect::authority(&self.host, self.port)
    }
}

/// The configured upstream proxy with its authentication state.
#[derive(Debug)]
pub struct Upstream {
    pub settings: UpstreamSettings,
    pub link: Link,
    pub auth: auth::AuthState,
}

impl Upstream {
    /// `pool_size`: how many authenticated connections to keep and prefer.
    pub fn new(settings: UpstreamSettings, pool_size: usize, stats: Arc<Stats>) -> Self {
        let mut link = Link::new(&settings.host, settings.port, PeerKind::Upstream);
        if settings.credentials.is_some() && pool_size > 0 {
            link.slots = Some(Arc::new(tokio::sync::Semaphore::new(pool_size)));
        }
        let auth = auth::AuthState::new(
            settings.proxy_type,
            settings.credentials.clone(),
            gate::CredentialGate::new(stats),
            link.authority(),
        );
        Upstream {
            settings,
            link,
            auth,
        }
    }
}
