use super::*;
use crate::spec::cqe::Cqe;
use crate::spec::sqe::Sqe;
use crate::spec::status::Status;
use crate::spec::tcp::digest::crc32c;
use crate::spec::tcp::pdu::Fes;

fn ctrl() -> PduDecoder {
    PduDecoder::new(DecoderConfig::controller_default())
}

fn host() -> PduDecoder {
    PduDecoder::new(DecoderConfig::host_default())
}

fn enc(neg: Negotiated, h: PduHeader, data: &[u8]) -> Vec<u8> {
    let mut e = PduEncoder::new();
    e.set_negotiated(neg);
    let mut out = Vec::new();
    e.encode(&h, data, &mut out).unwrap();
    out
}

/// Feed `bytes` in chunks of `chunk`, collecting whole PDUs.
fn read_all(dec: PduDecoder, bytes: &[u8], chunk: usize) -> Result<Vec<Pdu>, Error> {
    let mut r = PduReader {
        decoder: dec,
        current: None,
    };
    let mut pdus = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let mut off = 0;
        while off < piece.len() {
            let (n, pdu) = r.read(&piece[off..])?;
            off += n;
            if let Some(p) = pdu {
                pdus.push(p);
            }
        }
    }
    Ok(pdus)
}

fn after_ic(mut d: PduDecoder, neg: Negotiated) -> PduDecoder {
    let ic = match d.cfg.role {
        Role::Controller => enc(
            Negotiated::default(),
            PduHeader::IcReq(IcReq::new(0, neg.hdgst, neg.ddgst, 0)),
            &[],
        ),
        Role::Host => enc(
            Negotiated::default(),
            PduHeader::IcResp(IcResp::new(0, neg.hdgst, neg.ddgst, 131072)),
            &[],
        ),
    };
    let (n, ev) = d.decode(&ic).unwrap();
    assert_eq!(n, 128);
    assert!(matches!(ev, Some(Decoded::Header { data_len: 0, .. })));
    let (n, ev) = d.decode(&[]).unwrap();
    assert_eq!((n, ev), (0, Some(Decoded::End(PduEnd::Ok))));
    d.set_negotiated(neg);
    d
}

fn expect_err(d: PduDecoder, bytes: &[u8]) -> Error {
    read_all(d, bytes, bytes.len()).unwrap_err()
}

const ALL: Negotiated = Negotiated {
    hdgst: true,
    ddgst: true,
    rx_pda: 0,
};

