//! NVM command set I/O command fields and Abort (NVM Command Set 1.0, 3.2-3.3, Figures 29-67;
//! NVMe Base 2.0, 5.1 Abort, 7.2-7.6 reservations).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::sqe::Sqe;
use crate::Error;

/// CDW12 bit 31: limited retry.
pub const RW_LR: u32 = 1 << 31;
/// CDW12 bit 30: force unit access.
pub const RW_FUA: u32 = 1 << 30;
/// Write Zeroes CDW12 bit 25: deallocate.
pub const WZ_DEAC: u32 = 1 << 25;

/// Read, Write, Compare, Verify and Write Zeroes fields (NVM Command Set 1.0, Figures 44-47,
/// 59-62).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReadWrite {
    /// Starting LBA (CDW10-11).
    pub slba: u64,
    /// Number of logical blocks, 0-based (CDW12 bits 15:0).
    pub nlb: u16,
    /// Limited retry (CDW12 bit 31).
    pub lr: bool,
    /// Force unit access (CDW12 bit 30).
    pub fua: bool,
    /// Protection information field (CDW12 bits 29:26).
    pub prinfo: u8,
    /// Deallocate (Write Zeroes only, CDW12 bit 25).
    pub deac: bool,
    /// Directive type (writes, CDW12 bits 23:20).
    pub dtype: u8,
    /// Dataset management hints (CDW13 bits 7:0).
    pub dsm: u8,
    /// Directive specific (CDW13 bits 31:16).
    pub dspec: u16,
}

impl ReadWrite {
    /// Decode from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c12 = sqe.cdw12.get();
        let c13 = sqe.cdw13.get();
        ReadWrite {
            slba: u64::from(sqe.cdw10.get()) | (u64::from(sqe.cdw11.get()) << 32),
            nlb: c12 as u16,
            lr: c12 & RW_LR != 0,
            fua: c12 & RW_FUA != 0,
            prinfo: ((c12 >> 26) & 0xf) as u8,
            deac: c12 & WZ_DEAC != 0,
            dtype: ((c12 >> 20) & 0xf) as u8,
            dsm: c13 as u8,
            dspec: (c13 >> 16) as u16,
        }
    }

    /// Number of logical blocks, 1-based.
    pub fn num_blocks(&self) -> u32 {
        u32::from(self.nlb) + 1
    }

    /// Last LBA touched, `None` if `slba + nlb` overflows.
    pub fn last_lba(&self) -> Option<u64> {
        self.slba.checked_add(u64::from(self.nlb))
    }

    /// Encode into CDW10..CDW13.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(self.slba as u32);
        sqe.cdw11 = U32::new((self.slba >> 32) as u32);
        let mut c12 = u32::from(self.nlb)
            | (u32::from(self.prinfo & 0xf) << 26)
            | (u32::from(self.dtype & 0xf) << 20);
        if self.lr {
            c12 |= RW_LR;
        }
        if self.fua {
            c12 |= RW_FUA;
        }
        if self.deac {
            c12 |= WZ_DEAC;
        }
        sqe.cdw12 = U32::new(c12);
        sqe.cdw13 = U32::new(u32::from(self.dsm) | (u32::from(self.dspec) << 16));
    }
}

/// Dataset Management CDW11 bit 0: integral dataset for read.
pub const DSM_IDR: u32 = 1 << 0;
/// Dataset Management CDW11 bit 1: integral dataset for write.
pub const DSM_IDW: u32 = 1 << 1;
/// Dataset Management CDW11 bit 2: deallocate (AD).
pub const DSM_AD: u32 = 1 << 2;
/// Maximum ranges in one Dataset Management command.
pub const DSM_MAX_RANGES: usize = 256;

/// Dataset Management arguments (NVM Command Set 1.0, Figures 39-40).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DatasetManagement {
    /// Number of ranges, 0-based (CDW10 bits 7:0).
    pub nr: u8,
    /// Attributes (CDW11: `DSM_IDR`, `DSM_IDW`, `DSM_AD`).
    pub attributes: u32,
}

