//! Controller properties (registers) reached by fabrics Property Get/Set (NVMe Base 2.0, 3.1.3
//! "Controller Properties", Figure 33; NVMe-oF 1.1, 3.4-3.5).

/// Property offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropertyOffset(pub u32);

impl PropertyOffset {
    /// Controller Capabilities (8 bytes).
    pub const CAP: PropertyOffset = PropertyOffset(0x00);
    /// Version (4 bytes).
    pub const VS: PropertyOffset = PropertyOffset(0x08);
    /// Interrupt Mask Set (PCIe only).
    pub const INTMS: PropertyOffset = PropertyOffset(0x0c);
    /// Interrupt Mask Clear (PCIe only).
    pub const INTMC: PropertyOffset = PropertyOffset(0x10);
    /// Controller Configuration (4 bytes).
    pub const CC: PropertyOffset = PropertyOffset(0x14);
    /// Controller Status (4 bytes).
    pub const CSTS: PropertyOffset = PropertyOffset(0x1c);
    /// NVM Subsystem Reset (4 bytes).
    pub const NSSR: PropertyOffset = PropertyOffset(0x20);
    /// Admin Queue Attributes (PCIe).
    pub const AQA: PropertyOffset = PropertyOffset(0x24);
    /// Admin SQ Base Address (PCIe, 8 bytes).
    pub const ASQ: PropertyOffset = PropertyOffset(0x28);
    /// Admin CQ Base Address (PCIe, 8 bytes).
    pub const ACQ: PropertyOffset = PropertyOffset(0x30);
    /// Controller Memory Buffer Location.
    pub const CMBLOC: PropertyOffset = PropertyOffset(0x38);
    /// Controller Memory Buffer Size.
    pub const CMBSZ: PropertyOffset = PropertyOffset(0x3c);
    /// Controller Ready Timeouts (4 bytes).
    pub const CRTO: PropertyOffset = PropertyOffset(0x68);
}

/// Size of a property access: Property Get/Set ATTRIB bits 2:0 (NVMe-oF 1.1, Figures 22/24).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PropertySize {
    /// 000b: 4 bytes.
    Four,
    /// 001b: 8 bytes.
    Eight,
}

impl PropertySize {
    /// Decode ATTRIB; values other than 0 and 1 are reserved.
    pub fn from_attrib(attrib: u8) -> Result<Self, crate::Error> {
        match attrib & 0x7 {
            0 => Ok(PropertySize::Four),
            1 => Ok(PropertySize::Eight),
            v => Err(crate::Error::InvalidPropertySize(v)),
        }
    }

    /// ATTRIB encoding.
    pub const fn attrib(self) -> u8 {
        match self {
            PropertySize::Four => 0,
            PropertySize::Eight => 1,
        }
    }

    /// Size in bytes.
    pub const fn bytes(self) -> u32 {
        match self {
            PropertySize::Four => 4,
            PropertySize::Eight => 8,
        }
    }
}

