//! The bodies of the fuzz targets in `fuzz/`, shared with the corpus replay
//! test (`tests/fuzz_corpus.rs`) so that CI replays every seed and every
//! past crash on stable Rust. Not an API: hidden from the docs, and free to
//! change with the targets.
//!
//! Each target takes the raw fuzz input and returns normally for anything
//! the code under test handles, however it answers. It panics only when an
//! invariant breaks: a panic inside the engine, hyper or the auth state
//! machines, a response that is not well-formed HTTP/1.1, a header value the
//! engine could not send, or a parse that does not round-trip.
//!
//! Text inputs put one item per line: header values for the challenge
//! targets, the bypass list and then hosts for the bypass target.
#![doc(hidden)]

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gangway_auth::challenge::{parse_challenges, strongest, Challenge, Scheme};
use gangway_auth::digest::{self, DigestSession};
use gangway_auth::ntlm::NtlmHandshake;
use gangway_auth::{Credentials, Password};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::bypass::BypassList;
use crate::connection::http1_builder;
use crate::head_check::{HeadCheck, Verdict};
use crate::headers::{strip_hop_by_hop, without_userinfo, ViaToken};
use crate::settings::{Settings, SettingsFile};

/// A fuzz target: the raw input in, a panic out only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name; the names are those of `fuzz/fuzz_targets/*.rs`
/// and of the corpus directories.
pub const TARGETS: &[(&str, Target)] = &[
    ("request_head", request_head),
    ("proxy_authenticate", proxy_authenticate),
    ("digest_challenge", digest_challenge),
    ("ntlm_type2", ntlm_type2),
    ("bypass_list", bypass_list),
    ("settings_file", settings_file),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

// ---------------------------------------------------------------------------
// Request heads

/// Scheduler rounds in which nothing may be polled before the client is
/// taken to have sent everything it will: a round runs every task that is
/// ready, so one quiet round already means none is; two is margin.
const QUIET_ROUNDS: u32 = 2;
/// Rounds after which a connection that is still busy with a finished input
/// counts as spinning.
const MAX_BUSY_ROUNDS: u32 = 100_000;
/// Wall-clock bound on one exchange, so the replay test fails instead of
/// hanging. Far above what any input needs (milliseconds).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

thread_local! {
    /// One runtime per thread, reused across inputs: building one per input
    /// would cost more than the exchange.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds");
}

/// Client bytes into a connection served exactly as the bridge serves one
/// (the same `http1::Builder`), with a trivial service in place of the
/// router. The output must be a sequence of well-formed HTTP/1.1 responses
/// (or nothing: a close).
pub fn request_head(data: &[u8]) {
    let output = serve_bytes(data);
    if let Err(why) = parse_responses(&output) {
        panic!(
            "malformed output ({why}):\n{}",
            String::from_utf8_lossy(&output)
        );
    }
}

/// What a client sending `data` reads back before the bridge closes: the
/// client writes everything, waits until the connection has nothing left to
/// do, then closes its side (a client that stays would meet the head read
/// timeout, later and with the same bytes on the wire).
pub fn serve_bytes(data: &[u8]) -> Vec<u8> {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(data))
                .await
                .expect("the exchange finishes")
        })
    })
}

/// The header the trivial service names the request method in: a response
/// to HEAD has no body whatever its headers say, and one to CONNECT ends
/// the HTTP part of the connection.
const METHOD_HEADER: &str = "x-request-method";

/// The status codes of the complete HTTP/1.x responses in `output`, or why
/// it is not a sequence of them. Parsing stops after a 2xx to CONNECT:
/// what follows is the tunnel's.
pub fn parse_responses(output: &[u8]) -> Result<Vec<u16>, String> {
    let mut statuses = Vec::new();
    let mut rest = output;
    while !rest.is_empty() {
        let head_len = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("a response head without its blank line")?
            + 4;
        let head = std::str::from_utf8(&rest[..head_len - 4])
            .map_err(|_| "a response head that is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        // hyper answers an HTTP/1.0 request in HTTP/1.0 (RFC 9110 §6.2).
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..600).contains(code))
            .ok_or_else(|| format!("bad status line `{status_line}`"))?;
        if status_line.as_bytes().get(12) != Some(&b' ') {
            return Err(format!("bad status line `{status_line}`"));
        }
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut method = None;
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line `{line}`"))?;
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!("bad header name `{name}`"));
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(format!("control character in header `{name}`"));
            }
            if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length `{value}`"))?;
                if content_length.replace(n).is_some() {
                    return Err("two Content-Length headers".into());
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if name.eq_ignore_ascii_case(METHOD_HEADER) {
                method = Some(value.trim());
            }
        }
        statuses.push(status);
        rest = &rest[head_len..];
        if method == Some("CONNECT") && (200..300).contains(&status) {
            break;
        }
        if (100..200).contains(&status) || status == 204 || status == 304 || method == Some("HEAD")
        {
            continue;
        }
        if chunked {
            return Err("a chunked response from a service that sends none".into());
        }
        match content_length {
            Some(n) => {
                if rest.len() < n {
                    return Err("a body shorter than its Content-Length".into());
                }
                rest = &rest[n..];
            }
            None => return Err(format!("a {status} without Content-Length")),
        }
    }
    Ok(statuses)
}

