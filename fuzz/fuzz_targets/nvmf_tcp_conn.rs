//! The target's NVMe/TCP connection engine (`nvmf_tcp::TcpConnection`) after a valid ICReq.
//!
//! Input: byte 0 = flags (bit 0 HDGST, bit 1 DDGST, bit 2 structured mode, bits 3-4 HPDA,
//! bit 5 c2h_success, bit 6 small limits); bytes 1..5 = chunk-size seed; byte 5 = largest chunk.
//! Raw mode feeds the rest as bytes. Structured mode reads records (capsules with fuzzed SQEs and
//! SGLs, H2CData answering the target's R2Ts or not, raw bytes, H2CTermReq, completions of the
//! commands the engine handed out) and encodes them with correct digests so the fuzzer gets past
//! the header and data digest checks.
//!
//! Checks: no panic; a valid ICReq is accepted; everything the target sends decodes cleanly in
//! the host role (well-formed PDUs, right digests); bytes sent by the engine on its own (not
//! counting the completions this harness asks it to encode) stay within 4 x received + 1 KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme::spec::tcp::pdu::{CapsuleCmd, H2cData, IcReq, TermReq};
use nvme::spec::tcp::{DecoderConfig, Fes, Negotiated, PduEncoder, PduHeader, PduReader, PduType};
use nvme::spec::{Sct, Sgl, SglDescriptor, Sqe, Status};
use nvmf::request::{DataBuf, Response};
use nvmf_tcp::{ConnState, ProtoConfig, TcpConnection};
use rspdk_fuzz::{Input, Splitter};

struct Harness {
    conn: TcpConnection,
    host: PduReader,
    enc: PduEncoder,
    splitter: Splitter,
    /// Bytes given to `receive`.
    fed: usize,
    /// Bytes the engine produced on its own.
    produced: usize,
    /// R2Ts seen: (cid, ttag, offset, length).
    r2ts: Vec<(u16, u16, u32, u32)>,
    /// Requests taken from the engine, not answered yet: (cid, is read, length).
    taken: Vec<(u16, bool, u32)>,
    cids: Vec<u16>,
}

impl Harness {
    /// Feeds bytes in chunks, then checks and decodes what the target sent.
    fn feed(&mut self, bytes: &[u8]) {
        for chunk in self.splitter.clone().split(bytes) {
            let before = self.conn.outbound().len();
            let n = self.conn.receive(chunk);
            assert!(n <= chunk.len());
            self.fed += n;
            self.produced += self.conn.outbound().len() - before;
            if self.conn.state() == ConnState::Terminating {
                break;
            }
        }
        // Advance the splitter so the next feed splits differently.
        let _ = self.splitter.split(&[0; 8]);
        let before = self.conn.outbound().len();
        self.conn.retry_buffers();
        self.produced += self.conn.outbound().len() - before;
        assert!(
            self.produced <= 4 * self.fed + 1024,
            "engine sent {} bytes for {} received",
            self.produced,
            self.fed
        );
        self.drain();
        while let Some(req) = self.conn.take_request() {
            let read =
                req.sqe.opc & 3 == 2 || (req.sqe.is_fabrics() && req.sqe.fctype().0 & 3 == 2);
            if req.data.is_some() {
                assert_eq!(
                    req.data.as_ref().map(|d| d.total_len()),
                    Some(req.length as usize)
                );
            }
            self.taken.push((req.sqe.cid(), read, req.length));
        }
    }

    /// Decodes everything the target sent, as the host would.
    fn drain(&mut self) {
        let out = std::mem::take(self.conn.outbound());
        let mut rest = out.as_slice();
        while !rest.is_empty() {
            let (n, pdu) = match self.host.read(rest) {
                Ok(r) => r,
                Err(e) => panic!("target sent a PDU the host cannot decode: {e}"),
            };
            rest = &rest[n..];
            let Some(pdu) = pdu else { break };
            if let Err(e) = pdu.end.into_result() {
                panic!("target sent a bad data digest: {e}");
            }
            if let PduHeader::R2t(r) = pdu.header {
                self.r2ts
                    .push((r.cccid.get(), r.ttag.get(), r.r2to.get(), r.r2tl.get()));
            }
        }
    }

