//! Command-line options. Names follow the classic Python mini_proxy
//! (`--listen-address`, `--port`, `--proxy-type`, `--proxy`, `--user`,
//! `--password`, `--realm`) so existing scripts keep working.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use gangway_engine::{ProxyType, SettingsFile};

#[derive(Parser, Debug)]
#[command(
    name = "gangway",
    version,
    about = "Local bridging proxy: tools talk plain HTTP proxy to 127.0.0.1, Gangway authenticates to the upstream proxy (Basic, Digest, NTLM) for them.",
    after_help = "Examples:\n  gangway                                     plain local proxy on 127.0.0.1:3128, no upstream\n  gangway --port 8888                         the same on another port\n  gangway --proxy-type basic  --proxy http://proxy.corp:8080 --user alice\n  gangway --proxy-type digest --proxy http://proxy.corp:8080 --user alice --realm 'Corp Proxy'\n  gangway --proxy-type ntlm   --proxy http://proxy.corp:8080 --user bob --realm CORP\n  gangway --listen-address 0.0.0.0 --gateway --allow 10.0.0.0/8   serve a subnet\n\nThen: curl -x http://127.0.0.1:3128 https://example.com\nThe password is asked for in a terminal, or read from --password-stdin or GANGWAY_PASSWORD.\nSIGHUP re-reads --config and allows one more try after the upstream rejected the credentials."
)]
pub struct Cli {
    /// Address to listen on. Anything but loopback needs --gateway and --allow.
    #[arg(long, value_name = "ADDR")]
    pub listen_address: Option<String>,

    /// Port to listen on (default 3128; 0 picks a free port).
    #[arg(long, short = 'p')]
    pub port: Option<u16>,

    /// How to authenticate to the upstream proxy.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub proxy_type: Option<TypeArg>,

    /// The upstream proxy, http://host:port. Without it Gangway connects directly.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    /// User for the upstream proxy: user, DOMAIN\user or user@domain.
    #[arg(long, short = 'u')]
    pub user: Option<String>,

    /// Password (visible to other local users in the process list: prefer
    /// --password-stdin or GANGWAY_PASSWORD).
    #[arg(long, hide_default_value = true)]
    pub password: Option<String>,

    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,

    /// The Digest realm, or the NTLM domain.
    #[arg(long)]
    pub realm: Option<String>,

    /// NTLM workstation name (default: this host's name).
    #[arg(long)]
    pub workstation: Option<String>,

    /// Hosts reached directly, comma-separated: globs (*.corp), domains
    /// (corp.example), IPs, CIDRs, <local>. Default: localhost,127.0.0.0/8,::1.
    /// An empty value clears the list.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub bypass: Option<Vec<String>>,

    /// Serve other machines (required for a non-loopback --listen-address).
    #[arg(long)]
    pub gateway: bool,

    /// Client networks allowed in gateway mode, comma-separated CIDRs. Only
    /// these may connect, this machine included (add 127.0.0.1 for it).
    #[arg(long, value_delimiter = ',', value_name = "CIDRS")]
    pub allow: Option<Vec<String>>,

    /// TOML settings file with the same keys in snake_case (never the
    /// password). Command-line options win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Seconds to wait for a TCP connection to the upstream or origin [default: 10].
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Seconds to wait for a response after sending a request (504 after) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub read_timeout: Option<u64>,

    /// Seconds a client connection may wait without a complete request
    /// (idle keep-alive or a slow request head) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Concurrent client connections; beyond this clients get 503 [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Idle authenticated upstream connections kept for reuse [default: 16].
    #[arg(long, value_name = "N")]
    pub pool_size: Option<usize>,

    /// Check the upstream instead of running the bridge: which schemes it
    /// offers, and whether the configured credentials are accepted (tried
    /// exactly once). Exits 0 when the bridge would work.
    #[arg(long)]
    pub probe: bool,

    /// URL the probe requests through the upstream.
    #[arg(long, value_name = "URL", default_value = gangway_engine::probe::DEFAULT_PROBE_URL)]
    pub probe_url: String,

    /// More log output (-v debug, -vv trace). GANGWAY_LOG takes a tracing filter.
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TypeArg {
    Noauth,
    Basic,
    Digest,
    Ntlm,
    Auto,
}

impl From<TypeArg> for ProxyType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Noauth => ProxyType::Noauth,
            TypeArg::Basic => ProxyType::Basic,
            TypeArg::Digest => ProxyType::Digest,
            TypeArg::Ntlm => ProxyType::Ntlm,
            TypeArg::Auto => ProxyType::Auto,
        }
    }
}

impl Cli {
    /// The options given on the command line, as a settings layer.
    pub fn settings(&self) -> SettingsFile {
        SettingsFile {
            listen_address: self.listen_address.clone(),
            port: self.port,
            proxy: self.proxy.clone(),
            proxy_type: self.proxy_type.map(Into::into),
            user: self.user.clone(),
            realm: self.realm.clone(),
            workstation: self.workstation.clone(),
            bypass: self.bypass.clone(),
            gateway: self.gateway.then_some(true),
            allow: self.allow.clone(),
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            pool_size: self.pool_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn empty_bypass_clears() {
        let cli = Cli::parse_from(["gangway", "--bypass", ""]);
        let s = cli.settings().validate(None).expect("valid");
        assert!(s.bypass.is_empty());
    }

    #[test]
    fn mini_proxy_options() {
        let cli = Cli::parse_from([
            "gangway",
            "--listen-address",
            "127.0.0.1",
            "--port",
            "8080",
            "--proxy-type",
            "ntlm",
            "--proxy",
            "http://proxy:3128",
            "--user",
            "CORP\\bob",
            "--realm",
            "CORP",
        ]);
        let s = cli.settings().validate(Some("pw".into())).expect("valid");
        let up = s.upstream.expect("upstream");
        assert_eq!(up.describe(), "http://proxy:3128 (ntlm as CORP\\bob)");
        assert_eq!(s.listen.port(), 8080);
    }
}