async fn exchange(data: &[u8]) -> Vec<u8> {
    // Counts every poll of every task of the exchange, to tell when none
    // is left runnable.
    let progress = Arc::new(AtomicU64::new(0));
    let (client, server) = tokio::io::duplex(data.len().max(64 * 1024));
    let (mut from_bridge, mut to_bridge) = tokio::io::split(client);

    let settings = Settings::direct();
    let builder = http1_builder(&settings);
    let tunnels: Tunnels = Arc::default();
    let via = Arc::new(ViaToken::new());
    // The bridge's own head check in front of hyper, as in `connection`.
    let verdict = Arc::new(Verdict::default());
    let server = HeadCheck::new(server, settings.limits.max_header_bytes, verdict.clone());
    let service = {
        let tunnels = tunnels.clone();
        let progress = progress.clone();
        service_fn(move |req| {
            let refused = verdict.take().is_some();
            let response = respond(req, refused, tunnels.clone(), progress.clone(), via.clone());
            async move { Ok::<_, Infallible>(response.await) }
        })
    };
    let conn = builder
        .serve_connection(TokioIo::new(server), service)
        .with_upgrades();
    let conn = tokio::spawn(counted(conn, progress.clone()));
    let reader = tokio::spawn(counted(
        async move {
            let mut output = Vec::new();
            // The bridge side going away ends the read either way.
            let _ = from_bridge.read_to_end(&mut output).await;
            output
        },
        progress.clone(),
    ));

    // The duplex has room for all of it: this never waits for the bridge.
    to_bridge
        .write_all(data)
        .await
        .expect("the duplex holds the whole input");
    let mut last = progress.load(Ordering::SeqCst);
    let (mut quiet, mut busy) = (0, 0);
    while quiet < QUIET_ROUNDS {
        tokio::task::yield_now().await;
        let now = progress.load(Ordering::SeqCst);
        if now == last {
            quiet += 1;
        } else {
            (last, quiet) = (now, 0);
        }
        busy += 1;
        assert!(
            busy < MAX_BUSY_ROUNDS,
            "the connection stays busy after the whole input was read"
        );
    }
    // Fails only if the bridge already closed, which is an answer too.
    let _ = to_bridge.shutdown().await;

    // Connection errors (400, 431, an early close) are answers; a panic in
    // any task is the finding.
    let _ = join(conn).await;
    let pending = std::mem::take(&mut *tunnels.lock().unwrap_or_else(|e| e.into_inner()));
    for tunnel in pending {
        join(tunnel).await;
    }
    join(reader).await
}

/// Tunnels opened by CONNECT, awaited before the exchange ends.
type Tunnels = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The trivial service: the router's own head handling (userinfo removal,
/// the loop check, hop-by-hop stripping), then 200 with an empty body after
/// reading the request body, or, for CONNECT, 200 and a tunnel that reads
/// the client until it closes.
async fn respond(
    mut req: Request<Incoming>,
    refused: bool,
    tunnels: Tunnels,
    progress: Arc<AtomicU64>,
    via: Arc<ViaToken>,
) -> Response<Empty<Bytes>> {
    if refused {
        // What the bridge answers a head the check refused (the stand-in
        // request hyper parsed carries nothing of the client's).
        let mut res = Response::new(Empty::new());
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    *req.uri_mut() = without_userinfo(req.uri());
    assert!(
        !req.uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@')),
        "userinfo left in {}",
        req.uri()
    );
    assert!(!via.seen_in(req.headers()), "a loop from a fresh pseudonym");
    let mut forwarded = req.headers().clone();
    strip_hop_by_hop(&mut forwarded);
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::TE] {
        assert!(!forwarded.contains_key(&name), "{name} survived stripping");
    }
    via.append(&mut forwarded, req.version());
    assert!(via.seen_in(&forwarded), "our own Via is not recognised");

    let mut res = Response::new(Empty::new());
    res.headers_mut().insert(
        METHOD_HEADER,
        HeaderValue::from_str(req.method().as_str()).expect("a method is a token"),
    );
    if req.method() == Method::CONNECT {
        let upgrade = hyper::upgrade::on(&mut req);
        let tunnel = tokio::spawn(counted(
            async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut sink = Vec::new();
                    let _ = TokioIo::new(upgraded).read_to_end(&mut sink).await;
                }
            },
            progress,
        ));
        tunnels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tunnel);
        return res;
    }
    match req.into_body().collect().await {
        Ok(body) => {
            let len = body.to_bytes().len();
            res.headers_mut()
                .insert("x-body-bytes", HeaderValue::from(len));
        }
        Err(_) => *res.status_mut() = StatusCode::BAD_REQUEST,
    }
    res
}

