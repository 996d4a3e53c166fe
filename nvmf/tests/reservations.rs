//! Reservations (NVMe Base 2.0, 8.19; SPDK `nvmf_ns_reservation_*`): three hosts with
//! different 128-bit Host Identifiers on one namespace; every status asserted exactly, the
//! bdev's bytes checked after refused writes, notifications read from log page 80h.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use nvme::spec::identify::{IdentifyController, IdentifyNamespace};
use nvme::spec::{CommandSpecificStatus, Cqe, GenericStatus, Status};
use nvmf::testing::TestHost;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use zerocopy::FromBytes;

const NSID: u32 = 1;
/// Reservation Register actions / Acquire actions / Release actions (CDW10 bits 2:0).
const REGISTER: u32 = 0;
const UNREGISTER: u32 = 1;
const REPLACE: u32 = 2;
const ACQUIRE: u32 = 0;
const PREEMPT: u32 = 1;
const PREEMPT_AND_ABORT: u32 = 2;
const RELEASE: u32 = 0;
const CLEAR: u32 = 1;
/// Reservation notification log types.
const LOG_REGISTRATION_PREEMPTED: u8 = 1;
const LOG_RESERVATION_RELEASED: u8 = 2;
const LOG_RESERVATION_PREEMPTED: u8 = 3;
/// AER completion DW0 for "reservation log page available": type 6, info 0, LID 80h.
const AEN_RESERVATION: u32 = 0x0080_0006;

struct Host {
    admin: TestHost,
    io: TestHost,
    cntlid: u16,
    hostid: [u8; 16],
}

fn hostid(n: u8) -> [u8; 16] {
    std::array::from_fn(|i| n.wrapping_mul(0x10).wrapping_add(i as u8))
}

fn hostnqn(n: u8) -> String {
    format!("nqn.2014-08.org.nvmexpress:uuid:{n:02x}000000-1111-2222-3333-444444444444")
}

/// Connect data with the host's own HOSTID (bytes 0..16).
fn connect_data_id(n: u8, cntlid: u16) -> Vec<u8> {
    let mut d = connect_data(&hostnqn(n), SUBNQN, cntlid);
    d[..16].copy_from_slice(&hostid(n));
    d
}

/// A host with HOSTID `hostid(n)`: admin queue (controller enabled) and I/O queue 1.
fn host(env: &Env, n: u8) -> Host {
    let admin = env.connect_host();
    let (c, _) = env.cmd(
        &admin,
        connect_sqe(1, 0, 31, 0),
        Some(connect_data_id(n, 0xffff)),
        1024,
    );
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
    let (c, _) = env.cmd(
        &io,
        connect_sqe(1, 1, 127, 0),
        Some(connect_data_id(n, cntlid)),
        1024,
    );
    ok(&c);
    Host {
        admin,
        io,
        cntlid,
        hostid: hostid(n),
    }
}

fn keys(a: u64, b: u64) -> Vec<u8> {
    [a.to_le_bytes(), b.to_le_bytes()].concat()
}

fn g(s: GenericStatus) -> Status {
    Status::from(s)
}

fn conflict() -> Status {
    g(GenericStatus::RESERVATION_CONFLICT)
}

fn invalid_field() -> Status {
    g(GenericStatus::INVALID_FIELD)
}

fn register(env: &Env, h: &Host, action: u32, iekey: bool, crkey: u64, nrkey: u64) -> Status {
    register_cptpl(env, h, action, iekey, 0, crkey, nrkey)
}

fn register_cptpl(
    env: &Env,
    h: &Host,
    action: u32,
    iekey: bool,
    cptpl: u32,
    crkey: u64,
    nrkey: u64,
) -> Status {
    let cdw10 = action | (u32::from(iekey) << 3) | (cptpl << 30);
    let (c, _) = env.cmd(
        &h.io,
        sqe(0x0d, 0x10, NSID, cdw10, 0, 0),
        Some(keys(crkey, nrkey)),
        16,
    );
    c.status()
}

fn acquire_sqe(action: u32, rtype: u32) -> nvme::spec::Sqe {
    sqe(0x11, 0x11, NSID, action | (rtype << 8), 0, 0)
}

fn acquire(env: &Env, h: &Host, action: u32, rtype: u32, crkey: u64, prkey: u64) -> Status {
    let (c, _) = env.cmd(
        &h.io,
        acquire_sqe(action, rtype),
        Some(keys(crkey, prkey)),
        16,
    );
    c.status()
}

fn release(env: &Env, h: &Host, action: u32, rtype: u32, crkey: u64) -> Status {
    let (c, _) = env.cmd(
        &h.io,
        sqe(0x15, 0x15, NSID, action | (rtype << 8), 0, 0),
        Some(crkey.to_le_bytes().to_vec()),
        8,
    );
    c.status()
}

/// Reservation Report with NUMD `numd` (0-based dwords), EDS `eds`, buffer `len`.
fn report(env: &Env, h: &Host, numd: u32, eds: bool, len: u32) -> (Cqe, Option<Vec<u8>>) {
    env.cmd(
        &h.io,
        sqe(0x0e, 0x0e, NSID, numd, u32::from(eds), 0),
        None,
        len,
    )
}

