//! SPDK semantics of the bdev layer with a RAM module that can hold I/O: reset (freeze, abort,
//! queueing, drain timeout), compare and compare-and-write emulation, and iostat
//! (`io_error`, reset modes, per channel, queue depth) through the RPCs.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bdev::module::{BdevOps, BdevProps, register_bdev};
use bdev::{
    BdevChannel, BdevError, BdevIo, IoCompletion, IoRequest, IoStatus, IoType, IoVecs, QosLimits,
    open_ext,
};
use env::testing::TestThreads;
use serde_json::{Value, json};

const BS: usize = 512;

thread_local! {
    static HELD: RefCell<Vec<BdevIo>> = const { RefCell::new(Vec::new()) };
}

/// RAM bdev that records what reaches it and can hold I/O by type.
#[derive(Default)]
struct Mem {
    data: Mutex<Vec<u8>>,
    hold: Mutex<Vec<IoType>>,
    nomem_left: AtomicU32,
    fail_writes: Mutex<Option<IoStatus>>,
    seen: Mutex<Vec<IoType>>,
    native_compare: bool,
    reset_supported: AtomicBool,
}

impl Mem {
    fn seen(&self, t: IoType) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|x| **x == t)
            .count()
    }

    fn hold(&self, types: &[IoType]) {
        *self.hold.lock().unwrap() = types.to_vec();
    }

    fn execute(&self, mut io: BdevIo) {
        let status = match io.request_mut() {
            IoRequest::Read {
                offset_blocks,
                bufs,
                ..
            } => {
                let d = self.data.lock().unwrap();
                let at = *offset_blocks as usize * BS;
                let n = bufs.total_len();
                bufs.copy_from_slice_at(0, &d[at..at + n]);
                IoStatus::Success
            }
            IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs,
            } => match *self.fail_writes.lock().unwrap() {
                Some(s) => s,
                None => {
                    let mut d = self.data.lock().unwrap();
                    let at = *offset_blocks as usize * BS;
                    let n = *num_blocks as usize * BS;
                    bufs.copy_to_slice_at(0, &mut d[at..at + n]);
                    IoStatus::Success
                }
            },
            IoRequest::Compare {
                offset_blocks,
                bufs,
                ..
            } => {
                let d = self.data.lock().unwrap();
                let at = *offset_blocks as usize * BS;
                if bufs.eq_slice_at(0, &d[at..at + bufs.total_len()]) {
                    IoStatus::Success
                } else {
                    IoStatus::Miscompare
                }
            }
            _ => IoStatus::Success,
        };
        io.complete(status);
    }
}

impl BdevOps for Mem {
    type Channel = ();
    fn create_channel(&self) -> Result<(), BdevError> {
        Ok(())
    }
    fn submit_request(&self, _ch: &(), io: BdevIo) {
        let t = io.io_type();
        self.seen.lock().unwrap().push(t);
        if self.nomem_left.load(Ordering::SeqCst) > 0 {
            self.nomem_left.fetch_sub(1, Ordering::SeqCst);
            return io.complete(IoStatus::Nomem);
        }
        if self.hold.lock().unwrap().contains(&t) {
            return HELD.with(|h| h.borrow_mut().push(io));
        }
        self.execute(io);
    }
    fn io_type_supported(&self, t: IoType) -> bool {
        match t {
            IoType::Read | IoType::Write | IoType::Flush => true,
            IoType::Reset => self.reset_supported.load(Ordering::SeqCst),
            IoType::Compare => self.native_compare,
            _ => false,
        }
    }
}

fn mem(name: &str, drain_timeout: u16) -> Arc<Mem> {
    let ops = Arc::new(Mem {
        data: Mutex::new(vec![0; 16 * BS]),
        reset_supported: AtomicBool::new(true),
        ..Mem::default()
    });
    let mut p = BdevProps::new(name, BS as u32, 16);
    p.reset_io_drain_timeout = drain_timeout;
    register_bdev("mem", p, Arc::clone(&ops)).unwrap();
    ops
}

fn held() -> Vec<BdevIo> {
    HELD.with(|h| h.borrow_mut().drain(..).collect())
}

type Slot = Rc<RefCell<Vec<IoCompletion>>>;

fn sink(s: &Slot) -> impl FnOnce(IoCompletion) + 'static {
    let s = Rc::clone(s);
    move |c| s.borrow_mut().push(c)
}

fn statuses(s: &Slot) -> Vec<IoStatus> {
    s.borrow().iter().map(|c| c.status).collect()
}

fn block(v: u8) -> IoVecs {
    IoVecs::from_vec(vec![v; BS])
}

/// Opens `name` writable on Threads 0 and 1 and returns their channels (Thread 0 current).
fn two_channels(tt: &TestThreads, name: &str) -> (bdev::Desc, BdevChannel, BdevChannel) {
    tt.set_current(0);
    let d = open_ext(name, true, |_| {}).unwrap();
    tt.set_current(1);
    let ch1 = d.get_io_channel().unwrap();
    tt.set_current(0);
    let ch0 = d.get_io_channel().unwrap();
    (d, ch0, ch1)
}

