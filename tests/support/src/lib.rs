//! Gangway's integration-test harness: real peers on loopback, driven from
//! plain synchronous `#[test]` functions.
//!
//! Every peer binds or targets `127.0.0.1` only, every wait is a bounded
//! readiness poll, and every peer cleans up after itself on `Drop`, so tests
//! may run in parallel without sharing a port.
//!
//! # Layout
//! - [`ports`]: free loopback ports.
//! - [`poll`]: the one bounded polling loop every readiness wait goes through.
//! - [`system`]: finding the external programs (Squid, curl, htpasswd) and
//!   failing loudly, naming the Debian package, when one is missing;
//!   signalling and reaping child processes.
//! - [`pattern`]: deterministic payloads and their SHA-256, shared by the
//!   origin's `/bytes/N` and by upload tests.
//! - [`origin`]: a hyper 1 origin server (plain HTTP, or HTTPS behind a test
//!   CA from [`tls`]) with `/hello`, `/echo`, `/bytes/N`, `/chunked`,
//!   `/slow/MS`, `/status/CODE`, counting accepted TCP connections.
//! - [`tls`]: the throwaway CA and `localhost`/`127.0.0.1` server certificate.
//! - [`hang`]: a server that accepts and never answers, and a port with
//!   nothing listening.
//! - [`squid`]: a real Squid from a private config: no auth, Basic or Digest;
//!   access-log inspection; stop and restart on the same port.
//! - [`ntlm_peer`]: the independent NTLM upstream (`tests/peers/ntlm_proxy.py`,
//!   pyspnego's acceptor, NTLMv2 only) from the project's venv, and its
//!   handshake counters.
//! - [`offer`]: an upstream that answers everything with a fixed 407 offer
//!   set (e.g. only `Negotiate`), counting requests.
//! - [`gangway`]: the real `gangway` binary under test, its ready line and
//!   captured logs.
//! - [`curl`]: curl as the client a user would run, through the bridge.
//! - [`raw`]: a raw TCP client for malformed, oversized and slow requests.
//! - [`status`]: the bridge's status page and `/status.json`.
//! - [`chaos`]: a TCP relay in front of a real upstream that breaks a
//!   seeded share of its keep-alive connections, before or after a request.
//! - [`procfs`]: a process's open descriptors and memory from `/proc`, and
//!   closing a socket with a reset.
//! - [`stream`]: gigabyte transfers through curl's pipes, generated and
//!   checked on the fly so nothing but the bridge could buffer them.
//! - `runtime` (private): the small tokio runtime each server owns, so that
//!   dropping the server stops everything it spawned.
//!
//! A typical test: start an [`Origin`], maybe a [`Squid`], then a
//! [`Gangway`] pointing at it, then drive a [`Curl`] through the bridge and
//! assert on what came back.
//!
//! The harness is synchronous on purpose (servers run on their own private
//! tokio runtimes); do not call it from inside an async runtime.

pub mod chaos;
pub mod curl;
pub mod gangway;
pub mod hang;
pub mod ntlm_peer;
pub mod offer;
pub mod origin;
pub mod pattern;
pub mod poll;
pub mod ports;
pub mod procfs;
pub mod raw;
mod runtime;
pub mod squid;
pub mod status;
pub mod stream;
pub mod system;
pub mod tls;

pub use chaos::{Chaos, ChaosConfig, ChaosStats, Cut};
pub use curl::{Curl, CurlOutput, Transfer};
pub use gangway::{Gangway, GangwayBuilder};
pub use hang::{closed_port, Hang};
pub use ntlm_peer::{NtlmPeer, NtlmStats, NtlmUser};
pub use offer::Offer;
pub use origin::{EchoReply, Origin};
pub use pattern::{pattern, sha256_hex, PatternFile};
pub use poll::wait_for;
pub use ports::free_port;
pub use raw::{Closed, RawConn, ResponseHead};
pub use squid::{AccessEntry, Squid, SquidConfig};
pub use status::{status_json, status_page};