/// The whole extended report (header plus 16 entries fit in 4096 bytes).
fn full_report(env: &Env, h: &Host) -> Vec<u8> {
    let (c, d) = report(env, h, 1023, true, 4096);
    ok(&c);
    d.unwrap()
}

/// The 64-byte extended header: GEN, RTYPE, REGCTL, PTPLS 0.
fn header(gen_: u32, rtype: u8, regctl: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[0..4].copy_from_slice(&gen_.to_le_bytes());
    h[4] = rtype;
    h[5..7].copy_from_slice(&regctl.to_le_bytes());
    h
}

/// A 64-byte Registered Controller extended entry.
fn entry(cntlid: u16, holder: bool, rkey: u64, hostid: [u8; 16]) -> Vec<u8> {
    let mut e = vec![0u8; 64];
    e[0..2].copy_from_slice(&cntlid.to_le_bytes());
    e[2] = u8::from(holder);
    e[8..16].copy_from_slice(&rkey.to_le_bytes());
    e[16..32].copy_from_slice(&hostid);
    e
}

fn padded(mut v: Vec<u8>, len: usize) -> Vec<u8> {
    v.resize(len, 0);
    v
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..512u32)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

fn write0(env: &Env, h: &Host, data: &[u8]) -> Status {
    let (c, _) = env.cmd(
        &h.io,
        sqe(0x01, 0x20, NSID, 0, 0, 0),
        Some(data.to_vec()),
        512,
    );
    c.status()
}

fn read0(env: &Env, h: &Host) -> (Status, Option<Vec<u8>>) {
    let (c, d) = env.cmd(&h.io, sqe(0x02, 0x21, NSID, 0, 0, 0), None, 512);
    (c.status(), d)
}

/// Reads log page 80h: `numd` 0-based dwords, RAE=0.
fn resv_log(env: &Env, h: &Host, numd: u32) -> Vec<u8> {
    let (c, d) = env.cmd(
        &h.admin,
        sqe(0x02, 0x30, 0xffff_ffff, 0x80 | (numd << 16), 0, 0),
        None,
        (numd + 1) * 4,
    );
    ok(&c);
    d.unwrap()
}

/// One 64-byte log entry: count, type, pages after it, NSID.
fn log_entry(count: u64, log_type: u8, avail: u8, nsid: u32) -> Vec<u8> {
    let mut e = vec![0u8; 64];
    e[0..8].copy_from_slice(&count.to_le_bytes());
    e[8] = log_type;
    e[9] = avail;
    e[12..16].copy_from_slice(&nsid.to_le_bytes());
    e
}

fn submit_aer(h: &Host, cid: u16) {
    h.admin.submit(sqe(0x0c, cid, 0, 0, 0, 0), None, 0);
}

/// The bdev's successful write operations so far.
fn bdev_writes(env: &Env) -> u64 {
    env.threads.set_current(0);
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    bdev::get_by_name(&env.bdev)
        .unwrap()
        .iostat(move |s| *o.borrow_mut() = Some(s.num_write_ops))
        .unwrap();
    env.poll();
    env.threads.set_current(0);
    out.borrow_mut().take().expect("iostat not answered")
}

#[test]
fn identify_advertises_reservations_and_every_type() {
    let env = setup();
    let a = host(&env, 1);
    let (c, d) = env.cmd(&a.admin, sqe(0x06, 5, 0, 0x01, 0, 0), None, 4096);
    ok(&c);
    let id = IdentifyController::read_from_bytes(&d.unwrap()).unwrap();
    assert_eq!(id.oncs.get() & (1 << 5), 1 << 5, "ONCS reservations");
    let (c, d) = env.cmd(&a.admin, sqe(0x06, 6, NSID, 0x00, 0, 0), None, 4096);
    ok(&c);
    let ns = IdentifyNamespace::read_from_bytes(&d.unwrap()).unwrap();
    // Bits 1-6 every type, bit 7 IEKEY, bit 0 (PTPL) clear: the namespace has no ptpl_file.
    assert_eq!(ns.rescap, 0xfe);
    // Supported log pages list 80h; Commands Supported and Effects list the four opcodes.
    let (c, d) = env.cmd(&a.admin, sqe(0x02, 7, 0, 255 << 16, 0, 0), None, 1024);
    ok(&c);
    assert_eq!(d.unwrap()[0x80 * 4], 1);
    let (c, d) = env.cmd(
        &a.admin,
        sqe(0x02, 8, 0, 0x05 | (1023 << 16), 0, 0),
        None,
        4096,
    );
    ok(&c);
    let d = d.unwrap();
    for opc in [0x0du8, 0x0e, 0x11, 0x15] {
        let o = 1024 + usize::from(opc) * 4;
        assert_eq!(d[o..o + 4], [1, 0, 0, 0], "effects of I/O opcode {opc:#x}");
    }
}

