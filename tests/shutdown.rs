//! SIGTERM is a graceful stop with a bounded drain: what is in flight
//! finishes, nothing new gets in, and the process exits 0 by the end of the
//! drain (5 s by default), closing tunnels that are still open then.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Duration;

use gangway_testkit::origin::HELLO;
use gangway_testkit::{wait_for, Curl, Gangway, Origin, RawConn};

const GANGWAY: &str = env!("CARGO_BIN_EXE_gangway");

/// The engine's default drain bound.
const DRAIN: Duration = Duration::from_secs(5);
/// Room for process start-up noise on a loaded CI machine; not a timing
/// assertion, only how long we wait before calling it hung.
const MARGIN: Duration = Duration::from_secs(5);

/// Whether a new TCP connection to the bridge is refused right now.
fn refuses_connections(gw: &Gangway) -> bool {
    match TcpStream::connect_timeout(&gw.addr(), Duration::from_secs(2)) {
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
}

#[test]
fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    let origin = Origin::start();
    let mut gw = Gangway::direct(GANGWAY);
    let addr = gw.addr();
    let url = origin.url("/slow/2000");
    let in_flight = std::thread::spawn(move || Curl::via(addr).url(url).run());

    // The bridge has reached the origin: the request is in flight.
    let reached = wait_for(Duration::from_secs(10), || {
        (origin.accepted_connections() >= 1).then_some(())
    });
    assert!(
        reached.is_some(),
        "the request never reached the origin\n{}",
        gw.output_report()
    );
    gw.sigterm();

    let refused = wait_for(Duration::from_secs(2), || {
        refuses_connections(&gw).then_some(())
    });
    assert!(
        refused.is_some(),
        "new connections were still accepted after SIGTERM\n{}",
        gw.output_report()
    );

    let out = in_flight.join().expect("curl thread");
    assert_eq!(
        out.code(),
        200,
        "the request in flight was cut off by the shutdown: {}\n{}",
        out.report(),
        gw.output_report()
    );
    assert_eq!(out.text(), "slow 2000\n");

    let status = gw.wait_exit(DRAIN + MARGIN);
    assert!(
        status.is_some_and(|s| s.success()),
        "gangway did not exit 0 after draining ({status:?})\n{}",
        gw.output_report()
    );
}

#[test]
fn an_open_tunnel_is_closed_when_the_drain_time_is_over() {
    let origin = Origin::start();
    let mut gw = Gangway::direct(GANGWAY);

    // A CONNECT tunnel to a plain HTTP origin, used once and left open.
    let mut tunnel = RawConn::connect(gw.addr()).expect("connect to the bridge");
    let authority = origin.authority();
    tunnel
        .send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .expect("send CONNECT");
    let head = tunnel.read_head().expect("CONNECT answer");
    assert_eq!(head.status, 200, "{head:?}\n{}", gw.output_report());
    let get = format!("GET /hello HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    tunnel.send(get.as_bytes()).expect("request in the tunnel");
    let head = tunnel.read_head().expect("answer in the tunnel");
    assert_eq!(head.status, 200);
    assert_eq!(tunnel.read_body(&head).expect("body"), HELLO.as_bytes());

    gw.sigterm();

    // While the drain lasts, the tunnel still carries traffic.
    tunnel
        .send(get.as_bytes())
        .expect("request in the tunnel during the drain");
    let head = tunnel.read_head().expect("answer during the drain");
    assert_eq!(head.status, 200);
    assert_eq!(tunnel.read_body(&head).expect("body"), HELLO.as_bytes());

    // Then the bridge closes it and exits.
    let (closed, _) = tunnel.wait_closed(DRAIN + MARGIN);
    assert!(
        closed.is_closed(),
        "the tunnel was still open after the drain ({closed:?})\n{}",
        gw.output_report()
    );
    let status = gw.wait_exit(MARGIN);
    assert!(
        status.is_some_and(|s| s.success()),
        "gangway did not exit 0 after closing the tunnel ({status:?})\n{}",
        gw.output_report()
    );
}
