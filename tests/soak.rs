//! The soak: many clients through the bridge and the pyspnego NTLM
//! upstream for minutes on end, mixing keep-alive GETs, POSTs with bodies
//! and CONNECT tunnels, while the bridge's memory and descriptors are
//! watched. Ignored by `cargo test` (it takes ten minutes and both cores);
//! `scripts/soak` runs it and documents the knobs.
//!
//! Targets, each checked at the end (the test fails with the report if one
//! is missed):
//! - no failed request: every answer is complete and correct;
//! - resident memory at the end within 20% of its value after minute 1
//!   (after half the run when it is shorter than two minutes);
//! - descriptors after the load back to the baseline, give or take the
//!   idle upstream connections the pool keeps on purpose.
//!
//! Settings come from the environment (all optional):
//! `GANGWAY_SOAK_MINUTES` (10), `GANGWAY_SOAK_CLIENTS` (200),
//! `GANGWAY_SOAK_THINK_MS` (the most a client pauses between requests,
//! 400), `GANGWAY_SOAK_BIN` (the bridge binary; default: this build's),
//! `GANGWAY_SOAK_REPORT` (a file to write the report to as well).

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gangway_testkit::origin::HELLO;
use gangway_testkit::procfs::{cpu_time, fd_count, rss_bytes};
use gangway_testkit::{
    pattern, sha256_hex, status_json, EchoReply, Gangway, NtlmPeer, NtlmUser, Origin, RawConn,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");
const DOMAIN: &str = "CORP";
const USER: &str = "bob";
const PASSWORD: &str = "soak-Passw0rd";
/// How long one answer may take under load before it counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often memory and descriptors are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long descriptors get to come back down after the load.
const SETTLE: Duration = Duration::from_secs(30);
/// A client starts a new connection to the bridge after this many requests.
const REQUESTS_PER_CONNECTION: u32 = 40;
/// Failures kept word for word in the report.
const FAILURES_KEPT: usize = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Counters the clients share.
#[derive(Default)]
struct Tally {
    gets: AtomicU64,
    posts: AtomicU64,
    tunnels: AtomicU64,
    tunnel_requests: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut kept) = self.failures.lock() {
            if kept.len() < FAILURES_KEPT {
                kept.push(what);
            }
        }
    }

    fn requests(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
            + self.posts.load(Ordering::Relaxed)
            + self.tunnel_requests.load(Ordering::Relaxed)
    }
}

/// splitmix64: each client's own deterministic choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn connect(bridge: SocketAddr) -> Result<RawConn, String> {
    let mut c = RawConn::connect(bridge).map_err(|e| format!("connect to the bridge: {e}"))?;
    c.set_timeout(ANSWER_TIMEOUT);
    Ok(c)
}

/// Sends `request` and reads the whole answer; the status and body.
fn exchange(c: &mut RawConn, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    c.send(request).map_err(|e| format!("send: {e}"))?;
    let head = c.read_head().map_err(|e| format!("response head: {e}"))?;
    let body = c
        .read_body(&head)
        .map_err(|e| format!("{} body: {e}", head.status))?;
    Ok((head.status, body))
}

/// One client's loop until `deadline`.
fn client(
    index: u64,
    bridge: SocketAddr,
    origin: SocketAddr,
    deadline: Instant,
    think_ms: u64,
    tally: &Tally,
) {
    let mut rng = Rng(0x50a6_0000 + index);
    let mut conn: Option<RawConn> = None;
    let mut used = 0u32;
    let mut seq = 0u64;
    // Spread the start so 200 clients do not all handshake at once.
    std::thread::sleep(Duration::from_millis(rng.below(think_ms.max(1))));
    while Instant::now() < deadline {
        seq += 1;
        let roll = rng.below(100);
        let outcome = if roll < 15 {
            tunnel(bridge, origin, &mut rng, tally)
        } else {
            if conn.is_none() || used >= REQUESTS_PER_CONNECTION {
                used = 0;
                conn = match connect(bridge) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tally.fail(format!("client {index}: {e}"));
                        None
                    }
                };
            }
            let Some(c) = conn.as_mut() else {
                std::thread::sleep(Duration::from_millis(think_ms));
                continue;
            };
            used += 1;
            let result = if roll < 60 {
                tally.gets.fetch_add(1, Ordering::Relaxed);
                get(c, origin, &mut rng)
            } else {
                tally.posts.fetch_add(1, Ordering::Relaxed);
                post(c, origin, &mut rng, &format!("c{index}s{seq}"))
            };
            if result.is_err() {
                conn = None;
            }
            result
        };
        if let Err(e) = outcome {
            tally.fail(format!("client {index} request {seq}: {e}"));
        }
        std::thread::sleep(Duration::from_millis(rng.below(think_ms + 1)));
    }
}