#[test]
fn linux_style_icreq_bytes_decode() {
    let mut raw = [0u8; 128];
    raw[0] = 0x00; // ICReq
    raw[2] = 128; // hlen
    raw[4] = 128; // plen
    raw[11] = 0x03; // hdgst + ddgst
    raw[12] = 0; // maxr2t
    let pdus = read_all(ctrl(), &raw, 7).unwrap();
    assert_eq!(pdus.len(), 1);
    match &pdus[0].header {
        PduHeader::IcReq(r) => {
            assert_eq!(r.dgst, 0x03);
            assert_eq!(r.pfv.get(), 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn capsule_cmd_with_digests_and_alignment_round_trips_byte_by_byte() {
    let neg = Negotiated {
        hdgst: true,
        ddgst: true,
        rx_pda: 1,
    };
    let mut sqe = Sqe::new(0x01, 0x1234);
    sqe.nsid = 1.into();
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let bytes = enc(neg, PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &data);
    // hlen 72 + hdgst 4 = 76, aligned to 8 -> PDO 80; PLEN = 80 + 1000 + 4.
    assert_eq!(bytes[1], FLAG_HDGST | FLAG_DDGST);
    assert_eq!(bytes[3], 80);
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 1084);
    assert_eq!(&bytes[72..76], &crc32c(&bytes[..72]).to_le_bytes());
    assert_eq!(&bytes[1080..1084], &crc32c(&data).to_le_bytes());
    let pdus = read_all(after_ic(ctrl(), neg), &bytes, 1).unwrap();
    assert_eq!(pdus.len(), 1);
    assert_eq!(pdus[0].data, data);
    assert_eq!(pdus[0].end, PduEnd::Ok);
    match pdus[0].header {
        PduHeader::CapsuleCmd(c) => {
            assert_eq!(c.sqe.cid(), 0x1234);
            assert_eq!(c.ch.pdo, 80);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_side_stream_of_r2t_c2h_and_resp_decodes_in_one_buffer() {
    let neg = ALL;
    let mut stream = enc(neg, PduHeader::R2t(R2t::new(3, 7, 0, 8192)), &[]);
    stream.extend(enc(
        neg,
        PduHeader::C2hData(C2hData::new(4, 0, 16, true, true)),
        &[0xab; 16],
    ));
    stream.extend(enc(
        neg,
        PduHeader::CapsuleResp(CapsuleResp::new(Cqe::new(3, Status::SUCCESS))),
        &[],
    ));
    let pdus = read_all(after_ic(host(), neg), &stream, stream.len()).unwrap();
    assert_eq!(pdus.len(), 3);
    assert!(
        matches!(pdus[0].header, PduHeader::R2t(r) if r.r2tl.get() == 8192 && r.ttag.get() == 7)
    );
    assert!(matches!(pdus[1].header, PduHeader::C2hData(c) if c.ch.flags & FLAG_SUCCESS != 0));
    assert_eq!(pdus[1].data, vec![0xab; 16]);
    assert!(matches!(pdus[2].header, PduHeader::CapsuleResp(r) if r.cqe.cid() == 3));
}

#[test]
fn data_events_borrow_input_without_copy() {
    let neg = Negotiated::default();
    let bytes = enc(
        neg,
        PduHeader::H2cData(H2cData::new(1, 2, 0, 64, true)),
        &[9u8; 64],
    );
    let mut d = after_ic(ctrl(), neg);
    let (n, ev) = d.decode(&bytes).unwrap();
    assert_eq!(n, 24);
    assert!(matches!(ev, Some(Decoded::Header { data_len: 64, .. })));
    assert_eq!(d.data_remaining(), 64);
    let (n2, ev) = d.decode(&bytes[n..]).unwrap();
    assert_eq!(n2, 64);
    match ev {
        Some(Decoded::Data(chunk)) => assert_eq!(chunk.as_ptr(), bytes[24..].as_ptr()),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.decode(&[]).unwrap(), (0, Some(Decoded::End(PduEnd::Ok))));
    assert!(d.is_idle());
}

#[test]
fn data_digest_mismatch_is_reported_and_stream_continues() {
    let mut bytes = enc(
        ALL,
        PduHeader::H2cData(H2cData::new(1, 2, 0, 8, true)),
        &[1; 8],
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes.extend(enc(
        ALL,
        PduHeader::H2cData(H2cData::new(1, 2, 8, 8, true)),
        &[2; 8],
    ));
    let pdus = read_all(after_ic(ctrl(), ALL), &bytes, 5).unwrap();
    assert_eq!(pdus.len(), 2);
    let computed = crc32c(&[1; 8]);
    let received = computed ^ 0xff00_0000;
    assert_eq!(
        pdus[0].end,
        PduEnd::DataDigestMismatch { received, computed }
    );
    assert_eq!(
        pdus[0].end.into_result(),
        Err(Error::DataDigest { received, computed })
    );
    assert_eq!(pdus[1].end, PduEnd::Ok);
}

#[test]
fn header_digest_error_maps_to_fes_hdgst() {
    let mut bytes = enc(
        ALL,
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(0x18, 1))),
        &[],
    );
    bytes[10] ^= 1; // corrupt the SQE
    let err = expect_err(after_ic(ctrl(), ALL), &bytes);
    assert!(matches!(err, Error::HeaderDigest { .. }));
    assert_eq!(err.term_req(), Some((Fes::HDGST_ERROR, 0)));
}

#[test]
fn wrong_direction_pdu_is_invalid_type_at_offset_0() {
    let bytes = enc(
        Negotiated::default(),
        PduHeader::R2t(R2t::new(1, 1, 0, 1)),
        &[],
    );
    let err = expect_err(after_ic(ctrl(), Negotiated::default()), &bytes);
    assert_eq!(err.term_req(), Some((Fes::INVALID_HEADER_FIELD, 0)));
    let mut undefined = bytes.clone();
    undefined[0] = 0x08;
    let err = expect_err(after_ic(host(), Negotiated::default()), &undefined);
    assert_eq!(err.term_req(), Some((Fes::INVALID_HEADER_FIELD, 0)));
}

#[test]
fn wrong_hlen_plen_and_pdo_report_their_offsets() {
    let neg = Negotiated::default();
    let good = enc(
        neg,
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, 1))),
        &[0; 16],
    );
    let mut bad_hlen = good.clone();
    bad_hlen[2] = 71;
    assert_eq!(
        expect_err(after_ic(ctrl(), neg), &bad_hlen).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 2))
    );
    let mut short_plen = good.clone();
    short_plen[4] = 70;
    assert_eq!(
        expect_err(after_ic(ctrl(), neg), &short_plen).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 4))
    );
    let mut bad_pdo = good.clone();
    bad_pdo[3] = 74; // not dword aligned
    assert_eq!(
        expect_err(after_ic(ctrl(), neg), &bad_pdo).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 3))
    );
    let mut pdo_in_header = good.clone();
    pdo_in_header[3] = 68;
    assert_eq!(
        expect_err(after_ic(ctrl(), neg), &pdo_in_header).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 3))
    );
    let mut pdo_past_end = good;
    pdo_past_end[3] = 88; // plen 88: no data byte left
    assert_eq!(
        expect_err(after_ic(ctrl(), neg), &pdo_past_end).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 3))
    );
}

