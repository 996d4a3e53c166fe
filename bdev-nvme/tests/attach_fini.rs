//! An attach still connecting when the bdev layer finalizes (app shutdown) is dropped when it
//! finishes: no controller and no bdev join a finalized layer, the caller gets EPERM.
//!
//! Its own test binary: `bdev::fini` acts on the process-wide bdev registry.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Disk, RamTransport, params, rpc_setup};

type AttachOut = Rc<RefCell<Option<Result<Vec<String>, bdev_nvme::BdevNvmeError>>>>;

#[test]
fn attach_finishing_after_fini_adds_no_controller_or_bdev() {
    // Registers the nvme module with the bdev layer (its fini runs in bdev::fini).
    let (tt, _reg) = rpc_setup();
    let out: AttachOut = Rc::default();
    let o2 = Rc::clone(&out);
    bdev_nvme::attach_with_transport_async(
        &params("LateRam"),
        Arc::new(RamTransport(Arc::new(Disk::default()))),
        move |r| *o2.borrow_mut() = Some(r),
    );
    // The bdev layer finalizes (app shutdown) before the Thread sees the attach's result.
    bdev::fini();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.borrow().is_none() && Instant::now() < deadline {
        tt.advance_time(Duration::from_millis(1));
        tt.poll_threads();
        std::thread::sleep(Duration::from_micros(200));
    }
    let r = out.borrow_mut().take().unwrap();
    let e = r.unwrap_err();
    assert_eq!(e.errno(), 1);
    assert_eq!(
        e.to_string(),
        "bdev_nvme was finalized while controller LateRam was being attached"
    );
    assert!(bdev_nvme::controller("LateRam").is_none());
    assert!(bdev::get_by_name("LateRamn1").is_none());
}
