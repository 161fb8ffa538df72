//! Gangway authenticating with NTLMv2 to an upstream whose NTLM code is not
//! ours: `tests/peers/ntlm_proxy.py`, built on pyspnego's acceptor and set
//! to accept NTLMv2 only, so every 200 here proves an NTLMv2 exchange that
//! another implementation verified.
//!
//! The peer's counters are the witness: handshakes accepted and refused,
//! the most handshakes on one upstream connection, and Type 3s that arrived
//! on a connection other than their challenge's.

use std::sync::Mutex;

use gangway_testkit::origin::HELLO;
use gangway_testkit::{
    pattern, sha256_hex, status_json, status_page, Curl, CurlOutput, Gangway, GangwayBuilder,
    NtlmPeer, NtlmStats, NtlmUser, Origin, PatternFile, RawConn,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

const DOMAIN: &str = "CORP";
const BOB: &str = "bob";
const BOB_PASSWORD: &str = "Tr0ub4dor-and-3";
/// A non-ASCII user and password: the NT hash is MD4 of the password's
/// UTF-16LE, which curl and cntlm get wrong (they widen UTF-8 bytes).
const JURGEN: &str = "jürgen";
const JURGEN_PASSWORD: &str = "pässwörd";

/// The peer with both accounts in domain CORP.
fn corp_peer() -> NtlmPeer {
    NtlmPeer::start(&[
        NtlmUser::new(DOMAIN, BOB, BOB_PASSWORD),
        NtlmUser::new(DOMAIN, JURGEN, JURGEN_PASSWORD),
    ])
}

/// A bridge to `peer` with NTLM, loopback origins through the upstream.
fn ntlm_bridge(peer: &NtlmPeer) -> GangwayBuilder {
    Gangway::builder(GANGWAY)
        .upstream(&peer.url())
        .proxy_type("ntlm")
        .no_bypass()
}

/// No handshake failed and none was split across connections.
fn assert_clean_handshakes(peer: &NtlmPeer, gw: &Gangway) -> NtlmStats {
    let stats = peer.stats();
    assert_eq!(
        (stats.handshakes_failed, stats.type3_without_challenge),
        (0, 0),
        "a handshake failed or moved to another connection\n{}\n{}",
        peer.report(),
        gw.output_report()
    );
    assert!(stats.handshakes_ok >= 1, "{}", peer.report());
    stats
}

/// One kind of request a user makes through the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// GET /echo; the credentials must not reach the origin.
    Get,
    /// A small form POST, checked by hash at the origin.
    SmallPost,
    /// A 10 MB POST with `Content-Length`, checked by hash. 10 MB is far
    /// beyond what the peer drains for a 407 (1 MiB): as the first request
    /// on a connection it gets through only if the Type 1 leg went without
    /// the body and the body went with the Type 3, on the same connection.
    LargePost,
    /// A 3 MB upload of unknown length (chunked), checked by hash.
    ChunkedUpload,
    /// CONNECT to an HTTPS origin (curl checks the certificate).
    Connect,
}

/// Runs `steps` in order through `gw`. The first one opens the bridge's
/// first upstream connection, so it carries the NTLM handshake: checked.
fn exercise(gw: &Gangway, peer: &NtlmPeer, origin: &Origin, tls_origin: &Origin, steps: &[Step]) {
    for (i, &step) in steps.iter().enumerate() {
        let context = || format!("{step:?}\n{}\n{}", gw.output_report(), peer.report());
        match step {
            Step::Get => {
                let get = Curl::via(gw.addr()).url(origin.url("/echo")).run();
                assert_eq!(get.code(), 200, "{}\n{}", get.report(), context());
                assert!(
                    !get.echo().has_header("proxy-authorization"),
                    "NTLM credentials leaked to the origin"
                );
            }
            Step::SmallPost => {
                let form = "field=value&other=ünïcode";
                let post = Curl::via(gw.addr())
                    .arg("--data-binary")
                    .arg(form)
                    .url(origin.url("/echo"))
                    .run();
                assert_eq!(post.code(), 200, "{}\n{}", post.report(), context());
                let echo = post.echo();
                assert_eq!(echo.method, "POST");
                assert_eq!(echo.sha256, sha256_hex(form.as_bytes()));
            }
            Step::LargePost => {
                let large = PatternFile::new(10 * 1024 * 1024);
                let post = Curl::via(gw.addr())
                    .post_file(large.path())
                    .url(origin.url("/echo"))
                    .run();
                assert_eq!(post.code(), 200, "{}\n{}", post.report(), context());
                let echo = post.echo();
                assert_eq!(echo.len, large.len() as u64);
                assert_eq!(echo.sha256, large.sha256());
            }
            Step::ChunkedUpload => {
                let data = pattern(3 * 1024 * 1024);
                let put = Curl::via(gw.addr())
                    .upload_stdin(data.clone())
                    .url(origin.url("/echo"))
                    .run();
                assert_eq!(put.code(), 200, "{}\n{}", put.report(), context());
                let echo = put.echo();
                assert_eq!(echo.len, data.len() as u64);
                assert_eq!(echo.sha256, sha256_hex(&data));
            }
            Step::Connect => {
                let tunnel = Curl::via(gw.addr())
                    .cacert(tls_origin.ca_file())
                    .url(tls_origin.url("/hello"))
                    .run();
                assert_eq!(
                    (tunnel.connect_code(), tunnel.code()),
                    (200, 200),
                    "{}\n{}",
                    tunnel.report(),
                    context()
                );
                assert_eq!(tunnel.text(), HELLO);
            }
        }
        if i == 0 {
            let stats = peer.stats();
            assert_eq!(
                (stats.handshakes_ok, stats.requests),
                (1, 1),
                "the first request should have carried the one handshake\n{}",
                context()
            );
        }
    }
}