#[test]
fn digest_flags_must_match_negotiation() {
    let no_dgst = enc(
        Negotiated::default(),
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, 1))),
        &[],
    );
    assert_eq!(
        expect_err(after_ic(ctrl(), ALL), &no_dgst).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 1))
    );
    let with_dgst = enc(
        ALL,
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, 1))),
        &[1],
    );
    assert_eq!(
        expect_err(after_ic(ctrl(), Negotiated::default()), &with_dgst).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 1))
    );
}

#[test]
fn datal_must_match_plen() {
    let neg = Negotiated::default();
    let mut bytes = enc(
        neg,
        PduHeader::H2cData(H2cData::new(1, 1, 0, 32, true)),
        &[0; 32],
    );
    bytes[16] = 31;
    assert_eq!(
        expect_err(after_ic(ctrl(), neg), &bytes).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 16))
    );
}

#[test]
fn oversized_data_pdus_are_rejected_before_any_data_is_read() {
    let neg = Negotiated::default();
    let cfg = DecoderConfig {
        role: Role::Controller,
        max_capsule_data: 16,
        max_data_pdu: 32,
    };
    let h2c = enc(
        neg,
        PduHeader::H2cData(H2cData::new(1, 1, 0, 33, true)),
        &[0; 33],
    );
    let err = expect_err(after_ic(PduDecoder::new(cfg), neg), &h2c[..24]);
    assert_eq!(
        err,
        Error::DataTransferLimitExceeded {
            fei: 4,
            len: 33,
            max: 32
        }
    );
    assert_eq!(err.term_req(), Some((Fes::DATA_TRANSFER_LIMIT_EXCEEDED, 4)));
    let cap = enc(
        neg,
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, 1))),
        &[0; 17],
    );
    let err = expect_err(after_ic(PduDecoder::new(cfg), neg), &cap[..8]);
    assert_eq!(
        err,
        Error::DataTransferLimitExceeded {
            fei: 4,
            len: 17,
            max: 16
        }
    );
    // A 4 GiB PLEN is rejected from the 8-byte common header alone.
    let mut huge = h2c[..8].to_vec();
    huge[3] = 24;
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        expect_err(after_ic(PduDecoder::new(cfg), neg), &huge),
        Error::DataTransferLimitExceeded { .. }
    ));
}

#[test]
fn ic_sequence_rules() {
    let cmd = enc(
        Negotiated::default(),
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, 1))),
        &[],
    );
    let err = expect_err(ctrl(), &cmd);
    assert_eq!(err.term_req(), Some((Fes::PDU_SEQUENCE_ERROR, 0)));
    let ic = enc(
        Negotiated::default(),
        PduHeader::IcReq(IcReq::new(0, false, false, 0)),
        &[],
    );
    let err = expect_err(after_ic(ctrl(), Negotiated::default()), &ic);
    assert!(matches!(err, Error::PduSequence { pdu_type: 0, .. }));
}

#[test]
fn icreq_field_checks() {
    let mut ic = IcReq::new(0, false, false, 0);
    ic.pfv = 1.into();
    let bytes = enc(Negotiated::default(), PduHeader::IcReq(ic), &[]);
    assert_eq!(
        expect_err(ctrl(), &bytes).term_req(),
        Some((Fes::UNSUPPORTED_PARAMETER, 8))
    );
    let bytes = enc(
        Negotiated::default(),
        PduHeader::IcReq(IcReq::new(32, false, false, 0)),
        &[],
    );
    assert_eq!(
        expect_err(ctrl(), &bytes).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 10))
    );
    let mut short = enc(
        Negotiated::default(),
        PduHeader::IcReq(IcReq::new(0, false, false, 0)),
        &[],
    );
    short[4] = 127;
    assert_eq!(
        expect_err(ctrl(), &short).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 4))
    );
    let bytes = enc(
        Negotiated::default(),
        PduHeader::IcResp(IcResp::new(0, false, false, 4092)),
        &[],
    );
    assert_eq!(
        expect_err(host(), &bytes).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 12))
    );
}

