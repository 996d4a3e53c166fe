//! Identify data structures (NVMe Base 2.0, 5.17 Identify command, Figures 273-288; NVM Command
//! Set 1.0, 4.1.5 Identify Namespace; SPDK `struct spdk_nvme_ctrlr_data`, `spdk_nvme_ns_data`).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::nqn::{
    NQN_FIELD_LEN, nqn_field, space_padded_str, write_nul_padded, write_space_padded,
};
use super::sqe::Sqe;
use crate::Error;

/// Size of every Identify data structure.
pub const IDENTIFY_DATA_SIZE: usize = 4096;

/// Controller or Namespace Structure (CNS) values, Identify CDW10 bits 7:0 (NVMe Base 2.0,
/// Figure 274).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cns(pub u8);

impl Cns {
    /// Identify Namespace (NVM command set).
    pub const NAMESPACE: Cns = Cns(0x00);
    /// Identify Controller.
    pub const CONTROLLER: Cns = Cns(0x01);
    /// Active Namespace ID list.
    pub const ACTIVE_NS_LIST: Cns = Cns(0x02);
    /// Namespace Identification Descriptor list.
    pub const NS_ID_DESCRIPTOR_LIST: Cns = Cns(0x03);
    /// NVM Set list.
    pub const NVM_SET_LIST: Cns = Cns(0x04);
    /// I/O command set specific Identify Namespace.
    pub const NAMESPACE_IOCS: Cns = Cns(0x05);
    /// I/O command set specific Identify Controller.
    pub const CONTROLLER_IOCS: Cns = Cns(0x06);
    /// Active Namespace ID list for a command set.
    pub const ACTIVE_NS_LIST_IOCS: Cns = Cns(0x07);
    /// I/O command set independent Identify Namespace.
    pub const NAMESPACE_IOCS_INDEPENDENT: Cns = Cns(0x08);
    /// Allocated Namespace ID list.
    pub const ALLOCATED_NS_LIST: Cns = Cns(0x10);
    /// Identify I/O Command Set data structure.
    pub const IOCS: Cns = Cns(0x1c);
}

/// Command Set Identifier (NVMe Base 2.0, Figure 286 / 5.x "CSI").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Csi(pub u8);

impl Csi {
    /// NVM command set.
    pub const NVM: Csi = Csi(0x00);
    /// Key Value command set.
    pub const KV: Csi = Csi(0x01);
    /// Zoned Namespace command set.
    pub const ZNS: Csi = Csi(0x02);
}

/// Identify command arguments (NVMe Base 2.0, Figures 271-272).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IdentifyArgs {
    /// CDW10 bits 7:0: CNS.
    pub cns: Cns,
    /// CDW10 bits 31:16: controller identifier.
    pub cntid: u16,
    /// CDW11 bits 15:0: CNS specific identifier.
    pub cnssid: u16,
    /// CDW11 bits 31:24: command set identifier.
    pub csi: Csi,
    /// CDW14 bits 6:0: UUID index.
    pub uuid_index: u8,
}

impl IdentifyArgs {
    /// Decode from an Identify SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let cdw10 = sqe.cdw10.get();
        let cdw11 = sqe.cdw11.get();
        IdentifyArgs {
            cns: Cns(cdw10 as u8),
            cntid: (cdw10 >> 16) as u16,
            cnssid: cdw11 as u16,
            csi: Csi((cdw11 >> 24) as u8),
            uuid_index: (sqe.cdw14.get() & 0x7f) as u8,
        }
    }

    /// Encode into an SQE's CDW10, CDW11 and CDW14.
    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.cdw10 = U32::new(u32::from(self.cns.0) | (u32::from(self.cntid) << 16));
        sqe.cdw11 = U32::new(u32::from(self.cnssid) | (u32::from(self.csi.0) << 24));
        sqe.cdw14 = U32::new(u32::from(self.uuid_index & 0x7f));
    }
}

/// Power State Descriptor, 32 bytes (NVMe Base 2.0, Figure 276).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct PowerStateDescriptor {
    /// Maximum power (centiwatts or 0.0001 W depending on MXPS).
    pub mp: U16,
    /// Reserved.
    pub rsvd2: u8,
    /// Bit 0 MXPS, bit 1 NOPS.
    pub flags: u8,
    /// Entry latency (us).
    pub enlat: U32,
    /// Exit latency (us).
    pub exlat: U32,
    /// Relative read throughput.
    pub rrt: u8,
    /// Relative read latency.
    pub rrl: u8,
    /// Relative write throughput.
    pub rwt: u8,
    /// Relative write latency.
    pub rwl: u8,
    /// Idle power.
    pub idlp: U16,
    /// Idle power scale (bits 7:6).
    pub ips: u8,
    /// Reserved.
    pub rsvd19: u8,
    /// Active power.
    pub actp: U16,
    /// Active power workload (bits 2:0) and scale (bits 7:6).
    pub apw_aps: u8,
    /// Reserved.
    pub rsvd23: [u8; 9],
}
const_assert_eq!(size_of::<PowerStateDescriptor>(), 32);