#[test]
fn ntlmv2_get_post_large_post_and_connect_with_realm_as_domain() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let peer = corp_peer();
    let gw = ntlm_bridge(&peer)
        .arg("--realm")
        .arg(DOMAIN)
        .user(BOB)
        .password_stdin(BOB_PASSWORD)
        .start();
    assert!(
        gw.ready_line().contains("(ntlm as CORP\\bob)"),
        "ready line: {}",
        gw.ready_line()
    );
    use Step::*;
    exercise(
        &gw,
        &peer,
        &origin,
        &tls_origin,
        &[LargePost, Get, SmallPost, Connect, LargePost],
    );
    assert_clean_handshakes(&peer, &gw);
    gw.assert_output_never_contains(BOB_PASSWORD);
}

#[test]
fn domain_backslash_user_form_works() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let peer = corp_peer();
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    assert!(
        gw.ready_line().contains("(ntlm as CORP\\bob)"),
        "ready line: {}",
        gw.ready_line()
    );
    use Step::*;
    exercise(
        &gw,
        &peer,
        &origin,
        &tls_origin,
        &[Connect, Get, LargePost, Connect],
    );
    assert_clean_handshakes(&peer, &gw);
    gw.assert_output_never_contains(BOB_PASSWORD);
}

#[test]
fn user_at_domain_form_works() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let peer = corp_peer();
    // The domain is matched without regard to case by the peer, as by AD.
    let gw = ntlm_bridge(&peer)
        .user("bob@corp")
        .password_stdin(BOB_PASSWORD)
        .start();
    use Step::*;
    exercise(
        &gw,
        &peer,
        &origin,
        &tls_origin,
        &[Get, SmallPost, ChunkedUpload, Connect],
    );
    assert_clean_handshakes(&peer, &gw);
    gw.assert_output_never_contains(BOB_PASSWORD);
}

#[test]
fn non_ascii_user_and_password_work() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let peer = corp_peer();
    let gw = ntlm_bridge(&peer)
        .user("CORP\\jürgen")
        .password_stdin(JURGEN_PASSWORD)
        .start();
    use Step::*;
    exercise(
        &gw,
        &peer,
        &origin,
        &tls_origin,
        &[ChunkedUpload, Get, SmallPost, LargePost, Connect],
    );
    assert_clean_handshakes(&peer, &gw);
    gw.assert_output_never_contains(JURGEN_PASSWORD);
}

#[test]
fn a_domain_the_account_is_not_in_is_rejected_once() {
    // The control for the three domain forms above: the domain really goes
    // into the NTLMv2 response, so the right password in the wrong domain
    // fails, once.
    let origin = Origin::start();
    let peer = corp_peer();
    let gw = ntlm_bridge(&peer)
        .user("OTHER\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    for _ in 0..3 {
        let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
        assert_eq!(out.code(), 407, "{}\n{}", out.report(), peer.report());
        assert!(
            explains_rejection(&out.text(), "OTHER\\bob"),
            "unexplained 407:\n{}",
            out.report()
        );
    }
    let stats = peer.stats();
    assert_eq!(
        (stats.handshakes_failed, stats.handshakes_ok),
        (1, 0),
        "{}",
        peer.report()
    );
    gw.assert_output_never_contains(BOB_PASSWORD);
}

/// Runs `jobs` (each one curl process, so one client connection) on
/// `workers` threads at once; returns their outputs in job order.
fn run_parallel(jobs: Vec<Curl>, workers: usize) -> Vec<CurlOutput> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = Mutex::new(
        (0..count)
            .map(|_| None)
            .collect::<Vec<Option<CurlOutput>>>(),
    );
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let Some((i, job)) = queue.lock().expect("job queue").pop() else {
                    break;
                };
                let out = job.run();
                results.lock().expect("results")[i] = Some(out);
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

