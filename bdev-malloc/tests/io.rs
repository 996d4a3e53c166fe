//! I/O through the bdev layer on a malloc bdev, driven on env::testing threads.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bdev::{BdevEvent, ClaimType, InvalidIo, IoStatus, IoVec, IoVecs, QosLimits, open_ext};
use bdev_malloc::MallocOpts;
use common::*;
use env::testing::TestThreads;

const BS: usize = 512;

fn malloc(name: &str, blocks: u64) {
    bdev_malloc::create(&MallocOpts::new(name, blocks, BS as u32)).unwrap();
}

fn read_blocks(tt: &TestThreads, ch: &bdev::BdevChannel, off: u64, n: u64) -> Vec<u8> {
    let s = slot();
    ch.read(bufs(vec![0; n as usize * BS]), off, n, into_slot(&s));
    tt.poll_threads();
    let c = take(&s);
    assert_eq!(c.status, IoStatus::Success);
    c.into_bufs().unwrap().0.to_vec()
}

#[test]
fn write_on_one_thread_reads_back_byte_for_byte_on_another() {
    let tt = TestThreads::new(2);
    malloc("io_rw", 64);
    let desc = open_ext("io_rw", true, |_| {}).unwrap();
    tt.set_current(0);
    let ch0 = desc.get_io_channel().unwrap();
    let data = pattern(3 * BS, 7);
    // Two segments of uneven length.
    let mut v = IoVecs::new();
    v.push(IoVec::from_vec(data[..700].to_vec()));
    v.push(IoVec::from_vec(data[700..].to_vec()));
    let s = slot();
    ch0.write(v, 5, 3, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);

    tt.set_current(1);
    let ch1 = desc.get_io_channel().unwrap();
    assert_eq!(read_blocks(&tt, &ch1, 5, 3), data);
    assert_eq!(read_blocks(&tt, &ch1, 4, 1), vec![0; BS]);
    assert_eq!(read_blocks(&tt, &ch1, 8, 1), vec![0; BS]);
}

#[test]
fn completion_never_runs_inside_submit() {
    let tt = TestThreads::new(1);
    malloc("io_reentry", 8);
    let desc = open_ext("io_reentry", true, |_| {}).unwrap();
    tt.set_current(0);
    let ch = desc.get_io_channel().unwrap();
    let done = Rc::new(Cell::new(false));
    let d2 = Rc::clone(&done);
    ch.flush(0, 8, move |c| {
        assert_eq!(c.status, IoStatus::Success);
        d2.set(true);
    });
    assert!(!done.get());
    // Invalid input too completes later, not inline.
    let s = slot();
    ch.read(bufs(vec![0; BS]), 8, 1, into_slot(&s));
    assert!(s.borrow().is_none());
    tt.poll_threads();
    assert!(done.get());
    assert_eq!(take(&s).status, IoStatus::Invalid(InvalidIo::OutOfRange));
}

