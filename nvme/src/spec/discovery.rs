//! Discovery log page (NVMe-oF 1.1, 5.3 "Discovery Log Page", Figures 31-34; NVMe Base 2.0,
//! 5.16.1.23; SPDK `struct spdk_nvmf_discovery_log_page*`).

use static_assertions::const_assert_eq;
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::nqn::{NQN_FIELD_LEN, nqn_field, nul_padded_str, write_nul_padded};
use crate::Error;

/// Size of the discovery log page header and of each entry.
pub const DISCOVERY_RECORD_SIZE: usize = 1024;

/// Discovery Get Log Page LSP bit 0: Extended Discovery Log Page Entries (EXTDLPE).
pub const DISCOVERY_LSP_EXTDLPE: u8 = 0x01;
/// Discovery Get Log Page LSP bit 1: All NVM Subsystem Entries (ALLSUBE).
pub const DISCOVERY_LSP_ALLSUBE: u8 = 0x02;

/// Transport type (NVMe-oF 1.1, Figure 33 TRTYPE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrType(pub u8);

impl TrType {
    /// RDMA.
    pub const RDMA: TrType = TrType(1);
    /// Fibre Channel.
    pub const FC: TrType = TrType(2);
    /// TCP.
    pub const TCP: TrType = TrType(3);
    /// Intra-host (loopback).
    pub const LOOP: TrType = TrType(254);
}

/// Address family (NVMe-oF 1.1, Figure 33 ADRFAM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AdrFam(pub u8);

impl AdrFam {
    /// IPv4.
    pub const IPV4: AdrFam = AdrFam(1);
    /// IPv6.
    pub const IPV6: AdrFam = AdrFam(2);
    /// InfiniBand.
    pub const IB: AdrFam = AdrFam(3);
    /// Fibre Channel.
    pub const FC: AdrFam = AdrFam(4);
    /// Intra-host.
    pub const INTRA_HOST: AdrFam = AdrFam(254);
}

/// Subsystem type (NVMe-oF 1.1, Figure 33 SUBTYPE; NVMe Base 2.0 adds current discovery).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubType(pub u8);

impl SubType {
    /// Referral to another discovery service.
    pub const REFERRAL: SubType = SubType(1);
    /// NVM subsystem.
    pub const NVME: SubType = SubType(2);
    /// The discovery subsystem being queried.
    pub const CURRENT_DISCOVERY: SubType = SubType(3);
}

/// TREQ bits 1:0 = 00b: secure channel not specified.
pub const TREQ_SECURE_CHANNEL_NOT_SPECIFIED: u8 = 0x0;
/// TREQ bits 1:0 = 01b: secure channel required.
pub const TREQ_SECURE_CHANNEL_REQUIRED: u8 = 0x1;
/// TREQ bits 1:0 = 10b: secure channel not required.
pub const TREQ_SECURE_CHANNEL_NOT_REQUIRED: u8 = 0x2;
/// TREQ bit 2: SQ flow control disable supported.
pub const TREQ_DISABLE_SQ_FLOW_CONTROL: u8 = 0x4;

/// EFLAGS bit 0: duplicate returned information (DUPRETINFO).
pub const EFLAGS_DUPRETINFO: u16 = 1 << 0;
/// EFLAGS bit 1: explicit persistent connection support for discovery (EPCSD).
pub const EFLAGS_EPCSD: u16 = 1 << 1;
/// EFLAGS bit 2: no CDC connectivity (NCC).
pub const EFLAGS_NCC: u16 = 1 << 2;

/// NVMe/TCP TSAS SECTYPE: no security.
pub const TCP_SECTYPE_NONE: u8 = 0;
/// NVMe/TCP TSAS SECTYPE: TLS 1.2.
pub const TCP_SECTYPE_TLS12: u8 = 1;
/// NVMe/TCP TSAS SECTYPE: TLS 1.3.
pub const TCP_SECTYPE_TLS13: u8 = 2;

/// RDMA TSAS QPTYPE: reliable connected.
pub const RDMA_QPTYPE_RELIABLE_CONNECTED: u8 = 1;
/// RDMA TSAS PRTYPE: no provider specified.
pub const RDMA_PRTYPE_NONE: u8 = 1;
/// RDMA TSAS CMS: RDMA_CM.
pub const RDMA_CMS_RDMA_CM: u8 = 1;

/// Discovery log page header (NVMe-oF 1.1, Figure 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DiscoveryLogHeader {
    /// Generation counter.
    pub genctr: U64,
    /// Number of records.
    pub numrec: U64,
    /// Record format (0).
    pub recfmt: U16,
    /// Reserved.
    pub rsvd18: [u8; 1006],
}
const_assert_eq!(size_of::<DiscoveryLogHeader>(), DISCOVERY_RECORD_SIZE);

impl Default for DiscoveryLogHeader {
    fn default() -> Self {
        DiscoveryLogHeader::new_zeroed()
    }
}

