//! Choosing and checking: `--proxy-type auto` reads the upstream's offers
//! and picks the strongest scheme Gangway can do, and `--probe` says in
//! words whether the bridge would work, trying the credentials once.
//!
//! Peers: the pyspnego NTLM proxy (NTLMv2 only), a real Squid with Basic,
//! and an upstream that offers only `Negotiate`.

use std::time::Duration;

use gangway_testkit::gangway::Exited;
use gangway_testkit::origin::HELLO;
use gangway_testkit::{
    closed_port, Curl, Gangway, GangwayBuilder, NtlmPeer, NtlmUser, Offer, Origin, Squid,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

const BOB_PASSWORD: &str = "Tr0ub4dor-and-3";
/// How long a probe may take before the test calls it hung.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

fn bob_peer() -> NtlmPeer {
    NtlmPeer::start(&[NtlmUser::new("CORP", "bob", BOB_PASSWORD)])
}

fn bridge(upstream: &str, proxy_type: &str) -> GangwayBuilder {
    Gangway::builder(GANGWAY)
        .upstream(upstream)
        .proxy_type(proxy_type)
        .no_bypass()
}

// --- --proxy-type auto -------------------------------------------------------

#[test]
fn auto_picks_ntlm_when_the_upstream_offers_ntlm() {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let peer = bob_peer();
    let gw = bridge(&peer.url(), "auto")
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    let get = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(
        get.code(),
        200,
        "{}\n{}\n{}",
        get.report(),
        gw.output_report(),
        peer.report()
    );
    assert_eq!(get.text(), HELLO);
    let tunnel = Curl::via(gw.addr())
        .cacert(tls_origin.ca_file())
        .url(tls_origin.url("/hello"))
        .run();
    assert_eq!(tunnel.code(), 200, "{}", tunnel.report());
    assert!(
        gw.wait_for_log("using NTLM", Duration::from_secs(5)),
        "no log line saying NTLM was chosen:\n{}",
        gw.output_report()
    );
    let stats = peer.stats();
    assert_eq!(
        (stats.handshakes_ok, stats.handshakes_failed),
        (1, 0),
        "{}",
        peer.report()
    );
    gw.assert_output_never_contains(BOB_PASSWORD);
}

#[test]
fn auto_picks_basic_when_squid_offers_basic() {
    let origin = Origin::start();
    let squid = Squid::basic("alice", "wonder-land-42");
    let gw = bridge(&squid.url(), "auto")
        .user("alice")
        .password_stdin("wonder-land-42")
        .start();
    let get = Curl::via(gw.addr()).url(origin.url("/hello")).run();
    assert_eq!(get.code(), 200, "{}\n{}", get.report(), gw.output_report());
    assert!(
        gw.wait_for_log("using Basic", Duration::from_secs(5)),
        "no log line saying Basic was chosen:\n{}",
        gw.output_report()
    );
    squid.flush_access_log();
    assert!(
        squid
            .access_entries()
            .iter()
            .any(|e| e.status == 200 && e.user.as_deref() == Some("alice")),
        "{}",
        squid.access_log()
    );
}

/// Against an upstream that offers only Negotiate every request is a 502
/// naming it, and no credentials were sent it could count as a failure.
fn negotiate_only_upstream_is_a_502_naming_it(proxy_type: &str) {
    let origin = Origin::start();
    let tls_origin = Origin::start_https();
    let offer = Offer::start(&["Negotiate"]);
    let gw = bridge(&offer.url(), proxy_type)
        .user("CORP\\bob")
        .password_stdin(BOB_PASSWORD)
        .start();
    for _ in 0..2 {
        let out = Curl::via(gw.addr()).url(origin.url("/hello")).run();
        assert_eq!(out.code(), 502, "{}\n{}", out.report(), gw.output_report());
        assert!(
            out.text().contains("Negotiate"),
            "the 502 should name the offered scheme:\n{}",
            out.report()
        );
    }
    let tunnel = Curl::via(gw.addr())
        .cacert(tls_origin.ca_file())
        .url(tls_origin.url("/hello"))
        .run();
    assert_eq!(tunnel.connect_code(), 502, "{}", tunnel.report());
    // The bridge did not hammer it: at most two asks per client request.
    assert!(
        offer.requests() <= 6,
        "{} requests reached the upstream for 3 client requests",
        offer.requests()
    );
    gw.assert_output_never_contains(BOB_PASSWORD);
}

#[test]
fn auto_against_an_upstream_offering_only_negotiate_is_a_502_naming_it() {
    negotiate_only_upstream_is_a_502_naming_it("auto");
}

#[test]
fn ntlm_against_an_upstream_offering_only_negotiate_is_a_502_naming_it() {
    negotiate_only_upstream_is_a_502_naming_it("ntlm");
}

// --- --probe -----------------------------------------------------------------

/// `gangway --probe` to exit; the verdict is its stdout.
fn probe(builder: GangwayBuilder, probe_url: &str) -> Exited {
    builder
        .arg("--probe")
        .arg("--probe-url")
        .arg(probe_url)
        .run_to_exit(PROBE_LIMIT)
}

fn describe(run: &Exited) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status, run.stdout, run.stderr
    )
}

