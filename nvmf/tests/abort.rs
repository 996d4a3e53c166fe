//! Admin Abort of I/O commands (SPDK `nvmf_ctrlr_abort`): a command that has not reached the
//! bdev (waiting for bdev resources, or the first half of a fused pair waiting for its
//! second) is aborted; one the bdev is executing is not (DW0 bit 0 set).
//!
//! Its own test binary: it shrinks the process-wide `bdev_io_pool_size` to 1 so a second
//! I/O on a channel waits for resources.
#![allow(clippy::unwrap_used)]

mod common;
use bdev::module::{BdevOps, BdevProps};
use bdev::{BdevError, BdevIo, IoStatus, IoType};
use common::*;
use nvme::spec::{GenericStatus, Status};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

/// The gate bdev's held I/Os and counters (all env::testing Threads run on this OS thread).
#[derive(Default)]
struct Gate {
    open: bool,
    held: Vec<BdevIo>,
    submitted: u32,
    channels: u32,
}

thread_local! {
    static GATE: RefCell<Gate> = RefCell::new(Gate::default());
}

/// A bdev that holds every I/O until the test opens the gate.
struct GateOps;

impl BdevOps for GateOps {
    type Channel = ();

    fn create_channel(&self) -> Result<(), BdevError> {
        GATE.with(|g| g.borrow_mut().channels += 1);
        Ok(())
    }

    fn submit_request(&self, _ch: &(), io: BdevIo) {
        GATE.with(|g| {
            let mut g = g.borrow_mut();
            g.submitted += 1;
            if g.open {
                drop(g);
                io.complete(IoStatus::Success);
            } else {
                g.held.push(io);
            }
        });
    }

    fn io_type_supported(&self, t: IoType) -> bool {
        matches!(t, IoType::Read | IoType::Write)
    }
}

fn open_gate() {
    let held: Vec<BdevIo> = GATE.with(|g| {
        let mut g = g.borrow_mut();
        g.open = true;
        g.held.drain(..).collect()
    });
    for io in held {
        io.complete(IoStatus::Success);
    }
}

fn aborted() -> Status {
    Status::from(GenericStatus::ABORTED_BY_REQUEST)
}

/// Abort of (`sqid`, `cid`) on the admin queue: (status, DW0).
fn abort(env: &Env, admin: &nvmf::testing::TestHost, sqid: u16, cid: u16) -> (Status, u32) {
    let (c, _) = env.cmd(
        admin,
        sqe(
            0x08,
            0x70,
            0,
            u32::from(sqid) | (u32::from(cid) << 16),
            0,
            0,
        ),
        None,
        0,
    );
    assert_eq!(c.cid.get(), 0x70);
    (c.status(), c.dw0.get())
}

#[test]
fn abort_cancels_commands_not_yet_at_the_bdev_and_leaves_executing_ones() {
    bdev::set_options(bdev::BdevOpts {
        bdev_io_pool_size: 1,
        bdev_io_cache_size: 1,
        ..Default::default()
    })
    .unwrap();
    let env = setup();
    add_gate_ns(&env);
    let (admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);

    // Write 10 reaches the gate and stays there; write 11 finds the channel's only bdev I/O
    // taken and waits for resources.
    io.submit(sqe(0x01, 10, 2, 0, 0, 0), Some(vec![0xaa; 512]), 512);
    io.submit(sqe(0x01, 11, 2, 1, 0, 0), Some(vec![0xbb; 512]), 512);
    env.poll();
    assert!(io.take_response().is_none(), "both writes are outstanding");
    assert_eq!(GATE.with(|g| g.borrow().submitted), 1);

    // The waiting write is aborted; the executing one is not.
    assert_eq!(abort(&env, &admin, 1, 11), (Status::SUCCESS, 0));
    let (c, _) = io.take_response().expect("aborted write completes");
    assert_eq!((c.cid.get(), c.status()), (11, aborted()));
    assert_eq!(abort(&env, &admin, 1, 10), (Status::SUCCESS, 1));
    assert!(io.take_response().is_none());
    // Unknown command, unknown queue, and the AER-only admin queue: not aborted.
    assert_eq!(abort(&env, &admin, 1, 99), (Status::SUCCESS, 1));
    assert_eq!(abort(&env, &admin, 5, 10), (Status::SUCCESS, 1));
    assert_eq!(abort(&env, &admin, 0, 10), (Status::SUCCESS, 1));

    // The first half of a fused Compare and Write waits for its second: abortable.
    let mut first = sqe(0x05, 20, 1, 0, 0, 0);
    first.flags |= 1;
    io.submit(first, Some(vec![0; 512]), 512);
    env.poll();
    assert!(io.take_response().is_none());
    assert_eq!(abort(&env, &admin, 1, 20), (Status::SUCCESS, 0));
    let (c, _) = io.take_response().expect("aborted fused first completes");
    assert_eq!((c.cid.get(), c.status()), (20, aborted()));
    let mut second = sqe(0x01, 21, 1, 0, 0, 0);
    second.flags |= 2;
    let (c, _) = env.cmd(&io, second, Some(vec![0; 512]), 512);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::ABORTED_MISSING_FUSED).with_dnr()
    );

    // The gate opens: write 10 completes; the aborted write 11 is never retried, never
    // reaches the bdev and is not answered twice.
    env.threads.set_current(0);
    open_gate();
    env.poll();
    let (c, _) = io.take_response().expect("write 10 completes");
    assert_eq!((c.cid.get(), c.status()), (10, Status::SUCCESS));
    assert!(io.take_response().is_none());
    assert_eq!(GATE.with(|g| g.borrow().submitted), 1);
    // The queue still works.
    let (c, _) = env.cmd(&io, sqe(0x01, 30, 2, 2, 0, 0), Some(vec![0xcc; 512]), 512);
    assert_eq!(c.status(), Status::SUCCESS);
    assert_eq!(GATE.with(|g| g.borrow().submitted), 2);
    // Configuration updates (here a reservation registration) keep the poll group's bdev
    // channel of an unchanged namespace: one channel was ever created.
    let mut keys = 0u64.to_le_bytes().to_vec();
    keys.extend_from_slice(&0x5eedu64.to_le_bytes());
    let (c, _) = env.cmd(&io, sqe(0x0d, 31, 2, 0, 0, 0), Some(keys), 16);
    assert_eq!(c.status(), Status::SUCCESS);
    env.update();
    let (c, _) = env.cmd(&io, sqe(0x01, 32, 2, 3, 0, 0), Some(vec![0xdd; 512]), 512);
    assert_eq!(c.status(), Status::SUCCESS);
    assert_eq!(
        GATE.with(|g| (g.borrow().submitted, g.borrow().channels)),
        (3, 1)
    );
}

