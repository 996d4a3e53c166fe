//! Host driver tests against scripted fake targets (bytes in, bytes out).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use zerocopy::{FromBytes, IntoBytes};

use super::tcp::TcpProto;
use super::*;
use crate::spec::cqe::Cqe;
use crate::spec::fabrics::{ConnectCmd, connect_success_dw0};
use crate::spec::identify::{IdentifyController, IdentifyNamespace, NsList};
use crate::spec::opcode::{AdminOpcode, FabricsCommandType, NvmOpcode};
use crate::spec::props::{Cap, Csts, PropertyOffset};
use crate::spec::sqe::Sqe;
use crate::spec::status::{GenericStatus, Status};
use crate::spec::tcp::pdu::{C2hData, CapsuleResp, IcResp, R2t, TermReq};
use crate::spec::tcp::{DecoderConfig, Fes, Negotiated, PduEncoder, PduHeader, PduReader, PduType};

/// The target side of one connection: decodes what the host sent, encodes replies.
struct FakeTarget {
    reader: PduReader,
    enc: PduEncoder,
}

impl FakeTarget {
    fn new() -> Self {
        FakeTarget {
            reader: PduReader::new(DecoderConfig {
                role: crate::spec::tcp::Role::Controller,
                max_capsule_data: 8192,
                max_data_pdu: 1 << 20,
            }),
            enc: PduEncoder::new(),
        }
    }

    /// Every PDU the host has queued.
    fn take(&mut self, host: &mut TcpProto) -> Vec<crate::spec::tcp::Pdu> {
        let bytes = host.poll_transmit().to_vec();
        host.advance_transmit(bytes.len());
        let mut out = Vec::new();
        let mut off = 0;
        while off < bytes.len() {
            let (n, pdu) = self.reader.read(&bytes[off..]).unwrap();
            off += n;
            if let Some(p) = pdu {
                out.push(p);
            }
        }
        out
    }

    fn bytes(&self, h: PduHeader, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        self.enc.encode(&h, data, &mut v).unwrap();
        v
    }

    /// Complete the IC exchange (optionally granting digests).
    fn accept(&mut self, host: &mut TcpProto, hdgst: bool, ddgst: bool, maxh2c: u32) {
        let pdus = self.take(host);
        assert!(matches!(pdus[0].header, PduHeader::IcReq(_)));
        let resp = self.bytes(PduHeader::IcResp(IcResp::new(0, hdgst, ddgst, maxh2c)), &[]);
        let neg = Negotiated {
            hdgst,
            ddgst,
            rx_pda: 0,
        };
        self.reader.decoder_mut().set_negotiated(neg);
        self.enc.set_negotiated(neg);
        host.handle_bytes(&resp).unwrap();
        assert!(host.is_connected());
    }

    fn resp(&self, cid: u16, status: Status) -> Vec<u8> {
        self.bytes(
            PduHeader::CapsuleResp(CapsuleResp::new(Cqe::new(cid, status))),
            &[],
        )
    }
}

fn connected(hdgst: bool, ddgst: bool) -> (TcpProto, FakeTarget) {
    let mut host = TcpProto::new(8, hdgst, ddgst);
    let mut t = FakeTarget::new();
    t.accept(&mut host, hdgst, ddgst, 8192);
    (host, t)
}

fn read_sqe(cid: u16) -> Sqe {
    let mut s = Sqe::new(NvmOpcode::READ.0, cid);
    s.nsid = 1.into();
    s
}

#[test]
fn ic_exchange_applies_granted_digests_and_maxh2cdata() {
    let (host, _) = connected(true, true);
    assert_eq!(host.digests(), (true, true));
    assert_eq!(host.maxh2cdata(), 8192);
}

