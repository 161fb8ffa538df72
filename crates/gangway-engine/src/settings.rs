//! Settings: the raw, serde-friendly form ([`SettingsFile`]) that the CLI,
//! a TOML file and the app fill in, validated once into [`Settings`], which
//! the rest of the engine uses without re-checking. Defaults live here and
//! nowhere else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use gangway_auth::{Credentials, Password};
use serde::{Deserialize, Serialize};

use crate::bypass::BypassList;
use crate::net::Cidr;

/// The port Gangway listens on unless told otherwise (Squid's, which tools
/// already expect a local proxy on).
pub const DEFAULT_PORT: u16 = 3128;
/// The bypass list when none is configured: loopback stays local.
pub const DEFAULT_BYPASS: &[&str] = &["localhost", "127.0.0.0/8", "::1"];
/// TCP connect to an upstream or origin. Long enough for a slow VPN, short
/// enough that a tool is told about a dead proxy before it gives up itself.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for a response head after the request was sent. Generous, since
/// origins behind corporate proxies can be slow; long polls use bodies.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A client connection that has not completed a request head for this long
/// (idle keep-alive, or a slowloris) is closed. Clients' own keep-alive
/// pools retire idle connections sooner or retry transparently.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for in-flight requests and tunnels.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent client connections. Each tunnel holds two sockets, so this
/// stays well under a raised file-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The largest request head accepted (request line plus headers).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Idle authenticated upstream connections kept for reuse.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// An idle pooled connection older than this is closed rather than reused:
/// Squid's default `client_persistent_connections` idle timeout is 2 min.
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(50);

/// How Gangway authenticates to the upstream proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyType {
    /// No credentials: the upstream lets us through, or there is none.
    #[default]
    Noauth,
    Basic,
    Digest,
    Ntlm,
    /// Take the strongest scheme the upstream offers (NTLM > Digest > Basic).
    Auto,
}

impl ProxyType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Noauth => "noauth",
            ProxyType::Basic => "basic",
            ProxyType::Digest => "digest",
            ProxyType::Ntlm => "ntlm",
            ProxyType::Auto => "auto",
        }
    }

    /// Whether this setting answers a challenge of `scheme`: the named
    /// scheme, or with `auto` any scheme Gangway implements.
    pub fn accepts(self, scheme: &gangway_auth::Scheme) -> bool {
        use gangway_auth::Scheme;
        match self {
            ProxyType::Basic => *scheme == Scheme::Basic,
            ProxyType::Digest => *scheme == Scheme::Digest,
            ProxyType::Ntlm => *scheme == Scheme::Ntlm,
            ProxyType::Auto | ProxyType::Noauth => {
                matches!(scheme, Scheme::Basic | Scheme::Digest | Scheme::Ntlm)
            }
        }
    }

    pub fn needs_credentials(self) -> bool {
        !matches!(self, ProxyType::Noauth)
    }
}

impl std::str::FromStr for ProxyType {
    type Err = SettingsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "noauth" | "none" => Ok(ProxyType::Noauth),
            "basic" => Ok(ProxyType::Basic),
            "digest" => Ok(ProxyType::Digest),
            "ntlm" => Ok(ProxyType::Ntlm),
            "auto" => Ok(ProxyType::Auto),
            other => Err(SettingsError::ProxyType(other.to_owned())),
        }
    }
}

/// Settings as a person writes them: every field optional, so a file, the
/// command line and the app can be layered (`merge`) before validation.
/// The password is deliberately absent: it never lives in a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub listen_address: Option<String>,
    pub port: Option<u16>,
    pub proxy: Option<String>,
    pub proxy_type: Option<ProxyType>,
    pub user: Option<String>,
    pub realm: Option<String>,
    pub workstation: Option<String>,
    pub bypass: Option<Vec<String>>,
    pub gateway: Option<bool>,
    pub allow: Option<Vec<String>>,
    pub connect_timeout: Option<u64>,
    pub read_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub pool_size: Option<usize>,
}

