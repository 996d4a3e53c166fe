//! Sans-IO NVMe/TCP PDU framer shared by the target transport and the host driver
//! (NVMe/TCP 1.0, 3.3-3.6; SPDK `nvmf_tcp_pdu_ch_handle` / `nvme_tcp_pdu_ch_handle`).
//!
//! # Decoding
//!
//! [`PduDecoder`] takes bytes as they arrive and never allocates. Call
//! [`PduDecoder::decode`] with the unread part of the receive buffer; it returns how many bytes
//! it consumed and at most one [`Decoded`] event. Per PDU the events come in this order:
//!
//! ```text
//! Header { header, data_len }  -> Data(&[u8]) x n (together data_len bytes) -> End(PduEnd)
//! ```
//!
//! `Data` chunks borrow from the input, so the caller copies payload exactly once, straight into
//! its destination buffer (an iobuf, a bdev buffer). Header digest, header fields, PDO padding
//! and data digest are all checked here; a violation of the framing is a fatal [`Error`] whose
//! [`Error::term_req`] gives the FES and FEI for the TermReq to send. After a fatal error the
//! decoder refuses further input ([`Error::DecoderFailed`]). A data digest mismatch is not
//! fatal: it is reported in [`PduEnd`] and decoding continues with the next PDU.
//!
//! Before the connection is initialised only ICReq (controller side) or ICResp (host side) and
//! TermReqs are accepted; after it, IC PDUs are a sequence error. Digests and the receive PDU
//! data alignment take effect when the caller calls [`PduDecoder::set_negotiated`], which it
//! does after handling the IC exchange and before feeding further bytes.
//!
//! # Encoding
//!
//! [`PduEncoder::header`] fills in the common header (flags, hlen, pdo, plen) of a typed header
//! for `data_len` bytes of data and returns the bytes to send before the data (header, HDGST,
//! padding); after the data the caller sends [`PduEncoder::data_digest_len`] bytes of
//! [`super::digest::data_digest`]. [`PduEncoder::encode`] does all of it into a `Vec`.

use tracing::debug;
use zerocopy::FromBytes;

use super::digest::{DigestState, header_digest};
use super::pdu::{
    C2hData, CapsuleCmd, CapsuleResp, CommonHeader, DIGEST_LEN, FLAG_DDGST, FLAG_HDGST,
    FLAG_LAST_PDU, FLAG_SUCCESS, H2cData, IcReq, IcResp, MAX_HEADER_LEN, MAXH2CDATA_MIN, PDA_MAX,
    PFV_1_0, PduHeader, PduType, R2t, TERM_REQ_MAX_DATA, TermReq, offset,
};
use crate::Error;

/// Which end of the connection the decoder runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// NVMe controller (target): receives ICReq, H2CTermReq, CapsuleCmd, H2CData.
    Controller,
    /// Host (initiator): receives ICResp, C2HTermReq, CapsuleResp, C2HData, R2T.
    Host,
}

/// Decoder limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecoderConfig {
    /// Which side receives.
    pub role: Role,
    /// Largest in-capsule data a CapsuleCmd may carry. A target sets the larger of its
    /// in-capsule data size and 8192 (admin and fabrics commands may carry up to 8 KiB,
    /// NVMe/TCP 1.0, 3.3.2.2), then checks the per-queue limit itself.
    pub max_capsule_data: u32,
    /// Largest data an H2CData (target: MAXH2CDATA) or C2HData (host) PDU may carry.
    pub max_data_pdu: u32,
}

impl DecoderConfig {
    /// SPDK's TCP target defaults: 4096 bytes in-capsule data, MAXH2CDATA 131072.
    pub const fn controller_default() -> Self {
        DecoderConfig {
            role: Role::Controller,
            max_capsule_data: 4096,
            max_data_pdu: 131_072,
        }
    }

