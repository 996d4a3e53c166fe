//! Fabrics commands: Connect, Property Get/Set, Authentication, Disconnect (NVMe-oF 1.1, 3.3-3.5
//! and 6.3; SPDK `struct spdk_nvmf_fabric_*`).
//!
//! Each command is a 64-byte view of an [`Sqe`] with opcode 7Fh; get one with
//! `zerocopy::transmute_ref!(&sqe)` or the `from_sqe` helpers.

use std::mem::offset_of;

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::cqe::Cqe;
use super::nqn::{NQN_FIELD_LEN, nqn_field, write_nul_padded};
use super::opcode::{AdminOpcode, FabricsCommandType};
use super::sgl::SglDescriptor;
use super::sqe::Sqe;
use crate::Error;

/// Size of Connect command data (NVMe-oF 1.1, Figure 20).
pub const CONNECT_DATA_SIZE: usize = 1024;
/// Connect RECFMT value this implementation supports.
pub const CONNECT_RECFMT_0: u16 = 0;
/// Connect CATTR bit 2: disable SQ flow control (NVMe-oF 1.1, Figure 19).
pub const CATTR_DISABLE_SQ_FLOW_CONTROL: u8 = 0x04;
/// Connect CNTLID 0xFFFF: dynamic controller model, any controller (NVMe-oF 1.1, Figure 20).
pub const CNTLID_DYNAMIC: u16 = 0xffff;
/// Connect CNTLID 0xFFFE: static model, any controller.
pub const CNTLID_STATIC_ANY: u16 = 0xfffe;

/// Connect command (NVMe-oF 1.1, Figure 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConnectCmd {
    /// Opcode 7Fh.
    pub opc: u8,
    /// FUSE/PSDT byte.
    pub flags: u8,
    /// Command identifier.
    pub cid: U16,
    /// Fabrics command type 01h.
    pub fctype: u8,
    /// Reserved.
    pub rsvd1: [u8; 19],
    /// SGL describing the 1024-byte Connect data.
    pub sgl1: SglDescriptor,
    /// Record format (0).
    pub recfmt: U16,
    /// Queue ID (0 admin).
    pub qid: U16,
    /// Submission queue size, 0-based.
    pub sqsize: U16,
    /// Connect attributes.
    pub cattr: u8,
    /// Reserved.
    pub rsvd2: u8,
    /// Keep alive timeout in milliseconds (admin queue only).
    pub kato: U32,
    /// Reserved.
    pub rsvd3: [u8; 12],
}
const_assert_eq!(size_of::<ConnectCmd>(), 64);

impl ConnectCmd {
    /// View an SQE as a Connect command.
    pub fn from_sqe(sqe: &Sqe) -> &ConnectCmd {
        zerocopy::transmute_ref!(sqe)
    }

    /// A Connect command for `qid` with the given 0-based SQ size and KATO (ms).
    pub fn new(cid: u16, qid: u16, sqsize: u16, kato: u32) -> Self {
        let mut c = ConnectCmd::new_zeroed();
        c.opc = AdminOpcode::FABRICS.0;
        c.flags = 0x40;
        c.cid = U16::new(cid);
        c.fctype = FabricsCommandType::CONNECT.0;
        c.qid = U16::new(qid);
        c.sqsize = U16::new(sqsize);
        c.kato = U32::new(kato);
        c
    }

    /// As a plain SQE.
    pub fn to_sqe(&self) -> Sqe {
        zerocopy::transmute!(*self)
    }

    /// True when CATTR asks to disable SQ flow control.
    pub fn sq_flow_control_disabled(&self) -> bool {
        self.cattr & CATTR_DISABLE_SQ_FLOW_CONTROL != 0
    }
}

