//! Windows: WinINet's proxy settings, per connection, plus their legacy
//! mirror in the registry.
//!
//! Windows keeps the authoritative settings per connection: one binary blob
//! for the LAN (`Internet Settings\Connections\DefaultConnectionSettings`)
//! and one per dial-up or VPN (RAS) entry. The supported way to read and
//! write them is WinINet's `INTERNET_OPTION_PER_CONNECTION_OPTION`, one
//! option at a time. Their keys here:
//!
//! - `conn:LAN:<field>` for the LAN, `conn:RAS:<entry name>:<field>` for
//!   each RAS entry (the `RAS:` tag keeps an entry that happens to be named
//!   `LAN` apart from the LAN itself);
//! - fields `flags` (`direct|proxy`, see [`format_flags`]), `server`,
//!   `bypass` and `pac` (text, absent when unset).
//!
//! The legacy values under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings`
//! (`ProxyEnable`, `ProxyServer`, `ProxyOverride`, `AutoConfigURL`,
//! `AutoDetect`, kept as `dword:N` or `sz:TEXT`) are written too, with the
//! same content: some programs (Firefox's "use system proxy" among them)
//! read them directly, and snapshots from before per-connection support hold
//! only them. WinINet may rewrite them from the LAN's blob when the LAN's
//! options are set; since both carry the same settings, that changes nothing
//! in the end. (A system whose mirror already disagreed with the LAN's blob
//! before we started ends up with the mirror matching the blob.)
//!
//! Each connection's `flags` is a switch (see [`is_switch`]): it is written
//! after the connection's server, bypass and PAC, so a crash halfway through
//! never turns a connection's proxy on over half-written values.
//!
//! The text helpers are platform-neutral so that they are unit-tested on
//! every platform; only [`InternetSettings`] and the `os` module call
//! Windows.
// Off Windows this module is compiled for its unit tests only.
#![cfg_attr(not(windows), allow(dead_code))]

use std::net::SocketAddr;

use super::{Value, Values};

/// The legacy registry values, as the snapshot has always recorded them.
const LEGACY_KEYS: [&str; 5] = [
    "ProxyEnable",
    "ProxyServer",
    "ProxyOverride",
    "AutoConfigURL",
    "AutoDetect",
];
/// The legacy on/off switch.
const LEGACY_SWITCH: &str = "ProxyEnable";

// `PROXY_TYPE_*` from wininet.h (checked against windows-sys below).
const PROXY_TYPE_DIRECT: u32 = 1;
const PROXY_TYPE_PROXY: u32 = 2;
const PROXY_TYPE_AUTO_PROXY_URL: u32 = 4;
const PROXY_TYPE_AUTO_DETECT: u32 = 8;

/// The flag names in a `flags` value, in bit order.
const FLAG_NAMES: [(u32, &str); 4] = [
    (PROXY_TYPE_DIRECT, "direct"),
    (PROXY_TYPE_PROXY, "proxy"),
    (PROXY_TYPE_AUTO_PROXY_URL, "auto_proxy_url"),
    (PROXY_TYPE_AUTO_DETECT, "auto_detect"),
];

/// One connection's settings in WinINet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Connection {
    /// The LAN (`pszConnection` NULL).
    Lan,
    /// A dial-up or VPN phonebook entry, by name.
    Ras(String),
}

/// One per-connection option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// `INTERNET_PER_CONN_FLAGS`: which of direct, proxy, PAC, auto-detect.
    Flags,
    /// `INTERNET_PER_CONN_PROXY_SERVER`.
    Server,
    /// `INTERNET_PER_CONN_PROXY_BYPASS`.
    Bypass,
    /// `INTERNET_PER_CONN_AUTOCONFIG_URL`.
    Pac,
}

impl Field {
    const ALL: [Field; 4] = [Field::Flags, Field::Server, Field::Bypass, Field::Pac];

    fn name(self) -> &'static str {
        match self {
            Field::Flags => "flags",
            Field::Server => "server",
            Field::Bypass => "bypass",
            Field::Pac => "pac",
        }
    }
}

/// An option's value as WinINet holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Raw {
    Dword(u32),
    /// `None`: the string pointer is NULL (unset).
    Text(Option<String>),
}

