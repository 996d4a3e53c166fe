//! NVMe bdevs over a RAM-backed scripted controller (an in-memory `nvme::host` transport):
//! attach, split reads/writes, write zeroes, unmap, flush, controller info, detach.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bdev::{IoCompletion, IoStatus, IoVecs, open_ext};
use bdev_nvme::{AttachParams, BdevNvmeError};
use env::testing::TestThreads;
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

const BLOCKS: u64 = 1024;
const BS: usize = 512;

#[derive(Default)]
struct Disk {
    data: Mutex<Vec<u8>>,
    cc: Mutex<u32>,
    reads: AtomicUsize,
    writes: AtomicUsize,
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

struct RamTransport(Arc<Disk>);

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

fn params(name: &str) -> AttachParams {
    AttachParams {
        name: name.into(),
        trtype: "TCP".into(),
        traddr: "127.0.0.1".into(),
        trsvcid: Some("4420".into()),
        subnqn: Some("nqn.2016-06.io.spdk:ram".into()),
        ..Default::default()
    }
}

type Slot = Rc<RefCell<Vec<IoCompletion>>>;

fn sink(s: &Slot) -> impl FnOnce(IoCompletion) + 'static {
    let s = Rc::clone(s);
    move |c| s.borrow_mut().push(c)
}

fn run_until(tt: &TestThreads, s: &Slot, n: usize) {
    for _ in 0..10_000 {
        tt.poll_threads();
        if s.borrow().len() >= n {
            return;
        }
    }
    panic!("I/O did not complete");
}

#[test]
fn attach_creates_bdev_and_io_round_trips_with_splitting() {
    let tt = TestThreads::new(1);
    tt.set_current(0);
    let disk = Arc::new(Disk {
        data: Mutex::new(vec![0xEE; BLOCKS as usize * BS]),
        ..Default::default()
    });
    let names =
        bdev_nvme::attach_with_transport(&params("RamA"), Arc::new(RamTransport(disk.clone())))
            .unwrap();
    assert_eq!(names, vec!["RamAn1".to_string()]);
    let b = bdev::get_by_name("RamAn1").unwrap();
    assert_eq!((b.num_blocks(), b.data_block_size()), (BLOCKS, 512));
    assert_eq!(
        bdev_nvme::attach_with_transport(&params("RamA"), Arc::new(RamTransport(disk.clone())))
            .unwrap_err(),
        BdevNvmeError::Exists("RamA".into())
    );
    let d = open_ext("RamAn1", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    // 40 blocks with MDTS 8 KiB (16 blocks): three commands each way.
    let data: Vec<u8> = (0..40 * BS).map(|i| (i % 251) as u8).collect();
    ch.write(IoVecs::from_vec(data.clone()), 100, 40, sink(&s));
    run_until(&tt, &s, 1);
    assert_eq!(s.borrow()[0].status, IoStatus::Success);
    assert_eq!(disk.writes.load(Ordering::SeqCst), 3);
    assert_eq!(&disk.data.lock().unwrap()[100 * BS..140 * BS], &data[..]);
    ch.read(IoVecs::from_vec(vec![0; 40 * BS]), 100, 40, sink(&s));
    run_until(&tt, &s, 2);
    assert_eq!(disk.reads.load(Ordering::SeqCst), 3);
    let c = s.borrow_mut().pop().unwrap();
    assert_eq!(c.status, IoStatus::Success);
    assert_eq!(c.into_bufs().unwrap().0.to_vec(), data);
    ch.write_zeroes(100, 8, sink(&s));
    ch.unmap(120, 4, sink(&s));
    ch.flush(0, BLOCKS, sink(&s));
    run_until(&tt, &s, 4);
    assert!(s.borrow().iter().all(|c| c.status == IoStatus::Success));
    {
        let disk = disk.data.lock().unwrap();
        assert!(disk[100 * BS..108 * BS].iter().all(|&b| b == 0));
        assert_eq!(&disk[108 * BS..120 * BS], &data[8 * BS..20 * BS]);
        assert!(disk[120 * BS..124 * BS].iter().all(|&b| b == 0));
    }
    let info = bdev_nvme::controller("RamA").unwrap().info_json();
    assert_eq!(info["state"], "enabled");
    assert_eq!(info["cntlid"], 1);
    assert_eq!(info["trid"]["subnqn"], "nqn.2016-06.io.spdk:ram");
    assert_eq!(info["trid"]["trtype"], "TCP");
    drop(ch);
    d.close();
    let detached = Rc::new(RefCell::new(None));
    let d2 = Rc::clone(&detached);
    bdev_nvme::detach("RamA", move |r| *d2.borrow_mut() = Some(r)).unwrap();
    for _ in 0..1000 {
        tt.poll_threads();
        if detached.borrow().is_some() {
            break;
        }
    }
    assert_eq!(*detached.borrow(), Some(Ok(())));
    assert!(bdev::get_by_name("RamAn1").is_none());
    assert!(bdev_nvme::controller("RamA").is_none());
    // CC.SHN = normal was written on detach.
    assert_eq!((*disk.cc.lock().unwrap() >> 14) & 3, 1);
    assert_eq!(
        bdev_nvme::detach("RamA", |_| {}).unwrap_err(),
        BdevNvmeError::NotFound("RamA".into())
    );
}

#[test]
fn attach_to_unreachable_target_fails_with_enodev() {
    let tt = TestThreads::new(1);
    tt.set_current(0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut p = params("Unreach");
    p.trsvcid = Some(port.to_string());
    let e = bdev_nvme::attach(&p).unwrap_err();
    assert_eq!(e.errno(), 19, "{e}");
    assert!(bdev_nvme::controller("Unreach").is_none());
}