    fn send(&mut self, h: &PduHeader, data: &[u8]) {
        let mut out = Vec::new();
        if self.enc.encode(h, data, &mut out).is_ok() {
            self.feed(&out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let seed = inp.u32();
    let max_chunk = usize::from(inp.u8());
    let (hdgst, ddgst) = (flags & 1 != 0, flags & 2 != 0);
    let hpda = (flags >> 3) & 3;
    let mut cfg = ProtoConfig {
        c2h_success: flags & 0x20 != 0,
        ..ProtoConfig::default()
    };
    if flags & 0x40 != 0 {
        cfg.in_capsule_data_size = 0;
        cfg.max_io_size = 16384;
        cfg.maxh2cdata = 4096;
        cfg.max_queue_depth = 4;
    }
    let mut conn = TcpConnection::new(cfg);
    let mut ic = Vec::new();
    if PduEncoder::new()
        .encode(
            &PduHeader::IcReq(IcReq::new(hpda, hdgst, ddgst, 0)),
            &[],
            &mut ic,
        )
        .is_err()
    {
        panic!("cannot encode an ICReq");
    }
    assert_eq!(conn.receive(&ic), ic.len());
    assert_eq!(conn.state(), ConnState::Running, "valid ICReq refused");
    let mut host = PduReader::new(DecoderConfig::host_default());
    let mut out = std::mem::take(conn.outbound());
    let Ok((_, Some(resp))) = host.read(&out) else {
        panic!("no ICResp");
    };
    let PduHeader::IcResp(r) = resp.header else {
        panic!("not an ICResp: {:?}", resp.header);
    };
    out.clear();
    host.decoder_mut().set_negotiated(Negotiated {
        hdgst,
        ddgst,
        rx_pda: hpda,
    });
    let mut enc = PduEncoder::new();
    enc.set_negotiated(Negotiated {
        hdgst,
        ddgst,
        rx_pda: r.cpda,
    });
    let mut h = Harness {
        conn,
        host,
        enc,
        splitter: Splitter::new(seed, max_chunk),
        fed: 0,
        produced: 0,
        r2ts: Vec::new(),
        taken: Vec::new(),
        cids: Vec::new(),
    };

    if flags & 4 == 0 {
        h.feed(inp.rest());
    } else {
        let mut steps = 0;
        while !inp.is_empty() && steps < 64 && h.conn.state() != ConnState::Terminating {
            steps += 1;
            match inp.u8() % 6 {
                0 => {
                    // Command capsule: fuzzed SQE; SGL fuzzed, in-capsule or transport.
                    let mut sqe =
                        Sqe::read_from(&inp.array::<64>()).unwrap_or_else(|_| Sqe::new(0, 0));
                    let icd = usize::from(inp.u16() % 9000);
                    let sel = inp.u8();
                    let len = inp.u32() % 200_000;
                    match sel % 3 {
                        0 => {
                            sqe.dptr = SglDescriptor::from(Sgl::DataBlockOffset {
                                offset: 0,
                                length: icd as u32,
                            })
                        }
                        1 => {
                            sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock { length: len })
                        }
                        _ => {}
                    }
                    if sel & 0x80 != 0 {
                        sqe.opc = 0x01; // NVM Write
                    }
                    h.cids.push(sqe.cid());
                    let payload = inp.bytes(icd).to_vec();
                    h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &payload);
                }
                1 => {
                    // H2CData answering an R2T (or its neighbour when the selector says so).
                    let sel = inp.u8();
                    let (cid, ttag, off, len) = match h.r2ts.pop() {
                        Some(r) if sel & 1 == 0 => r,
                        _ => (inp.u16(), inp.u16(), inp.u32() % 300_000, inp.u32() % 9000),
                    };
                    let len = if sel & 2 != 0 {
                        len.min(u32::from(inp.u16()))
                    } else {
                        len
                    };
                    let payload = vec![sel; len.min(300_000) as usize];
                    let last = sel & 4 == 0;
                    h.send(
                        &PduHeader::H2cData(H2cData::new(cid, ttag, off, len, last)),
                        &payload,
                    );
                }
                2 => {
                    let n = usize::from(inp.u8());
                    let raw = inp.bytes(n).to_vec();
                    h.feed(&raw);
                }
                3 => {
                    let fes = inp.u16();
                    let fei = inp.u32();
                    let n = usize::from(inp.u8() % 129);
                    let d = inp.bytes(n).to_vec();
                    h.send(
                        &PduHeader::H2cTermReq(TermReq::new(PduType::H2C_TERM_REQ, Fes(fes), fei)),
                        &d,
                    );
                }
                4 => {
                    // Complete a command the engine handed out: success (with read data) or an error.
                    if h.taken.is_empty() {
                        continue;
                    }
                    let i = usize::from(inp.u8()) % h.taken.len();
                    let (cid, read, len) = h.taken.swap_remove(i);
                    let sc = inp.u8();
                    let rsp = if sc & 1 == 0 {
                        let mut r = Response::status(cid, Status::SUCCESS);
                        if read && len > 0 {
                            r.data = Some(DataBuf::from_vec(vec![0xa5; len.min(1 << 20) as usize]));
                        }
                        r
                    } else {
                        Response::status(cid, Status::new(Sct::GENERIC, sc))
                    };
                    h.conn.send_response(rsp);
                    h.drain();
                }
                _ => {
                    // A capsule reusing an earlier CID (duplicate CIDs must be refused cleanly).
                    let cid = h.cids.last().copied().unwrap_or(0);
                    let mut sqe = Sqe::new(0x01, cid);
                    sqe.nsid = 1.into();
                    sqe.dptr = SglDescriptor::from(Sgl::TransportDataBlock {
                        length: inp.u32() % 70_000,
                    });
                    h.send(&PduHeader::CapsuleCmd(CapsuleCmd::new(sqe)), &[]);
                }
            }
        }
    }
    // Finish every command handed out; the engine must accept completions in any state.
    for (cid, _, _) in std::mem::take(&mut h.taken) {
        h.conn.send_response(Response::status(cid, Status::SUCCESS));
    }
    h.drain();
});
