//! Completion status: Status Code Type, Status Code and the CQE status field
//! (NVMe Base 2.0, 4.6.1.2 "Status Field Definition", Figures 98-105).

use std::fmt;

macro_rules! status_consts {
    ($ty:ident { $($(#[$m:meta])* $name:ident = $val:expr;)* }) => {
        impl $ty {
            $($(#[$m])* pub const $name: $ty = $ty($val);)*

            /// The constant's name, if this value has one.
            pub fn name(self) -> Option<&'static str> {
                #[allow(unreachable_patterns)]
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

/// Status Code Type (SCT), CQE status bits 11:9 (NVMe Base 2.0, Figure 100).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sct(pub u8);

status_consts!(Sct {
    /// Generic Command Status.
    GENERIC = 0x0;
    /// Command Specific Status.
    COMMAND_SPECIFIC = 0x1;
    /// Media and Data Integrity Errors.
    MEDIA_ERROR = 0x2;
    /// Path Related Status.
    PATH = 0x3;
    /// Vendor Specific.
    VENDOR_SPECIFIC = 0x7;
});

/// Generic Command Status values, SCT 0h (NVMe Base 2.0, Figures 101 and 102;
/// SPDK `enum spdk_nvme_generic_command_status_code`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GenericStatus(pub u8);

status_consts!(GenericStatus {
    /// Successful Completion.
    SUCCESS = 0x00;
    /// Invalid Command Opcode.
    INVALID_OPCODE = 0x01;
    /// Invalid Field in Command.
    INVALID_FIELD = 0x02;
    /// Command ID Conflict.
    CID_CONFLICT = 0x03;
    /// Data Transfer Error.
    DATA_TRANSFER_ERROR = 0x04;
    /// Commands Aborted due to Power Loss Notification.
    ABORTED_POWER_LOSS = 0x05;
    /// Internal Error.
    INTERNAL_DEVICE_ERROR = 0x06;
    /// Command Abort Requested.
    ABORTED_BY_REQUEST = 0x07;
    /// Command Aborted due to SQ Deletion.
    ABORTED_SQ_DELETION = 0x08;
    /// Command Aborted due to Failed Fused Command.
    ABORTED_FAILED_FUSED = 0x09;
    /// Command Aborted due to Missing Fused Command.
    ABORTED_MISSING_FUSED = 0x0a;
    /// Invalid Namespace or Format.
    INVALID_NAMESPACE_OR_FORMAT = 0x0b;
    /// Command Sequence Error.
    COMMAND_SEQUENCE_ERROR = 0x0c;
    /// Invalid SGL Segment Descriptor.
    INVALID_SGL_SEG_DESCRIPTOR = 0x0d;
    /// Invalid Number of SGL Descriptors.
    INVALID_NUM_SGL_DESCRIPTORS = 0x0e;
    /// Data SGL Length Invalid.
    DATA_SGL_LENGTH_INVALID = 0x0f;
    /// Metadata SGL Length Invalid.
    METADATA_SGL_LENGTH_INVALID = 0x10;
    /// SGL Descriptor Type Invalid.
    SGL_DESCRIPTOR_TYPE_INVALID = 0x11;
    /// Invalid Use of Controller Memory Buffer.
    INVALID_CONTROLLER_MEM_BUF = 0x12;
    /// PRP Offset Invalid.
    INVALID_PRP_OFFSET = 0x13;
    /// Atomic Write Unit Exceeded.
    ATOMIC_WRITE_UNIT_EXCEEDED = 0x14;
    /// Operation Denied.
    OPERATION_DENIED = 0x15;
    /// SGL Offset Invalid.
    INVALID_SGL_OFFSET = 0x16;
    /// Host Identifier Inconsistent Format.
    HOSTID_INCONSISTENT_FORMAT = 0x18;
    /// Keep Alive Timer Expired.
    KEEP_ALIVE_EXPIRED = 0x19;
    /// Keep Alive Timeout Invalid.
    KEEP_ALIVE_INVALID = 0x1a;
    /// Command Aborted due to Preempt and Abort.
    ABORTED_PREEMPT = 0x1b;
    /// Sanitize Failed.
    SANITIZE_FAILED = 0x1c;
    /// Sanitize In Progress.
    SANITIZE_IN_PROGRESS = 0x1d;
    /// SGL Data Block Granularity Invalid.
    SGL_DATA_BLOCK_GRANULARITY_INVALID = 0x1e;
    /// Command Not Supported for Queue in CMB.
    COMMAND_INVALID_IN_CMB = 0x1f;
    /// Namespace is Write Protected.
    NAMESPACE_IS_WRITE_PROTECTED = 0x20;
    /// Command Interrupted.
    COMMAND_INTERRUPTED = 0x21;
    /// Transient Transport Error.
    TRANSIENT_TRANSPORT_ERROR = 0x22;
    /// Command Prohibited by Command and Feature Lockdown.
    COMMAND_PROHIBITED_BY_LOCKDOWN = 0x23;
    /// Admin Command Media Not Ready.
    ADMIN_COMMAND_MEDIA_NOT_READY = 0x24;
    /// LBA Out of Range (NVM command set).
    LBA_OUT_OF_RANGE = 0x80;
    /// Capacity Exceeded.
    CAPACITY_EXCEEDED = 0x81;
    /// Namespace Not Ready.
    NAMESPACE_NOT_READY = 0x82;
    /// Reservation Conflict.
    RESERVATION_CONFLICT = 0x83;
    /// Format In Progress.
    FORMAT_IN_PROGRESS = 0x84;
});

impl GenericStatus {
    /// SPDK's (misspelled) name for [`GenericStatus::INVALID_NUM_SGL_DESCRIPTORS`].
    pub const INVALID_NUM_SGL_DESCIRPTORS: GenericStatus =
        GenericStatus::INVALID_NUM_SGL_DESCRIPTORS;
}

/// Command Specific Status values, SCT 1h (NVMe Base 2.0, Figure 103; NVMe-oF 1.1, Figure 21
/// for Connect; NVM Command Set 1.0, Figure 17; SPDK `enum spdk_nvme_command_specific_status_code`).
/// The same code means different things for different commands (0x80..0x85 differ between
/// Connect and NVM I/O commands), hence the separate names with equal values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandSpecificStatus(pub u8);

status_consts!(CommandSpecificStatus {
    /// Completion Queue Invalid.
    COMPLETION_QUEUE_INVALID = 0x00;
    /// Invalid Queue Identifier.
    INVALID_QUEUE_IDENTIFIER = 0x01;
    /// Invalid Queue Size.
    INVALID_QUEUE_SIZE = 0x02;
    /// Abort Command Limit Exceeded.
    ABORT_COMMAND_LIMIT_EXCEEDED = 0x03;
    /// Asynchronous Event Request Limit Exceeded.
    ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED = 0x05;
    /// Invalid Firmware Slot.
    INVALID_FIRMWARE_SLOT = 0x06;
    /// Invalid Firmware Image.
    INVALID_FIRMWARE_IMAGE = 0x07;
    /// Invalid Interrupt Vector.
    INVALID_INTERRUPT_VECTOR = 0x08;
    /// Invalid Log Page.
    INVALID_LOG_PAGE = 0x09;
    /// Invalid Format.
    INVALID_FORMAT = 0x0a;
    /// Firmware Activation Requires Conventional Reset.
    FIRMWARE_REQ_CONVENTIONAL_RESET = 0x0b;
    /// Invalid Queue Deletion.
    INVALID_QUEUE_DELETION = 0x0c;
    /// Feature Identifier Not Saveable.
    FEATURE_ID_NOT_SAVEABLE = 0x0d;
    /// Feature Not Changeable.
    FEATURE_NOT_CHANGEABLE = 0x0e;
    /// Feature Not Namespace Specific.
    FEATURE_NOT_NAMESPACE_SPECIFIC = 0x0f;
    /// Firmware Activation Requires NVM Subsystem Reset.
    FIRMWARE_REQ_NVM_RESET = 0x10;
    /// Firmware Activation Requires Controller Level Reset.
    FIRMWARE_REQ_RESET = 0x11;
    /// Firmware Activation Requires Maximum Time Violation.
    FIRMWARE_REQ_MAX_TIME_VIOLATION = 0x12;
    /// Firmware Activation Prohibited.
    FIRMWARE_ACTIVATION_PROHIBITED = 0x13;
    /// Overlapping Range.
    OVERLAPPING_RANGE = 0x14;
    /// Namespace Insufficient Capacity.
    NAMESPACE_INSUFFICIENT_CAPACITY = 0x15;
    /// Namespace Identifier Unavailable.
    NAMESPACE_ID_UNAVAILABLE = 0x16;
    /// Namespace Already Attached.
    NAMESPACE_ALREADY_ATTACHED = 0x18;
    /// Namespace Is Private.
    NAMESPACE_IS_PRIVATE = 0x19;
    /// Namespace Not Attached.
    NAMESPACE_NOT_ATTACHED = 0x1a;
    /// Thin Provisioning Not Supported.
    THINPROVISIONING_NOT_SUPPORTED = 0x1b;
    /// Controller List Invalid.
    CONTROLLER_LIST_INVALID = 0x1c;
    /// Device Self-test In Progress.
    DEVICE_SELF_TEST_IN_PROGRESS = 0x1d;
    /// Boot Partition Write Prohibited.
    BOOT_PARTITION_WRITE_PROHIBITED = 0x1e;
    /// Invalid Controller Identifier.
    INVALID_CTRLR_ID = 0x1f;
    /// Invalid Secondary Controller State.
    INVALID_SECONDARY_CTRLR_STATE = 0x20;
    /// Invalid Number of Controller Resources.
    INVALID_NUM_CTRLR_RESOURCES = 0x21;
    /// Invalid Resource Identifier.
    INVALID_RESOURCE_ID = 0x22;
    /// Sanitize Prohibited While Persistent Memory Region is Enabled.
    SANITIZE_PROHIBITED_WHILE_PMR_ENABLED = 0x23;
    /// ANA Group Identifier Invalid.
    ANA_GROUP_ID_INVALID = 0x24;
    /// ANA Attach Failed.
    ANA_ATTACH_FAILED = 0x25;
    /// Insufficient Capacity.
    INSUFFICIENT_CAPACITY = 0x26;
    /// Namespace Attachment Limit Exceeded.
    NAMESPACE_ATTACH_LIMIT_EXCEEDED = 0x27;
    /// Prohibition of Command Execution Not Supported.
    PROHIBIT_CMD_EXEC_NOT_SUPPORTED = 0x28;
    /// I/O Command Set Not Supported.
    IOCS_NOT_SUPPORTED = 0x29;
    /// I/O Command Set Not Enabled.
    IOCS_NOT_ENABLED = 0x2a;
    /// I/O Command Set Combination Rejected.
    IOCS_COMBINATION_REJECTED = 0x2b;
    /// Invalid I/O Command Set.
    INVALID_IOCS = 0x2c;
    /// Identifier Unavailable.
    IDENTIFIER_UNAVAILABLE = 0x2d;
    /// Fabrics Connect: Incompatible Format (NVMe-oF 1.1, Figure 21).
    INCOMPATIBLE_FORMAT = 0x80;
    /// Fabrics Connect: Controller Busy.
    CONTROLLER_BUSY = 0x81;
    /// Fabrics Connect: Connect Invalid Parameters (see IATTR/IPO in the response).
    CONNECT_INVALID_PARAMETERS = 0x82;
    /// Fabrics Connect: Connect Restart Discovery.
    CONNECT_RESTART_DISCOVERY = 0x83;
    /// Fabrics Connect: Connect Invalid Host.
    CONNECT_INVALID_HOST = 0x84;
    /// Fabrics Connect: Invalid Queue Type.
    INVALID_QUEUE_TYPE = 0x85;
    /// Fabrics: Discover Restart.
    DISCOVERY_RESTART = 0x90;
    /// Fabrics: Authentication Required.
    AUTH_REQUIRED = 0x91;
    /// NVM: Conflicting Attributes (Dataset Management, Read, Write).
    CONFLICTING_ATTRIBUTES = 0x80;
    /// NVM: Invalid Protection Information.
    INVALID_PROTECTION_INFO = 0x81;
    /// NVM: Attempted Write to Read Only Range.
    ATTEMPTED_WRITE_TO_RO_RANGE = 0x82;
    /// NVM: Command Size Limit Exceeded (Copy, Dataset Management).
    COMMAND_SIZE_LIMIT_EXCEEDED = 0x83;
});

/// Media and Data Integrity Error values, SCT 2h (NVMe Base 2.0, Figure 104; NVM Command Set 1.0,
/// Figure 18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaStatus(pub u8);

status_consts!(MediaStatus {
    /// Write Fault.
    WRITE_FAULTS = 0x80;
    /// Unrecovered Read Error.
    UNRECOVERED_READ_ERROR = 0x81;
    /// End-to-end Guard Check Error.
    GUARD_CHECK_ERROR = 0x82;
    /// End-to-end Application Tag Check Error.
    APPLICATION_TAG_CHECK_ERROR = 0x83;
    /// End-to-end Reference Tag Check Error.
    REFERENCE_TAG_CHECK_ERROR = 0x84;
    /// Compare Failure.
    COMPARE_FAILURE = 0x85;
    /// Access Denied.
    ACCESS_DENIED = 0x86;
    /// Deallocated or Unwritten Logical Block.
    DEALLOCATED_OR_UNWRITTEN_BLOCK = 0x87;
    /// End-to-End Storage Tag Check Error.
    STORAGE_TAG_CHECK_ERROR = 0x88;
});

/// Path Related Status values, SCT 3h (NVMe Base 2.0, Figure 105).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathStatus(pub u8);

status_consts!(PathStatus {
    /// Internal Path Error.
    INTERNAL_PATH_ERROR = 0x00;
    /// Asymmetric Access Persistent Loss.
    ASYMMETRIC_ACCESS_PERSISTENT_LOSS = 0x01;
    /// Asymmetric Access Inaccessible.
    ASYMMETRIC_ACCESS_INACCESSIBLE = 0x02;
    /// Asymmetric Access Transition.
    ASYMMETRIC_ACCESS_TRANSITION = 0x03;
    /// Controller Pathing Error.
    CONTROLLER_PATH_ERROR = 0x60;
    /// Host Pathing Error.
    HOST_PATH_ERROR = 0x70;
    /// Command Aborted By Host.
    ABORTED_BY_HOST = 0x71;
});

/// A decoded completion status (the CQE status field without the phase tag).
///
/// Wire layout of the 16-bit status field (NVMe Base 2.0, Figure 99): bit 0 P (phase tag),
/// bits 8:1 SC, bits 11:9 SCT, bits 13:12 CRD, bit 14 M (more), bit 15 DNR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Status {
    /// Status Code Type.
    pub sct: Sct,
    /// Status Code, interpreted according to `sct`.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
    /// More: extra information in the Error Information log page.
    pub more: bool,
    /// Command Retry Delay selector (0 = none, 1..=3 select CRDT1..3); only bits 1:0 are kept.
    pub crd: u8,
}

const SC_SHIFT: u16 = 1;
const SCT_SHIFT: u16 = 9;
const CRD_SHIFT: u16 = 12;
const MORE_BIT: u16 = 1 << 14;
const DNR_BIT: u16 = 1 << 15;

impl Status {
    /// Successful completion.
    pub const SUCCESS: Status = Status::new(Sct::GENERIC, 0);

    /// A status with the given type and code, no DNR, no More, no CRD.
    pub const fn new(sct: Sct, sc: u8) -> Self {
        Status {
            sct,
            sc,
            dnr: false,
            more: false,
            crd: 0,
        }
    }

    /// The same status with Do Not Retry set.
    pub const fn with_dnr(mut self) -> Self {
        self.dnr = true;
        self
    }

    /// The same status with the Command Retry Delay selector set (`crd & 3`).
    pub const fn with_crd(mut self, crd: u8) -> Self {
        self.crd = crd & 0x3;
        self
    }

    /// True for Generic / Successful Completion.
    pub fn is_success(&self) -> bool {
        self.sct == Sct::GENERIC && self.sc == GenericStatus::SUCCESS.0
    }

    /// Decode the 16-bit CQE status field (the phase tag, bit 0, is ignored).
    pub const fn from_raw(raw: u16) -> Self {
        Status {
            sct: Sct(((raw >> SCT_SHIFT) & 0x7) as u8),
            sc: ((raw >> SC_SHIFT) & 0xff) as u8,
            dnr: raw & DNR_BIT != 0,
            more: raw & MORE_BIT != 0,
            crd: ((raw >> CRD_SHIFT) & 0x3) as u8,
        }
    }

    /// Encode the 16-bit CQE status field with the given phase tag.
    pub const fn to_raw(&self, phase: bool) -> u16 {
        let mut raw = (phase as u16)
            | ((self.sc as u16) << SC_SHIFT)
            | (((self.sct.0 & 0x7) as u16) << SCT_SHIFT)
            | (((self.crd & 0x3) as u16) << CRD_SHIFT);
        if self.more {
            raw |= MORE_BIT;
        }
        if self.dnr {
            raw |= DNR_BIT;
        }
        raw
    }
}

impl From<GenericStatus> for Status {
    fn from(sc: GenericStatus) -> Self {
        Status::new(Sct::GENERIC, sc.0)
    }
}

impl From<CommandSpecificStatus> for Status {
    fn from(sc: CommandSpecificStatus) -> Self {
        Status::new(Sct::COMMAND_SPECIFIC, sc.0)
    }
}

impl From<MediaStatus> for Status {
    fn from(sc: MediaStatus) -> Self {
        Status::new(Sct::MEDIA_ERROR, sc.0)
    }
}

impl From<PathStatus> for Status {
    fn from(sc: PathStatus) -> Self {
        Status::new(Sct::PATH, sc.0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.sct {
            Sct::GENERIC => GenericStatus(self.sc).name(),
            Sct::MEDIA_ERROR => MediaStatus(self.sc).name(),
            Sct::PATH => PathStatus(self.sc).name(),
            _ => None,
        };
        write!(f, "sct {:#x} sc {:#04x}", self.sct.0, self.sc)?;
        if let Some(name) = name {
            write!(f, " ({name})")?;
        }
        if self.dnr {
            f.write_str(" dnr")?;
        }
        if self.more {
            f.write_str(" m")?;
        }
        if self.crd != 0 {
            write!(f, " crd {}", self.crd)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_field_bit_positions_match_figure_99() {
        let s = Status {
            sct: Sct::COMMAND_SPECIFIC,
            sc: 0x82,
            dnr: true,
            more: true,
            crd: 2,
        };
        // DNR(15) M(14) CRD=2(13:12) SCT=1(11:9) SC=0x82(8:1) P=1
        let raw = s.to_raw(true);
        assert_eq!(raw, 0x8000 | 0x4000 | 0x2000 | 0x0200 | (0x82 << 1) | 1);
        assert_eq!(Status::from_raw(raw), s);
    }

    #[test]
    fn success_encodes_to_zero_without_phase() {
        assert_eq!(Status::SUCCESS.to_raw(false), 0);
        assert_eq!(Status::SUCCESS.to_raw(true), 1);
        assert!(Status::from_raw(1).is_success());
    }

    #[test]
    fn invalid_field_with_dnr_matches_spdk_value() {
        // SPDK logs "INVALID FIELD (00/02)" with dnr: raw 0x4004 | DNR.
        let s: Status = GenericStatus::INVALID_FIELD.into();
        assert_eq!(s.with_dnr().to_raw(false), 0x8004);
    }

    #[test]
    fn generic_status_values_match_nvme_base_2_0() {
        assert_eq!(GenericStatus::INVALID_SGL_OFFSET.0, 0x16);
        assert_eq!(GenericStatus::HOSTID_INCONSISTENT_FORMAT.0, 0x18);
        assert_eq!(GenericStatus::TRANSIENT_TRANSPORT_ERROR.0, 0x22);
        assert_eq!(GenericStatus::FORMAT_IN_PROGRESS.0, 0x84);
        assert_eq!(
            GenericStatus(0x0e).name(),
            Some("INVALID_NUM_SGL_DESCRIPTORS")
        );
        assert_eq!(GenericStatus(0x17).name(), None);
    }

    #[test]
    fn display_names_known_codes() {
        let s = Status::from(PathStatus::ASYMMETRIC_ACCESS_INACCESSIBLE).with_dnr();
        assert_eq!(
            s.to_string(),
            "sct 0x3 sc 0x02 (ASYMMETRIC_ACCESS_INACCESSIBLE) dnr"
        );
    }
}