#[test]
fn bad_inputs_fail_with_exact_status_and_touch_nothing_else() {
    let tt = TestThreads::new(1);
    malloc("io_bad", 16);
    let desc = open_ext("io_bad", true, |_| {}).unwrap();
    tt.set_current(0);
    let ch = desc.get_io_channel().unwrap();
    // Fill the whole bdev with a known pattern.
    let all = pattern(16 * BS, 3);
    let s = slot();
    ch.write(bufs(all.clone()), 0, 16, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);

    let run = |req: bdev::IoRequest| {
        let s = slot();
        ch.submit(req, into_slot(&s));
        tt.poll_threads();
        take(&s)
    };
    use bdev::IoRequest::*;
    let cases: Vec<(bdev::IoRequest, InvalidIo)> = vec![
        (
            Write {
                offset_blocks: 15,
                num_blocks: 2,
                bufs: bufs(vec![0xEE; 2 * BS]),
            },
            InvalidIo::OutOfRange,
        ),
        (
            Write {
                offset_blocks: u64::MAX,
                num_blocks: 2,
                bufs: bufs(vec![0xEE; 2 * BS]),
            },
            InvalidIo::OutOfRange,
        ),
        (
            Write {
                offset_blocks: 0,
                num_blocks: 0,
                bufs: bufs(vec![0xEE; BS]),
            },
            InvalidIo::ZeroLength,
        ),
        (
            WriteZeroes {
                offset_blocks: 10,
                num_blocks: 7,
            },
            InvalidIo::OutOfRange,
        ),
        (
            Unmap {
                offset_blocks: 3,
                num_blocks: 0,
            },
            InvalidIo::ZeroLength,
        ),
        (
            Copy {
                dst_offset_blocks: 14,
                src_offset_blocks: 0,
                num_blocks: 3,
            },
            InvalidIo::OutOfRange,
        ),
        (
            Flush {
                offset_blocks: 16,
                num_blocks: 1,
            },
            InvalidIo::OutOfRange,
        ),
    ];
    for (req, want) in cases {
        let t = req.io_type();
        let c = run(req);
        assert_eq!(c.status, IoStatus::Invalid(want), "{t:?}");
    }
    // Short iovec: the window is 511 bytes of a 1024-byte buffer; the rest of the caller's
    // buffer must stay untouched.
    let c = run(Read {
        offset_blocks: 2,
        num_blocks: 1,
        bufs: IoVecs::single(IoVec::new(vec![0x55; 1024], 100, 511).unwrap()),
    });
    assert_eq!(c.status, IoStatus::Invalid(InvalidIo::BufferTooShort));
    let seg = c.into_bufs().unwrap().0.into_segments().remove(0);
    let bdev::IoBufStorage::Vec(raw) = seg.into_storage() else {
        panic!("vec storage")
    };
    assert_eq!(raw, vec![0x55; 1024]);
    // A valid read into a window leaves the caller's bytes around the window intact.
    let c = run(Read {
        offset_blocks: 2,
        num_blocks: 1,
        bufs: IoVecs::single(IoVec::new(vec![0x55; 1024], 100, 512).unwrap()),
    });
    assert_eq!(c.status, IoStatus::Success);
    let seg = c.into_bufs().unwrap().0.into_segments().remove(0);
    let bdev::IoBufStorage::Vec(raw) = seg.into_storage() else {
        panic!("vec storage")
    };
    assert_eq!(&raw[..100], &[0x55; 100][..]);
    assert_eq!(&raw[100..612], &all[2 * BS..3 * BS]);
    assert_eq!(&raw[612..], &[0x55; 412][..]);
    // The backing store is unchanged everywhere (neighbours of every refused range included).
    assert_eq!(read_blocks(&tt, &ch, 0, 16), all);

    // Writes through a read-only descriptor are refused.
    let ro = open_ext("io_bad", false, |_| {}).unwrap();
    let rch = ro.get_io_channel().unwrap();
    let s = slot();
    rch.write(bufs(vec![0; BS]), 0, 1, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Invalid(InvalidIo::ReadOnly));
    assert_eq!(read_blocks(&tt, &ch, 0, 16), all);
}

#[test]
fn unmap_zeroes_compare_copy_and_compare_and_write() {
    let tt = TestThreads::new(1);
    malloc("io_ops", 32);
    let desc = open_ext("io_ops", true, |_| {}).unwrap();
    tt.set_current(0);
    let ch = desc.get_io_channel().unwrap();
    let data = pattern(8 * BS, 9);
    let s = slot();
    ch.write(bufs(data.clone()), 0, 8, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);

    ch.copy(20, 0, 8, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);
    assert_eq!(read_blocks(&tt, &ch, 20, 8), data);

    ch.compare(bufs(data[..BS].to_vec()), 20, 1, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);
    ch.compare(bufs(vec![0; BS]), 20, 1, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Miscompare);

    ch.compare_and_write(
        bufs(vec![0; BS]),
        bufs(vec![0xAB; BS]),
        21,
        1,
        into_slot(&s),
    );
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Miscompare);
    assert_eq!(read_blocks(&tt, &ch, 21, 1), data[BS..2 * BS].to_vec());
    ch.compare_and_write(
        bufs(data[BS..2 * BS].to_vec()),
        bufs(vec![0xAB; BS]),
        21,
        1,
        into_slot(&s),
    );
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);
    assert_eq!(read_blocks(&tt, &ch, 21, 1), vec![0xAB; BS]);

    ch.unmap(1, 2, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);
    ch.write_zeroes(5, 1, into_slot(&s));
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);
    let mut want = data.clone();
    want[BS..3 * BS].fill(0);
    want[5 * BS..6 * BS].fill(0);
    assert_eq!(read_blocks(&tt, &ch, 0, 8), want);
}

