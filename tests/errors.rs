//! What the bridge answers when things go wrong: dead or stuck upstreams,
//! malformed, oversized or never-ending requests, too many clients, clients
//! outside the gateway allow list. After each, the bridge must still serve a
//! normal request on a fresh connection.
//!
//! Time limits here are generous upper bounds, never tight timing checks.

use std::time::{Duration, Instant};

use gangway_testkit::origin::HELLO;
use gangway_testkit::{closed_port, Curl, Gangway, Hang, Origin, RawConn};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

/// Upper bound for anything that a 2 s timeout should end.
const GENEROUS: Duration = Duration::from_secs(15);

/// The bridge still serves a normal GET on a new connection.
fn assert_still_serves(gw: &Gangway, origin: &Origin) {
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(
        out.code(),
        200,
        "bridge stopped serving:\n{}\n{}",
        out.report(),
        gw.output_report()
    );
    assert_eq!(out.text(), HELLO);
}

#[test]
fn unreachable_upstream_is_a_502_naming_it() {
    let origin = Origin::start();
    let dead = format!("127.0.0.1:{}", closed_port());
    let gw = Gangway::builder(GANGWAY)
        .upstream(&format!("http://{dead}"))
        .no_bypass()
        .start();
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 502, "{}", out.report());
    let body = out.text();
    assert!(
        body.contains(&dead),
        "502 body should name the upstream {dead}:\n{body}"
    );
    assert!(
        body.to_lowercase().contains("refused"),
        "502 body should give the OS error:\n{body}"
    );
}

#[test]
fn upstream_that_never_answers_is_a_504() {
    let origin = Origin::start();
    let hang = Hang::start();
    let gw = Gangway::builder(GANGWAY)
        .upstream(&hang.url())
        .no_bypass()
        .args(["--read-timeout", "2"])
        .start();
    let started = Instant::now();
    let out = Curl::via(gw.addr())
        .url(origin.url("/hello"))
        .max_time(Duration::from_secs(30))
        .run();
    assert_eq!(out.code(), 504, "{}", out.report());
    assert!(
        started.elapsed() < GENEROUS,
        "504 took {:?}",
        started.elapsed()
    );
    assert!(hang.accepted_connections() >= 1);
}

#[test]
fn origin_that_never_answers_is_a_504() {
    let origin = Origin::start();
    let hang = Hang::start();
    let gw = Gangway::builder(GANGWAY)
        .args(["--read-timeout", "2"])
        .start();
    let started = Instant::now();
    let out = Curl::via(gw.addr())
        .url(format!("http://{}/", hang.addr()))
        .max_time(Duration::from_secs(30))
        .run();
    assert_eq!(out.code(), 504, "{}", out.report());
    assert!(
        started.elapsed() < GENEROUS,
        "504 took {:?}",
        started.elapsed()
    );
    assert_still_serves(&gw, &origin);
}

#[test]
fn slow_origin_within_the_read_timeout_is_fine() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .args(["--read-timeout", "5"])
        .start();
    let out = Curl::via(gw.addr()).url(origin.url("/slow/500")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
}

#[test]
fn garbage_gets_a_400_or_a_clean_close() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(b"\x16\x03\x01\x02\x00garbage \x00\xff\r\n\r\n")
        .unwrap();
    let (closed, data) = conn.wait_closed(GENEROUS);
    let text = String::from_utf8_lossy(&data);
    assert!(
        closed.is_closed(),
        "connection left open after garbage; got {text:?}"
    );
    assert!(
        data.is_empty() || text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.0 400"),
        "expected 400 or nothing, got {text:?}"
    );
    assert_still_serves(&gw, &origin);
}

#[test]
fn invalid_uri_is_a_400() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(b"GET http://[bad/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = conn.read_head().expect("an answer to an invalid URI");
    assert_eq!(head.status, 400);
    assert_still_serves(&gw, &origin);
}