/// Identify Controller data structure (NVMe Base 2.0, Figure 275; NVMe-oF 1.1 Figure 28 for
/// bytes 1792..2047).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: U16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: U16,
    /// Serial number (ASCII, space padded).
    pub sn: [u8; 20],
    /// Model number (ASCII, space padded).
    pub mn: [u8; 40],
    /// Firmware revision (ASCII, space padded).
    pub fr: [u8; 8],
    /// Recommended arbitration burst.
    pub rab: u8,
    /// IEEE OUI identifier.
    pub ieee: [u8; 3],
    /// Controller multi-path I/O and namespace sharing capabilities (`CMIC_*`).
    pub cmic: u8,
    /// Maximum data transfer size (2 ^ n units of CAP.MPSMIN; 0 = no limit).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: U16,
    /// Version (same encoding as the VS property).
    pub ver: U32,
    /// RTD3 resume latency (us).
    pub rtd3r: U32,
    /// RTD3 entry latency (us).
    pub rtd3e: U32,
    /// Optional asynchronous events supported (`OAES_*`).
    pub oaes: U32,
    /// Controller attributes (`CTRATT_*`).
    pub ctratt: U32,
    /// Read recovery levels supported.
    pub rrls: U16,
    /// Reserved.
    pub rsvd102: [u8; 9],
    /// Controller type (`CNTRLTYPE_*`).
    pub cntrltype: u8,
    /// FRU globally unique identifier.
    pub fguid: [u8; 16],
    /// Command retry delay time 1 (100 ms units).
    pub crdt1: U16,
    /// Command retry delay time 2.
    pub crdt2: U16,
    /// Command retry delay time 3.
    pub crdt3: U16,
    /// Reserved.
    pub rsvd134: [u8; 119],
    /// NVM subsystem report.
    pub nvmsr: u8,
    /// VPD write cycle information.
    pub vwci: u8,
    /// Management endpoint capabilities.
    pub mec: u8,
    /// Optional admin command support (`OACS_*`).
    pub oacs: U16,
    /// Abort command limit (0-based).
    pub acl: u8,
    /// Asynchronous event request limit (0-based).
    pub aerl: u8,
    /// Firmware updates (`FRMW_*`).
    pub frmw: u8,
    /// Log page attributes (`LPA_*`).
    pub lpa: u8,
    /// Error log page entries (0-based).
    pub elpe: u8,
    /// Number of power states support (0-based).
    pub npss: u8,
    /// Admin vendor specific command configuration.
    pub avscc: u8,
    /// Autonomous power state transition attributes.
    pub apsta: u8,
    /// Warning composite temperature threshold (K).
    pub wctemp: U16,
    /// Critical composite temperature threshold (K).
    pub cctemp: U16,
    /// Maximum time for firmware activation (100 ms units).
    pub mtfa: U16,
    /// Host memory buffer preferred size (4 KiB units).
    pub hmpre: U32,
    /// Host memory buffer minimum size.
    pub hmmin: U32,
    /// Total NVM capacity (bytes, 128-bit).
    pub tnvmcap: [u8; 16],
    /// Unallocated NVM capacity (bytes, 128-bit).
    pub unvmcap: [u8; 16],
    /// Replay protected memory block support.
    pub rpmbs: U32,
    /// Extended device self-test time (minutes).
    pub edstt: U16,
    /// Device self-test options.
    pub dsto: u8,
    /// Firmware update granularity (4 KiB units).
    pub fwug: u8,
    /// Keep alive support: granularity in 100 ms units (0 = not supported).
    pub kas: U16,
    /// Host controlled thermal management attributes.
    pub hctma: U16,
    /// Minimum thermal management temperature.
    pub mntmt: U16,
    /// Maximum thermal management temperature.
    pub mxtmt: U16,
    /// Sanitize capabilities.
    pub sanicap: U32,
    /// Host memory buffer minimum descriptor entry size.
    pub hmminds: U32,
    /// Host memory maximum descriptors entries.
    pub hmmaxd: U16,
    /// NVM set identifier maximum.
    pub nsetidmax: U16,
    /// Endurance group identifier maximum.
    pub endgidmax: U16,
    /// ANA transition time (s).
    pub anatt: u8,
    /// Asymmetric namespace access capabilities (`ANACAP_*`).
    pub anacap: u8,
    /// ANA group identifier maximum.
    pub anagrpmax: U32,
    /// Number of ANA group identifiers.
    pub nanagrpid: U32,
    /// Persistent event log size (64 KiB units).
    pub pels: U32,
    /// Domain identifier.
    pub domainid: U16,
    /// Reserved.
    pub rsvd358: [u8; 10],
    /// Max endurance group capacity (128-bit).
    pub megcap: [u8; 16],
    /// Reserved.
    pub rsvd384: [u8; 128],
    /// SQ entry size: bits 3:0 required, bits 7:4 maximum (powers of two).
    pub sqes: u8,
    /// CQ entry size: bits 3:0 required, bits 7:4 maximum.
    pub cqes: u8,
    /// Maximum outstanding commands (fabrics).
    pub maxcmd: U16,
    /// Number of namespaces (highest valid NSID).
    pub nn: U32,
    /// Optional NVM command support (`ONCS_*`).
    pub oncs: U16,
    /// Fused operation support (`FUSES_*`).
    pub fuses: U16,
    /// Format NVM attributes.
    pub fna: u8,
    /// Volatile write cache (`VWC_*`).
    pub vwc: u8,
    /// Atomic write unit normal (blocks, 0-based).
    pub awun: U16,
    /// Atomic write unit power fail (blocks, 0-based).
    pub awupf: U16,
    /// I/O command set vendor specific command configuration (NVSCC).
    pub nvscc: u8,
    /// Namespace write protection capabilities.
    pub nwpc: u8,
    /// Atomic compare & write unit (blocks, 0-based).
    pub acwu: U16,
    /// Copy descriptor formats supported.
    pub ocfs: U16,
    /// SGL support (`SGLS_*`).
    pub sgls: U32,
    /// Maximum number of allowed namespaces.
    pub mnan: U32,
    /// Maximum domain namespace attachments (128-bit).
    pub maxdna: [u8; 16],
    /// Maximum I/O controller namespace attachments.
    pub maxcna: U32,
    /// Reserved.
    pub rsvd564: [u8; 204],
    /// NVM subsystem NVMe qualified name (NUL-terminated UTF-8).
    pub subnqn: [u8; NQN_FIELD_LEN],
    /// Reserved.
    pub rsvd1024: [u8; 768],
    /// I/O queue command capsule supported size (16-byte units).
    pub ioccsz: U32,
    /// I/O queue response capsule supported size (16-byte units).
    pub iorcsz: U32,
    /// In capsule data offset (16-byte units).
    pub icdoff: U16,
    /// Fabrics controller attributes (bit 0: static controller model).
    pub fcatt: u8,
    /// Maximum SGL data block descriptors.
    pub msdbd: u8,
    /// Optional fabric commands support (bit 0: Disconnect).
    pub ofcs: U16,
    /// Reserved.
    pub rsvd1806: [u8; 242],
    /// Power state descriptors 0..=31.
    pub psd: [PowerStateDescriptor; 32],
    /// Vendor specific.
    pub vs: [u8; 1024],
}
const_assert_eq!(size_of::<IdentifyController>(), IDENTIFY_DATA_SIZE);