/// Byte offsets of Connect command fields, for the IPO of an invalid-parameter response.
pub mod connect_cmd_offset {
    use super::*;
    /// RECFMT.
    pub const RECFMT: u16 = offset_of!(ConnectCmd, recfmt) as u16;
    /// QID.
    pub const QID: u16 = offset_of!(ConnectCmd, qid) as u16;
    /// SQSIZE.
    pub const SQSIZE: u16 = offset_of!(ConnectCmd, sqsize) as u16;
    /// CATTR.
    pub const CATTR: u16 = offset_of!(ConnectCmd, cattr) as u16;
    /// KATO.
    pub const KATO: u16 = offset_of!(ConnectCmd, kato) as u16;
}

/// Connect command data (NVMe-oF 1.1, Figure 20): HOSTID @0, CNTLID @16, SUBNQN @256,
/// HOSTNQN @512.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConnectData {
    /// Host identifier (128-bit).
    pub hostid: [u8; 16],
    /// Controller ID requested (0xFFFF dynamic).
    pub cntlid: U16,
    /// Reserved.
    pub rsvd1: [u8; 238],
    /// Subsystem NQN, NUL-terminated (byte 256).
    pub subnqn: [u8; NQN_FIELD_LEN],
    /// Host NQN, NUL-terminated (byte 512).
    pub hostnqn: [u8; NQN_FIELD_LEN],
    /// Reserved.
    pub rsvd2: [u8; 256],
}
const_assert_eq!(size_of::<ConnectData>(), CONNECT_DATA_SIZE);

/// Byte offsets of Connect data fields, for the IPO of an invalid-parameter response.
pub mod connect_data_offset {
    use super::*;
    /// HOSTID.
    pub const HOSTID: u16 = offset_of!(ConnectData, hostid) as u16;
    /// CNTLID.
    pub const CNTLID: u16 = offset_of!(ConnectData, cntlid) as u16;
    /// HOSTNQN.
    pub const HOSTNQN: u16 = offset_of!(ConnectData, hostnqn) as u16;
    /// SUBNQN.
    pub const SUBNQN: u16 = offset_of!(ConnectData, subnqn) as u16;
}

impl ConnectData {
    /// Build Connect data. Fails if an NQN does not fit in 255 bytes plus NUL.
    pub fn new(hostid: [u8; 16], cntlid: u16, hostnqn: &str, subnqn: &str) -> Result<Self, Error> {
        let mut d = ConnectData::new_zeroed();
        d.hostid = hostid;
        d.cntlid = U16::new(cntlid);
        write_nul_padded("hostnqn", &mut d.hostnqn, hostnqn)?;
        write_nul_padded("subnqn", &mut d.subnqn, subnqn)?;
        Ok(d)
    }

    /// Decode from exactly 1024 bytes.
    pub fn read_from(bytes: &[u8]) -> Result<Self, Error> {
        ConnectData::read_from_bytes(bytes).map_err(|_| Error::Length {
            what: "Connect data",
            need: CONNECT_DATA_SIZE,
            got: bytes.len(),
        })
    }

    /// View exactly 1024 bytes as Connect data without copying.
    pub fn view(bytes: &[u8]) -> Result<&Self, Error> {
        ConnectData::ref_from_bytes(bytes).map_err(|_| Error::Length {
            what: "Connect data",
            need: CONNECT_DATA_SIZE,
            got: bytes.len(),
        })
    }

    /// Host NQN: NUL-terminated UTF-8 of at most 223 bytes (grammar not checked).
    pub fn hostnqn(&self) -> Result<&str, Error> {
        nqn_field("hostnqn", &self.hostnqn)
    }

    /// Subsystem NQN: NUL-terminated UTF-8 of at most 223 bytes (grammar not checked).
    pub fn subnqn(&self) -> Result<&str, Error> {
        nqn_field("subnqn", &self.subnqn)
    }

    /// Requested controller ID.
    pub fn cntlid(&self) -> u16 {
        self.cntlid.get()
    }
}

/// Where the invalid parameter of a failed Connect lies (NVMe-oF 1.1, Figure 21: IATTR/IPO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidParam {
    /// IATTR bit 0: true if the parameter is in the Connect data, false if in the SQE.
    pub in_data: bool,
    /// IPO: byte offset of the parameter.
    pub ipo: u16,
}