#[test]
fn one_megabyte_header_is_a_431() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nX-Huge: ",
        origin.url("/hello"),
        origin.authority()
    )
    .into_bytes();
    request.extend_from_slice(&vec![b'a'; 1024 * 1024]);
    request.extend_from_slice(b"\r\n\r\n");
    // The bridge may answer and close before reading it all.
    conn.send_lossy(&request);
    let head = conn.read_head().expect("an answer to a 1 MB header");
    assert_eq!(head.status, 431);
    assert_still_serves(&gw, &origin);
}

#[test]
fn unfinished_request_head_is_cut_off() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .args(["--idle-timeout", "2"])
        .start();
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    // Slowloris: a request head that never ends.
    conn.send(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            origin.url("/hello")
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let (closed, data) = conn.wait_closed(GENEROUS);
    assert!(
        closed.is_closed(),
        "still open after {:?}; got {:?}",
        started.elapsed(),
        String::from_utf8_lossy(&data)
    );
    assert_still_serves(&gw, &origin);
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .args(["--idle-timeout", "2"])
        .start();
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            origin.url("/hello"),
            origin.authority()
        )
        .as_bytes(),
    )
    .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(conn.read_body(&head).unwrap(), HELLO.as_bytes());
    let (closed, _) = conn.wait_closed(GENEROUS);
    assert!(
        closed.is_closed(),
        "idle connection still open after {GENEROUS:?}"
    );
    assert_still_serves(&gw, &origin);
}

#[test]
fn connect_to_a_closed_port_is_a_502() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let target = format!("127.0.0.1:{}", closed_port());
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 502);
    let body = String::from_utf8_lossy(&conn.read_body(&head).unwrap()).into_owned();
    assert!(
        body.contains(&target),
        "502 body should name {target}:\n{body}"
    );
    assert_still_serves(&gw, &origin);
}

#[test]
fn connections_beyond_the_limit_get_503() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .args(["--max-connections", "2"])
        .start();
    // Two clients hold the only two slots, each mid-request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = RawConn::connect(gw.addr()).unwrap();
        conn.send(b"GET ").unwrap();
        held.push(conn);
    }
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 503, "{}", out.report());
    drop(held);
    let recovered = gangway_testkit::wait_for(Duration::from_secs(10), || {
        let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
        (out.code() == 200).then_some(())
    });
    assert!(
        recovered.is_some(),
        "slots not released\n{}",
        gw.output_report()
    );
}

#[test]
fn gateway_refuses_clients_outside_the_allow_list() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .args([
            "--listen-address",
            "127.0.0.1",
            "--gateway",
            "--allow",
            "10.0.0.0/8",
        ])
        .start();
    let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 403, "{}", out.report());
    assert_eq!(
        origin.accepted_connections(),
        0,
        "a refused client's request was forwarded"
    );
}

/// Request heads two HTTP parsers could read differently (RFC 9112 §11.2),
/// each with a phrase the 400 page must contain.
const SMUGGLING_HEADS: &[(&str, &str, &str)] = &[
    (
        "bare LF ending the request line",
        "GET {URL} HTTP/1.1\nHost: {HOST}\r\n\r\n",
        "bare LF",
    ),
    (
        "bare LF ending a header line",
        "GET {URL} HTTP/1.1\r\nHost: {HOST}\nAccept: */*\r\n\r\n",
        "bare LF",
    ),
    (
        "bare LF ending the head",
        "GET {URL} HTTP/1.1\r\nHost: {HOST}\r\n\n",
        "bare LF",
    ),
    (
        "obs-fold",
        "GET {URL} HTTP/1.1\r\nHost: {HOST}\r\nX-Folded: a\r\n b\r\n\r\n",
        "folding",
    ),
    (
        "Content-Length then Transfer-Encoding",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "Transfer-Encoding then Content-Length",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "differing Content-Length headers",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "differing Content-Length",
    ),
    (
        "differing Content-Length list",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3, 4\r\n\r\nabcd",
        "differing Content-Length",
    ),
    (
        "gzip as the final coding",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        "not exactly `chunked`",
    ),
    (
        "gzip before chunked",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "not exactly `chunked`",
    ),
    (
        "chunked twice",
        "POST {URL} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "not exactly `chunked`",
    ),
    (
        "Transfer-Encoding in HTTP/1.0",
        "POST {URL} HTTP/1.0\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.0",
    ),
];