/// CMIC bit 0: may have more than one NVM subsystem port.
pub const CMIC_MULTI_PORT: u8 = 0x01;
/// CMIC bit 1: may have two or more controllers.
pub const CMIC_MULTI_CTRLR: u8 = 0x02;
/// CMIC bit 2: associated with an SR-IOV virtual function.
pub const CMIC_SRIOV: u8 = 0x04;
/// CMIC bit 3: ANA reporting supported.
pub const CMIC_ANA_REPORTING: u8 = 0x08;

/// OAES bit 8: namespace attribute notices.
pub const OAES_NS_ATTR: u32 = 1 << 8;
/// OAES bit 9: firmware activation notices.
pub const OAES_FW_ACTIVATION: u32 = 1 << 9;
/// OAES bit 11: asymmetric namespace access change notices.
pub const OAES_ANA_CHANGE: u32 = 1 << 11;
/// OAES bit 31: discovery log page change notices (NVMe-oF).
pub const OAES_DISCOVERY_LOG_CHANGE: u32 = 1 << 31;

/// CTRATT bit 0: 128-bit host identifier supported.
pub const CTRATT_HOST_ID_128: u32 = 1 << 0;
/// CTRATT bit 1: non-operational power state permissive mode.
pub const CTRATT_NOPSPM: u32 = 1 << 1;

/// CNTRLTYPE: not reported.
pub const CNTRLTYPE_NOT_REPORTED: u8 = 0;
/// CNTRLTYPE: I/O controller.
pub const CNTRLTYPE_IO: u8 = 1;
/// CNTRLTYPE: discovery controller.
pub const CNTRLTYPE_DISCOVERY: u8 = 2;
/// CNTRLTYPE: administrative controller.
pub const CNTRLTYPE_ADMIN: u8 = 3;

/// OACS bit 0: Security Send/Receive.
pub const OACS_SECURITY: u16 = 1 << 0;
/// OACS bit 1: Format NVM.
pub const OACS_FORMAT: u16 = 1 << 1;
/// OACS bit 2: Firmware Commit/Image Download.
pub const OACS_FIRMWARE: u16 = 1 << 2;
/// OACS bit 3: Namespace Management.
pub const OACS_NS_MANAGE: u16 = 1 << 3;
/// OACS bit 4: Device Self-test.
pub const OACS_DEVICE_SELF_TEST: u16 = 1 << 4;
/// OACS bit 5: Directives.
pub const OACS_DIRECTIVES: u16 = 1 << 5;
/// OACS bit 6: NVMe-MI Send/Receive.
pub const OACS_NVME_MI: u16 = 1 << 6;
/// OACS bit 7: Virtualization Management.
pub const OACS_VIRTUALIZATION: u16 = 1 << 7;
/// OACS bit 8: Doorbell Buffer Config.
pub const OACS_DOORBELL_BUFFER_CONFIG: u16 = 1 << 8;
/// OACS bit 9: Get LBA Status.
pub const OACS_GET_LBA_STATUS: u16 = 1 << 9;

/// FRMW bit 0: firmware slot 1 is read only.
pub const FRMW_SLOT1_RO: u8 = 0x01;
/// FRMW bits 3:1: number of firmware slots (shift).
pub const FRMW_NUM_SLOTS_SHIFT: u8 = 1;
/// FRMW bit 4: activation without reset.
pub const FRMW_ACTIVATION_WITHOUT_RESET: u8 = 0x10;

/// LPA bit 0: SMART/Health log per namespace.
pub const LPA_NS_SMART: u8 = 0x01;
/// LPA bit 1: Commands Supported and Effects log page.
pub const LPA_CELP: u8 = 0x02;
/// LPA bit 2: extended data for Get Log Page (NUMDU, LPOL/LPOU).
pub const LPA_EDLP: u8 = 0x04;
/// LPA bit 3: telemetry.
pub const LPA_TELEMETRY: u8 = 0x08;
/// LPA bit 4: persistent event log.
pub const LPA_PELP: u8 = 0x10;

/// ONCS bit 0: Compare.
pub const ONCS_COMPARE: u16 = 1 << 0;
/// ONCS bit 1: Write Uncorrectable.
pub const ONCS_WRITE_UNCORRECTABLE: u16 = 1 << 1;
/// ONCS bit 2: Dataset Management.
pub const ONCS_DSM: u16 = 1 << 2;
/// ONCS bit 3: Write Zeroes.
pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;
/// ONCS bit 4: Save field in Set Features / Select field in Get Features.
pub const ONCS_SET_FEATURES_SAVE: u16 = 1 << 4;
/// ONCS bit 5: Reservations.
pub const ONCS_RESERVATIONS: u16 = 1 << 5;
/// ONCS bit 6: Timestamp feature.
pub const ONCS_TIMESTAMP: u16 = 1 << 6;
/// ONCS bit 7: Verify.
pub const ONCS_VERIFY: u16 = 1 << 7;
/// ONCS bit 8: Copy.
pub const ONCS_COPY: u16 = 1 << 8;

