//! Faults a long-running bridge meets: the upstream dies and comes back,
//! the upstream drops keep-alive connections at random, clients vanish in
//! the middle of a transfer, the process runs out of file descriptors.
//! Each test asserts what a user would notice (a clean 502 or 503, never a
//! hang or a wrong answer; everything works again afterwards) and what an
//! administrator would (no credential lockout, no leaked descriptors).
//! Each runs in a few seconds; the long mixed-load run is `scripts/soak`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gangway_testkit::origin::HELLO;
use gangway_testkit::procfs::{close_with_reset, fd_count};
use gangway_testkit::system::Program;
use gangway_testkit::{
    sha256_hex, status_json, wait_for, Chaos, ChaosConfig, Curl, CurlOutput, EchoReply, Gangway,
    NtlmPeer, NtlmUser, Origin, RawConn, ResponseHead, Squid,
};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");
const USER: &str = "alice";
const PASSWORD: &str = "fault-tolerant-pw";

/// Longer than any answer in these tests may take: a request still
/// unanswered after this is hung.
const HANG: Duration = Duration::from_secs(15);

/// A bridge in front of `upstream`, authenticating with Basic.
fn basic_bridge(upstream: &str) -> Gangway {
    Gangway::builder(GANGWAY)
        .upstream(upstream)
        .proxy_type("basic")
        .user(USER)
        .password_env(PASSWORD)
        .no_bypass()
        .env("GANGWAY_LOG", "gangway_engine=debug,info")
        .start()
}

/// Kills Squid outright (SIGKILL), as a crash or an OOM kill would: no
/// goodbye on any connection. Squid runs with -N, so its pid file names
/// the process itself.
fn kill_squid(squid: &mut Squid) {
    let pid_file = squid.dir().join("squid.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", pid_file.display()));
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.trim())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {} failed", pid.trim());
    let gone = wait_for(Duration::from_secs(5), || {
        (!squid.is_running()).then_some(())
    });
    assert!(gone.is_some(), "Squid survived SIGKILL");
}

/// Whether `out` is what a client may see when the upstream dies under its
/// request: the bridge's 502 page, or a connection closed with no answer.
fn is_clean_failure(out: &CurlOutput) -> bool {
    let page = out.code() == 502 && out.text().starts_with("Gangway:");
    let closed = out.code() == 0 && !out.succeeded();
    page || closed
}

#[test]
fn a_killed_upstream_fails_requests_cleanly_and_serves_again_once_back() {
    let origin = Origin::start();
    let mut squid = Squid::basic(USER, PASSWORD);
    let gw = basic_bridge(&squid.url());
    let addr = gw.addr();

    // Fill the pool with a few authenticated connections.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let url = origin.url("/hello");
            std::thread::spawn(move || Curl::via(addr).url(url).run())
        })
        .collect();
    for out in warm.into_iter().map(|t| t.join().expect("curl thread")) {
        assert_eq!(out.code(), 200, "{}\n{}", out.report(), gw.output_report());
    }

    // Requests in flight when the upstream dies.
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let url = origin.url("/slow/5000");
            std::thread::spawn(move || {
                let started = Instant::now();
                let out = Curl::via(addr).url(url).max_time(HANG * 2).run();
                (out, started.elapsed())
            })
        })
        .collect();
    // The bridge counts a request when it starts forwarding it; Squid
    // reuses its origin connections, so the origin cannot tell us.
    let started = wait_for(Duration::from_secs(10), || {
        (status_json(addr)["stats"]["requests"] == 8).then_some(())
    });
    assert!(
        started.is_some(),
        "the slow requests never started\n{}",
        gw.output_report()
    );
    std::thread::sleep(Duration::from_millis(500));
    kill_squid(&mut squid);
    for (out, took) in in_flight
        .into_iter()
        .map(|t| t.join().expect("curl thread"))
    {
        assert!(
            is_clean_failure(&out),
            "a request in flight when the upstream died got neither a 502 nor a clean close: {}\n{}",
            out.report(),
            gw.output_report()
        );
        assert!(took < HANG, "a request in flight hung for {took:?}");
    }

    // While it is down: a quick 502 that says so.
    let started = Instant::now();
    let down = Curl::via(addr).url(origin.url("/hello")).run();
    assert_eq!(down.code(), 502, "{}", down.report());
    assert!(
        down.text().contains("unreachable"),
        "the 502 page does not say the upstream is unreachable: {}",
        down.text()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Back on the same port: the very first request works (no dead pooled
    // connection is handed out), and so does everything after it.
    squid.restart();
    let first = Curl::via(addr).url(origin.url("/hello")).run();
    assert_eq!(
        first.code(),
        200,
        "the first request after the upstream came back failed: {}\n{}",
        first.report(),
        gw.output_report()
    );
    assert_eq!(first.text(), HELLO);
    let after: Vec<_> = (0..4)
        .map(|_| {
            let urls: Vec<String> = (0..5).map(|_| origin.url("/hello")).collect();
            std::thread::spawn(move || urls.into_iter().fold(Curl::via(addr), Curl::url).run())
        })
        .collect();
    for out in after.into_iter().map(|t| t.join().expect("curl thread")) {
        assert_eq!(out.transfers.len(), 5, "{}", out.report());
        for t in &out.transfers {
            assert_eq!(t.status, 200, "{}\n{}", out.report(), gw.output_report());
            assert_eq!(t.body, HELLO.as_bytes());
        }
    }

    squid.flush_access_log();
    assert_eq!(squid.count_rejected_credentials(USER), 0);
    assert_eq!(status_json(addr)["failed_attempts"], 0);
}

/// What one client request through the chaos came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// The bridge's 502 page.
    BadGateway,
    /// The connection closed before a response head.
    Closed,
    /// Anything else: a wrong status or body, or no answer in time.
    Wrong(String),
}

