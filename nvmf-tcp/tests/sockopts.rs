//! The sock_impl options of env::sock (SPDK `sock_impl_set_options`) reach the NVMe/TCP
//! sockets: SO_RCVBUF/SO_SNDBUF, and the transport's sock_priority as SO_PRIORITY. Its own
//! test binary: the options are process-wide.
#![allow(clippy::unwrap_used)]

use env::sock::{SockImplOpts, sock_impl_set_opts};
use nvmf::transport::Transport;
use nvmf::{ListenAddr, TransportOpts};
use nvmf_tcp::{TcpConn, TcpTransport};
use serde_json::json;
use socket2::SockRef;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn transport(specific: serde_json::Value) -> TcpTransport {
    let mut opts = TransportOpts::default();
    if let serde_json::Value::Object(m) = specific {
        opts.specific = m;
    }
    TcpTransport::new(opts).unwrap()
}

/// Listens on an ephemeral loopback port, connects, and returns the accepted connection (and
/// the client side, kept open).
fn accept_one(t: &mut TcpTransport) -> (TcpConn, TcpStream) {
    let addr = ListenAddr::tcp("127.0.0.1", "0");
    t.listen(&addr).unwrap();
    let port = t.local_addr(&addr).unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(c) = t.accept() {
            return (c, client);
        }
        assert!(Instant::now() < deadline, "no connection accepted");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn accepted_sockets_get_the_configured_buffers_priority_and_nodelay() {
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The sizes of a socket nothing was applied to (Linux defaults, no traffic yet).
    let plain_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let _plain_c = TcpStream::connect(plain_l.local_addr().unwrap()).unwrap();
    let (plain, _) = plain_l.accept().unwrap();
    let plain_rcv = SockRef::from(&plain).recv_buffer_size().unwrap();
    let plain_snd = SockRef::from(&plain).send_buffer_size().unwrap();
    // Sizes whose kernel value (Linux stores twice the value asked for, and an explicit size
    // turns autotuning off) differs from the plain socket's, so the check can fail. The plain
    // sizes vary: Linux starts a connection's send buffer from cached TCP metrics of the peer
    // (a loopback benchmark earlier leaves a large cwnd), so no fixed "above the default" works.
    let pick = |plain: usize, max: usize| {
        [65536usize, 98304]
            .into_iter()
            .find(|v| 2 * v != plain && *v <= max)
            .expect("rmem_max/wmem_max too small to test")
    };
    let rcv = pick(plain_rcv, rmem_max);
    let snd = pick(plain_snd, wmem_max);

    sock_impl_set_opts(
        "posix",
        SockImplOpts {
            recv_buf_size: rcv as u32,
            send_buf_size: snd as u32,
            enable_quickack: true,
            ..SockImplOpts::POSIX
        },
    )
    .unwrap();
    let mut t = transport(json!({"sock_priority": 3}));
    let (conn, _client) = accept_one(&mut t);
    let s = SockRef::from(&conn.stream);
    // Linux stores twice the value asked for.
    assert_eq!(s.recv_buffer_size().unwrap(), 2 * rcv);
    assert_eq!(s.send_buffer_size().unwrap(), 2 * snd);
    assert_eq!(s.priority().unwrap(), 3);
    assert!(s.tcp_nodelay().unwrap());
    assert!(s.nonblocking().unwrap());

    // Zero sizes leave the kernel's defaults; priority 0 is not set.
    sock_impl_set_opts(
        "posix",
        SockImplOpts {
            recv_buf_size: 0,
            send_buf_size: 0,
            ..SockImplOpts::POSIX
        },
    )
    .unwrap();
    let mut t = transport(json!({}));
    let (conn, _client) = accept_one(&mut t);
    let s = SockRef::from(&conn.stream);
    assert_eq!(s.recv_buffer_size().unwrap(), plain_rcv);
    assert_eq!(s.send_buffer_size().unwrap(), plain_snd);
    assert_eq!(s.priority().unwrap(), 0);
    sock_impl_set_opts("posix", SockImplOpts::POSIX).unwrap();
}

#[test]
fn sock_priority_above_16_is_refused() {
    let mut opts = TransportOpts::default();
    opts.specific.insert("sock_priority".into(), json!(16));
    assert!(TcpTransport::new(opts.clone()).is_ok());
    opts.specific.insert("sock_priority".into(), json!(17));
    let e = TcpTransport::new(opts.clone()).unwrap_err();
    assert!(
        e.to_string().contains("sock_priority must be 0..=16"),
        "{e}"
    );
    opts.specific.insert("sock_priority".into(), json!(-1));
    assert!(TcpTransport::new(opts).is_err());
}