/// FUSES bit 0: Compare and Write fused operation.
pub const FUSES_COMPARE_AND_WRITE: u16 = 1 << 0;

/// VWC bit 0: volatile write cache present.
pub const VWC_PRESENT: u8 = 0x01;
/// VWC bits 2:1 = 11b: Flush with NSID FFFFFFFFh supported.
pub const VWC_FLUSH_BROADCAST_SUPPORTED: u8 = 0x06;
/// VWC bits 2:1 = 10b: Flush with NSID FFFFFFFFh not supported.
pub const VWC_FLUSH_BROADCAST_NOT_SUPPORTED: u8 = 0x04;

/// SGLS bits 1:0 = 01b: SGLs supported, no alignment requirement.
pub const SGLS_SUPPORTED: u32 = 0x1;
/// SGLS bits 1:0 = 10b: SGLs supported, dword alignment required.
pub const SGLS_SUPPORTED_DWORD_ALIGNED: u32 = 0x2;
/// SGLS bit 2: Keyed SGL Data Block descriptor supported.
pub const SGLS_KEYED: u32 = 1 << 2;
/// SGLS bit 16: Bit Bucket descriptor supported.
pub const SGLS_BIT_BUCKET: u32 = 1 << 16;
/// SGLS bit 17: byte-aligned contiguous metadata buffer.
pub const SGLS_METADATA_BYTE_ALIGNED: u32 = 1 << 17;
/// SGLS bit 18: SGL longer than the data transfer allowed.
pub const SGLS_OVERSIZED: u32 = 1 << 18;
/// SGLS bit 19: MPTR holding an SGL descriptor supported.
pub const SGLS_METADATA_ADDRESS: u32 = 1 << 19;
/// SGLS bit 20: Address field as offset (SGL Offset subtype) supported.
pub const SGLS_OFFSET: u32 = 1 << 20;
/// SGLS bit 21: Transport SGL Data Block descriptor supported.
pub const SGLS_TRANSPORT_DATA_BLOCK: u32 = 1 << 21;

/// ANACAP bit 0: reports ANA optimized state.
pub const ANACAP_OPTIMIZED: u8 = 1 << 0;
/// ANACAP bit 1: reports ANA non-optimized state.
pub const ANACAP_NON_OPTIMIZED: u8 = 1 << 1;
/// ANACAP bit 2: reports ANA inaccessible state.
pub const ANACAP_INACCESSIBLE: u8 = 1 << 2;
/// ANACAP bit 3: reports ANA persistent loss state.
pub const ANACAP_PERSISTENT_LOSS: u8 = 1 << 3;
/// ANACAP bit 4: reports ANA change state.
pub const ANACAP_CHANGE: u8 = 1 << 4;
/// ANACAP bit 6: ANAGRPID does not change while the namespace is attached.
pub const ANACAP_ANAGRPID_STATIC: u8 = 1 << 6;
/// ANACAP bit 7: non-zero ANAGRPID supported in Namespace Management.
pub const ANACAP_ANAGRPID_MGMT: u8 = 1 << 7;

impl Default for IdentifyController {
    fn default() -> Self {
        IdentifyController::new_zeroed()
    }
}

impl IdentifyController {
    /// Serial number with padding trimmed (`None` if not printable ASCII).
    pub fn serial_number(&self) -> Option<&str> {
        space_padded_str(&self.sn)
    }

    /// Model number with padding trimmed.
    pub fn model_number(&self) -> Option<&str> {
        space_padded_str(&self.mn)
    }

    /// Firmware revision with padding trimmed.
    pub fn firmware_revision(&self) -> Option<&str> {
        space_padded_str(&self.fr)
    }

    /// Set SN (printable ASCII, at most 20 bytes, space padded).
    pub fn set_serial_number(&mut self, s: &str) -> Result<(), Error> {
        write_space_padded("sn", &mut self.sn, s)
    }

    /// Set MN (printable ASCII, at most 40 bytes, space padded).
    pub fn set_model_number(&mut self, s: &str) -> Result<(), Error> {
        write_space_padded("mn", &mut self.mn, s)
    }

    /// Set FR (printable ASCII, at most 8 bytes, space padded).
    pub fn set_firmware_revision(&mut self, s: &str) -> Result<(), Error> {
        write_space_padded("fr", &mut self.fr, s)
    }

    /// Subsystem NQN (NUL-terminated, at most 223 bytes).
    pub fn subnqn(&self) -> Result<&str, Error> {
        nqn_field("subnqn", &self.subnqn)
    }

    /// Set the subsystem NQN.
    pub fn set_subnqn(&mut self, nqn: &str) -> Result<(), Error> {
        write_nul_padded("subnqn", &mut self.subnqn, nqn)
    }
}

/// LBA Format data structure (NVM Command Set 1.0, Figure 98).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct LbaFormat {
    /// Metadata size per LBA in bytes.
    pub ms: U16,
    /// LBA data size as a power of two (9 = 512 B, 12 = 4 KiB).
    pub lbads: u8,
    /// Relative performance (bits 1:0).
    pub rp: u8,
}
const_assert_eq!(size_of::<LbaFormat>(), 4);

