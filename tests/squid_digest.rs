//! Gangway authenticating to a real Squid with Digest (RFC 7616) through
//! `digest_file_auth -c`, whose `user:realm:HA1` file lets passwords carry
//! colons.

use gangway_testkit::origin::HELLO;
use gangway_testkit::{Curl, Gangway, GangwayBuilder, Origin, PatternFile, Squid, SquidConfig};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

const USER: &str = "carol";
const PASSWORD: &str = "se:cret-digest";

fn digest_bridge(squid: &Squid, user: &str) -> GangwayBuilder {
    Gangway::builder(GANGWAY)
        .upstream(&squid.url())
        .proxy_type("digest")
        .user(user)
        .no_bypass()
}

#[test]
fn get_post_and_connect_succeed() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let squid = Squid::digest(USER, PASSWORD);
    let gw = digest_bridge(&squid, USER).password_stdin(PASSWORD).start();

    let get = Curl::via(gw.addr()).url(origin.url("/echo")).run();
    assert_eq!(get.code(), 200, "{}\n{}", get.report(), gw.output_report());
    assert!(!get.echo().has_header("proxy-authorization"));

    let upload = PatternFile::new(1_000_000);
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
    gw.assert_output_never_contains(PASSWORD);
}

#[test]
fn many_requests_cross_stale_nonces() {
    let origin = Origin::start();
    // Uses 1..=3 of a nonce pass, the 4th is answered stale=true.
    let squid = Squid::start(SquidConfig::digest(USER, PASSWORD).nonce_max_count(2));
    let gw = digest_bridge(&squid, USER).password_stdin(PASSWORD).start();
    let mut curl = Curl::via(gw.addr());
    for _ in 0..8 {
        curl = curl.url(origin.url("/hello"));
    }
    let out = curl.run();
    let codes: Vec<u16> = out.transfers.iter().map(|t| t.status).collect();
    // (Squid logs each stale-nonce 407 with the user name too, so the log
    // cannot tell them from rejections; the client's view is what counts.)
    assert_eq!(codes, [200; 8], "{}\n{}", out.report(), gw.output_report());
}

#[test]
fn wrong_password_is_tried_once() {
    let origin = Origin::start();
    let squid = Squid::digest(USER, PASSWORD);
    let gw = digest_bridge(&squid, USER)
        .password_stdin("wrong:password")
        .start();
    for _ in 0..3 {
        let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
        assert_eq!(out.code(), 407, "{}", out.report());
        assert!(
            out.text().contains(USER),
            "unexplained 407:\n{}",
            out.report()
        );
    }
    squid.flush_access_log();
    assert_eq!(
        squid.count_rejected_credentials(USER),
        1,
        "{}",
        squid.access_log()
    );
}