#[test]
fn reset_freezes_every_channel_aborts_held_back_io_and_resets_the_module_once() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_reset", 0);
    let (d, ch0, ch1) = two_channels(&tt, "sem_reset");
    ops.hold(&[IoType::Write, IoType::Reset]);
    let s: Slot = Slot::default();
    // On Thread 1: a write the module holds, then a read the module answers Nomem, which
    // waits in the no-memory queue while the write is outstanding.
    tt.set_current(1);
    ch1.write(block(1), 0, 1, sink(&s));
    ops.nomem_left.store(1, Ordering::SeqCst);
    ch1.read(block(0), 1, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(ch1.outstanding(), 1);
    assert!(s.borrow().is_empty());
    // QoS holds back the second of two reads on Thread 0 (1 I/O per 1 ms slice per channel).
    tt.set_current(0);
    d.bdev()
        .set_qos_limits(QosLimits {
            rw_ios_per_sec: 1000,
            ..QosLimits::default()
        })
        .unwrap();
    let q: Slot = Slot::default();
    ch0.read(block(0), 2, 1, sink(&q));
    ch0.read(block(0), 3, 1, sink(&q));
    assert_eq!(ch0.qos_queued(), 1);
    let r: Slot = Slot::default();
    ch0.reset(sink(&r));
    tt.poll_threads();
    // Both channels frozen, the held-back I/O aborted, the module's reset submitted once, the
    // write at the module left to the module.
    assert!(ch0.is_frozen() && ch1.is_frozen());
    assert_eq!(statuses(&s), vec![IoStatus::Aborted]);
    assert_eq!(statuses(&q), vec![IoStatus::Success, IoStatus::Aborted]);
    assert_eq!(ops.seen(IoType::Reset), 1);
    assert_eq!(ch1.outstanding(), 1);
    assert!(r.borrow().is_empty());
    d.bdev().set_qos_limits(QosLimits::default()).unwrap();
    // During the reset: new I/O on a frozen channel is aborted (SPDK
    // `BDEV_CH_RESET_IN_PROGRESS`), a second reset waits behind the first.
    tt.set_current(1);
    let during: Slot = Slot::default();
    ch1.write(block(2), 4, 1, sink(&during));
    let r2: Slot = Slot::default();
    ch1.reset(sink(&r2));
    tt.poll_threads();
    assert_eq!(statuses(&during), vec![IoStatus::Aborted]);
    assert!(r2.borrow().is_empty());
    assert_eq!(ops.seen(IoType::Reset), 1);
    // The module finishes its reset: channels unfreeze, both resets complete with its status.
    let mut h = held();
    let reset_io = h.remove(1);
    assert_eq!(reset_io.io_type(), IoType::Reset);
    reset_io.complete(IoStatus::Success);
    tt.poll_threads();
    assert_eq!(statuses(&r), vec![IoStatus::Success]);
    assert_eq!(statuses(&r2), vec![IoStatus::Success]);
    assert!(!ch0.is_frozen() && !ch1.is_frozen());
    assert_eq!(ops.seen(IoType::Reset), 1);
    // I/O after the reset runs; the write held since before the reset completes normally.
    ops.hold(&[]);
    let after: Slot = Slot::default();
    ch1.write(block(3), 5, 1, sink(&after));
    ops.execute(h.remove(0));
    tt.poll_threads();
    assert_eq!(statuses(&after), vec![IoStatus::Success]);
    assert_eq!(statuses(&s), vec![IoStatus::Aborted, IoStatus::Success]);
    assert_eq!(ops.data.lock().unwrap()[5 * BS], 3);
    assert_eq!(ops.data.lock().unwrap()[4 * BS], 0);
}

#[test]
fn reset_a_module_fails_completes_every_queued_reset_with_that_status() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_reset_fail", 0);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_reset_fail");
    ops.hold(&[IoType::Reset]);
    let r: Slot = Slot::default();
    ch0.reset(sink(&r));
    tt.set_current(1);
    ch1.reset(sink(&r));
    tt.set_current(0);
    ch0.reset(sink(&r));
    tt.poll_threads();
    assert_eq!(ops.seen(IoType::Reset), 1);
    held().pop().unwrap().complete(IoStatus::Failed);
    tt.poll_threads();
    assert_eq!(statuses(&r), vec![IoStatus::Failed; 3]);
    assert_eq!(ops.seen(IoType::Reset), 1);
    // The next reset starts afresh and reaches the module.
    ops.hold(&[]);
    ch0.reset(sink(&r));
    tt.poll_threads();
    assert_eq!(statuses(&r)[3], IoStatus::Success);
    assert_eq!(ops.seen(IoType::Reset), 2);
}

