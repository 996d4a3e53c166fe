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
    // Above the defaults (so the check can fail) and within the caps (Linux clamps to them).
    let rcv = (plain_rcv + 4096).min(rmem_max);
    let snd = (plain_snd + 4096).min(wmem_max);
    assert!(
        rcv > plain_rcv && snd > plain_snd,
        "rmem_max/wmem_max too small to test"
    );

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
    assert!(
        s.recv_buffer_size().unwrap() >= rcv,
        "SO_RCVBUF {} < {rcv}",
        s.recv_buffer_size().unwrap()
    );
    assert!(
        s.send_buffer_size().unwrap() >= snd,
        "SO_SNDBUF {} < {snd}",
        s.send_buffer_size().unwrap()
    );
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
