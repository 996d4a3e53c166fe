//! Get Log Page and the log pages the target serves (NVMe Base 2.0, 5.16, Figures 197-231;
//! SPDK `spdk_nvme_*_log_page`), plus Asynchronous Event completion encoding (NVMe Base 2.0,
//! 5.2, Figures 145-150).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::identify::Csi;
use super::sqe::Sqe;
use super::status::Status;

/// Log Page Identifier (NVMe Base 2.0, Figure 202; NVMe-oF discovery).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lid(pub u8);

impl Lid {
    /// Supported Log Pages.
    pub const SUPPORTED_LOG_PAGES: Lid = Lid(0x00);
    /// Error Information.
    pub const ERROR: Lid = Lid(0x01);
    /// SMART / Health Information.
    pub const HEALTH_INFORMATION: Lid = Lid(0x02);
    /// Firmware Slot Information.
    pub const FIRMWARE_SLOT: Lid = Lid(0x03);
    /// Changed Namespace List.
    pub const CHANGED_NS_LIST: Lid = Lid(0x04);
    /// Commands Supported and Effects.
    pub const COMMAND_EFFECTS: Lid = Lid(0x05);
    /// Device Self-test.
    pub const DEVICE_SELF_TEST: Lid = Lid(0x06);
    /// Telemetry Host-Initiated.
    pub const TELEMETRY_HOST_INITIATED: Lid = Lid(0x07);
    /// Telemetry Controller-Initiated.
    pub const TELEMETRY_CTRLR_INITIATED: Lid = Lid(0x08);
    /// Endurance Group Information.
    pub const ENDURANCE_GROUP_INFORMATION: Lid = Lid(0x09);
    /// Asymmetric Namespace Access.
    pub const ASYMMETRIC_NAMESPACE_ACCESS: Lid = Lid(0x0c);
    /// Persistent Event Log.
    pub const PERSISTENT_EVENT_LOG: Lid = Lid(0x0d);
    /// Feature Identifiers Supported and Effects.
    pub const FEATURE_IDS_EFFECTS: Lid = Lid(0x12);
    /// NVMe-MI Commands Supported and Effects.
    pub const NVME_MI_COMMANDS_EFFECTS: Lid = Lid(0x13);
    /// Discovery (fabrics discovery controllers).
    pub const DISCOVERY: Lid = Lid(0x70);
    /// Reservation Notification.
    pub const RESERVATION_NOTIFICATION: Lid = Lid(0x80);
    /// Sanitize Status.
    pub const SANITIZE_STATUS: Lid = Lid(0x81);
}

/// Get Log Page arguments (NVMe Base 2.0, Figures 197-201).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GetLogPageArgs {
    /// CDW10 bits 7:0: log page identifier.
    pub lid: Lid,
    /// CDW10 bits 14:8: log specific parameter.
    pub lsp: u8,
    /// CDW10 bit 15: retain asynchronous event.
    pub rae: bool,
    /// Number of dwords to return, 1-based (NUMDU:NUMDL + 1).
    pub numd: u32,
    /// CDW11 bits 31:16: log specific identifier.
    pub lsi: u16,
    /// Byte offset into the log page (LPOU:LPOL).
    pub offset: u64,
    /// CDW14 bits 6:0: UUID index.
    pub uuid_index: u8,
    /// CDW14 bit 23: offset type (index instead of byte offset).
    pub ot: bool,
    /// CDW14 bits 31:24: command set identifier.
    pub csi: Csi,
}