#[test]
fn reset_with_drain_timeout_skips_the_module_when_io_drains() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_drain_ok", 3);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_drain_ok");
    ops.hold(&[IoType::Write]);
    let w: Slot = Slot::default();
    tt.set_current(1);
    ch1.write(block(7), 0, 1, sink(&w));
    tt.set_current(0);
    let r: Slot = Slot::default();
    ch0.reset(sink(&r));
    tt.poll_threads();
    assert!(r.borrow().is_empty());
    ops.execute(held().pop().unwrap());
    tt.poll_threads();
    assert_eq!(statuses(&w), vec![IoStatus::Success]);
    // Rechecked once a second: nothing outstanding, so the reset succeeds without the module.
    tt.advance_time(Duration::from_millis(999));
    tt.poll_threads();
    assert!(r.borrow().is_empty());
    tt.advance_time(Duration::from_millis(1));
    tt.poll_threads();
    assert_eq!(statuses(&r), vec![IoStatus::Success]);
    assert_eq!(ops.seen(IoType::Reset), 0);
    assert!(!ch1.is_frozen());
}

#[test]
fn reset_with_drain_timeout_resets_the_module_when_io_stays() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_drain_late", 2);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_drain_late");
    ops.hold(&[IoType::Write]);
    let w: Slot = Slot::default();
    tt.set_current(1);
    ch1.write(block(7), 0, 1, sink(&w));
    tt.set_current(0);
    let r: Slot = Slot::default();
    ch0.reset(sink(&r));
    tt.poll_threads();
    tt.advance_time(Duration::from_secs(1));
    tt.poll_threads();
    assert_eq!(ops.seen(IoType::Reset), 0);
    assert!(r.borrow().is_empty());
    tt.advance_time(Duration::from_secs(1));
    tt.poll_threads();
    assert_eq!(ops.seen(IoType::Reset), 1);
    assert_eq!(statuses(&r), vec![IoStatus::Success]);
    assert!(w.borrow().is_empty());
    ops.execute(held().pop().unwrap());
    tt.poll_threads();
    assert_eq!(statuses(&w), vec![IoStatus::Success]);
}

fn fill(ops: &Mem, blk: usize, v: u8) {
    ops.data.lock().unwrap()[blk * BS..(blk + 1) * BS].fill(v);
}

fn take_bufs(s: &Slot, i: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    let c = s.borrow_mut().remove(i);
    let (a, b) = c.into_bufs().unwrap();
    (a.to_vec(), b.map(|b| b.to_vec()))
}

#[test]
fn compare_without_module_support_reads_and_compares() {
    let tt = TestThreads::new(1);
    let ops = mem("sem_cmp", 0);
    fill(&ops, 2, 0xAB);
    tt.set_current(0);
    let d = open_ext("sem_cmp", false, |_| {}).unwrap();
    assert!(!d.bdev().io_type_supported(IoType::Compare));
    assert!(d.bdev().accepts_io_type(IoType::Compare));
    assert!(d.bdev().accepts_io_type(IoType::CompareAndWrite));
    assert!(!d.bdev().accepts_io_type(IoType::Unmap));
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    // Two segments, equal data.
    let mut two = IoVecs::from_vec(vec![0xAB; 100]);
    two.push(bdev::IoVec::from_vec(vec![0xAB; BS - 100]));
    ch.compare(two, 2, 1, sink(&s));
    let mut diff = vec![0xAB; BS];
    diff[BS - 1] = 0xAC;
    ch.compare(IoVecs::from_vec(diff.clone()), 2, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Success, IoStatus::Miscompare]);
    assert_eq!(take_bufs(&s, 1).0, diff);
    assert_eq!(take_bufs(&s, 0).0, vec![0xAB; BS]);
    assert_eq!(ops.seen(IoType::Compare), 0);
    assert_eq!(ops.seen(IoType::Read), 2);
    // A failed read fails the compare.
    ops.hold(&[IoType::Read]);
    ch.compare(block(0xAB), 2, 1, sink(&s));
    tt.poll_threads();
    held().pop().unwrap().complete(IoStatus::Failed);
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Failed]);
}