#[test]
fn register_unregister_replace_with_right_and_wrong_keys() {
    let env = setup();
    let (a, b, c) = (host(&env, 1), host(&env, 2), host(&env, 3));
    assert_eq!(
        register(&env, &a, REGISTER, false, 0, 0),
        invalid_field(),
        "zero NRKEY"
    );
    assert_eq!(
        register(&env, &a, REGISTER, false, 0, 0xa1),
        Status::SUCCESS
    );
    assert_eq!(
        register(&env, &a, REGISTER, false, 0, 0xa1),
        Status::SUCCESS,
        "same key again"
    );
    assert_eq!(
        register(&env, &a, REGISTER, false, 0, 0xa2),
        conflict(),
        "other key"
    );
    assert_eq!(
        register(&env, &a, REPLACE, false, 0xbad, 0xa3),
        conflict(),
        "wrong CRKEY"
    );
    assert_eq!(
        register(&env, &a, REPLACE, false, 0xa1, 0),
        invalid_field(),
        "zero NRKEY"
    );
    assert_eq!(
        register(&env, &a, REPLACE, false, 0xa1, 0xa3),
        Status::SUCCESS
    );
    assert_eq!(
        register(&env, &a, REPLACE, true, 0xbad, 0xa4),
        Status::SUCCESS,
        "IEKEY"
    );
    assert_eq!(
        register(&env, &b, REPLACE, false, 0, 0xb1),
        conflict(),
        "unregistered"
    );
    assert_eq!(
        register(&env, &b, REPLACE, true, 0, 0xb1),
        Status::SUCCESS,
        "IEKEY registers"
    );
    assert_eq!(register(&env, &b, UNREGISTER, false, 0xbad, 0), conflict());
    assert_eq!(
        register(&env, &b, UNREGISTER, true, 0xbad, 0),
        Status::SUCCESS
    );
    assert_eq!(
        register(&env, &c, UNREGISTER, false, 0, 0),
        conflict(),
        "never registered"
    );
    assert_eq!(
        register(&env, &a, 3, false, 0xa4, 0xa5),
        invalid_field(),
        "RREGA 3"
    );
    // CPTPL: "persist" needs a ptpl_file (none here: refused), "clear" is a no-op, 01b is
    // reserved.
    assert_eq!(
        register_cptpl(&env, &a, REGISTER, false, 3, 0, 0xa4),
        invalid_field()
    );
    assert_eq!(
        register_cptpl(&env, &a, REGISTER, false, 1, 0, 0xa4),
        invalid_field()
    );
    assert_eq!(
        register_cptpl(&env, &a, REGISTER, false, 2, 0, 0xa4),
        Status::SUCCESS
    );
    // Generation: every successful Register, also those that changed nothing: A register
    // (twice), A replace (twice), B register (IEKEY replace), B unregister, A CPTPL clear.
    let expect = [header(7, 0, 1), entry(a.cntlid, false, 0xa4, a.hostid)].concat();
    assert_eq!(full_report(&env, &c), padded(expect, 4096));
}

#[test]
fn each_reservation_type_refuses_exactly_the_hosts_the_spec_excludes() {
    let env = setup();
    let (a, b, c) = (host(&env, 1), host(&env, 2), host(&env, 3));
    assert_eq!(
        register(&env, &a, REGISTER, false, 0, 0xa1),
        Status::SUCCESS
    );
    assert_eq!(
        register(&env, &b, REGISTER, false, 0, 0xb1),
        Status::SUCCESS
    );
    let mut expected = vec![0u8; 512];
    let mut allowed_writes = 0u64;
    let writes_before = bdev_writes(&env);
    // (type, registrant read, registrant write, non-registrant read, non-registrant write)
    let table = [
        (1u32, true, false, true, false),
        (2, false, false, false, false),
        (3, true, true, true, false),
        (4, true, true, false, false),
        (5, true, true, true, false),
        (6, true, true, false, false),
    ];
    for (t, b_read, b_write, c_read, c_write) in table {
        assert_eq!(
            acquire(&env, &a, ACQUIRE, t, 0xa1, 0),
            Status::SUCCESS,
            "type {t}"
        );
        let cases = [
            (&a, true, true, "holder"),
            (&b, b_read, b_write, "registrant"),
            (&c, c_read, c_write, "non-registrant"),
        ];
        for (i, (h, may_read, may_write, who)) in cases.into_iter().enumerate() {
            let data = pattern((t as u8) << 4 | i as u8);
            let s = write0(&env, h, &data);
            if may_write {
                assert_eq!(s, Status::SUCCESS, "type {t} {who} write");
                expected = data;
                allowed_writes += 1;
            } else {
                assert_eq!(s, conflict(), "type {t} {who} write");
            }
            let (s, d) = read0(&env, h);
            if may_read {
                assert_eq!(s, Status::SUCCESS, "type {t} {who} read");
                assert_eq!(d.unwrap(), expected, "type {t} {who} read data");
            } else {
                assert_eq!((s, d), (conflict(), None), "type {t} {who} read");
            }
            // The holder always sees the bytes of the last allowed write only.
            let (s, d) = read0(&env, &a);
            assert_eq!(s, Status::SUCCESS);
            assert_eq!(d.unwrap(), expected, "type {t} after {who}'s write");
        }
        assert_eq!(
            release(&env, &a, RELEASE, t, 0xa1),
            Status::SUCCESS,
            "type {t}"
        );
    }
    // Refused writes never reached the bdev.
    assert_eq!(bdev_writes(&env) - writes_before, allowed_writes);
    assert_eq!(allowed_writes, 6 + 4);
}

