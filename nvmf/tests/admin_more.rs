//! Admin details: Identify Namespace and descriptors, Abort, features, MDTS, target fini.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::{IdentifyNamespace, NsIdDescriptor};
use nvme::spec::{GenericStatus, Status};
use std::cell::Cell;
use std::rc::Rc;
use zerocopy::FromBytes;

#[test]
fn identify_namespace_and_descriptor_list_describe_the_bdev() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    let (c, d) = env.cmd(&h, sqe(0x06, 3, 1, 0, 0, 0), None, 4096);
    ok(&c);
    let ns = IdentifyNamespace::read_from_bytes(&d.unwrap()).unwrap();
    assert_eq!(ns.nsze.get(), 1024);
    assert_eq!(ns.ncap.get(), 1024);
    assert_eq!(ns.lbaf[0].lbads, 9);
    assert_eq!(ns.flbas, 0);
    let bdev_uuid = bdev::open_ext(&env.bdev, false, |_| {})
        .unwrap()
        .bdev()
        .uuid();
    assert_eq!(ns.nguid, *bdev_uuid.as_bytes());
    let (c, d) = env.cmd(&h, sqe(0x06, 4, 1, 3, 0, 0), None, 4096);
    ok(&c);
    let list = NsIdDescriptor::parse_list(&d.unwrap()).unwrap();
    assert_eq!(
        list,
        vec![
            NsIdDescriptor::Nguid(*bdev_uuid.as_bytes()),
            NsIdDescriptor::Uuid(*bdev_uuid.as_bytes()),
            NsIdDescriptor::Csi(nvme::spec::identify::Csi::NVM),
        ]
    );
    // Inactive (but valid) NSID: zero-filled data, success.
    let (c, d) = env.cmd(&h, sqe(0x06, 5, 7, 0, 0, 0), None, 4096);
    ok(&c);
    assert!(d.unwrap().iter().all(|b| *b == 0));
}

#[test]
fn abort_of_an_outstanding_aer_completes_it_as_aborted() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    h.submit(sqe(0x0c, 20, 0, 0, 0, 0), None, 0);
    env.poll();
    h.submit(sqe(0x08, 21, 0, 20 << 16, 0, 0), None, 0);
    env.poll();
    let (a, _) = h.take_response().unwrap();
    let (b, _) = h.take_response().unwrap();
    assert_eq!(
        (a.cid.get(), a.status()),
        (20, Status::from(GenericStatus::ABORTED_BY_REQUEST))
    );
    assert_eq!(
        (b.cid.get(), b.status(), b.dw0.get()),
        (21, Status::SUCCESS, 0)
    );
    let (c, _) = env.cmd(&h, sqe(0x08, 22, 0, 99 << 16, 0, 0), None, 0);
    assert_eq!(
        (c.status(), c.dw0.get()),
        (Status::SUCCESS, 1),
        "unknown CID: not aborted"
    );
}

#[test]
fn keep_alive_timer_and_number_of_queues_features() {
    let env = setup();
    let (h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let get = |cid, fid| sqe(0x0a, cid, 0, fid, 0, 0);
    let (c, _) = env.cmd(&h, get(1, 0x0f), None, 0);
    assert_eq!(c.dw0.get(), 0, "no KATO requested at connect");
    ok(&env.cmd(&h, sqe(0x09, 2, 0, 0x0f, 15_000, 0), None, 0).0);
    let (c, _) = env.cmd(&h, get(3, 0x0f), None, 0);
    assert_eq!(c.dw0.get(), 20_000, "rounded up to KAS granularity (10 s)");
    ok(&env.cmd(&h, sqe(0x09, 4, 0, 0x0f, 500, 0), None, 0).0);
    let (c, _) = env.cmd(&h, get(5, 0x0f), None, 0);
    assert_eq!(c.dw0.get(), 10_000, "raised to min_kato");
    let (c, _) = env.cmd(&h, sqe(0x09, 6, 0, 0x07, 0xffff_ffff, 0), None, 0);
    ok(&c);
    assert_eq!(c.dw0.get(), 126 | (126 << 16));
    let _io = io_connect(&env, HOSTNQN, cntlid, 1);
    let (c, _) = env.cmd(&h, sqe(0x09, 7, 0, 0x07, 1, 0), None, 0);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::COMMAND_SEQUENCE_ERROR)
    );
}