/// One request on `conn` (connecting first when it is `None`); leaves
/// `conn` as `None` when the bridge closed it.
fn chaos_request(
    bridge: SocketAddr,
    conn: &mut Option<RawConn>,
    request: &[u8],
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> Outcome {
    let mut c = match conn.take() {
        Some(c) => c,
        None => match RawConn::connect(bridge) {
            Ok(mut c) => {
                c.set_timeout(HANG);
                c
            }
            Err(e) => return Outcome::Wrong(format!("connect to the bridge: {e}")),
        },
    };
    if let Err(e) = c.send(request) {
        return Outcome::Wrong(format!("send: {e}"));
    }
    let head = match c.read_head() {
        Ok(head) => head,
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Outcome::Closed,
        Err(e) => return Outcome::Wrong(format!("no response head: {e}")),
    };
    let body = match c.read_body(&head) {
        Ok(body) => body,
        Err(e) => return Outcome::Wrong(format!("{} with a broken body: {e}", head.status)),
    };
    let keep = !head
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if keep {
        *conn = Some(c);
    }
    match head.status {
        200 => match check(&body) {
            Ok(()) => Outcome::Ok,
            Err(why) => Outcome::Wrong(why),
        },
        502 if body.starts_with(b"Gangway:") => Outcome::BadGateway,
        other => Outcome::Wrong(format!(
            "status {other}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// Clients alternating GETs and POSTs (each with a unique path and body)
/// on keep-alive connections to the bridge, reconnecting when it closes.
/// Returns every GET's outcome and every POST's id and outcome.
fn chaos_load(bridge: SocketAddr, origin: &Origin) -> (Vec<Outcome>, Vec<(String, Outcome)>) {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 20;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let hello = origin.url("/hello");
            let echo = origin.url("/echo");
            std::thread::spawn(move || {
                let mut conn = None;
                let mut gets = Vec::new();
                let mut posts = Vec::new();
                for round in 0..ROUNDS {
                    let get = format!("GET {hello} HTTP/1.1\r\nHost: {}\r\n\r\n", host_of(&hello));
                    gets.push(chaos_request(bridge, &mut conn, get.as_bytes(), |body| {
                        (body == HELLO.as_bytes())
                            .then_some(())
                            .ok_or_else(|| format!("GET body {:?}", String::from_utf8_lossy(body)))
                    }));
                    let id = format!("c{client}r{round}");
                    let body = format!("post {id};").repeat(200);
                    let post = format!(
                        "POST {echo}/{id} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        host_of(&echo),
                        body.len()
                    );
                    let want_sha = sha256_hex(body.as_bytes());
                    let want_uri = format!("/echo/{id}");
                    let outcome = chaos_request(bridge, &mut conn, post.as_bytes(), |got| {
                        let echo = EchoReply::parse(got);
                        (echo.sha256 == want_sha && echo.uri == want_uri)
                            .then_some(())
                            .ok_or_else(|| format!("POST {id} echoed {echo:?}"))
                    });
                    posts.push((id, outcome));
                }
                (gets, posts)
            })
        })
        .collect();
    let mut gets = Vec::new();
    let mut posts = Vec::new();
    for t in clients {
        let (g, p) = t.join().expect("client thread");
        gets.extend(g);
        posts.extend(p);
    }
    (gets, posts)
}

/// What the clients of [`chaos_load`] may see: every GET succeeds (the
/// bridge retries it on a new connection), a POST fails at most once per
/// broken connection and only with the bridge's 502 or a close.
fn assert_chaos_outcomes(
    chaos: &Chaos,
    gets: &[Outcome],
    posts: &[(String, Outcome)],
    report: impl Fn() -> String,
) {
    let stats = chaos.stats();
    // The chaos must have happened, or this test proves nothing.
    assert!(
        stats.cut_before >= 1 && stats.cut_after >= 1 && stats.cuts() >= 4,
        "too few connections were cut: {stats:?}\n{}",
        report()
    );
    let failed_gets: Vec<_> = gets.iter().filter(|o| **o != Outcome::Ok).collect();
    assert!(
        failed_gets.is_empty(),
        "GETs failed at the client although the bridge may retry them: {failed_gets:?}\n{stats:?}\n{}",
        report()
    );
    let wrong: Vec<_> = posts
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Wrong(_)))
        .collect();
    assert!(
        wrong.is_empty(),
        "POSTs went wrong: {wrong:?}\n{}",
        report()
    );
    let failed_posts = posts.iter().filter(|(_, o)| *o != Outcome::Ok).count() as u64;
    assert!(
        failed_posts <= stats.cuts(),
        "{failed_posts} POSTs failed but only {} upstream connections broke\n{}",
        stats.cuts(),
        report()
    );
}

#[test]
fn an_upstream_dropping_keep_alive_connections_costs_no_get_no_duplicate_post_and_no_lockout() {
    let origin = Origin::start();
    let squid = Squid::basic(USER, PASSWORD);
    // Four in ten upstream connections die after 1 to 4 responses, half of
    // them before the next request reaches Squid, half after.
    let chaos = Chaos::start(squid.addr(), ChaosConfig::new(0x6a6e_6777, 0.4));
    let gw = basic_bridge(&chaos.url());
    let bridge = gw.addr();
    let (gets, posts) = chaos_load(bridge, &origin);
    let report = || format!("chaos {:?}\n{}", chaos.stats(), gw.output_report());
    assert_chaos_outcomes(&chaos, &gets, &posts, report);

    // What Squid saw: every POST at most once (the bridge never re-sent
    // one), every POST the client saw succeed exactly once, and never a
    // credential it rejected.
    squid.flush_access_log();
    let entries = squid.access_entries();
    for (id, outcome) in &posts {
        let suffix = format!("/echo/{id}");
        let seen = entries
            .iter()
            .filter(|e| e.method == "POST" && e.url.ends_with(&suffix))
            .count();
        assert!(
            seen <= 1,
            "POST {id} reached the upstream {seen} times\n{}",
            report()
        );
        if *outcome == Outcome::Ok {
            assert_eq!(seen, 1, "POST {id} succeeded but Squid never logged it");
        }
    }
    assert_eq!(
        squid.count_rejected_credentials(USER),
        0,
        "Squid rejected credentials:\n{}",
        squid.access_log()
    );
    let status = status_json(bridge);
    assert_eq!(status["failed_attempts"], 0, "{status}");
    assert_eq!(status["credentials"]["state"], "accepted", "{status}");
}

#[test]
fn an_ntlm_upstream_dropping_authenticated_connections_costs_no_get_and_no_failed_handshake() {
    let origin = Origin::start();
    let peer = NtlmPeer::start(&[NtlmUser::new("CORP", "bob", PASSWORD)]);
    // An NTLM connection's first two requests are the handshake (Type 1,
    // then Type 3 with the request): cut only authenticated connections,
    // after 2 to 5 responses.
    let config = ChaosConfig {
        after: (2, 5),
        ..ChaosConfig::new(0x4e54_4c4d, 0.4)
    };
    let chaos = Chaos::start(peer.addr(), config);
    let gw = Gangway::builder(GANGWAY)
        .upstream(&chaos.url())
        .proxy_type("ntlm")
        .user("CORP\\bob")
        .password_env(PASSWORD)
        .no_bypass()
        .env("GANGWAY_LOG", "gangway_engine=debug,info")
        .start();
    let (gets, posts) = chaos_load(gw.addr(), &origin);
    let report = || {
        format!(
            "chaos {:?}\n{}\n{}",
            chaos.stats(),
            peer.report(),
            gw.output_report()
        )
    };
    assert_chaos_outcomes(&chaos, &gets, &posts, report);

    // Every handshake the bridge started on a new connection completed on
    // it, and none was refused.
    let stats = peer.stats();
    assert_eq!(
        (stats.handshakes_failed, stats.type3_without_challenge),
        (0, 0),
        "{}",
        report()
    );
    assert!(stats.handshakes_ok >= chaos.stats().cuts(), "{}", report());
    assert_eq!(status_json(gw.addr())["failed_attempts"], 0);
}

/// `127.0.0.1:port` of an absolute URL.
fn host_of(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// Waits until the bridge holds no more descriptors than `baseline` and
/// reports no open tunnel and no connection but the status request's own.
fn assert_back_to_baseline(gw: &Gangway, baseline: usize) {
    let pid = gw.pid();
    let settled = wait_for(Duration::from_secs(10), || {
        (fd_count(pid) <= baseline).then_some(())
    });
    assert!(
        settled.is_some(),
        "the bridge holds {} descriptors, {baseline} before the aborted transfers\n{}",
        fd_count(pid),
        gw.output_report()
    );
    let status = wait_for(Duration::from_secs(5), || {
        let s = status_json(gw.addr());
        let stats = &s["stats"];
        (stats["connections_open"] == 1 && stats["tunnels_open"] == 0).then_some(s)
    });
    assert!(
        status.is_some(),
        "the status still shows open connections or tunnels: {}",
        status_json(gw.addr())
    );
}

/// Sends as much of an endless upload as the far side takes within the
/// budget, stopping after `bytes`.
fn upload_some(stream: &mut TcpStream, bytes: usize) {
    let chunk = vec![b'u'; 64 * 1024];
    let mut sent = 0;
    while sent < bytes {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => panic!("the upload broke after {sent} bytes: {e}"),
        }
    }
}

/// Reads `bytes` of a download (after its head) and stops.
fn download_some(conn: &mut RawConn, bytes: usize) {
    let head = conn.read_head().expect("download response head");
    assert_eq!(head.status, 200, "{head:?}");
    let got = conn.read_exact_bytes(bytes).expect("part of the download");
    assert_eq!(got.len(), bytes);
}

/// Opens a CONNECT tunnel to `authority` through the bridge.
fn tunnel(bridge: SocketAddr, authority: &str) -> RawConn {
    let mut conn = RawConn::connect(bridge).expect("connect to the bridge");
    conn.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .expect("send CONNECT");
    let head = conn.read_head().expect("CONNECT answer");
    assert_eq!(head.status, 200, "{head:?}");
    conn
}

/// A transfer thread's side of "everyone is mid-transfer, now hang up":
/// it reports ready, then waits (bounded) for the go.
struct MidTransfer {
    ready: mpsc::Sender<()>,
    go: mpsc::Receiver<()>,
}

impl MidTransfer {
    fn new(ready: &mpsc::Sender<()>, gos: &mut Vec<mpsc::Sender<()>>) -> Self {
        let (tx, go) = mpsc::channel();
        gos.push(tx);
        MidTransfer {
            ready: ready.clone(),
            go,
        }
    }

    fn wait(&self) {
        self.ready.send(()).expect("the test thread is gone");
        // A test that failed meanwhile drops the go: hang up anyway.
        let _go_or_gone = self.go.recv_timeout(HANG);
    }
}

/// Drops the client socket with a FIN or, every other time, a reset.
fn hang_up(conn: RawConn, reset: bool) {
    let stream = conn_stream(conn);
    if reset {
        close_with_reset(stream);
    } else {
        drop(stream);
    }
}

fn conn_stream(mut conn: RawConn) -> TcpStream {
    conn.stream().try_clone().expect("clone the client socket")
}

#[test]
fn clients_hanging_up_mid_upload_and_mid_download_leave_nothing_open() {
    const HUGE: u64 = 1 << 30;
    const PART: usize = 1 << 20;
    const ROUNDS: usize = 3;
    const TRANSFERS: usize = 4 * ROUNDS;
    let origin = Origin::start();
    let gw = Gangway::direct(GANGWAY);
    let bridge = gw.addr();
    // The status request opens and closes a connection of its own; count
    // descriptors once it is gone.
    status_json(bridge);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = fd_count(gw.pid());

    let big = origin.url(&format!("/bytes/{HUGE}"));
    let echo = origin.url("/echo");
    let authority = origin.authority();
    let mut hangers = Vec::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut go = Vec::new();
    for round in 0..ROUNDS {
        let reset = round % 2 == 1;
        // Forwarded download.
        let url = big.clone();
        let mid_transfer = MidTransfer::new(&ready_tx, &mut go);
        hangers.push(std::thread::spawn(move || {
            let mut c = RawConn::connect(bridge).expect("connect");
            c.send(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .expect("send GET");
            download_some(&mut c, PART);
            mid_transfer.wait();
            hang_up(c, reset);
        }));
        // Forwarded upload.
        let url = echo.clone();
        let mid_transfer = MidTransfer::new(&ready_tx, &mut go);
        hangers.push(std::thread::spawn(move || {
            let c = RawConn::connect(bridge).expect("connect");
            let mut s = conn_stream(c);
            s.write_all(
                format!("POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n")
                    .as_bytes(),
            )
            .expect("send POST head");
            upload_some(&mut s, PART);
            mid_transfer.wait();
            if reset {
                close_with_reset(s);
            }
        }));
        // Download through a tunnel.
        let a = authority.clone();
        let mid_transfer = MidTransfer::new(&ready_tx, &mut go);
        hangers.push(std::thread::spawn(move || {
            let mut c = tunnel(bridge, &a);
            c.send(format!("GET /bytes/{HUGE} HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
                .expect("send GET in the tunnel");
            download_some(&mut c, PART);
            mid_transfer.wait();
            hang_up(c, reset);
        }));
        // Upload through a tunnel.
        let a = authority.clone();
        let mid_transfer = MidTransfer::new(&ready_tx, &mut go);
        hangers.push(std::thread::spawn(move || {
            let c = tunnel(bridge, &a);
            let mut s = conn_stream(c);
            s.write_all(
                format!("POST /echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: {HUGE}\r\n\r\n")
                    .as_bytes(),
            )
            .expect("send POST head in the tunnel");
            upload_some(&mut s, PART);
            mid_transfer.wait();
            if reset {
                close_with_reset(s);
            }
        }));
    }
    // Every transfer is under way: the bridge holds a client and a far-end
    // socket for each. Then they all hang up.
    drop(ready_tx);
    for _ in 0..TRANSFERS {
        ready_rx
            .recv_timeout(HANG)
            .expect("a transfer did not get under way");
    }
    // (An upload may sit in socket buffers before the bridge has dialled
    // the origin: give the far ends a moment.)
    let under_load = wait_for(Duration::from_secs(5), || {
        let fds = fd_count(gw.pid());
        (fds >= baseline + 2 * TRANSFERS).then_some(fds)
    });
    assert!(
        under_load.is_some(),
        "{} descriptors mid-transfer, {baseline} before: the count does not see the transfers",
        fd_count(gw.pid())
    );
    for go in go {
        let _thread_gone_is_caught_by_join = go.send(());
    }
    for h in hangers {
        h.join().expect("client thread");
    }

    assert_back_to_baseline(&gw, baseline);
    // And it still serves.
    let out = Curl::via(bridge).url(origin.url("/hello")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
}

/// `prlimit`, to start the bridge with few file descriptors.
const PRLIMIT: Program = Program {
    name: "prlimit",
    package: "util-linux",
};

/// One GET on a keep-alive connection; the status (0 if it broke).
fn get_on(conn: &mut RawConn, url: &str) -> u16 {
    let request = format!("GET {url} HTTP/1.1\r\nHost: {}\r\n\r\n", host_of(url));
    if conn.send(request.as_bytes()).is_err() {
        return 0;
    }
    let Ok(head) = conn.read_head() else {
        return 0;
    };
    match conn.read_body(&head) {
        Ok(_) => head.status,
        Err(_) => 0,
    }
}

/// How a connection opened during descriptor exhaustion was treated.
fn refused(stream: &mut TcpStream) -> Option<ResponseHead> {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if got.is_empty() {
                    return None;
                }
                break;
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    Some(ResponseHead::parse(head).unwrap_or(ResponseHead {
        version: String::new(),
        status: 0,
        reason: "closed without an answer".into(),
        headers: Vec::new(),
    }))
}

#[test]
fn out_of_descriptors_new_clients_get_503_old_ones_carry_on_and_it_recovers() {
    const NOFILE: usize = 64;
    const FLOOD: usize = 2 * NOFILE;
    let origin = Origin::start();
    let gw = Gangway::builder(PRLIMIT.require())
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(GANGWAY)
        .args(["--port", "0"])
        .without_port_zero()
        .start();
    let bridge = gw.addr();
    let hello = origin.url("/hello");

    let mut old = RawConn::connect(bridge).expect("connect");
    assert_eq!(get_on(&mut old, &hello), 200);

    // Connections that never send a request: each one the bridge accepts
    // holds a descriptor until the idle timeout.
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(bridge).expect("connect (the kernel queues it)"))
        .collect();
    let exhausted = wait_for(Duration::from_secs(5), || {
        (fd_count(gw.pid()) >= NOFILE - 1).then_some(())
    });
    assert!(
        exhausted.is_some(),
        "the bridge never ran out of descriptors ({} open)\n{}",
        fd_count(gw.pid()),
        gw.output_report()
    );

    // A newcomer gets a 503 or a closed connection, promptly.
    let started = Instant::now();
    let mut newcomer = RawConn::connect(bridge).expect("connect");
    newcomer
        .send(format!("GET {hello} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    let (closed, answer) = newcomer.wait_closed(Duration::from_secs(10));
    assert!(
        closed.is_closed(),
        "a new client hangs while the bridge is out of descriptors (waited {:?})\n{}",
        started.elapsed(),
        gw.output_report()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "the newcomer got {answer:?}"
    );

    // The client that was already connected carries on.
    assert_eq!(
        get_on(&mut old, &hello),
        200,
        "an established keep-alive client stopped being served\n{}",
        gw.output_report()
    );

    // Every flooding connection was either accepted (and is open) or told
    // 503 and closed; none was left hanging in the backlog.
    let mut accepted = 0;
    for s in &mut flood {
        match refused(s) {
            None => accepted += 1,
            Some(head) => assert!(
                head.status == 503 || head.status == 0,
                "a flooding client got {head:?}"
            ),
        }
    }
    assert!(
        accepted < NOFILE,
        "{accepted} connections accepted with {NOFILE} descriptors"
    );

    // Load gone: it accepts and serves again.
    flood.clear();
    let recovered = wait_for(Duration::from_secs(10), || {
        let out = Curl::via(bridge)
            .url(&hello)
            .max_time(Duration::from_secs(2))
            .run();
        (out.code() == 200).then_some(())
    });
    assert!(
        recovered.is_some(),
        "the bridge did not serve again after the load dropped\n{}",
        gw.output_report()
    );
    let logged = gw
        .stderr()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=3).contains(&logged),
        "descriptor exhaustion logged {logged} times (want once per episode)\n{}",
        gw.output_report()
    );
}
