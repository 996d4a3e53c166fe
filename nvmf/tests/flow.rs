//! End-to-end flows through the in-memory transport: Connect, enable, Identify, I/O queue,
//! data path byte for byte, hot-add with AEN, keep-alive expiry, shutdown.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::IdentifyController;
use nvme::spec::props::{PropertyOffset, PropertySize};
use nvme::spec::{CommandSpecificStatus, GenericStatus, Sct, Status};
use std::time::Duration;
use zerocopy::FromBytes;

#[test]
fn connect_enable_identify_controller() {
    let env = setup();
    let (h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    assert_eq!(cntlid, 1);
    let (c, _) = env.cmd(
        &h,
        prop_get(3, PropertySize::Four, PropertyOffset::CSTS),
        None,
        0,
    );
    ok(&c);
    assert_eq!(c.dw0.get() & 1, 1, "CSTS.RDY");
    let (c, _) = env.cmd(
        &h,
        prop_get(4, PropertySize::Eight, PropertyOffset::CAP),
        None,
        0,
    );
    ok(&c);
    let cap = u64::from(c.dw0.get()) | (u64::from(c.dw1.get()) << 32);
    assert_eq!(cap & 0xffff, 127, "MQES");
    assert_eq!((cap >> 16) & 1, 1, "CQR");
    let (c, _) = env.cmd(
        &h,
        prop_get(5, PropertySize::Four, PropertyOffset::VS),
        None,
        0,
    );
    assert_eq!(c.dw0.get(), 0x0001_0400);
    let (c, d) = env.cmd(&h, sqe(0x06, 6, 0, 1, 0, 0), None, 4096);
    ok(&c);
    let d = d.unwrap();
    assert_eq!(d.len(), 4096);
    let id = IdentifyController::read_from_bytes(&d).unwrap();
    assert_eq!(id.cntlid.get(), cntlid);
    assert_eq!(id.subnqn().unwrap(), SUBNQN);
    assert_eq!(id.serial_number().unwrap(), "00000000000000000000");
    assert_eq!(id.model_number().unwrap(), "SPDK bdev Controller");
    assert_eq!(id.mdts, 5);
    assert_eq!(id.nn.get(), 32);
    assert_eq!(id.ioccsz.get(), 4 + 4096 / 16);
    assert_eq!(id.maxcmd.get(), 128);
    assert_eq!(id.kas.get(), 100);
    assert_eq!(id.cntrltype, 1);
    assert_eq!(id.sqes, 0x66);
    assert_eq!(id.cqes, 0x44);
}

#[test]
fn write_then_read_on_io_queue_byte_for_byte() {
    let env = setup();
    let (_admin, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    // Write 8 blocks at LBA 10.
    let (c, _) = env.cmd(&io, sqe(0x01, 1, 1, 10, 0, 7), Some(data.clone()), 4096);
    ok(&c);
    assert_eq!(c.sqid.get(), 1);
    let (c, d) = env.cmd(&io, sqe(0x02, 2, 1, 10, 0, 7), None, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), data);
    // The neighbouring block 9 is still zero.
    let (c, d) = env.cmd(&io, sqe(0x02, 3, 1, 9, 0, 0), None, 512);
    ok(&c);
    assert_eq!(d.unwrap(), vec![0u8; 512]);
    // Write Zeroes over LBA 11 then read it back.
    let (c, _) = env.cmd(&io, sqe(0x08, 4, 1, 11, 0, 0), None, 0);
    ok(&c);
    let (_, d) = env.cmd(&io, sqe(0x02, 5, 1, 10, 0, 1), None, 1024);
    let d = d.unwrap();
    assert_eq!(&d[..512], &data[..512]);
    assert_eq!(&d[512..], &[0u8; 512][..]);
}

#[test]
fn host_not_on_allow_list_is_refused_at_connect() {
    let env = setup();
    env.tgt.allow_any_host(SUBNQN, false).unwrap();
    env.tgt
        .add_host(
            SUBNQN,
            "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-2222-3333-4444-555555555555",
        )
        .unwrap();
    env.update();
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(HOSTNQN, SUBNQN, 0xffff)),
        1024,
    );
    assert_eq!(c.status(), Status::new(Sct::COMMAND_SPECIFIC, 0x84));
    let h2 = env.connect_host();
    let (c, _) = env.cmd(
        &h2,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data(
            "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-2222-3333-4444-555555555555",
            SUBNQN,
            0xffff,
        )),
        1024,
    );
    ok(&c);
}