#[test]
fn many_short_client_connections_cost_at_most_pool_size_handshakes() {
    const POOL_SIZE: u64 = 16;
    const CLIENT_CONNECTIONS: usize = 50;
    const REQUESTS_PER_CONNECTION: usize = 20;
    // More clients at once than pooled connections: they share the pool
    // instead of each paying for a handshake.
    const AT_ONCE: usize = 25;

    let origin = Origin::start();
    let peer = corp_peer();
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .arg("--pool-size")
        .arg(POOL_SIZE.to_string())
        .start();

    // Each curl process is one short-lived client connection making 20
    // keep-alive requests, then closing.
    let jobs: Vec<Curl> = (0..CLIENT_CONNECTIONS)
        .map(|c| {
            (0..REQUESTS_PER_CONNECTION).fold(Curl::via(gw.addr()), |curl, r| {
                curl.url(origin.url(&format!("/echo?client={c}&request={r}")))
            })
        })
        .collect();
    let outputs = run_parallel(jobs, AT_ONCE);

    let mut ok = 0;
    let mut client_connections = 0;
    for out in &outputs {
        assert!(
            out.succeeded() && out.transfers.len() == REQUESTS_PER_CONNECTION,
            "{}\n{}",
            out.report(),
            peer.report()
        );
        for t in &out.transfers {
            assert_eq!(t.status, 200, "{}\n{}", out.report(), peer.report());
            ok += 1;
            client_connections += t.new_connections as usize;
        }
    }
    assert_eq!(ok, CLIENT_CONNECTIONS * REQUESTS_PER_CONNECTION);
    assert_eq!(
        client_connections, CLIENT_CONNECTIONS,
        "each curl should have kept its one connection to the bridge"
    );

    let stats = peer.stats();
    eprintln!(
        "{} handshakes for {CLIENT_CONNECTIONS} client connections and {ok} requests: {stats:?}",
        stats.handshakes_ok
    );
    assert_eq!(
        (stats.handshakes_failed, stats.type3_without_challenge),
        (0, 0),
        "{}",
        peer.report()
    );
    assert!(
        stats.handshakes_ok >= 1 && stats.handshakes_ok <= POOL_SIZE,
        "{} handshakes for {CLIENT_CONNECTIONS} client connections (pool size {POOL_SIZE})\n{}",
        stats.handshakes_ok,
        peer.report()
    );
    assert!(
        stats.handshakes_ok * 3 <= CLIENT_CONNECTIONS as u64,
        "handshakes ({}) should be far below the {CLIENT_CONNECTIONS} client connections",
        stats.handshakes_ok
    );
    assert_eq!(
        stats.max_handshakes_on_one_connection,
        1,
        "an authenticated upstream connection was authenticated again\n{}",
        peer.report()
    );
    assert!(
        stats.requests >= (CLIENT_CONNECTIONS * REQUESTS_PER_CONNECTION) as u64,
        "{}",
        peer.report()
    );
}

#[test]
fn client_connection_close_does_not_leak_into_the_handshake() {
    let origin = Origin::start();
    let peer = corp_peer();
    // A fresh bridge: its first request must do the whole handshake while
    // the client says it will close its own connection.
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    for header in ["Connection: close", "Proxy-Connection: close"] {
        for _ in 0..3 {
            let out = Curl::via(gw.addr())
                .header(header)
                .url(origin.url("/hello"))
                .run();
            assert_eq!(
                out.code(),
                200,
                "{header}: {}\n{}\n{}",
                out.report(),
                gw.output_report(),
                peer.report()
            );
            assert_eq!(out.text(), HELLO);
        }
    }
    // A body with Type 3, from a client that closes afterwards.
    let upload = PatternFile::new(100_000);
    let post = Curl::via(gw.addr())
        .header("Connection: close")
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .run();
    assert_eq!(post.code(), 200, "{}", post.report());
    assert_eq!(post.echo().sha256, upload.sha256());
    let stats = assert_clean_handshakes(&peer, &gw);
    assert_eq!(
        stats.max_handshakes_on_one_connection,
        1,
        "{}",
        peer.report()
    );
}

