//! More I/O paths: fused compare-and-write, DSM deallocate, Copy, Flush, pause/resume with
//! queued commands, bdev hot-remove, subsystem deletion with connected hosts.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::{GenericStatus, MediaStatus, Status};
use std::cell::Cell;
use std::rc::Rc;

fn fused(mut s: nvme::spec::Sqe, f: u8) -> nvme::spec::Sqe {
    s.flags = (s.flags & !0x3) | f;
    s
}

fn setup_io() -> (Env, nvmf::testing::TestHost, nvmf::testing::TestHost) {
    let env = setup();
    let (admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    (env, admin, io)
}

#[test]
fn fused_compare_and_write_writes_only_on_match() {
    let (env, _a, io) = setup_io();
    let old = vec![0x11u8; 512];
    let new = vec![0x22u8; 512];
    let (c, _) = env.cmd(&io, sqe(0x01, 1, 1, 5, 0, 0), Some(old.clone()), 512);
    ok(&c);
    // Matching compare: both succeed, data replaced.
    io.submit(fused(sqe(0x05, 2, 1, 5, 0, 0), 1), Some(old.clone()), 512);
    io.submit(fused(sqe(0x01, 3, 1, 5, 0, 0), 2), Some(new.clone()), 512);
    env.poll();
    let (c1, _) = io.take_response().unwrap();
    let (c2, _) = io.take_response().unwrap();
    assert_eq!((c1.cid.get(), c1.status()), (2, Status::SUCCESS));
    assert_eq!((c2.cid.get(), c2.status()), (3, Status::SUCCESS));
    let (_, d) = env.cmd(&io, sqe(0x02, 4, 1, 5, 0, 0), None, 512);
    assert_eq!(d.unwrap(), new);
    // Mismatch: compare failure, write aborted, data unchanged.
    io.submit(fused(sqe(0x05, 5, 1, 5, 0, 0), 1), Some(old.clone()), 512);
    io.submit(
        fused(sqe(0x01, 6, 1, 5, 0, 0), 2),
        Some(vec![0x33; 512]),
        512,
    );
    env.poll();
    let (c1, _) = io.take_response().unwrap();
    let (c2, _) = io.take_response().unwrap();
    assert_eq!(c1.status(), Status::from(MediaStatus::COMPARE_FAILURE));
    assert_eq!(
        c2.status(),
        Status::from(GenericStatus::ABORTED_FAILED_FUSED).with_dnr()
    );
    let (_, d) = env.cmd(&io, sqe(0x02, 7, 1, 5, 0, 0), None, 512);
    assert_eq!(d.unwrap(), new);
}

#[test]
fn compare_dsm_copy_flush() {
    let (env, _a, io) = setup_io();
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 253) as u8).collect();
    ok(&env
        .cmd(&io, sqe(0x01, 1, 1, 100, 0, 1), Some(data.clone()), 1024)
        .0);
    // Compare equal and different.
    ok(&env
        .cmd(&io, sqe(0x05, 2, 1, 100, 0, 1), Some(data.clone()), 1024)
        .0);
    let (c, _) = env.cmd(&io, sqe(0x05, 3, 1, 100, 0, 1), Some(vec![0; 1024]), 1024);
    assert_eq!(c.status(), Status::from(MediaStatus::COMPARE_FAILURE));
    // Copy 2 blocks from 100 to 200.
    let mut range = vec![0u8; 32];
    range[8..16].copy_from_slice(&100u64.to_le_bytes());
    range[16..18].copy_from_slice(&1u16.to_le_bytes());
    ok(&env.cmd(&io, sqe(0x19, 4, 1, 200, 0, 0), Some(range), 32).0);
    let (_, d) = env.cmd(&io, sqe(0x02, 5, 1, 200, 0, 1), None, 1024);
    assert_eq!(d.unwrap(), data);
    // Deallocate block 100 (DSM AD): reads back zero; block 101 untouched.
    let mut r = vec![0u8; 16];
    r[4..8].copy_from_slice(&1u32.to_le_bytes());
    r[8..16].copy_from_slice(&100u64.to_le_bytes());
    ok(&env.cmd(&io, sqe(0x09, 6, 1, 0, 1 << 2, 0), Some(r), 16).0);
    let (_, d) = env.cmd(&io, sqe(0x02, 7, 1, 100, 0, 1), None, 1024);
    let d = d.unwrap();
    assert_eq!(&d[..512], &[0u8; 512][..]);
    assert_eq!(&d[512..], &data[512..]);
    ok(&env.cmd(&io, sqe(0x00, 8, 1, 0, 0, 0), None, 0).0);
}