#[test]
fn namespace_hot_add_raises_aen_and_changed_ns_log() {
    let env = setup();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    // AER outstanding.
    h.submit(sqe(0x0c, 9, 0, 0, 0, 0), None, 0);
    env.poll();
    assert!(h.take_response().is_none());
    let b = unique("Malloc");
    bdev_malloc::create(&bdev_malloc::MallocOpts::new(&b, 64, 512)).unwrap();
    assert_eq!(
        env.tgt
            .add_ns(SUBNQN, &b, 0, None, None, None, 0, false)
            .unwrap(),
        2
    );
    env.update();
    let (c, _) = h.take_response().expect("AEN");
    assert_eq!(c.cid.get(), 9);
    ok(&c);
    assert_eq!(c.dw0.get(), 0x0004_0002);
    // Changed NS list: NSID 2, then cleared after the read (RAE=0).
    let numd = 1024 - 1;
    let (c, d) = env.cmd(&h, sqe(0x02, 10, 0, 0x04 | (numd << 16), 0, 0), None, 4096);
    ok(&c);
    let d = d.unwrap();
    assert_eq!(&d[0..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
    let (_, d) = env.cmd(&h, sqe(0x02, 11, 0, 0x04 | (numd << 16), 0, 0), None, 4096);
    assert_eq!(&d.unwrap()[0..4], &[0, 0, 0, 0]);
    // Identify active NS list now shows 1 and 2.
    let (_, d) = env.cmd(&h, sqe(0x06, 12, 0, 2, 0, 0), None, 4096);
    assert_eq!(&d.unwrap()[0..12], &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn keep_alive_expiry_tears_the_controller_down() {
    let env = setup();
    let (h, cntlid) = admin_connect(&env, HOSTNQN, 10_000);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    env.threads.advance_time(Duration::from_millis(5_000));
    let (c, _) = env.cmd(&h, sqe(0x18, 5, 0, 0, 0, 0), None, 0);
    ok(&c);
    env.threads.advance_time(Duration::from_millis(9_000));
    env.poll();
    assert!(!h.closed_by_target());
    env.threads.advance_time(Duration::from_millis(2_000));
    env.poll();
    env.poll();
    assert!(h.closed_by_target());
    assert!(io.closed_by_target());
    // The controller ID is free again: a new association gets the next one and works.
    let (_h2, id2) = admin_connect(&env, HOSTNQN, 0);
    assert_eq!(id2, 2);
}

#[test]
fn shutdown_sets_shst_complete_and_disconnects_io_queues() {
    let env = setup();
    let (h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let (c, _) = env.cmd(
        &h,
        prop_set(3, PropertyOffset::CC, u64::from(CC_ENABLE | (1 << 14))),
        None,
        0,
    );
    ok(&c);
    let (c, _) = env.cmd(
        &h,
        prop_get(4, PropertySize::Four, PropertyOffset::CSTS),
        None,
        0,
    );
    assert_eq!((c.dw0.get() >> 2) & 3, 2, "SHST complete");
    // Shutdown disconnects the I/O queues (SPDK nvmf_ctrlr_cc_reset_shn).
    env.poll();
    assert!(io.closed_by_target());
    // Admin commands other than fabrics are refused while shut down.
    let (c, _) = env.cmd(&h, sqe(0x06, 5, 0, 1, 0, 0), None, 4096);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::COMMAND_SEQUENCE_ERROR)
    );
}

#[test]
fn controller_reset_disconnects_io_queues_and_allows_reconnect() {
    let env = setup();
    let (h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let io = io_connect(&env, HOSTNQN, cntlid, 1);
    let (c, _) = env.cmd(&h, prop_set(3, PropertyOffset::CC, 0x0046_0000), None, 0);
    ok(&c);
    env.poll();
    assert!(io.closed_by_target());
    let (c, _) = env.cmd(
        &h,
        prop_get(4, PropertySize::Four, PropertyOffset::CSTS),
        None,
        0,
    );
    assert_eq!(c.dw0.get() & 1, 0, "CSTS.RDY cleared");
    let (c, _) = env.cmd(
        &h,
        prop_set(5, PropertyOffset::CC, u64::from(CC_ENABLE)),
        None,
        0,
    );
    ok(&c);
    let io2 = io_connect(&env, HOSTNQN, cntlid, 1);
    let (c, _) = env.cmd(&io2, sqe(0x02, 1, 1, 0, 0, 0), None, 512);
    ok(&c);
}

#[test]
fn ana_log_page_when_ana_reporting() {
    let env = setup();
    env.tgt
        .with_subsystem(SUBNQN, |s| s.ana_reporting = true)
        .unwrap();
    env.update();
    let (h, _) = admin_connect(&env, HOSTNQN, 0);
    let numd = 1024 / 4 - 1;
    let (c, d) = env.cmd(&h, sqe(0x02, 7, 0, 0x0c | (numd << 16), 0, 0), None, 1024);
    ok(&c);
    let d = d.unwrap();
    assert_eq!(u16::from_le_bytes([d[8], d[9]]), 1, "one ANA group");
    assert_eq!(
        u32::from_le_bytes(d[16..20].try_into().unwrap()),
        1,
        "ANAGRPID 1"
    );
    assert_eq!(
        u32::from_le_bytes(d[20..24].try_into().unwrap()),
        1,
        "one NSID"
    );
    assert_eq!(d[32], 0x01, "optimized");
    assert_eq!(
        u32::from_le_bytes(d[48..52].try_into().unwrap()),
        1,
        "NSID 1"
    );
    let (_, d) = env.cmd(&h, sqe(0x06, 8, 0, 1, 0, 0), None, 4096);
    let id = IdentifyController::read_from_bytes(&d.unwrap()).unwrap();
    assert_eq!(id.cmic & 0x08, 0x08);
    assert_eq!(id.anatt, 10);
}

#[test]
fn io_connect_with_duplicate_qid_is_refused() {
    let env = setup();
    let (_h, cntlid) = admin_connect(&env, HOSTNQN, 0);
    let _io = io_connect(&env, HOSTNQN, cntlid, 1);
    let h = env.connect_host();
    let (c, _) = env.cmd(
        &h,
        connect_sqe(1, 1, 127, 0),
        Some(connect_data(HOSTNQN, SUBNQN, cntlid)),
        1024,
    );
    assert_eq!(
        c.status(),
        Status::from(CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER)
    );
}
