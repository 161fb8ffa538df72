//! External programs and child processes.
//!
//! The integration tests drive real programs (Squid, curl, htpasswd). CI
//! installs them with apt-get; when one is missing the harness panics with the
//! Debian package to install rather than skipping the test, because a skipped
//! peer test looks exactly like a passing one.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::poll::wait_for;

/// An external program a test needs, and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// An absolute path, or a bare name looked up in `PATH`.
    pub name: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
}

/// The Squid proxy daemon.
pub const SQUID: Program = Program {
    name: "/usr/sbin/squid",
    package: "squid",
};
/// Squid's Basic helper for htpasswd files.
pub const SQUID_BASIC_NCSA: Program = Program {
    name: "/usr/lib/squid/basic_ncsa_auth",
    package: "squid",
};
/// Squid's Digest helper for `user:realm:HA1` files.
pub const SQUID_DIGEST_FILE: Program = Program {
    name: "/usr/lib/squid/digest_file_auth",
    package: "squid",
};
/// curl, the client the tests stand in for a user with.
pub const CURL: Program = Program {
    name: "curl",
    package: "curl",
};
/// Apache's htpasswd, to write password hashes Squid's helper accepts.
pub const HTPASSWD: Program = Program {
    name: "htpasswd",
    package: "apache2-utils",
};

impl Program {
    /// The program's path; panics naming the package if it is not installed.
    pub fn require(self) -> PathBuf {
        self.find().unwrap_or_else(|| {
            panic!(
                "the integration tests need `{}`, which is not installed: \
                 apt-get install {} (the CI setup installs it)",
                self.name, self.package
            )
        })
    }

    fn find(self) -> Option<PathBuf> {
        let name = Path::new(self.name);
        if name.is_absolute() {
            return name.is_file().then(|| name.to_path_buf());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    }
}

/// Whether the tests run as root (CI and the dev machines do).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Gives `path` to the system user `user` when running as root.
///
/// Daemons started as root (Squid) drop to their own user and must still be
/// able to write their temp dir and read their password files. Without root
/// nothing drops privileges, so nothing needs changing.
pub fn chown_for_daemon(path: &Path, user: &str) {
    if !is_root() {
        return;
    }
    let (uid, gid) = lookup_user(user).unwrap_or_else(|| {
        panic!("system user `{user}` does not exist (is its package installed?)")
    });
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", path.display()));
}

fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let name = CString::new(user).ok()?;
    // SAFETY: `name` is a valid C string; getpwnam returns null or a pointer to
    // static storage that we read immediately, before any other passwd call.
    // Tests on other threads may call it too, but they only ever look up the
    // same user, so a racing overwrite writes the same values.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        if entry.is_null() {
            None
        } else {
            Some(((*entry).pw_uid, (*entry).pw_gid))
        }
    }
}

/// Sends a signal (e.g. `libc::SIGHUP`) to a child that is still running.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: plain kill(2) on our own child's pid; the child is not reaped
    // yet (we hold it un-waited), so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        // ESRCH: it already exited; the caller's wait will tell.
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ESRCH),
            "kill({pid}, {signal}): {err}"
        );
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within `grace`.
/// Always reaps it, so no zombie is left behind.
pub fn stop_child(child: &mut Child, grace: Duration) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    signal(child, libc::SIGTERM);
    if let Some(status) = wait_for(grace, || child.try_wait().ok().flatten()) {
        return status;
    }
    // SIGKILL (Ok as well if it exited in the meantime).
    child.kill().expect("SIGKILL a child");
    child.wait().expect("reap a killed child")
}

/// A file's contents as text (lossy UTF-8); empty if it does not exist yet.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "apt-get install gangway-no-such-package")]
    fn missing_program_names_its_package() {
        Program {
            name: "gangway-no-such-program",
            package: "gangway-no-such-package",
        }
        .require();
    }

    #[test]
    fn installed_program_is_found_on_path() {
        assert!(Program {
            name: "sh",
            package: "dash"
        }
        .require()
        .is_file());
    }

    #[test]
    fn read_lossy_of_a_missing_file_is_empty() {
        assert_eq!(read_lossy(Path::new("/nonexistent/gangway-testkit")), "");
    }
}