/// `fut`, counting its polls in `progress`.
fn counted<F: Future>(fut: F, progress: Arc<AtomicU64>) -> impl Future<Output = F::Output> {
    let mut fut = Box::pin(fut);
    poll_fn(move |cx| {
        progress.fetch_add(1, Ordering::SeqCst);
        fut.as_mut().poll(cx)
    })
}

/// The task's output; its panic, if it had one, resumes here so that the
/// fuzzer sees it.
async fn join<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("task cancelled: {e}"),
        },
    }
}

// ---------------------------------------------------------------------------
// Proxy-Authenticate

/// `Proxy-Authenticate` values, one per line, through `parse_challenges`,
/// then `strongest` with the filters the engine uses. Checks that every
/// challenge keeps to the grammar the parser documents.
pub fn proxy_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let offers = parse_challenges(text.split('\n'));
    for offer in &offers {
        check_challenge(offer);
        let _ = digest::is_stale(offer);
    }
    let filters: [&dyn Fn(&Scheme) -> bool; 5] = [
        &|_| true,
        &|s| matches!(s, Scheme::Basic | Scheme::Digest | Scheme::Ntlm),
        &|s| *s == Scheme::Digest,
        &|s| *s == Scheme::Ntlm,
        &|s| *s == Scheme::Basic,
    ];
    for usable in filters {
        if let Some(chosen) = strongest(&offers, usable) {
            assert!(
                usable(&chosen.scheme),
                "picked an unusable {}",
                chosen.scheme
            );
            assert!(
                !matches!(chosen.scheme, Scheme::Other(_)),
                "picked {}",
                chosen.scheme
            );
            assert!(offers.iter().any(|o| std::ptr::eq(o, chosen)));
        }
    }
}

fn check_challenge(offer: &Challenge) {
    if let Scheme::Other(name) = &offer.scheme {
        assert!(
            !name.is_empty() && name.bytes().all(is_tchar),
            "scheme `{name}`"
        );
    }
    if let Some(token) = &offer.token {
        let data = token.trim_end_matches('=');
        assert!(
            !data.is_empty() && data.bytes().all(is_token68_char),
            "token68 `{token}`"
        );
        assert!(offer.params.is_empty(), "a token and params");
    }
    for (name, value) in &offer.params {
        assert!(
            !name.is_empty()
                && name.bytes().all(is_tchar)
                && !name.bytes().any(|b| b.is_ascii_uppercase()),
            "param name `{name}`"
        );
        assert!(
            !value.chars().any(|c| c.is_ascii_control() && c != '\t'),
            "control character in `{name}`"
        );
    }
}

// ---------------------------------------------------------------------------
// Digest

/// `Proxy-Authenticate` values, one per line; every Digest challenge that
/// `DigestSession::new` accepts is answered twice for each of two users.
/// The answer must be a header value the engine can send, and must parse
/// back to the realm, nonce and URI it was made from.
pub fn digest_challenge(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let offers = parse_challenges(text.split('\n'));
    let users = [
        credentials("bob", "pässwörd"),
        credentials("CORP\\jürgen \"j\"", "pw"),
    ];
    let requests = [
        ("CONNECT", "example.com:443"),
        ("GET", "http://example.com/a?b=\"c\""),
    ];
    for offer in offers.iter().filter(|o| o.scheme == Scheme::Digest) {
        let Ok(mut session) = DigestSession::new(offer) else {
            continue;
        };
        for creds in &users {
            for (method, uri) in requests {
                let value = session
                    .authorization(creds, method, uri)
                    .expect("a fresh session answers");
                check_digest_answer(&session, &value, uri);
            }
        }
        assert_eq!(session.nonce_count(), 4);
    }
}

fn check_digest_answer(session: &DigestSession, value: &str, uri: &str) {
    assert!(
        HeaderValue::from_str(value).is_ok(),
        "not a header value: {value:?}"
    );
    let parsed = parse_challenges([value]);
    assert_eq!(parsed.len(), 1, "{value:?} parses as {parsed:?}");
    let answer = &parsed[0];
    assert_eq!(answer.scheme, Scheme::Digest);
    assert_eq!(answer.param("realm"), Some(session.realm()), "{value:?}");
    assert_eq!(answer.param("nonce"), Some(session.nonce()), "{value:?}");
    assert_eq!(answer.param("uri"), Some(uri), "{value:?}");
    let response = answer.param("response").unwrap_or_default();
    assert!(
        matches!(response.len(), 32 | 64) && response.bytes().all(|b| b.is_ascii_hexdigit()),
        "response `{response}`"
    );
}