#[test]
fn icresp_granting_unrequested_digest_fails_connection() {
    let mut host = TcpProto::new(4, false, false);
    let mut t = FakeTarget::new();
    t.take(&mut host);
    let resp = t.bytes(PduHeader::IcResp(IcResp::new(0, true, false, 8192)), &[]);
    let e = host.handle_bytes(&resp).unwrap_err();
    assert_eq!(
        e,
        HostError::Protocol("ICResp enables unrequested digest".into())
    );
    assert!(!host.is_connected());
}

#[test]
fn icresp_with_small_maxh2cdata_is_rejected() {
    let mut host = TcpProto::new(4, false, false);
    let mut t = FakeTarget::new();
    t.take(&mut host);
    let resp = t.bytes(PduHeader::IcResp(IcResp::new(0, false, false, 1024)), &[]);
    assert_eq!(
        host.handle_bytes(&resp).unwrap_err(),
        HostError::Protocol(
            "NVMe/TCP invalid PDU header field at byte 12: MAXH2CDATA smaller than 4096".into()
        )
    );
}

#[test]
fn read_with_c2h_success_fills_buffer_and_completes() {
    let (mut host, mut t) = connected(true, true);
    host.submit(read_sqe(3), Payload::FromCtrl(vec![0; 1024]))
        .unwrap();
    let pdus = t.take(&mut host);
    let PduHeader::CapsuleCmd(c) = pdus[0].header else {
        panic!("not a capsule")
    };
    assert_eq!(c.sqe.cid(), 3);
    assert!(pdus[0].data.is_empty(), "reads carry no in-capsule data");
    let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    let mut bytes = t.bytes(
        PduHeader::C2hData(C2hData::new(3, 0, 512, false, false)),
        &data[..512],
    );
    bytes.extend(t.bytes(
        PduHeader::C2hData(C2hData::new(3, 512, 512, true, true)),
        &data[512..],
    ));
    // Feed one byte at a time: the decoder must reassemble.
    for b in &bytes {
        host.handle_bytes(std::slice::from_ref(b)).unwrap();
    }
    let mut done = Vec::new();
    host.take_completions(&mut done);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].cqe.cid(), 3);
    assert!(done[0].cqe.status().is_success());
    assert_eq!(done[0].buf, data);
    assert_eq!(host.outstanding(), 0);
}