impl GetLogPageArgs {
    /// Decode from a Get Log Page SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let (c10, c11, c14) = (sqe.cdw10.get(), sqe.cdw11.get(), sqe.cdw14.get());
        let numdl = c10 >> 16;
        let numdu = c11 & 0xffff;
        GetLogPageArgs {
            lid: Lid(c10 as u8),
            lsp: ((c10 >> 8) & 0x7f) as u8,
            rae: c10 & (1 << 15) != 0,
            numd: ((numdu << 16) | numdl).wrapping_add(1),
            lsi: (c11 >> 16) as u16,
            offset: u64::from(sqe.cdw12.get()) | (u64::from(sqe.cdw13.get()) << 32),
            uuid_index: (c14 & 0x7f) as u8,
            ot: c14 & (1 << 23) != 0,
            csi: Csi((c14 >> 24) as u8),
        }
    }

    /// Number of bytes requested (NUMD x 4). NUMD is 1..=2^32 so this never overflows.
    pub fn byte_len(&self) -> u64 {
        if self.numd == 0 {
            // NUMDU:NUMDL = 0xFFFF_FFFF wrapped to 0: 2^32 dwords.
            (1u64 << 32) * 4
        } else {
            u64::from(self.numd) * 4
        }
    }

    /// Build arguments for `len` bytes (rounded down to dwords, at least one) at `offset`.
    pub fn new(lid: Lid, len: u32, offset: u64) -> Self {
        GetLogPageArgs {
            lid,
            numd: (len / 4).max(1),
            offset,
            ..Default::default()
        }
    }

    /// Encode into an SQE's CDW10..CDW14.
    pub fn apply(&self, sqe: &mut Sqe) {
        let n = self.numd.wrapping_sub(1);
        sqe.cdw10 = U32::new(
            u32::from(self.lid.0)
                | (u32::from(self.lsp & 0x7f) << 8)
                | (u32::from(self.rae) << 15)
                | ((n & 0xffff) << 16),
        );
        sqe.cdw11 = U32::new((n >> 16) | (u32::from(self.lsi) << 16));
        sqe.cdw12 = U32::new(self.offset as u32);
        sqe.cdw13 = U32::new((self.offset >> 32) as u32);
        sqe.cdw14 = U32::new(
            u32::from(self.uuid_index & 0x7f)
                | (u32::from(self.ot) << 23)
                | (u32::from(self.csi.0) << 24),
        );
    }
}

/// Supported Log Pages log page: one dword per LID (NVMe Base 2.0, Figure 204).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SupportedLogPages {
    /// LID supported and effects; bit 0 LSUPP, bit 1 IOS.
    pub lids: [U32; 256],
}
const_assert_eq!(size_of::<SupportedLogPages>(), 1024);

/// Supported Log Pages entry bit 0: log page supported.
pub const LID_SUPPORTED: u32 = 1 << 0;

/// Error Information log entry (NVMe Base 2.0, Figure 205).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ErrorInfoEntry {
    /// Error count (unique, incrementing).
    pub error_count: U64,
    /// Submission queue ID.
    pub sqid: U16,
    /// Command ID.
    pub cid: U16,
    /// Status field (bits 15:1) and phase tag (bit 0).
    pub status: U16,
    /// Parameter error location.
    pub error_location: U16,
    /// LBA.
    pub lba: U64,
    /// Namespace.
    pub nsid: U32,
    /// Vendor specific information available.
    pub vs: u8,
    /// Transport type.
    pub trtype: u8,
    /// Reserved.
    pub rsvd30: [u8; 2],
    /// Command specific information.
    pub command_specific: U64,
    /// Transport type specific information.
    pub trtype_specific: U16,
    /// Reserved.
    pub rsvd42: [u8; 22],
}
const_assert_eq!(size_of::<ErrorInfoEntry>(), 64);

impl ErrorInfoEntry {
    /// The recorded status.
    pub fn status(&self) -> Status {
        Status::from_raw(self.status.get())
    }
}

/// SMART / Health Information log page (NVMe Base 2.0, Figure 207).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct HealthLog {
    /// Critical warning bits.
    pub critical_warning: u8,
    /// Composite temperature (K).
    pub temperature: U16,
    /// Available spare (%).
    pub available_spare: u8,
    /// Available spare threshold (%).
    pub available_spare_threshold: u8,
    /// Percentage used.
    pub percentage_used: u8,
    /// Endurance group critical warning summary.
    pub endurance_group_critical_warning: u8,
    /// Reserved.
    pub rsvd7: [u8; 25],
    /// Data units read (1000 x 512 bytes, 128-bit).
    pub data_units_read: [u8; 16],
    /// Data units written (128-bit).
    pub data_units_written: [u8; 16],
    /// Host read commands (128-bit).
    pub host_read_commands: [u8; 16],
    /// Host write commands (128-bit).
    pub host_write_commands: [u8; 16],
    /// Controller busy time (minutes, 128-bit).
    pub controller_busy_time: [u8; 16],
    /// Power cycles (128-bit).
    pub power_cycles: [u8; 16],
    /// Power on hours (128-bit).
    pub power_on_hours: [u8; 16],
    /// Unsafe shutdowns (128-bit).
    pub unsafe_shutdowns: [u8; 16],
    /// Media and data integrity errors (128-bit).
    pub media_errors: [u8; 16],
    /// Number of error information log entries (128-bit).
    pub num_error_info_log_entries: [u8; 16],
    /// Warning composite temperature time (minutes).
    pub warning_temp_time: U32,
    /// Critical composite temperature time (minutes).
    pub critical_temp_time: U32,
    /// Temperature sensors 1..=8 (K).
    pub temp_sensor: [U16; 8],
    /// Thermal management temperature 1 transition count.
    pub tmt1tc: U32,
    /// Thermal management temperature 2 transition count.
    pub tmt2tc: U32,
    /// Total time for thermal management temperature 1.
    pub ttftmt1: U32,
    /// Total time for thermal management temperature 2.
    pub ttftmt2: U32,
    /// Reserved.
    pub rsvd232: [u8; 280],
}
const_assert_eq!(size_of::<HealthLog>(), 512);

