//! Hostile input over real loopback sockets: each malformed PDU or command gets the exact
//! C2HTermReq (FES/FEI, then the target closes) or NVMe status it deserves, and an I/O queue
//! of another connection keeps serving reads and writes afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nvme::spec::fabrics::ConnectCmd;
use nvme::spec::sgl::{Sgl, SglDescriptor};
use nvme::spec::tcp::pdu::{CapsuleCmd, H2cData, IcReq, offset};
use nvme::spec::tcp::{Fes, PduHeader};
use nvme::spec::{GenericStatus, Sqe, Status};

/// The admin queue and one I/O queue of a working controller, plus the controller ID.
struct Good {
    _admin: Host,
    io: Host,
    cntlid: u16,
    round: u8,
    /// Next free I/O queue ID for further connections of this controller.
    next_qid: std::cell::Cell<u16>,
}

fn good(env: &Env) -> Good {
    let (admin, cntlid) = admin(env, false, false);
    let io = io_queue(env, cntlid, 1, 127, false, false);
    Good {
        _admin: admin,
        io,
        cntlid,
        round: 0,
        next_qid: std::cell::Cell::new(2),
    }
}

/// ICReq + Connect of I/O queue `qid` with the 0-based `sqsize`.
fn io_queue(env: &Env, cntlid: u16, qid: u16, sqsize: u16, hdgst: bool, ddgst: bool) -> Host {
    let mut io = env.connect();
    env.ic(&mut io, hdgst, ddgst);
    let (c, _) = env.cmd(
        &mut io,
        ConnectCmd::new(1, qid, sqsize, 0).to_sqe(),
        Some(&connect_data(cntlid)),
        1024,
    );
    ok(&c);
    io
}

/// The good I/O queue still writes (R2T path) and reads back a fresh pattern.
fn still_serves(env: &Env, g: &mut Good) {
    g.round = g.round.wrapping_add(1);
    let pat: Vec<u8> = (0..8192u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ g.round)
        .collect();
    let (c, _) = env.cmd(&mut g.io, rw(0x01, 40, 64, 15), Some(&pat), 8192);
    ok(&c);
    let (c, d) = env.cmd(&mut g.io, rw(0x02, 41, 64, 15), None, 8192);
    ok(&c);
    assert_eq!(d, pat, "read-back after hostile input");
}

/// A connection past the IC exchange.
fn ic_conn(env: &Env, hdgst: bool, ddgst: bool) -> Host {
    let mut h = env.connect();
    env.ic(&mut h, hdgst, ddgst);
    h
}

/// An encoded CapsuleCmd carrying `data` in-capsule, as raw bytes to corrupt.
fn capsule_bytes(h: &Host, mut sqe: Sqe, data: &[u8]) -> Vec<u8> {
    sqe.dptr = SglDescriptor::from(Sgl::DataBlockOffset {
        offset: 0,
        length: data.len() as u32,
    });
    let mut out = Vec::new();
    h.enc
        .encode(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), data, &mut out)
        .unwrap();
    out
}

fn set_plen(b: &mut [u8], plen: u32) {
    b[4..8].copy_from_slice(&plen.to_le_bytes());
}

/// A write of `len` bytes without in-capsule data: the target answers with an R2T, whose
/// (ttag, r2to, r2tl) is returned.
fn write_wanting_r2t(env: &Env, h: &mut Host, cid: u16, len: u32) -> (u16, u32, u32) {
    let mut sqe = rw(0x01, cid, 0, len / 512 - 1);
    sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock { length: len });
    h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    let p = env.recv(h).expect("no R2T");
    let PduHeader::R2t(t) = p.header else {
        panic!("expected R2T, got {:?}", p.header)
    };
    assert_eq!(t.cccid.get(), cid);
    (t.ttag.get(), t.r2to.get(), t.r2tl.get())
}

fn io_conn(env: &Env, g: &Good) -> Host {
    io_queue(env, g.cntlid, g.qid(), 127, false, false)
}

impl Good {
    fn qid(&self) -> u16 {
        let q = self.next_qid.get();
        self.next_qid.set(q + 1);
        q
    }
}

#[test]
fn unknown_and_wrong_direction_pdu_types_are_invalid_header_fields() {
    let env = setup("HostileMalloc0");
    let mut g = good(&env);

    let mut h = ic_conn(&env, false, false);
    h.send_raw(&[0x0f, 0, 8, 0, 8, 0, 0, 0]);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PDU_TYPE);

    // A CapsuleResp (controller to host) sent by the host.
    let mut h = ic_conn(&env, false, false);
    h.send_raw(&[0x05, 0, 24, 0, 24, 0, 0, 0]);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PDU_TYPE);

    still_serves(&env, &mut g);
}

