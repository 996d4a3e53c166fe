//! End to end over real loopback sockets: a Target with a malloc namespace on env::testing
//! Threads, a raw NVMe/TCP host built on the shared PDU framer.
#![allow(clippy::unwrap_used)]

use env::testing::TestThreads;
use nvme::spec::fabrics::{ConnectCmd, ConnectData, PropertySetCmd};
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::pdu::{CapsuleCmd, FLAG_SUCCESS, H2cData, IcReq};
use nvme::spec::tcp::{DecoderConfig, Fes, Negotiated, Pdu, PduEncoder, PduHeader, PduReader};
use nvme::spec::{Cqe, Sqe, Status};
use nvmf::{ListenAddr, SubType, Subsystem, Target, TransportOpts};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

const SUBNQN: &str = "nqn.2016-06.io.spdk:cnode1";
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";

struct Env {
    threads: TestThreads,
    _tgt: Target,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn setup(bdev: &str) -> Env {
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
    tgt.create_transport("TCP", TransportOpts::default(), |r| r.unwrap());
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

struct Host {
    s: TcpStream,
    r: PduReader,
    enc: PduEncoder,
    pending: Vec<u8>,
}

impl Env {
    fn pump(&self) {
        self.threads.advance_time(Duration::from_millis(10));
        assert!(self.threads.poll_threads());
    }

    fn connect(&self) -> Host {
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

    fn recv(&self, h: &mut Host) -> Option<Pdu> {
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

    fn ic(&self, h: &mut Host, hdgst: bool, ddgst: bool) {
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
    fn cmd(&self, h: &mut Host, mut sqe: Sqe, data: Option<&[u8]>, len: u32) -> (Cqe, Vec<u8>) {
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
    fn send(&mut self, h: &PduHeader, data: &[u8]) {
        let mut out = Vec::new();
        self.enc.encode(h, data, &mut out).unwrap();
        self.send_raw(&out);
    }

    fn send_raw(&mut self, out: &[u8]) {
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

fn ok(c: &Cqe) {
    assert_eq!(c.status(), Status::SUCCESS, "status {}", c.status());
}

fn connect_data(cntlid: u16) -> Vec<u8> {
    ConnectData::new([7; 16], cntlid, HOSTNQN, SUBNQN)
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn rw(opc: u8, cid: u16, slba: u64, nlb0: u32) -> Sqe {
    let mut s = Sqe::new(opc, cid);
    s.nsid = 1.into();
    s.cdw10 = (slba as u32).into();
    s.cdw11 = ((slba >> 32) as u32).into();
    s.cdw12 = nlb0.into();
    s
}

/// Admin connect + CC.EN; returns the host and controller ID.
fn admin(env: &Env, hdgst: bool, ddgst: bool) -> (Host, u16) {
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

#[test]
fn connect_identify_write_read_over_loopback() {
    let env = setup("TcpMalloc0");
    let (mut a, cntlid) = admin(&env, true, true);
    let mut id = Sqe::new(0x06, 3);
    id.cdw10 = 1.into();
    let (c, d) = env.cmd(&mut a, id, None, 4096);
    ok(&c);
    assert_eq!(d.len(), 4096);
    assert_eq!(
        u16::from_le_bytes([d[78], d[79]]),
        cntlid,
        "Identify CNTLID"
    );
    // I/O queue.
    let mut io = env.connect();
    env.ic(&mut io, false, true);
    let (c, _) = env.cmd(
        &mut io,
        ConnectCmd::new(1, 1, 127, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    // In-capsule write of 8 blocks, then an R2T write of 32 blocks.
    let small: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let (c, _) = env.cmd(&mut io, rw(0x01, 2, 10, 7), Some(&small), 4096);
    ok(&c);
    let big: Vec<u8> = (0..16384u32).map(|i| (i * 13 % 241) as u8).collect();
    let (c, _) = env.cmd(&mut io, rw(0x01, 3, 100, 31), Some(&big), 16384);
    ok(&c);
    let (c, d) = env.cmd(&mut io, rw(0x02, 4, 10, 7), None, 4096);
    ok(&c);
    assert_eq!(d, small);
    let (c, d) = env.cmd(&mut io, rw(0x02, 5, 100, 31), None, 16384);
    ok(&c);
    assert_eq!(d, big);
    // Out of range read: CapsuleResp with the error, no data.
    let (c, d) = env.cmd(&mut io, rw(0x02, 6, 1020, 7), None, 4096);
    assert_eq!(c.status().sc, 0x80, "LBA out of range");
    assert!(d.is_empty());
}

fn expect_term_req(env: &Env, h: &mut Host, fes: Fes) {
    let p = env.recv(h).expect("no TermReq");
    let PduHeader::C2hTermReq(t) = p.header else {
        panic!("expected C2HTermReq, got {:?}", p.header)
    };
    assert_eq!(t.fes(), fes);
    assert!(env.recv(h).is_none(), "connection not closed");
}

#[test]
fn bad_input_gets_term_req_and_close_while_others_keep_working() {
    let env = setup("TcpMalloc1");
    let (mut good, _) = admin(&env, false, false);

    // Unknown PDU type.
    let mut h = env.connect();
    env.ic(&mut h, false, false);
    h.send_raw(&[0x0f, 0, 8, 0, 8, 0, 0, 0]);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD);

    // Wrong HLEN on an ICReq.
    let mut h = env.connect();
    let mut ic = vec![0u8; 128];
    ic[2] = 100;
    ic[4] = 128;
    h.send_raw(&ic);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD);

    // A command before ICReq.
    let mut h = env.connect();
    h.send(
        &PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(0x06, 1))),
        &[],
    );
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR);

    // A second ICReq.
    let mut h = env.connect();
    env.ic(&mut h, false, false);
    h.send(&PduHeader::IcReq(IcReq::new(0, false, false, 0)), &[]);
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR);

    // Bad header digest.
    let mut h = env.connect();
    env.ic(&mut h, true, false);
    let mut out = Vec::new();
    h.enc
        .encode(
            &PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(0x06, 1))),
            &[],
            &mut out,
        )
        .unwrap();
    out[72] ^= 0xff;
    h.send_raw(&out);
    expect_term_req(&env, &mut h, Fes::HDGST_ERROR);

    // The first connection still answers.
    let mut id = Sqe::new(0x06, 9);
    id.cdw10 = 1.into();
    let (c, d) = env.cmd(&mut good, id, None, 4096);
    ok(&c);
    assert_eq!(d.len(), 4096);
}