#[test]
fn small_write_goes_in_capsule_and_large_write_follows_r2t_in_maxh2cdata_pieces() {
    let (mut host, mut t) = connected(false, true);
    host.set_max_in_capsule(4096);
    let small = vec![7u8; 4096];
    host.submit(
        Sqe::new(NvmOpcode::WRITE.0, 1),
        Payload::ToCtrl(small.clone()),
    )
    .unwrap();
    let pdus = t.take(&mut host);
    assert_eq!(pdus[0].data, small);
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    host.submit(
        Sqe::new(NvmOpcode::WRITE.0, 2),
        Payload::ToCtrl(big.clone()),
    )
    .unwrap();
    let pdus = t.take(&mut host);
    assert!(pdus[0].data.is_empty());
    let PduHeader::CapsuleCmd(c) = pdus[0].header else {
        panic!()
    };
    assert_eq!(c.sqe.dptr.sgl_type().0, 0x5, "transport SGL data block");
    assert_eq!(c.sqe.dptr.unkeyed_length(), 20_000);
    let r2t = t.bytes(PduHeader::R2t(R2t::new(2, 9, 0, 20_000)), &[]);
    host.handle_bytes(&r2t).unwrap();
    let pdus = t.take(&mut host);
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    for p in &pdus {
        let PduHeader::H2cData(h) = p.header else {
            panic!()
        };
        assert_eq!(h.ttag.get(), 9);
        assert_eq!(h.datao.get() as usize, got.len());
        sizes.push(h.datal.get());
        got.extend_from_slice(&p.data);
    }
    assert_eq!(sizes, vec![8192, 8192, 3616]);
    let PduHeader::H2cData(last) = pdus[2].header else {
        panic!()
    };
    assert_eq!(last.ch.flags & 0x04, 0x04, "LAST_PDU on the final piece");
    assert_eq!(got, big);
    host.handle_bytes(&t.resp(2, Status::SUCCESS)).unwrap();
    host.handle_bytes(&t.resp(1, Status::SUCCESS)).unwrap();
    let mut done = Vec::new();
    host.take_completions(&mut done);
    assert_eq!(
        done.iter().map(|d| d.cqe.cid()).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn capsule_resp_for_unknown_cid_fails_connection() {
    let (mut host, t) = connected(false, false);
    let e = host.handle_bytes(&t.resp(5, Status::SUCCESS)).unwrap_err();
    assert_eq!(
        e,
        HostError::Protocol("CapsuleResp for unknown CID 5".into())
    );
    // Later input is refused with the same error, and submits fail.
    assert_eq!(host.handle_bytes(&[0]).unwrap_err(), e);
    assert!(host.submit(read_sqe(0), Payload::None).is_err());
}

#[test]
fn c2h_data_for_unknown_cid_or_beyond_transfer_fails_connection() {
    let (mut host, t) = connected(false, false);
    let bytes = t.bytes(
        PduHeader::C2hData(C2hData::new(4, 0, 8, true, true)),
        &[1; 8],
    );
    assert_eq!(
        host.handle_bytes(&bytes).unwrap_err(),
        HostError::Protocol("C2HData for unknown CID 4".into())
    );
    let (mut host, mut t) = connected(false, false);
    host.submit(read_sqe(0), Payload::FromCtrl(vec![0; 512]))
        .unwrap();
    t.take(&mut host);
    let bytes = t.bytes(
        PduHeader::C2hData(C2hData::new(0, 0, 1024, true, true)),
        &[1; 1024],
    );
    assert_eq!(
        host.handle_bytes(&bytes).unwrap_err(),
        HostError::Protocol("C2HData ends at 1024, beyond the 512-byte transfer".into())
    );
}

#[test]
fn short_c2h_data_fails_connection_and_gives_buffer_back() {
    let (mut host, mut t) = connected(false, false);
    host.submit(read_sqe(0), Payload::FromCtrl(vec![0; 4096]))
        .unwrap();
    t.take(&mut host);
    let bytes = t.bytes(
        PduHeader::C2hData(C2hData::new(0, 0, 512, true, true)),
        &[1; 512],
    );
    assert_eq!(
        host.handle_bytes(&bytes).unwrap_err(),
        HostError::Protocol("short C2HData: last PDU ends at 512 of 4096".into())
    );
    let back = host.abort_all();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].0, back[0].1.len()), (0, 4096));
}

#[test]
fn success_response_before_all_read_data_fails_connection() {
    let (mut host, mut t) = connected(false, false);
    host.submit(read_sqe(1), Payload::FromCtrl(vec![0; 1024]))
        .unwrap();
    t.take(&mut host);
    let mut bytes = t.bytes(
        PduHeader::C2hData(C2hData::new(1, 0, 512, false, false)),
        &[1; 512],
    );
    bytes.extend(t.resp(1, Status::SUCCESS));
    assert_eq!(
        host.handle_bytes(&bytes).unwrap_err(),
        HostError::Protocol("CID 1 completed after 512 of 1024 bytes".into())
    );
}

#[test]
fn malformed_pdu_fails_connection_and_queues_h2c_term_req() {
    let (mut host, mut t) = connected(false, false);
    // A CapsuleResp with HLEN 23 instead of 24.
    let mut bytes = t.resp(0, Status::SUCCESS);
    bytes[2] = 23;
    let e = host.handle_bytes(&bytes).unwrap_err();
    assert!(matches!(e, HostError::Protocol(_)), "{e:?}");
    let pdus = t.take(&mut host);
    let PduHeader::H2cTermReq(tr) = pdus[0].header else {
        panic!("expected H2CTermReq, got {:?}", pdus[0].header)
    };
    assert_eq!(tr.fes(), Fes::INVALID_HEADER_FIELD);
}

