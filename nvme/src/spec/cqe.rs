//! The 16-byte Completion Queue Entry (NVMe Base 2.0, 4.6 "Completion Queue Entry",
//! Figure 97; SPDK `struct spdk_nvme_cpl`).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::status::Status;
use crate::Error;

/// Completion Queue Entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Cqe {
    /// Dword 0: command specific.
    pub dw0: U32,
    /// Dword 1: command specific.
    pub dw1: U32,
    /// SQ head pointer.
    pub sqhd: U16,
    /// SQ identifier.
    pub sqid: U16,
    /// Command identifier.
    pub cid: U16,
    /// Phase tag (bit 0) and status field (bits 15:1).
    pub status: U16,
}
const_assert_eq!(size_of::<Cqe>(), 16);

/// Size of a CQE in bytes.
pub const CQE_SIZE: usize = 16;

impl Default for Cqe {
    fn default() -> Self {
        Cqe::new_zeroed()
    }
}

impl Cqe {
    /// A completion for `cid` with `status` (phase 0, dwords 0).
    pub fn new(cid: u16, status: Status) -> Self {
        let mut cqe = Cqe::new_zeroed();
        cqe.cid = U16::new(cid);
        cqe.status = U16::new(status.to_raw(false));
        cqe
    }

    /// Decode from exactly 16 bytes.
    pub fn read_from(bytes: &[u8]) -> Result<Self, Error> {
        Cqe::read_from_bytes(bytes).map_err(|_| Error::Length {
            what: "CQE",
            need: CQE_SIZE,
            got: bytes.len(),
        })
    }

    /// Decoded status (phase ignored).
    pub fn status(&self) -> Status {
        Status::from_raw(self.status.get())
    }

    /// Replace the status, keeping the phase tag.
    pub fn set_status(&mut self, status: Status) {
        self.status = U16::new(status.to_raw(self.phase()));
    }

    /// Phase tag.
    pub fn phase(&self) -> bool {
        self.status.get() & 1 != 0
    }

    /// Set the phase tag.
    pub fn set_phase(&mut self, phase: bool) {
        self.status = U16::new((self.status.get() & !1) | u16::from(phase));
    }

    /// Command identifier.
    pub fn cid(&self) -> u16 {
        self.cid.get()
    }

    /// Dwords 0 and 1 as one 64-bit value (Property Get result, NVMe-oF 1.1, Figure 25).
    pub fn dw01(&self) -> u64 {
        u64::from(self.dw0.get()) | (u64::from(self.dw1.get()) << 32)
    }

    /// Set dwords 0 and 1 from one 64-bit value.
    pub fn set_dw01(&mut self, value: u64) {
        self.dw0 = U32::new(value as u32);
        self.dw1 = U32::new((value >> 32) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::status::GenericStatus;
    use std::mem::offset_of;

    #[test]
    fn cqe_offsets_match_figure_97() {
        assert_eq!(offset_of!(Cqe, sqhd), 8);
        assert_eq!(offset_of!(Cqe, sqid), 10);
        assert_eq!(offset_of!(Cqe, cid), 12);
        assert_eq!(offset_of!(Cqe, status), 14);
    }

    #[test]
    fn status_and_phase_are_independent() {
        let mut cqe = Cqe::new(9, GenericStatus::INVALID_OPCODE.into());
        cqe.set_phase(true);
        assert_eq!(cqe.status.get(), 0x0003);
        cqe.set_status(Status::SUCCESS);
        assert_eq!(cqe.status.get(), 0x0001);
        assert!(cqe.phase());
        assert_eq!(cqe.as_bytes()[12..14], [9, 0]);
    }

    #[test]
    fn dw01_holds_a_64_bit_property_value() {
        let mut cqe = Cqe::default();
        cqe.set_dw01(0x0000_0020_ff01_007f);
        assert_eq!(cqe.dw0.get(), 0xff01_007f);
        assert_eq!(cqe.dw1.get(), 0x20);
        assert_eq!(cqe.dw01(), 0x0000_0020_ff01_007f);
    }
}