#[test]
fn c2h_success_without_last_pdu_is_rejected() {
    let neg = Negotiated::default();
    let mut bytes = enc(
        neg,
        PduHeader::C2hData(C2hData::new(1, 0, 4, true, true)),
        &[0; 4],
    );
    bytes[1] = FLAG_SUCCESS;
    assert_eq!(
        expect_err(after_ic(host(), neg), &bytes).term_req(),
        Some((Fes::INVALID_HEADER_FIELD, 1))
    );
}

#[test]
fn term_req_carries_offending_header_and_no_digests() {
    let mut e = PduEncoder::new();
    e.set_negotiated(ALL);
    let offending = [0x42u8; 24];
    let mut bytes = Vec::new();
    let t = PduHeader::C2hTermReq(TermReq::new(
        PduType::C2H_TERM_REQ,
        Fes::INVALID_HEADER_FIELD,
        2,
    ));
    e.encode(&t, &offending, &mut bytes).unwrap();
    assert_eq!(bytes.len(), 48);
    assert_eq!(bytes[1], 0);
    let pdus = read_all(after_ic(host(), ALL), &bytes, 3).unwrap();
    assert_eq!(pdus[0].data, offending);
    assert!(
        matches!(pdus[0].header, PduHeader::C2hTermReq(t) if t.fes() == Fes::INVALID_HEADER_FIELD && t.fei.get() == 2)
    );
    assert!(e.encode(&t, &[0; 129], &mut Vec::new()).is_err());
    // A TermReq is accepted even before the IC exchange.
    let pdus = read_all(host(), &bytes, 48).unwrap();
    assert_eq!(pdus.len(), 1);
}

#[test]
fn decoder_refuses_input_after_fatal_error() {
    let mut d = ctrl();
    let garbage = [0xffu8; 8];
    assert!(d.decode(&garbage).is_err());
    assert!(d.is_failed());
    assert_eq!(d.received_header(), &garbage);
    assert_eq!(d.decode(&[0u8; 8]).unwrap_err(), Error::DecoderFailed);
}

#[test]
fn encoder_rejects_data_on_dataless_types() {
    let e = PduEncoder::new();
    let r = PduHeader::R2t(R2t::new(1, 1, 0, 1));
    assert_eq!(
        e.header(&r, 1).unwrap_err(),
        Error::Encode("PDU type carries no data")
    );
    let ic = PduHeader::IcResp(IcResp::new(0, false, false, 4096));
    assert!(e.header(&ic, 1).is_err());
    let h = e.header(&ic, 0).unwrap();
    assert_eq!(h.as_bytes().len(), 128);
    assert_eq!(&h.as_bytes()[..8], &[1, 0, 128, 0, 128, 0, 0, 0]);
}

/// xorshift64*: a tiny deterministic PRNG for the fuzz-style tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn drive_to_end(mut d: PduDecoder, bytes: &[u8], rng: &mut Rng) {
    let mut off = 0usize;
    let mut steps = 0usize;
    while off < bytes.len() {
        steps += 1;
        assert!(steps < 100_000, "decoder made no progress");
        let take = (rng.below(300) as usize + 1).min(bytes.len() - off);
        let piece = &bytes[off..off + take];
        match d.decode(piece) {
            Ok((n, ev)) => {
                assert!(n <= piece.len());
                if let Some(Decoded::Data(c)) = ev {
                    assert!(c.len() <= n);
                }
                if n == 0 && ev.is_none() {
                    panic!("no progress and no event");
                }
                off += n;
            }
            Err(e) => {
                if e != Error::DecoderFailed {
                    assert!(
                        e.term_req().is_some() || matches!(e, Error::Length { .. }),
                        "{e:?}"
                    );
                }
                assert!(d.decode(piece).is_err());
                return;
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..3000 {
        let len = rng.below(600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias some streams towards plausible headers so deeper checks run.
        if i % 2 == 0 && len >= 8 {
            bytes[0] = (rng.below(10)) as u8;
            bytes[2] = [24u8, 72, 128][rng.below(3) as usize];
            bytes[4..8].copy_from_slice(&(rng.below(400) as u32).to_le_bytes());
        }
        let neg = Negotiated {
            hdgst: i % 3 == 0,
            ddgst: i % 5 == 0,
            rx_pda: (i % 4) as u8,
        };
        let dec = match i % 4 {
            0 => ctrl(),
            1 => host(),
            2 => after_ic(ctrl(), neg),
            _ => after_ic(host(), neg),
        };
        drive_to_end(dec, &bytes, &mut rng);
    }
}

#[test]
fn mutated_valid_streams_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..2000 {
        let neg = Negotiated {
            hdgst: i % 2 == 0,
            ddgst: i % 3 == 0,
            rx_pda: (i % 3) as u8,
        };
        let mut e = PduEncoder::new();
        e.set_negotiated(neg);
        let mut stream = Vec::new();
        for _ in 0..4 {
            let n = rng.below(200) as u32;
            let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let h = if rng.below(2) == 0 {
                PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, rng.next() as u16)))
            } else {
                PduHeader::H2cData(H2cData::new(1, 1, 0, n, true))
            };
            e.encode(&h, &data, &mut stream).unwrap();
        }
        for _ in 0..(1 + rng.below(4)) {
            let at = rng.below(stream.len() as u64) as usize;
            stream[at] ^= 1 << rng.below(8);
        }
        drive_to_end(after_ic(ctrl(), neg), &stream, &mut rng);
    }
}

