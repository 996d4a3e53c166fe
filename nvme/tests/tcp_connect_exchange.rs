//! Drives a host and a controller framer through the NVMe/TCP connection setup and a fabrics
//! Connect with in-capsule Connect data, entirely in memory.

use nvme::spec::fabrics::{
    CNTLID_DYNAMIC, ConnectCmd, ConnectData, connect_rsp_cntlid, connect_success_dw0,
};
use nvme::spec::nqn::validate_nqn;
use nvme::spec::sgl::Sgl;
use nvme::spec::tcp::pdu::{CapsuleCmd, CapsuleResp, IcReq, IcResp};
use nvme::spec::tcp::{DecoderConfig, Negotiated, Pdu, PduEncoder, PduEnd, PduHeader, PduReader};
use nvme::spec::{Cqe, FabricsCommandType, Status};
use zerocopy::IntoBytes;

fn read_one(reader: &mut PduReader, wire: &[u8]) -> Pdu {
    let mut off = 0;
    loop {
        let (n, pdu) = reader.read(&wire[off..]).expect("valid PDU stream");
        off += n;
        if let Some(p) = pdu {
            assert_eq!(off, wire.len(), "exactly one PDU on the wire");
            return p;
        }
        assert!(off < wire.len(), "stream ended inside a PDU");
    }
}

#[test]
fn host_and_controller_negotiate_digests_and_connect() {
    let mut host_rx = PduReader::new(DecoderConfig::host_default());
    let mut ctrl_rx = PduReader::new(DecoderConfig {
        max_capsule_data: 8192,
        ..DecoderConfig::controller_default()
    });
    let mut host_tx = PduEncoder::new();
    let mut ctrl_tx = PduEncoder::new();

    // ICReq: host asks for both digests, HPDA 0.
    let mut wire = Vec::new();
    host_tx
        .encode(
            &PduHeader::IcReq(IcReq::new(0, true, true, 0)),
            &[],
            &mut wire,
        )
        .unwrap();
    let icreq = match read_one(&mut ctrl_rx, &wire).header {
        PduHeader::IcReq(r) => r,
        other => panic!("expected ICReq, got {other:?}"),
    };
    assert_eq!(icreq.dgst, 0x03);

    // ICResp: controller grants both, CPDA 0, MAXH2CDATA 128 KiB.
    wire.clear();
    ctrl_tx
        .encode(
            &PduHeader::IcResp(IcResp::new(0, true, true, 131_072)),
            &[],
            &mut wire,
        )
        .unwrap();
    let neg = Negotiated {
        hdgst: true,
        ddgst: true,
        rx_pda: 0,
    };
    ctrl_rx.decoder_mut().set_negotiated(neg);
    ctrl_tx.set_negotiated(neg);
    let icresp = match read_one(&mut host_rx, &wire).header {
        PduHeader::IcResp(r) => r,
        other => panic!("expected ICResp, got {other:?}"),
    };
    assert_eq!(icresp.maxh2cdata.get(), 131_072);
    host_rx.decoder_mut().set_negotiated(neg);
    host_tx.set_negotiated(neg);

    // Connect on the admin queue with 1024 bytes of in-capsule Connect data.
    let hostnqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    let subnqn = "nqn.2016-06.io.spdk:cnode1";
    let data = ConnectData::new([0x42; 16], CNTLID_DYNAMIC, hostnqn, subnqn).unwrap();
    let mut cmd = ConnectCmd::new(1, 0, 127, 120_000);
    cmd.sgl1 = Sgl::DataBlockOffset {
        offset: 0,
        length: 1024,
    }
    .into();
    wire.clear();
    host_tx
        .encode(
            &PduHeader::CapsuleCmd(CapsuleCmd::new(cmd.to_sqe())),
            data.as_bytes(),
            &mut wire,
        )
        .unwrap();
    assert_eq!(wire.len(), 72 + 4 + 1024 + 4);

    let pdu = read_one(&mut ctrl_rx, &wire);
    assert_eq!(pdu.end, PduEnd::Ok);
    let sqe = match pdu.header {
        PduHeader::CapsuleCmd(c) => c.sqe,
        other => panic!("expected CapsuleCmd, got {other:?}"),
    };
    assert_eq!(sqe.fctype(), FabricsCommandType::CONNECT);
    let connect = ConnectCmd::from_sqe(&sqe);
    assert_eq!(connect.sqsize.get(), 127);
    assert_eq!(connect.kato.get(), 120_000);
    assert_eq!(
        sqe.sgl().decode().unwrap(),
        Sgl::DataBlockOffset {
            offset: 0,
            length: 1024
        }
    );
    let got = ConnectData::view(&pdu.data).unwrap();
    assert_eq!(got.subnqn().unwrap(), subnqn);
    assert_eq!(got.hostnqn().unwrap(), hostnqn);
    validate_nqn(got.subnqn().unwrap()).unwrap();
    validate_nqn(got.hostnqn().unwrap()).unwrap();

    // CapsuleResp with the new controller ID.
    let mut cqe = Cqe::new(sqe.cid(), Status::SUCCESS);
    cqe.dw0 = connect_success_dw0(1, 0).into();
    wire.clear();
    ctrl_tx
        .encode(
            &PduHeader::CapsuleResp(CapsuleResp::new(cqe)),
            &[],
            &mut wire,
        )
        .unwrap();
    assert_eq!(wire.len(), 24 + 4);
    let resp = match read_one(&mut host_rx, &wire).header {
        PduHeader::CapsuleResp(r) => r.cqe,
        other => panic!("expected CapsuleResp, got {other:?}"),
    };
    assert!(resp.status().is_success());
    assert_eq!(resp.cid(), 1);
    assert_eq!(connect_rsp_cntlid(&resp), 1);
}