    /// Host defaults: C2HData PDUs of up to 1 MiB.
    pub const fn host_default() -> Self {
        DecoderConfig {
            role: Role::Host,
            max_capsule_data: 0,
            max_data_pdu: 1 << 20,
        }
    }
}

/// Parameters agreed by the ICReq/ICResp exchange that affect framing of received PDUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// Header digests enabled.
    pub hdgst: bool,
    /// Data digests enabled.
    pub ddgst: bool,
    /// PDU data alignment the receiver asked for (controller: CPDA it sent; host: HPDA it
    /// sent), 0-based dwords.
    pub rx_pda: u8,
}

/// How a PDU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PduEnd {
    /// Complete; data digest (if any) verified.
    Ok,
    /// Complete, but the data digest did not match. The connection stays usable; the command
    /// completes with Transient Transport Error.
    DataDigestMismatch {
        /// Digest on the wire.
        received: u32,
        /// Digest computed over the data.
        computed: u32,
    },
}

impl PduEnd {
    /// `Ok(())`, or [`Error::DataDigest`].
    pub fn into_result(self) -> Result<(), Error> {
        match self {
            PduEnd::Ok => Ok(()),
            PduEnd::DataDigestMismatch { received, computed } => {
                Err(Error::DataDigest { received, computed })
            }
        }
    }
}