/// Adds the gate bdev as namespace 2 of the test subsystem.
fn add_gate_ns(env: &Env) {
    let gate_name = unique("Gate");
    bdev::module::register_bdev(
        "gate",
        BdevProps::new(&gate_name, 512, 64),
        Arc::new(GateOps),
    )
    .unwrap();
    env.threads.set_current(0);
    assert_eq!(
        env.tgt
            .add_ns(SUBNQN, &gate_name, 2, None, None, None, 0, false)
            .unwrap(),
        2
    );
    env.update();
}

/// Admin and I/O queue of a host whose HOSTID is sixteen bytes of `id`.
fn host_with_id(env: &Env, id: u8) -> (nvmf::testing::TestHost, nvmf::testing::TestHost) {
    let nqn = format!("nqn.2014-08.org.nvmexpress:uuid:{id:02x}000000-1111-2222-3333-444444444444");
    let data = |cntlid: u16| {
        let mut d = connect_data(&nqn, SUBNQN, cntlid);
        d[..16].fill(id);
        d
    };
    let admin = env.connect_host();
    let (c, _) = env.cmd(&admin, connect_sqe(1, 0, 31, 0), Some(data(0xffff)), 1024);
    ok(&c);
    let cntlid = c.dw0.get() as u16;
    let (c, _) = env.cmd(
        &admin,
        prop_set(
            2,
            nvme::spec::props::PropertyOffset::CC,
            u64::from(CC_ENABLE),
        ),
        None,
        0,
    );
    ok(&c);
    let io = env.connect_host();
    let (c, _) = env.cmd(&io, connect_sqe(1, 1, 127, 0), Some(data(cntlid)), 1024);
    ok(&c);
    (admin, io)
}

fn key_data(a: u64, b: u64) -> Option<Vec<u8>> {
    Some([a.to_le_bytes(), b.to_le_bytes()].concat())
}

#[test]
fn preempt_and_abort_gives_up_after_ten_seconds_of_stuck_preempted_io() {
    bdev::set_options(bdev::BdevOpts {
        bdev_io_pool_size: 1,
        bdev_io_cache_size: 1,
        ..Default::default()
    })
    .unwrap();
    let env = setup();
    add_gate_ns(&env);
    let (_a_admin, a) = host_with_id(&env, 0xa);
    let (_b_admin, b) = host_with_id(&env, 0xb);
    let (c, _) = env.cmd(&a, sqe(0x0d, 1, 2, 0, 0, 0), key_data(0, 0xa1), 16);
    ok(&c);
    let (c, _) = env.cmd(&b, sqe(0x0d, 1, 2, 0, 0, 0), key_data(0, 0xb1), 16);
    ok(&c);
    let (c, _) = env.cmd(&a, sqe(0x11, 2, 2, 1 << 8, 0, 0), key_data(0xa1, 0), 16);
    ok(&c);
    // A's write is stuck in the bdev.
    a.submit(sqe(0x01, 3, 2, 0, 0, 0), Some(vec![0xaa; 512]), 512);
    env.poll();
    assert!(a.take_response().is_none());
    // B preempts and aborts: it waits for A's write...
    b.submit(
        sqe(0x11, 4, 2, 2 | (1 << 8), 0, 0),
        key_data(0xb1, 0xa1),
        16,
    );
    env.poll();
    env.threads.advance_time(Duration::from_secs(5));
    env.poll();
    assert!(b.take_response().is_none(), "still waiting after 5 s");
    // ...and gives up with Command Interrupted after 10 s; the preempt itself stands.
    env.threads.advance_time(Duration::from_secs(6));
    env.poll();
    let (c, _) = b.take_response().expect("answer after the timeout");
    assert_eq!(
        (c.cid.get(), c.status()),
        (4, Status::from(GenericStatus::COMMAND_INTERRUPTED))
    );
    let (c, _) = env.cmd(&a, sqe(0x01, 5, 2, 1, 0, 0), Some(vec![0xab; 512]), 512);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::RESERVATION_CONFLICT)
    );
    env.threads.set_current(0);
    open_gate();
    env.poll();
    let (c, _) = a.take_response().expect("A's stuck write completes");
    assert_eq!((c.cid.get(), c.status()), (3, Status::SUCCESS));
}
