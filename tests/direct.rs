//! Gangway as a plain local proxy (no upstream): what curl sees when it talks
//! to the bridge and the bridge talks straight to the origin.

use std::time::Duration;

use gangway_testkit::origin::{chunked_body, EchoReply, HELLO};
use gangway_testkit::{
    free_port, pattern, sha256_hex, Curl, Gangway, Origin, PatternFile, RawConn,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn get_reaches_the_origin() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    assert!(
        gw.ready_line().ends_with("-> direct"),
        "ready line: {}",
        gw.ready_line()
    );
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.text(), HELLO);
}

#[test]
fn every_method_reaches_the_origin() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    for method in [
        "PATCH",
        "DELETE",
        "OPTIONS",
        "PROPFIND",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
        "PROPPATCH",
        "REPORT",
    ] {
        let out = Curl::via(gw.addr())
            .method(method)
            .url(origin.url("/echo"))
            .run();
        assert_eq!(out.code(), 200, "{method}: {}", out.report());
        assert_eq!(out.echo().method, method, "{}", out.report());
    }
}

#[test]
fn head_gets_the_head_only() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::via(gw.addr()).head().url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert!(out.succeeded(), "{}", out.report());
    assert_eq!(
        out.header("content-length").as_deref(),
        Some("17"),
        "{}",
        out.report()
    );
}

#[test]
fn post_of_10_mb_arrives_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let upload = PatternFile::new(TEN_MB);
    let out = Curl::via(gw.addr())
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let echo = out.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.len, TEN_MB as u64);
    assert_eq!(echo.sha256, upload.sha256());
}

#[test]
fn put_of_10_mb_arrives_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let upload = PatternFile::new(TEN_MB);
    let out = Curl::via(gw.addr())
        .upload_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let echo = out.echo();
    assert_eq!(echo.method, "PUT");
    assert_eq!(echo.len, TEN_MB as u64);
    assert_eq!(echo.sha256, upload.sha256());
}

#[test]
fn chunked_post_arrives_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let upload = PatternFile::new(1_500_000);
    let out = Curl::via(gw.addr())
        .header("Transfer-Encoding: chunked")
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let echo = out.echo();
    assert_eq!(echo.len, 1_500_000);
    assert_eq!(echo.sha256, upload.sha256());
}

#[test]
fn chunked_put_from_stdin_arrives_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let data = pattern(2_000_000);
    let out = Curl::via(gw.addr())
        .upload_stdin(data.clone())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let echo = out.echo();
    assert_eq!(echo.method, "PUT");
    assert_eq!(echo.len, 2_000_000);
    assert_eq!(echo.sha256, sha256_hex(&data));
}

#[test]
fn expect_100_continue_upload_arrives_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let upload = PatternFile::new(300_000);
    let out = Curl::via(gw.addr())
        .header("Expect: 100-continue")
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .max_time(Duration::from_secs(20))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.echo().sha256, upload.sha256());
}

#[test]
fn large_download_streams_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::via(gw.addr())
        .url(origin.url(&format!("/bytes/{TEN_MB}")))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.body().len(), TEN_MB);
    assert_eq!(sha256_hex(out.body()), sha256_hex(&pattern(TEN_MB)));
}

#[test]
fn chunked_response_is_relayed() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::via(gw.addr()).url(origin.url("/chunked")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.text(), chunked_body());
}

#[test]
fn origin_statuses_pass_through() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    for code in [204u16, 404, 500, 503] {
        let out = Curl::via(gw.addr())
            .url(origin.url(&format!("/status/{code}")))
            .run();
        assert_eq!(out.code(), code, "{}", out.report());
    }
}

#[test]
fn http_1_0_client_is_served() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let hello = Curl::via(gw.addr())
        .http10()
        .url(origin.url("/hello"))
        .run();
    assert_eq!(hello.code(), 200, "{}", hello.report());
    assert_eq!(hello.text(), HELLO);
    // A chunked origin answer must reach an HTTP/1.0 client de-chunked.
    let chunked = Curl::via(gw.addr())
        .http10()
        .url(origin.url("/chunked"))
        .run();
    assert_eq!(chunked.code(), 200, "{}", chunked.report());
    assert_eq!(chunked.text(), chunked_body());
}

#[test]
fn keep_alive_reuses_one_connection_each_side() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::via(gw.addr())
        .url(origin.url("/hello"))
        .url(origin.url("/echo"))
        .url(origin.url("/chunked"))
        .url(origin.url("/hello"))
        .run();
    let codes: Vec<u16> = out.transfers.iter().map(|t| t.status).collect();
    assert_eq!(codes, [200, 200, 200, 200], "{}", out.report());
    let client_side: Vec<u32> = out.transfers.iter().map(|t| t.new_connections).collect();
    assert_eq!(
        client_side,
        [1, 0, 0, 0],
        "curl had to reconnect to the bridge\n{}",
        out.report()
    );
    assert_eq!(
        origin.accepted_connections(),
        1,
        "the bridge should reuse its origin connection\n{}",
        gw.output_report()
    );
}

