//! Large and slow bodies stream through the bridge: a 1 GiB download and a
//! 1 GiB upload arrive whole while the bridge's peak memory stays small,
//! so it never held a body in memory; and a body that takes longer to send
//! than `--read-timeout` is not cut off, because that timeout waits for the
//! answer, not for the client's upload.
//!
//! Neither side of the test holds the body either: the origin generates
//! `/bytes/N` as it sends and `/echo` hashes as it receives, curl's stdin
//! is fed from a generator and its stdout compared with the pattern as it
//! arrives.

use std::time::Duration;

use gangway_testkit::stream::{curl_download_pattern, curl_upload_pattern, pattern_sha256};
use gangway_testkit::{Curl, EchoReply, Gangway, Origin, PatternFile};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

const MIB: u64 = 1024 * 1024;
const DOWNLOAD: u64 = 1024 * MIB;
/// The origin's `/echo` hashes with SHA-256, built optimized even in the
/// debug profile (see the root Cargo.toml), so a full GiB is quick.
const UPLOAD: u64 = 1024 * MIB;
/// Far above what relaying needs (buffers of tens of KiB per direction),
/// far below the body sizes.
const PEAK_RSS_LIMIT: u64 = 64 * MIB;
/// curl's limit per transfer; it only stops a stalled transfer from hanging
/// the suite.
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

fn assert_small_peak_rss(gw: &Gangway, what: &str) {
    let peak = gw.peak_rss_bytes();
    assert!(
        peak < PEAK_RSS_LIMIT,
        "gangway's peak RSS reached {} MiB during the {what} (limit {} MiB): it buffered the body\n{}",
        peak / MIB,
        PEAK_RSS_LIMIT / MIB,
        gw.output_report()
    );
}

#[test]
fn one_gib_download_streams_through_intact() {
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let (got, check) = curl_download_pattern(
        gw.addr(),
        &origin.url(&format!("/bytes/{DOWNLOAD}")),
        TRANSFER_LIMIT,
    );
    assert!(
        got.status.success() && got.http_code == 200,
        "curl: {} (HTTP {}): {}\n{}",
        got.status,
        got.http_code,
        got.stderr,
        gw.output_report()
    );
    assert!(
        check.is_pattern_of_len(DOWNLOAD),
        "download of {DOWNLOAD} bytes arrived as {check:?}"
    );
    assert_small_peak_rss(&gw, "1 GiB download");
}

#[test]
fn one_gib_upload_streams_through_intact() {
    let origin = Origin::start();
    // The upload takes tens of seconds in a debug build on a busy machine;
    // whether a long upload trips the read timeout is the business of
    // `upload_slower_than_the_read_timeout_still_succeeds`, not this test.
    let gw = Gangway::builder(GANGWAY)
        .arg("--read-timeout")
        .arg("600")
        .start();
    // Length unknown to curl: the body goes chunked, generated as it is sent.
    let got = curl_upload_pattern(gw.addr(), &origin.url("/echo"), UPLOAD, TRANSFER_LIMIT);
    assert!(
        got.status.success() && got.http_code == 200,
        "curl: {} (HTTP {}): {}\n{}\n{}",
        got.status,
        got.http_code,
        got.stderr,
        got.body,
        gw.output_report()
    );
    let echo = EchoReply::parse(got.body.as_bytes());
    assert_eq!(echo.len, UPLOAD, "uploaded length at the origin");
    assert_eq!(echo.sha256, pattern_sha256(UPLOAD), "uploaded SHA-256");
    assert_small_peak_rss(&gw, "1 GiB upload");
}

#[test]
fn upload_slower_than_the_read_timeout_still_succeeds() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .arg("--read-timeout")
        .arg("2")
        .start();
    // 3 MiB at 512 KiB/s: the client needs about 6 s, three times the read
    // timeout, to send the body; the origin answers right after it.
    let upload = PatternFile::new(3 * MIB as usize);
    let out = Curl::via(gw.addr())
        .arg("--limit-rate")
        .arg("512K")
        .post_file(upload.path())
        .url(origin.url("/echo"))
        .max_time(Duration::from_secs(60))
        .run();
    assert_eq!(out.code(), 200, "{}\n{}", out.report(), gw.output_report());
    assert_eq!(out.echo().sha256, upload.sha256());
}

#[test]
fn download_slower_than_the_read_timeout_still_succeeds() {
    let origin = Origin::start();
    let gw = Gangway::builder(GANGWAY)
        .arg("--read-timeout")
        .arg("2")
        .start();
    // The client reads 3 MiB at 512 KiB/s: about 6 s of a body whose head
    // came at once.
    let out = Curl::via(gw.addr())
        .arg("--limit-rate")
        .arg("512K")
        .url(origin.url(&format!("/bytes/{}", 3 * MIB)))
        .max_time(Duration::from_secs(60))
        .run();
    assert_eq!(out.code(), 200, "{}\n{}", out.report(), gw.output_report());
    assert_eq!(out.body().len() as u64, 3 * MIB);
    assert_eq!(out.body(), gangway_testkit::pattern(3 * MIB as usize));
}