impl Default for HealthLog {
    fn default() -> Self {
        HealthLog::new_zeroed()
    }
}

/// Firmware Slot Information log page (NVMe Base 2.0, Figure 208).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FirmwareSlotLog {
    /// Active firmware info: bits 2:0 active slot, bits 6:4 next slot.
    pub afi: u8,
    /// Reserved.
    pub rsvd1: [u8; 7],
    /// Firmware revision for slots 1..=7 (ASCII, space padded).
    pub frs: [[u8; 8]; 7],
    /// Reserved.
    pub rsvd64: [u8; 448],
}
const_assert_eq!(size_of::<FirmwareSlotLog>(), 512);

impl Default for FirmwareSlotLog {
    fn default() -> Self {
        FirmwareSlotLog::new_zeroed()
    }
}

/// Commands Supported and Effects log page (NVMe Base 2.0, Figure 210).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct CommandEffectsLog {
    /// Admin command effects, indexed by opcode.
    pub admin: [U32; 256],
    /// I/O command effects, indexed by opcode.
    pub io: [U32; 256],
    /// Reserved.
    pub rsvd2048: [u8; 2048],
}
const_assert_eq!(size_of::<CommandEffectsLog>(), 4096);

impl Default for CommandEffectsLog {
    fn default() -> Self {
        CommandEffectsLog::new_zeroed()
    }
}

/// Command effects bit 0: command supported (CSUPP).
pub const CMD_EFFECTS_CSUPP: u32 = 1 << 0;
/// Command effects bit 1: logical block content change (LBCC).
pub const CMD_EFFECTS_LBCC: u32 = 1 << 1;
/// Command effects bit 2: namespace capability change (NCC).
pub const CMD_EFFECTS_NCC: u32 = 1 << 2;
/// Command effects bit 3: namespace inventory change (NIC).
pub const CMD_EFFECTS_NIC: u32 = 1 << 3;
/// Command effects bit 4: controller capability change (CCC).
pub const CMD_EFFECTS_CCC: u32 = 1 << 4;
/// Command effects bits 18:16: command submission and execution (CSE) shift.
pub const CMD_EFFECTS_CSE_SHIFT: u32 = 16;

/// ANA log page header (NVMe Base 2.0, Figure 221).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct AnaLogHeader {
    /// Change count.
    pub chgcnt: U64,
    /// Number of ANA group descriptors that follow.
    pub ngrps: U16,
    /// Reserved.
    pub rsvd10: [u8; 6],
}
const_assert_eq!(size_of::<AnaLogHeader>(), 16);

/// ANA group descriptor; followed by `nnsids` 4-byte NSIDs (NVMe Base 2.0, Figure 222).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct AnaGroupDescriptor {
    /// ANA group ID.
    pub anagrpid: U32,
    /// Number of NSIDs that follow (0 when RGO is set).
    pub nnsids: U32,
    /// Change count.
    pub chgcnt: U64,
    /// ANA state (bits 3:0, [`AnaState`]).
    pub state: u8,
    /// Reserved.
    pub rsvd17: [u8; 15],
}
const_assert_eq!(size_of::<AnaGroupDescriptor>(), 32);

/// ANA log LSP bit 0: return groups only (RGO).
pub const ANA_LSP_RGO: u8 = 0x01;

/// Asymmetric namespace access state (NVMe Base 2.0, 8.20.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AnaState(pub u8);