impl SettingsFile {
    /// Parses TOML. A `password` key is refused with a message saying where
    /// the password belongs instead.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| SettingsError::File(e.message().to_owned()))?;
        if value.contains_key("password") {
            return Err(SettingsError::PasswordInFile);
        }
        SettingsFile::deserialize(value).map_err(|e| SettingsError::File(e.message().to_owned()))
    }

    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: SettingsFile) -> SettingsFile {
        SettingsFile {
            listen_address: over.listen_address.or(self.listen_address),
            port: over.port.or(self.port),
            proxy: over.proxy.or(self.proxy),
            proxy_type: over.proxy_type.or(self.proxy_type),
            user: over.user.or(self.user),
            realm: over.realm.or(self.realm),
            workstation: over.workstation.or(self.workstation),
            bypass: over.bypass.or(self.bypass),
            gateway: over.gateway.or(self.gateway),
            allow: over.allow.or(self.allow),
            connect_timeout: over.connect_timeout.or(self.connect_timeout),
            read_timeout: over.read_timeout.or(self.read_timeout),
            idle_timeout: over.idle_timeout.or(self.idle_timeout),
            max_connections: over.max_connections.or(self.max_connections),
            pool_size: over.pool_size.or(self.pool_size),
        }
    }

    /// Validates everything once. `password` comes from wherever the caller
    /// keeps it (keyring, stdin, environment), never from the file.
    pub fn validate(self, password: Option<Password>) -> Result<Settings, SettingsError> {
        let ip: IpAddr = match self.listen_address.as_deref() {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(s) => s
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| SettingsError::ListenAddress(s.to_owned()))?,
        };
        let listen = SocketAddr::new(ip, self.port.unwrap_or(DEFAULT_PORT));

        let allow = self
            .allow
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Cidr>()
                    .map_err(|_| SettingsError::Allow(s.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let gateway = self.gateway.unwrap_or(false);
        if !ip.is_loopback() && !gateway {
            return Err(SettingsError::NeedsGateway(ip));
        }
        if gateway && allow.is_empty() {
            return Err(SettingsError::GatewayWithoutAllow);
        }

        let bypass = match self.bypass {
            None => BypassList::parse(DEFAULT_BYPASS.iter().copied())?,
            Some(list) => BypassList::parse(list.iter().map(String::as_str))?,
        };

        let proxy_type = self.proxy_type.unwrap_or_default();
        let upstream = match self
            .proxy
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => {
                if proxy_type.needs_credentials() {
                    return Err(SettingsError::TypeWithoutProxy(proxy_type));
                }
                None
            }
            Some(url) => {
                let (host, port) = parse_proxy_url(url)?;
                let credentials = if proxy_type.needs_credentials() {
                    let user = self
                        .user
                        .as_deref()
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .ok_or(SettingsError::MissingUser(proxy_type))?;
                    let password = password.ok_or(SettingsError::MissingPassword)?;
                    let workstation = self
                        .workstation
                        .filter(|w| !w.trim().is_empty())
                        .unwrap_or_else(default_workstation);
                    Some(Credentials::new(
                        user,
                        self.realm.as_deref(),
                        password,
                        &workstation,
                    ))
                } else {
                    None
                };
                Some(UpstreamSettings {
                    host,
                    port,
                    proxy_type,
                    credentials,
                })
            }
        };

        let secs = |v: Option<u64>, d: Duration, name: &'static str| match v {
            None => Ok(d),
            Some(0) => Err(SettingsError::ZeroTimeout(name)),
            Some(n) => Ok(Duration::from_secs(n)),
        };
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(SettingsError::ZeroLimit("max_connections"));
        }
        Ok(Settings {
            listen,
            gateway,
            allow,
            bypass,
            upstream,
            timeouts: Timeouts {
                connect: secs(
                    self.connect_timeout,
                    DEFAULT_CONNECT_TIMEOUT,
                    "connect_timeout",
                )?,
                read: secs(self.read_timeout, DEFAULT_READ_TIMEOUT, "read_timeout")?,
                idle: secs(self.idle_timeout, DEFAULT_IDLE_TIMEOUT, "idle_timeout")?,
                drain: DEFAULT_DRAIN_TIMEOUT,
                pool_idle: DEFAULT_POOL_IDLE,
            },
            limits: Limits {
                max_connections,
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                pool_size: self.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
            },
        })
    }
}

