//! NVMe/TCP PDU headers (NVMe/TCP Transport Specification 1.0, 3.6 "PDU Definitions";
//! SPDK `include/spdk/nvmf_spec.h` `spdk_nvme_tcp_*`).
//!
//! Every PDU starts with the 8-byte [`CommonHeader`]; the PDU-specific header follows
//! (`hlen` bytes in total), then an optional header digest (HDGST), padding up to `pdo`, the
//! PDU data and an optional data digest (DDGST). `plen` is the length of all of it.

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::spec::cqe::Cqe;
use crate::spec::sqe::Sqe;

/// PDU type (NVMe/TCP 1.0, Figure 12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PduType(pub u8);

impl PduType {
    /// Initialize Connection Request (host to controller).
    pub const IC_REQ: PduType = PduType(0x00);
    /// Initialize Connection Response (controller to host).
    pub const IC_RESP: PduType = PduType(0x01);
    /// Host to Controller Terminate Connection Request.
    pub const H2C_TERM_REQ: PduType = PduType(0x02);
    /// Controller to Host Terminate Connection Request.
    pub const C2H_TERM_REQ: PduType = PduType(0x03);
    /// Command Capsule (host to controller).
    pub const CAPSULE_CMD: PduType = PduType(0x04);
    /// Response Capsule (controller to host).
    pub const CAPSULE_RESP: PduType = PduType(0x05);
    /// Host to Controller Data.
    pub const H2C_DATA: PduType = PduType(0x06);
    /// Controller to Host Data.
    pub const C2H_DATA: PduType = PduType(0x07);
    /// Ready to Transfer (controller to host).
    pub const R2T: PduType = PduType(0x09);

    /// The exact header length (HLEN) of this type, `None` for undefined types.
    pub const fn hlen(self) -> Option<u8> {
        match self.0 {
            0x00 | 0x01 => Some(IC_HLEN),
            0x02 | 0x03 => Some(TERM_REQ_HLEN),
            0x04 => Some(CAPSULE_CMD_HLEN),
            0x05 | 0x06 | 0x07 | 0x09 => Some(24),
            _ => None,
        }
    }

    /// Whether a header digest may follow this PDU's header (not on ICReq/ICResp/TermReq).
    pub const fn hdgst_allowed(self) -> bool {
        matches!(self.0, 0x04 | 0x05 | 0x06 | 0x07 | 0x09)
    }

    /// Whether this PDU type carries data with an optional data digest.
    pub const fn ddgst_allowed(self) -> bool {
        matches!(self.0, 0x04 | 0x06 | 0x07)
    }

    /// Whether a controller may receive this type (it is sent by hosts).
    pub const fn is_host_to_controller(self) -> bool {
        matches!(self.0, 0x00 | 0x02 | 0x04 | 0x06)
    }

    /// Whether a host may receive this type (it is sent by controllers).
    pub const fn is_controller_to_host(self) -> bool {
        matches!(self.0, 0x01 | 0x03 | 0x05 | 0x07 | 0x09)
    }
}

/// Common header FLAGS bit 0: a header digest follows the header (HDGSTF).
pub const FLAG_HDGST: u8 = 0x01;
/// Common header FLAGS bit 1: a data digest follows the data (DDGSTF).
pub const FLAG_DDGST: u8 = 0x02;
/// H2CData/C2HData FLAGS bit 2: last PDU of the transfer (LAST_PDU).
pub const FLAG_LAST_PDU: u8 = 0x04;
/// C2HData FLAGS bit 3: command completed successfully, no CapsuleResp follows (SUCCESS).
/// Only valid together with [`FLAG_LAST_PDU`].
pub const FLAG_SUCCESS: u8 = 0x08;

/// ICReq/ICResp DGST bit 0: header digest enable.
pub const DGST_HDGST_ENABLE: u8 = 0x01;
/// ICReq/ICResp DGST bit 1: data digest enable.
pub const DGST_DDGST_ENABLE: u8 = 0x02;