#[test]
fn compare_and_write_without_module_support_writes_only_on_match() {
    let tt = TestThreads::new(1);
    let ops = mem("sem_caw", 0);
    fill(&ops, 4, 0x11);
    tt.set_current(0);
    let d = open_ext("sem_caw", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    ch.compare_and_write(block(0x11), block(0x22), 4, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Success]);
    assert_eq!(take_bufs(&s, 0), (vec![0x11; BS], Some(vec![0x22; BS])));
    assert_eq!(ops.data.lock().unwrap()[4 * BS..5 * BS], [0x22; BS]);
    // The block now holds 0x22: comparing with 0x11 miscompares and writes nothing.
    ch.compare_and_write(block(0x11), block(0x33), 4, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Miscompare]);
    assert_eq!(take_bufs(&s, 0), (vec![0x11; BS], Some(vec![0x33; BS])));
    assert_eq!(ops.data.lock().unwrap()[4 * BS..5 * BS], [0x22; BS]);
    assert_eq!(ops.seen(IoType::Write), 1);
    // A failed write fails it.
    *ops.fail_writes.lock().unwrap() = Some(IoStatus::Failed);
    ch.compare_and_write(block(0x22), block(0x44), 4, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Failed]);
    // Not through a read-only descriptor.
    let ro = open_ext("sem_caw", false, |_| {}).unwrap();
    let ro_ch = ro.get_io_channel().unwrap();
    ro_ch.compare_and_write(block(0x22), block(0x44), 4, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(
        statuses(&s)[1],
        IoStatus::Invalid(bdev::InvalidIo::ReadOnly)
    );
    assert_eq!(ops.data.lock().unwrap()[4 * BS..5 * BS], [0x22; BS]);
}

#[test]
fn compare_and_write_with_native_compare_uses_it() {
    let tt = TestThreads::new(1);
    let ops = Arc::new(Mem {
        data: Mutex::new(vec![0x5A; 16 * BS]),
        native_compare: true,
        ..Mem::default()
    });
    register_bdev(
        "mem",
        BdevProps::new("sem_caw_native", BS as u32, 16),
        Arc::clone(&ops),
    )
    .unwrap();
    tt.set_current(0);
    let d = open_ext("sem_caw_native", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    ch.compare_and_write(block(0x5A), block(0x01), 0, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Success]);
    assert_eq!(ops.seen(IoType::Compare), 1);
    assert_eq!(ops.seen(IoType::Read), 0);
    assert_eq!(ops.data.lock().unwrap()[0], 0x01);
}

#[test]
fn compare_and_write_locks_its_range_on_every_channel() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_caw_lock", 0);
    fill(&ops, 8, 0x10);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_caw_lock");
    // The compare's read is held at the module: the lock is taken.
    ops.hold(&[IoType::Read]);
    let c0: Slot = Slot::default();
    ch0.compare_and_write(block(0x10), block(0x20), 8, 1, sink(&c0));
    tt.poll_threads();
    assert_eq!(ops.seen(IoType::Read), 1);
    tt.set_current(1);
    let w1: Slot = Slot::default();
    let c1: Slot = Slot::default();
    // Overlapping write and compare-and-write on the other channel wait; a write elsewhere
    // and a read of the locked block proceed.
    ch1.write(block(0x99), 8, 1, sink(&w1));
    ch1.compare_and_write(block(0x20), block(0x30), 8, 1, sink(&c1));
    ch1.write(block(0x77), 9, 1, sink(&w1));
    tt.poll_threads();
    assert_eq!(statuses(&w1), vec![IoStatus::Success]);
    assert_eq!(ops.seen(IoType::Write), 1);
    assert_eq!(ops.data.lock().unwrap()[9 * BS], 0x77);
    ops.hold(&[]);
    let r: Slot = Slot::default();
    ch1.read(block(0), 8, 1, sink(&r));
    tt.poll_threads();
    assert_eq!(statuses(&r), vec![IoStatus::Success]);
    assert_eq!(take_bufs(&r, 0).0, vec![0x10; BS]);
    assert_eq!(ch1.outstanding(), 0);
    // Release the first compare: it writes 0x20 and unlocks; then the waiting write (0x99)
    // runs, and the second compare-and-write (expects 0x20) locks, waits for that write to
    // complete, and finds 0x99.
    ops.execute(held().pop().unwrap());
    tt.poll_threads();
    assert_eq!(statuses(&c0), vec![IoStatus::Success]);
    assert_eq!(statuses(&w1), vec![IoStatus::Success, IoStatus::Success]);
    assert!(c1.borrow().is_empty());
    tt.advance_time(Duration::from_micros(100));
    tt.poll_threads();
    assert_eq!(statuses(&c1), vec![IoStatus::Miscompare]);
    assert_eq!(ops.data.lock().unwrap()[8 * BS..9 * BS], [0x99; BS]);
    let writes: Vec<IoType> = ops.seen.lock().unwrap().clone();
    assert_eq!(
        writes.iter().filter(|t| **t == IoType::Write).count(),
        3,
        "0x77, the first compare-and-write's 0x20, then 0x99: {writes:?}"
    );
}

/// Polls the Threads as interrupt-mode reactors run them (one Thread per reactor): a Thread is
/// polled only when woken — listed in `woken` (an event such as a module completion), a
/// message queued for it, a periodic poller due — or while its last poll was busy. A Thread
/// that went idle sleeps however many always-on pollers it has. Panics if the Threads never
/// all go to sleep (bounded).
fn poll_as_interrupt_mode(tt: &TestThreads, woken: &[usize]) {
    let mut awake: Vec<bool> = (0..tt.len()).map(|i| woken.contains(&i)).collect();
    for _ in 0..10_000 {
        let mut polled = false;
        for (i, a) in awake.iter_mut().enumerate() {
            let t = tt.thread(i);
            let due = t.next_timer_deadline().is_some_and(|d| d <= tt.now());
            if *a || t.has_pending_work() || due {
                *a = tt.poll_thread(i) == env::PollStatus::Busy;
                polled = true;
            }
        }
        if !polled {
            return;
        }
    }
    panic!("threads never went to sleep");
}