/// Validated settings, ready to use.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Listening beyond loopback for other machines; requires `allow`.
    pub gateway: bool,
    /// Client networks allowed in gateway mode (add 127.0.0.1 to serve this
    /// machine too). Without gateway mode the listener is loopback-only.
    pub allow: Vec<Cidr>,
    pub bypass: BypassList,
    /// `None`: no upstream, every request goes direct.
    pub upstream: Option<UpstreamSettings>,
    pub timeouts: Timeouts,
    pub limits: Limits,
}

impl Settings {
    /// A local proxy with defaults and no upstream: what `gangway` alone runs.
    pub fn direct() -> Settings {
        match SettingsFile::default().validate(None) {
            Ok(s) => s,
            // The defaults are constants validated by a unit test.
            Err(e) => unreachable!("default settings are valid: {e}"),
        }
    }

    /// One line for people: where we listen and where traffic goes.
    pub fn describe(&self) -> String {
        match &self.upstream {
            None => format!("{} -> direct", self.listen),
            Some(up) => format!("{} -> {}", self.listen, up.describe()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    pub host: String,
    pub port: u16,
    pub proxy_type: ProxyType,
    /// Present exactly when `proxy_type` needs credentials.
    pub credentials: Option<Credentials>,
}

impl UpstreamSettings {
    /// `host:port`, the way errors and logs name the upstream.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Same peer, scheme and credentials (the password compared too).
    pub fn same_as(&self, other: &UpstreamSettings) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.proxy_type == other.proxy_type
            && self.credentials == other.credentials
    }

    /// `http://proxy:8080 (ntlm as CORP\bob)`.
    pub fn describe(&self) -> String {
        match &self.credentials {
            Some(c) => format!(
                "http://{} ({} as {})",
                self.authority(),
                self.proxy_type.as_str(),
                c.display_name()
            ),
            None => format!("http://{} (no auth)", self.authority()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub idle: Duration,
    pub drain: Duration,
    pub pool_idle: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub pool_size: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("`{0}` is not an IP address to listen on")]
    ListenAddress(String),
    #[error("listening on {0} would expose the bridge to other machines: add --gateway and an --allow list")]
    NeedsGateway(IpAddr),
    #[error("gateway mode needs an --allow list of client networks (e.g. --allow 10.0.0.0/8)")]
    GatewayWithoutAllow,
    #[error("`{0}` in the allow list is not an IP address or CIDR block")]
    Allow(String),
    #[error("`{0}` in the bypass list is not a host, domain, IP address or CIDR block")]
    Bypass(String),
    #[error("unknown proxy type `{0}`: use noauth, basic, digest, ntlm or auto")]
    ProxyType(String),
    #[error("upstream proxy `{0}`: {1}")]
    ProxyUrl(String, &'static str),
    #[error("proxy type {} needs an upstream (--proxy http://host:port)", .0.as_str())]
    TypeWithoutProxy(ProxyType),
    #[error("proxy type {} needs a user name (--user)", .0.as_str())]
    MissingUser(ProxyType),
    #[error("no password given: use --password-stdin, GANGWAY_PASSWORD or the keyring")]
    MissingPassword,
    #[error("{0} must be at least 1 second")]
    ZeroTimeout(&'static str),
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error("settings file: {0}")]
    File(String),
    #[error("settings files never hold the password: use --password-stdin, GANGWAY_PASSWORD or the keyring")]
    PasswordInFile,
}

/// Accepts `http://host:port`, `host:port` and `http://[v6]:port`; the port
/// defaults to 8080 (the common corporate one) only when omitted.
fn parse_proxy_url(url: &str) -> Result<(String, u16), SettingsError> {
    let err = |why| SettingsError::ProxyUrl(url.to_owned(), why);
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(err("only http:// upstream proxies are supported")),
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        return Err(err(
            "put the user in --user and the password in the keyring, not in the URL",
        ));
    }
    if rest.contains('/') {
        return Err(err("expected http://host:port"));
    }
    let uri: http::uri::Authority = rest.parse().map_err(|_| err("expected http://host:port"))?;
    let host = uri.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(err("missing host"));
    }
    Ok((host.to_owned(), uri.port_u16().unwrap_or(8080)))
}

/// The NTLM workstation name: this machine's host name, upper-cased as
/// Windows reports it; `WORKSTATION` when the OS won't say.
pub fn default_workstation() -> String {
    let name = std::env::var("COMPUTERNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "WORKSTATION".to_owned());
    let short = name.split('.').next().unwrap_or(&name);
    short.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_local_direct_proxy() {
        let s = SettingsFile::default().validate(None).expect("defaults");
        assert_eq!(s.listen, "127.0.0.1:3128".parse().expect("addr"));
        assert!(s.upstream.is_none());
        assert!(s.bypass.matches_host("localhost"));
        assert!(s.bypass.matches_host("127.0.0.1"));
        assert_eq!(s.describe(), "127.0.0.1:3128 -> direct");
    }

    #[test]
    fn basic_upstream_needs_user_and_password() {
        let f = SettingsFile {
            proxy: Some("http://proxy.corp:8080".into()),
            proxy_type: Some(ProxyType::Basic),
            ..Default::default()
        };
        assert_eq!(
            f.clone().validate(Some("pw".into())).err(),
            Some(SettingsError::MissingUser(ProxyType::Basic))
        );
        let f = SettingsFile {
            user: Some("alice".into()),
            ..f
        };
        assert_eq!(
            f.clone().validate(None).err(),
            Some(SettingsError::MissingPassword)
        );
        let s = f.validate(Some("pw".into())).expect("valid");
        let up = s.upstream.expect("upstream");
        assert_eq!((up.host.as_str(), up.port), ("proxy.corp", 8080));
        assert_eq!(up.describe(), "http://proxy.corp:8080 (basic as alice)");
    }

    #[test]
    fn non_loopback_needs_gateway_and_allow() {
        let f = SettingsFile {
            listen_address: Some("0.0.0.0".into()),
            ..Default::default()
        };
        assert!(matches!(
            f.clone().validate(None),
            Err(SettingsError::NeedsGateway(_))
        ));
        let f = SettingsFile {
            gateway: Some(true),
            ..f
        };
        assert_eq!(
            f.clone().validate(None).err(),
            Some(SettingsError::GatewayWithoutAllow)
        );
        let f = SettingsFile {
            allow: Some(vec!["10.0.0.0/8,192.168.1.5".into()]),
            ..f
        };
        assert_eq!(f.validate(None).expect("valid").allow.len(), 2);
    }

    #[test]
    fn empty_bypass_clears_the_list() {
        let s = SettingsFile {
            bypass: Some(vec![]),
            ..Default::default()
        }
        .validate(None)
        .expect("valid");
        assert!(!s.bypass.matches_host("127.0.0.1"));
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(
            parse_proxy_url("proxy:3128").expect("ok"),
            ("proxy".into(), 3128)
        );
        assert_eq!(
            parse_proxy_url("http://[::1]:3128/").expect("ok"),
            ("::1".into(), 3128)
        );
        assert_eq!(
            parse_proxy_url("http://proxy").expect("ok"),
            ("proxy".into(), 8080)
        );
        assert!(parse_proxy_url("https://proxy:443").is_err());
        assert!(parse_proxy_url("http://bob:pw@proxy:80").is_err());
        assert!(parse_proxy_url("http://").is_err());
    }

    #[test]
    fn file_refuses_passwords_and_unknown_keys() {
        assert_eq!(
            SettingsFile::from_toml("password = \"x\"").err(),
            Some(SettingsError::PasswordInFile)
        );
        assert!(SettingsFile::from_toml("prot = 1").is_err());
        let f = SettingsFile::from_toml("port = 3129\nbypass = []\nproxy_type = \"ntlm\"")
            .expect("parses");
        assert_eq!(f.port, Some(3129));
        assert_eq!(f.bypass, Some(vec![]));
        assert_eq!(f.proxy_type, Some(ProxyType::Ntlm));
    }

    #[test]
    fn merge_prefers_the_override() {
        let file = SettingsFile {
            port: Some(1),
            user: Some("a".into()),
            ..Default::default()
        };
        let cli = SettingsFile {
            port: Some(2),
            ..Default::default()
        };
        let m = file.merge(cli);
        assert_eq!((m.port, m.user.as_deref()), (Some(2), Some("a")));
    }
}