impl DatasetManagement {
    /// Decode from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        DatasetManagement {
            nr: sqe.cdw10.get() as u8,
            attributes: sqe.cdw11.get(),
        }
    }

    /// Number of ranges, 1-based.
    pub fn num_ranges(&self) -> usize {
        usize::from(self.nr) + 1
    }

    /// True if the deallocate attribute is set.
    pub fn deallocate(&self) -> bool {
        self.attributes & DSM_AD != 0
    }

    /// Encode into CDW10..CDW11.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(u32::from(self.nr));
        sqe.cdw11 = U32::new(self.attributes);
    }
}

/// Dataset Management range, 16 bytes (NVM Command Set 1.0, Figure 41). NLB is 1-based here.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct DsmRange {
    /// Context attributes.
    pub cattr: U32,
    /// Length in logical blocks.
    pub nlb: U32,
    /// Starting LBA.
    pub slba: U64,
}
const_assert_eq!(size_of::<DsmRange>(), 16);

/// View the first `count` Dataset Management ranges of `data`; `data` must hold at least
/// `count` 16-byte ranges (extra bytes are ignored, as an SGL may describe a larger buffer).
pub fn dsm_ranges(data: &[u8], count: usize) -> Result<&[DsmRange], Error> {
    typed_prefix("Dataset Management ranges", data, count)
}

/// View the first `count` Copy source range entries (descriptor format 0) of `data`.
pub fn copy_source_ranges(data: &[u8], count: usize) -> Result<&[CopySourceRange], Error> {
    typed_prefix("Copy source ranges", data, count)
}

fn typed_prefix<'a, T>(what: &'static str, data: &'a [u8], count: usize) -> Result<&'a [T], Error>
where
    T: FromBytes + KnownLayout + Immutable,
{
    let need = count.saturating_mul(size_of::<T>());
    let bytes = data.get(..need).ok_or(Error::Length {
        what,
        need,
        got: data.len(),
    })?;
    <[T]>::ref_from_bytes(bytes).map_err(|_| Error::Length {
        what,
        need,
        got: data.len(),
    })
}

/// Copy arguments (NVM Command Set 1.0, 3.3.2, Figures 32-33).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CopyArgs {
    /// Starting destination LBA (CDW10-11).
    pub sdlba: u64,
    /// Number of ranges, 0-based (CDW12 bits 7:0).
    pub nr: u8,
    /// Descriptor format (CDW12 bits 11:8); 0 is the only one defined here.
    pub desc_format: u8,
    /// Limited retry.
    pub lr: bool,
    /// Force unit access.
    pub fua: bool,
}

impl CopyArgs {
    /// Decode from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c12 = sqe.cdw12.get();
        CopyArgs {
            sdlba: u64::from(sqe.cdw10.get()) | (u64::from(sqe.cdw11.get()) << 32),
            nr: c12 as u8,
            desc_format: ((c12 >> 8) & 0xf) as u8,
            lr: c12 & RW_LR != 0,
            fua: c12 & RW_FUA != 0,
        }
    }

    /// Number of source ranges, 1-based.
    pub fn num_ranges(&self) -> usize {
        usize::from(self.nr) + 1
    }

    /// Encode into CDW10..CDW12.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(self.sdlba as u32);
        sqe.cdw11 = U32::new((self.sdlba >> 32) as u32);
        let mut c12 = u32::from(self.nr) | (u32::from(self.desc_format & 0xf) << 8);
        if self.lr {
            c12 |= RW_LR;
        }
        if self.fua {
            c12 |= RW_FUA;
        }
        sqe.cdw12 = U32::new(c12);
    }
}

/// Copy source range entry, descriptor format 0, 32 bytes (NVM Command Set 1.0, Figure 34).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CopySourceRange {
    /// Reserved.
    pub rsvd0: [u8; 8],
    /// Starting LBA.
    pub slba: U64,
    /// Number of logical blocks, 0-based.
    pub nlb: U16,
    /// Reserved.
    pub rsvd18: [u8; 6],
    /// Expected initial logical block reference tag.
    pub eilbrt: U32,
    /// Expected logical block application tag.
    pub elbat: U16,
    /// Expected logical block application tag mask.
    pub elbatm: U16,
}
const_assert_eq!(size_of::<CopySourceRange>(), 32);