#[test]
fn write_held_by_a_range_lock_is_woken_by_the_unlock_message_in_interrupt_mode() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_caw_wake", 0);
    fill(&ops, 8, 0x10);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_caw_wake");
    ops.hold(&[IoType::Read]);
    let c0: Slot = Slot::default();
    ch0.compare_and_write(block(0x10), block(0x20), 8, 1, sink(&c0));
    poll_as_interrupt_mode(&tt, &[0]);
    assert_eq!(ops.seen(IoType::Read), 1);
    // Thread 1's write into the locked block is held; Thread 1 then sleeps.
    tt.set_current(1);
    let w1: Slot = Slot::default();
    let c1: Slot = Slot::default();
    ch1.write(block(0x99), 8, 1, sink(&w1));
    ch1.compare_and_write(block(0x99), block(0x33), 8, 1, sink(&c1));
    poll_as_interrupt_mode(&tt, &[1]);
    assert!(w1.borrow().is_empty() && c1.borrow().is_empty());
    assert_eq!(ops.seen(IoType::Write), 0);
    assert!(!tt.thread(1).has_pending_work());
    // The module completes the compare's read on Thread 0 (only Thread 0 is woken): the
    // compare-and-write writes 0x20 and unlocks; the unlock's message wakes Thread 1, whose
    // held write then runs.
    ops.hold(&[]);
    ops.execute(held().pop().unwrap());
    poll_as_interrupt_mode(&tt, &[0]);
    assert_eq!(statuses(&c0), vec![IoStatus::Success]);
    assert_eq!(statuses(&w1), vec![IoStatus::Success]);
    // The held compare-and-write was retried after the write (submission order) and took the
    // lock while the write was still in flight; its recheck timer wakes Thread 1, then it
    // finds 0x99 and writes 0x33.
    assert!(c1.borrow().is_empty());
    tt.advance_time(Duration::from_micros(100));
    poll_as_interrupt_mode(&tt, &[]);
    assert_eq!(statuses(&c1), vec![IoStatus::Success]);
    assert_eq!(ops.seen(IoType::Write), 3);
    assert_eq!(ops.data.lock().unwrap()[8 * BS..9 * BS], [0x33; BS]);
    assert_eq!(ch1.outstanding(), 0);
}

#[test]
fn write_held_by_a_range_lock_is_aborted_when_its_descriptor_closed_meanwhile() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_caw_closed", 0);
    fill(&ops, 8, 0x10);
    let (d, ch0, ch1) = two_channels(&tt, "sem_caw_closed");
    ops.hold(&[IoType::Read]);
    let c0: Slot = Slot::default();
    ch0.compare_and_write(block(0x10), block(0x20), 8, 1, sink(&c0));
    tt.poll_threads();
    tt.set_current(1);
    let w1: Slot = Slot::default();
    ch1.write(block(0x99), 8, 1, sink(&w1));
    tt.poll_threads();
    assert!(w1.borrow().is_empty());
    // The descriptor closes while the write is held; then the lock is released. The
    // compare-and-write's own write is refused (Aborted, so it fails), the held write
    // completes Aborted, and no write reaches the module.
    drop(d);
    ops.hold(&[]);
    ops.execute(held().pop().unwrap());
    tt.poll_threads();
    assert_eq!(statuses(&c0), vec![IoStatus::Failed]);
    assert_eq!(statuses(&w1), vec![IoStatus::Aborted]);
    assert_eq!(ops.seen(IoType::Write), 0);
    assert_eq!(ops.data.lock().unwrap()[8 * BS..9 * BS], [0x10; BS]);
}

#[test]
fn compare_and_write_submitted_off_a_thread_fails_without_touching_the_data() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_caw_nothread", 0);
    fill(&ops, 8, 0x10);
    let (_d, ch0, _ch1) = two_channels(&tt, "sem_caw_nothread");
    // Off a Thread the lock cannot wait for writes in flight: the compare-and-write fails
    // (later, from the channel's poller) instead of running unprotected, and releases its lock.
    tt.clear_current();
    let c0: Slot = Slot::default();
    ch0.compare_and_write(block(0x10), block(0x20), 8, 1, sink(&c0));
    assert!(c0.borrow().is_empty());
    tt.poll_threads();
    assert_eq!(statuses(&c0), vec![IoStatus::Failed]);
    assert_eq!(ops.seen(IoType::Read), 0);
    assert_eq!(ops.seen(IoType::Write), 0);
    assert_eq!(ops.data.lock().unwrap()[8 * BS..9 * BS], [0x10; BS]);
    tt.set_current(0);
    let w: Slot = Slot::default();
    ch0.write(block(0x55), 8, 1, sink(&w));
    tt.poll_threads();
    assert_eq!(statuses(&w), vec![IoStatus::Success]);
    assert_eq!(ops.data.lock().unwrap()[8 * BS], 0x55);
}