const KEY_PREFIX: &str = "conn:";
const LAN_NAME: &str = "LAN";
const RAS_TAG: &str = "RAS:";

/// `conn:LAN:flags`, `conn:RAS:Office VPN:server`.
fn conn_key(conn: &Connection, field: Field) -> String {
    match conn {
        Connection::Lan => format!("{KEY_PREFIX}{LAN_NAME}:{}", field.name()),
        Connection::Ras(name) => format!("{KEY_PREFIX}{RAS_TAG}{name}:{}", field.name()),
    }
}

/// The inverse of [`conn_key`]; `None` for any other key (the legacy
/// registry values). An entry name may itself hold `:`: the field is what
/// follows the last one.
fn parse_conn_key(key: &str) -> Option<(Connection, Field)> {
    let (who, field) = key.strip_prefix(KEY_PREFIX)?.rsplit_once(':')?;
    let field = Field::ALL.into_iter().find(|f| f.name() == field)?;
    let conn = if who == LAN_NAME {
        Connection::Lan
    } else {
        let name = who.strip_prefix(RAS_TAG)?;
        if name.is_empty() {
            return None;
        }
        Connection::Ras(name.to_owned())
    };
    Some((conn, field))
}

/// Whether `key` turns a proxy on: the legacy `ProxyEnable` or a
/// connection's `flags`. The policy writes these last and restores them
/// first.
fn is_switch(key: &str) -> bool {
    key == LEGACY_SWITCH || matches!(parse_conn_key(key), Some((_, Field::Flags)))
}

