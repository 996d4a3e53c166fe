//! A RAM-backed scripted NVMe controller reachable through an in-memory `nvme::host`
//! transport, shared by the tests.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nvme::host::{
    HostError, Payload, QpairParams, RawCompletion, Transport, TransportId, TransportQpair,
};
use nvme::spec::cqe::Cqe;
use nvme::spec::fabrics::connect_success_dw0;
use nvme::spec::identify::{IdentifyController, IdentifyNamespace, NsList};
use nvme::spec::opcode::{AdminOpcode, FabricsCommandType, NvmOpcode};
use nvme::spec::props::{Cap, Csts, PropertyOffset};
use nvme::spec::sqe::Sqe;
use nvme::spec::status::{GenericStatus, Status};
use zerocopy::IntoBytes;

use std::cell::RefCell;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use env::testing::TestThreads;
use rpc::{RpcError, RpcRegistry, RpcState};
use serde_json::Value;

pub const BLOCKS: u64 = 1024;
pub const BS: usize = 512;

#[derive(Default)]
pub struct Disk {
    pub data: Mutex<Vec<u8>>,
    pub cc: Mutex<u32>,
    pub reads: AtomicUsize,
    pub writes: AtomicUsize,
}

struct RamQpair {
    disk: Arc<Disk>,
    q: VecDeque<RawCompletion>,
}

fn lba_range(sqe: &Sqe) -> (usize, usize) {
    let slba = u64::from(sqe.cdw10.get()) | (u64::from(sqe.cdw11.get()) << 32);
    let nlb = (sqe.cdw12.get() & 0xffff) as usize + 1;
    (slba as usize * BS, nlb * BS)
}

impl RamQpair {
    fn admin(&mut self, sqe: &Sqe, cqe: &mut Cqe, buf: &mut [u8]) {
        if sqe.opc == AdminOpcode::FABRICS.0 {
            let f = sqe.fctype();
            let b = sqe.as_bytes();
            if f == FabricsCommandType::CONNECT {
                cqe.dw0 = connect_success_dw0(1, 0).into();
            } else if f == FabricsCommandType::PROPERTY_GET {
                let ofst = u32::from_le_bytes(b[44..48].try_into().unwrap());
                let cc = *self.disk.cc.lock().unwrap();
                let v = match PropertyOffset(ofst) {
                    PropertyOffset::CAP => Cap(0).with_mqes(127).with_to(2).0,
                    PropertyOffset::VS => 0x0001_0400,
                    PropertyOffset::CC => u64::from(cc),
                    PropertyOffset::CSTS => {
                        let shst = if (cc >> 14) & 3 == 1 { 2 } else { 0 };
                        u64::from(Csts(0).with_rdy((cc & 1) as u8).with_shst(shst).0)
                    }
                    _ => 0,
                };
                cqe.set_dw01(v);
            } else if f == FabricsCommandType::PROPERTY_SET {
                *self.disk.cc.lock().unwrap() =
                    u64::from_le_bytes(b[48..56].try_into().unwrap()) as u32;
            }
        } else if sqe.opc == AdminOpcode::IDENTIFY.0 {
            match sqe.cdw10.get() & 0xff {
                1 => {
                    let mut c = IdentifyController {
                        nn: 1.into(),
                        ioccsz: 260.into(),
                        mdts: 1,
                        vwc: 1,
                        cntlid: 1.into(),
                        ..Default::default()
                    };
                    c.set_subnqn("nqn.2016-06.io.spdk:ram").unwrap();
                    buf.copy_from_slice(c.as_bytes());
                }
                2 => buf.copy_from_slice(NsList::from_ids([1]).as_bytes()),
                0 => {
                    let mut n = IdentifyNamespace {
                        nsze: BLOCKS.into(),
                        ncap: BLOCKS.into(),
                        nuse: BLOCKS.into(),
                        nguid: [7; 16],
                        ..Default::default()
                    };
                    n.lbaf[0].lbads = 9;
                    buf.copy_from_slice(n.as_bytes());
                }
                3 => buf.fill(0),
                _ => cqe.set_status(GenericStatus::INVALID_FIELD.into()),
            }
        } else if sqe.opc == AdminOpcode::SET_FEATURES.0 {
            cqe.dw0 = 0x0003_0003.into();
        }
    }

