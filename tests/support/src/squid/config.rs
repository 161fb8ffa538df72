//! What a test Squid looks like: its `squid.conf` and password files.
//!
//! Each Squid process gets exactly one auth scheme, because any scheme
//! configured in a process can authenticate on any of its ports (see
//! shared/notes/proxy-auth-peers.md). Only loopback clients are allowed,
//! nothing is cached, and CONNECT may go to any port unless a test denies
//! one on purpose.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use md5::{Digest, Md5};

use crate::pattern::hex;
use crate::system::{chown_for_daemon, Program, HTPASSWD, SQUID_BASIC_NCSA, SQUID_DIGEST_FILE};

/// The realm Squid announces unless a test picks another.
pub const DEFAULT_REALM: &str = "gangway-test";

/// The user Debian's Squid drops to when started as root.
pub const SQUID_USER: &str = "proxy";

/// File names inside the Squid's private directory.
pub(crate) const CONF_FILE: &str = "squid.conf";
pub(crate) const ACCESS_LOG: &str = "access.log";
pub(crate) const CACHE_LOG: &str = "cache.log";
pub(crate) const PID_FILE: &str = "squid.pid";
pub(crate) const STDIO_FILE: &str = "squid.out";
const BASIC_PASSWD_FILE: &str = "basic.htpasswd";
const DIGEST_PASSWD_FILE: &str = "digest.passwd";

/// Which authentication the Squid demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SquidAuth {
    /// None: every loopback client is served.
    None,
    /// Basic, checked by `basic_ncsa_auth` against an htpasswd file.
    Basic,
    /// Digest, checked by `digest_file_auth -c` against `user:realm:HA1`
    /// lines (the HA1 form lets passwords contain colons).
    Digest {
        /// `auth_param digest nonce_max_count`: a small value makes a test
        /// cross stale nonces quickly. `None` keeps Squid's default.
        nonce_max_count: Option<u32>,
    },
}

/// A test Squid's configuration. Build one with [`SquidConfig::no_auth`],
/// [`SquidConfig::basic`] or [`SquidConfig::digest`], then refine it.
#[derive(Debug, Clone)]
pub struct SquidConfig {
    pub(crate) auth: SquidAuth,
    realm: String,
    users: Vec<(String, String)>,
    deny_connect_ports: Vec<u16>,
    directives: Vec<String>,
}

impl SquidConfig {
    /// No authentication.
    pub fn no_auth() -> Self {
        SquidConfig {
            auth: SquidAuth::None,
            realm: DEFAULT_REALM.to_owned(),
            users: Vec::new(),
            deny_connect_ports: Vec::new(),
            directives: Vec::new(),
        }
    }

    /// Basic authentication with one user.
    pub fn basic(user: &str, password: &str) -> Self {
        SquidConfig {
            auth: SquidAuth::Basic,
            ..Self::no_auth()
        }
        .user(user, password)
    }

    /// Digest authentication with one user.
    pub fn digest(user: &str, password: &str) -> Self {
        SquidConfig {
            auth: SquidAuth::Digest {
                nonce_max_count: None,
            },
            ..Self::no_auth()
        }
        .user(user, password)
    }

    /// Adds a user (Basic or Digest only).
    pub fn user(mut self, user: &str, password: &str) -> Self {
        assert!(self.auth != SquidAuth::None, "users need an auth scheme");
        assert!(!user.contains(':'), "user names cannot contain ':'");
        self.users.push((user.to_owned(), password.to_owned()));
        self
    }

    /// Changes the password of an existing user.
    pub(crate) fn set_password(&mut self, user: &str, password: &str) {
        let entry = self
            .users
            .iter_mut()
            .find(|(u, _)| u == user)
            .unwrap_or_else(|| panic!("Squid has no user {user:?}"));
        entry.1 = password.to_owned();
    }

    /// Sets the realm announced in the challenge (part of Digest's HA1).
    pub fn realm(mut self, realm: &str) -> Self {
        self.realm = realm.to_owned();
        self
    }

    /// Sets Digest's `nonce_max_count` (uses 1..=N+1 pass, N+2 is stale).
    pub fn nonce_max_count(mut self, count: u32) -> Self {
        match &mut self.auth {
            SquidAuth::Digest { nonce_max_count } => *nonce_max_count = Some(count),
            other => panic!("nonce_max_count is a Digest setting, not {other:?}"),
        }
        self
    }

    /// Makes Squid refuse (403) CONNECT requests to `port`.
    pub fn deny_connect_to_port(mut self, port: u16) -> Self {
        self.deny_connect_ports.push(port);
        self
    }

    /// Adds a raw `squid.conf` line, placed before the access rules.
    pub fn directive(mut self, line: &str) -> Self {
        self.directives.push(line.to_owned());
        self
    }

    /// The realm Squid announces.
    pub fn realm_name(&self) -> &str {
        &self.realm
    }

    /// Where this scheme's password file lives in `dir` (none without auth).
    pub(crate) fn password_file(&self, dir: &Path) -> Option<PathBuf> {
        match self.auth {
            SquidAuth::None => None,
            SquidAuth::Basic => Some(dir.join(BASIC_PASSWD_FILE)),
            SquidAuth::Digest { .. } => Some(dir.join(DIGEST_PASSWD_FILE)),
        }
    }