#[test]
fn connect_tunnels_to_an_https_origin() {
    let origin = Origin::start_https();
    let gw = Gangway::direct(GANGWAY);
    let hello = Curl::via(gw.addr())
        .cacert(origin.ca_file())
        .url(origin.url("/hello"))
        .run();
    assert_eq!(hello.connect_code(), 200, "{}", hello.report());
    assert_eq!(hello.code(), 200, "{}", hello.report());
    assert_eq!(hello.text(), HELLO);

    let upload = PatternFile::new(1_000_000);
    let echo = Curl::via(gw.addr())
        .cacert(origin.ca_file())
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(echo.code(), 200, "{}", echo.report());
    assert_eq!(echo.echo().sha256, upload.sha256());
}

#[test]
fn connect_tunnels_plain_http_too() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::via(gw.addr())
        .tunnel()
        .url(origin.url("/hello"))
        .run();
    assert_eq!(out.connect_code(), 200, "{}", out.report());
    assert_eq!(out.text(), HELLO);
}

/// A client may send its first tunnel bytes in the same write as the
/// CONNECT head (curl doesn't, TLS False Start and some tools do): they
/// reach the bridge before its 200, with the head, and must still go
/// through the tunnel first and intact.
#[test]
fn bytes_pipelined_after_connect_arrive_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let target = origin.authority();
    let body = pattern(300_000);
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    let mut write = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: {target}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    write.extend_from_slice(&body);
    conn.send(&write).unwrap();
    let connect = conn.read_head().unwrap();
    assert_eq!(connect.status, 200, "{}", gw.output_report());
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 200, "{}", gw.output_report());
    let echo = EchoReply::parse(&conn.read_body(&head).unwrap());
    assert_eq!(echo.len, body.len() as u64);
    assert_eq!(echo.sha256, sha256_hex(&body));
}

#[test]
fn status_page_describes_the_bridge() {
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::new().url(format!("{}/", gw.url())).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let content_type = out.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "content-type {content_type:?}"
    );
    let page = out.text();
    for needle in ["Gangway", VERSION, &gw.addr().to_string(), "direct"] {
        assert!(
            page.contains(needle),
            "status page lacks {needle:?}:\n{page}"
        );
    }
}

#[test]
fn pac_file_points_at_the_bridge_and_bypasses_the_list() {
    let gw = Gangway::builder(GANGWAY)
        .bypass("*.intranet.example,10.0.0.0/8,<local>")
        .start();
    let out = Curl::new().url(format!("{}/proxy.pac", gw.url())).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(
        out.header("content-type").as_deref(),
        Some("application/x-ns-proxy-autoconfig"),
        "{}",
        out.report()
    );
    let pac = out.text();
    let proxy = format!("PROXY 127.0.0.1:{}", gw.port());
    for needle in [
        "FindProxyForURL",
        &proxy,
        "DIRECT",
        "intranet.example",
        "10.0.0.0",
    ] {
        assert!(pac.contains(needle), "PAC lacks {needle:?}:\n{pac}");
    }
}

#[test]
fn hop_by_hop_headers_are_stripped_and_via_added() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let out = Curl::via(gw.addr())
        .header("Proxy-Authorization: Basic Zm9vOmJhcg==")
        .header("Proxy-Connection: keep-alive")
        .header("Connection: keep-alive, X-Drop-Me")
        .header("X-Drop-Me: named by Connection")
        .header("Keep-Alive: timeout=5")
        .header("TE: trailers")
        .header("Trailer: X-Checksum")
        .header("X-Keep-Me: yes")
        .url(origin.url("/echo"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let echo = out.echo();
    for gone in [
        "proxy-authorization",
        "proxy-connection",
        "x-drop-me",
        "keep-alive",
        "te",
        "trailer",
    ] {
        assert!(
            !echo.has_header(gone),
            "{gone} reached the origin: {:#?}",
            echo.headers
        );
    }
    assert_eq!(echo.header("x-keep-me").as_deref(), Some("yes"));
    let via = echo.header("via").unwrap_or_default();
    assert!(via.contains("gangway"), "Via {via:?}");
}

#[test]
fn request_carrying_our_own_via_is_a_loop() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    // Learn the bridge's own Via entry from what reached the origin …
    let first = Curl::via(gw.addr()).url(origin.url("/echo")).run();
    let via = first.echo().header("via").unwrap_or_default();
    let ours = via
        .split(',')
        .map(str::trim)
        .find(|entry| entry.contains("gangway"))
        .unwrap_or_else(|| panic!("no gangway entry in Via {via:?}"))
        .to_owned();
    // … and send it back in, as a request that already passed through it.
    let looped = Curl::via(gw.addr())
        .header(&format!("Via: 1.1 elsewhere, {ours}"))
        .url(origin.url("/echo"))
        .run();
    assert_eq!(looped.code(), 508, "{}", looped.report());
}

#[test]
fn bridge_pointed_at_itself_answers_508() {
    let origin = Origin::start();
    let port = free_port();
    let gw = Gangway::builder(GANGWAY)
        .without_port_zero()
        .args(["--port", &port.to_string()])
        .upstream(&format!("http://127.0.0.1:{port}"))
        .no_bypass()
        .start();
    let out = Curl::via(gw.addr())
        .url(origin.url("/hello"))
        .max_time(Duration::from_secs(20))
        .run();
    assert_eq!(out.code(), 508, "{}\n{}", out.report(), gw.output_report());
}
