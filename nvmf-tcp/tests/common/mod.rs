//! Shared helpers of the loopback tests: a Target with a malloc namespace on env::testing
//! Threads and a raw NVMe/TCP host built on the shared PDU framer.
#![allow(clippy::unwrap_used, dead_code)]

use env::testing::TestThreads;
use nvme::spec::fabrics::{ConnectCmd, PropertySetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::pdu::{CapsuleCmd, FLAG_SUCCESS, H2cData, IcReq};
use nvme::spec::tcp::{DecoderConfig, Fes, Negotiated, Pdu, PduEncoder, PduHeader, PduReader};
use nvme::spec::{Cqe, Sqe, Status};
use nvmf::{ListenAddr, SubType, Subsystem, Target, TransportOpts};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub const SUBNQN: &str = "nqn.2016-06.io.spdk:cnode1";
pub const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";

pub struct Env {
    pub threads: TestThreads,
    pub _tgt: Target,
    pub port: u16,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn setup(bdev: &str) -> Env {
    setup_with(bdev, TransportOpts::default())
}

/// [`setup`] with a TCP transport created from `opts`.
pub fn setup_with(bdev: &str, opts: TransportOpts) -> Env {
    let threads = TestThreads::new(2);
    threads.set_current(0);
    let tgt = Target::new("nvmf_tgt").unwrap();
    tgt.register_transport_factory("TCP", nvmf_tcp::factory());
    tgt.start(
        vec![threads.thread(0).handle(), threads.thread(1).handle()],
        || {},
    )
    .unwrap();
    assert!(threads.poll_threads());
    tgt.create_transport("TCP", opts, |r| r.unwrap());
    assert!(threads.poll_threads());
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(bdev, 1024, 512)).unwrap();
    let mut s = Subsystem::new(SUBNQN, SubType::Nvme);
    s.allow_any_host = true;
    s.max_namespaces = 32;
    tgt.create_subsystem(s).unwrap();
    tgt.add_ns(SUBNQN, bdev, 0, None, None, None, 0, false)
        .unwrap();
    let port = free_port();
    tgt.add_listener(
        SUBNQN,
        ListenAddr::tcp("127.0.0.1", &port.to_string()),
        false,
    )
    .unwrap();
    tgt.update(|| {});
    assert!(threads.poll_threads());
    Env {
        threads,
        _tgt: tgt,
        port,
    }
}

pub struct Host {
    pub s: TcpStream,
    pub r: PduReader,
    pub enc: PduEncoder,
    pub pending: Vec<u8>,
}

impl Env {
    pub fn pump(&self) {
        self.threads.advance_time(Duration::from_millis(10));
        assert!(self.threads.poll_threads());
    }

    pub fn connect(&self) -> Host {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_nonblocking(true).unwrap();
        self.pump();
        Host {
            s,
            r: PduReader::new(DecoderConfig::host_default()),
            enc: PduEncoder::new(),
            pending: Vec::new(),
        }
    }

    pub fn recv(&self, h: &mut Host) -> Option<Pdu> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if !h.pending.is_empty() {
                let (n, p) = h.r.read(&h.pending).unwrap();
                h.pending.drain(..n);
                if p.is_some() {
                    return p;
                }
            }
            self.pump();
            let mut buf = [0u8; 65536];
            match h.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => h.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
            assert!(Instant::now() < deadline, "no PDU within 5 s");
        }
    }

    pub fn ic(&self, h: &mut Host, hdgst: bool, ddgst: bool) {
        h.send(&PduHeader::IcReq(IcReq::new(0, hdgst, ddgst, 0)), &[]);
        let p = self.recv(h).unwrap();
        assert!(matches!(p.header, PduHeader::IcResp(_)));
        let neg = Negotiated {
            hdgst,
            ddgst,
            rx_pda: 0,
        };
        h.r.decoder_mut().set_negotiated(neg);
        h.enc.set_negotiated(neg);
    }

    /// Sends a command (in-capsule data up to 4096 bytes, else R2T) and returns its CQE and
    /// read data.
    pub fn cmd(&self, h: &mut Host, mut sqe: Sqe, data: Option<&[u8]>, len: u32) -> (Cqe, Vec<u8>) {
        let cid = sqe.cid();
        let icd = data.filter(|d| d.len() <= 4096);
        sqe.dptr = SglDescriptor::from(match icd {
            Some(d) => Sgl::DataBlockOffset {
                offset: 0,
                length: d.len() as u32,
            },
            None => Sgl::TransportDataBlock { length: len },
        });
        h.send(
            &PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)),
            icd.unwrap_or_default(),
        );
        let mut read = Vec::new();
        loop {
            let p = self.recv(h).expect("connection closed");
            match p.header {
                PduHeader::R2t(t) => {
                    let d = data.unwrap();
                    let (o, l) = (t.r2to.get(), t.r2tl.get());
                    let chunk = &d[o as usize..(o + l) as usize];
                    h.send(
                        &PduHeader::H2cData(H2cData::new(cid, t.ttag.get(), o, l, true)),
                        chunk,
                    );
                }
                PduHeader::C2hData(c) => {
                    read.extend_from_slice(&p.data);
                    if c.ch.flags & FLAG_SUCCESS != 0 {
                        return (Cqe::new(cid, Status::SUCCESS), read);
                    }
                }
                PduHeader::CapsuleResp(r) => return (r.cqe, read),
                other => panic!("unexpected PDU {other:?}"),
            }
        }
    }
}