/// Abort arguments: CDW10 SQID bits 15:0, CID bits 31:16 (NVMe Base 2.0, Figure 141). In the
/// completion, dword 0 bit 0 is set if the command was *not* aborted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Abort {
    /// Submission queue of the command to abort.
    pub sqid: u16,
    /// Command identifier to abort.
    pub cid: u16,
}

impl Abort {
    /// Decode from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw10.get();
        Abort {
            sqid: c10 as u16,
            cid: (c10 >> 16) as u16,
        }
    }

    /// Encode into CDW10.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(u32::from(self.sqid) | (u32::from(self.cid) << 16));
    }
}

/// Abort completion dword 0 bit 0: the command was not aborted.
pub const ABORT_DW0_NOT_ABORTED: u32 = 1;

/// Reservation type (NVMe Base 2.0, Figure 556).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReservationType(pub u8);

impl ReservationType {
    /// Write Exclusive.
    pub const WRITE_EXCLUSIVE: ReservationType = ReservationType(1);
    /// Exclusive Access.
    pub const EXCLUSIVE_ACCESS: ReservationType = ReservationType(2);
    /// Write Exclusive - Registrants Only.
    pub const WRITE_EXCLUSIVE_REG_ONLY: ReservationType = ReservationType(3);
    /// Exclusive Access - Registrants Only.
    pub const EXCLUSIVE_ACCESS_REG_ONLY: ReservationType = ReservationType(4);
    /// Write Exclusive - All Registrants.
    pub const WRITE_EXCLUSIVE_ALL_REGS: ReservationType = ReservationType(5);
    /// Exclusive Access - All Registrants.
    pub const EXCLUSIVE_ACCESS_ALL_REGS: ReservationType = ReservationType(6);
}

/// Reservation Register / Acquire / Release CDW10 fields (NVMe Base 2.0, 7.3, 7.5, 7.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReservationArgs {
    /// Action (RREGA / RACQA / RRELA), CDW10 bits 2:0.
    pub action: u8,
    /// Ignore existing key, CDW10 bit 3.
    pub iekey: bool,
    /// Reservation type (acquire/release), CDW10 bits 15:8.
    pub rtype: ReservationType,
    /// Change persist through power loss state (register), CDW10 bits 31:30.
    pub cptpl: u8,
}

impl ReservationArgs {
    /// Decode from an SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw10.get();
        ReservationArgs {
            action: (c10 & 0x7) as u8,
            iekey: c10 & (1 << 3) != 0,
            rtype: ReservationType((c10 >> 8) as u8),
            cptpl: (c10 >> 30) as u8,
        }
    }

    /// Encode into CDW10.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(
            u32::from(self.action & 0x7)
                | (u32::from(self.iekey) << 3)
                | (u32::from(self.rtype.0) << 8)
                | (u32::from(self.cptpl & 0x3) << 30),
        );
    }
}

/// Reservation Register action: register key.
pub const RREGA_REGISTER: u8 = 0;
/// Reservation Register action: unregister key.
pub const RREGA_UNREGISTER: u8 = 1;
/// Reservation Register action: replace key.
pub const RREGA_REPLACE: u8 = 2;
/// Reservation Acquire action: acquire.
pub const RACQA_ACQUIRE: u8 = 0;
/// Reservation Acquire action: preempt.
pub const RACQA_PREEMPT: u8 = 1;
/// Reservation Acquire action: preempt and abort.
pub const RACQA_PREEMPT_AND_ABORT: u8 = 2;
/// Reservation Release action: release.
pub const RRELA_RELEASE: u8 = 0;
/// Reservation Release action: clear.
pub const RRELA_CLEAR: u8 = 1;

