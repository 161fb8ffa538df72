//! Which program a client connection comes from, for the connection log's
//! client column ("127.0.0.1:53414 (git)").
//!
//! Only where the OS can tell it cheaply, and only while the log window is
//! open: the lookup runs off the async threads, at most once per
//! [`LOOKUP_EVERY`], for clients not seen before, and a client that is
//! already gone (a one-shot `curl`) simply stays without a name.
//!
//! - Linux: the client's socket inode from `/proc/net/tcp{,6}`, then the
//!   process holding that inode among `/proc/<pid>/fd` (only processes
//!   this user may read, which are the ones whose tools use the bridge).
//! - Windows: the owning process id from `GetExtendedTcpTable` (IPv4 and
//!   IPv6 connection tables), then its image name from
//!   `QueryFullProcessImageNameW`, shown without the `.exe`.
//! - Elsewhere: no names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The most often a lookup runs.
pub const LOOKUP_EVERY: Duration = Duration::from_secs(1);
/// How long a found name is trusted (ports are reused).
const TRUST_FOR: Duration = Duration::from_secs(120);
/// Names remembered at most.
const REMEMBERED: usize = 4096;

/// Client address -> program name, with the clients already asked about.
#[derive(Debug, Default)]
pub struct ProcessNames {
    known: HashMap<SocketAddr, (String, Instant)>,
    asked: HashMap<SocketAddr, Instant>,
    last_lookup: Option<Instant>,
}

impl ProcessNames {
    /// The name for `client`, if known.
    pub fn get(&self, client: &SocketAddr) -> Option<&str> {
        self.known
            .get(client)
            .filter(|(_, at)| at.elapsed() < TRUST_FOR)
            .map(|(n, _)| n.as_str())
    }

    /// The clients worth a lookup now: local ones not asked about yet,
    /// and only when the last lookup is [`LOOKUP_EVERY`] ago.
    pub fn to_look_up(&mut self, clients: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
        if self.last_lookup.is_some_and(|t| t.elapsed() < LOOKUP_EVERY) {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for c in clients {
            let fresh = self.asked.get(&c).is_some_and(|t| t.elapsed() < TRUST_FOR);
            if c.ip().is_loopback() && !fresh {
                self.asked.insert(c, now);
                out.push(c);
            }
        }
        if !out.is_empty() {
            self.last_lookup = Some(now);
        }
        if self.asked.len() > REMEMBERED {
            self.asked.retain(|_, t| t.elapsed() < TRUST_FOR);
        }
        out
    }

    pub fn learn(&mut self, found: HashMap<SocketAddr, String>) {
        let now = Instant::now();
        if self.known.len() + found.len() > REMEMBERED {
            self.known.retain(|_, (_, t)| t.elapsed() < TRUST_FOR);
        }
        for (addr, name) in found {
            self.known.insert(addr, (name, now));
        }
    }
}

/// Finds the programs behind `clients` (blocking: reads `/proc`).
pub fn lookup(clients: &[SocketAddr]) -> HashMap<SocketAddr, String> {
    if clients.is_empty() {
        return HashMap::new();
    }
    platform::lookup(clients)
}

#[cfg(target_os = "linux")]
mod platform {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    pub fn lookup(clients: &[SocketAddr]) -> HashMap<SocketAddr, String> {
        let mut inodes: HashMap<u64, SocketAddr> = HashMap::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for (local, inode) in text.lines().skip(1).filter_map(super::parse_tcp_line) {
                if inode != 0 && clients.contains(&local) {
                    inodes.insert(inode, local);
                }
            }
        }
        let mut found = HashMap::new();
        if inodes.is_empty() {
            return found;
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in procs.flatten() {
            let pid = entry.file_name();
            let Some(pid) = pid
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // Not ours to read (another user's process): skipped quietly.
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = link
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(addr) = inodes.remove(&inode) {
                    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                        found.insert(addr, comm.trim().to_owned());
                    }
                }
            }
            if inodes.is_empty() {
                break;
            }
        }
        found
    }
}