/// Identify Namespace data structure for the NVM command set (NVM Command Set 1.0, Figure 97).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IdentifyNamespace {
    /// Namespace size in logical blocks.
    pub nsze: U64,
    /// Namespace capacity in logical blocks.
    pub ncap: U64,
    /// Namespace utilization in logical blocks.
    pub nuse: U64,
    /// Namespace features (`NSFEAT_*`).
    pub nsfeat: u8,
    /// Number of LBA formats (0-based).
    pub nlbaf: u8,
    /// Formatted LBA size: bits 3:0 index low, bit 4 extended metadata, bits 6:5 index high.
    pub flbas: u8,
    /// Metadata capabilities.
    pub mc: u8,
    /// End-to-end data protection capabilities.
    pub dpc: u8,
    /// End-to-end data protection type settings.
    pub dps: u8,
    /// Namespace multi-path I/O and sharing capabilities (bit 0: may be shared).
    pub nmic: u8,
    /// Reservation capabilities (`RESCAP_*`).
    pub rescap: u8,
    /// Format progress indicator.
    pub fpi: u8,
    /// Deallocate logical block features.
    pub dlfeat: u8,
    /// Namespace atomic write unit normal.
    pub nawun: U16,
    /// Namespace atomic write unit power fail.
    pub nawupf: U16,
    /// Namespace atomic compare & write unit.
    pub nacwu: U16,
    /// Namespace atomic boundary size normal.
    pub nabsn: U16,
    /// Namespace atomic boundary offset.
    pub nabo: U16,
    /// Namespace atomic boundary size power fail.
    pub nabspf: U16,
    /// Namespace optimal I/O boundary.
    pub noiob: U16,
    /// NVM capacity (bytes, 128-bit).
    pub nvmcap: [u8; 16],
    /// Namespace preferred write granularity (0-based).
    pub npwg: U16,
    /// Namespace preferred write alignment (0-based).
    pub npwa: U16,
    /// Namespace preferred deallocate granularity (0-based).
    pub npdg: U16,
    /// Namespace preferred deallocate alignment (0-based).
    pub npda: U16,
    /// Namespace optimal write size (0-based).
    pub nows: U16,
    /// Maximum single source range length (Copy).
    pub mssrl: U16,
    /// Maximum copy length.
    pub mcl: U32,
    /// Maximum source range count (0-based).
    pub msrc: u8,
    /// Reserved.
    pub rsvd81: u8,
    /// Number of unique capability LBA formats.
    pub nulbaf: u8,
    /// Reserved.
    pub rsvd83: [u8; 9],
    /// ANA group identifier.
    pub anagrpid: U32,
    /// Reserved.
    pub rsvd96: [u8; 3],
    /// Namespace attributes (bit 0: write protected).
    pub nsattr: u8,
    /// NVM set identifier.
    pub nvmsetid: U16,
    /// Endurance group identifier.
    pub endgid: U16,
    /// Namespace globally unique identifier.
    pub nguid: [u8; 16],
    /// IEEE extended unique identifier.
    pub eui64: [u8; 8],
    /// LBA formats 0..=63.
    pub lbaf: [LbaFormat; 64],
    /// Reserved and vendor specific.
    pub rsvd384: [u8; 3712],
}
const_assert_eq!(size_of::<IdentifyNamespace>(), IDENTIFY_DATA_SIZE);

/// NSFEAT bit 0: thin provisioning.
pub const NSFEAT_THIN_PROVISIONING: u8 = 1 << 0;
/// NSFEAT bit 1: NAWUN/NAWUPF/NACWU are namespace specific.
pub const NSFEAT_NS_ATOMIC: u8 = 1 << 1;
/// NSFEAT bit 2: deallocated/unwritten block error supported.
pub const NSFEAT_DEALLOC_ERROR: u8 = 1 << 2;
/// NSFEAT bit 3: NGUID/EUI64 never reused.
pub const NSFEAT_UID_NO_REUSE: u8 = 1 << 3;
/// NSFEAT bit 4: NPWG, NPWA, NPDG, NPDA and NOWS are defined.
pub const NSFEAT_OPTPERF: u8 = 1 << 4;

/// NMIC bit 0: the namespace may be attached to two or more controllers.
pub const NMIC_SHARED: u8 = 0x01;

/// RESCAP bit 0: persist through power loss.
pub const RESCAP_PTPL: u8 = 1 << 0;
/// RESCAP bit 1: Write Exclusive.
pub const RESCAP_WRITE_EXCLUSIVE: u8 = 1 << 1;
/// RESCAP bit 2: Exclusive Access.
pub const RESCAP_EXCLUSIVE_ACCESS: u8 = 1 << 2;
/// RESCAP bit 3: Write Exclusive - Registrants Only.
pub const RESCAP_WRITE_EXCLUSIVE_REG_ONLY: u8 = 1 << 3;
/// RESCAP bit 4: Exclusive Access - Registrants Only.
pub const RESCAP_EXCLUSIVE_ACCESS_REG_ONLY: u8 = 1 << 4;
/// RESCAP bit 5: Write Exclusive - All Registrants.
pub const RESCAP_WRITE_EXCLUSIVE_ALL_REG: u8 = 1 << 5;
/// RESCAP bit 6: Exclusive Access - All Registrants.
pub const RESCAP_EXCLUSIVE_ACCESS_ALL_REG: u8 = 1 << 6;
/// RESCAP bit 7: ignore existing key (NVMe 1.3 behaviour).
pub const RESCAP_IGNORE_EXISTING_KEY: u8 = 1 << 7;

/// FLBAS bit 4: metadata transferred at the end of the data LBA (extended).
pub const FLBAS_EXTENDED_METADATA: u8 = 1 << 4;

impl Default for IdentifyNamespace {
    fn default() -> Self {
        IdentifyNamespace::new_zeroed()
    }
}

impl IdentifyNamespace {
    /// Index of the formatted LBA format (FLBAS bits 3:0 and 6:5).
    pub fn lba_format_index(&self) -> usize {
        usize::from(self.flbas & 0xf) | (usize::from((self.flbas >> 5) & 0x3) << 4)
    }

    /// Set FLBAS to select LBA format `index` (0..=63), keeping the extended-metadata bit.
    pub fn set_lba_format_index(&mut self, index: u8) {
        let low = index & 0xf;
        let high = (index >> 4) & 0x3;
        self.flbas = (self.flbas & FLBAS_EXTENDED_METADATA) | low | (high << 5);
    }

