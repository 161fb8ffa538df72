//! With no session bus there is no Secret Service: the app says so plainly
//! ("no keyring") instead of storing the password anywhere else, and the
//! session-only choice still works.

#![cfg(target_os = "linux")]

use gangway_app::secrets::{Secrets, SecretsError, Storage};

#[tokio::test]
async fn no_session_bus_means_no_keyring_and_no_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A bus address where nothing listens. Set once, before any D-Bus use:
    // libdbus reads it once per process.
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", dir.path().join("no-bus").display()),
    );
    let secrets = Secrets::os();
    let err = secrets
        .store("bob@proxy.test:3128", "s3cret".into(), false)
        .await
        .expect_err("no bus, no keyring");
    assert!(matches!(err, SecretsError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("for this session only"), "{err}");
    assert!(matches!(
        secrets.load("bob@proxy.test:3128").await,
        Err(SecretsError::Unavailable(_))
    ));
    let at = secrets
        .store("bob@proxy.test:3128", "s3cret".into(), true)
        .await
        .expect("session only");
    assert_eq!(at, Storage::Session);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "no file written"
    );
}