#[test]
fn acquire_rules_holder_other_type_and_bad_fields() {
    let env = setup();
    let (a, b, c) = (host(&env, 1), host(&env, 2), host(&env, 3));
    register(&env, &a, REGISTER, false, 0, 0xa1);
    register(&env, &b, REGISTER, false, 0, 0xb1);
    assert_eq!(
        acquire(&env, &c, ACQUIRE, 1, 0xc1, 0),
        conflict(),
        "not registered"
    );
    assert_eq!(
        acquire(&env, &a, ACQUIRE, 1, 0xbad, 0),
        conflict(),
        "wrong CRKEY"
    );
    assert_eq!(
        acquire(&env, &a, ACQUIRE, 7, 0xa1, 0),
        invalid_field(),
        "type 7"
    );
    assert_eq!(
        acquire(&env, &a, ACQUIRE, 0, 0xa1, 0),
        invalid_field(),
        "type 0"
    );
    let (cq, _) = env.cmd(
        &a.io,
        sqe(0x11, 0x11, NSID, ACQUIRE | (1 << 3) | (1 << 8), 0, 0),
        Some(keys(0xa1, 0)),
        16,
    );
    assert_eq!(cq.status(), invalid_field(), "IEKEY on acquire");
    assert_eq!(acquire(&env, &a, 3, 1, 0xa1, 0), invalid_field(), "RACQA 3");
    assert_eq!(acquire(&env, &a, ACQUIRE, 1, 0xa1, 0), Status::SUCCESS);
    assert_eq!(
        acquire(&env, &a, ACQUIRE, 1, 0xa1, 0),
        Status::SUCCESS,
        "again, same type"
    );
    assert_eq!(
        acquire(&env, &a, ACQUIRE, 2, 0xa1, 0),
        conflict(),
        "holder, other type"
    );
    assert_eq!(
        acquire(&env, &b, ACQUIRE, 1, 0xb1, 0),
        conflict(),
        "held by A"
    );
    // Preempt with a zero PRKEY while A holds a single-holder reservation.
    assert_eq!(
        acquire(&env, &b, PREEMPT, 1, 0xb1, 0),
        conflict(),
        "zero PRKEY"
    );
    let expect = [
        header(2, 1, 2),
        entry(a.cntlid, true, 0xa1, a.hostid),
        entry(b.cntlid, false, 0xb1, b.hostid),
    ]
    .concat();
    assert_eq!(full_report(&env, &c), padded(expect, 4096));
}

#[test]
fn preempt_moves_the_reservation_and_notifies_preempted_and_remaining_hosts() {
    let env = setup();
    let (a, b, c) = (host(&env, 1), host(&env, 2), host(&env, 3));
    register(&env, &a, REGISTER, false, 0, 0xa1);
    register(&env, &b, REGISTER, false, 0, 0xb1);
    register(&env, &c, REGISTER, false, 0, 0xc1);
    assert_eq!(acquire(&env, &a, ACQUIRE, 1, 0xa1, 0), Status::SUCCESS);
    ok_write(&env, &a, 0x11);
    submit_aer(&a, 50);
    submit_aer(&c, 51);
    env.poll();
    assert!(a.admin.take_response().is_none(), "no event yet");
    // B preempts A's Write Exclusive with an Exclusive Access reservation.
    assert_eq!(acquire(&env, &b, PREEMPT, 2, 0xb1, 0xa1), Status::SUCCESS);
    let (cqe, _) = a.admin.take_response().expect("AEN to the preempted host");
    assert_eq!((cqe.cid.get(), cqe.status()), (50, Status::SUCCESS));
    assert_eq!(cqe.dw0.get(), AEN_RESERVATION);
    let (cqe, _) = c
        .admin
        .take_response()
        .expect("AEN to the remaining registrant");
    assert_eq!((cqe.cid.get(), cqe.dw0.get()), (51, AEN_RESERVATION));
    assert_eq!(
        resv_log(&env, &a, 15),
        log_entry(1, LOG_REGISTRATION_PREEMPTED, 0, NSID)
    );
    assert_eq!(
        resv_log(&env, &a, 15),
        vec![0u8; 64],
        "the entry was consumed"
    );
    assert_eq!(
        resv_log(&env, &c, 15),
        log_entry(1, LOG_RESERVATION_RELEASED, 0, NSID)
    );
    assert_eq!(
        resv_log(&env, &b, 15),
        vec![0u8; 64],
        "the preempting host gets nothing"
    );
    // A lost its registration: Exclusive Access refuses its reads and writes.
    assert_eq!(write0(&env, &a, &pattern(0x22)), conflict());
    assert_eq!(read0(&env, &a), (conflict(), None));
    assert_eq!(register(&env, &a, UNREGISTER, false, 0xa1, 0), conflict());
    let (s, d) = read0(&env, &b);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(d.unwrap(), pattern(0x11));
    // Generation: three registrations and one preempt.
    let expect = [
        header(4, 2, 2),
        entry(b.cntlid, true, 0xb1, b.hostid),
        entry(c.cntlid, false, 0xc1, c.hostid),
    ]
    .concat();
    assert_eq!(full_report(&env, &b), padded(expect, 4096));
}