// ---------------------------------------------------------------------------
// NTLM

/// The raw bytes as a Type 2 (CHALLENGE_MESSAGE), base64-encoded into an
/// `NTLM <token>` challenge, answered after a Type 1 by an ASCII and a
/// non-ASCII user. An answer must be a Type 3 in a sendable header.
pub fn ntlm_type2(data: &[u8]) {
    let challenge = Challenge {
        scheme: Scheme::Ntlm,
        token: Some(base64(data)),
        params: Vec::new(),
    };
    for creds in [
        credentials("CORP\\bob", "pässwörd"),
        credentials("jürgen@corp.example", "pw"),
    ] {
        let mut handshake = NtlmHandshake::new(&creds);
        let negotiate = handshake.negotiate();
        assert!(HeaderValue::from_str(&negotiate).is_ok());
        let Ok(answer) = handshake.authenticate(&creds, &challenge) else {
            continue;
        };
        assert!(
            HeaderValue::from_str(&answer).is_ok(),
            "not a header value: {:?}",
            answer.as_str()
        );
        // Base64 of "NTLMSSP\0" and the message type 3 (MS-NLMP §2.2.1.3).
        assert!(
            answer.starts_with("NTLM TlRMTVNTUAADAAAA"),
            "not a Type 3: {:?}",
            answer.as_str()
        );
    }
}

/// Standard base64 with padding, as servers send NTLM tokens. (The engine
/// has no base64 dependency of its own, and this is all it needs.)
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Bypass list

/// The first line is a bypass list as typed (`--bypass`, GNOME's
/// ignore-hosts), every further line a host to match. A list that parses
/// must parse again from its own entries to the same list, give a PAC
/// script whose string literals are closed, and match each host line that
/// is a plain name or address listed alone.
pub fn bypass_list(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Ok(list) = BypassList::parse(lines.next()) else {
        return;
    };
    let again = BypassList::parse(list.entries().iter().map(String::as_str))
        .expect("a parsed list's own entries parse");
    assert_eq!(again, list);
    let pac = list.pac_script("127.0.0.1:3128");
    assert!(pac.starts_with("function FindProxyForURL(url, host) {\n"));
    for line in pac.lines() {
        assert!(
            line.bytes().filter(|&b| b == b'"').count() % 2 == 0,
            "unbalanced quotes in PAC line `{line}`"
        );
    }
    for host in lines {
        let _ = list.matches_host(host);
        let plain = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            && !host.contains("..")
            && !host.starts_with('.');
        if let (true, Ok(alone)) = (plain, BypassList::parse([host])) {
            if alone.entries().len() == 1 {
                assert!(alone.matches_host(host), "`{host}` does not match itself");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Settings file

/// A settings file (TOML), parsed, validated with and without a password.
/// A parsed file must serialise back to TOML that parses to the same file,
/// and merging with an empty file must change nothing.
pub fn settings_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = SettingsFile::from_toml(text) else {
        return;
    };
    if let Ok(written) = toml::to_string(&file) {
        assert_eq!(
            SettingsFile::from_toml(&written),
            Ok(file.clone()),
            "written as:\n{written}"
        );
    }
    assert_eq!(file.clone().merge(SettingsFile::default()), file);
    assert_eq!(SettingsFile::default().merge(file.clone()), file);
    for password in [None, Some(Password::from("pw"))] {
        if let Ok(settings) = file.clone().validate(password) {
            let _ = settings.describe();
            let _ = settings.bypass.pac_script(&settings.listen.to_string());
            if let Some(up) = &settings.upstream {
                assert_eq!(up.credentials.is_some(), up.proxy_type.needs_credentials());
                assert!(up.same_as(up));
            }
            assert!(settings.gateway || settings.listen.ip().is_loopback());
            assert!(!settings.gateway || !settings.allow.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn credentials(login: &str, password: &str) -> Credentials {
    Credentials::new(login, None, Password::from(password), "FUZZ-WS")
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// token68's characters before its padding (RFC 9110 §11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn responses_are_checked() {
        let ok = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi\
                   HTTP/1.1 200 OK\r\nx-request-method: HEAD\r\ncontent-length: 9\r\n\r\n\
                   HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n\
                   HTTP/1.0 200 OK\r\nx-request-method: CONNECT\r\n\r\ntunnel bytes";
        assert_eq!(parse_responses(ok), Ok(vec![100, 200, 200, 400, 200]));
        assert_eq!(parse_responses(b""), Ok(vec![]));
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi"[..],
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert!(parse_responses(bad).is_err(), "{:?}", bad);
        }
    }
}