    /// The formatted LBA format.
    pub fn lba_format(&self) -> LbaFormat {
        // The index is at most 63 by construction; the array has 64 entries.
        self.lbaf
            .get(self.lba_format_index())
            .copied()
            .unwrap_or_default()
    }

    /// Logical block size in bytes of the formatted LBA format, `None` when LBADS is outside
    /// 9..=31 (less than 512 bytes or not representable).
    pub fn block_size(&self) -> Option<u32> {
        let lbads = self.lba_format().lbads;
        (9..32).contains(&lbads).then(|| 1u32 << lbads)
    }
}

/// I/O Command Set specific Identify Controller data structure for the NVM command set,
/// CNS 06h CSI 00h (NVM Command Set 1.0, Figure 94).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IdentifyControllerNvm {
    /// Verify size limit (2 ^ n units of CAP.MPSMIN; 0 = no limit).
    pub vsl: u8,
    /// Write Zeroes size limit.
    pub wzsl: u8,
    /// Write Uncorrectable size limit.
    pub wusl: u8,
    /// Dataset Management ranges limit.
    pub dmrl: u8,
    /// Dataset Management range size limit (logical blocks).
    pub dmrsl: U32,
    /// Dataset Management size limit (logical blocks).
    pub dmsl: U64,
    /// Reserved.
    pub rsvd16: [u8; 4080],
}
const_assert_eq!(size_of::<IdentifyControllerNvm>(), IDENTIFY_DATA_SIZE);

impl Default for IdentifyControllerNvm {
    fn default() -> Self {
        IdentifyControllerNvm::new_zeroed()
    }
}

/// I/O Command Set Independent Identify Namespace data structure, CNS 08h (NVMe Base 2.0,
/// Figure 284).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IdentifyNamespaceIndependent {
    /// Common namespace features.
    pub nsfeat: u8,
    /// Namespace multi-path I/O and sharing capabilities.
    pub nmic: u8,
    /// Reservation capabilities.
    pub rescap: u8,
    /// Format progress indicator.
    pub fpi: u8,
    /// ANA group identifier.
    pub anagrpid: U32,
    /// Namespace attributes.
    pub nsattr: u8,
    /// Reserved.
    pub rsvd9: u8,
    /// NVM set identifier.
    pub nvmsetid: U16,
    /// Endurance group identifier.
    pub endgid: U16,
    /// Namespace status (bit 0: ready).
    pub nstat: u8,
    /// Reserved.
    pub rsvd15: [u8; 4081],
}
const_assert_eq!(
    size_of::<IdentifyNamespaceIndependent>(),
    IDENTIFY_DATA_SIZE
);

impl Default for IdentifyNamespaceIndependent {
    fn default() -> Self {
        IdentifyNamespaceIndependent::new_zeroed()
    }
}

/// Identify I/O Command Set data structure, CNS 1Ch: 512 command set combination vectors
/// (NVMe Base 2.0, Figure 288). Bit 0 NVM, bit 1 KV, bit 2 ZNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IdentifyIoCommandSets {
    /// I/O command set combinations.
    pub vectors: [U64; 512],
}
const_assert_eq!(size_of::<IdentifyIoCommandSets>(), IDENTIFY_DATA_SIZE);

impl Default for IdentifyIoCommandSets {
    fn default() -> Self {
        IdentifyIoCommandSets::new_zeroed()
    }
}

/// I/O command set vector bit 0: NVM command set.
pub const IOCS_VECTOR_NVM: u64 = 1 << 0;
/// I/O command set vector bit 1: Key Value command set.
pub const IOCS_VECTOR_KV: u64 = 1 << 1;
/// I/O command set vector bit 2: Zoned Namespace command set.
pub const IOCS_VECTOR_ZNS: u64 = 1 << 2;

/// Namespace Identifier Type (NVMe Base 2.0, Figure 281).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Nidt(pub u8);

impl Nidt {
    /// IEEE Extended Unique Identifier, 8 bytes.
    pub const EUI64: Nidt = Nidt(0x1);
    /// Namespace Globally Unique Identifier, 16 bytes.
    pub const NGUID: Nidt = Nidt(0x2);
    /// Namespace UUID, 16 bytes.
    pub const UUID: Nidt = Nidt(0x3);
    /// Command Set Identifier, 1 byte.
    pub const CSI: Nidt = Nidt(0x4);
}

/// One Namespace Identification Descriptor (NVMe Base 2.0, Figures 280-281).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NsIdDescriptor {
    /// EUI64.
    Eui64([u8; 8]),
    /// NGUID.
    Nguid([u8; 16]),
    /// UUID.
    Uuid([u8; 16]),
    /// Command set identifier.
    Csi(Csi),
}

impl NsIdDescriptor {
    /// Type of the descriptor.
    pub fn nidt(&self) -> Nidt {
        match self {
            NsIdDescriptor::Eui64(_) => Nidt::EUI64,
            NsIdDescriptor::Nguid(_) => Nidt::NGUID,
            NsIdDescriptor::Uuid(_) => Nidt::UUID,
            NsIdDescriptor::Csi(_) => Nidt::CSI,
        }
    }

    fn id_bytes(&self) -> &[u8] {
        match self {
            NsIdDescriptor::Eui64(b) => b,
            NsIdDescriptor::Nguid(b) | NsIdDescriptor::Uuid(b) => b,
            NsIdDescriptor::Csi(c) => std::slice::from_ref(&c.0),
        }
    }

