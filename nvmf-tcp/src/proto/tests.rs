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