#[test]
fn wrong_hlen_and_plen_are_invalid_header_fields() {
    let env = setup("HostileMalloc1");
    let mut g = good(&env);

    // CapsuleCmd with HLEN 70.
    let mut h = ic_conn(&env, false, false);
    let mut b = capsule_bytes(&h, Sqe::new(0x06, 1), &[]);
    b[2] = 70;
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::HLEN);

    // ICReq with HLEN 100 (before the IC exchange).
    let mut h = env.connect();
    let mut ic = vec![0u8; 128];
    ic[2] = 100;
    ic[4] = 128;
    h.send_raw(&ic);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::HLEN);

    // ICReq with PLEN 132.
    let mut h = env.connect();
    let mut b = Vec::new();
    h.enc
        .encode(
            &PduHeader::IcReq(IcReq::new(0, false, false, 0)),
            &[],
            &mut b,
        )
        .unwrap();
    set_plen(&mut b, 132);
    b.extend_from_slice(&[0; 4]);
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PLEN);

    // CapsuleCmd with PLEN shorter than its header.
    let mut h = ic_conn(&env, false, false);
    let mut b = capsule_bytes(&h, Sqe::new(0x06, 1), &[]);
    set_plen(&mut b, 40);
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PLEN);

    still_serves(&env, &mut g);
}

#[test]
fn plen_beyond_the_largest_capsule_or_h2c_data_exceeds_the_data_limit() {
    let env = setup("HostileMalloc2");
    let mut g = good(&env);

    // 16 KiB in a capsule (the target takes at most 8 KiB): only the header is sent.
    let mut h = ic_conn(&env, false, false);
    let mut b = capsule_bytes(&h, rw(0x01, 1, 0, 31), &[]);
    b[3] = 72; // PDO
    set_plen(&mut b, 72 + 16384);
    h.send_raw(&b);
    expect_term_req(
        &env,
        &mut h,
        Fes::DATA_TRANSFER_LIMIT_EXCEEDED,
        offset::PLEN,
    );

    // An H2CData PDU larger than MAXH2CDATA (131072).
    let mut h = io_conn(&env, &g);
    let (ttag, _, _) = write_wanting_r2t(&env, &mut h, 5, 65536);
    let mut b = Vec::new();
    h.enc
        .encode(
            &PduHeader::H2cData(H2cData::new(5, ttag, 0, 4096, true)),
            &[0; 4096],
            &mut b,
        )
        .unwrap();
    b.truncate(24);
    b[16..20].copy_from_slice(&(135_168u32).to_le_bytes());
    set_plen(&mut b, 24 + 135_168);
    h.send_raw(&b);
    expect_term_req(
        &env,
        &mut h,
        Fes::DATA_TRANSFER_LIMIT_EXCEEDED,
        offset::PLEN,
    );

    still_serves(&env, &mut g);
}

#[test]
fn pdo_unaligned_or_past_plen_is_an_invalid_header_field() {
    let env = setup("HostileMalloc3");
    let mut g = good(&env);

    let data = [0xa5u8; 512];
    // PDO 73: not a multiple of 4 (CPDA 0).
    let mut h = io_conn(&env, &g);
    let mut b = capsule_bytes(&h, rw(0x01, 1, 0, 0), &data);
    b[3] = 73;
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PDO);

    // PDO 240: beyond PLEN (72 + 128).
    let mut h = io_conn(&env, &g);
    let mut b = capsule_bytes(&h, rw(0x01, 1, 0, 0), &data[..128]);
    b[3] = 240;
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PDO);

    // PDO 64: inside the header.
    let mut h = io_conn(&env, &g);
    let mut b = capsule_bytes(&h, rw(0x01, 1, 0, 0), &data);
    b[3] = 64;
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PDO);

    still_serves(&env, &mut g);
}

#[test]
fn command_before_icreq_and_second_icreq_are_sequence_errors() {
    let env = setup("HostileMalloc4");
    let mut g = good(&env);

    let mut h = env.connect();
    h.send(
        &PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(0x06, 1))),
        &[],
    );
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR, 0);

    // H2CData before ICReq.
    let mut h = env.connect();
    h.send(
        &PduHeader::H2cData(H2cData::new(1, 1, 0, 512, true)),
        &[0; 512],
    );
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR, 0);

    let mut h = ic_conn(&env, false, false);
    h.send(&PduHeader::IcReq(IcReq::new(0, false, false, 0)), &[]);
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR, 0);

    // A second ICReq on a connected I/O queue.
    let mut h = io_conn(&env, &g);
    h.send(&PduHeader::IcReq(IcReq::new(0, false, false, 0)), &[]);
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR, 0);

    still_serves(&env, &mut g);
}

