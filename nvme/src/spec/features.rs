//! Get Features / Set Features (NVMe Base 2.0, 5.15 and 5.27, Figures 190-194, 317-345;
//! SPDK `enum spdk_nvme_feat`).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::sqe::Sqe;

/// Feature Identifier (NVMe Base 2.0, Figure 317).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fid(pub u8);

impl Fid {
    /// Arbitration.
    pub const ARBITRATION: Fid = Fid(0x01);
    /// Power Management.
    pub const POWER_MANAGEMENT: Fid = Fid(0x02);
    /// LBA Range Type.
    pub const LBA_RANGE_TYPE: Fid = Fid(0x03);
    /// Temperature Threshold.
    pub const TEMPERATURE_THRESHOLD: Fid = Fid(0x04);
    /// Error Recovery.
    pub const ERROR_RECOVERY: Fid = Fid(0x05);
    /// Volatile Write Cache.
    pub const VOLATILE_WRITE_CACHE: Fid = Fid(0x06);
    /// Number of Queues.
    pub const NUMBER_OF_QUEUES: Fid = Fid(0x07);
    /// Interrupt Coalescing.
    pub const INTERRUPT_COALESCING: Fid = Fid(0x08);
    /// Interrupt Vector Configuration.
    pub const INTERRUPT_VECTOR_CONFIGURATION: Fid = Fid(0x09);
    /// Write Atomicity Normal.
    pub const WRITE_ATOMICITY: Fid = Fid(0x0a);
    /// Asynchronous Event Configuration.
    pub const ASYNC_EVENT_CONFIGURATION: Fid = Fid(0x0b);
    /// Autonomous Power State Transition.
    pub const AUTONOMOUS_POWER_STATE_TRANSITION: Fid = Fid(0x0c);
    /// Host Memory Buffer.
    pub const HOST_MEM_BUFFER: Fid = Fid(0x0d);
    /// Timestamp.
    pub const TIMESTAMP: Fid = Fid(0x0e);
    /// Keep Alive Timer.
    pub const KEEP_ALIVE_TIMER: Fid = Fid(0x0f);
    /// Host Controlled Thermal Management.
    pub const HOST_CONTROLLED_THERMAL_MANAGEMENT: Fid = Fid(0x10);
    /// Non-Operational Power State Config.
    pub const NON_OPERATIONAL_POWER_STATE_CONFIG: Fid = Fid(0x11);
    /// Host Behavior Support.
    pub const HOST_BEHAVIOR_SUPPORT: Fid = Fid(0x16);
    /// Software Progress Marker.
    pub const SOFTWARE_PROGRESS_MARKER: Fid = Fid(0x80);
    /// Host Identifier.
    pub const HOST_IDENTIFIER: Fid = Fid(0x81);
    /// Reservation Notification Mask.
    pub const RESERVATION_NOTIFICATION_MASK: Fid = Fid(0x82);
    /// Reservation Persistence.
    pub const RESERVATION_PERSISTENCE: Fid = Fid(0x83);
}

/// Get Features Select field, CDW10 bits 10:8 (NVMe Base 2.0, Figure 191).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sel(pub u8);

impl Sel {
    /// Current value.
    pub const CURRENT: Sel = Sel(0);
    /// Default value.
    pub const DEFAULT: Sel = Sel(1);
    /// Saved value.
    pub const SAVED: Sel = Sel(2);
    /// Supported capabilities (returned in completion dword 0).
    pub const SUPPORTED: Sel = Sel(3);
}

/// Supported-capabilities bit 0: saveable.
pub const FEAT_CAP_SAVEABLE: u32 = 1 << 0;
/// Supported-capabilities bit 1: namespace specific.
pub const FEAT_CAP_NS_SPECIFIC: u32 = 1 << 1;
/// Supported-capabilities bit 2: changeable.
pub const FEAT_CAP_CHANGEABLE: u32 = 1 << 2;

/// Get Features arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GetFeaturesArgs {
    /// CDW10 bits 7:0.
    pub fid: Fid,
    /// CDW10 bits 10:8.
    pub sel: Sel,
    /// CDW11 (feature specific).
    pub cdw11: u32,
    /// CDW14 bits 6:0: UUID index.
    pub uuid_index: u8,
}

impl GetFeaturesArgs {
    /// Decode from a Get Features SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw10.get();
        GetFeaturesArgs {
            fid: Fid(c10 as u8),
            sel: Sel(((c10 >> 8) & 0x7) as u8),
            cdw11: sqe.cdw11.get(),
            uuid_index: (sqe.cdw14.get() & 0x7f) as u8,
        }
    }

    /// Encode into an SQE.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(u32::from(self.fid.0) | (u32::from(self.sel.0 & 0x7) << 8));
        sqe.cdw11 = U32::new(self.cdw11);
        sqe.cdw14 = U32::new(u32::from(self.uuid_index & 0x7f));
    }
}

