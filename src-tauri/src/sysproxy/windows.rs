//! Windows: the per-user WinInet settings under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings`,
//! which Edge, Chrome, .NET and WinHTTP's IE-import all read. Values are
//! kept as `dword:N` or `sz:TEXT` so a snapshot restores both the data and
//! whether the value existed at all.
//!
//! Not covered yet: the per-connection blob `Connections\DefaultConnectionSettings`,
//! which Windows rewrites from these values when notified.

use std::net::SocketAddr;

use winreg::enums::{HKEY_CURRENT_USER, KEY_READ, KEY_WRITE};
use winreg::types::FromRegValue;
use winreg::RegKey;

use super::{ProxyBackend, ProxyError, Value, Values};

const INTERNET_SETTINGS: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
const DWORD_KEYS: [&str; 2] = ["ProxyEnable", "AutoDetect"];

#[derive(Debug)]
pub struct InternetSettings;

fn open(write: bool) -> Result<RegKey, String> {
    let access = if write {
        KEY_READ | KEY_WRITE
    } else {
        KEY_READ
    };
    RegKey::predef(HKEY_CURRENT_USER)
        .open_subkey_with_flags(INTERNET_SETTINGS, access)
        .map_err(|e| e.to_string())
}

impl ProxyBackend for InternetSettings {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn snapshot_keys(&self) -> Vec<String> {
        [
            "ProxyEnable",
            "ProxyServer",
            "ProxyOverride",
            "AutoConfigURL",
            "AutoDetect",
        ]
        .map(String::from)
        .to_vec()
    }

    /// HTTP and HTTPS only (`http=…;https=…`), bypass list joined with `;`
    /// plus `<local>`; PAC and auto-detection off while we are enabled.
    fn desired(&self, bridge: SocketAddr, bypass: &[String]) -> Values {
        let server = format!("http={bridge};https={bridge}");
        let mut over: Vec<String> = bypass.to_vec();
        if !over.iter().any(|b| b == "<local>") {
            over.push("<local>".into());
        }
        Values::from([
            ("ProxyEnable".into(), Some("dword:1".into())),
            ("ProxyServer".into(), Some(format!("sz:{server}"))),
            (
                "ProxyOverride".into(),
                Some(format!("sz:{}", over.join(";"))),
            ),
            ("AutoConfigURL".into(), None),
            ("AutoDetect".into(), Some("dword:0".into())),
        ])
    }

    fn switch_key(&self) -> String {
        "ProxyEnable".into()
    }

    fn read(&self, key: &str) -> Result<Value, ProxyError> {
        let err = |reason: String| ProxyError::Read {
            key: key.to_owned(),
            reason,
        };
        let k = open(false).map_err(err)?;
        let raw = match k.get_raw_value(key) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        if DWORD_KEYS.contains(&key) {
            let n = u32::from_reg_value(&raw).map_err(|e| err(e.to_string()))?;
            Ok(Some(format!("dword:{n}")))
        } else {
            let s = String::from_reg_value(&raw).map_err(|e| err(e.to_string()))?;
            Ok(Some(format!("sz:{s}")))
        }
    }

    fn write(&self, key: &str, value: &Value) -> Result<(), ProxyError> {
        let err = |reason: String| ProxyError::Write {
            key: key.to_owned(),
            reason,
        };
        let k = open(true).map_err(err)?;
        match value.as_deref() {
            None => match k.delete_value(key) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(err(e.to_string())),
            },
            Some(v) => {
                if let Some(n) = v.strip_prefix("dword:") {
                    let n: u32 = n.parse().map_err(|_| err(format!("bad value {v}")))?;
                    k.set_value(key, &n).map_err(|e| err(e.to_string()))
                } else if let Some(s) = v.strip_prefix("sz:") {
                    k.set_value(key, &s).map_err(|e| err(e.to_string()))
                } else {
                    Err(err(format!("bad value {v}")))
                }
            }
        }
    }

    /// Without this, running programs keep the old proxy until restarted.
    fn notify(&self) {
        use std::ptr::null;
        use windows_sys::Win32::Networking::WinInet::{
            InternetSetOptionW, INTERNET_OPTION_REFRESH, INTERNET_OPTION_SETTINGS_CHANGED,
        };
        // SAFETY: both options take no buffer (null, 0) and a null handle
        // means "all of this process's and the system's WinInet state".
        unsafe {
            InternetSetOptionW(null(), INTERNET_OPTION_SETTINGS_CHANGED, null(), 0);
            InternetSetOptionW(null(), INTERNET_OPTION_REFRESH, null(), 0);
        }
    }
}