    /// Write a descriptor list into a 4096-byte Identify buffer (zero terminated). Fails if the
    /// list does not fit.
    pub fn write_list(
        list: &[NsIdDescriptor],
        out: &mut [u8; IDENTIFY_DATA_SIZE],
    ) -> Result<(), Error> {
        out.fill(0);
        let mut off = 0usize;
        for d in list {
            let id = d.id_bytes();
            let end = off + 4 + id.len();
            if end > IDENTIFY_DATA_SIZE {
                return Err(Error::Length {
                    what: "NS ID descriptor list",
                    need: end,
                    got: IDENTIFY_DATA_SIZE,
                });
            }
            out[off] = d.nidt().0;
            out[off + 1] = id.len() as u8;
            out[off + 4..end].copy_from_slice(id);
            off = end;
        }
        Ok(())
    }

    /// Parse a descriptor list; stops at the first NIDL of 0. Unknown types and lengths that do
    /// not match the type are rejected.
    pub fn parse_list(buf: &[u8]) -> Result<Vec<NsIdDescriptor>, Error> {
        let mut out = Vec::new();
        let mut off = 0usize;
        while off + 4 <= buf.len() {
            let (nidt, nidl) = (buf[off], usize::from(buf[off + 1]));
            if nidl == 0 {
                break;
            }
            let id = buf.get(off + 4..off + 4 + nidl).ok_or(Error::Length {
                what: "NS ID descriptor",
                need: off + 4 + nidl,
                got: buf.len(),
            })?;
            let bad = || Error::InvalidField {
                field: "nidt/nidl",
                value: (u64::from(nidt) << 8) | nidl as u64,
            };
            let d = match (Nidt(nidt), nidl) {
                (Nidt::EUI64, 8) => NsIdDescriptor::Eui64(id.try_into().map_err(|_| bad())?),
                (Nidt::NGUID, 16) => NsIdDescriptor::Nguid(id.try_into().map_err(|_| bad())?),
                (Nidt::UUID, 16) => NsIdDescriptor::Uuid(id.try_into().map_err(|_| bad())?),
                (Nidt::CSI, 1) => NsIdDescriptor::Csi(Csi(id[0])),
                _ => return Err(bad()),
            };
            out.push(d);
            off += 4 + nidl;
        }
        Ok(out)
    }
}

/// A list of up to 1024 namespace IDs, zero terminated (NVMe Base 2.0, Figure 279): Identify
/// CNS 02h/07h/10h and the Changed Namespace List log page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NsList {
    /// Namespace IDs in increasing order, then zeroes.
    pub ids: [U32; 1024],
}
const_assert_eq!(size_of::<NsList>(), 4096);

impl Default for NsList {
    fn default() -> Self {
        NsList::new_zeroed()
    }
}

impl NsList {
    /// Number of entries a list holds.
    pub const CAPACITY: usize = 1024;

    /// Build from NSIDs (taking at most 1024); the caller supplies them sorted.
    pub fn from_ids(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut l = NsList::new_zeroed();
        for (slot, id) in l.ids.iter_mut().zip(ids) {
            *slot = U32::new(id);
        }
        l
    }

