#![allow(clippy::unwrap_used)]

use super::*;
use nvme::spec::tcp::pdu::{CapsuleCmd, FLAG_LAST_PDU, FLAG_SUCCESS, H2cData, IcReq};
use nvme::spec::tcp::{Pdu, PduReader};
use nvme::spec::{Cqe, Sgl};

fn host_reader() -> PduReader {
    PduReader::new(DecoderConfig::host_default())
}

fn read_all(r: &mut PduReader, mut bytes: &[u8]) -> Vec<Pdu> {
    let mut v = Vec::new();
    while !bytes.is_empty() {
        let (n, p) = r.read(bytes).unwrap();
        bytes = &bytes[n..];
        if let Some(p) = p {
            v.push(p);
        }
    }
    v
}

fn connected(hdgst: bool, ddgst: bool) -> (TcpConnection, PduReader, PduEncoder) {
    let mut c = TcpConnection::new(ProtoConfig::default());
    let mut out = Vec::new();
    PduEncoder::new()
        .encode(
            &PduHeader::IcReq(IcReq::new(0, hdgst, ddgst, 0)),
            &[],
            &mut out,
        )
        .unwrap();
    assert_eq!(c.receive(&out), 128);
    let mut r = host_reader();
    let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
    assert_eq!(pdus.len(), 1);
    let neg = Negotiated {
        hdgst,
        ddgst,
        rx_pda: 0,
    };
    r.decoder_mut().set_negotiated(neg);
    let mut enc = PduEncoder::new();
    enc.set_negotiated(neg);
    (c, r, enc)
}

fn cmd(opc: u8, cid: u16, sgl: Sgl) -> Sqe {
    let mut s = Sqe::new(opc, cid);
    s.dptr = SglDescriptor::from(sgl);
    s.nsid = 1.into();
    s
}

#[test]
fn icreq_gets_icresp_with_digests_and_maxh2cdata() {
    let mut c = TcpConnection::new(ProtoConfig::default());
    let mut out = Vec::new();
    PduEncoder::new()
        .encode(
            &PduHeader::IcReq(IcReq::new(2, true, false, 0)),
            &[],
            &mut out,
        )
        .unwrap();
    assert_eq!(c.receive(&out), 128);
    assert_eq!(c.state(), ConnState::Running);
    let pdus = read_all(&mut host_reader(), c.outbound());
    let PduHeader::IcResp(r) = pdus[0].header else {
        panic!("not an ICResp: {:?}", pdus[0].header)
    };
    assert_eq!(r.ch.plen.get(), 128);
    assert_eq!(r.cpda, 0);
    assert_eq!(r.dgst, 1);
    assert_eq!(r.maxh2cdata.get(), 131_072);
    assert_eq!(r.pfv.get(), 0);
}

#[test]
fn write_with_in_capsule_data_becomes_request_with_that_data() {
    let (mut c, _r, enc) = connected(true, true);
    let data: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
    let sqe = cmd(
        0x01,
        7,
        Sgl::DataBlockOffset {
            offset: 0,
            length: 512,
        },
    );
    let mut out = Vec::new();
    enc.encode(
        &PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)),
        &data,
        &mut out,
    )
    .unwrap();
    assert_eq!(c.receive(&out), out.len());
    let req = c.take_request().unwrap();
    assert_eq!(req.sqe.cid(), 7);
    assert_eq!(req.length, 512);
    assert_eq!(req.data.unwrap().to_vec(), data);
    assert!(c.take_request().is_none());
    assert!(c.outbound().is_empty());
}