/// PDU format version 1.0 (PFV 0).
pub const PFV_1_0: u16 = 0;
/// Largest HPDA/CPDA value (0-based dwords: 128-byte alignment).
pub const PDA_MAX: u8 = 31;
/// Smallest allowed MAXH2CDATA (NVMe/TCP 1.0, Figure 15).
pub const MAXH2CDATA_MIN: u32 = 4096;
/// Length of HDGST and DDGST.
pub const DIGEST_LEN: usize = 4;
/// ICReq/ICResp header and PDU length.
pub const IC_HLEN: u8 = 128;
/// TermReq header length.
pub const TERM_REQ_HLEN: u8 = 24;
/// Maximum bytes of the offending PDU header a TermReq carries as data.
pub const TERM_REQ_MAX_DATA: u32 = 128;
/// CapsuleCmd header length (8 + 64-byte SQE).
pub const CAPSULE_CMD_HLEN: u8 = 72;
/// CapsuleResp header length (8 + 16-byte CQE).
pub const CAPSULE_RESP_HLEN: u8 = 24;
/// H2CData, C2HData and R2T header length.
pub const DATA_HLEN: u8 = 24;
/// Longest header, plus a header digest.
pub const MAX_HEADER_LEN: usize = IC_HLEN as usize + DIGEST_LEN;

/// Byte offsets of header fields, used as the FEI of a TermReq (NVMe/TCP 1.0, Figure 21).
pub mod offset {
    /// Common header PDU-type.
    pub const PDU_TYPE: u32 = 0;
    /// Common header FLAGS.
    pub const FLAGS: u32 = 1;
    /// Common header HLEN.
    pub const HLEN: u32 = 2;
    /// Common header PDO.
    pub const PDO: u32 = 3;
    /// Common header PLEN.
    pub const PLEN: u32 = 4;
    /// ICReq/ICResp PFV.
    pub const PFV: u32 = 8;
    /// ICReq HPDA / ICResp CPDA.
    pub const PDA: u32 = 10;
    /// ICReq/ICResp DGST.
    pub const DGST: u32 = 11;
    /// ICReq MAXR2T / ICResp MAXH2CDATA.
    pub const MAXR2T_MAXH2CDATA: u32 = 12;
    /// H2CData/C2HData/R2T CCCID.
    pub const CCCID: u32 = 8;
    /// H2CData/R2T TTAG.
    pub const TTAG: u32 = 10;
    /// H2CData/C2HData DATAO, R2T R2TO.
    pub const DATAO: u32 = 12;
    /// H2CData/C2HData DATAL, R2T R2TL.
    pub const DATAL: u32 = 16;
}

/// Fatal Error Status of a H2CTermReq/C2HTermReq (NVMe/TCP 1.0, Figures 21 and 22).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fes(pub u16);

impl Fes {
    /// Invalid PDU Header Field; FEI holds the byte offset of the field.
    pub const INVALID_HEADER_FIELD: Fes = Fes(0x01);
    /// PDU Sequence Error.
    pub const PDU_SEQUENCE_ERROR: Fes = Fes(0x02);
    /// Header Digest Error.
    pub const HDGST_ERROR: Fes = Fes(0x03);
    /// Data Transfer Out of Range.
    pub const DATA_TRANSFER_OUT_OF_RANGE: Fes = Fes(0x04);
    /// Data Transfer Limit Exceeded (R2T Limit Exceeded in NVMe/TCP 1.0).
    pub const DATA_TRANSFER_LIMIT_EXCEEDED: Fes = Fes(0x05);
    /// Unsupported Parameter; FEI holds the byte offset of the field.
    pub const UNSUPPORTED_PARAMETER: Fes = Fes(0x06);
}

/// Common header (NVMe/TCP 1.0, Figure 11).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CommonHeader {
    /// PDU type.
    pub pdu_type: u8,
    /// Flags.
    pub flags: u8,
    /// Header length.
    pub hlen: u8,
    /// PDU data offset.
    pub pdo: u8,
    /// PDU length.
    pub plen: U32,
}
const_assert_eq!(size_of::<CommonHeader>(), 8);

impl CommonHeader {
    fn of(t: PduType) -> Self {
        CommonHeader {
            pdu_type: t.0,
            flags: 0,
            hlen: t.hlen().unwrap_or(0),
            pdo: 0,
            plen: U32::new(0),
        }
    }
}

/// ICReq PDU (NVMe/TCP 1.0, Figure 14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IcReq {
    /// Common header.
    pub ch: CommonHeader,
    /// PDU format version.
    pub pfv: U16,
    /// Host PDU data alignment (0-based dwords).
    pub hpda: u8,
    /// Digest types enabled (`DGST_*`).
    pub dgst: u8,
    /// Maximum outstanding R2Ts per command (0-based).
    pub maxr2t: U32,
    /// Reserved.
    pub rsvd: [u8; 112],
}
const_assert_eq!(size_of::<IcReq>(), 128);