#[test]
fn c2h_term_req_fails_connection_with_its_fes() {
    let (mut host, t) = connected(false, false);
    let tr = TermReq::new(PduType::C2H_TERM_REQ, Fes::HDGST_ERROR, 0);
    let bytes = t.bytes(PduHeader::C2hTermReq(tr), &[0; 8]);
    assert_eq!(
        host.handle_bytes(&bytes).unwrap_err(),
        HostError::TermReq { fes: 3 }
    );
}

#[test]
fn data_digest_mismatch_completes_command_with_transient_transport_error() {
    let (mut host, mut t) = connected(false, true);
    host.submit(read_sqe(2), Payload::FromCtrl(vec![0; 16]))
        .unwrap();
    t.take(&mut host);
    let mut bytes = t.bytes(
        PduHeader::C2hData(C2hData::new(2, 0, 16, true, true)),
        &[5; 16],
    );
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    host.handle_bytes(&bytes).unwrap();
    let mut done = Vec::new();
    host.take_completions(&mut done);
    assert_eq!(
        done[0].cqe.status(),
        Status::from(GenericStatus::TRANSIENT_TRANSPORT_ERROR)
    );
}

#[test]
fn pdu_before_icresp_fails_connection() {
    let mut host = TcpProto::new(4, false, false);
    let t = FakeTarget::new();
    assert_eq!(
        host.handle_bytes(&t.resp(0, Status::SUCCESS)).unwrap_err(),
        HostError::Protocol(
            "NVMe/TCP PDU sequence error (type 0x5): PDU before connection initialisation".into()
        )
    );
}

// ---- Identify validation ----

fn ns_data(nlbaf: u8, flbas: u8, lbads: u8) -> IdentifyNamespace {
    let mut ns = IdentifyNamespace {
        nsze: 100.into(),
        ncap: 100.into(),
        nlbaf,
        flbas,
        ..Default::default()
    };
    ns.lbaf[usize::from(flbas & 0xf)].lbads = lbads;
    ns
}

#[test]
fn lying_identify_namespace_is_rejected() {
    let ok = Namespace::from_identify(1, ns_data(0, 0, 12)).unwrap();
    assert_eq!(
        (ok.block_size(), ok.num_blocks(), ok.size_bytes()),
        (4096, 100, 409_600)
    );
    let cases = [
        (ns_data(64, 0, 9), "namespace 1: NLBAF 64 > 63"),
        (
            ns_data(0, 1, 9),
            "namespace 1: formatted LBA format 1 beyond NLBAF 0",
        ),
        (ns_data(0, 0, 8), "namespace 1: LBADS 8 outside 9..=31"),
        (ns_data(0, 0, 32), "namespace 1: LBADS 32 outside 9..=31"),
    ];
    for (d, want) in cases {
        assert_eq!(
            Namespace::from_identify(1, d).unwrap_err(),
            HostError::BadIdentify(want.into())
        );
    }
    let mut d = ns_data(0, 0, 9);
    d.ncap = 101.into();
    assert_eq!(
        Namespace::from_identify(2, d).unwrap_err(),
        HostError::BadIdentify("namespace 2: NCAP 101 > NSZE 100".into())
    );
}

// ---- Controller bring-up against a scripted controller ----

/// What the scripted controller answers.
#[derive(Clone)]
struct Script {
    ns: IdentifyNamespace,
    never_ready: bool,
    bogus_cid: bool,
    /// I/O (non-admin, non-fabrics) commands are never completed.
    swallow_io: bool,
    log: Arc<Mutex<Vec<String>>>,
}

struct ScriptedQpair {
    script: Script,
    queue: VecDeque<RawCompletion>,
    cc: u32,
}