impl InvalidParam {
    /// Parameter at `ipo` in the Connect SQE.
    pub const fn in_cmd(ipo: u16) -> Self {
        InvalidParam {
            in_data: false,
            ipo,
        }
    }

    /// Parameter at `ipo` in the Connect data.
    pub const fn in_data(ipo: u16) -> Self {
        InvalidParam { in_data: true, ipo }
    }

    /// CQE dword 0 encoding: IATTR in byte 0, IPO in bytes 3:2.
    pub const fn to_dw0(self) -> u32 {
        (self.in_data as u32) | ((self.ipo as u32) << 16)
    }

    /// Decode from CQE dword 0.
    pub const fn from_dw0(dw0: u32) -> Self {
        InvalidParam {
            in_data: dw0 & 1 != 0,
            ipo: (dw0 >> 16) as u16,
        }
    }
}

/// Successful Connect response dword 0: CNTLID in bits 15:0, AUTHREQ in bits 31:16.
pub const fn connect_success_dw0(cntlid: u16, authreq: u16) -> u32 {
    (cntlid as u32) | ((authreq as u32) << 16)
}

/// Controller ID from a successful Connect completion.
pub fn connect_rsp_cntlid(cqe: &Cqe) -> u16 {
    cqe.dw0.get() as u16
}

/// AUTHREQ from a successful Connect completion (non-zero: authentication required).
pub fn connect_rsp_authreq(cqe: &Cqe) -> u16 {
    (cqe.dw0.get() >> 16) as u16
}

/// Property Set command (NVMe-oF 1.1, Figure 24).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct PropertySetCmd {
    /// Opcode 7Fh.
    pub opc: u8,
    /// FUSE/PSDT byte.
    pub flags: u8,
    /// Command identifier.
    pub cid: U16,
    /// Fabrics command type 00h.
    pub fctype: u8,
    /// Reserved.
    pub rsvd1: [u8; 35],
    /// ATTRIB: bits 2:0 size (0 = 4 bytes, 1 = 8 bytes).
    pub attrib: u8,
    /// Reserved.
    pub rsvd2: [u8; 3],
    /// Property offset.
    pub ofst: U32,
    /// Value to set (low 4 bytes for 4-byte properties).
    pub value: U64,
    /// Reserved.
    pub rsvd3: [u8; 8],
}
const_assert_eq!(size_of::<PropertySetCmd>(), 64);

/// Property Get command (NVMe-oF 1.1, Figure 22). The value returns in CQE dwords 0-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct PropertyGetCmd {
    /// Opcode 7Fh.
    pub opc: u8,
    /// FUSE/PSDT byte.
    pub flags: u8,
    /// Command identifier.
    pub cid: U16,
    /// Fabrics command type 04h.
    pub fctype: u8,
    /// Reserved.
    pub rsvd1: [u8; 35],
    /// ATTRIB: bits 2:0 size (0 = 4 bytes, 1 = 8 bytes).
    pub attrib: u8,
    /// Reserved.
    pub rsvd2: [u8; 3],
    /// Property offset.
    pub ofst: U32,
    /// Reserved.
    pub rsvd3: [u8; 16],
}
const_assert_eq!(size_of::<PropertyGetCmd>(), 64);

use super::props::{PropertyOffset, PropertySize};

impl PropertySetCmd {
    /// View an SQE as Property Set.
    pub fn from_sqe(sqe: &Sqe) -> &PropertySetCmd {
        zerocopy::transmute_ref!(sqe)
    }

    /// Build a Property Set command.
    pub fn new(cid: u16, size: PropertySize, ofst: PropertyOffset, value: u64) -> Self {
        let mut c = PropertySetCmd::new_zeroed();
        c.opc = AdminOpcode::FABRICS.0;
        c.flags = 0x40;
        c.cid = U16::new(cid);
        c.fctype = FabricsCommandType::PROPERTY_SET.0;
        c.attrib = size.attrib();
        c.ofst = U32::new(ofst.0);
        c.value = U64::new(value);
        c
    }

    /// As a plain SQE.
    pub fn to_sqe(&self) -> Sqe {
        zerocopy::transmute!(*self)
    }