#[test]
fn reset_submitted_off_a_thread_fails_later_and_leaves_the_reset_in_progress_alone() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_reset_nothread", 0);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_reset_nothread");
    // No reset in progress: it fails from the poller, nothing is frozen, the module sees none.
    tt.clear_current();
    let r0: Slot = Slot::default();
    ch0.reset(sink(&r0));
    assert!(r0.borrow().is_empty());
    assert!(!ch0.is_frozen() && !ch1.is_frozen());
    tt.poll_threads();
    assert_eq!(statuses(&r0), vec![IoStatus::Failed]);
    assert_eq!(ops.seen(IoType::Reset), 0);
    // With a reset in progress (held by the module), one off a Thread fails on its own and the
    // first keeps the channels frozen until it completes with the module's status.
    ops.hold(&[IoType::Reset]);
    tt.set_current(0);
    let r1: Slot = Slot::default();
    ch0.reset(sink(&r1));
    tt.poll_threads();
    assert!(ch0.is_frozen() && ch1.is_frozen());
    tt.clear_current();
    let r2: Slot = Slot::default();
    ch1.reset(sink(&r2));
    tt.poll_threads();
    assert_eq!(statuses(&r2), vec![IoStatus::Failed]);
    assert!(r1.borrow().is_empty());
    assert!(ch0.is_frozen() && ch1.is_frozen());
    held().pop().unwrap().complete(IoStatus::Success);
    tt.poll_threads();
    assert_eq!(statuses(&r1), vec![IoStatus::Success]);
    assert_eq!(statuses(&r2), vec![IoStatus::Failed]);
    assert!(!ch0.is_frozen() && !ch1.is_frozen());
    assert_eq!(ops.seen(IoType::Reset), 1);
}

#[test]
fn channel_created_during_a_reset_starts_unfrozen_as_spdk() {
    // SPDK v25.09 `bdev_channel_create` sets `ch->flags = 0` whatever `reset_in_progress` is:
    // a channel created while a reset runs is not frozen and its I/O reaches the module.
    let tt = TestThreads::new(3);
    let ops = mem("sem_reset_newch", 0);
    let (d, ch0, ch1) = two_channels(&tt, "sem_reset_newch");
    ops.hold(&[IoType::Reset]);
    let r: Slot = Slot::default();
    ch0.reset(sink(&r));
    tt.poll_threads();
    assert!(ch0.is_frozen() && ch1.is_frozen());
    tt.set_current(2);
    let ch2 = d.get_io_channel().unwrap();
    assert!(!ch2.is_frozen());
    let w: Slot = Slot::default();
    ch2.write(block(0x42), 3, 1, sink(&w));
    tt.poll_threads();
    assert_eq!(statuses(&w), vec![IoStatus::Success]);
    assert_eq!(ops.data.lock().unwrap()[3 * BS], 0x42);
    assert!(ch0.is_frozen() && ch1.is_frozen() && !ch2.is_frozen());
    held().pop().unwrap().complete(IoStatus::Success);
    tt.poll_threads();
    assert_eq!(statuses(&r), vec![IoStatus::Success]);
    assert!(!ch0.is_frozen() && !ch1.is_frozen() && !ch2.is_frozen());
}

/// Calls an RPC on the current Thread and returns its answer after polling.
fn rpc_call(tt: &TestThreads, reg: &rpc::RpcRegistry, method: &str, params: Value) -> Value {
    let out: Rc<RefCell<Option<Result<Value, rpc::RpcError>>>> = Rc::default();
    let o2 = Rc::clone(&out);
    reg.call_local(method, Some(params), move |r| *o2.borrow_mut() = Some(r));
    tt.poll_threads();
    match out.borrow_mut().take().unwrap() {
        Ok(v) => v,
        Err(e) => json!({"error": {"code": e.code, "message": e.message}}),
    }
}

fn registry() -> Rc<rpc::RpcRegistry> {
    let reg = rpc::RpcRegistry::new();
    bdev::rpc::register_rpcs(&reg);
    reg.set_state(rpc::RpcState::Runtime);
    reg
}