impl IcReq {
    /// An ICReq asking for the given digests.
    pub fn new(hpda: u8, hdgst: bool, ddgst: bool, maxr2t: u32) -> Self {
        let mut r = IcReq::new_zeroed();
        r.ch = CommonHeader::of(PduType::IC_REQ);
        r.hpda = hpda;
        r.dgst = dgst_bits(hdgst, ddgst);
        r.maxr2t = U32::new(maxr2t);
        r
    }
}

/// ICResp PDU (NVMe/TCP 1.0, Figure 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IcResp {
    /// Common header.
    pub ch: CommonHeader,
    /// PDU format version.
    pub pfv: U16,
    /// Controller PDU data alignment (0-based dwords).
    pub cpda: u8,
    /// Digest types enabled (`DGST_*`).
    pub dgst: u8,
    /// Maximum H2CData PDU data length in bytes.
    pub maxh2cdata: U32,
    /// Reserved.
    pub rsvd: [u8; 112],
}
const_assert_eq!(size_of::<IcResp>(), 128);

impl IcResp {
    /// An ICResp granting the given digests.
    pub fn new(cpda: u8, hdgst: bool, ddgst: bool, maxh2cdata: u32) -> Self {
        let mut r = IcResp::new_zeroed();
        r.ch = CommonHeader::of(PduType::IC_RESP);
        r.cpda = cpda;
        r.dgst = dgst_bits(hdgst, ddgst);
        r.maxh2cdata = U32::new(maxh2cdata);
        r
    }
}

fn dgst_bits(hdgst: bool, ddgst: bool) -> u8 {
    (if hdgst { DGST_HDGST_ENABLE } else { 0 }) | (if ddgst { DGST_DDGST_ENABLE } else { 0 })
}

/// H2CTermReq / C2HTermReq header (NVMe/TCP 1.0, Figures 20-22). Up to 128 bytes of the
/// offending PDU header follow as data.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct TermReq {
    /// Common header.
    pub ch: CommonHeader,
    /// Fatal error status.
    pub fes: U16,
    /// Fatal error information (byte offset of the offending field for FES 01h/06h).
    pub fei: U32,
    /// Reserved.
    pub rsvd: [u8; 10],
}
const_assert_eq!(size_of::<TermReq>(), 24);

impl TermReq {
    /// A TermReq of type `pdu_type` (H2C or C2H) with FES and FEI.
    pub fn new(pdu_type: PduType, fes: Fes, fei: u32) -> Self {
        TermReq {
            ch: CommonHeader::of(pdu_type),
            fes: U16::new(fes.0),
            fei: U32::new(fei),
            rsvd: [0; 10],
        }
    }

    /// Fatal error status.
    pub fn fes(&self) -> Fes {
        Fes(self.fes.get())
    }
}

/// CapsuleCmd header: common header plus the SQE (NVMe/TCP 1.0, Figure 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct CapsuleCmd {
    /// Common header.
    pub ch: CommonHeader,
    /// Submission queue entry.
    pub sqe: Sqe,
}
const_assert_eq!(size_of::<CapsuleCmd>(), 72);

impl CapsuleCmd {
    /// A CapsuleCmd carrying `sqe`.
    pub fn new(sqe: Sqe) -> Self {
        CapsuleCmd {
            ch: CommonHeader::of(PduType::CAPSULE_CMD),
            sqe,
        }
    }
}

/// CapsuleResp header: common header plus the CQE (NVMe/TCP 1.0, Figure 17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct CapsuleResp {
    /// Common header.
    pub ch: CommonHeader,
    /// Completion queue entry.
    pub cqe: Cqe,
}
const_assert_eq!(size_of::<CapsuleResp>(), 24);

impl CapsuleResp {
    /// A CapsuleResp carrying `cqe`.
    pub fn new(cqe: Cqe) -> Self {
        CapsuleResp {
            ch: CommonHeader::of(PduType::CAPSULE_RESP),
            cqe,
        }
    }
}