    /// Access size; reserved ATTRIB values are an error.
    pub fn size(&self) -> Result<PropertySize, Error> {
        PropertySize::from_attrib(self.attrib)
    }

    /// Property offset.
    pub fn offset(&self) -> PropertyOffset {
        PropertyOffset(self.ofst.get())
    }
}

impl PropertyGetCmd {
    /// View an SQE as Property Get.
    pub fn from_sqe(sqe: &Sqe) -> &PropertyGetCmd {
        zerocopy::transmute_ref!(sqe)
    }

    /// Build a Property Get command.
    pub fn new(cid: u16, size: PropertySize, ofst: PropertyOffset) -> Self {
        let mut c = PropertyGetCmd::new_zeroed();
        c.opc = AdminOpcode::FABRICS.0;
        c.flags = 0x40;
        c.cid = U16::new(cid);
        c.fctype = FabricsCommandType::PROPERTY_GET.0;
        c.attrib = size.attrib();
        c.ofst = U32::new(ofst.0);
        c
    }

    /// As a plain SQE.
    pub fn to_sqe(&self) -> Sqe {
        zerocopy::transmute!(*self)
    }

    /// Access size; reserved ATTRIB values are an error.
    pub fn size(&self) -> Result<PropertySize, Error> {
        PropertySize::from_attrib(self.attrib)
    }

    /// Property offset.
    pub fn offset(&self) -> PropertyOffset {
        PropertyOffset(self.ofst.get())
    }
}

/// Authentication Send / Receive command (NVMe-oF 1.1, Figures 15-16; NVMe Base 2.0, 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct AuthCmd {
    /// Opcode 7Fh.
    pub opc: u8,
    /// FUSE/PSDT byte.
    pub flags: u8,
    /// Command identifier.
    pub cid: U16,
    /// Fabrics command type 05h (send) or 06h (receive).
    pub fctype: u8,
    /// Reserved.
    pub rsvd1: [u8; 19],
    /// SGL for the transferred data.
    pub sgl1: SglDescriptor,
    /// Reserved.
    pub rsvd2: u8,
    /// SP Specific 0.
    pub spsp0: u8,
    /// SP Specific 1.
    pub spsp1: u8,
    /// Security Protocol (E9h for authentication).
    pub secp: u8,
    /// Transfer length (send) or allocation length (receive).
    pub length: U32,
    /// Reserved.
    pub rsvd3: [u8; 16],
}
const_assert_eq!(size_of::<AuthCmd>(), 64);

impl AuthCmd {
    /// View an SQE as an Authentication Send/Receive command.
    pub fn from_sqe(sqe: &Sqe) -> &AuthCmd {
        zerocopy::transmute_ref!(sqe)
    }
}

/// Security protocol of NVMe in-band authentication (NVMe Base 2.0, 8.13).
pub const AUTH_SECP_NVME: u8 = 0xe9;

