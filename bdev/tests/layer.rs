//! The bdev layer with a toy module: registry rules, module Nomem retry, asynchronous
//! completion, dropped I/O, channel failure, events, and the `bdev_get_bdevs` shape.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bdev::module::{BdevModule, BdevOps, BdevProps, register_bdev};
use bdev::{
    BdevError, BdevEvent, BdevIo, InvalidIo, IoCompletion, IoStatus, IoType, IoVecs, open_ext,
};
use env::testing::TestThreads;
use serde_json::{Value, json};

thread_local! {
    static HELD: RefCell<Vec<BdevIo>> = const { RefCell::new(Vec::new()) };
}

#[derive(Default)]
struct Toy {
    nomem_left: AtomicU32,
    submissions: AtomicU32,
    hold: AtomicBool,
    drop_io: AtomicBool,
    fail_channel: bool,
}

impl BdevOps for Toy {
    type Channel = ();
    fn create_channel(&self) -> Result<(), BdevError> {
        if self.fail_channel {
            Err(BdevError::NoMemory("toy channel".into()))
        } else {
            Ok(())
        }
    }
    fn submit_request(&self, _ch: &(), mut io: BdevIo) {
        self.submissions.fetch_add(1, Ordering::SeqCst);
        if self.nomem_left.load(Ordering::SeqCst) > 0 {
            self.nomem_left.fetch_sub(1, Ordering::SeqCst);
            return io.complete(IoStatus::Nomem);
        }
        if self.drop_io.load(Ordering::SeqCst) {
            return drop(io);
        }
        if self.hold.load(Ordering::SeqCst) {
            return HELD.with(|h| h.borrow_mut().push(io));
        }
        if let bdev::IoRequest::Read { bufs, .. } = io.request_mut() {
            let n = bufs.total_len();
            bufs.copy_from_slice_at(0, &vec![0x5A; n]);
        }
        io.complete(IoStatus::Success);
    }
    fn io_type_supported(&self, t: IoType) -> bool {
        matches!(
            t,
            IoType::Read | IoType::Write | IoType::Flush | IoType::Reset
        )
    }
    fn memory_domains(&self) -> Option<Value> {
        Some(json!([{ "dma_device_id": "system", "dma_device_type": 1 }]))
    }
}

fn toy(name: &str, blocks: u64) -> (bdev::Bdev, Arc<Toy>) {
    let ops = Arc::new(Toy::default());
    let b = register_bdev("toy", BdevProps::new(name, 512, blocks), Arc::clone(&ops)).unwrap();
    (b, ops)
}

type Slot = Rc<RefCell<Vec<IoCompletion>>>;

fn sink(s: &Slot) -> impl FnOnce(IoCompletion) + 'static {
    let s = Rc::clone(s);
    move |c| s.borrow_mut().push(c)
}

fn statuses(s: &Slot) -> Vec<IoStatus> {
    s.borrow().iter().map(|c| c.status).collect()
}

#[test]
fn registry_refuses_duplicates_and_bad_geometry() {
    let (b, _) = toy("layer_dup", 8);
    let dup = register_bdev(
        "toy",
        BdevProps::new("layer_dup", 512, 8),
        Arc::new(Toy::default()),
    );
    assert_eq!(dup.unwrap_err(), BdevError::Exists("layer_dup".into()));
    let mut p = BdevProps::new("layer_dup2", 512, 8);
    p.uuid = Some(b.uuid());
    assert_eq!(
        register_bdev("toy", p, Arc::new(Toy::default()))
            .unwrap_err()
            .errno(),
        17
    );
    let mut p = BdevProps::new("layer_dup3", 512, 8);
    p.aliases = vec!["layer_dup".into()];
    assert_eq!(
        register_bdev("toy", p, Arc::new(Toy::default()))
            .unwrap_err()
            .errno(),
        17
    );
    let zero_bs = register_bdev(
        "toy",
        BdevProps::new("layer_bs0", 0, 8),
        Arc::new(Toy::default()),
    );
    assert_eq!(zero_bs.unwrap_err().errno(), 22);
    let zero_n = register_bdev(
        "toy",
        BdevProps::new("layer_n0", 512, 0),
        Arc::new(Toy::default()),
    );
    assert_eq!(zero_n.unwrap_err().errno(), 22);
    assert!(bdev::get_by_name("layer_dup2").is_none());
    assert_eq!(bdev::get_by_name(&b.uuid().to_string()).unwrap(), b);

    struct M;
    impl BdevModule for M {
        fn name(&self) -> &str {
            "layer_mod"
        }
    }
    bdev::module::module_register(Arc::new(M)).unwrap();
    assert_eq!(
        bdev::module::module_register(Arc::new(M))
            .unwrap_err()
            .errno(),
        17
    );
}

#[test]
fn module_nomem_is_retried_until_it_succeeds() {
    let tt = TestThreads::new(1);
    let (_b, ops) = toy("layer_nomem", 8);
    ops.nomem_left.store(2, Ordering::SeqCst);
    tt.set_current(0);
    let d = open_ext("layer_nomem", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    ch.read(IoVecs::from_vec(vec![0; 512]), 0, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Success]);
    assert_eq!(ops.submissions.load(Ordering::SeqCst), 3);
    assert_eq!(
        s.borrow_mut()
            .pop()
            .unwrap()
            .into_bufs()
            .unwrap()
            .0
            .to_vec(),
        vec![0x5A; 512]
    );
}