impl AnaState {
    /// Optimized.
    pub const OPTIMIZED: AnaState = AnaState(0x1);
    /// Non-optimized.
    pub const NON_OPTIMIZED: AnaState = AnaState(0x2);
    /// Inaccessible.
    pub const INACCESSIBLE: AnaState = AnaState(0x3);
    /// Persistent loss.
    pub const PERSISTENT_LOSS: AnaState = AnaState(0x4);
    /// Change.
    pub const CHANGE: AnaState = AnaState(0xf);
}

/// Reservation Notification log page (NVMe Base 2.0, Figure 229).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReservationNotificationLog {
    /// Log page count.
    pub log_page_count: U64,
    /// Reservation notification type.
    pub log_type: u8,
    /// Number of available log pages.
    pub num_avail_log_pages: u8,
    /// Reserved.
    pub rsvd10: [u8; 2],
    /// Namespace ID.
    pub nsid: U32,
    /// Reserved.
    pub rsvd16: [u8; 48],
}
const_assert_eq!(size_of::<ReservationNotificationLog>(), 64);

impl Default for ReservationNotificationLog {
    fn default() -> Self {
        ReservationNotificationLog::new_zeroed()
    }
}

/// Reservation notification type: empty log page.
pub const RESERVATION_LOG_EMPTY: u8 = 0;
/// Reservation notification type: registration preempted.
pub const RESERVATION_LOG_REGISTRATION_PREEMPTED: u8 = 1;
/// Reservation notification type: reservation released.
pub const RESERVATION_LOG_RESERVATION_RELEASED: u8 = 2;
/// Reservation notification type: reservation preempted.
pub const RESERVATION_LOG_RESERVATION_PREEMPTED: u8 = 3;

/// Asynchronous event type, completion dword 0 bits 2:0 (NVMe Base 2.0, Figure 146).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsyncEventType(pub u8);

impl AsyncEventType {
    /// Error status.
    pub const ERROR: AsyncEventType = AsyncEventType(0x0);
    /// SMART / health status.
    pub const SMART: AsyncEventType = AsyncEventType(0x1);
    /// Notice.
    pub const NOTICE: AsyncEventType = AsyncEventType(0x2);
    /// Immediate.
    pub const IMMEDIATE: AsyncEventType = AsyncEventType(0x3);
    /// I/O command set specific status.
    pub const IO: AsyncEventType = AsyncEventType(0x6);
    /// Vendor specific.
    pub const VENDOR: AsyncEventType = AsyncEventType(0x7);
}

/// Notice asynchronous event information (NVMe Base 2.0, Figure 149).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoticeInfo(pub u8);

impl NoticeInfo {
    /// Namespace attribute changed (log page 04h).
    pub const NS_ATTR_CHANGED: NoticeInfo = NoticeInfo(0x00);
    /// Firmware activation starting.
    pub const FW_ACTIVATION_START: NoticeInfo = NoticeInfo(0x01);
    /// Telemetry log changed.
    pub const TELEMETRY_LOG_CHANGED: NoticeInfo = NoticeInfo(0x02);
    /// Asymmetric namespace access change (log page 0Ch).
    pub const ANA_CHANGE: NoticeInfo = NoticeInfo(0x03);
    /// Predictable latency event aggregate log change.
    pub const PLE_AGGREGATE_LOG_CHANGE: NoticeInfo = NoticeInfo(0x04);
    /// LBA status information alert.
    pub const LBA_STATUS_ALERT: NoticeInfo = NoticeInfo(0x05);
    /// Endurance group event aggregate log page change.
    pub const EG_AGGREGATE_LOG_CHANGE: NoticeInfo = NoticeInfo(0x06);
    /// Discovery log page change (log page 70h, fabrics).
    pub const DISCOVERY_LOG_CHANGE: NoticeInfo = NoticeInfo(0xf0);
}

/// I/O command set specific event information for the NVM command set.
pub const IO_EVENT_RESERVATION_LOG_AVAIL: u8 = 0x00;
/// Sanitize operation completed.
pub const IO_EVENT_SANITIZE_COMPLETED: u8 = 0x01;

/// An Asynchronous Event Request completion dword 0 (NVMe Base 2.0, Figure 145).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsyncEvent {
    /// Bits 2:0: event type.
    pub event_type: AsyncEventType,
    /// Bits 15:8: event information.
    pub info: u8,
    /// Bits 23:16: log page to read to clear the event.
    pub log_page: Lid,
}