#[test]
fn paused_subsystem_queues_io_until_resume() {
    let (env, _a, io) = setup_io();
    let paused = Rc::new(Cell::new(false));
    let p = paused.clone();
    env.tgt
        .pause_subsystem(SUBNQN, move || p.set(true))
        .unwrap();
    env.poll();
    assert!(paused.get());
    io.submit(sqe(0x01, 1, 1, 0, 0, 0), Some(vec![0xab; 512]), 512);
    env.poll();
    assert!(io.take_response().is_none(), "held while paused");
    env.threads.set_current(0);
    env.tgt.resume_subsystem(SUBNQN, || {}).unwrap();
    env.poll();
    let (c, _) = io.take_response().expect("ran after resume");
    ok(&c);
    let (_, d) = env.cmd(&io, sqe(0x02, 2, 1, 0, 0, 0), None, 512);
    assert_eq!(d.unwrap(), vec![0xab; 512]);
}

#[test]
fn bdev_hot_remove_removes_the_namespace_with_aen() {
    let (env, admin, io) = setup_io();
    admin.submit(sqe(0x0c, 9, 0, 0, 0, 0), None, 0);
    env.poll();
    let deleted = Rc::new(Cell::new(false));
    let d2 = deleted.clone();
    env.threads.set_current(0);
    bdev_malloc::delete(&env.bdev, move |r| {
        r.unwrap();
        d2.set(true)
    })
    .unwrap();
    env.poll();
    assert!(
        deleted.get(),
        "descriptor closed after the namespace went away"
    );
    let (c, _) = admin.take_response().expect("NS attribute AEN");
    assert_eq!(c.dw0.get(), 0x0004_0002);
    let (c, _) = env.cmd(&io, sqe(0x02, 1, 1, 0, 0, 0), None, 512);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).with_dnr()
    );
}

#[test]
fn deleting_the_subsystem_disconnects_its_hosts() {
    let (env, admin, io) = setup_io();
    env.threads.set_current(0);
    env.tgt.delete_subsystem(SUBNQN).unwrap();
    env.update();
    env.poll();
    assert!(admin.closed_by_target());
    assert!(io.closed_by_target());
    // The bdev is free again: it can back a namespace of a new subsystem.
    let mut s = nvmf::Subsystem::new("nqn.2016-06.io.spdk:cnode2", nvmf::SubType::Nvme);
    s.allow_any_host = true;
    env.tgt.create_subsystem(s).unwrap();
    env.tgt
        .add_ns(
            "nqn.2016-06.io.spdk:cnode2",
            &env.bdev,
            0,
            None,
            None,
            None,
            0,
            false,
        )
        .unwrap();
}

/// Bounded mixed workload over two I/O queues (on both poll groups): 400 writes/reads of
/// pseudo-random ranges, checked against a model of the namespace byte for byte.
#[test]
fn mixed_io_on_two_queues_matches_a_model() {
    let (env, _a, io1) = setup_io();
    let cntlid = 1;
    let io2 = io_connect(&env, HOSTNQN, cntlid, 2);
    let mut model = vec![0u8; 1024 * 512];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400u32 {
        let q = if i % 2 == 0 { &io1 } else { &io2 };
        let nlb = (next() % 16 + 1) as u32;
        let slba = next() % u64::from(1024 - nlb);
        let len = nlb * 512;
        let cid = (i % 60000) as u16;
        let off = slba as usize * 512;
        if next() % 2 == 0 {
            let fill = (next() & 0xff) as u8;
            let data: Vec<u8> = (0..len).map(|k| fill.wrapping_add(k as u8)).collect();
            model[off..off + len as usize].copy_from_slice(&data);
            let (c, _) = env.cmd(
                q,
                sqe(0x01, cid, 1, slba as u32, (slba >> 32) as u32, nlb - 1),
                Some(data),
                len,
            );
            ok(&c);
        } else {
            let (c, d) = env.cmd(
                q,
                sqe(0x02, cid, 1, slba as u32, (slba >> 32) as u32, nlb - 1),
                None,
                len,
            );
            ok(&c);
            assert_eq!(
                d.unwrap(),
                model[off..off + len as usize].to_vec(),
                "read {i} at {slba}+{nlb}"
            );
        }
    }
}

/// 32 commands in flight at once on one queue: every CID answered once, data intact.
#[test]
fn pipelined_commands_complete_once_each() {
    let (env, _a, io) = setup_io();
    for i in 0..32u16 {
        io.submit(
            sqe(0x01, i, 1, u32::from(i) * 4, 0, 3),
            Some(vec![i as u8 + 1; 2048]),
            2048,
        );
    }
    env.poll();
    let mut seen = std::collections::BTreeSet::new();
    while let Some((c, _)) = io.take_response() {
        ok(&c);
        assert!(
            seen.insert(c.cid.get()),
            "cid {} answered twice",
            c.cid.get()
        );
    }
    assert_eq!(seen.len(), 32);
    for i in 0..32u16 {
        io.submit(sqe(0x02, 100 + i, 1, u32::from(i) * 4, 0, 3), None, 2048);
    }
    env.poll();
    let mut n = 0;
    while let Some((c, d)) = io.take_response() {
        ok(&c);
        let i = c.cid.get() - 100;
        assert_eq!(d.unwrap(), vec![i as u8 + 1; 2048]);
        n += 1;
    }
    assert_eq!(n, 32);
}
