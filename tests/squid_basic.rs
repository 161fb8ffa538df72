//! Gangway authenticating to a real Squid with Basic credentials.
//!
//! Squid's access log is the witness: its user column shows whose
//! credentials came with each request, so a 407 with `alice` in it is one
//! rejected attempt with Alice's password.

use gangway_testkit::origin::HELLO;
use gangway_testkit::{
    Curl, Gangway, GangwayBuilder, Origin, PatternFile, RawConn, Squid, SquidConfig,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

const USER: &str = "alice";
const PASSWORD: &str = "wonder-land-42";

/// A bridge to `squid` as `user`, password not yet given.
fn basic_bridge(squid: &Squid, user: &str) -> GangwayBuilder {
    Gangway::builder(GANGWAY)
        .upstream(&squid.url())
        .proxy_type("basic")
        .user(user)
        .no_bypass()
}

#[test]
fn get_post_and_connect_succeed_with_password_from_stdin() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let squid = Squid::basic(USER, PASSWORD);
    let gw = basic_bridge(&squid, USER).password_stdin(PASSWORD).start();
    assert!(
        gw.ready_line().contains(&squid.url()) && gw.ready_line().contains("(basic as alice)"),
        "ready line: {}",
        gw.ready_line()
    );

    let get = Curl::via(gw.addr()).url(origin.url("/echo")).run();
    assert_eq!(get.code(), 200, "{}\n{}", get.report(), gw.output_report());
    let echo = get.echo();
    assert!(
        !echo.has_header("proxy-authorization"),
        "credentials leaked to the origin"
    );

    let upload = PatternFile::new(2_000_000);
    let post = Curl::via(gw.addr())
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(post.code(), 200, "{}", post.report());
    assert_eq!(post.echo().sha256, upload.sha256());

    let tunnel = Curl::via(gw.addr())
        .cacert(tls_origin.ca_file())
        .url(tls_origin.url("/hello"))
        .run();
    assert_eq!(tunnel.code(), 200, "{}", tunnel.report());
    assert_eq!(tunnel.text(), HELLO);

    squid.flush_access_log();
    let by_alice: Vec<_> = squid
        .access_entries()
        .into_iter()
        .filter(|e| e.user.as_deref() == Some(USER) && e.status == 200)
        .collect();
    assert!(
        by_alice.len() >= 3,
        "expected 3 requests as alice:\n{}",
        squid.access_log()
    );
    assert!(
        by_alice.iter().any(|e| e.method == "CONNECT"),
        "{}",
        squid.access_log()
    );
    gw.assert_output_never_contains(PASSWORD);
}

#[test]
fn password_from_environment_works() {
    let origin = Origin::start();
    let squid = Squid::basic(USER, PASSWORD);
    let gw = basic_bridge(&squid, USER).password_env(PASSWORD).start();
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}\n{}", out.report(), gw.output_report());
    gw.assert_output_never_contains(PASSWORD);
}

#[test]
fn password_on_the_command_line_works_but_warns() {
    let origin = Origin::start();
    let squid = Squid::basic(USER, PASSWORD);
    let gw = basic_bridge(&squid, USER).password_arg(PASSWORD).start();
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}\n{}", out.report(), gw.output_report());
    let log = gw.stderr().to_lowercase();
    assert!(
        log.contains("warn") && log.contains("password"),
        "expected a warning about --password:\n{}",
        gw.output_report()
    );
    gw.assert_output_never_contains(PASSWORD);
}

#[test]
fn non_ascii_password_with_a_colon_works() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let password = "pä:ss wörd€";
    let squid = Squid::start(SquidConfig::basic("bob", password));
    let gw = basic_bridge(&squid, "bob").password_stdin(password).start();
    let get = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(get.code(), 200, "{}\n{}", get.report(), gw.output_report());
    let tunnel = Curl::via(gw.addr())
        .cacert(tls_origin.ca_file())
        .url(tls_origin.url("/hello"))
        .run();
    assert_eq!(tunnel.code(), 200, "{}", tunnel.report());
    gw.assert_output_never_contains(password);
}

/// Whether a 407 body explains that the upstream rejected `user`'s
/// credentials (rather than being Squid's bare challenge page).
fn explains_rejection(body: &str, user: &str) -> bool {
    let lower = body.to_lowercase();
    body.contains(user) && (lower.contains("reject") || lower.contains("credential"))
}

#[test]
fn wrong_password_is_tried_once_and_explained_every_time() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let squid = Squid::basic(USER, PASSWORD);
    let wrong = "not-the-password";
    let gw = basic_bridge(&squid, USER).password_stdin(wrong).start();

    for path in ["/hello", "/echo", "/hello"] {
        let out = Curl::via(gw.addr()).url(origin.url(path)).run();
        assert_eq!(out.code(), 407, "{}", out.report());
        assert!(
            explains_rejection(&out.text(), USER),
            "unexplained 407:\n{}",
            out.report()
        );
    }
    // A CONNECT gets the same answer, body included.
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    let authority = tls_origin.authority();
    conn.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 407);
    let body = String::from_utf8_lossy(&conn.read_body(&head).unwrap()).into_owned();
    assert!(
        explains_rejection(&body, USER),
        "unexplained CONNECT 407:\n{body}"
    );

    squid.flush_access_log();
    assert_eq!(
        squid.count_rejected_credentials(USER),
        1,
        "the bridge must not retry rejected credentials (account lockout):\n{}",
        squid.access_log()
    );
    gw.assert_output_never_contains(wrong);
}

#[test]
fn rejected_credentials_are_retried_after_sighup() {
    let origin = Origin::start();
    let mut squid = Squid::basic(USER, "old-password");
    let gw = basic_bridge(&squid, USER).password_stdin(PASSWORD).start();
    let rejected = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(rejected.code(), 407, "{}", rejected.report());

    // The admin fixes the account; until told, the bridge keeps its hands off.
    squid.change_password(USER, PASSWORD);
    let still = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(still.code(), 407, "{}", still.report());
    squid.flush_access_log();
    assert_eq!(
        squid.count_rejected_credentials(USER),
        1,
        "{}",
        squid.access_log()
    );

    gw.sighup();
    let recovered = gangway_testkit::wait_for(std::time::Duration::from_secs(10), || {
        let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
        (out.code() == 200).then_some(())
    });
    assert!(
        recovered.is_some(),
        "no success after SIGHUP\n{}",
        gw.output_report()
    );
}