const fn bits64(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

const fn set64(v: u64, lo: u32, width: u32, x: u64) -> u64 {
    let mask = ((1u64 << width) - 1) << lo;
    (v & !mask) | ((x << lo) & mask)
}

const fn bits32(v: u32, lo: u32, width: u32) -> u32 {
    (v >> lo) & ((1u32 << width) - 1)
}

const fn set32(v: u32, lo: u32, width: u32, x: u32) -> u32 {
    let mask = ((1u32 << width) - 1) << lo;
    (v & !mask) | ((x << lo) & mask)
}

macro_rules! field {
    ($(#[$m:meta])* $get:ident, $set:ident, $bits:ident, $setf:ident, $t:ty, $lo:expr, $w:expr) => {
        $(#[$m])*
        pub const fn $get(&self) -> $t {
            $bits(self.0, $lo, $w) as $t
        }

        #[doc = concat!("Set the `", stringify!($get), "` field (value truncated to its width).")]
        pub const fn $set(mut self, v: $t) -> Self {
            self.0 = $setf(self.0, $lo, $w, v as _);
            self
        }
    };
}

/// Controller Capabilities, CAP (NVMe Base 2.0, Figure 36).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cap(pub u64);

impl Cap {
    field!(/// MQES bits 15:0: maximum queue entries supported, 0-based.
        mqes, with_mqes, bits64, set64, u16, 0, 16);
    field!(/// CQR bit 16: contiguous queues required.
        cqr, with_cqr, bits64, set64, u8, 16, 1);
    field!(/// AMS bits 18:17: arbitration mechanisms supported (bit 0 WRR, bit 1 vendor).
        ams, with_ams, bits64, set64, u8, 17, 2);
    field!(/// TO bits 31:24: ready timeout in 500 ms units.
        to, with_to, bits64, set64, u8, 24, 8);
    field!(/// DSTRD bits 35:32: doorbell stride (2 ^ (2 + DSTRD) bytes).
        dstrd, with_dstrd, bits64, set64, u8, 32, 4);
    field!(/// NSSRS bit 36: NVM subsystem reset supported.
        nssrs, with_nssrs, bits64, set64, u8, 36, 1);
    field!(/// CSS bits 44:37: command sets supported (bit 0 NVM, bit 6 I/O command sets, bit 7 admin only).
        css, with_css, bits64, set64, u8, 37, 8);
    field!(/// BPS bit 45: boot partition support.
        bps, with_bps, bits64, set64, u8, 45, 1);
    field!(/// CPS bits 47:46: controller power scope.
        cps, with_cps, bits64, set64, u8, 46, 2);
    field!(/// MPSMIN bits 51:48: minimum memory page size (2 ^ (12 + MPSMIN)).
        mpsmin, with_mpsmin, bits64, set64, u8, 48, 4);
    field!(/// MPSMAX bits 55:52: maximum memory page size (2 ^ (12 + MPSMAX)).
        mpsmax, with_mpsmax, bits64, set64, u8, 52, 4);
    field!(/// PMRS bit 56: persistent memory region supported.
        pmrs, with_pmrs, bits64, set64, u8, 56, 1);
    field!(/// CMBS bit 57: controller memory buffer supported.
        cmbs, with_cmbs, bits64, set64, u8, 57, 1);
    field!(/// NSSS bit 58: NVM subsystem shutdown supported.
        nsss, with_nsss, bits64, set64, u8, 58, 1);
    field!(/// CRMS bits 60:59: controller ready modes supported (bit 0 CRWMS, bit 1 CRIMS).
        crms, with_crms, bits64, set64, u8, 59, 2);
}

/// CAP.CSS bit 0: NVM command set.
pub const CAP_CSS_NVM: u8 = 0x01;
/// CAP.CSS bit 6: one or more I/O command sets.
pub const CAP_CSS_IOCS: u8 = 0x40;
/// CAP.CSS bit 7: no I/O command set (admin only).
pub const CAP_CSS_NO_IOCS: u8 = 0x80;

/// Version, VS (NVMe Base 2.0, Figure 37).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vs(pub u32);

impl Vs {
    /// NVMe 1.3.
    pub const V1_3: Vs = Vs::new(1, 3, 0);
    /// NVMe 1.4 (what SPDK 25.09 reports).
    pub const V1_4: Vs = Vs::new(1, 4, 0);
    /// NVMe 2.0.
    pub const V2_0: Vs = Vs::new(2, 0, 0);

    /// Build from major, minor, tertiary.
    pub const fn new(mjr: u16, mnr: u8, ter: u8) -> Self {
        Vs(((mjr as u32) << 16) | ((mnr as u32) << 8) | ter as u32)
    }

    /// Major version, bits 31:16.
    pub const fn mjr(&self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// Minor version, bits 15:8.
    pub const fn mnr(&self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Tertiary version, bits 7:0.
    pub const fn ter(&self) -> u8 {
        self.0 as u8
    }
}

/// Controller Configuration, CC (NVMe Base 2.0, Figure 41).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cc(pub u32);

impl Cc {
    field!(/// EN bit 0: enable.
        en, with_en, bits32, set32, u8, 0, 1);
    field!(/// CSS bits 6:4: I/O command set selected (0 NVM, 6 all supported IOCS, 7 admin only).
        css, with_css, bits32, set32, u8, 4, 3);
    field!(/// MPS bits 10:7: memory page size (2 ^ (12 + MPS)).
        mps, with_mps, bits32, set32, u8, 7, 4);
    field!(/// AMS bits 13:11: arbitration mechanism selected.
        ams, with_ams, bits32, set32, u8, 11, 3);
    field!(/// SHN bits 15:14: shutdown notification (see [`Shn`]).
        shn, with_shn, bits32, set32, u8, 14, 2);
    field!(/// IOSQES bits 19:16: I/O SQ entry size (2 ^ n; 6 for 64 bytes).
        iosqes, with_iosqes, bits32, set32, u8, 16, 4);
    field!(/// IOCQES bits 23:20: I/O CQ entry size (2 ^ n; 4 for 16 bytes).
        iocqes, with_iocqes, bits32, set32, u8, 20, 4);
    field!(/// CRIME bit 24: controller ready independent of media enable.
        crime, with_crime, bits32, set32, u8, 24, 1);
}

/// CC.SHN values (NVMe Base 2.0, Figure 41).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shn(pub u8);

impl Shn {
    /// No notification.
    pub const NONE: Shn = Shn(0);
    /// Normal shutdown.
    pub const NORMAL: Shn = Shn(1);
    /// Abrupt shutdown.
    pub const ABRUPT: Shn = Shn(2);
}

/// Controller Status, CSTS (NVMe Base 2.0, Figure 42).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Csts(pub u32);

impl Csts {
    field!(/// RDY bit 0: ready.
        rdy, with_rdy, bits32, set32, u8, 0, 1);
    field!(/// CFS bit 1: controller fatal status.
        cfs, with_cfs, bits32, set32, u8, 1, 1);
    field!(/// SHST bits 3:2: shutdown status (see [`Shst`]).
        shst, with_shst, bits32, set32, u8, 2, 2);
    field!(/// NSSRO bit 4: NVM subsystem reset occurred.
        nssro, with_nssro, bits32, set32, u8, 4, 1);
    field!(/// PP bit 5: processing paused.
        pp, with_pp, bits32, set32, u8, 5, 1);
    field!(/// ST bit 6: shutdown type.
        st, with_st, bits32, set32, u8, 6, 1);
}

/// CSTS.SHST values (NVMe Base 2.0, Figure 42).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shst(pub u8);

impl Shst {
    /// Normal operation.
    pub const NORMAL: Shst = Shst(0);
    /// Shutdown processing occurring.
    pub const OCCURRING: Shst = Shst(1);
    /// Shutdown processing complete.
    pub const COMPLETE: Shst = Shst(2);
}

/// NSSR value that triggers an NVM subsystem reset ("NVMe" in ASCII, NVMe Base 2.0, Figure 43).
pub const NSSR_RESET_VALUE: u32 = 0x4E56_4D65;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields_match_spdk_default_target() {
        // SPDK TCP target: MQES=127, CQR=1, TO=30 (15 s), CSS NVM, MPSMIN=MPSMAX=0.
        let cap = Cap::default()
            .with_mqes(127)
            .with_cqr(1)
            .with_to(30)
            .with_css(CAP_CSS_NVM)
            .with_crms(3);
        assert_eq!(cap.0, 0x1800_0020_1e01_007f);
        assert_eq!(cap.mqes(), 127);
        assert_eq!(cap.to(), 30);
        assert_eq!(cap.css(), 1);
        assert_eq!(cap.crms(), 3);
        assert_eq!(Cap(0x00f0_0000_0000_0000).mpsmax(), 0xf);
    }

    #[test]
    fn cc_fields_decode_linux_host_enable_value() {
        // Linux nvme-fabrics writes CC = 0x460001: EN, IOSQES=6, IOCQES=4.
        let cc = Cc(0x0046_0001);
        assert_eq!(cc.en(), 1);
        assert_eq!(cc.iosqes(), 6);
        assert_eq!(cc.iocqes(), 4);
        assert_eq!(cc.css(), 0);
        assert_eq!(cc.shn(), 0);
        assert_eq!(Cc(0x4000).shn(), Shn::NORMAL.0);
        assert_eq!(
            Cc::default().with_en(1).with_iosqes(6).with_iocqes(4).0,
            0x0046_0001
        );
        assert_eq!(Cc::default().with_crime(1).0, 1 << 24);
    }

    #[test]
    fn csts_and_vs_fields() {
        let csts = Csts::default().with_rdy(1).with_shst(Shst::COMPLETE.0);
        assert_eq!(csts.0, 0x9);
        assert_eq!(csts.shst(), 2);
        assert_eq!(Vs::V1_4.0, 0x0001_0400);
        assert_eq!(Vs(0x0002_0100).mnr(), 1);
        assert_eq!(Vs::V2_0.mjr(), 2);
    }

    #[test]
    fn property_size_rejects_reserved_attrib() {
        assert_eq!(PropertySize::from_attrib(1), Ok(PropertySize::Eight));
        assert_eq!(
            PropertySize::from_attrib(2),
            Err(crate::Error::InvalidPropertySize(2))
        );
    }
}