/// `direct|proxy`; bits without a name as hex (`direct|0x40`); no bits at
/// all as `0x0`. Readable in the snapshot file and in error messages, and
/// exact: [`parse_flags`] gives back every bit.
fn format_flags(flags: u32) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = flags;
    for (bit, name) in FLAG_NAMES {
        if flags & bit != 0 {
            parts.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 || parts.is_empty() {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// The inverse of [`format_flags`].
fn parse_flags(text: &str) -> Result<u32, String> {
    let mut flags = 0;
    for part in text.split('|') {
        let bits = match FLAG_NAMES.iter().find(|(_, name)| *name == part) {
            Some((bit, _)) => *bit,
            None => part
                .strip_prefix("0x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("{text:?} is not a set of proxy flags"))?,
        };
        flags |= bits;
    }
    Ok(flags)
}

/// An option as the snapshot holds it. Strings that are unset or empty are
/// both absent: WinINet may hand back either for "none", and a restore
/// must not fail over the difference.
fn value_from_raw(raw: Raw) -> Value {
    match raw {
        Raw::Dword(flags) => Some(format_flags(flags)),
        Raw::Text(text) => text.filter(|t| !t.is_empty()),
    }
}

/// What to hand WinINet for `value` in `field`.
fn raw_from_value(field: Field, value: &Value) -> Result<Raw, String> {
    match (field, value) {
        (Field::Flags, Some(text)) => parse_flags(text).map(Raw::Dword),
        (Field::Flags, None) => Err("the proxy flags cannot be absent".into()),
        (_, text) => Ok(Raw::Text(text.clone().filter(|t| !t.is_empty()))),
    }
}

/// The bypass list as Windows writes it: `;`-separated, with `<local>`
/// (plain host names) always in it.
fn bypass_list(bypass: &[String]) -> String {
    let mut over: Vec<&str> = bypass
        .iter()
        .map(|b| b.trim())
        .filter(|b| !b.is_empty())
        .collect();
    if !over.contains(&"<local>") {
        over.push("<local>");
    }
    over.join(";")
}

/// Every connection's keys and the legacy ones.
fn snapshot_key_list(connections: &[Connection]) -> Vec<String> {
    let legacy = LEGACY_KEYS.iter().map(|k| (*k).to_owned());
    let per_conn = connections
        .iter()
        .flat_map(|c| Field::ALL.into_iter().map(move |f| conn_key(c, f)));
    legacy.chain(per_conn).collect()
}

/// HTTP and HTTPS only (`http=…;https=…`), the bypass list plus `<local>`,
/// PAC and auto-detection off while we are enabled; the same for the legacy
/// values and every connection.
fn desired_values(connections: &[Connection], bridge: SocketAddr, bypass: &[String]) -> Values {
    let server = format!("http={bridge};https={bridge}");
    let over = bypass_list(bypass);
    let mut values = Values::from([
        ("ProxyEnable".into(), Some("dword:1".into())),
        ("ProxyServer".into(), Some(format!("sz:{server}"))),
        ("ProxyOverride".into(), Some(format!("sz:{over}"))),
        ("AutoConfigURL".into(), None),
        ("AutoDetect".into(), Some("dword:0".into())),
    ]);
    for conn in connections {
        values.insert(
            conn_key(conn, Field::Flags),
            Some(format_flags(PROXY_TYPE_DIRECT | PROXY_TYPE_PROXY)),
        );
        values.insert(conn_key(conn, Field::Server), Some(server.clone()));
        values.insert(conn_key(conn, Field::Bypass), Some(over.clone()));
        values.insert(conn_key(conn, Field::Pac), None);
    }
    values
}

/// UTF-16 with a terminating NUL, for WinINet. A NUL inside would cut the
/// text short without a word, so it is refused.
fn to_wide(text: &str) -> Result<Vec<u16>, String> {
    if text.contains('\0') {
        return Err(format!("{text:?} contains a NUL character"));
    }
    Ok(text.encode_utf16().chain(std::iter::once(0)).collect())
}

/// The text before the first NUL of a fixed-size UTF-16 buffer (RAS entry
/// names); `None` when it is not valid UTF-16.
fn from_wide_until_nul(buffer: &[u16]) -> Option<String> {
    let len = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
    String::from_utf16(&buffer[..len]).ok()
}

/// A Win32 error code in words. WinINet's own codes are not in the system
/// message table, so the likely ones are named here.
fn describe_error(code: u32) -> String {
    let words = match code {
        12004 => "WinINet internal error",
        12009 => "WinINet does not know this option",
        12010 => "wrong option length",
        12011 => "this option cannot be set",
        12018 => "wrong handle type for this option",
        _ => return system_message(code),
    };
    format!("{words} (Windows error {code})")
}

#[cfg(windows)]
fn system_message(code: u32) -> String {
    // Both are DWORDs; std wants the bits as an i32.
    std::io::Error::from_raw_os_error(code as i32).to_string()
}

#[cfg(not(windows))]
fn system_message(code: u32) -> String {
    format!("Windows error {code}")
}

#[cfg(windows)]
pub use backend::InternetSettings;

#[cfg(windows)]
mod backend {
    use std::net::SocketAddr;

    use winreg::enums::{HKEY_CURRENT_USER, KEY_READ, KEY_WRITE};
    use winreg::types::FromRegValue;
    use winreg::RegKey;

    use super::super::{ProxyBackend, ProxyError, Value, Values};
    use super::{
        desired_values, is_switch, os, parse_conn_key, raw_from_value, snapshot_key_list,
        value_from_raw, Connection, Field,
    };

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

    /// The LAN and every RAS entry. Neither `desired` nor `snapshot_keys`
    /// can fail, so a RAS listing that fails leaves the LAN only, and says
    /// so in the log.
    fn connections() -> Vec<Connection> {
        let mut all = vec![Connection::Lan];
        match os::ras_entries() {
            Ok(names) => all.extend(names.into_iter().map(Connection::Ras)),
            Err(e) => tracing::warn!(
                "only the LAN's proxy setting is switched, not dial-up or VPN connections: {e}"
            ),
        }
        all
    }

    impl ProxyBackend for InternetSettings {
        fn name(&self) -> &'static str {
            "windows"
        }

        fn snapshot_keys(&self) -> Vec<String> {
            snapshot_key_list(&connections())
        }

        fn desired(&self, bridge: SocketAddr, bypass: &[String]) -> Values {
            desired_values(&connections(), bridge, bypass)
        }

        fn switch_key(&self) -> String {
            super::conn_key(&Connection::Lan, Field::Flags)
        }

        fn is_switch(&self, key: &str) -> bool {
            is_switch(key)
        }

        fn read(&self, key: &str) -> Result<Value, ProxyError> {
            let err = |reason: String| ProxyError::Read {
                key: key.to_owned(),
                reason,
            };
            if let Some((conn, field)) = parse_conn_key(key) {
                return os::query(&conn, field).map(value_from_raw).map_err(err);
            }
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
            if let Some((conn, field)) = parse_conn_key(key) {
                let raw = raw_from_value(field, value).map_err(err)?;
                return os::set(&conn, field, &raw).map_err(err);
            }
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

        /// Without this, running programs keep the old proxy until
        /// restarted.
        fn notify(&self) {
            os::notify();
        }
    }
}

/// The calls into WinINet and RAS, each unsafe block as small as it can be.
#[cfg(windows)]
mod os {
    use std::ptr::{null, null_mut};

    use windows_sys::core::PWSTR;
    use windows_sys::Win32::Foundation::{GetLastError, GlobalFree};
    use windows_sys::Win32::NetworkManagement::Rras::{
        RasEnumEntriesW, ERROR_BUFFER_TOO_SMALL, ERROR_CANNOT_OPEN_PHONEBOOK, RASENTRYNAMEW,
    };
    use windows_sys::Win32::Networking::WinInet as wininet;
    use wininet::{
        InternetQueryOptionW, InternetSetOptionW, INTERNET_OPTION_PER_CONNECTION_OPTION,
        INTERNET_PER_CONN_OPTIONW, INTERNET_PER_CONN_OPTIONW_0, INTERNET_PER_CONN_OPTION_LISTW,
    };

    use super::{describe_error, from_wide_until_nul, to_wide, Connection, Field, Raw};

    // The flag values the text helpers spell out are wininet.h's.
    const _: () = assert!(
        super::PROXY_TYPE_DIRECT == wininet::PROXY_TYPE_DIRECT
            && super::PROXY_TYPE_PROXY == wininet::PROXY_TYPE_PROXY
            && super::PROXY_TYPE_AUTO_PROXY_URL == wininet::PROXY_TYPE_AUTO_PROXY_URL
            && super::PROXY_TYPE_AUTO_DETECT == wininet::PROXY_TYPE_AUTO_DETECT
    );

    fn option_id(field: Field) -> u32 {
        match field {
            Field::Flags => wininet::INTERNET_PER_CONN_FLAGS,
            Field::Server => wininet::INTERNET_PER_CONN_PROXY_SERVER,
            Field::Bypass => wininet::INTERNET_PER_CONN_PROXY_BYPASS,
            Field::Pac => wininet::INTERNET_PER_CONN_AUTOCONFIG_URL,
        }
    }

    fn last_error() -> String {
        // SAFETY: reads this thread's last-error value; no arguments.
        let code = unsafe { GetLastError() };
        describe_error(code)
    }

    /// The connection's name for `pszConnection`: none for the LAN.
    fn connection_name(conn: &Connection) -> Result<Option<Vec<u16>>, String> {
        match conn {
            Connection::Lan => Ok(None),
            Connection::Ras(name) => to_wide(name).map(Some),
        }
    }

    fn list(
        name: &mut Option<Vec<u16>>,
        option: &mut INTERNET_PER_CONN_OPTIONW,
    ) -> INTERNET_PER_CONN_OPTION_LISTW {
        INTERNET_PER_CONN_OPTION_LISTW {
            dwSize: size_of::<INTERNET_PER_CONN_OPTION_LISTW>() as u32,
            pszConnection: name.as_mut().map_or(null_mut(), |n| n.as_mut_ptr()),
            dwOptionCount: 1,
            dwOptionError: 0,
            pOptions: option,
        }
    }

    /// A string WinINet allocated for a query; freed with `GlobalFree`, as
    /// `InternetQueryOption`'s documentation asks, whatever happens to it.
    struct WinInetString(PWSTR);

    impl WinInetString {
        fn text(&self) -> Result<Option<String>, String> {
            if self.0.is_null() {
                return Ok(None);
            }
            // SAFETY: a non-null string from WinINet is NUL-terminated and
            // stays allocated until `drop`; nothing else writes to it.
            let wide = unsafe {
                let mut len = 0;
                while *self.0.add(len) != 0 {
                    len += 1;
                }
                std::slice::from_raw_parts(self.0, len)
            };
            String::from_utf16(wide)
                .map(Some)
                .map_err(|_| "the value is not valid UTF-16".to_owned())
        }
    }

    impl Drop for WinInetString {
        fn drop(&mut self) {
            if !self.0.is_null() {
                // SAFETY: WinINet allocated it with GlobalAlloc and handed
                // it to us; it is freed exactly once, here.
                unsafe { GlobalFree(self.0.cast()) };
            }
        }
    }

    /// Flags are read as the user set them: Windows 7 and later may switch
    /// auto-detection off behind `INTERNET_PER_CONN_FLAGS` while keeping the
    /// user's choice in `INTERNET_PER_CONN_FLAGS_UI`. Older systems lack the
    /// latter; they, and every write, use the plain flags, as WinINet's
    /// documentation of `INTERNET_PER_CONN_OPTION` asks.
    pub(super) fn query(conn: &Connection, field: Field) -> Result<Raw, String> {
        let mut name = connection_name(conn)?;
        if field == Field::Flags {
            let option = query_one(&mut name, wininet::INTERNET_PER_CONN_FLAGS_UI)
                .or_else(|_| query_one(&mut name, option_id(field)))?;
            // SAFETY: for the flags options WinINet fills `dwValue`.
            return Ok(Raw::Dword(unsafe { option.Value.dwValue }));
        }
        let option = query_one(&mut name, option_id(field))?;
        // SAFETY: for the string options WinINet fills `pszValue`, NULL or a
        // string we now own.
        let text = WinInetString(unsafe { option.Value.pszValue });
        text.text().map(Raw::Text)
    }

    /// One option of one connection, as WinINet filled it in.
    fn query_one(
        name: &mut Option<Vec<u16>>,
        option_id: u32,
    ) -> Result<INTERNET_PER_CONN_OPTIONW, String> {
        let mut option = INTERNET_PER_CONN_OPTIONW {
            dwOption: option_id,
            Value: INTERNET_PER_CONN_OPTIONW_0::default(),
        };
        let mut list = list(name, &mut option);
        let mut size = list.dwSize;
        // SAFETY: `list` is a valid option list of `size` bytes; its
        // connection name (NUL-terminated, or NULL for the LAN) and its one
        // option outlive the call. A NULL handle means the global settings.
        let ok = unsafe {
            InternetQueryOptionW(
                null(),
                INTERNET_OPTION_PER_CONNECTION_OPTION,
                (&raw mut list).cast(),
                &mut size,
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(option)
    }

    pub(super) fn set(conn: &Connection, field: Field, raw: &Raw) -> Result<(), String> {
        let mut name = connection_name(conn)?;
        // Kept alive until after the call: `Value` points into it.
        let mut text: Vec<u16>;
        let value = match raw {
            Raw::Dword(n) => INTERNET_PER_CONN_OPTIONW_0 { dwValue: *n },
            Raw::Text(None) => INTERNET_PER_CONN_OPTIONW_0 {
                pszValue: null_mut(),
            },
            Raw::Text(Some(s)) => {
                text = to_wide(s)?;
                INTERNET_PER_CONN_OPTIONW_0 {
                    pszValue: text.as_mut_ptr(),
                }
            }
        };
        let mut option = INTERNET_PER_CONN_OPTIONW {
            dwOption: option_id(field),
            Value: value,
        };
        let list = list(&mut name, &mut option);
        // SAFETY: as in `query`; WinINet only reads the list, its name and
        // the option's string, all alive until the call returns.
        let ok = unsafe {
            InternetSetOptionW(
                null(),
                INTERNET_OPTION_PER_CONNECTION_OPTION,
                (&raw const list).cast(),
                list.dwSize,
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// The names of the dial-up and VPN entries in every phonebook the
    /// user sees, each once.
    pub(super) fn ras_entries() -> Result<Vec<String>, String> {
        let entry_size = size_of::<RASENTRYNAMEW>();
        let mut entries = vec![RASENTRYNAMEW::default(); 1];
        // The list may grow between the size query and the call: retry.
        for _ in 0..4 {
            for entry in &mut entries {
                entry.dwSize = entry_size as u32;
            }
            let mut bytes = (entries.len() * entry_size) as u32;
            let mut count = 0u32;
            // SAFETY: `entries` is `bytes` bytes of RASENTRYNAMEW with
            // `dwSize` set, as RasEnumEntriesW requires; NULL reserved and
            // phonebook mean every phonebook.
            let rc = unsafe {
                RasEnumEntriesW(null(), null(), entries.as_mut_ptr(), &mut bytes, &mut count)
            };
            match rc {
                0 => {
                    let found = entries.get(..count as usize).unwrap_or(&entries[..]);
                    let mut names: Vec<String> = found
                        .iter()
                        .filter_map(|e| {
                            let name = from_wide_until_nul(&e.szEntryName);
                            if name.is_none() {
                                tracing::warn!(
                                    "skipping a RAS entry whose name is not valid UTF-16"
                                );
                            }
                            name
                        })
                        .filter(|n| !n.is_empty())
                        .collect();
                    // An entry in both the user's and the shared phonebook
                    // has one set of proxy settings.
                    names.sort();
                    names.dedup();
                    return Ok(names);
                }
                ERROR_BUFFER_TOO_SMALL => {
                    let wanted = (bytes as usize).div_ceil(entry_size);
                    entries = vec![RASENTRYNAMEW::default(); wanted.max(entries.len() + 1)];
                }
                // No phonebook file: no dial-up or VPN entries.
                ERROR_CANNOT_OPEN_PHONEBOOK => return Ok(Vec::new()),
                code => {
                    return Err(format!(
                        "listing dial-up and VPN connections failed (RAS error {code})"
                    ))
                }
            }
        }
        Err("listing dial-up and VPN connections failed: the list kept changing".into())
    }

    pub(super) fn notify() {
        // SAFETY: both options take no buffer (null, 0) and a null handle
        // means "all of this process's and the system's WinInet state".
        unsafe {
            InternetSetOptionW(null(), wininet::INTERNET_OPTION_SETTINGS_CHANGED, null(), 0);
            InternetSetOptionW(null(), wininet::INTERNET_OPTION_REFRESH, null(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Connection {
        Connection::Ras("Office VPN".into())
    }

    #[test]
    fn keys_name_the_connection_and_the_field() {
        assert_eq!(conn_key(&Connection::Lan, Field::Flags), "conn:LAN:flags");
        assert_eq!(conn_key(&office(), Field::Pac), "conn:RAS:Office VPN:pac");
    }

    #[test]
    fn keys_parse_back() {
        let tricky = [
            Connection::Lan,
            office(),
            // An entry named like the LAN, or holding the separator.
            Connection::Ras("LAN".into()),
            Connection::Ras("a:b:flags".into()),
        ];
        for conn in tricky {
            for field in Field::ALL {
                let key = conn_key(&conn, field);
                assert_eq!(parse_conn_key(&key), Some((conn.clone(), field)), "{key}");
            }
        }
    }

    #[test]
    fn other_keys_are_not_connection_keys() {
        for key in [
            "ProxyEnable",
            "conn:LAN",
            "conn:LAN:color",
            "conn:RAS::flags",
            "conn:Office:flags",
            "conn:lan:flags",
        ] {
            assert_eq!(parse_conn_key(key), None, "{key}");
        }
    }

    #[test]
    fn every_connections_flags_and_the_legacy_enable_are_switches() {
        assert!(is_switch("ProxyEnable"));
        assert!(is_switch("conn:LAN:flags"));
        assert!(is_switch("conn:RAS:Office VPN:flags"));
        assert!(!is_switch("conn:LAN:server"));
        assert!(!is_switch("ProxyServer"));
        // A RAS entry named "flags" is still only a server key here.
        assert!(!is_switch("conn:RAS:flags:server"));
    }

    #[test]
    fn flags_read_as_words_and_parse_back_exactly() {
        let cases = [
            (1, "direct"),
            (3, "direct|proxy"),
            (13, "direct|auto_proxy_url|auto_detect"),
            (0x41, "direct|0x40"),
            (0, "0x0"),
        ];
        for (bits, text) in cases {
            assert_eq!(format_flags(bits), text);
            assert_eq!(parse_flags(text), Ok(bits), "{text}");
        }
        for bits in [0, 1, 2, 5, 9, 0xf, 0x10, 0x8000_0003, u32::MAX] {
            assert_eq!(parse_flags(&format_flags(bits)), Ok(bits), "{bits:#x}");
        }
    }

    #[test]
    fn bad_flags_are_refused_in_words() {
        for text in ["", "proxy|", "Proxy", "3", "0xzz", "dword:3"] {
            let err = parse_flags(text).expect_err(text);
            assert!(err.contains("not a set of proxy flags"), "{err}");
        }
    }

    #[test]
    fn unset_and_empty_strings_are_both_absent() {
        assert_eq!(value_from_raw(Raw::Text(None)), None);
        assert_eq!(value_from_raw(Raw::Text(Some(String::new()))), None);
        assert_eq!(
            value_from_raw(Raw::Text(Some("proxy.corp:8080".into()))),
            Some("proxy.corp:8080".into())
        );
        assert_eq!(value_from_raw(Raw::Dword(3)), Some("direct|proxy".into()));
    }

    #[test]
    fn values_become_what_wininet_takes() {
        assert_eq!(
            raw_from_value(Field::Flags, &Some("direct|proxy".into())),
            Ok(Raw::Dword(3))
        );
        assert!(raw_from_value(Field::Flags, &None).is_err());
        assert_eq!(raw_from_value(Field::Pac, &None), Ok(Raw::Text(None)));
        assert_eq!(
            raw_from_value(Field::Bypass, &Some(String::new())),
            Ok(Raw::Text(None))
        );
        assert_eq!(
            raw_from_value(Field::Server, &Some("h:1".into())),
            Ok(Raw::Text(Some("h:1".into())))
        );
    }

    #[test]
    fn bypass_always_holds_local_once() {
        assert_eq!(bypass_list(&[]), "<local>");
        assert_eq!(
            bypass_list(&["*.corp".into(), " 10.* ".into(), String::new()]),
            "*.corp;10.*;<local>"
        );
        assert_eq!(
            bypass_list(&["<local>".into(), "*.corp".into()]),
            "<local>;*.corp"
        );
    }

    #[test]
    fn desired_points_every_connection_at_the_bridge() {
        let bridge: SocketAddr = "127.0.0.1:3128".parse().expect("addr");
        let conns = [Connection::Lan, office()];
        let v = desired_values(&conns, bridge, &["*.corp".into()]);
        let get = |k: &str| v.get(k).cloned().flatten();
        let server = "http=127.0.0.1:3128;https=127.0.0.1:3128";
        for conn in &conns {
            let key = |f| conn_key(conn, f);
            assert_eq!(get(&key(Field::Flags)).as_deref(), Some("direct|proxy"));
            assert_eq!(get(&key(Field::Server)).as_deref(), Some(server));
            assert_eq!(get(&key(Field::Bypass)).as_deref(), Some("*.corp;<local>"));
            assert!(v.contains_key(&key(Field::Pac)), "PAC is written (absent)");
            assert_eq!(get(&key(Field::Pac)), None);
        }
        assert_eq!(get("ProxyEnable").as_deref(), Some("dword:1"));
        assert_eq!(get("ProxyServer"), Some(format!("sz:{server}")));
        assert_eq!(get("ProxyOverride").as_deref(), Some("sz:*.corp;<local>"));
        assert_eq!(get("AutoDetect").as_deref(), Some("dword:0"));
        assert_eq!(get("AutoConfigURL"), None);
        // Every value we write is one the snapshot records.
        let snap = snapshot_key_list(&conns);
        assert!(v.keys().all(|k| snap.contains(k)));
        assert_eq!(snap.len(), LEGACY_KEYS.len() + 4 * conns.len());
        // Every value we write parses back into what WinINet takes.
        for (key, value) in &v {
            if let Some((_, field)) = parse_conn_key(key) {
                assert!(raw_from_value(field, value).is_ok(), "{key}");
            }
        }
    }

    #[test]
    fn wide_strings() {
        assert_eq!(to_wide("ab"), Ok(vec![97, 98, 0]));
        assert!(to_wide("a\0b").is_err());
        assert_eq!(
            from_wide_until_nul(&[86, 80, 78, 0, 88]),
            Some("VPN".into())
        );
        assert_eq!(from_wide_until_nul(&[86, 80]), Some("VP".into()));
        assert_eq!(from_wide_until_nul(&[0xD800, 0]), None);
    }

    #[test]
    fn wininet_errors_in_words() {
        assert_eq!(
            describe_error(12009),
            "WinINet does not know this option (Windows error 12009)"
        );
    }
}
