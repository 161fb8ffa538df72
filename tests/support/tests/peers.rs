//! The harness's own peers, checked with curl alone (no gangway involved), so
//! a failing integration test can be blamed on the bridge, not the harness.

use std::time::{Duration, Instant};

use gangway_testkit::origin::{chunked_body, HELLO};
use gangway_testkit::raw::exchange;
use gangway_testkit::{
    closed_port, pattern, sha256_hex, Closed, Curl, Hang, Origin, PatternFile, RawConn, Squid,
    SquidConfig,
};

#[test]
fn origin_serves_every_endpoint() {
    let origin = Origin::start();
    let hello = Curl::new().url(origin.url("/hello")).run();
    assert_eq!(hello.code(), 200, "{}", hello.report());
    assert_eq!(hello.text(), HELLO);

    let upload = PatternFile::new(300_000);
    let echo = Curl::new()
        .post_file(upload.path())
        .header("X-Test: yes")
        .url(origin.url("/echo?q=1"))
        .run();
    let reply = echo.echo();
    assert_eq!(reply.method, "POST");
    assert_eq!(reply.uri, "/echo?q=1");
    assert_eq!(reply.len, 300_000);
    assert_eq!(reply.sha256, upload.sha256());
    assert_eq!(reply.header("x-test").as_deref(), Some("yes"));

    let bytes = Curl::new().url(origin.url("/bytes/1000000")).run();
    assert_eq!(bytes.body().len(), 1_000_000);
    assert_eq!(sha256_hex(bytes.body()), sha256_hex(&pattern(1_000_000)));
    assert_eq!(bytes.header("content-length").as_deref(), Some("1000000"));

    let chunked = Curl::new().url(origin.url("/chunked")).run();
    assert_eq!(chunked.text(), chunked_body());
    assert_eq!(
        chunked.header("transfer-encoding").as_deref(),
        Some("chunked")
    );

    let status = Curl::new().url(origin.url("/status/418")).run();
    assert_eq!(status.code(), 418);
    let slow = Curl::new().url(origin.url("/slow/50")).run();
    assert_eq!(slow.code(), 200);
    assert_eq!(Curl::new().url(origin.url("/nope")).run().code(), 404);
}

#[test]
fn origin_counts_connections_and_curl_reuses_them() {
    let origin = Origin::start();
    let out = Curl::new()
        .url(origin.url("/hello"))
        .url(origin.url("/echo"))
        .url(origin.url("/hello"))
        .run();
    let codes: Vec<u16> = out.transfers.iter().map(|t| t.status).collect();
    assert_eq!(codes, [200, 200, 200], "{}", out.report());
    let new_conns: Vec<u32> = out.transfers.iter().map(|t| t.new_connections).collect();
    assert_eq!(new_conns, [1, 0, 0]);
    assert_eq!(origin.accepted_connections(), 1);
}

#[test]
fn chunked_upload_from_stdin_reaches_echo() {
    let origin = Origin::start();
    let data = pattern(200_000);
    let out = Curl::new()
        .upload_stdin(data.clone())
        .url(origin.url("/echo"))
        .run();
    let reply = out.echo();
    assert_eq!(reply.method, "PUT");
    assert_eq!(reply.len, 200_000);
    assert_eq!(reply.sha256, sha256_hex(&data));
    assert_eq!(
        reply.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
}

#[test]
fn https_origin_is_trusted_with_the_test_ca() {
    let origin = Origin::start_https();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/hello", origin.port());
        let out = Curl::new().cacert(origin.ca_file()).url(url).run();
        assert_eq!(out.code(), 200, "{}", out.report());
        assert_eq!(out.text(), HELLO);
    }
    let untrusted = Curl::new().url(origin.url("/hello")).run();
    assert!(
        !untrusted.succeeded(),
        "curl must not trust the test CA by default"
    );
}

#[test]
fn raw_client_decodes_chunked_and_sized_bodies() {
    let origin = Origin::start();
    let request = "GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (head, body) = exchange(origin.addr(), request.as_bytes()).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.is_chunked());
    assert_eq!(String::from_utf8(body).unwrap(), chunked_body());

    let mut conn = RawConn::connect(origin.addr()).unwrap();
    conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(conn.read_body(&head).unwrap(), HELLO.as_bytes());
    conn.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = conn.read_head().unwrap();
    assert_eq!(conn.read_body(&head).unwrap(), HELLO.as_bytes());
    assert_eq!(conn.wait_closed(Duration::from_secs(5)).0, Closed::Eof);
}

#[test]
fn hang_accepts_and_stays_silent_closed_port_refuses() {
    let hang = Hang::start();
    let mut conn = RawConn::connect(hang.addr()).unwrap();
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (closed, data) = conn.wait_closed(Duration::from_millis(500));
    assert_eq!(closed, Closed::StillOpen);
    assert!(data.is_empty());
    assert_eq!(hang.accepted_connections(), 1);

    let refused = std::net::TcpStream::connect(("127.0.0.1", closed_port()));
    assert!(refused.is_err());
}