/// `template` with the URL and Host of `path` on `origin` filled in.
fn request_to(origin: &Origin, path: &str, template: &str) -> Vec<u8> {
    template
        .replace("{URL}", &origin.url(path))
        .replace("{HOST}", &origin.authority())
        .into_bytes()
}

/// Reads a 400 from `conn` and waits for the bridge to close it; returns
/// the 400 page.
fn expect_400_and_close(conn: &mut RawConn, case: &str) -> String {
    let head = conn
        .read_head()
        .unwrap_or_else(|e| panic!("{case}: no answer: {e}"));
    assert_eq!(
        (head.version.as_str(), head.status, head.reason.as_str()),
        ("HTTP/1.1", 400, "Bad Request"),
        "{case}"
    );
    let body = conn
        .read_body(&head)
        .unwrap_or_else(|e| panic!("{case}: no 400 page: {e}"));
    let (closed, rest) = conn.wait_closed(GENEROUS);
    assert!(
        closed.is_closed(),
        "{case}: connection left open after the 400; then got {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        rest.is_empty(),
        "{case}: more after the 400: {:?}",
        String::from_utf8_lossy(&rest)
    );
    String::from_utf8_lossy(&body).into_owned()
}

#[test]
fn smuggling_heads_get_400_close_and_reach_nothing() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    for (case, template, phrase) in SMUGGLING_HEADS {
        let mut conn = RawConn::connect(gw.addr()).unwrap();
        conn.send(&request_to(&origin, "/hello", template)).unwrap();
        let page = expect_400_and_close(&mut conn, case);
        assert!(
            page.starts_with("Gangway: bad request: ") && page.contains(phrase),
            "{case}: the 400 page should say {phrase:?}:\n{page}"
        );
        assert_eq!(
            origin.accepted_connections(),
            0,
            "{case}: the refused request reached the origin"
        );
    }
    assert!(
        gw.wait_for_log("bare LF", GENEROUS),
        "the refusals were not recorded as events\n{}",
        gw.output_report()
    );
    assert_still_serves(&gw, &origin);
}

#[test]
fn request_smuggled_in_a_body_never_reaches_the_origin() {
    let front = Origin::start();
    let hidden = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    // Read by Content-Length the body is opaque; read as chunked it ends
    // at once and a second request follows.
    let smuggled = request_to(
        &hidden,
        "/hello",
        "GET {URL} HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
    );
    let body = [&b"0\r\n\r\n"[..], &smuggled].concat();
    let mut request = request_to(
        &front,
        "/echo",
        &format!(
            "POST {{URL}} HTTP/1.1\r\nHost: {{HOST}}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            body.len()
        ),
    );
    request.extend_from_slice(&body);
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(&request).unwrap();
    expect_400_and_close(&mut conn, "CL+TE with a request in the body");
    assert_eq!(front.accepted_connections(), 0, "the POST was forwarded");
    assert_eq!(
        hidden.accepted_connections(),
        0,
        "the smuggled request was forwarded"
    );
    assert_still_serves(&gw, &front);
}

#[test]
fn bad_head_after_a_good_request_on_the_same_connection_gets_400() {
    let good = Origin::start();
    let target = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let first = request_to(
        &good,
        "/hello",
        "GET {URL} HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
    );
    let bad = request_to(&target, "/hello", "GET {URL} HTTP/1.1\nHost: {HOST}\n\n");

    // One after the other on a keep-alive connection.
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(&first).unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(conn.read_body(&head).unwrap(), HELLO.as_bytes());
    conn.send(&bad).unwrap();
    expect_400_and_close(&mut conn, "bad head after a good one");

    // Pipelined: both in one write; the first is still answered.
    let mut conn = RawConn::connect(gw.addr()).unwrap();
    conn.send(&[&first[..], &bad].concat()).unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(conn.read_body(&head).unwrap(), HELLO.as_bytes());
    expect_400_and_close(&mut conn, "bad head pipelined after a good one");

    assert_eq!(
        target.accepted_connections(),
        0,
        "a refused request reached the origin"
    );
    assert_still_serves(&gw, &good);
}
