//! Pausing a subsystem (SPDK `spdk_nvmf_subsystem_pause`): new I/O is held until resume,
//! and the pause completes only once the I/O already at the bdev has completed.
#![allow(clippy::unwrap_used)]

mod common;
use bdev::module::{BdevOps, BdevProps};
use bdev::{BdevError, BdevIo, IoStatus, IoType};
use common::*;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

thread_local! {
    /// I/Os the gate bdev holds (every env::testing Thread runs on this OS thread).
    static HELD: RefCell<Vec<BdevIo>> = const { RefCell::new(Vec::new()) };
}

/// A bdev that holds every I/O until [`release`].
struct GateOps;

impl BdevOps for GateOps {
    type Channel = ();

    fn create_channel(&self) -> Result<(), BdevError> {
        Ok(())
    }

    fn submit_request(&self, _ch: &(), io: BdevIo) {
        HELD.with(|h| h.borrow_mut().push(io));
    }

    fn io_type_supported(&self, t: IoType) -> bool {
        matches!(t, IoType::Read | IoType::Write)
    }
}

fn held() -> usize {
    HELD.with(|h| h.borrow().len())
}

fn release() {
    let ios: Vec<BdevIo> = HELD.with(|h| h.borrow_mut().drain(..).collect());
    for io in ios {
        io.complete(IoStatus::Success);
    }
}

/// Lets the pause's drain check run a few times.
fn tick(env: &Env) {
    for _ in 0..5 {
        env.threads.advance_time(Duration::from_millis(2));
        env.poll();
    }
}

#[test]
fn pause_completes_only_after_io_at_the_bdev_finished() {
    let env = setup();
    let gate = unique("PauseGate");
    bdev::module::register_bdev("gate", BdevProps::new(&gate, 512, 64), Arc::new(GateOps)).unwrap();
    env.threads.set_current(0);
    env.tgt
        .add_ns(SUBNQN, &gate, 2, None, None, None, 0, false)
        .unwrap();
    env.update();
    let (_admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    // Write 10 reaches the gate bdev and stays there.
    io.submit(sqe(0x01, 10, 2, 0, 0, 0), Some(vec![0x5a; 512]), 512);
    env.poll();
    assert_eq!(held(), 1);
    assert!(io.take_response().is_none());
    env.threads.set_current(0);
    let paused = Rc::new(Cell::new(false));
    let p = paused.clone();
    env.tgt
        .pause_subsystem(SUBNQN, move || p.set(true))
        .unwrap();
    tick(&env);
    assert!(!paused.get(), "pause must wait for the write at the bdev");
    // A new write (namespace 1, malloc) is held by the pause, not executed.
    io.submit(sqe(0x01, 11, 1, 0, 0, 0), Some(vec![0xa5; 512]), 512);
    tick(&env);
    assert!(io.take_response().is_none(), "new I/O waits while paused");
    assert!(!paused.get());
    // The bdev completes write 10: it is answered, and the pause completes.
    release();
    tick(&env);
    let (c, _) = io.take_response().expect("write 10 answered");
    assert_eq!(c.cid.get(), 10);
    ok(&c);
    assert!(paused.get(), "pause completed once drained");
    assert!(io.take_response().is_none(), "write 11 still held");
    // Resume: write 11 runs.
    env.threads.set_current(0);
    env.tgt.resume_subsystem(SUBNQN, || {}).unwrap();
    env.poll();
    let (c, _) = io.take_response().expect("write 11 after resume");
    assert_eq!(c.cid.get(), 11);
    ok(&c);
    let (c, d) = env.cmd(&io, sqe(0x02, 12, 1, 0, 0, 0), None, 512);
    ok(&c);
    assert_eq!(d.unwrap(), vec![0xa5; 512]);
}