#[test]
fn claims_follow_spdk_rules() {
    malloc("io_claim", 8);
    let w = open_ext("io_claim", true, |_| {}).unwrap();
    w.claim(ClaimType::ExclusiveWrite, "test").unwrap();
    assert_eq!(w.bdev().claim_type(), Some("exclusive_write"));
    // A second writer and a second claim are refused with EPERM.
    assert_eq!(open_ext("io_claim", true, |_| {}).unwrap_err().errno(), 1);
    let r = open_ext("io_claim", false, |_| {}).unwrap();
    assert_eq!(
        r.claim(ClaimType::ReadManyWriteNone, "other")
            .unwrap_err()
            .errno(),
        1
    );
    drop(w);
    assert_eq!(r.bdev().claim_type(), None);
    // Read-many-write-none: read-only claimants share; writers are refused.
    r.claim(ClaimType::ReadManyWriteNone, "a").unwrap();
    let r2 = open_ext("io_claim", false, |_| {}).unwrap();
    r2.claim(ClaimType::ReadManyWriteNone, "b").unwrap();
    assert_eq!(open_ext("io_claim", true, |_| {}).unwrap_err().errno(), 1);
    drop(r);
    drop(r2);
    // Read-many-write-one needs a writable descriptor (EINVAL) and no other writer (EPERM).
    let ro = open_ext("io_claim", false, |_| {}).unwrap();
    assert_eq!(
        ro.claim(ClaimType::ReadManyWriteOne, "m")
            .unwrap_err()
            .errno(),
        22
    );
    let w1 = open_ext("io_claim", true, |_| {}).unwrap();
    let w2 = open_ext("io_claim", true, |_| {}).unwrap();
    assert_eq!(
        w1.claim(ClaimType::ReadManyWriteOne, "m")
            .unwrap_err()
            .errno(),
        1
    );
    drop(w2);
    w1.claim(ClaimType::ReadManyWriteOne, "m").unwrap();
    drop(w1);
    // Shared claims need a key; the same key shares, another key is refused.
    let s1 = open_ext("io_claim", true, |_| {}).unwrap();
    assert_eq!(
        s1.claim(ClaimType::ReadManyWriteShared, "m")
            .unwrap_err()
            .errno(),
        22
    );
    s1.claim_shared(7, "m").unwrap();
    let s2 = open_ext("io_claim", true, |_| {}).unwrap();
    assert_eq!(s2.claim_shared(8, "m").unwrap_err().errno(), 1);
    s2.claim_shared(7, "m").unwrap();
    drop((s1, s2, ro));
    // v1 module claim promotes a read-only descriptor and blocks writers until released.
    let d = open_ext("io_claim", false, |_| {}).unwrap();
    bdev::claim_bdev(&d.bdev(), Some(&d), "v1").unwrap();
    assert!(d.is_writable());
    assert_eq!(
        bdev::claim_bdev(&d.bdev(), None, "v1b")
            .unwrap_err()
            .errno(),
        1
    );
    assert_eq!(open_ext("io_claim", true, |_| {}).unwrap_err().errno(), 1);
    bdev::release_bdev(&d.bdev()).unwrap();
    open_ext("io_claim", true, |_| {}).unwrap();
}

#[test]
fn hot_remove_with_io_in_flight_notifies_and_destructs_after_last_close() {
    let tt = TestThreads::new(2);
    malloc("io_remove", 8);
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = Arc::clone(&events);
    tt.set_current(1);
    let desc = open_ext("io_remove", true, move |ev| e2.lock().unwrap().push(ev)).unwrap();
    let ch = desc.get_io_channel().unwrap();
    let s = slot();
    ch.write(bufs(vec![0x11; BS]), 0, 1, into_slot(&s));
    // Delete while the write is in flight (its completion not yet delivered).
    tt.set_current(0);
    let gone = slot();
    let g2 = Rc::clone(&gone);
    bdev_malloc::delete("io_remove", move |r| *g2.borrow_mut() = Some(r)).unwrap();
    assert_eq!(
        open_ext("io_remove", false, |_| {}).unwrap_err().errno(),
        19
    );
    assert_eq!(
        bdev_malloc::delete("io_remove", |_| {})
            .unwrap_err()
            .errno(),
        16
    );
    tt.poll_threads();
    assert_eq!(take(&s).status, IoStatus::Success);
    assert_eq!(*events.lock().unwrap(), vec![BdevEvent::Remove]);
    assert!(
        gone.borrow().is_none(),
        "destructed while a descriptor is open"
    );
    assert!(bdev::get_by_name("io_remove").is_some());
    drop(ch);
    drop(desc);
    tt.poll_threads();
    assert_eq!(take(&gone), Ok(()));
    assert!(bdev::get_by_name("io_remove").is_none());
    // The name is free again.
    malloc("io_remove", 8);
}