/// Set Features arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetFeaturesArgs {
    /// CDW10 bits 7:0.
    pub fid: Fid,
    /// CDW10 bit 31: save across resets.
    pub save: bool,
    /// CDW11..CDW13 (feature specific).
    pub cdw11: u32,
    /// CDW12.
    pub cdw12: u32,
    /// CDW13.
    pub cdw13: u32,
    /// CDW14 bits 6:0: UUID index.
    pub uuid_index: u8,
}

impl SetFeaturesArgs {
    /// Decode from a Set Features SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw10.get();
        SetFeaturesArgs {
            fid: Fid(c10 as u8),
            save: c10 & (1 << 31) != 0,
            cdw11: sqe.cdw11.get(),
            cdw12: sqe.cdw12.get(),
            cdw13: sqe.cdw13.get(),
            uuid_index: (sqe.cdw14.get() & 0x7f) as u8,
        }
    }

    /// Encode into an SQE.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(u32::from(self.fid.0) | (u32::from(self.save) << 31));
        sqe.cdw11 = U32::new(self.cdw11);
        sqe.cdw12 = U32::new(self.cdw12);
        sqe.cdw13 = U32::new(self.cdw13);
        sqe.cdw14 = U32::new(u32::from(self.uuid_index & 0x7f));
    }
}

/// Number of Queues (FID 07h): 0-based counts of I/O SQs (bits 15:0) and CQs (bits 31:16), in
/// Set Features CDW11 and in the completion dword 0 (NVMe Base 2.0, Figures 327-328).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NumberOfQueues {
    /// Number of I/O submission queues, 0-based.
    pub nsqr: u16,
    /// Number of I/O completion queues, 0-based.
    pub ncqr: u16,
}

impl NumberOfQueues {
    /// Decode from CDW11 or completion dword 0.
    pub const fn from_dw(dw: u32) -> Self {
        NumberOfQueues {
            nsqr: dw as u16,
            ncqr: (dw >> 16) as u16,
        }
    }

    /// Encode.
    pub const fn to_dw(self) -> u32 {
        (self.nsqr as u32) | ((self.ncqr as u32) << 16)
    }
}

/// Async Event Configuration bits 7:0: SMART / health critical warnings.
pub const AEC_SMART_MASK: u32 = 0xff;
/// Async Event Configuration bits 4:0: the five critical warnings every NVMe 1.3 controller
/// knows (available spare, temperature, reliability, read-only, volatile memory backup); the
/// value SPDK's host enables. Bits 7:5 are newer (PMR, ...) and a controller may refuse them
/// (the Linux kernel target answers Invalid Field).
pub const AEC_CRIT_WARN_NVME13: u32 = 0x1f;
/// Async Event Configuration bit 8: namespace attribute notices.
pub const AEC_NS_ATTR_NOTICE: u32 = 1 << 8;
/// Async Event Configuration bit 9: firmware activation notices.
pub const AEC_FW_ACTIVATION_NOTICE: u32 = 1 << 9;
/// Async Event Configuration bit 10: telemetry log notices.
pub const AEC_TELEMETRY_LOG_NOTICE: u32 = 1 << 10;
/// Async Event Configuration bit 11: ANA change notices.
pub const AEC_ANA_CHANGE_NOTICE: u32 = 1 << 11;
/// Async Event Configuration bit 31: discovery log page change notices.
pub const AEC_DISCOVERY_LOG_CHANGE_NOTICE: u32 = 1 << 31;

/// Volatile Write Cache CDW11 bit 0: write cache enable (WCE).
pub const VWC_WCE: u32 = 1 << 0;
/// Error Recovery CDW11 bits 15:0: time limited error recovery (TLER, 100 ms units).
pub const ERROR_RECOVERY_TLER_MASK: u32 = 0xffff;
/// Error Recovery CDW11 bit 16: deallocated or unwritten logical block error enable (DULBE).
pub const ERROR_RECOVERY_DULBE: u32 = 1 << 16;
/// Write Atomicity CDW11 bit 0: disable normal (DN).
pub const WRITE_ATOMICITY_DN: u32 = 1 << 0;
/// Host Identifier CDW11 bit 0: extended (128-bit) host identifier (EXHID).
pub const HOST_ID_EXHID: u32 = 1 << 0;
/// Reservation Notification Mask bit 1: mask registration preempted (REGPRE).
pub const RESV_MASK_REGPRE: u32 = 1 << 1;
/// Reservation Notification Mask bit 2: mask reservation released (RESREL).
pub const RESV_MASK_RESREL: u32 = 1 << 2;
/// Reservation Notification Mask bit 3: mask reservation preempted (RESPRE).
pub const RESV_MASK_RESPRE: u32 = 1 << 3;
/// Reservation Persistence CDW11 bit 0: persist through power loss (PTPL).
pub const RESV_PERSIST_PTPL: u32 = 1 << 0;

/// Arbitration (FID 01h) CDW11 fields (NVMe Base 2.0, Figure 320).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Arbitration {
    /// Arbitration burst (bits 2:0).
    pub ab: u8,
    /// Low priority weight (bits 15:8).
    pub lpw: u8,
    /// Medium priority weight (bits 23:16).
    pub mpw: u8,
    /// High priority weight (bits 31:24).
    pub hpw: u8,
}

