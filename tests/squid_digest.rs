//! Gangway authenticating to a real Squid with Digest (RFC 7616) through
//! `digest_file_auth -c`, whose `user:realm:HA1` file lets passwords carry
//! colons.

use gangway_testkit::origin::HELLO;
use gangway_testkit::{
    sha256_hex, AccessEntry, Curl, Gangway, GangwayBuilder, Origin, PatternFile, Squid, SquidConfig,
};

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

#[test]
fn password_with_spaces_a_colon_and_non_ascii_works_for_get_post_and_connect() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    // digest_file_auth splits `user:password` at every colon; the harness
    // stores `user:realm:HA1` (helper run with -c), so this one is possible.
    let password = "p a:ss wörd";
    let squid = Squid::digest("dave", password);
    let gw = digest_bridge(&squid, "dave")
        .password_stdin(password)
        .start();

    let get = Curl::via(gw.addr()).url(origin.url("/echo")).run();
    assert_eq!(get.code(), 200, "{}\n{}", get.report(), gw.output_report());
    assert!(!get.echo().has_header("proxy-authorization"));

    let form = "a=1&b=zwei&c=drei";
    let post = Curl::via(gw.addr())
        .arg("--data-binary")
        .arg(form)
        .url(origin.url("/echo"))
        .run();
    assert_eq!(post.code(), 200, "{}", post.report());
    assert_eq!(post.echo().sha256, sha256_hex(form.as_bytes()));

    let tunnel = Curl::via(gw.addr())
        .cacert(tls_origin.ca_file())
        .url(tls_origin.url("/hello"))
        .run();
    assert_eq!(tunnel.code(), 200, "{}", tunnel.report());
    assert_eq!(tunnel.text(), HELLO);

    squid.flush_access_log();
    assert_eq!(
        squid.count_rejected_credentials("dave"),
        squid.count_407()
            - squid
                .access_entries()
                .iter()
                .filter(|e| e.status == 407 && e.user.is_none())
                .count(),
        "{}",
        squid.access_log()
    );
    assert!(
        squid
            .access_entries()
            .iter()
            .any(|e| e.method == "CONNECT" && e.status == 200 && e.user.as_deref() == Some("dave")),
        "{}",
        squid.access_log()
    );
    gw.assert_output_never_contains(password);
}

/// One request of the mixed runs below.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Get,
    /// A small form POST (the bridge can hold it to send it again).
    Post,
    /// A 200 kB POST: above the bridge's replay buffer, so it streams.
    LargePost,
    Connect,
}

/// Sends one request of `kind` through `gw` and checks it succeeded.
fn send(gw: &Gangway, squid: &Squid, origin: &Origin, tls_origin: &Origin, kind: Kind, n: usize) {
    let form = format!("request={n}&kind=post");
    let upload = matches!(kind, Kind::LargePost).then(|| PatternFile::new(200_000));
    let out = match kind {
        Kind::Get => Curl::via(gw.addr()).url(origin.url("/hello")).run(),
        Kind::Post => Curl::via(gw.addr())
            .arg("--data-binary")
            .arg(&form)
            .url(origin.url("/echo"))
            .run(),
        Kind::LargePost => Curl::via(gw.addr())
            .post_file(upload.as_ref().expect("upload file").path())
            .url(origin.url("/echo"))
            .run(),
        Kind::Connect => Curl::via(gw.addr())
            .cacert(tls_origin.ca_file())
            .url(tls_origin.url("/hello"))
            .run(),
    };
    assert_eq!(
        out.code(),
        200,
        "request {n} ({kind:?}): {}\n{}\n--- access.log ---\n{}",
        out.report(),
        gw.output_report(),
        squid.access_log()
    );
    match kind {
        Kind::Post => assert_eq!(
            out.echo().sha256,
            sha256_hex(form.as_bytes()),
            "request {n}"
        ),
        Kind::LargePost => assert_eq!(
            out.echo().sha256,
            upload.expect("upload file").sha256(),
            "request {n}"
        ),
        Kind::Get | Kind::Connect => assert_eq!(out.text(), HELLO, "request {n}"),
    }
}

/// Squid's log entries, without the markers `flush_access_log` sends.
fn logged_requests(squid: &Squid) -> Vec<AccessEntry> {
    squid.flush_access_log();
    squid
        .access_entries()
        .into_iter()
        .filter(|e| !e.url.contains("gangway-testkit-log-marker"))
        .collect()
}

#[test]
fn nonce_reuse_keeps_407s_far_below_requests_across_stale_nonces() {
    const REQUESTS: usize = 40;
    const NONCE_MAX_COUNT: usize = 10;
    // Squid: uses 1..=N+1 of a nonce pass, use N+2 gets stale=true (see
    // shared/notes/proxy-auth-peers.md). A bridge that reuses the nonce with
    // a rising nc pays one 407 to learn the first nonce, then one stale 407
    // per N+1 requests; its quiet retry is use 1 of the next nonce.
    let per_nonce = NONCE_MAX_COUNT + 1;
    let stale_407s = (REQUESTS - per_nonce).div_ceil(per_nonce);
    let bound = 1 + stale_407s;
    assert_eq!(bound, 4);

    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let squid =
        Squid::start(SquidConfig::digest(USER, PASSWORD).nonce_max_count(NONCE_MAX_COUNT as u32));
    let gw = digest_bridge(&squid, USER).password_stdin(PASSWORD).start();

    // GETs and POSTs alternate, with a CONNECT every tenth request, so the
    // stale nonces land on every kind of request.
    for i in 0..REQUESTS {
        let kind = match i {
            _ if i % 10 == 9 => Kind::Connect,
            _ if i % 2 == 1 => Kind::Post,
            _ => Kind::Get,
        };
        send(&gw, &squid, &origin, &tls_origin, kind, i + 1);
    }

    let entries = logged_requests(&squid);
    let answered_407 = entries.iter().filter(|e| e.status == 407).count();
    let served = entries.iter().filter(|e| e.status == 200).count();
    eprintln!("{answered_407} 407s for {served} requests served (bound {bound})");
    assert_eq!(served, REQUESTS, "{}", squid.access_log());
    assert!(
        answered_407 <= bound,
        "{answered_407} 407s for {REQUESTS} requests (nonce_max_count {NONCE_MAX_COUNT}: at most {bound} expected)\n{}",
        squid.access_log()
    );
    gw.assert_output_never_contains(PASSWORD);
}

#[test]
fn large_upload_succeeds_when_its_nonce_goes_stale() {
    // nonce_max_count 2: uses 1..=3 pass, the 4th is answered stale=true.
    // Three GETs use up the nonce, so the 200 kB POST, which the bridge
    // cannot hold to send twice, is the request that meets the stale nonce.
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let squid = Squid::start(SquidConfig::digest(USER, PASSWORD).nonce_max_count(2));
    let gw = digest_bridge(&squid, USER).password_stdin(PASSWORD).start();
    let kinds = [
        Kind::Get,
        Kind::Get,
        Kind::Get,
        Kind::LargePost,
        Kind::Get,
        Kind::Get,
        Kind::LargePost,
        Kind::LargePost,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        send(&gw, &squid, &origin, &tls_origin, kind, i + 1);
    }
    let served = logged_requests(&squid)
        .iter()
        .filter(|e| e.status == 200)
        .count();
    assert_eq!(served, kinds.len(), "{}", squid.access_log());
}