impl TransportQpair for ScriptedQpair {
    fn submit(&mut self, sqe: Sqe, payload: Payload) -> Result<(), HostError> {
        let cid = sqe.cid();
        let mut cqe = Cqe::new(cid, Status::SUCCESS);
        let mut buf = payload.into_buf();
        let mut log = self.script.log.lock().unwrap();
        if sqe.opc == AdminOpcode::FABRICS.0 {
            let fct = sqe.fctype();
            if fct == FabricsCommandType::CONNECT {
                let c = ConnectCmd::from_sqe(&sqe);
                log.push(format!(
                    "connect qid {} sqsize {}",
                    c.qid.get(),
                    c.sqsize.get()
                ));
                cqe.dw0 = connect_success_dw0(7, 0).into();
            } else if fct == FabricsCommandType::PROPERTY_GET {
                let ofst = u32::from_le_bytes(sqe.as_bytes()[44..48].try_into().unwrap());
                let v: u64 = match PropertyOffset(ofst) {
                    PropertyOffset::CAP => Cap(0).with_mqes(127).with_to(1).with_css(1).0,
                    PropertyOffset::VS => 0x0001_0400,
                    PropertyOffset::CSTS => u64::from(
                        Csts(0)
                            .with_rdy(u8::from(self.cc & 1 == 1 && !self.script.never_ready))
                            .0,
                    ),
                    _ => 0,
                };
                cqe.set_dw01(v);
            } else if fct == FabricsCommandType::PROPERTY_SET {
                let v = u64::from_le_bytes(sqe.as_bytes()[48..56].try_into().unwrap());
                self.cc = v as u32;
                log.push(format!("cc {:#x}", self.cc));
            }
        } else if sqe.opc == AdminOpcode::IDENTIFY.0 {
            let cns = sqe.cdw10.get() & 0xff;
            log.push(format!("identify cns {cns} nsid {}", sqe.nsid.get()));
            match cns {
                1 => {
                    let c = IdentifyController {
                        nn: 4.into(),
                        ioccsz: 260.into(),
                        cntrltype: 1,
                        ..Default::default()
                    };
                    buf.copy_from_slice(c.as_bytes());
                }
                2 => buf.copy_from_slice(NsList::from_ids([1]).as_bytes()),
                0 => buf.copy_from_slice(self.script.ns.as_bytes()),
                _ => cqe.set_status(GenericStatus::INVALID_FIELD.into()),
            }
        } else if sqe.opc == AdminOpcode::SET_FEATURES.0 {
            log.push(format!(
                "set features {:#x} {:#x}",
                sqe.cdw10.get(),
                sqe.cdw11.get()
            ));
            cqe.dw0 = 0x0003_0003.into(); // 4 queues granted
        }
        if self.script.bogus_cid {
            cqe.cid = 99.into();
        }
        if sqe.opc == AdminOpcode::KEEP_ALIVE.0 {
            log.push("keep alive".into());
        }
        if self.script.swallow_io && sqe.opc == NvmOpcode::FLUSH.0 {
            return Ok(());
        }
        if sqe.opc == AdminOpcode::ASYNC_EVENT_REQUEST.0 {
            // Held until an event happens (none in these scripts).
            log.push("aer".into());
            return Ok(());
        }
        self.queue.push_back(RawCompletion { cqe, buf });
        Ok(())
    }

    fn poll(&mut self, done: &mut Vec<RawCompletion>) -> Result<(), HostError> {
        done.extend(self.queue.drain(..));
        Ok(())
    }

    fn max_in_capsule(&self) -> u32 {
        8192
    }

    fn set_max_in_capsule(&mut self, _bytes: u32) {}

    fn abort_all(&mut self) -> Vec<(u16, Vec<u8>)> {
        Vec::new()
    }
}

struct ScriptedTransport(Script);

impl Transport for ScriptedTransport {
    fn name(&self) -> &'static str {
        "SCRIPT"
    }

    fn connect_qpair(
        &self,
        _trid: &TransportId,
        _params: &QpairParams,
    ) -> Result<Box<dyn TransportQpair>, HostError> {
        Ok(Box::new(ScriptedQpair {
            script: self.0.clone(),
            queue: VecDeque::new(),
            cc: 0,
        }))
    }
}

