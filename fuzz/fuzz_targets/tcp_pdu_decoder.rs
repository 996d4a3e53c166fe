//! NVMe/TCP PDU decoder (`nvme::spec::tcp::PduDecoder`) on arbitrary byte streams.
//!
//! Input: byte 0 = role (bit 0: host), header digest (bit 1), data digest (bit 2), whether the
//! digests/PDA apply from the start or only after the IC PDU (bit 3), RX PDA (bits 4..7);
//! bytes 1..5 = seed of the chunk sizes; byte 5 = largest chunk; the rest is the stream.
//!
//! Checks: no panic; `decode` consumes at most what it is given and returns `(n, None)` only
//! after consuming everything; events come in the documented order with data adding up to the
//! announced length; an error leaves the decoder failed; and the events are the same whether the
//! stream arrives at once or in chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme::spec::tcp::{Decoded, DecoderConfig, Negotiated, PduDecoder, PduEnd, PduHeader};
use rspdk_fuzz::{Input, Splitter};

#[derive(Debug, PartialEq)]
enum Ev {
    Header(PduHeader, u32),
    Data(Vec<u8>),
    End(PduEnd),
    Err(String),
}

fn run(cfg: DecoderConfig, neg: Negotiated, early: bool, chunks: &[&[u8]]) -> Vec<Ev> {
    let mut dec = PduDecoder::new(cfg);
    if early {
        dec.set_negotiated(neg);
    }
    let mut evs = Vec::new();
    let mut expect_data: Option<(bool, u32)> = None; // (is IC, data still due)
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut guard = 0usize;
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        loop {
            guard += 1;
            assert!(guard < 4 * total + 64, "decoder loops without progress");
            match dec.decode(rest) {
                Ok((n, ev)) => {
                    assert!(n <= rest.len(), "consumed {n} of {}", rest.len());
                    rest = &rest[n..];
                    let Some(ev) = ev else {
                        assert!(rest.is_empty(), "(n, None) with {} bytes left", rest.len());
                        break;
                    };
                    match ev {
                        Decoded::Header { header, data_len } => {
                            assert!(expect_data.is_none(), "header inside a PDU");
                            let ic = matches!(header, PduHeader::IcReq(_) | PduHeader::IcResp(_));
                            expect_data = Some((ic, data_len));
                            evs.push(Ev::Header(header, data_len));
                        }
                        Decoded::Data(d) => {
                            let Some((_, left)) = expect_data.as_mut() else {
                                panic!("data outside a PDU");
                            };
                            assert!(
                                d.len() as u64 <= u64::from(*left),
                                "more data than announced"
                            );
                            *left -= d.len() as u32;
                            match evs.last_mut() {
                                Some(Ev::Data(v)) => v.extend_from_slice(d),
                                _ => evs.push(Ev::Data(d.to_vec())),
                            }
                        }
                        Decoded::End(end) => {
                            let Some((ic, left)) = expect_data.take() else {
                                panic!("End outside a PDU");
                            };
                            assert_eq!(left, 0, "End before all data");
                            assert!(dec.data_remaining() == 0);
                            if ic && !early {
                                dec.set_negotiated(neg);
                            }
                            evs.push(Ev::End(end));
                        }
                    }
                }
                Err(e) => {
                    assert!(dec.is_failed(), "error {e} left the decoder usable");
                    assert!(dec.received_header().len() <= 128);
                    let _ = e.term_req();
                    let _ = nvme::spec::tcp::framer::term_req_for(cfg.role, &e);
                    assert!(dec.decode(b"x").is_err(), "failed decoder accepted input");
                    evs.push(Ev::Err(format!("{e:?}")));
                    return evs;
                }
            }
        }
    }
    evs
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let seed = inp.u32();
    let max_chunk = usize::from(inp.u8());
    let stream = inp.rest();
    let mut cfg = if flags & 1 == 0 {
        DecoderConfig::controller_default()
    } else {
        DecoderConfig::host_default()
    };
    if flags & 0x80 != 0 {
        // Small limits reach the length checks with short inputs.
        cfg.max_capsule_data = 64;
        cfg.max_data_pdu = 64;
    }
    let neg = Negotiated {
        hdgst: flags & 2 != 0,
        ddgst: flags & 4 != 0,
        rx_pda: (flags >> 4) & 7,
    };
    let early = flags & 8 != 0;
    let whole = run(cfg, neg, early, &[stream]);
    let chunks = Splitter::new(seed, max_chunk).split(stream);
    let split = run(cfg, neg, early, &chunks);
    assert_eq!(whole, split, "events depend on how the stream was split");
});