fn ok_write(env: &Env, h: &Host, seed: u8) {
    assert_eq!(write0(env, h, &pattern(seed)), Status::SUCCESS);
}

#[test]
fn preempt_and_abort_completes_after_the_preempted_hosts_io() {
    let env = setup();
    let (a, b) = (host(&env, 1), host(&env, 2));
    register(&env, &a, REGISTER, false, 0, 0xa1);
    register(&env, &b, REGISTER, false, 0, 0xb1);
    assert_eq!(acquire(&env, &a, ACQUIRE, 1, 0xa1, 0), Status::SUCCESS);
    // 1000 IOPS: each channel admits one I/O per 1 ms timeslice, so A's writes stay queued
    // in the bdev layer until the manual clock moves.
    bdev::get_by_name(&env.bdev)
        .unwrap()
        .set_qos_limits(bdev::QosLimits {
            rw_ios_per_sec: 1000,
            ..Default::default()
        })
        .unwrap();
    for i in 0..3u16 {
        let s = sqe(0x01, 0x40 + i, NSID, 8, 0, 0);
        a.io.submit(s, Some(pattern(0x40 + i as u8)), 512);
    }
    env.poll();
    let mut a_done = Vec::new();
    while let Some((cqe, _)) = a.io.take_response() {
        a_done.push((cqe.cid.get(), cqe.status()));
    }
    assert!(a_done.len() < 3, "QoS holds some of A's writes: {a_done:?}");
    b.io.submit(
        acquire_sqe(PREEMPT_AND_ABORT, 1),
        Some(keys(0xb1, 0xa1)),
        16,
    );
    env.poll();
    assert!(
        b.io.take_response().is_none(),
        "preempt-and-abort waits for A's writes"
    );
    // New commands of the preempted host are refused at once.
    assert_eq!(write0(&env, &a, &pattern(0x77)), conflict());
    let mut b_status = None;
    for _ in 0..20 {
        env.threads.advance_time(Duration::from_millis(1));
        env.poll();
        while let Some((cqe, _)) = a.io.take_response() {
            a_done.push((cqe.cid.get(), cqe.status()));
        }
        if let Some((cqe, _)) = b.io.take_response() {
            b_status = Some(cqe.status());
            // Every write A sent before the preempt completed before this answer.
            assert_eq!(a_done.len(), 3, "A's writes at B's completion: {a_done:?}");
            break;
        }
    }
    assert_eq!(b_status, Some(Status::SUCCESS));
    a_done.sort_unstable_by_key(|(cid, _)| *cid);
    assert_eq!(
        a_done,
        vec![
            (0x40, Status::SUCCESS),
            (0x41, Status::SUCCESS),
            (0x42, Status::SUCCESS)
        ]
    );
    let expect = [header(3, 1, 1), entry(b.cntlid, true, 0xb1, b.hostid)].concat();
    assert_eq!(full_report(&env, &b), padded(expect, 4096));
}

#[test]
fn release_with_wrong_type_is_invalid_field_and_clear_preempts_everyone() {
    let env = setup();
    let (a, b, c) = (host(&env, 1), host(&env, 2), host(&env, 3));
    register(&env, &a, REGISTER, false, 0, 0xa1);
    register(&env, &b, REGISTER, false, 0, 0xb1);
    assert_eq!(acquire(&env, &a, ACQUIRE, 3, 0xa1, 0), Status::SUCCESS);
    assert_eq!(
        release(&env, &a, RELEASE, 1, 0xa1),
        invalid_field(),
        "wrong type"
    );
    assert_eq!(
        release(&env, &a, RELEASE, 3, 0xbad),
        conflict(),
        "wrong CRKEY"
    );
    assert_eq!(
        release(&env, &c, RELEASE, 3, 0),
        conflict(),
        "not registered"
    );
    let (cq, _) = env.cmd(
        &a.io,
        sqe(0x15, 0x15, NSID, RELEASE | (1 << 3) | (3 << 8), 0, 0),
        Some(0xa1u64.to_le_bytes().to_vec()),
        8,
    );
    assert_eq!(cq.status(), invalid_field(), "IEKEY on release");
    assert_eq!(release(&env, &a, 2, 3, 0xa1), invalid_field(), "RRELA 2");
    // A registrant that does not hold the reservation: success, nothing changes.
    assert_eq!(release(&env, &b, RELEASE, 3, 0xb1), Status::SUCCESS);
    assert_eq!(full_report(&env, &c)[4], 3, "still reserved");
    assert_eq!(release(&env, &a, RELEASE, 3, 0xa1), Status::SUCCESS);
    assert_eq!(full_report(&env, &c)[4], 0, "released");
    assert_eq!(
        resv_log(&env, &b, 15),
        log_entry(1, LOG_RESERVATION_RELEASED, 0, NSID)
    );
    // Releasing when nothing is held succeeds.
    assert_eq!(release(&env, &a, RELEASE, 3, 0xa1), Status::SUCCESS);
    // Clear: every registration goes, the others are told "reservation preempted".
    assert_eq!(acquire(&env, &a, ACQUIRE, 1, 0xa1, 0), Status::SUCCESS);
    assert_eq!(release(&env, &b, CLEAR, 0, 0xb1), Status::SUCCESS);
    assert_eq!(
        resv_log(&env, &a, 15),
        log_entry(1, LOG_RESERVATION_PREEMPTED, 0, NSID)
    );
    assert_eq!(resv_log(&env, &b, 15), vec![0u8; 64]);
    // Generation: two registrations and the clear.
    assert_eq!(full_report(&env, &c), padded(header(3, 0, 0), 4096));
    ok_write(&env, &c, 0x33);
}