/// A probe with the right password: accepted, after exactly one handshake.
fn probe_accepts_the_right_ntlm_password(proxy_type: &str) {
    let origin = Origin::start();
    let peer = bob_peer();
    let run = probe(
        bridge(&peer.url(), proxy_type)
            .user("CORP\\bob")
            .password_stdin(BOB_PASSWORD),
        &origin.url("/hello"),
    );
    let context = || format!("{}\n{}", describe(&run), peer.report());
    assert_eq!(run.status.code(), Some(0), "{}", context());
    assert!(
        run.stdout.contains("NTLMv2 as CORP\\bob: accepted"),
        "{}",
        context()
    );
    assert!(
        run.stdout.contains(&peer.addr().to_string()),
        "the verdict should name the upstream: {}",
        context()
    );
    let stats = peer.stats();
    assert_eq!(
        (stats.handshakes_ok, stats.handshakes_failed),
        (1, 0),
        "one handshake, accepted\n{}",
        context()
    );
    assert!(!run.stdout.contains(BOB_PASSWORD) && !run.stderr.contains(BOB_PASSWORD));
}

#[test]
fn probe_with_ntlm_accepts_the_right_password_with_one_handshake() {
    probe_accepts_the_right_ntlm_password("ntlm");
}

#[test]
fn probe_with_auto_accepts_the_right_ntlm_password_with_one_handshake() {
    probe_accepts_the_right_ntlm_password("auto");
}

#[test]
fn probe_reports_a_wrong_password_after_exactly_one_attempt() {
    let origin = Origin::start();
    let peer = bob_peer();
    let wrong = "not-bobs-password";
    let run = probe(
        bridge(&peer.url(), "ntlm")
            .user("CORP\\bob")
            .password_stdin(wrong),
        &origin.url("/hello"),
    );
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    assert!(
        run.stdout.contains("credentials rejected"),
        "{}\n{}",
        describe(&run),
        peer.report()
    );
    let stats = peer.stats();
    assert_eq!(
        (
            stats.handshakes_failed,
            stats.handshakes_ok,
            stats.type1_seen
        ),
        (1, 0, 1),
        "the probe must try the credentials exactly once\n{}\n{}",
        describe(&run),
        peer.report()
    );
    assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
}

#[test]
fn probe_reports_an_unreachable_upstream() {
    let run = probe(
        bridge(&format!("http://127.0.0.1:{}", closed_port()), "ntlm")
            .user("CORP\\bob")
            .password_stdin(BOB_PASSWORD),
        "http://127.0.0.1:9/",
    );
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    assert!(
        run.stdout.contains("upstream unreachable"),
        "{}",
        describe(&run)
    );
}

/// A probe against an upstream that offers only Negotiate says so.
fn probe_names_negotiate_as_the_only_offer(proxy_type: &str) {
    let origin = Origin::start();
    let offer = Offer::start(&["Negotiate"]);
    let run = probe(
        bridge(&offer.url(), proxy_type)
            .user("CORP\\bob")
            .password_stdin(BOB_PASSWORD),
        &origin.url("/hello"),
    );
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    assert!(
        run.stdout.contains("offers only Negotiate"),
        "{}",
        describe(&run)
    );
}

#[test]
fn probe_with_ntlm_reports_an_upstream_offering_only_negotiate() {
    probe_names_negotiate_as_the_only_offer("ntlm");
}

#[test]
fn probe_with_auto_reports_an_upstream_offering_only_negotiate() {
    probe_names_negotiate_as_the_only_offer("auto");
}