#[test]
fn an_upstream_closing_after_its_challenge_gets_one_fresh_handshake() {
    let origin = Origin::start();
    let users = [NtlmUser::new(DOMAIN, BOB, BOB_PASSWORD)];

    // The first Type 2 comes with `Connection: close`: the handshake starts
    // over once on a new connection and completes.
    let peer = NtlmPeer::start_with(&users, &["--close-after-challenge", "1"]);
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    let first = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(
        first.code(),
        200,
        "{}\n{}\n{}",
        first.report(),
        gw.output_report(),
        peer.report()
    );
    assert_eq!(first.text(), HELLO);
    let stats = peer.stats();
    assert_eq!(
        (
            stats.closed_after_challenge,
            stats.type1_seen,
            stats.handshakes_ok,
            stats.handshakes_failed
        ),
        (1, 2, 1, 0),
        "{}",
        peer.report()
    );

    // Only once per request: a second close in a row is an error in words,
    // and not a credential failure; the next request works.
    let peer = NtlmPeer::start_with(&users, &["--close-after-challenge", "2"]);
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    let cut = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(cut.code(), 502, "{}\n{}", cut.report(), peer.report());
    assert!(
        cut.text()
            .contains("closed the connection in the middle of the NTLM handshake"),
        "{}",
        cut.report()
    );
    assert_eq!(status_json(gw.addr())["failed_attempts"], 0);
    let after = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(after.code(), 200, "{}\n{}", after.report(), peer.report());
    let stats = peer.stats();
    assert_eq!(
        (
            stats.closed_after_challenge,
            stats.type1_seen,
            stats.handshakes_failed
        ),
        (2, 3, 0),
        "{}",
        peer.report()
    );
}

#[test]
fn http10_client_gets_a_completed_handshake() {
    let origin = Origin::start();
    let peer = corp_peer();
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    for _ in 0..3 {
        let out = Curl::via(gw.addr())
            .http10()
            .url(origin.url("/hello"))
            .run();
        assert_eq!(
            out.code(),
            200,
            "{}\n{}\n{}",
            out.report(),
            gw.output_report(),
            peer.report()
        );
        assert_eq!(out.text(), HELLO);
    }
    // HTTP/1.0 with a body (Content-Length known).
    let post = Curl::via(gw.addr())
        .http10()
        .arg("--data-binary")
        .arg("one-point-oh")
        .url(origin.url("/echo"))
        .run();
    assert_eq!(post.code(), 200, "{}", post.report());
    assert_eq!(post.echo().sha256, sha256_hex(b"one-point-oh"));
    assert_clean_handshakes(&peer, &gw);
}

/// Whether a 407 body says the upstream rejected `user`'s credentials.
fn explains_rejection(body: &str, user: &str) -> bool {
    body.contains(user) && body.to_lowercase().contains("rejected")
}

#[test]
fn wrong_password_fails_one_handshake_and_every_client_gets_a_clear_407() {
    const AT_ONCE: usize = 10;
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let peer = corp_peer();
    let wrong = "not-bobs-password";
    let gw = ntlm_bridge(&peer)
        .user("CORP\\bob")
        .password_stdin(wrong)
        .start();

    // Ten clients at once while the credentials are still unproven: only
    // one of them may try them.
    let concurrent = run_parallel(
        (0..AT_ONCE)
            .map(|_| Curl::via(gw.addr()).url(origin.url("/hello")))
            .collect(),
        AT_ONCE,
    );
    let sequential: Vec<CurlOutput> = ["/hello", "/echo", "/hello", "/echo", "/hello"]
        .iter()
        .map(|path| Curl::via(gw.addr()).url(origin.url(path)).run())
        .collect();
    for out in concurrent.iter().chain(&sequential) {
        assert_eq!(out.code(), 407, "{}\n{}", out.report(), gw.output_report());
        assert!(
            explains_rejection(&out.text(), "CORP\\bob"),
            "unexplained 407:\n{}",
            out.report()
        );
    }
    // A CONNECT gets the same answer.
    let mut conn = RawConn::connect(gw.addr()).expect("connect to the bridge");
    let authority = tls_origin.authority();
    conn.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .expect("send CONNECT");
    let head = conn.read_head().expect("CONNECT answer");
    assert_eq!(head.status, 407, "{head:?}");
    let body = String::from_utf8_lossy(&conn.read_body(&head).expect("407 body")).into_owned();
    assert!(
        explains_rejection(&body, "CORP\\bob"),
        "unexplained CONNECT 407:\n{body}"
    );

    let stats = peer.stats();
    assert_eq!(
        (stats.handshakes_failed, stats.handshakes_ok),
        (1, 0),
        "the bridge must try rejected credentials exactly once (account lockout)\n{}",
        peer.report()
    );

    // The user can see why on the status page.
    let status = status_json(gw.addr());
    assert_eq!(
        status["credentials"]["state"], "rejected",
        "status.json: {status:#}"
    );
    assert_eq!(status["failed_attempts"], 1, "status.json: {status:#}");
    let page = status_page(gw.addr());
    assert!(
        page.contains("REJECTED") && page.contains("<th>Failed attempts</th><td>1</td>"),
        "status page:\n{page}"
    );
    gw.assert_output_never_contains(wrong);
}