fn script(ns: IdentifyNamespace) -> Script {
    Script {
        ns,
        never_ready: false,
        bogus_cid: false,
        swallow_io: false,
        log: Arc::new(Mutex::new(Vec::new())),
    }
}

fn trid() -> TransportId {
    TransportId::tcp("127.0.0.1", "4420", Some("nqn.2016-06.io.spdk:cnode1")).unwrap()
}

fn opts() -> ControllerOpts {
    ControllerOpts {
        admin_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    }
}

#[test]
fn controller_bring_up_follows_spdk_order_and_validates_namespaces() {
    let s = script(ns_data(0, 0, 9));
    let log = s.log.clone();
    let mut c = Controller::connect_with(Arc::new(ScriptedTransport(s)), &trid(), opts()).unwrap();
    assert_eq!(c.cntlid(), 7);
    assert_eq!(c.cap().mqes(), 127);
    assert_eq!(
        c.cap().css(),
        1,
        "CAP.CSS sits in the upper dword of the 8-byte Property Get"
    );
    assert_eq!((c.vs().mjr(), c.vs().mnr()), (1, 4));
    assert_eq!(c.io_queues_granted(), 4);
    let ns: Vec<(u32, u32, u64)> = c
        .namespaces()
        .map(|n| (n.id(), n.block_size(), n.num_blocks()))
        .collect();
    assert_eq!(ns, vec![(1, 512, 100)]);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "connect qid 0 sqsize 31",
            "cc 0x460001",
            "identify cns 1 nsid 0",
            "set features 0x7 0x3ff03ff",
            "identify cns 2 nsid 0",
            "identify cns 0 nsid 1",
            "set features 0xb 0x1f",
            "aer",
        ]
    );
    let q = c.alloc_io_qpair(64).unwrap();
    assert_eq!(q.qid(), 1);
    assert_eq!(q.depth(), 63);
    assert_eq!(
        log.lock().unwrap().last().unwrap(),
        "connect qid 1 sqsize 63"
    );
}

#[test]
fn controller_with_lying_identify_namespace_fails_to_attach() {
    let s = script(ns_data(0, 0, 40));
    let e = Controller::connect_with(Arc::new(ScriptedTransport(s)), &trid(), opts()).unwrap_err();
    assert_eq!(
        e,
        HostError::BadIdentify("namespace 1: LBADS 40 outside 9..=31".into())
    );
}

#[test]
fn controller_that_never_becomes_ready_times_out() {
    let mut s = script(ns_data(0, 0, 9));
    s.never_ready = true;
    let e = Controller::connect_with(Arc::new(ScriptedTransport(s)), &trid(), opts()).unwrap_err();
    assert_eq!(e, HostError::Timeout("CSTS.RDY after CC.EN=1"));
}

#[test]
fn completion_for_unknown_cid_fails_qpair_and_aborts_outstanding() {
    let mut s = script(ns_data(0, 0, 9));
    s.bogus_cid = true;
    let t = ScriptedTransport(s);
    let tq = t
        .connect_qpair(
            &trid(),
            &QpairParams {
                qid: 1,
                queue_size: 4,
                hdgst: false,
                ddgst: false,
                connect_timeout: std::time::Duration::from_secs(1),
            },
        )
        .unwrap();
    let mut q = qpair::Qpair::new(1, 4, tq);
    q.submit(Sqe::new(NvmOpcode::FLUSH.0, 0), Payload::None, 42)
        .unwrap();
    let mut out = Vec::new();
    let e = q.process_completions(&mut out).unwrap_err();
    assert_eq!(
        e,
        HostError::Protocol("completion for unknown CID 99".into())
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].tag, 42);
    assert_eq!(
        out[0].status,
        Status::from(GenericStatus::ABORTED_SQ_DELETION)
    );
    let r = q
        .submit(Sqe::new(NvmOpcode::FLUSH.0, 0), Payload::None, 1)
        .unwrap_err();
    assert!(matches!(r.error, HostError::Failed(_)));
}