#[test]
fn write_beyond_in_capsule_uses_r2t_then_h2cdata() {
    let (mut c, mut r, enc) = connected(false, true);
    let sqe = cmd(0x01, 9, Sgl::TransportDataBlock { length: 8192 });
    let mut out = Vec::new();
    enc.encode(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[], &mut out)
        .unwrap();
    c.receive(&out);
    assert!(c.take_request().is_none());
    let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
    let PduHeader::R2t(t) = pdus[0].header else {
        panic!("not an R2T")
    };
    assert_eq!(t.cccid.get(), 9);
    assert_eq!(t.r2to.get(), 0);
    assert_eq!(t.r2tl.get(), 8192);
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
    let mut out = Vec::new();
    let ttag = t.ttag.get();
    enc.encode(
        &PduHeader::H2cData(H2cData::new(9, ttag, 0, 4096, false)),
        &data[..4096],
        &mut out,
    )
    .unwrap();
    enc.encode(
        &PduHeader::H2cData(H2cData::new(9, ttag, 4096, 4096, true)),
        &data[4096..],
        &mut out,
    )
    .unwrap();
    // Byte by byte, to exercise partial PDUs.
    for b in &out {
        c.receive(std::slice::from_ref(b));
    }
    let req = c.take_request().unwrap();
    assert_eq!(req.length, 8192);
    assert_eq!(req.data.unwrap().to_vec(), data);
    assert_eq!(c.transfers_in_progress(), 0);
}

#[test]
fn h2cdata_with_wrong_offset_is_fatal_out_of_range() {
    let (mut c, mut r, enc) = connected(false, false);
    let sqe = cmd(0x01, 3, Sgl::TransportDataBlock { length: 8192 });
    let mut out = Vec::new();
    enc.encode(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[], &mut out)
        .unwrap();
    c.receive(&out);
    let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
    let PduHeader::R2t(t) = pdus[0].header else {
        panic!()
    };
    let mut out = Vec::new();
    enc.encode(
        &PduHeader::H2cData(H2cData::new(3, t.ttag.get(), 512, 512, false)),
        &[0u8; 512],
        &mut out,
    )
    .unwrap();
    c.receive(&out);
    assert_eq!(c.state(), ConnState::Terminating);
    let pdus = read_all(&mut host_reader(), c.outbound());
    let PduHeader::C2hTermReq(t) = pdus[0].header else {
        panic!("not a TermReq")
    };
    assert_eq!(t.fes(), Fes::DATA_TRANSFER_OUT_OF_RANGE);
    assert_eq!(t.fei.get(), offset::DATAO);
    assert_eq!(pdus[0].data.len(), 24);
}

#[test]
fn read_response_is_c2hdata_with_success_flag_and_no_capsule_resp() {
    let (mut c, mut r, enc) = connected(false, false);
    let sqe = cmd(0x02, 4, Sgl::TransportDataBlock { length: 1024 });
    let mut out = Vec::new();
    enc.encode(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[], &mut out)
        .unwrap();
    c.receive(&out);
    let req = c.take_request().unwrap();
    assert_eq!(req.length, 1024);
    assert!(req.data.is_none());
    let data = vec![0xabu8; 1024];
    c.send_response(Response {
        cqe: Cqe::new(4, Status::SUCCESS),
        data: Some(DataBuf::from_vec(data.clone())),
    });
    let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
    assert_eq!(pdus.len(), 1);
    let PduHeader::C2hData(d) = pdus[0].header else {
        panic!()
    };
    assert_eq!(
        d.ch.flags & (FLAG_LAST_PDU | FLAG_SUCCESS),
        FLAG_LAST_PDU | FLAG_SUCCESS
    );
    assert_eq!(d.cccid.get(), 4);
    assert_eq!(d.datal.get(), 1024);
    assert_eq!(pdus[0].data, data);
}

#[test]
fn failed_read_gets_capsule_resp_after_data() {
    let (mut c, mut r, _enc) = connected(false, false);
    c.send_response(Response::status(5, GenericStatus::LBA_OUT_OF_RANGE.into()));
    let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
    assert_eq!(pdus.len(), 1);
    let PduHeader::CapsuleResp(resp) = pdus[0].header else {
        panic!()
    };
    assert_eq!(resp.cqe.cid(), 5);
    assert_eq!(
        resp.cqe.status(),
        Status::from(GenericStatus::LBA_OUT_OF_RANGE)
    );
}

