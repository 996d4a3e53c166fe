//! Command opcodes (NVMe Base 2.0, 5 Figure 138 admin; NVM Command Set 1.0, Figure 13;
//! NVMe-oF 1.1, 3.1 Figure 9 fabrics command types). Unknown values are just values of the
//! newtype: decoding never fails, the controller answers Invalid Command Opcode.

macro_rules! opcode_consts {
    ($ty:ident { $($(#[$m:meta])* $name:ident = $val:expr;)* }) => {
        impl $ty {
            $($(#[$m])* pub const $name: $ty = $ty($val);)*

            /// The constant's name, if this value has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

/// Data transfer direction encoded in opcode bits 1:0 (NVMe Base 2.0, Figure 138 note).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataTransfer {
    /// 00b: no data transfer.
    None,
    /// 01b: host to controller (write-like).
    HostToController,
    /// 10b: controller to host (read-like).
    ControllerToHost,
    /// 11b: bidirectional.
    Bidirectional,
}

impl DataTransfer {
    /// Direction from the low two bits of an opcode (or of a fabrics command type).
    pub const fn from_opcode(opc: u8) -> Self {
        match opc & 0x3 {
            0 => DataTransfer::None,
            1 => DataTransfer::HostToController,
            2 => DataTransfer::ControllerToHost,
            _ => DataTransfer::Bidirectional,
        }
    }
}

/// Admin command opcode (NVMe Base 2.0, Figure 138; SPDK `enum spdk_nvme_admin_opcode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdminOpcode(pub u8);

opcode_consts!(AdminOpcode {
    /// Delete I/O Submission Queue.
    DELETE_IO_SQ = 0x00;
    /// Create I/O Submission Queue.
    CREATE_IO_SQ = 0x01;
    /// Get Log Page.
    GET_LOG_PAGE = 0x02;
    /// Delete I/O Completion Queue.
    DELETE_IO_CQ = 0x04;
    /// Create I/O Completion Queue.
    CREATE_IO_CQ = 0x05;
    /// Identify.
    IDENTIFY = 0x06;
    /// Abort.
    ABORT = 0x08;
    /// Set Features.
    SET_FEATURES = 0x09;
    /// Get Features.
    GET_FEATURES = 0x0a;
    /// Asynchronous Event Request.
    ASYNC_EVENT_REQUEST = 0x0c;
    /// Namespace Management.
    NS_MANAGEMENT = 0x0d;
    /// Firmware Commit.
    FIRMWARE_COMMIT = 0x10;
    /// Firmware Image Download.
    FIRMWARE_IMAGE_DOWNLOAD = 0x11;
    /// Device Self-test.
    DEVICE_SELF_TEST = 0x14;
    /// Namespace Attachment.
    NS_ATTACHMENT = 0x15;
    /// Keep Alive.
    KEEP_ALIVE = 0x18;
    /// Directive Send.
    DIRECTIVE_SEND = 0x19;
    /// Directive Receive.
    DIRECTIVE_RECEIVE = 0x1a;
    /// Virtualization Management.
    VIRTUALIZATION_MANAGEMENT = 0x1c;
    /// NVMe-MI Send.
    NVME_MI_SEND = 0x1d;
    /// NVMe-MI Receive.
    NVME_MI_RECEIVE = 0x1e;
    /// Capacity Management.
    CAPACITY_MANAGEMENT = 0x20;
    /// Lockdown.
    LOCKDOWN = 0x24;
    /// Doorbell Buffer Config.
    DOORBELL_BUFFER_CONFIG = 0x7c;
    /// Fabrics command (see [`FabricsCommandType`]).
    FABRICS = 0x7f;
    /// Format NVM.
    FORMAT_NVM = 0x80;
    /// Security Send.
    SECURITY_SEND = 0x81;
    /// Security Receive.
    SECURITY_RECEIVE = 0x82;
    /// Sanitize.
    SANITIZE = 0x84;
    /// Get LBA Status.
    GET_LBA_STATUS = 0x86;
});

impl AdminOpcode {
    /// Data transfer direction from bits 1:0.
    pub const fn data_transfer(self) -> DataTransfer {
        DataTransfer::from_opcode(self.0)
    }
}

/// NVM command set I/O opcode (NVM Command Set 1.0, Figure 13; SPDK `enum spdk_nvm_opcode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NvmOpcode(pub u8);

opcode_consts!(NvmOpcode {
    /// Flush.
    FLUSH = 0x00;
    /// Write.
    WRITE = 0x01;
    /// Read.
    READ = 0x02;
    /// Write Uncorrectable.
    WRITE_UNCORRECTABLE = 0x04;
    /// Compare.
    COMPARE = 0x05;
    /// Write Zeroes.
    WRITE_ZEROES = 0x08;
    /// Dataset Management.
    DATASET_MANAGEMENT = 0x09;
    /// Verify.
    VERIFY = 0x0c;
    /// Reservation Register.
    RESERVATION_REGISTER = 0x0d;
    /// Reservation Report.
    RESERVATION_REPORT = 0x0e;
    /// Reservation Acquire.
    RESERVATION_ACQUIRE = 0x11;
    /// Reservation Release.
    RESERVATION_RELEASE = 0x15;
    /// Copy.
    COPY = 0x19;
    /// Fabrics command on an I/O queue (Connect, Authentication).
    FABRICS = 0x7f;
});

impl NvmOpcode {
    /// Data transfer direction from bits 1:0.
    pub const fn data_transfer(self) -> DataTransfer {
        DataTransfer::from_opcode(self.0)
    }
}

/// Fabrics command type, SQE byte 4 of opcode 7Fh (NVMe-oF 1.1, Figure 9;
/// SPDK `enum spdk_nvmf_fabric_cmd_types`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FabricsCommandType(pub u8);

opcode_consts!(FabricsCommandType {
    /// Property Set.
    PROPERTY_SET = 0x00;
    /// Connect.
    CONNECT = 0x01;
    /// Property Get.
    PROPERTY_GET = 0x04;
    /// Authentication Send.
    AUTHENTICATION_SEND = 0x05;
    /// Authentication Receive.
    AUTHENTICATION_RECV = 0x06;
    /// Disconnect.
    DISCONNECT = 0x08;
});

impl FabricsCommandType {
    /// Data transfer direction from bits 1:0.
    pub const fn data_transfer(self) -> DataTransfer {
        DataTransfer::from_opcode(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_comes_from_low_two_bits() {
        assert_eq!(
            NvmOpcode::WRITE.data_transfer(),
            DataTransfer::HostToController
        );
        assert_eq!(
            NvmOpcode::READ.data_transfer(),
            DataTransfer::ControllerToHost
        );
        assert_eq!(NvmOpcode::FLUSH.data_transfer(), DataTransfer::None);
        assert_eq!(
            AdminOpcode::IDENTIFY.data_transfer(),
            DataTransfer::ControllerToHost
        );
        assert_eq!(
            AdminOpcode::FABRICS.data_transfer(),
            DataTransfer::Bidirectional
        );
        assert_eq!(
            FabricsCommandType::CONNECT.data_transfer(),
            DataTransfer::HostToController
        );
        assert_eq!(
            FabricsCommandType::PROPERTY_GET.data_transfer(),
            DataTransfer::None
        );
    }

    #[test]
    fn unknown_opcode_is_a_plain_value() {
        let op = AdminOpcode(0xc1);
        assert_eq!(op.name(), None);
        assert_eq!(AdminOpcode(0x18).name(), Some("KEEP_ALIVE"));
        assert_eq!(NvmOpcode(0x19), NvmOpcode::COPY);
    }
}