impl Host {
    pub fn send(&mut self, h: &PduHeader, data: &[u8]) {
        let mut out = Vec::new();
        self.enc.encode(h, data, &mut out).unwrap();
        self.send_raw(&out);
    }

    pub fn send_raw(&mut self, out: &[u8]) {
        let mut off = 0;
        while off < out.len() {
            match self.s.write(&out[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

pub fn ok(c: &Cqe) {
    assert_eq!(c.status(), Status::SUCCESS, "status {}", c.status());
}

/// 1024 bytes of Connect data in the wire layout (NVMe-oF 1.1 Figure 20, Linux
/// `struct nvmf_connect_data`): HOSTID 0..16, CNTLID 16..18, SUBNQN 256..512,
/// HOSTNQN 512..768.
pub fn connect_data(cntlid: u16) -> Vec<u8> {
    let mut d = vec![0u8; 1024];
    d[..16].fill(7);
    d[16..18].copy_from_slice(&cntlid.to_le_bytes());
    d[256..256 + SUBNQN.len()].copy_from_slice(SUBNQN.as_bytes());
    d[512..512 + HOSTNQN.len()].copy_from_slice(HOSTNQN.as_bytes());
    d
}

pub fn rw(opc: u8, cid: u16, slba: u64, nlb0: u32) -> Sqe {
    let mut s = Sqe::new(opc, cid);
    s.nsid = 1.into();
    s.cdw10 = (slba as u32).into();
    s.cdw11 = ((slba >> 32) as u32).into();
    s.cdw12 = nlb0.into();
    s
}

/// Admin connect + CC.EN; returns the host and controller ID.
pub fn admin(env: &Env, hdgst: bool, ddgst: bool) -> (Host, u16) {
    let mut h = env.connect();
    env.ic(&mut h, hdgst, ddgst);
    let (c, _) = env.cmd(
        &mut h,
        ConnectCmd::new(1, 0, 31, 0).to_sqe(),
        Some(&connect_data(0xffff)),
        1024,
    );
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    let (c, _) = env.cmd(
        &mut h,
        PropertySetCmd::new(2, PropertySize::Four, PropertyOffset::CC, 0x0046_0001).to_sqe(),
        None,
        0,
    );
    ok(&c);
    (h, cntlid)
}

/// Expects a C2HTermReq with `fes` and `fei`, then the target closing the connection.
pub fn expect_term_req(env: &Env, h: &mut Host, fes: Fes, fei: u32) {
    let p = env.recv(h).expect("no TermReq");
    let PduHeader::C2hTermReq(t) = p.header else {
        panic!("expected C2HTermReq, got {:?}", p.header)
    };
    assert_eq!(t.fes(), fes, "FES");
    assert_eq!(t.fei.get(), fei, "FEI");
    assert!(env.recv(h).is_none(), "connection not closed");
}

/// A host with a blocking socket (10 s read timeout), for targets on real reactors.
pub fn blocking_host(port: u16) -> Host {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Host {
        s,
        r: PduReader::new(DecoderConfig::host_default()),
        enc: PduEncoder::new(),
        pending: Vec::new(),
    }
}

impl Host {
    /// Next PDU from a blocking socket.
    pub fn recv_blocking(&mut self) -> Pdu {
        loop {
            if !self.pending.is_empty() {
                let (n, p) = self.r.read(&self.pending).unwrap();
                self.pending.drain(..n);
                if let Some(p) = p {
                    return p;
                }
            }
            let mut buf = [0u8; 65536];
            let n = self.s.read(&mut buf).expect("no PDU within 10 s");
            assert!(n > 0, "connection closed");
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// ICReq/ICResp without digests over a blocking socket.
    pub fn ic_blocking(&mut self) {
        self.send(&PduHeader::IcReq(IcReq::new(0, false, false, 0)), &[]);
        let p = self.recv_blocking();
        assert!(matches!(p.header, PduHeader::IcResp(_)));
    }

    /// A command with in-capsule data (or none) over a blocking socket: its CQE and read data.
    pub fn cmd_blocking(&mut self, mut sqe: Sqe, data: Option<&[u8]>, len: u32) -> (Cqe, Vec<u8>) {
        let cid = sqe.cid();
        sqe.dptr = SglDescriptor::from(match data {
            Some(d) => Sgl::DataBlockOffset {
                offset: 0,
                length: d.len() as u32,
            },
            None => Sgl::TransportDataBlock { length: len },
        });
        self.send(
            &PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)),
            data.unwrap_or_default(),
        );
        let mut read = Vec::new();
        loop {
            let p = self.recv_blocking();
            match p.header {
                PduHeader::C2hData(c) => {
                    read.extend_from_slice(&p.data);
                    if c.ch.flags & FLAG_SUCCESS != 0 {
                        return (Cqe::new(cid, Status::SUCCESS), read);
                    }
                }
                PduHeader::CapsuleResp(r) => return (r.cqe, read),
                other => panic!("unexpected PDU {other:?}"),
            }
        }
    }
}

/// Polls both test Threads `rounds` times (a bounded spin: a connection with output waiting
/// keeps its poll group busy).
pub fn spin(env: &Env, rounds: usize) {
    for _ in 0..rounds {
        for i in 0..2 {
            env.threads.poll_thread(i);
        }
    }
}

/// A host whose socket has a 4 KiB receive buffer (set before connecting), non-blocking.
pub fn slow_host(env: &Env) -> Host {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let sa: std::net::SocketAddr = format!("127.0.0.1:{}", env.port).parse().unwrap();
    sock.connect(&sa.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_nonblocking(true).unwrap();
    env.pump();
    Host {
        s,
        r: PduReader::new(DecoderConfig::host_default()),
        enc: PduEncoder::new(),
        pending: Vec::new(),
    }
}

/// Sets the default sock implementation's send buffer (process-wide: tests that change it
/// have their own test binary).
pub fn set_send_buf(bytes: u32) {
    env::sock::sock_impl_set_opts(
        "posix",
        env::sock::SockImplOpts {
            send_buf_size: bytes,
            recv_buf_size: 0,
            ..env::sock::SockImplOpts::POSIX
        },
    )
    .unwrap();
}

/// Starts one interrupt-mode reactor on the first available core serving `bdev` (1024 x 512 B
/// malloc) as namespace 1 of [`SUBNQN`] on 127.0.0.1:`port`, the acceptor polled every
/// `acceptor_poll_us`; returns once the listener is up.
pub fn start_interrupt_mode_target(port: u16, bdev: &str, acceptor_poll_us: u32) -> env::Reactors {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let core = env::CpuMask::all_available().first().unwrap();
    let bdev = bdev.to_owned();
    let r = env::Reactors::start(
        env::ReactorOpts {
            cpumask: env::CpuMask::single(core).unwrap(),
            interrupt_mode: true,
        },
        move || {
            let tgt = Target::new("nvmf_tgt").unwrap();
            tgt.register_transport_factory("TCP", nvmf_tcp::factory());
            let me = env::Thread::current().unwrap().handle();
            tgt.start(vec![me], || {}).unwrap();
            let opts = TransportOpts {
                acceptor_poll_rate: acceptor_poll_us,
                ..TransportOpts::default()
            };
            let t2 = tgt.clone();
            tgt.create_transport("TCP", opts, move |res| {
                res.unwrap();
                bdev_malloc::create(&bdev_malloc::MallocOpts::new(&bdev, 1024, 512)).unwrap();
                let mut s = Subsystem::new(SUBNQN, SubType::Nvme);
                s.allow_any_host = true;
                t2.create_subsystem(s).unwrap();
                t2.add_ns(SUBNQN, &bdev, 0, None, None, None, 0, false)
                    .unwrap();
                t2.add_listener(
                    SUBNQN,
                    ListenAddr::tcp("127.0.0.1", &port.to_string()),
                    false,
                )
                .unwrap();
                let t3 = t2.clone();
                t2.update(move || {
                    tx.send(()).unwrap();
                    // Keep the target alive for the reactor's lifetime.
                    std::mem::forget(t3);
                });
            });
        },
    )
    .unwrap();
    rx.recv_timeout(Duration::from_secs(20)).unwrap();
    r
}

/// Takes every large iobuf buffer of the global ring (bounded: a pool never holds 64 Ki), from a
/// thread that is not an env Thread; returning them wakes no reactor.
pub fn drain_large_pool() -> Vec<env::IoBuf> {
    let mut held = Vec::new();
    while let Some(b) = env::iobuf::iobuf_get(65536) {
        held.push(b);
        assert!(held.len() <= 1 << 16, "iobuf pool never ran dry");
    }
    assert!(!held.is_empty());
    held
}
