//! Discovery log page (SPDK `lib/nvmf/ctrlr_discovery.c`).
//!
//! Generated per host: only subsystems the host may connect to, each of their listeners, the
//! referrals, and the discovery subsystem's own listeners as "current discovery subsystem"
//! entries.
//!
//! Layout written here (NVMe-oF 1.1, Figures 31-32; the structs are not yet in `nvme::spec`):
//! header 1024 bytes (GENCTR @0, NUMREC @8, RECFMT @16), then 1024-byte entries (TRTYPE @0,
//! ADRFAM @1, SUBTYPE @2, TREQ @3, PORTID @4, CNTLID @6, ASQSZ @8, EFLAGS @10, TRSVCID @32,
//! TRADDR @256, SUBNQN @512, TSAS @768).

use crate::poll_group::TargetSnap;
use crate::transport::{DiscoverInfo, ListenAddr};
use nvme::spec::nqn::DISCOVERY_NQN;

/// Size of the log page header and of each entry.
pub const DISC_HEADER_SIZE: usize = 1024;
/// Size of one discovery log entry.
pub const DISC_ENTRY_SIZE: usize = 1024;
/// SUBTYPE: referral to another discovery service.
pub const SUBTYPE_DISCOVERY_REFERRAL: u8 = 1;
/// SUBTYPE: NVM subsystem.
pub const SUBTYPE_NVME: u8 = 2;
/// SUBTYPE: the current discovery subsystem.
pub const SUBTYPE_CURRENT_DISCOVERY: u8 = 3;
/// EFLAGS: duplicate returned information.
pub const EFLAGS_DUPRETINFO: u16 = 1 << 0;
/// EFLAGS: explicit persistent connection support for discovery.
pub const EFLAGS_EPCSD: u16 = 1 << 1;
/// TREQ: secure channel required.
pub const TREQ_SECURE_CHANNEL_REQUIRED: u8 = 0x1;
/// TREQ: secure channel not required.
pub const TREQ_SECURE_CHANNEL_NOT_REQUIRED: u8 = 0x2;

fn pad(dst: &mut [u8], s: &str, fill: u8) {
    dst.fill(fill);
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

#[allow(clippy::too_many_arguments)]
fn entry(
    out: &mut Vec<u8>,
    info: &DiscoverInfo,
    subtype: u8,
    portid: u16,
    subnqn: &str,
    asqsz: u16,
    eflags: u16,
    secure: bool,
) {
    let mut e = [0u8; DISC_ENTRY_SIZE];
    e[0] = info.trtype.0;
    e[1] = info.adrfam;
    e[2] = subtype;
    e[3] = info.treq
        | if secure {
            TREQ_SECURE_CHANNEL_REQUIRED
        } else {
            TREQ_SECURE_CHANNEL_NOT_REQUIRED
        };
    e[4..6].copy_from_slice(&portid.to_le_bytes());
    e[6..8].copy_from_slice(&0xffffu16.to_le_bytes());
    e[8..10].copy_from_slice(&asqsz.to_le_bytes());
    e[10..12].copy_from_slice(&eflags.to_le_bytes());
    pad(&mut e[32..64], &info.trsvcid, b' ');
    // Discovery Log Page Entry (NVMe-oF 1.1 Figure 40): SUBNQN 256..512, TRADDR 512..768.
    pad(&mut e[256..512], subnqn, 0);
    pad(&mut e[512..768], &info.traddr, b' ');
    e[768..1024].copy_from_slice(&info.tsas);
    out.extend_from_slice(&e);
}

/// Builds the whole discovery log page for `hostnqn`.
pub(crate) fn log_page(view: &TargetSnap, hostnqn: &str, _listen: Option<&ListenAddr>) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut n = 0u64;
    for s in &view.subsystems {
        let asqsz = view
            .transports
            .values()
            .next()
            .map(|o| o.max_aq_depth as u16)
            .unwrap_or(128);
        if s.is_discovery() {
            for (i, (l, info)) in s.listeners.iter().enumerate() {
                entry(
                    &mut entries,
                    info,
                    SUBTYPE_CURRENT_DISCOVERY,
                    i as u16,
                    DISCOVERY_NQN,
                    asqsz,
                    EFLAGS_DUPRETINFO | EFLAGS_EPCSD,
                    l.secure_channel,
                );
                n += 1;
            }
            continue;
        }
        if !s.host_allowed(hostnqn) {
            continue;
        }
        for (i, (l, info)) in s.listeners.iter().enumerate() {
            entry(
                &mut entries,
                info,
                SUBTYPE_NVME,
                i as u16,
                &s.nqn,
                asqsz,
                0,
                l.secure_channel,
            );
            n += 1;
        }
    }
    for (i, r) in view.referrals.iter().enumerate() {
        entry(
            &mut entries,
            &r.info,
            SUBTYPE_DISCOVERY_REFERRAL,
            i as u16,
            &r.subnqn,
            0,
            0,
            r.secure_channel,
        );
        n += 1;
    }
    let mut page = vec![0u8; DISC_HEADER_SIZE];
    page[0..8].copy_from_slice(&view.genctr.to_le_bytes());
    page[8..16].copy_from_slice(&n.to_le_bytes());
    page.extend_from_slice(&entries);
    page
}
