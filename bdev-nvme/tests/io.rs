//! NVMe bdevs over a RAM-backed scripted controller (an in-memory `nvme::host` transport):
//! attach, split reads/writes, write zeroes, unmap, flush, controller info, detach.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bdev::{IoCompletion, IoStatus, IoVecs, open_ext};
use bdev_nvme::BdevNvmeError;
use common::{BLOCKS, BS, Disk, RamTransport, params};
use env::testing::TestThreads;

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