#[test]
fn squid_without_auth_forwards_and_logs() {
    let origin = Origin::start();
    let squid = Squid::no_auth();
    let out = Curl::via(squid.addr()).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    assert_eq!(out.text(), HELLO);
    squid.flush_access_log();
    let entries = squid.access_entries();
    assert!(
        entries
            .iter()
            .any(|e| e.status == 200 && e.method == "GET" && e.url == origin.url("/hello")),
        "{entries:#?}"
    );
}

#[test]
fn squid_basic_accepts_the_right_password_and_logs_wrong_ones() {
    let origin = Origin::start();
    let odd = "pä:ss wörd";
    let squid = Squid::start(SquidConfig::basic("alice", "wonder").user("bob", odd));
    let url = origin.url("/hello");
    let anonymous = Curl::via(squid.addr()).url(&url).run();
    assert_eq!(anonymous.code(), 407);
    let right = Curl::via(squid.addr())
        .args(["--proxy-user", "alice:wonder"])
        .url(&url)
        .run();
    assert_eq!(right.code(), 200, "{}", right.report());
    let odd_user = Curl::via(squid.addr())
        .arg("--proxy-user")
        .arg(format!("bob:{odd}"))
        .url(&url)
        .run();
    assert_eq!(odd_user.code(), 200, "{}", odd_user.report());
    let wrong = Curl::via(squid.addr())
        .args(["--proxy-user", "alice:nope"])
        .url(&url)
        .run();
    assert_eq!(wrong.code(), 407);
    squid.flush_access_log();
    assert_eq!(
        squid.count_rejected_credentials("alice"),
        1,
        "{}",
        squid.access_log()
    );
    // The anonymous request and the flush marker are 407s without a user.
    assert_eq!(squid.count_407(), 3, "{}", squid.access_log());
}

#[test]
fn squid_digest_accepts_a_password_with_a_colon() {
    let origin = Origin::start();
    let squid = Squid::start(SquidConfig::digest("carol", "se:cret").nonce_max_count(2));
    let out = Curl::via(squid.addr())
        .args(["--proxy-digest", "--proxy-user", "carol:se:cret"])
        .url(origin.url("/hello"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    let wrong = Curl::via(squid.addr())
        .args(["--proxy-digest", "--proxy-user", "carol:secret"])
        .url(origin.url("/hello"))
        .run();
    assert_eq!(wrong.code(), 407);
}

#[test]
fn squid_tunnels_and_denies_configured_ports() {
    let origin = Origin::start_https();
    let denied = Origin::start_https();
    let squid = Squid::start(SquidConfig::no_auth().deny_connect_to_port(denied.port()));
    let ok = Curl::via(squid.addr())
        .cacert(origin.ca_file())
        .url(origin.url("/hello"))
        .run();
    assert_eq!(ok.code(), 200, "{}", ok.report());
    let refused = Curl::via(squid.addr())
        .cacert(denied.ca_file())
        .url(denied.url("/hello"))
        .run();
    assert_eq!(refused.connect_code(), 403, "{}", refused.report());
    let closed = Curl::via(squid.addr())
        .tunnel()
        .url(format!("http://127.0.0.1:{}/", closed_port()))
        .run();
    assert_eq!(closed.connect_code(), 503, "{}", closed.report());
}

#[test]
fn squid_restarts_on_the_same_port() {
    let origin = Origin::start();
    let mut squid = Squid::no_auth();
    let port = squid.port();
    squid.stop();
    assert!(!squid.is_running());
    let down = Curl::via(squid.addr()).url(origin.url("/hello")).run();
    assert_eq!(down.code(), 0);
    let started = Instant::now();
    squid.restart();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(squid.port(), port);
    let up = Curl::via(squid.addr()).url(origin.url("/hello")).run();
    assert_eq!(up.code(), 200, "{}", up.report());
}

#[test]
fn squid_picks_up_a_changed_password() {
    let origin = Origin::start();
    let mut squid = Squid::basic("alice", "old");
    let new_creds = ["--proxy-user", "alice:new"];
    let before = Curl::via(squid.addr())
        .args(new_creds)
        .url(origin.url("/hello"))
        .run();
    assert_eq!(before.code(), 407);
    squid.change_password("alice", "new");
    let after = Curl::via(squid.addr())
        .args(new_creds)
        .url(origin.url("/hello"))
        .run();
    assert_eq!(after.code(), 200, "{}", after.report());
}

#[test]
fn squid_digest_picks_up_a_changed_password() {
    let origin = Origin::start();
    let mut squid = Squid::digest("carol", "old");
    let new_creds = ["--proxy-digest", "--proxy-user", "carol:new"];
    let before = Curl::via(squid.addr())
        .args(new_creds)
        .url(origin.url("/hello"))
        .run();
    assert_eq!(before.code(), 407);
    squid.change_password("carol", "new");
    let after = Curl::via(squid.addr())
        .args(new_creds)
        .url(origin.url("/hello"))
        .run();
    assert_eq!(after.code(), 200, "{}", after.report());
}
