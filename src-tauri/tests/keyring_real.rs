//! The password lands in the real Secret Service, not in keyring's silent
//! in-memory mock store: this test starts a private D-Bus session bus and
//! a real gnome-keyring, stores through the app's `Secrets`, and reads the
//! entry back with `secret-tool`, a client that is not ours.
//!
//! One test function per file: libdbus reads the session bus address once
//! per process, so the no-bus case lives in `keyring_missing.rs`.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gangway_app::secrets::{Secrets, Storage};

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Kills and reaps a child on drop, so a failing assertion leaves nothing
/// running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _already_gone_is_fine = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{tool} is missing: run scripts/setup-app-deps");
}

/// The private environment every D-Bus service must share (see
/// shared/notes/desktop-testing.md): set on the bus daemon, which passes it
/// to the services it starts.
fn xdg_env(cmd: &mut Command, root: &Path) {
    for (var, sub) in [
        ("XDG_RUNTIME_DIR", "run"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("HOME", "home"),
    ] {
        cmd.env(var, root.join(sub));
    }
}

fn start_bus(root: &Path) -> (Reaped, String) {
    let mut cmd = Command::new("dbus-daemon");
    cmd.args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    xdg_env(&mut cmd, root);
    let mut child = cmd.spawn().expect("start dbus-daemon");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the bus address");
    let address = line.trim().to_owned();
    assert!(address.starts_with("unix:"), "bus address: {address:?}");
    (Reaped(child), address)
}

fn start_keyring(root: &Path, bus: &str) -> Reaped {
    let mut cmd = Command::new("gnome-keyring-daemon");
    cmd.args(["--foreground", "--unlock", "--components=secrets"])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    xdg_env(&mut cmd, root);
    let mut child = cmd.spawn().expect("start gnome-keyring-daemon");
    // A newline is an empty login password: the login keyring is created
    // and unlocked. An empty stdin would create none.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(b"\n").expect("unlock the keyring");
    }
    Reaped(child)
}

fn secret_tool_lookup(root: &Path, bus: &str, account: &str) -> Option<String> {
    let mut cmd = Command::new("secret-tool");
    cmd.args(["lookup", "service", "gangway", "username", account])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::null());
    xdg_env(&mut cmd, root);
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_lands_in_the_real_secret_service() {
    for tool in ["dbus-daemon", "gnome-keyring-daemon", "secret-tool"] {
        require(tool);
    }
    let root = tempfile::tempdir().expect("tempdir");
    for sub in ["run", "data", "config", "cache", "home"] {
        std::fs::create_dir_all(root.path().join(sub)).expect("mkdir");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
    }
    let account = "bob@proxy.test:3128";

    // A real bus with a real gnome-keyring.
    let (_bus, address) = start_bus(root.path());
    let _keyring = start_keyring(root.path(), &address);
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);
    let secrets = Secrets::os();
    let deadline = Instant::now() + START_TIMEOUT;
    let stored = loop {
        match secrets
            .store(account, "s3cret pässword".into(), false)
            .await
        {
            Ok(at) => break at,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for gnome-keyring: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("gnome-keyring never answered: {e}"),
        }
    };
    assert_eq!(stored, Storage::Keyring);

    let seen = secret_tool_lookup(root.path(), &address, account).expect("secret-tool found it");
    assert_eq!(seen.trim_end_matches('\n'), "s3cret pässword");

    let (pw, at) = secrets.load(account).await.expect("load").expect("entry");
    assert_eq!((pw.expose(), at), ("s3cret pässword", Storage::Keyring));

    secrets.delete(account).await.expect("delete");
    assert!(secret_tool_lookup(root.path(), &address, account).is_none());
    assert!(secrets.load(account).await.expect("load").is_none());
}