#[test]
fn qpair_queue_full_returns_buffer() {
    let t = ScriptedTransport(script(ns_data(0, 0, 9)));
    let tq = t
        .connect_qpair(
            &trid(),
            &QpairParams {
                qid: 1,
                queue_size: 2,
                hdgst: false,
                ddgst: false,
                connect_timeout: std::time::Duration::from_secs(1),
            },
        )
        .unwrap();
    let mut q = qpair::Qpair::new(1, 2, tq);
    q.submit(Sqe::new(NvmOpcode::FLUSH.0, 0), Payload::None, 1)
        .unwrap();
    let r = q
        .submit(
            Sqe::new(NvmOpcode::READ.0, 0),
            Payload::FromCtrl(vec![0; 512]),
            2,
        )
        .unwrap_err();
    assert_eq!(r.error, HostError::QueueFull);
    assert_eq!(r.buf.len(), 512);
    let mut out = Vec::new();
    assert_eq!(q.process_completions(&mut out).unwrap(), 1);
    let _ = (IoQpair::qid, IdentifyNamespace::read_from_bytes);
}

#[test]
fn keep_alive_is_sent_after_half_the_timeout_and_not_again_while_pending() {
    let s = script(ns_data(0, 0, 9));
    let log = s.log.clone();
    let o = ControllerOpts {
        keep_alive_timeout_ms: 40,
        ..opts()
    };
    let mut c = Controller::connect_with(Arc::new(ScriptedTransport(s)), &trid(), o).unwrap();
    let count = |log: &Arc<Mutex<Vec<String>>>| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.as_str() == "keep alive")
            .count()
    };
    assert_eq!(c.process_admin_completions().unwrap(), 0);
    assert_eq!(count(&log), 0, "not before KATO/2");
    std::thread::sleep(std::time::Duration::from_millis(25));
    assert_eq!(c.process_admin_completions().unwrap(), 1);
    assert_eq!(count(&log), 1);
    assert_eq!(c.process_admin_completions().unwrap(), 0);
    assert_eq!(count(&log), 1, "only one per KATO/2");
}

#[test]
fn io_command_outstanding_past_timeout_fails_qpair_and_is_aborted() {
    let mut s = script(ns_data(0, 0, 9));
    s.swallow_io = true;
    let o = ControllerOpts {
        io_timeout: Some(std::time::Duration::from_millis(50)),
        ..opts()
    };
    let mut c = Controller::connect_with(Arc::new(ScriptedTransport(s)), &trid(), o).unwrap();
    let mut q = c.alloc_io_qpair(8).unwrap();
    q.flush(1, 77).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let err = loop {
        match q.process_completions(&mut out) {
            Ok(_) => assert!(std::time::Instant::now() < deadline, "no timeout"),
            Err(e) => break e,
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(err, HostError::Timeout("command"));
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].tag, out[0].status),
        (77, GenericStatus::ABORTED_SQ_DELETION.into())
    );
    assert!(q.failure().is_some());
}

#[test]
fn io_requests_are_checked_against_the_namespace() {
    let s = script(ns_data(0, 0, 9));
    let mut c = Controller::connect_with(Arc::new(ScriptedTransport(s)), &trid(), opts()).unwrap();
    let mut q = c.alloc_io_qpair(8).unwrap();
    let e = |r: Result<u16, Rejected>| r.unwrap_err().error;
    assert_eq!(
        e(q.read(2, 0, vec![0; 512], 0)),
        HostError::InvalidRequest("namespace 2 not active".into())
    );
    assert_eq!(
        e(q.read(1, 99, vec![0; 1024], 0)),
        HostError::InvalidRequest("LBA 99 + 2 beyond namespace size 100".into())
    );
    assert_eq!(
        e(q.write(1, 0, vec![0; 700], 0)),
        HostError::InvalidRequest("buffer of 700 bytes for 1 blocks of 512".into())
    );
    assert_eq!(
        e(q.deallocate(1, &[], 0)),
        HostError::InvalidRequest("0 DSM ranges: must be 1..=256".into())
    );
    assert_eq!(q.outstanding(), 0);
}