#[cfg(windows)]
mod platform {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};

    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID,
        TCP_TABLE_OWNER_PID_CONNECTIONS,
    };
    use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
    use windows_sys::Win32::System::Threading::{
        OpenProcess, QueryFullProcessImageNameW, PROCESS_NAME_WIN32,
        PROCESS_QUERY_LIMITED_INFORMATION,
    };

    pub fn lookup(clients: &[SocketAddr]) -> HashMap<SocketAddr, String> {
        let mut pids: HashMap<SocketAddr, u32> = HashMap::new();
        if let Some(table) = tcp_table(AF_INET) {
            for row in rows::<MIB_TCPROW_OWNER_PID>(&table) {
                let local = super::v4_endpoint(row.dwLocalAddr, row.dwLocalPort);
                if clients.contains(&local) {
                    pids.insert(local, row.dwOwningPid);
                }
            }
        }
        if let Some(table) = tcp_table(AF_INET6) {
            for row in rows::<MIB_TCP6ROW_OWNER_PID>(&table) {
                // A v4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
                let ip = IpAddr::from(Ipv6Addr::from(row.ucLocalAddr)).to_canonical();
                let local = SocketAddr::new(ip, super::table_port(row.dwLocalPort));
                if clients.contains(&local) {
                    pids.insert(local, row.dwOwningPid);
                }
            }
        }
        let mut names: HashMap<u32, Option<String>> = HashMap::new();
        pids.into_iter()
            .filter_map(|(addr, pid)| {
                let name = names
                    .entry(pid)
                    .or_insert_with(|| image_name(pid))
                    .clone()?;
                Some((addr, name))
            })
            .collect()
    }

    /// One address family's connection table, in a `u32` buffer (the
    /// rows' alignment). The table can grow between the sizing call and
    /// the real one, hence the few tries.
    fn tcp_table(family: u16) -> Option<Vec<u32>> {
        let mut bytes: u32 = 16 * 1024;
        for _ in 0..4 {
            let mut buf = vec![0u32; (bytes as usize).div_ceil(4)];
            let mut len = u32::try_from(buf.len() * 4).ok()?;
            // SAFETY: `buf` is writable for `len` bytes; the call writes at
            // most `len` bytes and sets `len` to the size it needs.
            let rc = unsafe {
                GetExtendedTcpTable(
                    buf.as_mut_ptr().cast(),
                    &mut len,
                    0,
                    u32::from(family),
                    TCP_TABLE_OWNER_PID_CONNECTIONS,
                    0,
                )
            };
            match rc {
                NO_ERROR => return Some(buf),
                ERROR_INSUFFICIENT_BUFFER => bytes = len.saturating_add(4096),
                _ => return None,
            }
        }
        None
    }

    /// The rows after the table's `dwNumEntries`, never past the buffer.
    fn rows<T: Copy>(table: &[u32]) -> Vec<T> {
        let Some(&count) = table.first() else {
            return Vec::new();
        };
        let size = std::mem::size_of::<T>();
        let fits = (table.len() * 4).saturating_sub(4) / size;
        let base = table.as_ptr().cast::<u8>();
        (0..(count as usize).min(fits))
            // SAFETY: row `i` lies within `table` (checked by `fits`); the
            // read does not assume alignment.
            .map(|i| unsafe { std::ptr::read_unaligned(base.add(4 + i * size).cast::<T>()) })
            .collect()
    }

    fn image_name(pid: u32) -> Option<String> {
        if pid == 0 {
            return None;
        }
        // SAFETY: plain Win32 calls; the handle is closed on every path
        // and `buf` is writable for `len` UTF-16 units.
        unsafe {
            let process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
            if process.is_null() {
                return None;
            }
            let mut buf = [0u16; 1024];
            let mut len = buf.len() as u32;
            let ok =
                QueryFullProcessImageNameW(process, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len);
            CloseHandle(process);
            if ok == 0 {
                return None;
            }
            super::program_name(&String::from_utf16_lossy(buf.get(..len as usize)?))
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod platform {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    pub fn lookup(_clients: &[SocketAddr]) -> HashMap<SocketAddr, String> {
        HashMap::new()
    }
}

/// An IPv4 endpoint as Windows' TCP tables hold it: the address in network
/// byte order, the port in network byte order in the low 16 bits.
#[cfg_attr(not(windows), allow(dead_code))]
fn v4_endpoint(addr: u32, port: u32) -> SocketAddr {
    SocketAddr::new(
        std::net::Ipv4Addr::from(addr.to_ne_bytes()).into(),
        table_port(port),
    )
}

#[cfg_attr(not(windows), allow(dead_code))]
fn table_port(port: u32) -> u16 {
    u16::from_be((port & 0xffff) as u16)
}

/// "C:\\Program Files\\Git\\cmd\\git.exe" -> "git".
#[cfg_attr(not(windows), allow(dead_code))]
fn program_name(image: &str) -> Option<String> {
    let file = image.rsplit(['\\', '/']).next()?;
    let stem = file
        .len()
        .checked_sub(4)
        .filter(|&i| {
            file.get(i..)
                .is_some_and(|ext| ext.eq_ignore_ascii_case(".exe"))
        })
        .and_then(|i| file.get(..i))
        .unwrap_or(file);
    (!stem.is_empty()).then(|| stem.to_owned())
}

/// One line of `/proc/net/tcp{,6}`: the local address and the socket inode.
/// Addresses are hex in host byte order per 32-bit word.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_tcp_line(line: &str) -> Option<(SocketAddr, u64)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = fields.next()?;
    let inode = fields.nth(7)?.parse().ok()?;
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match ip.len() {
        8 => {
            let n = u32::from_str_radix(ip, 16).ok()?;
            std::net::Ipv4Addr::from(n.to_ne_bytes()).into()
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            // A v4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
            std::net::IpAddr::from(std::net::Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some((SocketAddr::new(ip, port), inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn proc_net_tcp_lines_parse() {
        let v4 = "   3: 0100007F:D2E6 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 1234567 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            parse_tcp_line(v4),
            Some(("127.0.0.1:53990".parse().expect("addr"), 1234567))
        );
        let v6 = "   0: 0000000000000000FFFF00000100007F:D2E6 0000000000000000FFFF00000100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 42 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            parse_tcp_line(v6),
            Some(("127.0.0.1:53990".parse().expect("addr"), 42))
        );
        assert_eq!(parse_tcp_line("garbage"), None);
    }

    #[test]
    fn lookups_are_rate_limited_and_only_for_new_local_clients() {
        let mut names = ProcessNames::default();
        let a: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let remote: SocketAddr = "10.1.2.3:40000".parse().expect("addr");
        assert_eq!(names.to_look_up([a, remote]), vec![a]);
        // Within a second: nothing, even for a new client.
        let b: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        assert!(names.to_look_up([b]).is_empty());
        names.learn(HashMap::from([(a, "git".to_owned())]));
        assert_eq!(names.get(&a), Some("git"));
        assert_eq!(names.get(&b), None);
    }

    #[test]
    fn windows_table_entries_decode() {
        // 127.0.0.1:53990 as a little-endian machine reads the row's words.
        let addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let port = u32::from(53990u16.to_be());
        assert_eq!(
            v4_endpoint(addr, port),
            "127.0.0.1:53990".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            program_name(r"C:\Program Files\Git\mingw64\bin\git.EXE").as_deref(),
            Some("git")
        );
        assert_eq!(program_name("node.exe").as_deref(), Some("node"));
        assert_eq!(program_name(r"C:\tools\cargo").as_deref(), Some("cargo"));
        assert_eq!(program_name(r"C:\dir\"), None);
    }

    /// A real connection from this very process is found by name.
    #[cfg(target_os = "linux")]
    #[test]
    fn finds_this_process_behind_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server_side, _) = listener.accept().expect("accept");
        let addr = client.local_addr().expect("addr");
        let found = lookup(&[addr]);
        let me = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(found.get(&addr).map(String::as_str), Some(me.trim()));
    }
}