/// H2CData header (NVMe/TCP 1.0, Figure 18).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct H2cData {
    /// Common header.
    pub ch: CommonHeader,
    /// Command capsule CID.
    pub cccid: U16,
    /// Transfer tag from the R2T.
    pub ttag: U16,
    /// Data offset within the command's transfer.
    pub datao: U32,
    /// Data length of this PDU.
    pub datal: U32,
    /// Reserved.
    pub rsvd: [u8; 4],
}
const_assert_eq!(size_of::<H2cData>(), 24);

impl H2cData {
    /// An H2CData header.
    pub fn new(cccid: u16, ttag: u16, datao: u32, datal: u32, last: bool) -> Self {
        let mut ch = CommonHeader::of(PduType::H2C_DATA);
        ch.flags = if last { FLAG_LAST_PDU } else { 0 };
        H2cData {
            ch,
            cccid: U16::new(cccid),
            ttag: U16::new(ttag),
            datao: U32::new(datao),
            datal: U32::new(datal),
            rsvd: [0; 4],
        }
    }
}

/// C2HData header (NVMe/TCP 1.0, Figure 19).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct C2hData {
    /// Common header.
    pub ch: CommonHeader,
    /// Command capsule CID.
    pub cccid: U16,
    /// Reserved.
    pub rsvd10: [u8; 2],
    /// Data offset within the command's transfer.
    pub datao: U32,
    /// Data length of this PDU.
    pub datal: U32,
    /// Reserved.
    pub rsvd20: [u8; 4],
}
const_assert_eq!(size_of::<C2hData>(), 24);

impl C2hData {
    /// A C2HData header. `success` implies `last`.
    pub fn new(cccid: u16, datao: u32, datal: u32, last: bool, success: bool) -> Self {
        let mut ch = CommonHeader::of(PduType::C2H_DATA);
        if last || success {
            ch.flags |= FLAG_LAST_PDU;
        }
        if success {
            ch.flags |= FLAG_SUCCESS;
        }
        C2hData {
            ch,
            cccid: U16::new(cccid),
            rsvd10: [0; 2],
            datao: U32::new(datao),
            datal: U32::new(datal),
            rsvd20: [0; 4],
        }
    }
}

/// R2T header (NVMe/TCP 1.0, Figure 23).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct R2t {
    /// Common header.
    pub ch: CommonHeader,
    /// Command capsule CID.
    pub cccid: U16,
    /// Transfer tag.
    pub ttag: U16,
    /// Requested data offset.
    pub r2to: U32,
    /// Requested data length.
    pub r2tl: U32,
    /// Reserved.
    pub rsvd: [u8; 4],
}
const_assert_eq!(size_of::<R2t>(), 24);

impl R2t {
    /// An R2T header.
    pub fn new(cccid: u16, ttag: u16, r2to: u32, r2tl: u32) -> Self {
        R2t {
            ch: CommonHeader::of(PduType::R2T),
            cccid: U16::new(cccid),
            ttag: U16::new(ttag),
            r2to: U32::new(r2to),
            r2tl: U32::new(r2tl),
            rsvd: [0; 4],
        }
    }
}

/// A validated, typed PDU header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PduHeader {
    /// ICReq.
    IcReq(IcReq),
    /// ICResp.
    IcResp(IcResp),
    /// H2CTermReq.
    H2cTermReq(TermReq),
    /// C2HTermReq.
    C2hTermReq(TermReq),
    /// CapsuleCmd.
    CapsuleCmd(CapsuleCmd),
    /// CapsuleResp.
    CapsuleResp(CapsuleResp),
    /// H2CData.
    H2cData(H2cData),
    /// C2HData.
    C2hData(C2hData),
    /// R2T.
    R2t(R2t),
}

impl PduHeader {
    /// The common header.
    pub fn common(&self) -> &CommonHeader {
        match self {
            PduHeader::IcReq(h) => &h.ch,
            PduHeader::IcResp(h) => &h.ch,
            PduHeader::H2cTermReq(h) | PduHeader::C2hTermReq(h) => &h.ch,
            PduHeader::CapsuleCmd(h) => &h.ch,
            PduHeader::CapsuleResp(h) => &h.ch,
            PduHeader::H2cData(h) => &h.ch,
            PduHeader::C2hData(h) => &h.ch,
            PduHeader::R2t(h) => &h.ch,
        }
    }