#[test]
fn icreq_with_unsupported_pfv_or_hpda_is_refused() {
    let env = setup("HostileMalloc5");
    let mut g = good(&env);

    let mut h = env.connect();
    let mut b = Vec::new();
    h.enc
        .encode(
            &PduHeader::IcReq(IcReq::new(0, false, false, 0)),
            &[],
            &mut b,
        )
        .unwrap();
    b[8] = 1; // PFV 1
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::UNSUPPORTED_PARAMETER, offset::PFV);

    let mut h = env.connect();
    let mut b = Vec::new();
    h.enc
        .encode(
            &PduHeader::IcReq(IcReq::new(0, false, false, 0)),
            &[],
            &mut b,
        )
        .unwrap();
    b[10] = 32; // HPDA 32
    h.send_raw(&b);
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::PDA);

    still_serves(&env, &mut g);
}

#[test]
fn h2c_data_for_unknown_tag_or_outside_the_r2t_is_refused() {
    let env = setup("HostileMalloc6");
    let mut g = good(&env);

    // No command is waiting for data at all.
    let mut h = io_conn(&env, &g);
    h.send(
        &PduHeader::H2cData(H2cData::new(9, 1, 0, 512, true)),
        &[0; 512],
    );
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::TTAG);

    // The right command, the wrong transfer tag.
    let mut h = io_conn(&env, &g);
    let (ttag, _, _) = write_wanting_r2t(&env, &mut h, 5, 8192);
    h.send(
        &PduHeader::H2cData(H2cData::new(5, ttag.wrapping_add(1), 0, 512, true)),
        &[0; 512],
    );
    expect_term_req(&env, &mut h, Fes::INVALID_HEADER_FIELD, offset::TTAG);

    // Data offset other than the next expected byte.
    let mut h = io_conn(&env, &g);
    let (ttag, r2to, r2tl) = write_wanting_r2t(&env, &mut h, 5, 8192);
    assert_eq!((r2to, r2tl), (0, 8192));
    h.send(
        &PduHeader::H2cData(H2cData::new(5, ttag, 512, 512, false)),
        &[0; 512],
    );
    expect_term_req(&env, &mut h, Fes::DATA_TRANSFER_OUT_OF_RANGE, offset::DATAO);

    // More data than the R2T asked for.
    let mut h = io_conn(&env, &g);
    let (ttag, _, _) = write_wanting_r2t(&env, &mut h, 5, 8192);
    h.send(
        &PduHeader::H2cData(H2cData::new(5, ttag, 0, 8704, true)),
        &[0; 8704],
    );
    expect_term_req(&env, &mut h, Fes::DATA_TRANSFER_OUT_OF_RANGE, offset::DATAL);

    still_serves(&env, &mut g);
}

#[test]
fn bad_header_digest_terminates_bad_data_digest_fails_only_the_command() {
    let env = setup("HostileMalloc7");
    let mut g = good(&env);

    let mut h = ic_conn(&env, true, false);
    let mut out = Vec::new();
    h.enc
        .encode(
            &PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(0x06, 1))),
            &[],
            &mut out,
        )
        .unwrap();
    out[72] ^= 0xff;
    h.send_raw(&out);
    expect_term_req(&env, &mut h, Fes::HDGST_ERROR, 0);

    // Data digest: in-capsule write and H2CData write each fail with Transient Transport
    // Error; the connection stays up and the blocks keep their old content.
    let mut h = io_queue(&env, g.cntlid, g.qid(), 127, false, true);
    let zero = vec![0u8; 4096];
    let (c, _) = env.cmd(&mut h, rw(0x01, 2, 200, 7), Some(&zero), 4096);
    ok(&c);
    let mut b = capsule_bytes(&h, rw(0x01, 3, 200, 7), &[0x5a; 4096]);
    let n = b.len();
    b[n - 1] ^= 0xff;
    h.send_raw(&b);
    let p = env.recv(&mut h).unwrap();
    let PduHeader::CapsuleResp(r) = p.header else {
        panic!("expected CapsuleResp, got {:?}", p.header)
    };
    assert_eq!(r.cqe.cid(), 3);
    assert_eq!(
        r.cqe.status(),
        Status::from(GenericStatus::TRANSIENT_TRANSPORT_ERROR)
    );
    let (ttag, _, r2tl) = write_wanting_r2t(&env, &mut h, 4, 8192);
    let mut b = Vec::new();
    h.enc
        .encode(
            &PduHeader::H2cData(H2cData::new(4, ttag, 0, r2tl, true)),
            &vec![0x77; r2tl as usize],
            &mut b,
        )
        .unwrap();
    let n = b.len();
    b[n - 2] ^= 0x01;
    h.send_raw(&b);
    let p = env.recv(&mut h).unwrap();
    let PduHeader::CapsuleResp(r) = p.header else {
        panic!("expected CapsuleResp, got {:?}", p.header)
    };
    assert_eq!(r.cqe.cid(), 4);
    assert_eq!(
        r.cqe.status(),
        Status::from(GenericStatus::TRANSIENT_TRANSPORT_ERROR)
    );
    let (c, d) = env.cmd(&mut h, rw(0x02, 5, 200, 7), None, 4096);
    ok(&c);
    assert_eq!(d, zero, "a command with a bad data digest wrote nothing");

    still_serves(&env, &mut g);
}