/// Reservation Register data, 16 bytes: current and new reservation keys.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ReservationKeyData {
    /// Current reservation key.
    pub crkey: U64,
    /// New (register) or preempt (acquire) reservation key.
    pub nrkey: U64,
}
const_assert_eq!(size_of::<ReservationKeyData>(), 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_fields_decode_from_cdws() {
        let mut sqe = Sqe::new(0x01, 1);
        sqe.cdw10 = U32::new(0x89ab_cdef);
        sqe.cdw11 = U32::new(0x0123_4567);
        sqe.cdw12 = U32::new(RW_FUA | RW_LR | 0x00ff);
        let rw = ReadWrite::from_sqe(&sqe);
        assert_eq!(rw.slba, 0x0123_4567_89ab_cdef);
        assert_eq!(rw.nlb, 0xff);
        assert_eq!(rw.num_blocks(), 256);
        assert!(rw.fua && rw.lr && !rw.deac);
        let mut back = Sqe::new(0x01, 1);
        rw.apply(&mut back);
        assert_eq!(back.cdws(), sqe.cdws());
        let over = ReadWrite {
            slba: u64::MAX,
            nlb: 1,
            ..Default::default()
        };
        assert_eq!(over.last_lba(), None);
    }

    #[test]
    fn write_zeroes_deac_is_bit_25() {
        let mut sqe = Sqe::new(0x08, 1);
        ReadWrite {
            slba: 8,
            nlb: 7,
            deac: true,
            ..Default::default()
        }
        .apply(&mut sqe);
        assert_eq!(sqe.cdw12.get(), 0x0200_0007);
    }

    #[test]
    fn dsm_range_layout_and_args() {
        let r = DsmRange {
            cattr: U32::new(0),
            nlb: U32::new(16),
            slba: U64::new(1024),
        };
        assert_eq!(r.as_bytes()[4..8], [16, 0, 0, 0]);
        assert_eq!(r.as_bytes()[8..16], 1024u64.to_le_bytes());
        let mut sqe = Sqe::new(0x09, 1);
        DatasetManagement {
            nr: 2,
            attributes: DSM_AD,
        }
        .apply(&mut sqe);
        let d = DatasetManagement::from_sqe(&sqe);
        assert_eq!(d.num_ranges(), 3);
        assert!(d.deallocate());
    }

    #[test]
    fn dsm_ranges_view_requires_enough_bytes() {
        let mut data = vec![0u8; 40];
        data[4] = 8;
        data[8] = 0x10;
        data[16 + 4] = 1;
        let r = dsm_ranges(&data, 2).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].nlb.get(), 8);
        assert_eq!(r[0].slba.get(), 0x10);
        assert_eq!(r[1].nlb.get(), 1);
        assert_eq!(
            dsm_ranges(&data, 3).unwrap_err(),
            Error::Length {
                what: "Dataset Management ranges",
                need: 48,
                got: 40
            }
        );
        assert_eq!(copy_source_ranges(&[0u8; 64], 2).unwrap().len(), 2);
        assert!(copy_source_ranges(&[0u8; 63], 2).is_err());
    }

    #[test]
    fn copy_and_source_range_layout() {
        let mut sqe = Sqe::new(0x19, 1);
        CopyArgs {
            sdlba: 100,
            nr: 1,
            desc_format: 0,
            lr: false,
            fua: true,
        }
        .apply(&mut sqe);
        assert_eq!(sqe.cdw12.get(), RW_FUA | 1);
        assert_eq!(CopyArgs::from_sqe(&sqe).num_ranges(), 2);
        assert_eq!(std::mem::offset_of!(CopySourceRange, slba), 8);
        assert_eq!(std::mem::offset_of!(CopySourceRange, nlb), 16);
        assert_eq!(std::mem::offset_of!(CopySourceRange, eilbrt), 24);
    }

    #[test]
    fn abort_and_reservation_cdw10() {
        let mut sqe = Sqe::new(0x08, 1);
        Abort { sqid: 2, cid: 0x55 }.apply(&mut sqe);
        assert_eq!(sqe.cdw10.get(), 0x0055_0002);
        assert_eq!(Abort::from_sqe(&sqe), Abort { sqid: 2, cid: 0x55 });
        let a = ReservationArgs {
            action: RACQA_PREEMPT,
            iekey: true,
            rtype: ReservationType::EXCLUSIVE_ACCESS,
            cptpl: 0,
        };
        a.apply(&mut sqe);
        assert_eq!(sqe.cdw10.get(), 0x0000_0209);
        assert_eq!(ReservationArgs::from_sqe(&sqe), a);
    }
}
