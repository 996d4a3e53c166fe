//! The 64-byte Submission Queue Entry (NVMe Base 2.0, 4.2 "Submission Queue Entry",
//! Figures 88-92; SPDK `struct spdk_nvme_cmd`).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::opcode::{AdminOpcode, FabricsCommandType, NvmOpcode};
use super::sgl::SglDescriptor;
use crate::Error;

/// Fused operation, CDW0 bits 9:8 (NVMe Base 2.0, Figure 88).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fuse {
    /// Normal operation.
    Normal,
    /// First command of a fused pair.
    First,
    /// Second command of a fused pair.
    Second,
    /// Reserved value 11b.
    Reserved,
}

/// PRP or SGL for Data Transfer, CDW0 bits 15:14 (NVMe Base 2.0, Figure 88).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Psdt {
    /// PRPs are used (00b).
    Prp,
    /// SGLs; MPTR is a contiguous metadata buffer address (01b). Fabrics always use this.
    SglMptrContig,
    /// SGLs; MPTR points to an SGL segment (10b).
    SglMptrSgl,
}

/// Submission Queue Entry. All multi-byte fields are little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Sqe {
    /// CDW0 bits 7:0: opcode (admin, I/O or fabrics 7Fh).
    pub opc: u8,
    /// CDW0 bits 15:8: FUSE (bits 1:0) and PSDT (bits 7:6).
    pub flags: u8,
    /// CDW0 bits 31:16: command identifier.
    pub cid: U16,
    /// Namespace identifier (for fabrics commands bytes 4..8 hold FCTYPE and reserved bytes).
    pub nsid: U32,
    /// Command Dword 2.
    pub cdw2: U32,
    /// Command Dword 3.
    pub cdw3: U32,
    /// Metadata pointer.
    pub mptr: U64,
    /// Data pointer: an SGL descriptor (PSDT != 0) or PRP1 (bytes 0..8) and PRP2 (bytes 8..16).
    pub dptr: SglDescriptor,
    /// Command Dword 10.
    pub cdw10: U32,
    /// Command Dword 11.
    pub cdw11: U32,
    /// Command Dword 12.
    pub cdw12: U32,
    /// Command Dword 13.
    pub cdw13: U32,
    /// Command Dword 14.
    pub cdw14: U32,
    /// Command Dword 15.
    pub cdw15: U32,
}
const_assert_eq!(size_of::<Sqe>(), 64);

/// Size of an SQE in bytes.
pub const SQE_SIZE: usize = 64;

const FUSE_MASK: u8 = 0x3;
const PSDT_SHIFT: u8 = 6;

impl Default for Sqe {
    fn default() -> Self {
        Sqe::new_zeroed()
    }
}

impl Sqe {
    /// A zeroed SQE with the given opcode and command identifier.
    pub fn new(opc: u8, cid: u16) -> Self {
        let mut sqe = Sqe::new_zeroed();
        sqe.opc = opc;
        sqe.cid = U16::new(cid);
        sqe
    }

    /// Decode from exactly 64 bytes.
    pub fn read_from(bytes: &[u8]) -> Result<Self, Error> {
        Sqe::read_from_bytes(bytes).map_err(|_| Error::Length {
            what: "SQE",
            need: SQE_SIZE,
            got: bytes.len(),
        })
    }

    /// Command identifier.
    pub fn cid(&self) -> u16 {
        self.cid.get()
    }

    /// Namespace identifier.
    pub fn nsid(&self) -> u32 {
        self.nsid.get()
    }

    /// The opcode viewed as an admin opcode.
    pub fn admin_opcode(&self) -> AdminOpcode {
        AdminOpcode(self.opc)
    }

    /// The opcode viewed as an NVM I/O opcode.
    pub fn nvm_opcode(&self) -> NvmOpcode {
        NvmOpcode(self.opc)
    }

    /// True for fabrics commands (opcode 7Fh).
    pub fn is_fabrics(&self) -> bool {
        self.opc == AdminOpcode::FABRICS.0
    }

    /// Fabrics command type (byte 4), meaningful only when [`Sqe::is_fabrics`].
    pub fn fctype(&self) -> FabricsCommandType {
        FabricsCommandType(self.nsid.as_bytes()[0])
    }

    /// Fused operation.
    pub fn fuse(&self) -> Fuse {
        match self.flags & FUSE_MASK {
            0 => Fuse::Normal,
            1 => Fuse::First,
            2 => Fuse::Second,
            _ => Fuse::Reserved,
        }
    }