#[test]
fn sgl_longer_than_max_io_size_or_icd_fails_the_command() {
    let env = setup("HostileMalloc8");
    let mut g = good(&env);
    let mut h = io_conn(&env, &g);

    // A read of 128 KiB + 4 KiB.
    let (c, d) = env.cmd(&mut h, rw(0x02, 1, 0, 263), None, 135_168);
    assert_eq!(
        c.status(),
        Status::from(GenericStatus::DATA_SGL_LENGTH_INVALID)
    );
    assert!(d.is_empty());
    // A write of 128 KiB + 4 KiB by R2T: refused before any R2T.
    let mut sqe = rw(0x01, 2, 0, 263);
    sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock { length: 135_168 });
    h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
    let p = env.recv(&mut h).unwrap();
    let PduHeader::CapsuleResp(r) = p.header else {
        panic!("expected CapsuleResp, got {:?}", p.header)
    };
    assert_eq!(
        r.cqe.status(),
        Status::from(GenericStatus::DATA_SGL_LENGTH_INVALID)
    );
    // 8 KiB in-capsule on an I/O queue (ICD is 4096 there).
    let b = capsule_bytes(&h, rw(0x01, 3, 0, 15), &[0x11; 8192]);
    h.send_raw(&b);
    let p = env.recv(&mut h).unwrap();
    let PduHeader::CapsuleResp(r) = p.header else {
        panic!("expected CapsuleResp, got {:?}", p.header)
    };
    assert_eq!(r.cqe.cid(), 3);
    assert_eq!(
        r.cqe.status(),
        Status::from(GenericStatus::DATA_SGL_LENGTH_INVALID)
    );
    // The queue still works.
    let (c, d) = env.cmd(&mut h, rw(0x02, 4, 0, 7), None, 4096);
    ok(&c);
    assert_eq!(d.len(), 4096);

    still_serves(&env, &mut g);
}

#[test]
fn more_commands_than_the_queue_size_terminate_the_connection() {
    let env = setup("HostileMalloc9");
    let mut g = good(&env);

    // SQSIZE 3 (0-based): four commands may be outstanding. Four writes wait for their
    // data (R2T sent, never answered); the fifth command is one too many.
    let mut h = io_queue(&env, g.cntlid, g.qid(), 3, false, false);
    for cid in 10..14 {
        write_wanting_r2t(&env, &mut h, cid, 8192);
    }
    h.send(
        &PduHeader::CapsuleCmd(CapsuleCmd::new(rw(0x02, 14, 0, 0))),
        &[],
    );
    expect_term_req(&env, &mut h, Fes::PDU_SEQUENCE_ERROR, 0);

    still_serves(&env, &mut g);
}

#[test]
fn connection_that_stops_mid_pdu_does_not_block_others() {
    let env = setup("HostileMalloc10");
    let mut g = good(&env);

    // Half a capsule header, then silence.
    let mut stalled = io_conn(&env, &g);
    let b = capsule_bytes(&stalled, rw(0x01, 1, 0, 0), &[0x33; 512]);
    stalled.send_raw(&b[..40]);
    for _ in 0..20 {
        env.pump();
    }
    still_serves(&env, &mut g);
    // Half of the data, then silence again.
    stalled.send_raw(&b[40..300]);
    for _ in 0..20 {
        env.pump();
    }
    still_serves(&env, &mut g);
    // The rest arrives: the command completes normally.
    stalled.send_raw(&b[300..]);
    let p = env.recv(&mut stalled).unwrap();
    let PduHeader::CapsuleResp(r) = p.header else {
        panic!("expected CapsuleResp, got {:?}", p.header)
    };
    assert_eq!(r.cqe.cid(), 1);
    assert_eq!(r.cqe.status(), Status::SUCCESS);
}