    /// The non-zero prefix of the list.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids.iter().map(|v| v.get()).take_while(|&v| v != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn identify_controller_offsets_match_figure_275() {
        assert_eq!(offset_of!(IdentifyController, sn), 4);
        assert_eq!(offset_of!(IdentifyController, mn), 24);
        assert_eq!(offset_of!(IdentifyController, fr), 64);
        assert_eq!(offset_of!(IdentifyController, rab), 72);
        assert_eq!(offset_of!(IdentifyController, cmic), 76);
        assert_eq!(offset_of!(IdentifyController, mdts), 77);
        assert_eq!(offset_of!(IdentifyController, cntlid), 78);
        assert_eq!(offset_of!(IdentifyController, ver), 80);
        assert_eq!(offset_of!(IdentifyController, oaes), 92);
        assert_eq!(offset_of!(IdentifyController, ctratt), 96);
        assert_eq!(offset_of!(IdentifyController, cntrltype), 111);
        assert_eq!(offset_of!(IdentifyController, fguid), 112);
        assert_eq!(offset_of!(IdentifyController, crdt1), 128);
        assert_eq!(offset_of!(IdentifyController, oacs), 256);
        assert_eq!(offset_of!(IdentifyController, acl), 258);
        assert_eq!(offset_of!(IdentifyController, aerl), 259);
        assert_eq!(offset_of!(IdentifyController, frmw), 260);
        assert_eq!(offset_of!(IdentifyController, lpa), 261);
        assert_eq!(offset_of!(IdentifyController, elpe), 262);
        assert_eq!(offset_of!(IdentifyController, wctemp), 266);
        assert_eq!(offset_of!(IdentifyController, kas), 320);
        assert_eq!(offset_of!(IdentifyController, anatt), 342);
        assert_eq!(offset_of!(IdentifyController, anagrpmax), 344);
        assert_eq!(offset_of!(IdentifyController, sqes), 512);
        assert_eq!(offset_of!(IdentifyController, cqes), 513);
        assert_eq!(offset_of!(IdentifyController, maxcmd), 514);
        assert_eq!(offset_of!(IdentifyController, nn), 516);
        assert_eq!(offset_of!(IdentifyController, oncs), 520);
        assert_eq!(offset_of!(IdentifyController, fuses), 522);
        assert_eq!(offset_of!(IdentifyController, vwc), 525);
        assert_eq!(offset_of!(IdentifyController, acwu), 532);
        assert_eq!(offset_of!(IdentifyController, ocfs), 534);
        assert_eq!(offset_of!(IdentifyController, sgls), 536);
        assert_eq!(offset_of!(IdentifyController, mnan), 540);
        assert_eq!(offset_of!(IdentifyController, subnqn), 768);
        assert_eq!(offset_of!(IdentifyController, ioccsz), 1792);
        assert_eq!(offset_of!(IdentifyController, iorcsz), 1796);
        assert_eq!(offset_of!(IdentifyController, icdoff), 1800);
        assert_eq!(offset_of!(IdentifyController, fcatt), 1802);
        assert_eq!(offset_of!(IdentifyController, msdbd), 1803);
        assert_eq!(offset_of!(IdentifyController, ofcs), 1804);
        assert_eq!(offset_of!(IdentifyController, psd), 2048);
        assert_eq!(offset_of!(IdentifyController, vs), 3072);
    }

    #[test]
    fn identify_namespace_offsets_match_nvm_figure_97() {
        assert_eq!(offset_of!(IdentifyNamespace, ncap), 8);
        assert_eq!(offset_of!(IdentifyNamespace, nuse), 16);
        assert_eq!(offset_of!(IdentifyNamespace, nsfeat), 24);
        assert_eq!(offset_of!(IdentifyNamespace, nlbaf), 25);
        assert_eq!(offset_of!(IdentifyNamespace, flbas), 26);
        assert_eq!(offset_of!(IdentifyNamespace, nmic), 30);
        assert_eq!(offset_of!(IdentifyNamespace, rescap), 31);
        assert_eq!(offset_of!(IdentifyNamespace, nawun), 34);
        assert_eq!(offset_of!(IdentifyNamespace, nvmcap), 48);
        assert_eq!(offset_of!(IdentifyNamespace, npwg), 64);
        assert_eq!(offset_of!(IdentifyNamespace, mcl), 76);
        assert_eq!(offset_of!(IdentifyNamespace, anagrpid), 92);
        assert_eq!(offset_of!(IdentifyNamespace, nsattr), 99);
        assert_eq!(offset_of!(IdentifyNamespace, nguid), 104);
        assert_eq!(offset_of!(IdentifyNamespace, eui64), 120);
        assert_eq!(offset_of!(IdentifyNamespace, lbaf), 128);
    }

    #[test]
    fn iocs_specific_structures_have_spec_offsets() {
        assert_eq!(offset_of!(IdentifyControllerNvm, dmrsl), 4);
        assert_eq!(offset_of!(IdentifyControllerNvm, dmsl), 8);
        assert_eq!(offset_of!(IdentifyNamespaceIndependent, anagrpid), 4);
        assert_eq!(offset_of!(IdentifyNamespaceIndependent, nsattr), 8);
        assert_eq!(offset_of!(IdentifyNamespaceIndependent, endgid), 12);
        assert_eq!(offset_of!(IdentifyNamespaceIndependent, nstat), 14);
    }

    #[test]
    fn controller_strings_are_space_padded_ascii() {
        let mut c = IdentifyController::default();
        c.set_serial_number("SPDK001").unwrap();
        c.set_model_number("SPDK bdev Controller").unwrap();
        c.set_firmware_revision("25.09").unwrap();
        c.set_subnqn("nqn.2016-06.io.spdk:cnode1").unwrap();
        let b = c.as_bytes();
        assert_eq!(&b[4..24], b"SPDK001             ");
        assert_eq!(&b[64..72], b"25.09   ");
        assert_eq!(c.model_number(), Some("SPDK bdev Controller"));
        assert_eq!(c.subnqn().unwrap(), "nqn.2016-06.io.spdk:cnode1");
        assert!(c.set_firmware_revision("123456789").is_err());
    }

    #[test]
    fn flbas_index_uses_low_and_high_bits() {
        let mut ns = IdentifyNamespace::default();
        ns.lbaf[0].lbads = 9;
        ns.lbaf[17].lbads = 12;
        ns.set_lba_format_index(17);
        assert_eq!(ns.flbas, 0x21);
        assert_eq!(ns.lba_format_index(), 17);
        assert_eq!(ns.block_size(), Some(4096));
        ns.set_lba_format_index(0);
        assert_eq!(ns.block_size(), Some(512));
        ns.lbaf[0].lbads = 40;
        assert_eq!(ns.block_size(), None);
    }

    #[test]
    fn ns_id_descriptor_list_round_trips() {
        let list = [
            NsIdDescriptor::Eui64([1; 8]),
            NsIdDescriptor::Nguid([2; 16]),
            NsIdDescriptor::Uuid([3; 16]),
            NsIdDescriptor::Csi(Csi::NVM),
        ];
        let mut buf = [0u8; 4096];
        NsIdDescriptor::write_list(&list, &mut buf).unwrap();
        assert_eq!(&buf[0..4], &[1, 8, 0, 0]);
        assert_eq!(&buf[12..16], &[2, 16, 0, 0]);
        assert_eq!(&buf[32..36], &[3, 16, 0, 0]);
        assert_eq!(&buf[52..57], &[4, 1, 0, 0, 0]);
        assert_eq!(NsIdDescriptor::parse_list(&buf).unwrap(), list);
        buf[1] = 7; // EUI64 with the wrong length
        assert!(NsIdDescriptor::parse_list(&buf).is_err());
        let short = [1u8, 8, 0, 0, 1, 2];
        assert!(NsIdDescriptor::parse_list(&short).is_err());
    }

    #[test]
    fn ns_list_stops_at_first_zero() {
        let l = NsList::from_ids([1, 2, 5]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![1, 2, 5]);
        assert_eq!(&l.as_bytes()[8..12], &[5, 0, 0, 0]);
    }

    #[test]
    fn identify_args_round_trip_cdw10_cdw11() {
        let mut sqe = Sqe::default();
        let a = IdentifyArgs {
            cns: Cns::ACTIVE_NS_LIST_IOCS,
            cntid: 3,
            cnssid: 0,
            csi: Csi::ZNS,
            uuid_index: 0,
        };
        a.apply(&mut sqe);
        assert_eq!(sqe.cdw10.get(), 0x0003_0007);
        assert_eq!(sqe.cdw11.get(), 0x0200_0000);
        assert_eq!(IdentifyArgs::from_sqe(&sqe), a);
    }
}