fn get(c: &mut RawConn, origin: SocketAddr, rng: &mut Rng) -> Result<(), String> {
    if rng.below(2) == 0 {
        let (status, body) = exchange(
            c,
            format!("GET http://{origin}/hello HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes(),
        )?;
        return match (status, body == HELLO.as_bytes()) {
            (200, true) => Ok(()),
            _ => Err(format!(
                "GET /hello: {status} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
        };
    }
    let len = 1 + rng.below(64 * 1024) as usize;
    let (status, body) = exchange(
        c,
        format!("GET http://{origin}/bytes/{len} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes(),
    )?;
    if status != 200 || body != pattern(len) {
        return Err(format!(
            "GET /bytes/{len}: {status}, {} bytes, {}",
            body.len(),
            if body == pattern(len) {
                "right content"
            } else {
                "wrong content"
            }
        ));
    }
    Ok(())
}

fn post(c: &mut RawConn, origin: SocketAddr, rng: &mut Rng, id: &str) -> Result<(), String> {
    let len = 1 + rng.below(32 * 1024) as usize;
    let body: Vec<u8> = id.bytes().cycle().take(len).collect();
    let mut request = format!(
        "POST http://{origin}/echo/{id} HTTP/1.1\r\nHost: {origin}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (status, answer) = exchange(c, &request)?;
    if status != 200 {
        return Err(format!(
            "POST {id}: {status} {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        ));
    }
    let echo = EchoReply::parse(&answer);
    if echo.len != len as u64
        || echo.sha256 != sha256_hex(&body)
        || echo.uri != format!("/echo/{id}")
    {
        return Err(format!("POST {id}: the origin got {echo:?}"));
    }
    Ok(())
}

/// A CONNECT tunnel to the plain HTTP origin carrying one to three GETs.
fn tunnel(
    bridge: SocketAddr,
    origin: SocketAddr,
    rng: &mut Rng,
    tally: &Tally,
) -> Result<(), String> {
    tally.tunnels.fetch_add(1, Ordering::Relaxed);
    let mut c = connect(bridge)?;
    c.send(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send CONNECT: {e}"))?;
    let head = c.read_head().map_err(|e| format!("CONNECT answer: {e}"))?;
    if head.status != 200 {
        let body = c.read_body(&head).unwrap_or_default();
        return Err(format!(
            "CONNECT: {} {:?}",
            head.status,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    for _ in 0..1 + rng.below(3) {
        tally.tunnel_requests.fetch_add(1, Ordering::Relaxed);
        let (status, body) = exchange(
            &mut c,
            format!("GET /hello HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes(),
        )?;
        if status != 200 || body != HELLO.as_bytes() {
            return Err(format!("GET /hello in a tunnel: {status}"));
        }
    }
    Ok(())
}

/// Memory and descriptor samples of the bridge.
#[derive(Default)]
struct Samples {
    fds: Vec<usize>,
    rss: Vec<(Duration, u64)>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
#[ignore = "a long soak: run it with scripts/soak"]
fn soak_mixed_load_through_the_ntlm_upstream() {
    let minutes = env_u64("GANGWAY_SOAK_MINUTES", 10);
    let clients = env_u64("GANGWAY_SOAK_CLIENTS", 200);
    let think_ms = env_u64("GANGWAY_SOAK_THINK_MS", 400);
    let bin = std::env::var("GANGWAY_SOAK_BIN").unwrap_or_else(|_| GANGWAY.to_owned());
    let run_for = Duration::from_secs(minutes * 60);
    // "Minute 1", or half the run when it is shorter than two minutes.
    let early_mark = Duration::from_secs(60).min(run_for / 2);

    let peer = NtlmPeer::start(&[NtlmUser::new(DOMAIN, USER, PASSWORD)]);
    let origin = Origin::start();
    let gw = Gangway::builder(&bin)
        .upstream(&peer.url())
        .proxy_type("ntlm")
        .arg("--realm")
        .arg(DOMAIN)
        .user(USER)
        .password_env(PASSWORD)
        .no_bypass()
        .start();
    let bridge = gw.addr();
    let pid = gw.pid();
    // The status request's own connection is gone before we count.
    status_json(bridge);
    std::thread::sleep(Duration::from_millis(300));
    let fd_baseline = fd_count(pid);
    let rss_start = rss_bytes(pid);
    let cpu_start = cpu_time(pid);

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + run_for;
    let workers: Vec<_> = (0..clients)
        .map(|i| {
            let tally = tally.clone();
            let origin = origin.addr();
            std::thread::Builder::new()
                .name(format!("soak-client-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || client(i, bridge, origin, deadline, think_ms, &tally))
                .expect("spawn a client thread")
        })
        .collect();

    let mut samples = Samples::default();
    let mut rss_early = None;
    while Instant::now() < deadline {
        std::thread::sleep(SAMPLE_EVERY.min(deadline.saturating_duration_since(Instant::now())));
        let at = started.elapsed();
        let (fds, rss) = (fd_count(pid), rss_bytes(pid));
        samples.fds.push(fds);
        samples.rss.push((at, rss));
        if rss_early.is_none() && at >= early_mark {
            rss_early = Some(rss);
        }
        if at.as_secs() % 60 < SAMPLE_EVERY.as_secs() {
            eprintln!(
                "soak {:>4}s: {} requests, {} failed, rss {:.1} MiB, {} fds",
                at.as_secs(),
                tally.requests(),
                tally.failed.load(Ordering::Relaxed),
                mib(rss),
                fds
            );
        }
    }
    for w in workers {
        w.join().expect("client thread");
    }
    let load_ended = started.elapsed();
    let rss_end = rss_bytes(pid);
    let cpu_used = cpu_time(pid).saturating_sub(cpu_start);

    // Descriptors back down: the idle upstream connections the pool keeps
    // are there on purpose and count as baseline.
    let settle_start = Instant::now();
    let (fd_after, pooled) = loop {
        let status = status_json(bridge);
        let pooled = status["pooled_connections"].as_u64().unwrap_or(0) as usize;
        std::thread::sleep(Duration::from_millis(200));
        let fds = fd_count(pid);
        if fds <= fd_baseline + pooled || settle_start.elapsed() > SETTLE {
            break (fds, pooled);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let status = status_json(bridge);
    let stats = peer.stats();

    let rss_early = rss_early.unwrap_or(rss_end);
    let growth = (rss_end as f64 - rss_early as f64) / rss_early as f64;
    let fd_peak = samples.fds.iter().copied().max().unwrap_or(0);
    let mut sorted = samples.fds.clone();
    sorted.sort_unstable();
    let fd_median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let total = tally.requests();
    let failed = tally.failed.load(Ordering::Relaxed);
    let rss_peak = samples.rss.iter().map(|(_, r)| *r).max().unwrap_or(0);

    let fails_ok = failed == 0;
    let rss_ok = growth.abs() <= 0.20;
    let fds_ok = fd_after <= fd_baseline + pooled;
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let mut report = String::new();
    let mut line = |s: String| {
        report.push_str(&s);
        report.push('\n');
    };
    line(format!(
        "soak: {clients} clients for {:.1} min (think time up to {think_ms} ms), bridge {bin}",
        load_ended.as_secs_f64() / 60.0
    ));
    line(format!(
        "requests: {total} total ({:.0}/s): {} GET, {} POST, {} in {} CONNECT tunnels",
        total as f64 / load_ended.as_secs_f64(),
        tally.gets.load(Ordering::Relaxed),
        tally.posts.load(Ordering::Relaxed),
        tally.tunnel_requests.load(Ordering::Relaxed),
        tally.tunnels.load(Ordering::Relaxed),
    ));
    line(format!("failed requests: {failed} [{}]", verdict(fails_ok)));
    line(format!(
        "rss: start {:.1} MiB, at {}s {:.1} MiB, end {:.1} MiB ({:+.1}%), peak sample {:.1} MiB [{}]",
        mib(rss_start),
        early_mark.as_secs(),
        mib(rss_early),
        mib(rss_end),
        growth * 100.0,
        mib(rss_peak),
        verdict(rss_ok)
    ));
    line(format!(
        "fds: baseline {fd_baseline}, under load median {fd_median} / peak {fd_peak}, after {fd_after} (pool keeps {pooled} idle upstream connections) [{}]",
        verdict(fds_ok)
    ));
    line(format!(
        "bridge: {:.0} s of CPU ({:.0}% of one core), handshakes {}, errors {}, tunnels {}",
        cpu_used.as_secs_f64(),
        100.0 * cpu_used.as_secs_f64() / load_ended.as_secs_f64(),
        status["stats"]["handshakes"],
        status["stats"]["errors"],
        status["stats"]["tunnels"]
    ));
    // Without faults every forwarded request and every CONNECT reaches the
    // upstream exactly once (requests inside tunnels it cannot see).
    let sent_upstream = tally.gets.load(Ordering::Relaxed)
        + tally.posts.load(Ordering::Relaxed)
        + tally.tunnels.load(Ordering::Relaxed);
    line(format!(
        "ntlm peer: {} connections, {} handshakes ok, {} failed, {} requests served (clients sent {sent_upstream} through it)",
        stats.connections, stats.handshakes_ok, stats.handshakes_failed, stats.requests
    ));
    if let Ok(kept) = tally.failures.lock() {
        for f in kept.iter() {
            line(format!("  failure: {f}"));
        }
    }
    println!("{report}");
    if let Ok(path) = std::env::var("GANGWAY_SOAK_REPORT") {
        match std::fs::File::create(&path).and_then(|mut f| f.write_all(report.as_bytes())) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => eprintln!("no directory for {path}"),
            Err(e) => eprintln!("could not write {path}: {e}"),
        }
    }
    assert!(
        fails_ok && rss_ok && fds_ok,
        "soak targets missed:\n{report}\n{}",
        gw.output_report()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