#[test]
fn report_is_byte_exact_truncated_by_numd_and_refuses_the_regular_format() {
    let env = setup();
    let (a, b) = (host(&env, 1), host(&env, 2));
    register(&env, &a, REGISTER, false, 0, 0x1122_3344_5566_7788);
    register(&env, &b, REGISTER, false, 0, 0xb1);
    assert_eq!(acquire(&env, &b, ACQUIRE, 4, 0xb1, 0), Status::SUCCESS);
    let full = [
        header(2, 4, 2),
        entry(a.cntlid, false, 0x1122_3344_5566_7788, a.hostid),
        entry(b.cntlid, true, 0xb1, b.hostid),
    ]
    .concat();
    assert_eq!(full.len(), 192);
    // NUMD covering exactly header + entries.
    let (c, d) = report(&env, &a, 47, true, 192);
    ok(&c);
    assert_eq!(d.unwrap(), full);
    // NUMD truncation: header only, then header and the first entry.
    let (c, d) = report(&env, &a, 15, true, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), full[..64]);
    let (c, d) = report(&env, &a, 31, true, 4096);
    ok(&c);
    assert_eq!(d.unwrap(), full[..128]);
    // A NUMD longer than the buffer is served up to the buffer.
    let (c, d) = report(&env, &a, 1023, true, 100);
    ok(&c);
    assert_eq!(d.unwrap(), full[..100]);
    // Shorter than the 64-byte header: SPDK answers Internal Device Error.
    let (c, d) = report(&env, &a, 14, true, 60);
    assert_eq!(
        (c.status(), d),
        (g(GenericStatus::INTERNAL_DEVICE_ERROR), None)
    );
    // EDS=0: NVMe-oF hosts have 128-bit host identifiers.
    let (c, d) = report(&env, &a, 1023, false, 4096);
    assert_eq!(
        (c.status(), d),
        (g(GenericStatus::HOSTID_INCONSISTENT_FORMAT), None)
    );
    // No buffer at all.
    let (c, _) = report(&env, &a, 15, true, 0);
    assert_eq!(c.status(), invalid_field());
    // A non-registrant may read the report even under Exclusive Access - Registrants Only.
    let x = host(&env, 9);
    let (c, d) = report(&env, &x, 47, true, 192);
    ok(&c);
    assert_eq!(d.unwrap(), full);
}

#[test]
fn short_or_missing_key_data_is_invalid_field() {
    let env = setup();
    let a = host(&env, 1);
    let cmd = |opc: u8, data: Option<Vec<u8>>, len: u32| {
        let (c, _) = env.cmd(&a.io, sqe(opc, 0x50, NSID, 0, 0, 0), data, len);
        c.status()
    };
    assert_eq!(cmd(0x0d, None, 0), invalid_field(), "register without data");
    assert_eq!(
        cmd(0x0d, Some(vec![1; 15]), 15),
        invalid_field(),
        "register, 15 bytes"
    );
    assert_eq!(
        cmd(0x11, Some(vec![1; 8]), 8),
        invalid_field(),
        "acquire, 8 bytes"
    );
    assert_eq!(
        cmd(0x15, Some(vec![1; 7]), 7),
        invalid_field(),
        "release, 7 bytes"
    );
    // Data shorter than the SGL length claims.
    assert_eq!(
        cmd(0x0d, Some(vec![1; 8]), 16),
        invalid_field(),
        "register, SGL 16, data 8"
    );
    // Nothing was registered by the refused commands.
    assert_eq!(full_report(&env, &a), padded(header(0, 0, 0), 4096));
    // Release takes the 8-byte data structure; register accepts a longer buffer.
    let mut long = keys(0, 0xa1);
    long.extend_from_slice(&[0xee; 16]);
    assert_eq!(cmd(0x0d, Some(long), 32), Status::SUCCESS);
    assert_eq!(release(&env, &a, RELEASE, 1, 0xa1), Status::SUCCESS);
}

