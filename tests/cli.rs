//! The `gangway` command line itself: the ready line, the config file, and
//! refusing settings it cannot honour.

use std::time::Duration;

use gangway_testkit::origin::HELLO;
use gangway_testkit::{Curl, Gangway, Origin, Squid};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

#[test]
fn ready_line_names_address_and_upstream() {
    let squid = Squid::basic("alice", "pw");
    let gw = Gangway::builder(GANGWAY)
        .upstream(&squid.url())
        .proxy_type("basic")
        .user("alice")
        .password_env("pw")
        .start();
    let expected = format!(
        "gangway listening on {} -> {} (basic as alice)",
        gw.addr(),
        squid.url()
    );
    assert_eq!(gw.ready_line(), expected);
    assert!(gw.addr().ip().is_loopback());
    assert_ne!(gw.port(), 0);
}

#[test]
fn config_file_is_honoured() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gangway.toml");
    std::fs::write(
        &config,
        "listen_address = \"127.0.0.1\"\nport = 0\nbypass = []\nconnect_timeout = 5\n",
    )
    .unwrap();
    let gw = Gangway::builder(GANGWAY)
        .without_port_zero()
        .arg("--config")
        .arg(&config)
        .start();
    assert!(
        gw.ready_line().ends_with("-> direct"),
        "{}",
        gw.ready_line()
    );
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.text(), HELLO);
}

#[test]
fn basic_without_a_user_is_refused() {
    let exited = Gangway::builder(GANGWAY)
        .upstream("http://127.0.0.1:9")
        .proxy_type("basic")
        .password_env("pw")
        .run_to_exit(Duration::from_secs(20));
    assert!(
        !exited.status.success(),
        "started without --user: {exited:?}"
    );
    assert!(
        !exited.stdout.contains("gangway listening on"),
        "{exited:?}"
    );
    assert!(
        exited.stderr.contains("--user"),
        "error should say --user is needed: {exited:?}"
    );
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut gw = Gangway::direct(GANGWAY);
    let status = gw.stop();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        gw.output_report()
    );
}