#[test]
fn iostat_aggregates_channels_on_all_threads() {
    let tt = TestThreads::new(2);
    malloc("io_stat", 16);
    let desc = open_ext("io_stat", true, |_| {}).unwrap();
    for t in 0..2 {
        tt.set_current(t);
        let ch = desc.get_io_channel().unwrap();
        let s = slot();
        ch.write(bufs(vec![1; 2 * BS]), 0, 2, into_slot(&s));
        tt.poll_threads();
        take(&s);
        ch.read(bufs(vec![0; BS]), 0, 1, into_slot(&s));
        tt.poll_threads();
        take(&s);
        ch.unmap(4, 4, into_slot(&s));
        tt.poll_threads();
        take(&s);
        ch.read(bufs(vec![0; BS]), 99, 1, into_slot(&s));
        tt.poll_threads();
        take(&s);
        std::mem::forget(ch); // keep both channels alive
    }
    tt.set_current(0);
    let st = slot();
    let st2 = Rc::clone(&st);
    desc.bdev()
        .iostat(move |s| *st2.borrow_mut() = Some(s))
        .unwrap();
    tt.poll_threads();
    let s = take(&st);
    assert_eq!(s.num_write_ops, 2);
    assert_eq!(s.bytes_written, 4 * BS as u64);
    assert_eq!(s.num_read_ops, 2);
    assert_eq!(s.bytes_read, 2 * BS as u64);
    assert_eq!(s.num_unmap_ops, 2);
    assert_eq!(s.bytes_unmapped, 8 * BS as u64);
    assert_eq!(s.num_io_errors, 2);
}

#[test]
fn qos_iops_limit_holds_io_until_the_clock_advances() {
    let tt = TestThreads::new(1);
    malloc("io_qos", 16);
    let desc = open_ext("io_qos", true, |_| {}).unwrap();
    desc.bdev()
        .set_qos_limits(QosLimits {
            rw_ios_per_sec: 2000,
            ..QosLimits::default()
        })
        .unwrap();
    tt.set_current(0);
    let ch = desc.get_io_channel().unwrap();
    let done = Rc::new(Cell::new(0u32));
    for _ in 0..10 {
        let d = Rc::clone(&done);
        ch.read(bufs(vec![0; BS]), 0, 1, move |c| {
            assert_eq!(c.status, IoStatus::Success);
            d.set(d.get() + 1);
        });
    }
    tt.poll_threads();
    // 2000 IOPS = 2 per 1 ms timeslice.
    assert_eq!(done.get(), 2);
    assert_eq!(ch.qos_queued(), 8);
    tt.advance_time(Duration::from_millis(1));
    tt.poll_threads();
    assert_eq!(done.get(), 4);
    tt.advance_time(Duration::from_millis(3));
    tt.poll_threads();
    // The bucket does not accumulate idle slices beyond one timeslice's quota.
    assert_eq!(done.get(), 6);
    for _ in 0..2 {
        tt.advance_time(Duration::from_millis(1));
        tt.poll_threads();
    }
    assert_eq!(done.get(), 10);
    // Removing the limit lets I/O straight through.
    desc.bdev().set_qos_limits(QosLimits::default()).unwrap();
    for _ in 0..5 {
        let d = Rc::clone(&done);
        ch.read(bufs(vec![0; BS]), 0, 1, move |_| d.set(d.get() + 1));
    }
    tt.poll_threads();
    assert_eq!(done.get(), 15);
}

#[test]
fn nomem_when_channel_limit_reached_and_queue_io_wait_resumes() {
    // bdev_io_pool_size is global; this test only reads it.
    let limit = bdev::options().bdev_io_pool_size as usize;
    let tt = TestThreads::new(1);
    malloc("io_nomem", 4);
    let desc = open_ext("io_nomem", true, |_| {}).unwrap();
    tt.set_current(0);
    let ch = desc.get_io_channel().unwrap();
    let statuses = Rc::new(std::cell::RefCell::new(Vec::new()));
    // Malloc completes at once, so outstanding drops only when the poller runs: submit more
    // than the limit of flushes without polling.
    for _ in 0..limit + 1 {
        let st = Rc::clone(&statuses);
        ch.flush(0, 1, move |c| st.borrow_mut().push(c.status));
    }
    assert_eq!(ch.outstanding(), limit as u64);
    let woke = Rc::new(Cell::new(false));
    let w2 = Rc::clone(&woke);
    ch.queue_io_wait(move || w2.set(true));
    tt.poll_threads();
    let st = statuses.borrow();
    assert_eq!(st.len(), limit + 1);
    assert_eq!(st.iter().filter(|s| **s == IoStatus::Nomem).count(), 1);
    assert_eq!(st[limit], IoStatus::Nomem);
    assert!(woke.get());
}
