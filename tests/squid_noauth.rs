//! Gangway forwarding through a real Squid that asks for no credentials.
//!
//! The origin and Squid are both on loopback, which the bridge bypasses by
//! default, so every bridge here runs with `--bypass ''`.

use std::time::Duration;

use gangway_testkit::origin::HELLO;
use gangway_testkit::{
    closed_port, pattern, sha256_hex, wait_for, Curl, Gangway, Origin, PatternFile, RawConn, Squid,
    SquidConfig,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

fn bridge_to(squid: &Squid) -> Gangway {
    let gw = Gangway::builder(GANGWAY)
        .upstream(&squid.url())
        .no_bypass()
        .start();
    assert!(
        gw.ready_line().contains(&squid.url()),
        "ready line should name the upstream: {}",
        gw.ready_line()
    );
    gw
}

#[test]
fn get_goes_through_squid() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.text(), HELLO);
    squid.flush_access_log();
    let url = origin.url("/hello");
    assert!(
        squid
            .access_entries()
            .iter()
            .any(|e| e.method == "GET" && e.url == url && e.status == 200),
        "Squid did not forward GET {url}:\n{}",
        squid.access_log()
    );
}

#[test]
fn bypass_list_sends_matching_hosts_direct() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let port = origin.addr().port();
    // The default list keeps loopback local: Squid never sees the request.
    let default = Gangway::builder(GANGWAY).upstream(&squid.url()).start();
    let out = Curl::via(default.addr())
        .url(format!("http://127.0.0.1:{port}/hello"))
        .url(format!("http://localhost:{port}/hello"))
        .run();
    assert!(out.succeeded(), "{}", out.report());
    // A glob that matches only `localhost`: 127.0.0.1 now goes through
    // Squid (whose log strips query strings, so the paths tell them apart).
    let glob = Gangway::builder(GANGWAY)
        .upstream(&squid.url())
        .bypass("local*")
        .start();
    let out = Curl::via(glob.addr())
        .url(format!("http://localhost:{port}/hello"))
        .url(format!("http://127.0.0.1:{port}/echo"))
        .run();
    assert!(out.succeeded(), "{}", out.report());
    squid.flush_access_log();
    let urls: Vec<String> = squid.access_entries().into_iter().map(|e| e.url).collect();
    assert!(
        urls.iter()
            .any(|u| u.ends_with(&format!("127.0.0.1:{port}/echo"))),
        "the non-bypassed request should go through Squid: {urls:?}"
    );
    assert!(
        !urls.iter().any(|u| u.ends_with("/hello")),
        "bypassed requests must not reach Squid: {urls:?}"
    );
}

#[test]
fn via_shows_both_proxies_and_no_proxy_headers_leak() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let out = Curl::via(gw.addr())
        .header("Proxy-Authorization: Basic Zm9vOmJhcg==")
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let echo = out.echo();
    let via = echo.header("via").unwrap_or_default();
    assert!(
        via.contains("gangway") && via.contains("testkit-squid"),
        "Via {via:?}"
    );
    assert!(
        !echo.has_header("proxy-authorization"),
        "{:#?}",
        echo.headers
    );
    assert!(!echo.has_header("proxy-connection"), "{:#?}", echo.headers);
}

#[test]
fn post_and_put_bodies_arrive_intact() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let upload = PatternFile::new(3_000_000);
    let post = Curl::via(gw.addr())
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(post.code(), 200, "{}", post.report());
    assert_eq!(post.echo().len, 3_000_000);
    assert_eq!(post.echo().sha256, upload.sha256());
    let put = Curl::via(gw.addr())
        .upload_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(put.code(), 200, "{}", put.report());
    assert_eq!(put.echo().sha256, upload.sha256());
}

#[test]
fn chunked_upload_arrives_intact() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let data = pattern(1_000_000);
    let out = Curl::via(gw.addr())
        .upload_stdin(data.clone())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.echo().sha256, sha256_hex(&data));
}

#[test]
fn download_arrives_intact() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let len = 5_000_000;
    let out = Curl::via(gw.addr())
        .url(origin.url(&format!("/bytes/{len}")))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(sha256_hex(out.body()), sha256_hex(&pattern(len)));
}

#[test]
fn client_keep_alive_works_through_squid() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let out = Curl::via(gw.addr())
        .url(origin.url("/hello"))
        .url(origin.url("/echo"))
        .url(origin.url("/hello"))
        .run();
    let codes: Vec<u16> = out.transfers.iter().map(|t| t.status).collect();
    assert_eq!(codes, [200, 200, 200], "{}", out.report());
    let client_side: Vec<u32> = out.transfers.iter().map(|t| t.new_connections).collect();
    assert_eq!(client_side, [1, 0, 0], "{}", out.report());
}

#[test]
fn connect_tunnels_through_squid() {
    let origin = Origin::start_https();
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let out = Curl::via(gw.addr())
        .cacert(origin.ca_file())
        .url(origin.url("/hello"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.text(), HELLO);
    squid.flush_access_log();
    assert!(
        squid
            .access_entries()
            .iter()
            .any(|e| e.method == "CONNECT" && e.url == origin.authority() && e.status == 200),
        "Squid did not tunnel to {}:\n{}",
        origin.authority(),
        squid.access_log()
    );
}

/// Sends `CONNECT authority` through the bridge and returns the status and
/// body of the answer.
fn raw_connect(gw: &Gangway, authority: &str) -> (u16, String) {
    let mut conn = RawConn::connect(gw.addr()).expect("connect to the bridge");
    conn.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .expect("send CONNECT");
    let head = conn.read_head().expect("CONNECT answer head");
    let body = conn.read_body(&head).expect("CONNECT answer body");
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn squid_refusing_a_connect_is_passed_on_with_its_page() {
    let origin = Origin::start_https();
    let squid = Squid::start(SquidConfig::no_auth().deny_connect_to_port(origin.port()));
    let gw = bridge_to(&squid);
    let (status, body) = raw_connect(&gw, &origin.authority());
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("ERR_ACCESS_DENIED") || body.contains("Access Denied"),
        "{body}"
    );
    // curl sees the same status.
    let out = Curl::via(gw.addr())
        .cacert(origin.ca_file())
        .url(origin.url("/hello"))
        .run();
    assert_eq!(out.connect_code(), 403, "{}", out.report());
}

#[test]
fn squid_failing_to_connect_is_passed_on_with_its_page() {
    let squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    let (status, body) = raw_connect(&gw, &format!("127.0.0.1:{}", closed_port()));
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_lowercase().contains("squid"),
        "expected Squid's error page:\n{body}"
    );
}

#[test]
fn bridge_recovers_when_squid_comes_back() {
    let origin = Origin::start();
    let mut squid = Squid::no_auth();
    let gw = bridge_to(&squid);
    assert_eq!(
        Curl::via(gw.addr()).url(origin.url("/hello")).run().code(),
        200
    );

    squid.stop();
    let down = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(down.code(), 502, "{}", down.report());

    squid.restart();
    // The first request after the restart may still meet a pooled
    // connection to the old Squid; within a few tries it must succeed.
    let recovered = wait_for(Duration::from_secs(10), || {
        let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
        (out.code() == 200).then_some(out)
    });
    assert!(
        recovered.is_some(),
        "bridge did not recover\n{}",
        gw.output_report()
    );
}