#[test]
fn get_iostat_counts_errors_by_status_and_per_channel() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_stat", 0);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_stat");
    let s: Slot = Slot::default();
    *ops.fail_writes.lock().unwrap() = Some(IoStatus::NvmeError {
        sct: 0,
        sc: 0x80,
        cdw0: 0,
    });
    ch0.write(block(1), 0, 1, sink(&s));
    ch0.write(block(1), 0, 1, sink(&s));
    *ops.fail_writes.lock().unwrap() = Some(IoStatus::Failed);
    ch0.read(block(0), 0, 1, sink(&s));
    tt.set_current(1);
    ch1.write(block(1), 1, 1, sink(&s));
    ch1.read(block(0), 99, 1, sink(&s)); // refused: out of range, not an io_error
    ch1.read(block(0), 1, 1, sink(&s));
    ch1.read(block(0), 2, 1, sink(&s));
    tt.poll_threads();
    tt.set_current(0);
    let reg = registry();
    let all = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_stat"}));
    assert_eq!(all["tick_rate"], 1_000_000_000u64);
    let e = &all["bdevs"][0];
    assert_eq!(e["name"], "sem_stat");
    assert_eq!(e["num_read_ops"], 3);
    assert_eq!(e["num_write_ops"], 0);
    assert_eq!(e["io_error"], json!({"failed": 1, "nvme_error": 2}));
    assert!(e.get("queue_depth").is_none());
    let per = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"name": "sem_stat", "per_channel": true}),
    );
    assert_eq!(per["name"], "sem_stat");
    let chans = per["channels"].as_array().unwrap();
    let mut got: Vec<(u64, u64)> = chans
        .iter()
        .map(|c| {
            (
                c["thread_id"].as_u64().unwrap(),
                c["num_read_ops"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort_unstable();
    let mut want = vec![(tt.thread(0).id().0, 1), (tt.thread(1).id().0, 2)];
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(chans[0].get("io_error").is_none());
    // Newer SPDK's `names` list, as the pinned spdk-rpc client sends it.
    mem("sem_stat_b", 0);
    let both = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"names": ["sem_stat_b", "sem_stat"], "per_channel": false}),
    );
    let names: Vec<&str> = both["bdevs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["sem_stat_b", "sem_stat"]);
    assert_eq!(both["bdevs"][1]["num_read_ops"], 3);
    let per_names = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"names": ["sem_stat"], "per_channel": true}),
    );
    assert_eq!(per_names["channels"].as_array().unwrap().len(), 2);
    let per_two = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"names": ["sem_stat", "sem_stat_b"], "per_channel": true}),
    );
    assert_eq!(per_two["error"]["code"], -22);
    let unknown_in_list = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"names": ["sem_stat", "sem_nosuch"]}),
    );
    assert_eq!(unknown_in_list["error"]["code"], -19);
    // Reset mode "error" clears only the error counts.
    let cleared = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"name": "sem_stat", "reset_mode": "error"}),
    );
    assert_eq!(
        cleared["bdevs"][0]["io_error"],
        json!({"failed": 1, "nvme_error": 2})
    );
    let after = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_stat"}));
    assert_eq!(after["bdevs"][0]["io_error"], json!({}));
    assert_eq!(after["bdevs"][0]["num_read_ops"], 3);
    let no_name = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"per_channel": true}));
    assert_eq!(
        no_name["error"],
        json!({"code": -22, "message": "Invalid argument"})
    );
    let unknown = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_nosuch"}));
    assert_eq!(
        unknown["error"],
        json!({"code": -19, "message": "No such device"})
    );
    let bad_mode = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"name": "sem_stat", "reset_mode": "some"}),
    );
    assert_eq!(bad_mode["error"]["code"], -32603);
}

#[test]
fn reset_modes_of_get_iostat_and_reset_iostat() {
    let tt = TestThreads::new(1);
    mem("sem_stat_reset", 0);
    tt.set_current(0);
    let d = open_ext("sem_stat_reset", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    ch.read(block(0), 0, 1, sink(&s));
    tt.advance_time(Duration::from_micros(5));
    tt.poll_threads();
    let reg = registry();
    let q = json!({"name": "sem_stat_reset", "reset_mode": "maxmin"});
    let first = rpc_call(&tt, &reg, "bdev_get_iostat", q.clone());
    assert_eq!(first["bdevs"][0]["max_read_latency_ticks"], 5000);
    let second = rpc_call(&tt, &reg, "bdev_get_iostat", q);
    assert_eq!(second["bdevs"][0]["max_read_latency_ticks"], 0);
    assert_eq!(second["bdevs"][0]["num_read_ops"], 1);
    assert_eq!(second["bdevs"][0]["read_latency_ticks"], 5000);
    let none = rpc_call(
        &tt,
        &reg,
        "bdev_reset_iostat",
        json!({"name": "sem_stat_reset", "mode": "none"}),
    );
    assert_eq!(none, json!(true));
    let third = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"name": "sem_stat_reset"}),
    );
    assert_eq!(third["bdevs"][0]["num_read_ops"], 1);
    let all = rpc_call(
        &tt,
        &reg,
        "bdev_reset_iostat",
        json!({"name": "sem_stat_reset"}),
    );
    assert_eq!(all, json!(true));
    let fourth = rpc_call(
        &tt,
        &reg,
        "bdev_get_iostat",
        json!({"name": "sem_stat_reset"}),
    );
    assert_eq!(fourth["bdevs"][0]["num_read_ops"], 0);
    assert_eq!(fourth["bdevs"][0]["read_latency_ticks"], 0);
    let missing = rpc_call(
        &tt,
        &reg,
        "bdev_reset_iostat",
        json!({"name": "sem_nosuch"}),
    );
    assert_eq!(missing["error"]["code"], -19);
}