/// Largest multiple of the default KAS granularity (10 s) that fits in 32 bits.
const KATO_CLAMPED: u32 = 4_294_960_000;

#[test]
fn connect_with_kato_u32_max_is_clamped_not_overflowed() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, u32::MAX);
    let (c, _) = env.cmd(&h, sqe(0x0a, 3, 0, 0x0f, 0, 0), None, 0);
    ok(&c);
    assert_eq!(c.dw0.get(), KATO_CLAMPED);
    // A second host still connects and gets its own rounding.
    let (h2, _) = admin_connect(&env, HOSTNQN, 15_000);
    let (c, _) = env.cmd(&h2, sqe(0x0a, 3, 0, 0x0f, 0, 0), None, 0);
    assert_eq!(c.dw0.get(), 20_000);
}

#[test]
fn set_features_kato_near_u32_max_is_clamped_not_overflowed() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    for (cid, v) in [(2u16, u32::MAX), (4, KATO_CLAMPED + 1)] {
        let (c, _) = env.cmd(&h, sqe(0x09, cid, 0, 0x0f, v, 0), None, 0);
        ok(&c);
        let (c, _) = env.cmd(&h, sqe(0x0a, cid + 1, 0, 0x0f, 0, 0), None, 0);
        assert_eq!(c.dw0.get(), KATO_CLAMPED, "set {v:#x}");
    }
    // Exactly representable: kept.
    ok(&env
        .cmd(&h, sqe(0x09, 6, 0, 0x0f, KATO_CLAMPED, 0), None, 0)
        .0);
    let (c, _) = env.cmd(&h, sqe(0x0a, 7, 0, 0x0f, 0, 0), None, 0);
    assert_eq!(c.dw0.get(), KATO_CLAMPED);
}

#[test]
fn set_features_kato_zero_is_keep_alive_invalid_and_keeps_the_timer() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 30_000);
    let (c, _) = env.cmd(&h, sqe(0x09, 2, 0, 0x0f, 0, 0), None, 0);
    assert_eq!(c.status(), Status::from(GenericStatus::KEEP_ALIVE_INVALID));
    let (c, _) = env.cmd(&h, sqe(0x0a, 3, 0, 0x0f, 0, 0), None, 0);
    ok(&c);
    assert_eq!(c.dw0.get(), 30_000);
}

#[test]
fn transfer_above_max_io_size_is_refused() {
    let env = setup();
    let (_h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let (c, _) = env.cmd(&io, sqe(0x02, 1, 1, 0, 0, 511), None, 262_144);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::DATA_SGL_LENGTH_INVALID).with_dnr()
    );
}

#[test]
fn fini_disconnects_hosts_and_stops_listening() {
    let env = setup();
    let (h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    assert!(env.net.is_listening(&env.addr));
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    env.threads.set_current(0);
    env.tgt.fini(move || d.set(true));
    env.poll();
    assert!(done.get());
    assert!(!env.net.is_listening(&env.addr));
    assert!(h.closed_by_target());
    assert!(io.closed_by_target());
    assert!(env.tgt.poll_group_threads().is_empty());
}

#[test]
fn host_disconnect_while_paused_drops_queued_commands() {
    let env = setup();
    let (_h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    env.tgt.pause_subsystem(SUBNQN, || {}).unwrap();
    env.poll();
    io.submit(sqe(0x02, 1, 1, 0, 0, 0), None, 512);
    env.poll();
    io.close();
    env.poll();
    assert!(
        io.closed_by_target(),
        "drained and freed while the subsystem is still paused"
    );
    assert!(io.take_response().is_none());
}

#[test]
fn identify_iocs_vector_lists_the_nvm_command_set() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    let (c, d) = env.cmd(&h, sqe(0x06, 3, 0, 0x1c, 0, 0), None, 4096);
    ok(&c);
    let d = d.unwrap();
    assert_eq!(&d[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(d[8..].iter().all(|b| *b == 0));
}