/// xorshift64 for the bounded hostile-input loops.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn random_and_mutated_target_bytes_never_panic_and_fail_cleanly() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let start = std::time::Instant::now();
    for round in 0..3000 {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            break;
        }
        let (mut host, mut t) = connected(round % 2 == 0, round % 3 == 0);
        host.submit(read_sqe(0), Payload::FromCtrl(vec![0; 1024]))
            .unwrap();
        host.submit(
            Sqe::new(NvmOpcode::WRITE.0, 1),
            Payload::ToCtrl(vec![1; 16384]),
        )
        .unwrap();
        t.take(&mut host);
        // A valid stream the target could send, then mutate a few bytes of it (or send
        // pure noise every fourth round).
        let mut bytes = t.bytes(
            PduHeader::C2hData(C2hData::new(0, 0, 1024, true, true)),
            &[7; 1024],
        );
        bytes.extend(t.bytes(PduHeader::R2t(R2t::new(1, 3, 0, 16384)), &[]));
        bytes.extend(t.resp(1, Status::SUCCESS));
        if round % 4 == 3 {
            let n = (next(&mut seed) % 300) as usize;
            bytes = (0..n).map(|_| next(&mut seed) as u8).collect();
        } else {
            for _ in 0..=(next(&mut seed) % 4) {
                let i = (next(&mut seed) as usize) % bytes.len();
                bytes[i] = next(&mut seed) as u8;
            }
        }
        let mut failed = false;
        let mut off = 0;
        while off < bytes.len() {
            let n = 1 + (next(&mut seed) as usize % 97);
            let end = (off + n).min(bytes.len());
            if host.handle_bytes(&bytes[off..end]).is_err() {
                failed = true;
                break;
            }
            off = end;
        }
        let mut done = Vec::new();
        host.take_completions(&mut done);
        if failed {
            assert!(host.error().is_some());
            assert!(host.submit(read_sqe(2), Payload::None).is_err());
            let back = host.abort_all();
            assert_eq!(back.len() + done.len(), 2, "every command accounted for");
        } else {
            assert!(done.len() + host.outstanding() == 2);
        }
        let _ = t;
    }
}

/// A connect timeout too large to add to the clock (`Duration::MAX`) must not panic
/// ("overflow when adding duration to instant"): the deadline saturates and the connection
/// fails for its real reason (here: the peer closes before sending an ICResp).
#[test]
fn huge_connect_timeout_saturates_instead_of_panicking() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let closer = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        // Read the whole 128-byte ICReq first so the close is a FIN, not a reset.
        let mut icreq = [0u8; 128];
        std::io::Read::read_exact(&mut s, &mut icreq).unwrap();
        drop(s);
    });
    let trid = TransportId::parse(&format!(
        "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:nqn.2016-06.io.spdk:x"
    ))
    .unwrap();
    let params = QpairParams {
        qid: 0,
        queue_size: 32,
        hdgst: false,
        ddgst: false,
        connect_timeout: std::time::Duration::MAX,
    };
    let r = tcp::TcpTransport.connect_qpair(&trid, &params);
    closer.join().unwrap();
    assert_eq!(r.err(), Some(HostError::Closed));
}

#[test]
fn deadline_after_saturates() {
    let before = std::time::Instant::now();
    let d = super::qpair::deadline_after(std::time::Duration::MAX);
    assert!(d >= before + std::time::Duration::from_secs(u64::from(u32::MAX)));
    let small = super::qpair::deadline_after(std::time::Duration::from_millis(5));
    assert!(small <= std::time::Instant::now() + std::time::Duration::from_millis(5));
}
