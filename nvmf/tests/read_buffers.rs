//! Read data buffers come from the iobuf pools only (audit finding 5): when the pools are
//! empty a read waits, is served oldest first as buffers return, and can be aborted while it
//! waits; the heap is never used, so the pool sizes bound the memory reads take.
//!
//! Its own test binary: the iobuf pools are process-global, this one has 8 large buffers.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::{GenericStatus, Status};
use nvmf::testing::TestHost;
use std::sync::{Mutex, MutexGuard, Once};

/// 16 KiB: above the small buffer size, so each read takes one large buffer.
const NLB: u32 = 32;
const LEN: usize = NLB as usize * 512;
const LARGE_POOL: usize = 8;

static SERIAL: Mutex<()> = Mutex::new(());
static INIT: Once = Once::new();

/// Pools of 8 large buffers, once per process; the tests drain them, so one at a time.
fn small_pools() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    INIT.call_once(|| {
        env::iobuf_set_options(env::IobufOpts {
            small_pool_count: 64,
            large_pool_count: LARGE_POOL as u64,
            ..env::IobufOpts::default()
        })
        .unwrap();
    });
    g
}

fn read(cid: u16, slba: u32) -> nvme::spec::Sqe {
    sqe(0x02, cid, 1, slba, 0, NLB - 1)
}

/// Takes every large buffer off any Thread (from the global ring).
fn drain_pool(env: &Env) -> Vec<env::IoBuf> {
    env.threads.clear_current();
    let mut held = Vec::new();
    while let Some(b) = env::iobuf_get(LEN) {
        held.push(b);
    }
    held
}

/// Returns one buffer to the global ring (off any Thread) and polls.
fn give_back(env: &Env, held: &mut Vec<env::IoBuf>) {
    env.threads.clear_current();
    drop(held.pop().unwrap());
    env.poll();
}

fn responses(h: &TestHost) -> Vec<(u16, Status, Option<Vec<u8>>)> {
    let mut v = Vec::new();
    while let Some((c, d)) = h.take_response() {
        v.push((c.cid.get(), c.status(), d));
    }
    v
}

#[test]
fn reads_wait_for_iobuf_buffers_and_are_served_oldest_first() {
    let _serial = small_pools();
    let env = setup();
    let (admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let pattern: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let (c, _) = env.cmd(
        &io,
        sqe(0x01, 1, 1, 0, 0, NLB - 1),
        Some(pattern.clone()),
        LEN as u32,
    );
    ok(&c);

    let mut held = drain_pool(&env);
    assert_eq!(held.len(), LARGE_POOL, "every large buffer was free");
    for cid in 10..14 {
        io.submit(read(cid, 0), None, LEN as u32);
    }
    env.poll();
    assert_eq!(responses(&io), vec![], "no buffer: the reads wait");
    // Other commands are not held up: a write and an admin command complete.
    let (c, _) = env.cmd(
        &io,
        sqe(0x01, 20, 1, 64, 0, NLB - 1),
        Some(pattern.clone()),
        LEN as u32,
    );
    assert_eq!((c.cid.get(), c.status()), (20, Status::SUCCESS));
    ok(&env.cmd(&admin, sqe(0x0a, 5, 0, 0x0f, 0, 0), None, 0).0);

    // One buffer back: it serves the oldest read, returns with its data and serves the next.
    give_back(&env, &mut held);
    let got = responses(&io);
    assert_eq!(
        got.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![
            (10, Status::SUCCESS),
            (11, Status::SUCCESS),
            (12, Status::SUCCESS),
            (13, Status::SUCCESS)
        ]
    );
    for (_, _, d) in got {
        assert_eq!(d.unwrap(), pattern);
    }
    drop(held);
}

#[test]
fn a_read_waiting_for_buffers_can_be_aborted() {
    let _serial = small_pools();
    let env = setup();
    let (admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let mut held = drain_pool(&env);
    assert!(!held.is_empty());
    io.submit(read(30, 0), None, LEN as u32);
    io.submit(read(31, 0), None, LEN as u32);
    env.poll();
    assert_eq!(responses(&io), vec![]);
    // Abort of SQID 1 CID 30: completed as aborted at once.
    let (c, _) = env.cmd(&admin, sqe(0x08, 6, 0, 1 | (30 << 16), 0, 0), None, 0);
    assert_eq!((c.status(), c.dw0.get()), (Status::SUCCESS, 0), "aborted");
    assert_eq!(
        responses(&io)
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        vec![(30, Status::from(GenericStatus::ABORTED_BY_REQUEST))]
    );
    // A buffer back: only the other read completes; the aborted one never answers twice.
    give_back(&env, &mut held);
    assert_eq!(
        responses(&io)
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        vec![(31, Status::SUCCESS)]
    );
    drop(held);
    env.poll();
    assert_eq!(responses(&io), vec![]);
}

/// `setup()` with `max_io_size` 256 KiB: one read needs two large (132 KiB) buffers.
fn setup_256k() -> Env {
    setup_max_io(262_144)
}

/// `setup()` with the given `max_io_size`.
fn setup_max_io(max_io_size: u32) -> Env {
    use nvmf::{ListenAddr, SubType, Subsystem, Target, TransportOpts};
    let threads = env::testing::TestThreads::new(1);
    threads.set_current(0);
    let net = nvmf::testing::TestNetwork::new();
    let tgt = Target::new("nvmf_tgt").unwrap();
    tgt.register_transport_factory("TCP", net.factory("TCP"));
    tgt.start(vec![threads.thread(0).handle()], || {}).unwrap();
    assert!(threads.poll_threads());
    let opts = TransportOpts {
        max_io_size,
        ..TransportOpts::default()
    };
    tgt.create_transport("TCP", opts, |r| r.unwrap());
    assert!(threads.poll_threads());
    let bdev = unique("Malloc");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&bdev, 1024, 512)).unwrap();
    let mut s = Subsystem::new(SUBNQN, SubType::Nvme);
    s.allow_any_host = true;
    tgt.create_subsystem(s).unwrap();
    tgt.add_ns(SUBNQN, &bdev, 0, None, None, None, 0, false)
        .unwrap();
    let addr = ListenAddr::tcp("127.0.0.1", "4420");
    tgt.add_listener(SUBNQN, addr.clone(), false).unwrap();
    let env = Env {
        threads,
        tgt,
        net,
        addr,
        bdev,
    };
    env.update();
    env
}