#[test]
fn command_before_icreq_is_pdu_sequence_error() {
    let mut c = TcpConnection::new(ProtoConfig::default());
    let sqe = cmd(0x02, 1, Sgl::TransportDataBlock { length: 512 });
    let mut out = Vec::new();
    PduEncoder::new()
        .encode(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[], &mut out)
        .unwrap();
    c.receive(&out);
    assert_eq!(c.state(), ConnState::Terminating);
    let pdus = read_all(&mut host_reader(), c.outbound());
    let PduHeader::C2hTermReq(t) = pdus[0].header else {
        panic!()
    };
    assert_eq!(t.fes(), Fes::PDU_SEQUENCE_ERROR);
}

#[test]
fn second_icreq_is_pdu_sequence_error() {
    let (mut c, mut r, _enc) = connected(false, false);
    let mut out = Vec::new();
    PduEncoder::new()
        .encode(
            &PduHeader::IcReq(IcReq::new(0, false, false, 0)),
            &[],
            &mut out,
        )
        .unwrap();
    c.receive(&out);
    assert_eq!(c.state(), ConnState::Terminating);
    let pdus = read_all(&mut r, c.outbound());
    let PduHeader::C2hTermReq(t) = pdus[0].header else {
        panic!()
    };
    assert_eq!(t.fes(), Fes::PDU_SEQUENCE_ERROR);
}

#[test]
fn h2c_term_req_ends_connection_without_reply() {
    let (mut c, _r, _enc) = connected(false, false);
    let mut out = Vec::new();
    let t = TermReq::new(PduType::H2C_TERM_REQ, Fes::UNSUPPORTED_PARAMETER, 0);
    PduEncoder::new()
        .encode(&PduHeader::H2cTermReq(t), &[], &mut out)
        .unwrap();
    c.receive(&out);
    assert_eq!(c.state(), ConnState::Terminating);
    assert!(matches!(c.error(), Some(TcpError::HostTerminated(6))));
    assert!(c.outbound().is_empty());
}

#[test]
fn more_commands_than_queue_depth_before_connect_is_a_sequence_error() {
    let mut c = TcpConnection::new(ProtoConfig {
        max_queue_depth: 2,
        ..ProtoConfig::default()
    });
    let mut out = Vec::new();
    let enc = PduEncoder::new();
    enc.encode(
        &PduHeader::IcReq(IcReq::new(0, false, false, 0)),
        &[],
        &mut out,
    )
    .unwrap();
    for cid in 0..3u16 {
        let sqe = cmd(0x01, cid, Sgl::TransportDataBlock { length: 4096 });
        enc.encode(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[], &mut out)
            .unwrap();
    }
    c.receive(&out);
    assert_eq!(c.transfers_in_progress(), 2);
    assert_eq!(c.state(), ConnState::Terminating);
    let pdus = read_all(&mut host_reader(), c.outbound());
    assert_eq!(pdus.len(), 4, "ICResp, 2 R2T, TermReq");
    let PduHeader::C2hTermReq(t) = pdus[3].header else {
        panic!()
    };
    assert_eq!(t.fes(), Fes::PDU_SEQUENCE_ERROR);
    assert_eq!(t.fei.get(), 0);
}