    pub(crate) fn common_mut(&mut self) -> &mut CommonHeader {
        match self {
            PduHeader::IcReq(h) => &mut h.ch,
            PduHeader::IcResp(h) => &mut h.ch,
            PduHeader::H2cTermReq(h) | PduHeader::C2hTermReq(h) => &mut h.ch,
            PduHeader::CapsuleCmd(h) => &mut h.ch,
            PduHeader::CapsuleResp(h) => &mut h.ch,
            PduHeader::H2cData(h) => &mut h.ch,
            PduHeader::C2hData(h) => &mut h.ch,
            PduHeader::R2t(h) => &mut h.ch,
        }
    }

    /// The PDU type implied by the variant.
    pub fn pdu_type(&self) -> PduType {
        match self {
            PduHeader::IcReq(_) => PduType::IC_REQ,
            PduHeader::IcResp(_) => PduType::IC_RESP,
            PduHeader::H2cTermReq(_) => PduType::H2C_TERM_REQ,
            PduHeader::C2hTermReq(_) => PduType::C2H_TERM_REQ,
            PduHeader::CapsuleCmd(_) => PduType::CAPSULE_CMD,
            PduHeader::CapsuleResp(_) => PduType::CAPSULE_RESP,
            PduHeader::H2cData(_) => PduType::H2C_DATA,
            PduHeader::C2hData(_) => PduType::C2H_DATA,
            PduHeader::R2t(_) => PduType::R2T,
        }
    }

    /// The header bytes (`hlen` of them).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PduHeader::IcReq(h) => h.as_bytes(),
            PduHeader::IcResp(h) => h.as_bytes(),
            PduHeader::H2cTermReq(h) | PduHeader::C2hTermReq(h) => h.as_bytes(),
            PduHeader::CapsuleCmd(h) => h.as_bytes(),
            PduHeader::CapsuleResp(h) => h.as_bytes(),
            PduHeader::H2cData(h) => h.as_bytes(),
            PduHeader::C2hData(h) => h.as_bytes(),
            PduHeader::R2t(h) => h.as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn header_lengths_match_nvmf_facts_table() {
        assert_eq!(PduType::IC_REQ.hlen(), Some(128));
        assert_eq!(PduType::C2H_TERM_REQ.hlen(), Some(24));
        assert_eq!(PduType::CAPSULE_CMD.hlen(), Some(72));
        assert_eq!(PduType::CAPSULE_RESP.hlen(), Some(24));
        assert_eq!(PduType::R2T.hlen(), Some(24));
        assert_eq!(PduType(0x08).hlen(), None);
        assert!(!PduType::IC_REQ.hdgst_allowed());
        assert!(!PduType::H2C_TERM_REQ.hdgst_allowed());
        assert!(PduType::R2T.hdgst_allowed());
        assert!(!PduType::R2T.ddgst_allowed());
        assert!(PduType::C2H_DATA.ddgst_allowed());
    }

    #[test]
    fn field_offsets_match_nvme_tcp_figures() {
        assert_eq!(offset_of!(IcReq, pfv) as u32, offset::PFV);
        assert_eq!(offset_of!(IcReq, hpda) as u32, offset::PDA);
        assert_eq!(offset_of!(IcReq, dgst) as u32, offset::DGST);
        assert_eq!(
            offset_of!(IcResp, maxh2cdata) as u32,
            offset::MAXR2T_MAXH2CDATA
        );
        assert_eq!(offset_of!(TermReq, fes), 8);
        assert_eq!(offset_of!(TermReq, fei), 10);
        assert_eq!(offset_of!(H2cData, ttag) as u32, offset::TTAG);
        assert_eq!(offset_of!(H2cData, datao) as u32, offset::DATAO);
        assert_eq!(offset_of!(H2cData, datal) as u32, offset::DATAL);
        assert_eq!(offset_of!(C2hData, datal) as u32, offset::DATAL);
        assert_eq!(offset_of!(R2t, r2tl) as u32, offset::DATAL);
    }

    #[test]
    fn c2h_success_implies_last_pdu() {
        let h = C2hData::new(1, 0, 512, false, true);
        assert_eq!(h.ch.flags, FLAG_LAST_PDU | FLAG_SUCCESS);
        assert_eq!(h.ch.hlen, 24);
        assert_eq!(IcReq::new(0, true, true, 0).dgst, 0x03);
    }
}