#[test]
fn queue_depth_sampling_reports_outstanding_io() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_qd", 0);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_qd");
    let reg = registry();
    assert_eq!(
        rpc_call(
            &tt,
            &reg,
            "bdev_set_qd_sampling_period",
            json!({"name": "sem_qd", "period": 1000}),
        ),
        json!(true)
    );
    let before = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_qd"}));
    let e = &before["bdevs"][0];
    assert_eq!(e["queue_depth_polling_period"], 1000);
    assert_eq!(e["queue_depth"], u64::MAX);
    assert_eq!(e["io_time"], 0);
    ops.hold(&[IoType::Read]);
    let s: Slot = Slot::default();
    ch0.read(block(0), 0, 1, sink(&s));
    tt.set_current(1);
    ch1.read(block(0), 0, 1, sink(&s));
    ch1.read(block(0), 1, 1, sink(&s));
    tt.set_current(0);
    tt.poll_threads();
    tt.advance_time(Duration::from_micros(1000));
    tt.poll_threads();
    let during = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_qd"}));
    let e = &during["bdevs"][0];
    assert_eq!(e["queue_depth"], 3);
    assert_eq!(e["io_time"], 1000);
    assert_eq!(e["weighted_io_time"], 3000);
    for io in held() {
        ops.execute(io);
    }
    tt.poll_threads();
    assert_eq!(s.borrow().len(), 3);
    tt.advance_time(Duration::from_micros(1000));
    tt.poll_threads();
    let after = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_qd"}));
    let e = &after["bdevs"][0];
    assert_eq!(e["queue_depth"], 0);
    assert_eq!(e["io_time"], 1000);
    assert_eq!(e["weighted_io_time"], 3000);
    // Period 0 stops sampling and drops the keys, as SPDK.
    rpc_call(
        &tt,
        &reg,
        "bdev_set_qd_sampling_period",
        json!({"name": "sem_qd", "period": 0}),
    );
    let off = rpc_call(&tt, &reg, "bdev_get_iostat", json!({"name": "sem_qd"}));
    assert!(off["bdevs"][0].get("queue_depth").is_none());
    let missing = rpc_call(
        &tt,
        &reg,
        "bdev_set_qd_sampling_period",
        json!({"name": "sem_nosuch", "period": 10}),
    );
    assert_eq!(missing["error"]["code"], -19);
    for bad in [
        json!({"name": "sem_qd"}),
        json!({"name": "sem_qd", "period": -1}),
        json!({"name": "sem_qd", "period": 1, "extra": 1}),
    ] {
        let r = rpc_call(&tt, &reg, "bdev_set_qd_sampling_period", bad);
        assert_eq!(
            r["error"],
            json!({"code": -32603, "message": "spdk_json_decode_object failed"})
        );
    }
}

#[test]
fn compare_and_write_waits_for_overlapping_writes_already_submitted() {
    let tt = TestThreads::new(2);
    let ops = mem("sem_caw_drain", 0);
    fill(&ops, 3, 0x10);
    let (_d, ch0, ch1) = two_channels(&tt, "sem_caw_drain");
    // A write into block 3 is at the module (held) on Thread 1 before the compare-and-write.
    ops.hold(&[IoType::Write]);
    tt.set_current(1);
    let w: Slot = Slot::default();
    ch1.write(block(0x99), 3, 1, sink(&w));
    tt.set_current(0);
    let c: Slot = Slot::default();
    ch0.compare_and_write(block(0x99), block(0x20), 3, 1, sink(&c));
    tt.poll_threads();
    tt.advance_time(Duration::from_micros(100));
    tt.poll_threads();
    // The compare has not started: its read would see 0x10 and the write would land between
    // the compare and the compare-and-write's own write.
    assert_eq!(ops.seen(IoType::Read), 0);
    ops.hold(&[]);
    ops.execute(held().pop().unwrap());
    tt.poll_threads();
    assert_eq!(statuses(&w), vec![IoStatus::Success]);
    assert_eq!(ops.seen(IoType::Read), 0);
    tt.advance_time(Duration::from_micros(100));
    tt.poll_threads();
    assert_eq!(ops.seen(IoType::Read), 1);
    assert_eq!(statuses(&c), vec![IoStatus::Success]);
    assert_eq!(ops.data.lock().unwrap()[3 * BS..4 * BS], [0x20; BS]);
}