/// A read of 300 KiB from a 3-segment buffer (segment borders not on PDU borders) with header
/// and data digests and HPDA 2: three C2HData PDUs (128 + 128 + 44 KiB), each with a correct
/// data digest computed over the segments, written through a socket that takes 1000 bytes at
/// a time; the buffer stays queued until its last byte is written.
#[test]
fn read_from_segments_is_sent_without_gathering_and_digested_per_pdu() {
    let mut c = TcpConnection::new(ProtoConfig {
        max_io_size: 512 * 1024,
        ..ProtoConfig::default()
    });
    let mut out = Vec::new();
    PduEncoder::new()
        .encode(
            &PduHeader::IcReq(IcReq::new(2, true, true, 0)),
            &[],
            &mut out,
        )
        .unwrap();
    c.receive(&out);
    let mut r = host_reader();
    let pdus = read_all(&mut r, &std::mem::take(c.outbound()));
    assert_eq!(pdus.len(), 1);
    r.decoder_mut().set_negotiated(Negotiated {
        hdgst: true,
        ddgst: true,
        rx_pda: 2,
    });
    let total = 300 * 1024;
    let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    let mut buf = DataBuf::new();
    let (a, rest) = data.split_at(100_000);
    let (b, d) = rest.split_at(100_000);
    let mut a_store = vec![0xee; 100_010];
    a_store[5..100_005].copy_from_slice(a);
    buf.push(IoVec::new(a_store, 5, 100_000).unwrap());
    buf.push(IoVec::from_vec(b.to_vec()));
    buf.push(IoVec::from_vec(d.to_vec()));
    c.send_response(Response {
        cqe: Cqe::new(11, Status::SUCCESS),
        data: Some(buf),
    });
    let q = c.out_queue();
    assert_eq!(q.buffers_held(), 1);
    // 3 PDUs: header 24 + HDGST 4, padded to PDO 12 * 3 = 36, data, DDGST 4.
    assert_eq!(q.len(), 3 * (36 + 4) + total);
    struct Slow(Vec<u8>);
    impl std::io::Write for Slow {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.write_vectored(&[std::io::IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(1000 - n);
                self.0.extend_from_slice(&b[..take]);
                n += take;
                if n == 1000 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Slow(Vec::new());
    let mut writes = 0;
    while !q.is_empty() {
        assert_eq!(q.buffers_held(), 1);
        // The writer never blocks: one call writes everything, 1000 bytes per writev.
        q.write_to(&mut w).unwrap();
        writes += 1;
    }
    assert_eq!(writes, 1);
    assert_eq!(q.buffers_held(), 0);
    let pdus = read_all(&mut r, &w.0);
    assert_eq!(pdus.len(), 3);
    let mut got = Vec::new();
    for (i, p) in pdus.iter().enumerate() {
        assert_eq!(p.end, nvme::spec::tcp::PduEnd::Ok, "digest of PDU {i}");
        let PduHeader::C2hData(h) = p.header else {
            panic!("not C2HData: {:?}", p.header)
        };
        let last = i == 2;
        assert_eq!(h.cccid.get(), 11);
        assert_eq!(h.datao.get(), i as u32 * 131_072);
        assert_eq!(h.datal.get(), if last { 44 * 1024 } else { 131_072 });
        assert_eq!(h.ch.pdo, 36);
        let want_flags = if last {
            FLAG_LAST_PDU | FLAG_SUCCESS
        } else {
            0
        };
        assert_eq!(h.ch.flags & (FLAG_LAST_PDU | FLAG_SUCCESS), want_flags);
        got.extend_from_slice(&p.data);
    }
    assert_eq!(got, data);
}

/// The data and its digest cover only the window of a segment (bytes 1000..5096 of its
/// storage), not the storage around it.
#[test]
fn c2h_data_and_digest_cover_only_the_window_of_a_segment() {
    let (mut c, mut r, _enc) = connected(false, true);
    let mut store = vec![0u8; 6000];
    for (i, b) in store.iter_mut().enumerate() {
        *b = (i % 256) as u8;
    }
    let seg = IoVec::new(store.clone(), 1000, 4096).unwrap();
    c.send_response(Response {
        cqe: Cqe::new(2, Status::SUCCESS),
        data: Some(DataBuf::single(seg)),
    });
    let wire = std::mem::take(c.outbound());
    let pdus = read_all(&mut r, &wire);
    assert_eq!(pdus.len(), 1);
    assert_eq!(pdus[0].end, nvme::spec::tcp::PduEnd::Ok);
    assert_eq!(pdus[0].data, store[1000..5096]);
    let digest = crc32c::crc32c(&store[1000..5096]).to_le_bytes();
    assert_eq!(wire[wire.len() - 4..], digest);
}