/// Discovery log page entry (NVMe-oF 1.1, Figure 33).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DiscoveryLogEntry {
    /// Transport type ([`TrType`]).
    pub trtype: u8,
    /// Address family ([`AdrFam`]).
    pub adrfam: u8,
    /// Subsystem type ([`SubType`]).
    pub subtype: u8,
    /// Transport requirements (`TREQ_*`).
    pub treq: u8,
    /// Port ID.
    pub portid: U16,
    /// Controller ID (0xFFFF dynamic).
    pub cntlid: U16,
    /// Admin max SQ size.
    pub asqsz: U16,
    /// Entry flags (`EFLAGS_*`).
    pub eflags: U16,
    /// Reserved.
    pub rsvd12: [u8; 20],
    /// Transport service identifier (ASCII, NUL or space padded).
    pub trsvcid: [u8; 32],
    /// Reserved.
    pub rsvd64: [u8; 192],
    /// Subsystem NQN.
    pub subnqn: [u8; NQN_FIELD_LEN],
    /// Transport address (ASCII).
    pub traddr: [u8; 256],
    /// Transport specific address subtype.
    pub tsas: [u8; 256],
}
const_assert_eq!(size_of::<DiscoveryLogEntry>(), DISCOVERY_RECORD_SIZE);

impl Default for DiscoveryLogEntry {
    fn default() -> Self {
        DiscoveryLogEntry::new_zeroed()
    }
}

impl DiscoveryLogEntry {
    /// Subsystem NQN.
    pub fn subnqn(&self) -> Result<&str, Error> {
        nqn_field("subnqn", &self.subnqn)
    }

    /// Transport service ID (e.g. "4420").
    pub fn trsvcid(&self) -> Result<&str, Error> {
        let s = trimmed_ascii("trsvcid", &self.trsvcid)?;
        Ok(s)
    }

    /// Transport address (e.g. "127.0.0.1").
    pub fn traddr(&self) -> Result<&str, Error> {
        trimmed_ascii("traddr", &self.traddr)
    }

    /// Set subsystem NQN.
    pub fn set_subnqn(&mut self, nqn: &str) -> Result<(), Error> {
        write_nul_padded("subnqn", &mut self.subnqn, nqn)
    }

    /// Set transport service ID (SPDK pads with NULs).
    pub fn set_trsvcid(&mut self, s: &str) -> Result<(), Error> {
        write_nul_padded("trsvcid", &mut self.trsvcid, s)
    }

    /// Set transport address (SPDK pads with NULs).
    pub fn set_traddr(&mut self, s: &str) -> Result<(), Error> {
        write_nul_padded("traddr", &mut self.traddr, s)
    }

    /// NVMe/TCP TSAS security type (byte 0).
    pub fn tcp_sectype(&self) -> u8 {
        self.tsas[0]
    }
}

/// Read an ASCII field that is NUL-padded or space-padded and may fill the whole field.
fn trimmed_ascii<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    let s = match nul_padded_str(field, bytes) {
        Ok(s) => s,
        Err(Error::UnterminatedString { .. }) => {
            std::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8 { field })?
        }
        Err(e) => return Err(e),
    };
    Ok(s.trim_end_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn entry_offsets_match_nvmf_figure_33() {
        assert_eq!(offset_of!(DiscoveryLogEntry, portid), 4);
        assert_eq!(offset_of!(DiscoveryLogEntry, cntlid), 6);
        assert_eq!(offset_of!(DiscoveryLogEntry, asqsz), 8);
        assert_eq!(offset_of!(DiscoveryLogEntry, eflags), 10);
        assert_eq!(offset_of!(DiscoveryLogEntry, trsvcid), 32);
        assert_eq!(offset_of!(DiscoveryLogEntry, subnqn), 256);
        assert_eq!(offset_of!(DiscoveryLogEntry, traddr), 512);
        assert_eq!(offset_of!(DiscoveryLogEntry, tsas), 768);
        assert_eq!(offset_of!(DiscoveryLogHeader, recfmt), 16);
    }

    #[test]
    fn entry_strings_round_trip() {
        let mut e = DiscoveryLogEntry::new_zeroed();
        e.trtype = TrType::TCP.0;
        e.adrfam = AdrFam::IPV4.0;
        e.subtype = SubType::NVME.0;
        e.treq = TREQ_SECURE_CHANNEL_NOT_REQUIRED;
        e.set_subnqn("nqn.2016-06.io.spdk:cnode1").unwrap();
        e.set_trsvcid("4420").unwrap();
        e.set_traddr("127.0.0.1").unwrap();
        assert_eq!(e.as_bytes()[0..4], [3, 1, 2, 2]);
        assert_eq!(e.trsvcid().unwrap(), "4420");
        assert_eq!(e.traddr().unwrap(), "127.0.0.1");
        assert_eq!(e.subnqn().unwrap(), "nqn.2016-06.io.spdk:cnode1");
        // Space padded, full-width fields from other targets are accepted too.
        e.trsvcid = [b' '; 32];
        e.trsvcid[..4].copy_from_slice(b"4420");
        assert_eq!(e.trsvcid().unwrap(), "4420");
    }
}