#[test]
fn encode_then_decode_round_trips_for_random_parameters() {
    let mut rng = Rng(0x0bad_cafe_f00d_d00d);
    for i in 0..1500 {
        let neg = Negotiated {
            hdgst: rng.below(2) == 1,
            ddgst: rng.below(2) == 1,
            rx_pda: rng.below(32) as u8,
        };
        let len = if i % 4 == 0 {
            0
        } else {
            rng.below(3000) as u32
        };
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let (header, role) = match rng.below(5) {
            0 => (
                PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(2, rng.next() as u16))),
                Role::Controller,
            ),
            1 => (
                PduHeader::H2cData(H2cData::new(3, 4, 512, len, true)),
                Role::Controller,
            ),
            2 => (
                PduHeader::C2hData(C2hData::new(5, 0, len, false, false)),
                Role::Host,
            ),
            3 => (PduHeader::R2t(R2t::new(6, 7, 0, 4096)), Role::Host),
            _ => (
                PduHeader::CapsuleResp(CapsuleResp::new(Cqe::new(8, Status::SUCCESS))),
                Role::Host,
            ),
        };
        let data: &[u8] = if matches!(header, PduHeader::R2t(_) | PduHeader::CapsuleResp(_)) {
            &[]
        } else {
            &data
        };
        let mut e = PduEncoder::new();
        e.set_negotiated(neg);
        let mut wire = Vec::new();
        e.encode(&header, data, &mut wire).unwrap();
        let cfg = DecoderConfig {
            role,
            max_capsule_data: 8192,
            max_data_pdu: 8192,
        };
        let dec = after_ic(PduDecoder::new(cfg), neg);
        let chunk = 1 + rng.below(200) as usize;
        let pdus = read_all(dec, &wire, chunk).unwrap();
        assert_eq!(pdus.len(), 1, "iteration {i}");
        assert_eq!(&pdus[0].header.as_bytes()[8..], &header.as_bytes()[8..]);
        assert_eq!(pdus[0].data, data);
        assert_eq!(pdus[0].end, PduEnd::Ok);
        let ch = pdus[0].header.common();
        assert_eq!(ch.plen.get() as usize, wire.len());
        if !data.is_empty() {
            assert_eq!(usize::from(ch.pdo) % ((usize::from(neg.rx_pda) + 1) * 4), 0);
        }
    }
}

#[test]
fn term_req_for_builds_the_reply_to_a_fatal_error() {
    let mut d = after_ic(ctrl(), Negotiated::default());
    let mut bytes = enc(
        Negotiated::default(),
        PduHeader::CapsuleCmd(CapsuleCmd::new(Sqe::new(1, 1))),
        &[],
    );
    bytes[2] = 70;
    let err = d.decode(&bytes).unwrap_err();
    let reply = term_req_for(Role::Controller, &err).unwrap();
    let mut wire = Vec::new();
    PduEncoder::new()
        .encode(&reply, d.received_header(), &mut wire)
        .unwrap();
    assert_eq!(&wire[..8], &[0x03, 0, 24, 0, 32, 0, 0, 0]);
    assert_eq!(&wire[8..14], &[1, 0, 2, 0, 0, 0]);
    assert_eq!(&wire[24..32], &bytes[..8]);
    assert!(matches!(
        term_req_for(Role::Host, &err),
        Some(PduHeader::H2cTermReq(_))
    ));
    assert_eq!(term_req_for(Role::Host, &Error::DecoderFailed), None);
}