impl Arbitration {
    /// Decode from CDW11.
    pub const fn from_dw(dw: u32) -> Self {
        Arbitration {
            ab: (dw & 0x7) as u8,
            lpw: (dw >> 8) as u8,
            mpw: (dw >> 16) as u8,
            hpw: (dw >> 24) as u8,
        }
    }

    /// Encode.
    pub const fn to_dw(self) -> u32 {
        ((self.ab & 0x7) as u32)
            | ((self.lpw as u32) << 8)
            | ((self.mpw as u32) << 16)
            | ((self.hpw as u32) << 24)
    }
}

/// Temperature Threshold (FID 04h) CDW11 fields (NVMe Base 2.0, Figure 323).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TemperatureThreshold {
    /// Threshold in Kelvin (bits 15:0).
    pub tmpth: u16,
    /// Threshold temperature select (bits 19:16).
    pub tmpsel: u8,
    /// Threshold type select (bits 21:20): 0 over, 1 under.
    pub thsel: u8,
}

impl TemperatureThreshold {
    /// Decode from CDW11.
    pub const fn from_dw(dw: u32) -> Self {
        TemperatureThreshold {
            tmpth: dw as u16,
            tmpsel: ((dw >> 16) & 0xf) as u8,
            thsel: ((dw >> 20) & 0x3) as u8,
        }
    }

    /// Encode.
    pub const fn to_dw(self) -> u32 {
        (self.tmpth as u32)
            | (((self.tmpsel & 0xf) as u32) << 16)
            | (((self.thsel & 0x3) as u32) << 20)
    }
}

/// Interrupt Coalescing (FID 08h): aggregation threshold (bits 7:0) and time (bits 15:8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InterruptCoalescing {
    /// Aggregation threshold, 0-based.
    pub thr: u8,
    /// Aggregation time (100 us units).
    pub time: u8,
}

impl InterruptCoalescing {
    /// Decode from CDW11.
    pub const fn from_dw(dw: u32) -> Self {
        InterruptCoalescing {
            thr: dw as u8,
            time: (dw >> 8) as u8,
        }
    }

    /// Encode.
    pub const fn to_dw(self) -> u32 {
        (self.thr as u32) | ((self.time as u32) << 8)
    }
}

/// Host Behavior Support data structure, 512 bytes (NVMe Base 2.0, Figure 345).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct HostBehaviorSupport {
    /// Advanced command retry enable.
    pub acre: u8,
    /// Extended telemetry data area 4 supported.
    pub etdas: u8,
    /// LBA format extension enable.
    pub lbafee: u8,
    /// Reserved.
    pub rsvd: [u8; 509],
}
const_assert_eq!(size_of::<HostBehaviorSupport>(), 512);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_features_decodes_fid_and_sel() {
        let mut sqe = Sqe::new(0x0a, 1);
        GetFeaturesArgs {
            fid: Fid::KEEP_ALIVE_TIMER,
            sel: Sel::SUPPORTED,
            cdw11: 0,
            uuid_index: 0,
        }
        .apply(&mut sqe);
        assert_eq!(sqe.cdw10.get(), 0x0000_030f);
        let a = GetFeaturesArgs::from_sqe(&sqe);
        assert_eq!(a.fid, Fid::KEEP_ALIVE_TIMER);
        assert_eq!(a.sel, Sel::SUPPORTED);
    }

    #[test]
    fn set_features_save_bit_is_bit_31() {
        let mut sqe = Sqe::new(0x09, 1);
        SetFeaturesArgs {
            fid: Fid::NUMBER_OF_QUEUES,
            save: true,
            cdw11: 0x003f_003f,
            ..Default::default()
        }
        .apply(&mut sqe);
        assert_eq!(sqe.cdw10.get(), 0x8000_0007);
        let a = SetFeaturesArgs::from_sqe(&sqe);
        assert!(a.save);
        assert_eq!(
            NumberOfQueues::from_dw(a.cdw11),
            NumberOfQueues { nsqr: 63, ncqr: 63 }
        );
    }

    #[test]
    fn feature_field_encodings() {
        // SPDK's default 127 I/O queues -> dw0 0x007e007e.
        assert_eq!(
            NumberOfQueues {
                nsqr: 126,
                ncqr: 126
            }
            .to_dw(),
            0x007e_007e
        );
        let arb = Arbitration {
            ab: 7,
            lpw: 1,
            mpw: 2,
            hpw: 3,
        };
        assert_eq!(arb.to_dw(), 0x0302_0107);
        assert_eq!(Arbitration::from_dw(0x0302_0107), arb);
        let t = TemperatureThreshold {
            tmpth: 343,
            tmpsel: 0,
            thsel: 1,
        };
        assert_eq!(t.to_dw(), 0x0010_0157);
        assert_eq!(TemperatureThreshold::from_dw(t.to_dw()), t);
        assert_eq!(
            InterruptCoalescing::from_dw(0x0a05),
            InterruptCoalescing { thr: 5, time: 10 }
        );
    }
}