/// One decoding event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete, validated header; `data_len` bytes of PDU data follow as `Data` events.
    Header {
        /// The header.
        header: PduHeader,
        /// Bytes of PDU data (in-capsule data, H2C/C2H data, TermReq offending header).
        data_len: u32,
    },
    /// A chunk of PDU data, borrowed from the input.
    Data(&'a [u8]),
    /// The PDU is complete.
    End(PduEnd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    CommonHeader,
    RestOfHeader,
    Padding,
    Data,
    DataDigest,
    End,
    Failed,
}

const CH_LEN: usize = 8;

/// Streaming NVMe/TCP PDU decoder. See the module documentation for the calling order.
#[derive(Clone, Debug)]
pub struct PduDecoder {
    cfg: DecoderConfig,
    neg: Negotiated,
    ic_done: bool,
    state: State,
    hdr: [u8; MAX_HEADER_LEN],
    have: usize,
    need: usize,
    hlen: usize,
    pad_left: usize,
    data_left: u32,
    has_ddgst: bool,
    digest: DigestState,
    ddgst: [u8; DIGEST_LEN],
    ddgst_have: usize,
    end: PduEnd,
}

impl PduDecoder {
    /// A decoder for a new connection (before the IC exchange: no digests).
    pub fn new(cfg: DecoderConfig) -> Self {
        PduDecoder {
            cfg,
            neg: Negotiated::default(),
            ic_done: false,
            state: State::CommonHeader,
            hdr: [0; MAX_HEADER_LEN],
            have: 0,
            need: CH_LEN,
            hlen: 0,
            pad_left: 0,
            data_left: 0,
            has_ddgst: false,
            digest: DigestState::new(),
            ddgst: [0; DIGEST_LEN],
            ddgst_have: 0,
            end: PduEnd::Ok,
        }
    }

    /// Apply the parameters of the IC exchange to the following PDUs. Values of `rx_pda` above
    /// 31 are clamped to 31.
    pub fn set_negotiated(&mut self, neg: Negotiated) {
        self.neg = Negotiated {
            rx_pda: neg.rx_pda.min(PDA_MAX),
            ..neg
        };
    }

    /// Current negotiated parameters.
    pub fn negotiated(&self) -> Negotiated {
        self.neg
    }

    /// True between PDUs (no partial PDU buffered).
    pub fn is_idle(&self) -> bool {
        self.state == State::CommonHeader && self.have == 0
    }

    /// True after a fatal error.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// The header bytes of the PDU being decoded (or that caused a fatal error), at most 128:
    /// what a TermReq carries as data (NVMe/TCP 1.0, 3.6.2.3).
    pub fn received_header(&self) -> &[u8] {
        let n = self.have.min(TERM_REQ_MAX_DATA as usize);
        self.hdr.get(..n).unwrap_or_default()
    }

    /// Bytes of PDU data still to come for the current PDU.
    pub fn data_remaining(&self) -> u32 {
        if self.state == State::Data || self.state == State::Padding {
            self.data_left
        } else {
            0
        }
    }

    /// Consume bytes from `input`; returns the number consumed and at most one event. Returns
    /// `(n, None)` only when all `n == input.len()` bytes were consumed and more are needed.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Decoded<'a>>), Error> {
        let mut off = 0usize;
        loop {
            let rest = input.get(off..).unwrap_or_default();
            match self.state {
                State::Failed => return Err(Error::DecoderFailed),
                State::CommonHeader | State::RestOfHeader => {
                    let want = self.need.saturating_sub(self.have);
                    let n = want.min(rest.len());
                    if let (Some(dst), Some(src)) =
                        (self.hdr.get_mut(self.have..self.have + n), rest.get(..n))
                    {
                        dst.copy_from_slice(src);
                    }
                    self.have += n;
                    off += n;
                    if self.have < self.need {
                        return Ok((off, None));
                    }
                    if self.state == State::CommonHeader {
                        self.fail_on_err(|d| d.on_common_header())?;
                        continue;
                    }
                    let ev = self.fail_on_err(|d| d.on_full_header())?;
                    return Ok((off, Some(ev)));
                }
                State::Padding => {
                    let n = self.pad_left.min(rest.len());
                    self.pad_left -= n;
                    off += n;
                    if self.pad_left > 0 {
                        return Ok((off, None));
                    }
                    self.state = State::Data;
                }
                State::Data => {
                    if self.data_left == 0 {
                        self.state = if self.has_ddgst {
                            State::DataDigest
                        } else {
                            State::End
                        };
                        continue;
                    }
                    if rest.is_empty() {
                        return Ok((off, None));
                    }
                    let n = (self.data_left as usize).min(rest.len());
                    let chunk = rest.get(..n).unwrap_or_default();
                    if self.has_ddgst {
                        self.digest.update(chunk);
                    }
                    self.data_left -= n as u32;
                    off += n;
                    return Ok((off, Some(Decoded::Data(chunk))));
                }
                State::DataDigest => {
                    let n = (DIGEST_LEN - self.ddgst_have).min(rest.len());
                    if let (Some(dst), Some(src)) = (
                        self.ddgst.get_mut(self.ddgst_have..self.ddgst_have + n),
                        rest.get(..n),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    self.ddgst_have += n;
                    off += n;
                    if self.ddgst_have < DIGEST_LEN {
                        return Ok((off, None));
                    }
                    let received = u32::from_le_bytes(self.ddgst);
                    let computed = self.digest.value();
                    if received != computed {
                        debug!(received, computed, "NVMe/TCP data digest mismatch");
                        self.end = PduEnd::DataDigestMismatch { received, computed };
                    }
                    self.state = State::End;
                }
                State::End => {
                    let end = self.end;
                    self.reset_for_next_pdu();
                    return Ok((off, Some(Decoded::End(end))));
                }
            }
        }
    }

    fn reset_for_next_pdu(&mut self) {
        self.state = State::CommonHeader;
        self.have = 0;
        self.need = CH_LEN;
        self.hlen = 0;
        self.pad_left = 0;
        self.data_left = 0;
        self.has_ddgst = false;
        self.digest = DigestState::new();
        self.ddgst_have = 0;
        self.end = PduEnd::Ok;
    }

    fn fail_on_err<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let r = f(self);
        if let Err(e) = &r {
            debug!(error = %e, "NVMe/TCP PDU rejected");
            self.state = State::Failed;
        }
        r
    }

    fn common(&self) -> CommonHeader {
        CommonHeader::read_from_prefix(&self.hdr)
            .map(|(c, _)| c)
            .unwrap_or_default()
    }

    /// Validate the common header: type, sequence, hlen, flags, plen, pdo.
    fn on_common_header(&mut self) -> Result<(), Error> {
        let ch = self.common();
        let t = PduType(ch.pdu_type);
        let allowed = match self.cfg.role {
            Role::Controller => t.is_host_to_controller(),
            Role::Host => t.is_controller_to_host(),
        };
        let hlen = match t.hlen() {
            Some(h) if allowed => h,
            _ => return Err(invalid(offset::PDU_TYPE, "unexpected PDU type")),
        };
        let is_ic = t == PduType::IC_REQ || t == PduType::IC_RESP;
        let is_term = t == PduType::H2C_TERM_REQ || t == PduType::C2H_TERM_REQ;
        if is_ic && self.ic_done {
            return Err(Error::PduSequence {
                pdu_type: t.0,
                reason: "IC PDU after connection initialisation",
            });
        }
        if !is_ic && !is_term && !self.ic_done {
            return Err(Error::PduSequence {
                pdu_type: t.0,
                reason: "PDU before connection initialisation",
            });
        }
        if ch.hlen != hlen {
            return Err(invalid(offset::HLEN, "wrong HLEN for PDU type"));
        }
        let hlen = usize::from(hlen);
        let plen = ch.plen.get();
        let plen_us = plen as usize;

        if is_ic {
            if plen_us != hlen {
                return Err(invalid(offset::PLEN, "IC PDU PLEN must be 128"));
            }
            return self.expect_header(hlen, 0, 0, false);
        }
        if is_term {
            if plen_us < hlen || plen > hlen as u32 + TERM_REQ_MAX_DATA {
                return Err(invalid(offset::PLEN, "TermReq PLEN out of range"));
            }
            return self.expect_header(hlen, 0, plen - hlen as u32, false);
        }

        let hdgst = self.neg.hdgst && t.hdgst_allowed();
        if (ch.flags & FLAG_HDGST != 0) != hdgst {
            return Err(invalid(
                offset::FLAGS,
                "HDGSTF does not match negotiated header digest",
            ));
        }
        let header_end = hlen + if hdgst { DIGEST_LEN } else { 0 };
        if plen_us < header_end {
            return Err(invalid(offset::PLEN, "PLEN shorter than header"));
        }
        if ch.flags & FLAG_DDGST != 0 && (!t.ddgst_allowed() || !self.neg.ddgst) {
            return Err(invalid(
                offset::FLAGS,
                "DDGSTF set without negotiated data digest",
            ));
        }
        if plen_us == header_end {
            self.check_data_flags(t, ch.flags)?;
            return self.expect_header(header_end, 0, 0, false);
        }
        if !t.ddgst_allowed() {
            return Err(invalid(offset::PLEN, "PDU type carries no data"));
        }
        let ddgst = ch.flags & FLAG_DDGST != 0;
        if ddgst != self.neg.ddgst {
            return Err(invalid(
                offset::FLAGS,
                "DDGSTF does not match negotiated data digest",
            ));
        }
        let dd = if ddgst { DIGEST_LEN } else { 0 };
        let pdo = usize::from(ch.pdo);
        let align = (usize::from(self.neg.rx_pda) + 1) * 4;
        if pdo < header_end || pdo % align != 0 || pdo + dd >= plen_us {
            return Err(invalid(offset::PDO, "PDO out of range or misaligned"));
        }
        let data_len = (plen_us - pdo - dd) as u32;
        let max = if t == PduType::CAPSULE_CMD {
            self.cfg.max_capsule_data
        } else {
            self.cfg.max_data_pdu
        };
        if data_len > max {
            return Err(Error::DataTransferLimitExceeded {
                fei: offset::PLEN,
                len: data_len,
                max,
            });
        }
        self.check_data_flags(t, ch.flags)?;
        self.expect_header(header_end, pdo - header_end, data_len, ddgst)
    }

    fn check_data_flags(&self, t: PduType, flags: u8) -> Result<(), Error> {
        if t == PduType::C2H_DATA && flags & FLAG_SUCCESS != 0 && flags & FLAG_LAST_PDU == 0 {
            return Err(invalid(offset::FLAGS, "C2HData SUCCESS without LAST_PDU"));
        }
        Ok(())
    }

    fn expect_header(
        &mut self,
        need: usize,
        pad: usize,
        data_len: u32,
        ddgst: bool,
    ) -> Result<(), Error> {
        self.hlen = usize::from(self.common().hlen);
        self.need = need;
        self.pad_left = pad;
        self.data_left = data_len;
        self.has_ddgst = ddgst;
        self.state = State::RestOfHeader;
        Ok(())
    }

    /// Verify the header digest and the type-specific fields; produce the header event.
    fn on_full_header(&mut self) -> Result<Decoded<'static>, Error> {
        let hlen = self.hlen;
        let header = self.hdr.get(..hlen).unwrap_or_default();
        if self.need > hlen {
            let received = self
                .hdr
                .get(hlen..hlen + DIGEST_LEN)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes);
            let computed = u32::from_le_bytes(header_digest(header));
            if received != Some(computed) {
                return Err(Error::HeaderDigest {
                    received: received.unwrap_or_default(),
                    computed,
                });
            }
        }
        let t = PduType(self.common().pdu_type);
        let parsed = match t {
            PduType::IC_REQ => PduHeader::IcReq(parse::<IcReq>(header)?),
            PduType::IC_RESP => PduHeader::IcResp(parse::<IcResp>(header)?),
            PduType::H2C_TERM_REQ => PduHeader::H2cTermReq(parse::<TermReq>(header)?),
            PduType::C2H_TERM_REQ => PduHeader::C2hTermReq(parse::<TermReq>(header)?),
            PduType::CAPSULE_CMD => PduHeader::CapsuleCmd(parse::<CapsuleCmd>(header)?),
            PduType::CAPSULE_RESP => PduHeader::CapsuleResp(parse::<CapsuleResp>(header)?),
            PduType::H2C_DATA => PduHeader::H2cData(parse::<H2cData>(header)?),
            PduType::C2H_DATA => PduHeader::C2hData(parse::<C2hData>(header)?),
            PduType::R2T => PduHeader::R2t(parse::<R2t>(header)?),
            _ => return Err(invalid(offset::PDU_TYPE, "unexpected PDU type")),
        };
        self.check_specific(&parsed)?;
        if matches!(parsed, PduHeader::IcReq(_) | PduHeader::IcResp(_)) {
            self.ic_done = true;
        }
        self.state = if self.pad_left > 0 {
            State::Padding
        } else {
            State::Data
        };
        Ok(Decoded::Header {
            header: parsed,
            data_len: self.data_left,
        })
    }

    fn check_specific(&self, h: &PduHeader) -> Result<(), Error> {
        match h {
            PduHeader::IcReq(r) => {
                if r.pfv.get() != PFV_1_0 {
                    return Err(Error::UnsupportedParameter {
                        fei: offset::PFV,
                        reason: "unsupported PFV",
                    });
                }
                if r.hpda > PDA_MAX {
                    return Err(invalid(offset::PDA, "HPDA larger than 31"));
                }
            }
            PduHeader::IcResp(r) => {
                if r.pfv.get() != PFV_1_0 {
                    return Err(Error::UnsupportedParameter {
                        fei: offset::PFV,
                        reason: "unsupported PFV",
                    });
                }
                if r.cpda > PDA_MAX {
                    return Err(invalid(offset::PDA, "CPDA larger than 31"));
                }
                if r.maxh2cdata.get() < MAXH2CDATA_MIN {
                    return Err(invalid(
                        offset::MAXR2T_MAXH2CDATA,
                        "MAXH2CDATA smaller than 4096",
                    ));
                }
            }
            PduHeader::H2cData(d) if d.datal.get() != self.data_left => {
                return Err(invalid(
                    offset::DATAL,
                    "DATAL does not match PDU data length",
                ));
            }
            PduHeader::C2hData(d) if d.datal.get() != self.data_left => {
                return Err(invalid(
                    offset::DATAL,
                    "DATAL does not match PDU data length",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The TermReq header a receiver in `role` sends for the fatal framing error `err` (a
/// controller sends C2HTermReq, a host H2CTermReq), or `None` if `err` is not a fatal
/// transport error. Send it with [`PduDecoder::received_header`] as data.
pub fn term_req_for(role: Role, err: &Error) -> Option<PduHeader> {
    let (fes, fei) = err.term_req()?;
    Some(match role {
        Role::Controller => PduHeader::C2hTermReq(TermReq::new(PduType::C2H_TERM_REQ, fes, fei)),
        Role::Host => PduHeader::H2cTermReq(TermReq::new(PduType::H2C_TERM_REQ, fes, fei)),
    })
}

fn invalid(fei: u32, reason: &'static str) -> Error {
    Error::PduInvalidHeaderField { fei, reason }
}

fn parse<T: FromBytes>(b: &[u8]) -> Result<T, Error> {
    T::read_from_bytes(b).map_err(|_| Error::Length {
        what: "PDU header",
        need: size_of::<T>(),
        got: b.len(),
    })
}

/// A whole PDU with its data, as collected by [`PduReader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    /// The header.
    pub header: PduHeader,
    /// The PDU data (empty if none).
    pub data: Vec<u8>,
    /// Data digest outcome.
    pub end: PduEnd,
}

/// Convenience wrapper over [`PduDecoder`] that collects each PDU's data into a `Vec`
/// (allocated once, at the validated data length). For control paths and tests; the data
/// path should use [`PduDecoder`] directly to copy payload once into its own buffers.
#[derive(Clone, Debug)]
pub struct PduReader {
    decoder: PduDecoder,
    current: Option<(PduHeader, Vec<u8>)>,
}

impl PduReader {
    /// A reader with a fresh decoder.
    pub fn new(cfg: DecoderConfig) -> Self {
        PduReader {
            decoder: PduDecoder::new(cfg),
            current: None,
        }
    }

    /// The underlying decoder (to call [`PduDecoder::set_negotiated`]).
    pub fn decoder_mut(&mut self) -> &mut PduDecoder {
        &mut self.decoder
    }

    /// Consume bytes; returns the number consumed and the next complete PDU, if any.
    pub fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Pdu>), Error> {
        let mut off = 0usize;
        loop {
            let (n, ev) = self.decoder.decode(input.get(off..).unwrap_or_default())?;
            off += n;
            match ev {
                None => return Ok((off, None)),
                Some(Decoded::Header { header, data_len }) => {
                    self.current = Some((header, Vec::with_capacity(data_len as usize)));
                }
                Some(Decoded::Data(chunk)) => {
                    if let Some((_, data)) = self.current.as_mut() {
                        data.extend_from_slice(chunk);
                    }
                }
                Some(Decoded::End(end)) => {
                    if let Some((header, data)) = self.current.take() {
                        return Ok((off, Some(Pdu { header, data, end })));
                    }
                }
            }
        }
    }
}

/// Builds PDUs for sending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PduEncoder {
    neg: Negotiated,
}

/// Header bytes ready to send: PDU header, HDGST if enabled, padding up to PDO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedHeader {
    buf: [u8; 256],
    len: usize,
}

impl EncodedHeader {
    /// The bytes to send before the PDU data.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl PduEncoder {
    /// An encoder for a new connection (no digests, no alignment).
    pub const fn new() -> Self {
        PduEncoder {
            neg: Negotiated {
                hdgst: false,
                ddgst: false,
                rx_pda: 0,
            },
        }
    }

    /// Apply the IC exchange. `rx_pda` here is the alignment the *peer* asked for (a
    /// controller uses the host's HPDA; a host uses the controller's CPDA).
    pub fn set_negotiated(&mut self, neg: Negotiated) {
        self.neg = Negotiated {
            rx_pda: neg.rx_pda.min(PDA_MAX),
            ..neg
        };
    }

    /// Bytes of data digest that follow `data_len` bytes of data of this header type.
    pub fn data_digest_len(&self, pdu_type: PduType, data_len: u32) -> usize {
        if self.neg.ddgst && pdu_type.ddgst_allowed() && data_len > 0 {
            DIGEST_LEN
        } else {
            0
        }
    }

    /// Fill in the common header of `header` for `data_len` bytes of data and return the bytes
    /// to send before the data. ICReq/ICResp must have no data; TermReq data is at most 128
    /// bytes; CapsuleResp and R2T carry no data.
    pub fn header(&self, header: &PduHeader, data_len: u32) -> Result<EncodedHeader, Error> {
        let t = header.pdu_type();
        let mut h = *header;
        let hlen = usize::from(t.hlen().ok_or(Error::Encode("undefined PDU type"))?);
        let is_ic = t == PduType::IC_REQ || t == PduType::IC_RESP;
        let is_term = t == PduType::H2C_TERM_REQ || t == PduType::C2H_TERM_REQ;
        if data_len > 0 && (is_ic || (!is_term && !t.ddgst_allowed())) {
            return Err(Error::Encode("PDU type carries no data"));
        }
        if is_term && data_len > TERM_REQ_MAX_DATA {
            return Err(Error::Encode("TermReq data longer than 128 bytes"));
        }
        let hdgst = self.neg.hdgst && t.hdgst_allowed();
        let header_end = hlen + if hdgst { DIGEST_LEN } else { 0 };
        let dd = self.data_digest_len(t, data_len);
        let pdo = if data_len > 0 && !is_term {
            let align = (usize::from(self.neg.rx_pda) + 1) * 4;
            header_end.div_ceil(align) * align
        } else {
            0
        };
        let data_start = if pdo > 0 { pdo } else { header_end };
        let plen = u32::try_from(data_start)
            .ok()
            .and_then(|s| s.checked_add(data_len))
            .and_then(|p| p.checked_add(dd as u32))
            .ok_or(Error::Encode("PLEN does not fit in 32 bits"))?;
        let ch = h.common_mut();
        ch.pdu_type = t.0;
        ch.hlen = hlen as u8;
        ch.pdo = u8::try_from(pdo).map_err(|_| Error::Encode("PDO larger than 255"))?;
        ch.plen = zerocopy::little_endian::U32::new(plen);
        ch.flags &= !(FLAG_HDGST | FLAG_DDGST);
        if is_ic || is_term {
            ch.flags = 0;
        }
        if hdgst {
            ch.flags |= FLAG_HDGST;
        }
        if dd > 0 {
            ch.flags |= FLAG_DDGST;
        }
        let mut out = EncodedHeader {
            buf: [0; 256],
            len: data_start,
        };
        let bytes = h.as_bytes();
        if let Some(dst) = out.buf.get_mut(..hlen) {
            dst.copy_from_slice(bytes);
        }
        if hdgst && let Some(dst) = out.buf.get_mut(hlen..hlen + DIGEST_LEN) {
            dst.copy_from_slice(&header_digest(bytes));
        }
        Ok(out)
    }

    /// Encode a whole PDU (header, HDGST, padding, data, DDGST) onto `out`.
    pub fn encode(&self, header: &PduHeader, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let len = u32::try_from(data.len()).map_err(|_| Error::Encode("data longer than 4 GiB"))?;
        let hdr = self.header(header, len)?;
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(data);
        if self.data_digest_len(header.pdu_type(), len) > 0 {
            out.extend_from_slice(&super::digest::data_digest([data]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