#[test]
fn a_read_larger_than_a_buffer_takes_several_and_waits_for_the_missing_one() {
    let _serial = small_pools();
    let env = setup_256k();
    let (_admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    const BIG: usize = 262_144;
    let nlb = (BIG / 512) as u32;
    let pattern: Vec<u8> = (0..BIG).map(|i| (i % 253) as u8).collect();
    let (c, _) = env.cmd(
        &io,
        sqe(0x01, 1, 1, 0, 0, nlb - 1),
        Some(pattern.clone()),
        BIG as u32,
    );
    ok(&c);
    let mut held = drain_pool(&env);
    assert!(held.len() >= 2);
    // One buffer free: the read takes it and waits for a second one.
    give_back(&env, &mut held);
    io.submit(sqe(0x02, 2, 1, 0, 0, nlb - 1), None, BIG as u32);
    env.poll();
    assert_eq!(responses(&io), vec![]);
    give_back(&env, &mut held);
    let got = responses(&io);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1), (2, Status::SUCCESS));
    assert_eq!(got[0].2.as_deref(), Some(&pattern[..]));
    drop(held);
}

#[test]
fn reads_needing_several_buffers_do_not_deadlock_on_partial_sets() {
    let _serial = small_pools();
    // 512 KiB reads: four 132 KiB buffers each; three of them want 12 of the pool's 8.
    let env = setup_max_io(524_288);
    let (_admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    const BIG: usize = 524_288;
    let nlb = (BIG / 512) as u32;
    let pattern: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let (c, _) = env.cmd(
        &io,
        sqe(0x01, 1, 1, 0, 0, nlb - 1),
        Some(pattern.clone()),
        BIG as u32,
    );
    ok(&c);
    let mut held = drain_pool(&env);
    assert_eq!(held.len(), LARGE_POOL);
    for cid in 2..5u16 {
        io.submit(sqe(0x02, cid, 1, 0, 0, nlb - 1), None, BIG as u32);
    }
    env.poll();
    assert_eq!(responses(&io), vec![]);
    // Buffers come back one at a time. Reads that kept partial sets while waiting ended
    // with 3 + 3 + 2 buffers held and none complete, for ever.
    let mut done = Vec::new();
    while !held.is_empty() {
        give_back(&env, &mut held);
        done.extend(responses(&io));
    }
    for _ in 0..10 {
        env.poll();
        done.extend(responses(&io));
    }
    let cids: Vec<u16> = done.iter().map(|r| r.0).collect();
    assert_eq!(cids.len(), 3, "completed: {cids:?}");
    for r in &done {
        assert_eq!(r.1, Status::SUCCESS);
        assert_eq!(r.2.as_deref(), Some(&pattern[..]));
    }
}
