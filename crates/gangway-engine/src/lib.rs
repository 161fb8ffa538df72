//! # Gangway engine
//!
//! A local HTTP proxy that bridges tools to an upstream corporate proxy,
//! doing the upstream's authentication (Basic, Digest, NTLM) for them. It
//! has no GUI dependency: the `gangway` CLI and the tray app both drive it
//! through [`Bridge`] and [`Control`].
//!
//! # Layout
//! A request moves through these modules top to bottom:
//!
//! 1. [`server`]: binds, accepts under a connection limit, refuses clients
//!    outside the gateway allow list, drains on shutdown. [`Control`] is the
//!    handle for events, status, settings and shutdown.
//! 2. `connection`: one client connection served by hyper (HTTP/1.1,
//!    header limits, idle timeout). hyper reads the client through
//!    `head_check`, which holds back each request head until it has
//!    checked it for request smuggling (bare LF, obs-fold, conflicting
//!    lengths), so a refused head is answered 400 and never forwarded.
//! 3. `router`: CONNECT → `tunnel`; absolute-form → `forward`; origin-form
//!    → `pages` (status page, PAC file). Loops are refused here.
//! 4. `forward` / `tunnel`: clean the head ([`headers`]), choose direct or
//!    upstream ([`bypass`]), and hand the request to
//! 5. [`upstream`]: connection pool, connect, and the one 407 loop driving
//!    the auth state machines of the `gangway-auth` crate, with lockout
//!    safety.
//! 6. [`body`]: streams bodies back, counting bytes; completion returns the
//!    upstream connection to the pool and emits
//! 7. [`events`]: one connection event per request or tunnel, broadcast
//!    and logged, never carrying a secret.
//!
//! An open tunnel relays bytes in `tunnel`; between two plain sockets on
//! Linux it goes through `splice`, so the bytes stay in the kernel.
//!
//! [`settings`] validates configuration once; [`error`] names every failure
//! with the status the client gets.

pub mod body;
pub mod bypass;
mod connection;
pub mod error;
pub mod events;
mod forward;
pub mod fuzzing;
mod head_check;
pub mod headers;
pub mod net;
mod pages;
pub mod probe;
mod router;
pub mod server;
pub mod settings;
#[cfg(target_os = "linux")]
mod splice;
pub mod stats;
mod tunnel;
pub mod upstream;

pub use events::ConnectionEvent;
pub use server::{Bridge, Control, EngineError, Status};
pub use settings::{ProxyType, Settings, SettingsError, SettingsFile};

pub use gangway_auth::{Credentials, Password};