#[test]
fn asynchronous_completions_are_delivered_in_completion_order() {
    let tt = TestThreads::new(1);
    let (_b, ops) = toy("layer_async", 8);
    ops.hold.store(true, Ordering::SeqCst);
    tt.set_current(0);
    let d = open_ext("layer_async", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    for blk in 0..3 {
        ch.flush(blk, 1, sink(&s));
    }
    tt.poll_threads();
    assert!(s.borrow().is_empty());
    assert_eq!(ch.outstanding(), 3);
    let held: Vec<BdevIo> = HELD.with(|h| h.borrow_mut().drain(..).collect());
    let mut held = held.into_iter().rev();
    held.next().unwrap().complete(IoStatus::Success);
    held.next().unwrap().complete(IoStatus::NvmeError {
        sct: 0,
        sc: 0x81,
        cdw0: 0,
    });
    tt.poll_threads();
    assert_eq!(
        statuses(&s),
        vec![
            IoStatus::Success,
            IoStatus::NvmeError {
                sct: 0,
                sc: 0x81,
                cdw0: 0
            }
        ]
    );
    let blocks: Vec<u64> = s
        .borrow()
        .iter()
        .map(|c| match c.request {
            bdev::IoRequest::Flush { offset_blocks, .. } => offset_blocks,
            _ => u64::MAX,
        })
        .collect();
    assert_eq!(blocks, vec![2, 1]);
    // Dropping the last held I/O fails it rather than hanging its submitter.
    drop(held);
    tt.poll_threads();
    assert_eq!(statuses(&s)[2], IoStatus::Failed);
    assert_eq!(ch.outstanding(), 0);
}

#[test]
fn dropped_io_fails_and_unsupported_type_never_reaches_module() {
    let tt = TestThreads::new(1);
    let (_b, ops) = toy("layer_drop", 8);
    ops.drop_io.store(true, Ordering::SeqCst);
    tt.set_current(0);
    let d = open_ext("layer_drop", true, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    let s: Slot = Slot::default();
    ch.write(IoVecs::from_vec(vec![1; 512]), 0, 1, sink(&s));
    ch.unmap(0, 1, sink(&s));
    ch.copy(1, 0, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(
        statuses(&s),
        vec![
            IoStatus::Failed,
            IoStatus::Invalid(InvalidIo::Unsupported),
            IoStatus::Invalid(InvalidIo::Unsupported)
        ]
    );
    assert_eq!(ops.submissions.load(Ordering::SeqCst), 1);
}

#[test]
fn channel_creation_failure_is_an_error() {
    let tt = TestThreads::new(1);
    let ops = Arc::new(Toy {
        fail_channel: true,
        ..Toy::default()
    });
    register_bdev("toy", BdevProps::new("layer_nochan", 512, 8), ops).unwrap();
    tt.set_current(0);
    let d = open_ext("layer_nochan", false, |_| {}).unwrap();
    let e = d.get_io_channel().unwrap_err();
    assert_eq!(e.errno(), 12);
    assert!(matches!(e, BdevError::Channel { .. }));
}

#[test]
fn io_on_closed_descriptor_is_aborted() {
    let tt = TestThreads::new(1);
    toy("layer_closed", 8);
    tt.set_current(0);
    let d = open_ext("layer_closed", false, |_| {}).unwrap();
    let ch = d.get_io_channel().unwrap();
    d.close();
    let s: Slot = Slot::default();
    ch.read(IoVecs::from_vec(vec![0; 512]), 0, 1, sink(&s));
    tt.poll_threads();
    assert_eq!(statuses(&s), vec![IoStatus::Aborted]);
}

#[test]
fn resize_and_remove_events_reach_the_opening_thread() {
    let tt = TestThreads::new(2);
    let (b, _) = toy("layer_events", 8);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    tt.set_current(1);
    let d = open_ext("layer_events", false, move |ev| {
        s2.lock()
            .unwrap()
            .push((ev, env::Thread::current().unwrap().name()));
    })
    .unwrap();
    tt.set_current(0);
    bdev::module::notify_blockcnt_change(&b, 16).unwrap();
    assert_eq!(b.num_blocks(), 16);
    // Unregister by another module's name is ENODEV; by ours it proceeds.
    assert_eq!(
        bdev::unregister("layer_events", Some("malloc"), |_| {})
            .unwrap_err()
            .errno(),
        19
    );
    assert_eq!(
        bdev::unregister("layer_nosuch", None, |_| {})
            .unwrap_err()
            .errno(),
        19
    );
    let done = Rc::new(RefCell::new(None));
    let d2 = Rc::clone(&done);
    bdev::unregister("layer_events", Some("toy"), move |r| {
        *d2.borrow_mut() = Some(r)
    })
    .unwrap();
    tt.poll_threads();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (BdevEvent::Resize, "ut_thread1".to_string()),
            (BdevEvent::Remove, "ut_thread1".to_string())
        ]
    );
    assert!(done.borrow().is_none());
    drop(d);
    tt.poll_threads();
    assert_eq!(done.borrow_mut().take(), Some(Ok(())));
}

#[test]
fn get_bdevs_entry_matches_spdk_fixture_keys() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/bdev_get_bdevs.json")).unwrap();
    let want = &fixture[0];
    let (b, _) = toy("layer_shape", 8);
    let got = b.dump_info_json();
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    // Unclaimed: SPDK omits claim_type.
    let mut want_keys = keys(want);
    want_keys.remove("claim_type");
    assert_eq!(keys(&got), want_keys);
    assert_eq!(
        keys(&got["supported_io_types"]),
        keys(&want["supported_io_types"])
    );
    assert_eq!(
        keys(&got["assigned_rate_limits"]),
        keys(&want["assigned_rate_limits"])
    );
    assert_eq!(got["supported_io_types"]["flush"], true);
    assert_eq!(got["supported_io_types"]["unmap"], false);
    assert_eq!(got["claimed"], false);
}