#[test]
fn controllers_of_one_host_share_its_registration() {
    let env = setup();
    let a1 = host(&env, 1);
    let a2 = host(&env, 1);
    let b = host(&env, 2);
    assert_ne!(a1.cntlid, a2.cntlid);
    assert_eq!(
        register(&env, &a1, REGISTER, false, 0, 0xa1),
        Status::SUCCESS
    );
    // The second controller of the same HOSTID is registered too, with the same key.
    assert_eq!(
        register(&env, &a2, REGISTER, false, 0, 0xa1),
        Status::SUCCESS
    );
    assert_eq!(acquire(&env, &a2, ACQUIRE, 2, 0xa1, 0), Status::SUCCESS);
    ok_write(&env, &a1, 0x5a);
    assert_eq!(read0(&env, &b), (conflict(), None));
    // Generation: both Registers succeeded.
    let expect = [header(2, 2, 1), entry(a1.cntlid, true, 0xa1, a1.hostid)].concat();
    assert_eq!(full_report(&env, &b), padded(expect, 4096));
    // A third controller connecting later inherits access.
    let a3 = host(&env, 1);
    let (s, d) = read0(&env, &a3);
    assert_eq!(s, Status::SUCCESS);
    assert_eq!(d.unwrap(), pattern(0x5a));
}

#[test]
fn notification_mask_and_reservation_features() {
    let env = setup();
    let (a, b) = (host(&env, 1), host(&env, 2));
    let feat = |h: &Host, opc: u8, nsid: u32, fid: u32, cdw11: u32| {
        let (c, _) = env.cmd(&h.admin, sqe(opc, 0x60, nsid, fid, cdw11, 0), None, 0);
        (c.status(), c.dw0.get())
    };
    // Reservation Notification Mask (82h): per namespace; FFFFFFFFh only for Set.
    assert_eq!(feat(&a, 0x0a, NSID, 0x82, 0), (Status::SUCCESS, 0));
    assert_eq!(feat(&a, 0x0a, 0xffff_ffff, 0x82, 0).0, invalid_field());
    assert_eq!(
        feat(&a, 0x0a, 7, 0x82, 0).0,
        invalid_field(),
        "inactive NSID"
    );
    assert_eq!(
        feat(&a, 0x09, 7, 0x82, 0x2).0,
        invalid_field(),
        "set, inactive NSID"
    );
    assert_eq!(feat(&a, 0x09, NSID, 0x82, 0x2).0, Status::SUCCESS);
    assert_eq!(feat(&a, 0x0a, NSID, 0x82, 0), (Status::SUCCESS, 0x2));
    assert_eq!(
        feat(&b, 0x0a, NSID, 0x82, 0),
        (Status::SUCCESS, 0),
        "per controller"
    );
    assert_eq!(
        feat(&b, 0x09, 0xffff_ffff, 0x82, 0xffff_ffff).0,
        Status::SUCCESS
    );
    assert_eq!(
        feat(&b, 0x0a, NSID, 0x82, 0),
        (Status::SUCCESS, 0xe),
        "reserved bits dropped"
    );
    assert_eq!(feat(&b, 0x09, 0xffff_ffff, 0x82, 0).0, Status::SUCCESS);
    // Reservation Persistence (83h): PTPL 0; nothing can persist without a ptpl_file.
    assert_eq!(feat(&a, 0x0a, NSID, 0x83, 0), (Status::SUCCESS, 0));
    assert_eq!(feat(&a, 0x0a, 0xffff_ffff, 0x83, 0).0, invalid_field());
    assert_eq!(feat(&a, 0x09, NSID, 0x83, 1).0, invalid_field());
    assert_eq!(
        feat(&a, 0x09, 0xffff_ffff, 0x83, 1).0,
        Status::from(CommandSpecificStatus::FEATURE_ID_NOT_SAVEABLE)
    );
    // Host Identifier (81h): the Connect HOSTID; Set is refused.
    let (c, d) = env.cmd(&a.admin, sqe(0x0a, 0x61, 0, 0x81, 1, 0), None, 16);
    ok(&c);
    assert_eq!(d.unwrap(), a.hostid);
    let (c, _) = env.cmd(&a.admin, sqe(0x0a, 0x62, 0, 0x81, 1, 0), None, 8);
    assert_eq!(c.status(), invalid_field(), "host identifier into 8 bytes");
    assert_eq!(
        feat(&a, 0x09, 0, 0x81, 1).0,
        g(GenericStatus::COMMAND_SEQUENCE_ERROR)
    );

    // A masks "registration preempted": B's preempt leaves no log entry and no AEN for A.
    register(&env, &a, REGISTER, false, 0, 0xa1);
    register(&env, &b, REGISTER, false, 0, 0xb1);
    assert_eq!(acquire(&env, &a, ACQUIRE, 1, 0xa1, 0), Status::SUCCESS);
    submit_aer(&a, 70);
    assert_eq!(acquire(&env, &b, PREEMPT, 1, 0xb1, 0xa1), Status::SUCCESS);
    env.poll();
    assert!(a.admin.take_response().is_none(), "masked: no AEN");
    assert_eq!(resv_log(&env, &a, 15), vec![0u8; 64]);
    // Unmasked again, a later preempt of A's new registration is reported.
    assert_eq!(feat(&a, 0x09, NSID, 0x82, 0).0, Status::SUCCESS);
    register(&env, &a, REGISTER, false, 0, 0xa2);
    assert_eq!(acquire(&env, &b, PREEMPT, 1, 0xb1, 0xa2), Status::SUCCESS);
    let (cqe, _) = a.admin.take_response().expect("AEN");
    assert_eq!((cqe.cid.get(), cqe.dw0.get()), (70, AEN_RESERVATION));
    assert_eq!(
        resv_log(&env, &a, 15),
        log_entry(1, LOG_REGISTRATION_PREEMPTED, 0, NSID)
    );
}