    /// Writes the password file this scheme needs into `dir`, readable by
    /// Squid's helper user.
    pub(crate) fn write_password_file(&self, dir: &Path) {
        let Some(file) = self.password_file(dir) else {
            return;
        };
        match self.auth {
            SquidAuth::None => {}
            SquidAuth::Basic => {
                for (i, (user, password)) in self.users.iter().enumerate() {
                    htpasswd_add(&file, user, password, i == 0);
                }
            }
            SquidAuth::Digest { .. } => {
                let lines: String = self
                    .users
                    .iter()
                    .map(|(user, password)| {
                        format!(
                            "{user}:{}:{}\n",
                            self.realm,
                            digest_ha1(user, &self.realm, password)
                        )
                    })
                    .collect();
                std::fs::write(&file, lines).expect("write the Digest password file");
            }
        }
        chown_for_daemon(&file, SQUID_USER);
    }

    /// The complete `squid.conf` for a Squid in `dir` listening on `port`.
    pub(crate) fn render(&self, dir: &Path, port: u16) -> String {
        let d = dir.display();
        let mut conf = format!(
            "# Written by gangway-testkit for one test.\n\
             http_port 127.0.0.1:{port}\n\
             pid_filename {d}/{PID_FILE}\n\
             access_log stdio:{d}/{ACCESS_LOG} squid\n\
             cache_log {d}/{CACHE_LOG}\n\
             cache_store_log none\n\
             coredump_dir {d}\n\
             netdb_filename none\n\
             pinger_enable off\n\
             logfile_rotate 0\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             shutdown_lifetime 0 seconds\n\
             visible_hostname testkit-squid\n\
             # Never ask a resolver beyond this machine: names come from /etc/hosts.\n\
             dns_nameservers 127.0.0.1\n"
        );
        match self.auth {
            SquidAuth::None => {}
            SquidAuth::Basic => {
                conf += &format!(
                    "auth_param basic program {} {d}/{BASIC_PASSWD_FILE}\n\
                     auth_param basic children 5 startup=1 idle=1\n\
                     auth_param basic realm {}\n",
                    SQUID_BASIC_NCSA.require().display(),
                    self.realm
                );
            }
            SquidAuth::Digest { nonce_max_count } => {
                conf += &format!(
                    "auth_param digest program {} -c {d}/{DIGEST_PASSWD_FILE}\n\
                     auth_param digest children 5 startup=1 idle=1\n\
                     auth_param digest realm {}\n",
                    SQUID_DIGEST_FILE.require().display(),
                    self.realm
                );
                if let Some(n) = nonce_max_count {
                    conf += &format!("auth_param digest nonce_max_count {n}\n");
                }
            }
        }
        for line in &self.directives {
            conf += line;
            conf.push('\n');
        }
        conf += "acl loopback_clients src 127.0.0.0/8\n\
                 acl tunnel method CONNECT\n\
                 http_access deny !loopback_clients\n";
        if !self.deny_connect_ports.is_empty() {
            let ports: Vec<String> = self.deny_connect_ports.iter().map(u16::to_string).collect();
            conf += &format!(
                "acl denied_tunnel_ports port {}\n\
                 http_access deny tunnel denied_tunnel_ports\n",
                ports.join(" ")
            );
        }
        if self.auth == SquidAuth::None {
            conf += "http_access allow loopback_clients\n";
        } else {
            conf += "acl authenticated proxy_auth REQUIRED\n\
                     http_access allow authenticated\n";
        }
        conf += "http_access deny all\n";
        conf
    }
}

/// HA1 = MD5(user:realm:password), lowercase hex (RFC 7616 §3.4.2).
pub fn digest_ha1(user: &str, realm: &str, password: &str) -> String {
    hex(&Md5::digest(
        format!("{user}:{realm}:{password}").as_bytes(),
    ))
}

/// Adds `user` to an htpasswd file with an Apache MD5 (`$apr1$`) hash, which
/// `basic_ncsa_auth` accepts for any password length. The password goes in
/// on stdin (`htpasswd -i`), never on a command line.
fn htpasswd_add(file: &Path, user: &str, password: &str, create: bool) {
    let program: Program = HTPASSWD;
    let mut cmd = Command::new(program.require());
    cmd.arg("-i").arg("-m");
    if create {
        cmd.arg("-c");
    }
    let mut child = cmd
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run htpasswd");
    child
        .stdin
        .take()
        .expect("htpasswd stdin")
        .write_all(password.as_bytes())
        .expect("write the password to htpasswd");
    let output = child.wait_with_output().expect("wait for htpasswd");
    assert!(
        output.status.success(),
        "htpasswd failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
        assert_eq!(
            digest_ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    #[test]
    fn basic_config_requires_auth_and_loopback() {
        let conf = SquidConfig::basic("alice", "pw").render(Path::new("/x"), 3129);
        assert!(conf.contains("http_port 127.0.0.1:3129\n"));
        assert!(conf.contains("basic_ncsa_auth /x/basic.htpasswd"));
        assert!(conf.contains("http_access deny !loopback_clients"));
        assert!(conf.contains("http_access allow authenticated"));
        assert!(conf.ends_with("http_access deny all\n"));
    }

    #[test]
    fn digest_config_uses_ha1_file_and_nonce_count() {
        let conf = SquidConfig::digest("carol", "a:b")
            .nonce_max_count(2)
            .render(Path::new("/x"), 1);
        assert!(conf.contains("digest_file_auth -c /x/digest.passwd"));
        assert!(conf.contains("nonce_max_count 2\n"));
    }

    #[test]
    fn denied_tunnel_ports_come_before_allow() {
        let conf = SquidConfig::no_auth()
            .deny_connect_to_port(4443)
            .render(Path::new("/x"), 1);
        let deny = conf
            .find("http_access deny tunnel denied_tunnel_ports")
            .unwrap();
        let allow = conf.find("http_access allow loopback_clients").unwrap();
        assert!(deny < allow);
    }
}