    /// Set the fused operation bits.
    pub fn set_fuse(&mut self, fuse: Fuse) {
        let v = match fuse {
            Fuse::Normal => 0,
            Fuse::First => 1,
            Fuse::Second => 2,
            Fuse::Reserved => 3,
        };
        self.flags = (self.flags & !FUSE_MASK) | v;
    }

    /// PRP or SGL selection; the reserved value 11b is an error (Invalid Field).
    pub fn psdt(&self) -> Result<Psdt, Error> {
        match self.flags >> PSDT_SHIFT {
            0 => Ok(Psdt::Prp),
            1 => Ok(Psdt::SglMptrContig),
            2 => Ok(Psdt::SglMptrSgl),
            v => Err(Error::ReservedPsdt(v)),
        }
    }

    /// Set the PSDT bits.
    pub fn set_psdt(&mut self, psdt: Psdt) {
        let v = match psdt {
            Psdt::Prp => 0,
            Psdt::SglMptrContig => 1,
            Psdt::SglMptrSgl => 2,
        };
        self.flags = (self.flags & FUSE_MASK) | (v << PSDT_SHIFT);
    }

    /// The data pointer as SGL descriptor 1.
    pub fn sgl(&self) -> &SglDescriptor {
        &self.dptr
    }

    /// The data pointer as PRP entry 1.
    pub fn prp1(&self) -> u64 {
        self.dptr.address.get()
    }

    /// The data pointer as PRP entry 2.
    pub fn prp2(&self) -> u64 {
        let b = self.dptr.as_bytes();
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
    }

    /// Set the data pointer to two PRP entries.
    pub fn set_prps(&mut self, prp1: u64, prp2: u64) {
        let p2 = prp2.to_le_bytes();
        self.dptr = SglDescriptor {
            address: U64::new(prp1),
            body: [p2[0], p2[1], p2[2], p2[3], p2[4], p2[5], p2[6]],
            id: p2[7],
        };
    }

    /// Command dwords 10..=15 as plain integers.
    pub fn cdws(&self) -> [u32; 6] {
        [
            self.cdw10.get(),
            self.cdw11.get(),
            self.cdw12.get(),
            self.cdw13.get(),
            self.cdw14.get(),
            self.cdw15.get(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::sgl::Sgl;
    use std::mem::offset_of;

    #[test]
    fn sqe_field_offsets_match_figure_88() {
        assert_eq!(offset_of!(Sqe, cid), 2);
        assert_eq!(offset_of!(Sqe, nsid), 4);
        assert_eq!(offset_of!(Sqe, cdw2), 8);
        assert_eq!(offset_of!(Sqe, mptr), 16);
        assert_eq!(offset_of!(Sqe, dptr), 24);
        assert_eq!(offset_of!(Sqe, cdw10), 40);
        assert_eq!(offset_of!(Sqe, cdw15), 60);
    }

    #[test]
    fn fuse_and_psdt_share_the_flags_byte() {
        let mut sqe = Sqe::new(NvmOpcode::COMPARE.0, 7);
        sqe.set_fuse(Fuse::First);
        sqe.set_psdt(Psdt::SglMptrContig);
        assert_eq!(sqe.flags, 0x41);
        assert_eq!(sqe.fuse(), Fuse::First);
        assert_eq!(sqe.psdt(), Ok(Psdt::SglMptrContig));
        sqe.flags = 0xc0;
        assert_eq!(sqe.psdt(), Err(Error::ReservedPsdt(3)));
    }

    #[test]
    fn decodes_fabrics_fctype_and_sgl_from_bytes() {
        let mut raw = [0u8; 64];
        raw[0] = 0x7f;
        raw[1] = 0x40;
        raw[2] = 0x34;
        raw[3] = 0x12;
        raw[4] = 0x01;
        raw[24 + 15] = 0x5a; // transport data block
        raw[24 + 8] = 0x00;
        raw[24 + 9] = 0x04; // length 1024
        let sqe = Sqe::read_from(&raw).unwrap();
        assert!(sqe.is_fabrics());
        assert_eq!(sqe.cid(), 0x1234);
        assert_eq!(sqe.fctype(), FabricsCommandType::CONNECT);
        assert_eq!(
            sqe.sgl().decode().unwrap(),
            Sgl::TransportDataBlock { length: 1024 }
        );
        assert!(Sqe::read_from(&raw[..63]).is_err());
    }

    #[test]
    fn prp_entries_round_trip() {
        let mut sqe = Sqe::default();
        sqe.set_prps(0x1000, 0x2000);
        assert_eq!(sqe.prp1(), 0x1000);
        assert_eq!(sqe.prp2(), 0x2000);
        assert_eq!(&sqe.as_bytes()[32..40], &0x2000u64.to_le_bytes());
    }
}