/// Disconnect command (NVMe-oF 1.1, 3.6; 1.1a): RECFMT only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DisconnectCmd {
    /// Opcode 7Fh.
    pub opc: u8,
    /// FUSE/PSDT byte.
    pub flags: u8,
    /// Command identifier.
    pub cid: U16,
    /// Fabrics command type 08h.
    pub fctype: u8,
    /// Reserved.
    pub rsvd1: [u8; 19],
    /// SGL (reserved).
    pub sgl1: SglDescriptor,
    /// Record format.
    pub recfmt: U16,
    /// Reserved.
    pub rsvd2: [u8; 22],
}
const_assert_eq!(size_of::<DisconnectCmd>(), 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_cmd_offsets_match_nvmf_figure_19() {
        assert_eq!(offset_of!(ConnectCmd, fctype), 4);
        assert_eq!(offset_of!(ConnectCmd, sgl1), 24);
        assert_eq!(connect_cmd_offset::RECFMT, 40);
        assert_eq!(connect_cmd_offset::QID, 42);
        assert_eq!(connect_cmd_offset::SQSIZE, 44);
        assert_eq!(connect_cmd_offset::CATTR, 46);
        assert_eq!(connect_cmd_offset::KATO, 48);
    }

    #[test]
    fn connect_data_offsets_match_nvmf_figure_20() {
        assert_eq!(connect_data_offset::CNTLID, 16);
        assert_eq!(connect_data_offset::SUBNQN, 256);
        assert_eq!(connect_data_offset::HOSTNQN, 512);
    }

    #[test]
    fn connect_round_trips_through_sqe_bytes() {
        let c = ConnectCmd::new(5, 1, 127, 0);
        let sqe = c.to_sqe();
        assert_eq!(sqe.fctype(), FabricsCommandType::CONNECT);
        assert_eq!(sqe.as_bytes()[42..46], [1, 0, 127, 0]);
        let v = ConnectCmd::from_sqe(&sqe);
        assert_eq!(v.qid.get(), 1);
        assert_eq!(v.sqsize.get(), 127);
    }

    #[test]
    fn connect_data_decodes_nqns_strictly() {
        let d = ConnectData::new(
            [7; 16],
            CNTLID_DYNAMIC,
            "nqn.2014-08.org.nvmexpress:uuid:a",
            "nqn.2016-06.io.spdk:cnode1",
        )
        .unwrap();
        let bytes = d.as_bytes();
        assert_eq!(&bytes[16..18], &[0xff, 0xff]);
        // Wire offsets (NVMe-oF 1.1 Figure 20; Linux nvmf_connect_data, SPDK spdk_nvmf_fabric_connect_data).
        assert_eq!(&bytes[256..256 + 26], b"nqn.2016-06.io.spdk:cnode1");
        assert_eq!(&bytes[512..512 + 33], b"nqn.2014-08.org.nvmexpress:uuid:a");
        assert_eq!(connect_data_offset::SUBNQN, 256);
        assert_eq!(connect_data_offset::HOSTNQN, 512);
        let v = ConnectData::view(bytes).unwrap();
        assert_eq!(v.subnqn().unwrap(), "nqn.2016-06.io.spdk:cnode1");
        assert_eq!(v.hostnqn().unwrap(), "nqn.2014-08.org.nvmexpress:uuid:a");
        assert_eq!(v.cntlid(), 0xffff);

        let mut bad = d;
        bad.subnqn = [b'x'; 256];
        assert_eq!(
            bad.subnqn(),
            Err(Error::UnterminatedString {
                field: "subnqn",
                len: 256
            })
        );
        assert!(ConnectData::read_from(&bytes[..1023]).is_err());
    }

    #[test]
    fn invalid_param_dw0_layout_matches_spdk() {
        // SPDK_NVMF_INVALID_CONNECT_DATA(rsp, subnqn): iattr=1, ipo=256.
        let p = InvalidParam::in_data(connect_data_offset::SUBNQN);
        assert_eq!(p.to_dw0(), 0x0100_0001);
        assert_eq!(InvalidParam::from_dw0(0x0100_0001), p);
        assert_eq!(
            InvalidParam::in_cmd(connect_cmd_offset::QID).to_dw0(),
            42 << 16
        );
        assert_eq!(connect_success_dw0(1, 0), 1);
    }

    #[test]
    fn property_commands_encode_attrib_and_offset() {
        let set = PropertySetCmd::new(3, PropertySize::Four, PropertyOffset::CC, 0x46_0001);
        let sqe = set.to_sqe();
        assert_eq!(sqe.as_bytes()[40], 0);
        assert_eq!(sqe.as_bytes()[44..48], [0x14, 0, 0, 0]);
        assert_eq!(sqe.as_bytes()[48..52], [1, 0, 0x46, 0]);
        let get = PropertyGetCmd::new(4, PropertySize::Eight, PropertyOffset::CAP).to_sqe();
        let v = PropertyGetCmd::from_sqe(&get);
        assert_eq!(v.size(), Ok(PropertySize::Eight));
        assert_eq!(v.offset(), PropertyOffset::CAP);
        assert_eq!(get.fctype(), FabricsCommandType::PROPERTY_GET);
    }
}