    fn io(&mut self, sqe: &Sqe, buf: &mut [u8]) {
        let mut d = self.disk.data.lock().unwrap();
        match NvmOpcode(sqe.opc) {
            NvmOpcode::READ => {
                self.disk.reads.fetch_add(1, Ordering::SeqCst);
                let (o, l) = lba_range(sqe);
                buf.copy_from_slice(&d[o..o + l]);
            }
            NvmOpcode::WRITE => {
                self.disk.writes.fetch_add(1, Ordering::SeqCst);
                let (o, l) = lba_range(sqe);
                d[o..o + l].copy_from_slice(buf);
            }
            NvmOpcode::WRITE_ZEROES => {
                let (o, l) = lba_range(sqe);
                d[o..o + l].fill(0);
            }
            NvmOpcode::DATASET_MANAGEMENT => {
                for r in buf.chunks_exact(16) {
                    let nlb = u32::from_le_bytes(r[4..8].try_into().unwrap()) as usize;
                    let slba = u64::from_le_bytes(r[8..16].try_into().unwrap()) as usize;
                    d[slba * BS..(slba + nlb) * BS].fill(0);
                }
            }
            _ => {}
        }
    }
}

impl RamQpair {
    fn poll(&mut self, done: &mut Vec<RawCompletion>) -> Result<(), HostError> {
        done.extend(self.q.drain(..));
        Ok(())
    }
}

pub struct RamTransport(pub Arc<Disk>);

impl Transport for RamTransport {
    fn name(&self) -> &'static str {
        "RAM"
    }

    fn connect_qpair(
        &self,
        _trid: &TransportId,
        params: &QpairParams,
    ) -> Result<Box<dyn TransportQpair>, HostError> {
        Ok(Box::new(Routed {
            inner: RamQpair {
                disk: Arc::clone(&self.0),
                q: VecDeque::new(),
            },
            admin: params.qid == 0,
        }))
    }
}

/// Routes commands to the admin or I/O handler by queue ID.
struct Routed {
    inner: RamQpair,
    admin: bool,
}

impl TransportQpair for Routed {
    fn submit(&mut self, sqe: Sqe, payload: Payload) -> Result<(), HostError> {
        let mut cqe = Cqe::new(sqe.cid(), Status::SUCCESS);
        let mut buf = payload.into_buf();
        if self.admin || sqe.opc == AdminOpcode::FABRICS.0 {
            self.inner.admin(&sqe, &mut cqe, &mut buf);
        } else {
            self.inner.io(&sqe, &mut buf);
        }
        self.inner.q.push_back(RawCompletion { cqe, buf });
        Ok(())
    }

    fn poll(&mut self, done: &mut Vec<RawCompletion>) -> Result<(), HostError> {
        self.inner.poll(done)
    }

    fn max_in_capsule(&self) -> u32 {
        8192
    }

    fn set_max_in_capsule(&mut self, _bytes: u32) {}

    fn abort_all(&mut self) -> Vec<(u16, Vec<u8>)> {
        Vec::new()
    }
}

pub fn params(name: &str) -> bdev_nvme::AttachParams {
    bdev_nvme::AttachParams {
        name: name.into(),
        trtype: "TCP".into(),
        traddr: "127.0.0.1".into(),
        trsvcid: Some("4420".into()),
        subnqn: Some("nqn.2016-06.io.spdk:ram".into()),
        ..Default::default()
    }
}

/// RPC helpers for the asynchronous attach tests.
pub type Answer = Rc<RefCell<Option<Result<Value, RpcError>>>>;

pub fn rpc_setup() -> (TestThreads, Rc<RpcRegistry>) {
    let tt = TestThreads::new(1);
    tt.set_current(0);
    let reg = RpcRegistry::new();
    bdev::rpc::register_rpcs(&reg);
    bdev_nvme::register(&reg);
    reg.set_state(RpcState::Runtime);
    (tt, reg)
}

/// Starts `method`; returns the answer slot without polling the Thread.
pub fn start(reg: &RpcRegistry, method: &str, p: Value) -> Answer {
    let s: Answer = Rc::default();
    let s2 = Rc::clone(&s);
    reg.call_local(method, Some(p), move |r| *s2.borrow_mut() = Some(r));
    s
}

/// Polls the Thread until `s` is answered or `limit` passes.
pub fn wait(tt: &TestThreads, s: &Answer, limit: Duration) -> Result<Value, RpcError> {
    let deadline = Instant::now() + limit;
    while s.borrow().is_none() && Instant::now() < deadline {
        tt.advance_time(Duration::from_millis(1));
        tt.poll_threads();
        std::thread::sleep(Duration::from_micros(200));
    }
    s.borrow_mut().take().expect("answered in time")
}

pub fn err(r: Result<Value, RpcError>) -> (i32, String) {
    let e = r.unwrap_err();
    (e.code, e.message)
}

/// A listener that accepts connections and holds them, never sending a byte, until `stop`
/// is sent (or 30 s pass).
pub fn silent_peer() -> (u16, mpsc::Sender<()>, std::thread::JoinHandle<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((s, _)) = l.accept() {
                held.push(s);
            }
            if rx.recv_timeout(Duration::from_millis(5)).is_ok() {
                break;
            }
        }
        held.len()
    });
    (port, tx, h)
}
