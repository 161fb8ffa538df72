//! GNOME's proxy settings through the `gsettings` tool, which goes through
//! dconf like GNOME Settings does. Values are GVariant text exactly as
//! `gsettings get` prints them, so a snapshot restores byte for byte (a PAC
//! URL, "auto" mode, an empty ignore list typed as `@as []`).
//!
//! A key the user never set reads as absent (via `dconf read`, which prints
//! nothing for it) and is restored with `gsettings reset`, so restoring
//! leaves no explicit copy of a default behind.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ProxyBackend, ProxyError, Value, Values};

const PROXY: &str = "org.gnome.system.proxy";
const HTTP: &str = "org.gnome.system.proxy.http";
const HTTPS: &str = "org.gnome.system.proxy.https";
/// A gsettings call talks to dconf over D-Bus; one that takes longer than
/// this is stuck, and the user hears about it instead of a frozen toggle.
const GSETTINGS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Gnome {
    /// Whether `dconf read` can tell a user-set key from a default: only
    /// with the dconf backend and its CLI (dconf-cli) installed.
    dconf: bool,
}

impl Gnome {
    /// Checks that `gsettings` runs and knows the proxy schema.
    pub fn detect() -> Result<Self, ProxyError> {
        run("gsettings", &["list-keys", PROXY]).map_err(|reason| {
            ProxyError::Unsupported(format!(
                "GNOME's proxy settings ({PROXY}) are not available: {reason}"
            ))
        })?;
        let backend_is_dconf = std::env::var("GSETTINGS_BACKEND")
            .map(|b| b.is_empty() || b == "dconf")
            .unwrap_or(true);
        let dconf = backend_is_dconf && run("dconf", &["help"]).is_ok();
        if !dconf {
            tracing::info!("dconf CLI not found: defaults will be restored as explicit values");
        }
        Ok(Gnome { dconf })
    }
}

/// Where a key of the proxy schemas lives in dconf (their schemas fix it).
fn dconf_path(schema: &str, name: &str) -> Option<String> {
    let dir = match schema {
        PROXY => "/system/proxy/",
        HTTP => "/system/proxy/http/",
        HTTPS => "/system/proxy/https/",
        _ => return None,
    };
    Some(format!("{dir}{name}"))
}

fn key(schema: &str, name: &str) -> String {
    format!("{schema} {name}")
}

impl ProxyBackend for Gnome {
    fn name(&self) -> &'static str {
        "gnome"
    }

    fn snapshot_keys(&self) -> Vec<String> {
        vec![
            key(PROXY, "mode"),
            key(PROXY, "autoconfig-url"),
            key(PROXY, "ignore-hosts"),
            key(PROXY, "use-same-proxy"),
            key(HTTP, "host"),
            key(HTTP, "port"),
            key(HTTPS, "host"),
            key(HTTPS, "port"),
        ]
    }

    /// Manual mode with HTTP and HTTPS at the bridge. SOCKS is left alone:
    /// the bridge speaks HTTP only. `use-same-proxy` is turned off so GNOME
    /// does not send other protocols to the bridge.
    fn desired(&self, bridge: SocketAddr, bypass: &[String]) -> Values {
        let host = Some(gvariant_string(&bridge.ip().to_string()));
        let port = Some(bridge.port().to_string());
        Values::from([
            (key(PROXY, "mode"), Some("'manual'".into())),
            (
                key(PROXY, "ignore-hosts"),
                Some(gvariant_string_list(bypass)),
            ),
            (key(PROXY, "use-same-proxy"), Some("false".into())),
            (key(HTTP, "host"), host.clone()),
            (key(HTTP, "port"), port.clone()),
            (key(HTTPS, "host"), host),
            (key(HTTPS, "port"), port),
        ])
    }

    fn switch_key(&self) -> String {
        key(PROXY, "mode")
    }

    fn read(&self, k: &str) -> Result<Value, ProxyError> {
        let (schema, name) = split(k);
        let err = |reason| ProxyError::Read {
            key: k.to_owned(),
            reason,
        };
        match dconf_path(schema, name).filter(|_| self.dconf) {
            // Empty output: never set, the schema default applies.
            Some(path) => run("dconf", &["read", &path])
                .map(|out| Some(out.trim().to_owned()).filter(|v| !v.is_empty()))
                .map_err(err),
            None => run("gsettings", &["get", schema, name])
                .map(|out| Some(out.trim().to_owned()))
                .map_err(err),
        }
    }

    fn write(&self, k: &str, value: &Value) -> Result<(), ProxyError> {
        let (schema, name) = split(k);
        let result = match value {
            Some(v) => run("gsettings", &["set", schema, name, v]),
            None => run("gsettings", &["reset", schema, name]),
        };
        result.map(drop).map_err(|reason| ProxyError::Write {
            key: k.to_owned(),
            reason,
        })
    }
}

fn split(k: &str) -> (&str, &str) {
    k.split_once(' ').unwrap_or((k, ""))
}

/// A GVariant string literal, as `gsettings get` prints one.
fn gvariant_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An `as` literal; the empty one needs its type, as gsettings prints it.
fn gvariant_string_list(items: &[String]) -> String {
    if items.is_empty() {
        return "@as []".into();
    }
    let inner: Vec<String> = items.iter().map(|s| gvariant_string(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Runs gsettings or dconf with a deadline; the error is its stderr in words.
fn run(tool: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > GSETTINGS_TIMEOUT => {
                let _already_exited_is_fine = child.kill();
                let _reaped = child.wait();
                return Err(format!(
                    "{tool} did not finish within {}s",
                    GSETTINGS_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {tool}: {e}")),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _partial_output_is_still_useful = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _partial_output_is_still_useful = s.read_to_string(&mut err);
    }
    if status.success() {
        Ok(out)
    } else {
        let err = err.trim();
        Err(if err.is_empty() {
            format!("{tool} exited with {status}")
        } else {
            err.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvariant_literals_match_what_gsettings_prints() {
        assert_eq!(gvariant_string("127.0.0.1"), "'127.0.0.1'");
        assert_eq!(gvariant_string_list(&[]), "@as []");
        assert_eq!(
            gvariant_string_list(&["localhost".into(), "::1".into()]),
            "['localhost', '::1']"
        );
    }

    #[test]
    fn desired_points_http_and_https_but_not_socks() {
        let d = Gnome { dconf: true }.desired("127.0.0.1:3128".parse().expect("addr"), &[]);
        assert_eq!(d[&key(HTTP, "port")].as_deref(), Some("3128"));
        assert_eq!(d[&key(HTTPS, "host")].as_deref(), Some("'127.0.0.1'"));
        assert!(d.keys().all(|k| !k.contains("socks")));
    }
}