#[test]
fn notification_log_counts_queued_entries_and_rae_keeps_the_notice_masked() {
    let env = setup();
    let (a, b) = (host(&env, 1), host(&env, 2));
    submit_aer(&a, 80);
    submit_aer(&a, 81);
    // Three preempts of A's registration while A does not read the log.
    for (i, key) in [0xa1u64, 0xa2, 0xa3].into_iter().enumerate() {
        register(&env, &a, REGISTER, false, 0, key);
        if i == 0 {
            register(&env, &b, REGISTER, false, 0, 0xb1);
            assert_eq!(acquire(&env, &b, ACQUIRE, 1, 0xb1, 0), Status::SUCCESS);
        }
        assert_eq!(acquire(&env, &b, PREEMPT, 1, 0xb1, key), Status::SUCCESS);
    }
    // One AEN until the log is read.
    let (cqe, _) = a.admin.take_response().expect("AEN");
    assert_eq!((cqe.cid.get(), cqe.dw0.get()), (80, AEN_RESERVATION));
    assert!(a.admin.take_response().is_none());
    // Read the first entry with RAE=1: the notice stays masked.
    let (c, d) = env.cmd(
        &a.admin,
        sqe(0x02, 0x31, 0xffff_ffff, 0x80 | (1 << 15) | (15 << 16), 0, 0),
        None,
        64,
    );
    ok(&c);
    assert_eq!(
        d.unwrap(),
        log_entry(1, LOG_REGISTRATION_PREEMPTED, 2, NSID)
    );
    // The other two in one read, then the log is empty.
    assert_eq!(
        resv_log(&env, &a, 31),
        [
            log_entry(2, LOG_REGISTRATION_PREEMPTED, 1, NSID),
            log_entry(3, LOG_REGISTRATION_PREEMPTED, 0, NSID)
        ]
        .concat()
    );
    assert_eq!(resv_log(&env, &a, 15), vec![0u8; 64]);
    // Read with RAE=0: the next notification raises a new AEN (on the second AER).
    register(&env, &a, REGISTER, false, 0, 0xa4);
    assert_eq!(acquire(&env, &b, PREEMPT, 1, 0xb1, 0xa4), Status::SUCCESS);
    let (cqe, _) = a.admin.take_response().expect("second AEN");
    assert_eq!((cqe.cid.get(), cqe.dw0.get()), (81, AEN_RESERVATION));
    assert_eq!(
        resv_log(&env, &a, 15),
        log_entry(4, LOG_REGISTRATION_PREEMPTED, 0, NSID)
    );
}

#[test]
fn former_holder_of_an_all_registrants_reservation_is_fenced_over_the_wire() {
    let env = setup();
    let (a, b) = (host(&env, 1), host(&env, 2));
    assert_eq!(register(&env, &a, REGISTER, false, 0, 0xa), Status::SUCCESS);
    assert_eq!(register(&env, &b, REGISTER, false, 0, 0xb), Status::SUCCESS);
    // Write Exclusive - All Registrants acquired by A; B preempts A by its key.
    assert_eq!(acquire(&env, &a, ACQUIRE, 5, 0xa, 0), Status::SUCCESS);
    assert_eq!(write0(&env, &a, &pattern(1)), Status::SUCCESS);
    assert_eq!(acquire(&env, &b, PREEMPT, 5, 0xb, 0xa), Status::SUCCESS);
    let before = bdev_writes(&env);
    assert_eq!(write0(&env, &a, &pattern(2)), conflict());
    assert_eq!(bdev_writes(&env), before);
    let (s, d) = read0(&env, &a);
    assert_eq!((s, d.unwrap()), (Status::SUCCESS, pattern(1)));
    assert_eq!(write0(&env, &b, &pattern(3)), Status::SUCCESS);
    // Exclusive Access - All Registrants: after B releases, A registers again, acquires
    // type 6, then unregisters: it may neither read nor write.
    assert_eq!(release(&env, &b, RELEASE, 5, 0xb), Status::SUCCESS);
    assert_eq!(register(&env, &a, REGISTER, false, 0, 0xa), Status::SUCCESS);
    assert_eq!(acquire(&env, &a, ACQUIRE, 6, 0xa, 0), Status::SUCCESS);
    assert_eq!(
        register(&env, &a, UNREGISTER, false, 0xa, 0),
        Status::SUCCESS
    );
    assert_eq!(write0(&env, &a, &pattern(4)), conflict());
    assert_eq!(read0(&env, &a).0, conflict());
    // The reservation stays with B, now its holder in the report.
    let (s, d) = read0(&env, &b);
    assert_eq!((s, d.unwrap()), (Status::SUCCESS, pattern(3)));
    assert_eq!(full_report(&env, &b)[4], 6);
}
