//! Compare emulation reads into env's iobuf pool once the app has set it up (its own test
//! process: the pool is global).
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bdev::module::{BdevOps, BdevProps, register_bdev};
use bdev::{BdevError, BdevIo, IoRequest, IoStatus, IoType, IoVecs, open_ext};
use env::testing::TestThreads;

/// A bdev whose every block reads as 0x3C.
struct Pattern;

impl BdevOps for Pattern {
    type Channel = ();
    fn create_channel(&self) -> Result<(), BdevError> {
        Ok(())
    }
    fn submit_request(&self, _ch: &(), mut io: BdevIo) {
        if let IoRequest::Read { bufs, .. } = io.request_mut() {
            let n = bufs.total_len();
            bufs.copy_from_slice_at(0, &vec![0x3C; n]);
        }
        io.complete(IoStatus::Success);
    }
    fn io_type_supported(&self, t: IoType) -> bool {
        t == IoType::Read
    }
}

#[test]
fn emulated_compare_reads_into_an_iobuf_from_the_pool() {
    env::iobuf_set_options(env::IobufOpts {
        small_pool_count: 64,
        large_pool_count: 8,
        ..env::IobufOpts::default()
    })
    .unwrap();
    env::iobuf::iobuf_initialize().unwrap();
    let tt = TestThreads::new(1);
    register_bdev(
        "pattern",
        BdevProps::new("iob_cmp", 512, 64),
        Arc::new(Pattern),
    )
    .unwrap();
    tt.set_current(0);
    let d = open_ext("iob_cmp", false, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    for v in [0x3C, 0x3D] {
        let g = Rc::clone(&got);
        // 8 KiB: one small iobuf.
        ch.compare(IoVecs::from_vec(vec![v; 8192]), 0, 16, move |c| {
            g.borrow_mut().push(c.status)
        });
    }
    tt.poll_threads();
    assert_eq!(*got.borrow(), vec![IoStatus::Success, IoStatus::Miscompare]);
    let stats = env::iobuf_get_stats();
    let default = stats
        .iter()
        .find(|m| m.module == env::iobuf::DEFAULT_MODULE)
        .unwrap();
    assert_eq!(default.small_pool.cache + default.small_pool.main, 2);
}