impl AsyncEvent {
    /// A notice event.
    pub const fn notice(info: NoticeInfo, log_page: Lid) -> Self {
        AsyncEvent {
            event_type: AsyncEventType::NOTICE,
            info: info.0,
            log_page,
        }
    }

    /// Encode as completion dword 0.
    pub const fn to_dw0(self) -> u32 {
        ((self.event_type.0 & 0x7) as u32)
            | ((self.info as u32) << 8)
            | ((self.log_page.0 as u32) << 16)
    }

    /// Decode from completion dword 0.
    pub const fn from_dw0(dw0: u32) -> Self {
        AsyncEvent {
            event_type: AsyncEventType((dw0 & 0x7) as u8),
            info: (dw0 >> 8) as u8,
            log_page: Lid((dw0 >> 16) as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn get_log_page_numd_and_offset_decode() {
        let mut sqe = Sqe::new(0x02, 0);
        // LID 02h, RAE, NUMDL=0x7f (128 dwords = 512 bytes), offset 0x1_0000_0008.
        sqe.cdw10 = U32::new(0x007f_8002);
        sqe.cdw11 = U32::new(0);
        sqe.cdw12 = U32::new(8);
        sqe.cdw13 = U32::new(1);
        let a = GetLogPageArgs::from_sqe(&sqe);
        assert_eq!(a.lid, Lid::HEALTH_INFORMATION);
        assert!(a.rae);
        assert_eq!(a.numd, 128);
        assert_eq!(a.byte_len(), 512);
        assert_eq!(a.offset, 0x1_0000_0008);
        let mut back = Sqe::default();
        a.apply(&mut back);
        assert_eq!(back.cdw10.get(), 0x007f_8002);
        assert_eq!(GetLogPageArgs::from_sqe(&back), a);
    }

    #[test]
    fn get_log_page_numdu_extends_length_and_max_does_not_overflow() {
        let mut sqe = Sqe::new(0x02, 0);
        sqe.cdw10 = U32::new(0xffff_0070);
        sqe.cdw11 = U32::new(0x0000_0001);
        assert_eq!(GetLogPageArgs::from_sqe(&sqe).byte_len(), 0x2_0000 * 4);
        sqe.cdw11 = U32::new(0x0000_ffff);
        assert_eq!(GetLogPageArgs::from_sqe(&sqe).byte_len(), 1u64 << 34);
    }

    #[test]
    fn health_and_error_offsets_match_spec() {
        assert_eq!(offset_of!(HealthLog, temperature), 1);
        assert_eq!(offset_of!(HealthLog, data_units_read), 32);
        assert_eq!(offset_of!(HealthLog, media_errors), 160);
        assert_eq!(offset_of!(HealthLog, warning_temp_time), 192);
        assert_eq!(offset_of!(HealthLog, temp_sensor), 200);
        assert_eq!(offset_of!(ErrorInfoEntry, lba), 16);
        assert_eq!(offset_of!(ErrorInfoEntry, nsid), 24);
        assert_eq!(offset_of!(ErrorInfoEntry, command_specific), 32);
        assert_eq!(offset_of!(FirmwareSlotLog, frs), 8);
        assert_eq!(offset_of!(CommandEffectsLog, io), 1024);
        assert_eq!(offset_of!(AnaGroupDescriptor, state), 16);
    }

    #[test]
    fn async_event_dw0_matches_spdk_encoding() {
        // SPDK: NS attribute changed notice = type 2, info 0, log page 4 -> 0x00040002.
        let ev = AsyncEvent::notice(NoticeInfo::NS_ATTR_CHANGED, Lid::CHANGED_NS_LIST);
        assert_eq!(ev.to_dw0(), 0x0004_0002);
        let disc = AsyncEvent::notice(NoticeInfo::DISCOVERY_LOG_CHANGE, Lid::DISCOVERY);
        assert_eq!(disc.to_dw0(), 0x0070_f002);
        assert_eq!(
            AsyncEvent::from_dw0(0x000c_0302),
            AsyncEvent::notice(NoticeInfo::ANA_CHANGE, Lid::ASYMMETRIC_NAMESPACE_ACCESS)
        );
    }
}
