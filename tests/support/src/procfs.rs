//! What a running process holds, read from `/proc`: open file descriptors
//! and resident memory. Leak and soak tests compare these before, during
//! and after load. Also: closing a client socket abruptly (RST), as a
//! crashing client would.

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// How many file descriptors process `pid` has open now (entries in
/// `/proc/PID/fd`). Panics if the process is gone.
pub fn fd_count(pid: u32) -> usize {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir} (is the process still running?): {e}"))
        .count()
}

/// Its resident set size now (`VmRSS` in `/proc/PID/status`), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:") * 1024
}

/// Its peak resident set size so far (`VmHWM`), in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:") * 1024
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path} (is the process still running?): {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {field} line in {path}:\n{status}"))
}

/// CPU time (user and system) the process has used so far.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path} (is the process still running?): {e}"));
    // Fields after the command name (which may hold spaces) start at
    // field 3; utime and stime are fields 14 and 15 (proc(5)).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .unwrap_or_else(|| panic!("short {path}: {stat}"))
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::time::Duration::from_millis(ticks * 1000 / hz)
}

/// Closes `stream` with a reset instead of a FIN (`SO_LINGER` 0), as a
/// client that crashes or is killed mid-transfer does.
pub fn close_with_reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized
    // `linger` value that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_our_own_descriptors_and_memory() {
        // Other tests open sockets in parallel, so no exact counts here.
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = listener.as_raw_fd();
        assert!(fd_count(pid) >= 1);
        assert!(std::path::Path::new(&format!("/proc/{pid}/fd/{fd}")).exists());
        drop(listener);
        assert!(rss_bytes(pid) > 0);
        assert!(peak_rss_bytes(pid) >= rss_bytes(pid));
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {}
        assert!(cpu_time(pid) > std::time::Duration::ZERO);
    }
}
