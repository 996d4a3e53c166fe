//! The report, in spdk_nvme_identify's layout (app/spdk_nvme_identify/identify.c).

use std::fmt::Write as _;

use nvme::host::{Controller, HostError, Namespace};
use nvme::spec::features::Fid;
use nvme::spec::identify::{Cns, IdentifyController, NsIdDescriptor};
use nvme::spec::log::Lid;

type Out = String;

fn sup(b: bool) -> &'static str {
    if b { "Supported" } else { "Not Supported" }
}

fn yes(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn bit(v: u32, n: u32) -> bool {
    v >> n & 1 == 1
}

/// NVMe ASCII field: trailing spaces trimmed, unprintable bytes as '.'.
fn ascii(b: &[u8]) -> String {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    b[..end]
        .iter()
        .map(|&c| {
            if (0x20..=0x7e).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

/// A NUL-terminated field as text (up to the first NUL, lossy).
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn u128_dec(b: &[u8]) -> String {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    let lo = u64::from_le_bytes(a[..8].try_into().unwrap_or_default());
    let hi = u64::from_le_bytes(a[8..].try_into().unwrap_or_default());
    if hi != 0 {
        format!("0x{hi:X}{lo:016X}")
    } else {
        format!("{lo}")
    }
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn hex_dump(o: &mut Out, data: &[u8]) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(o, "{:08x} ", i * 16);
        for b in chunk {
            let _ = write!(o, " {b:02x}");
        }
        o.push('\n');
    }
}

/// Everything spdk_nvme_identify fetches before printing.
struct Fetched {
    arbitration: Option<u32>,
    power: Option<u32>,
    temp_threshold: Option<u32>,
    num_queues: Option<u32>,
    error_log: Vec<u8>,
    health: Vec<u8>,
    firmware: Vec<u8>,
    effects: Option<Vec<u8>>,
}

fn fetch(c: &mut Controller) -> Fetched {
    let disc = c.is_discovery();
    let feat = |c: &mut Controller, fid: Fid| {
        if disc {
            None
        } else {
            c.get_features(fid, 0).ok()
        }
    };
    let arbitration = feat(c, Fid::ARBITRATION);
    let power = feat(c, Fid::POWER_MANAGEMENT);
    let temp_threshold = feat(c, Fid::TEMPERATURE_THRESHOLD);
    let num_queues = feat(c, Fid::NUMBER_OF_QUEUES);
    let elpe = u32::from(c.data().elpe) + 1;
    let (mut error_log, mut health, mut firmware) =
        (vec![0; 64 * elpe as usize], vec![0; 512], vec![0; 512]);
    if !disc {
        if let Ok(b) = c.get_log_page(Lid::ERROR, u32::MAX, 64 * elpe, 0) {
            error_log = b;
        }
        if let Ok(b) = c.get_log_page(Lid::HEALTH_INFORMATION, u32::MAX, 512, 0) {
            health = b;
        }
        if let Ok(b) = c.get_log_page(Lid::FIRMWARE_SLOT, u32::MAX, 512, 0) {
            firmware = b;
        }
    }
    let effects = if c.data().lpa & 0x02 != 0 {
        c.get_log_page(Lid::COMMAND_EFFECTS, 0, 4096, 0).ok()
    } else {
        None
    };
    Fetched {
        arbitration,
        power,
        temp_threshold,
        num_queues,
        error_log,
        health,
        firmware,
        effects,
    }
}

/// The whole report for a connected controller.
pub fn controller(c: &mut Controller, hex: bool) -> Result<String, HostError> {
    let f = fetch(c);
    let mut o = Out::new();
    let trid = c.trid().clone();
    o.push_str("=====================================================\n");
    let _ = writeln!(
        o,
        "NVMeoF Controller at {} (addr:{} subnqn:{})",
        trid.trtype.as_str(),
        trid.traddr,
        trid.subnqn
    );
    o.push_str("=====================================================\n");
    let cd = *c.data();
    if hex {
        let raw = c.identify(Cns::CONTROLLER, 0)?;
        hex_dump(&mut o, &raw);
        o.push('\n');
    }
    capabilities(&mut o, c, &cd);
    admin_attrs(&mut o, &cd);
    nvm_attrs(&mut o, &cd);
    firmware(&mut o, &f.firmware);
    if let Some(e) = &f.effects {
        effects(&mut o, e);
    }
    error_log(&mut o, &f.error_log, cd.elpe);
    features(&mut o, c, &cd, &f);
    o.push_str("Active Namespaces\n=================\n");
    let nss: Vec<Namespace> = c.namespaces().cloned().collect();
    for ns in &nss {
        namespace(&mut o, c, &cd, ns);
    }
    if c.is_discovery() {
        discovery(&mut o, c)?;
    }
    Ok(o)
}

fn capabilities(o: &mut Out, c: &Controller, cd: &IdentifyController) {
    let cap = c.cap();
    let vs = c.vs();
    let _ = writeln!(o, "Controller Capabilities/Features");
    let _ = writeln!(o, "================================");
    let _ = writeln!(
        o,
        "Vendor ID:                             {:04x}",
        cd.vid.get()
    );
    let _ = writeln!(
        o,
        "Subsystem Vendor ID:                   {:04x}",
        cd.ssvid.get()
    );
    let _ = writeln!(
        o,
        "Serial Number:                         {}",
        ascii(&cd.sn)
    );
    let _ = writeln!(
        o,
        "Model Number:                          {}",
        ascii(&cd.mn)
    );
    let _ = writeln!(
        o,
        "Firmware Version:                      {}",
        ascii(&cd.fr)
    );
    let _ = writeln!(o, "Recommended Arb Burst:                 {}", cd.rab);
    let _ = writeln!(
        o,
        "IEEE OUI Identifier:                   {:02x} {:02x} {:02x}",
        cd.ieee[0], cd.ieee[1], cd.ieee[2]
    );
    let cmic = u32::from(cd.cmic);
    let _ = writeln!(o, "Multi-path I/O");
    let _ = writeln!(
        o,
        "  May have multiple subsystem ports:   {}",
        yes(bit(cmic, 0))
    );
    let _ = writeln!(
        o,
        "  May have multiple controllers:       {}",
        yes(bit(cmic, 1))
    );
    let _ = writeln!(
        o,
        "  Associated with SR-IOV VF:           {}",
        yes(bit(cmic, 2))
    );
    let mdts = if cd.mdts == 0 {
        "Unlimited".to_string()
    } else {
        (1u64 << (12 + u32::from(cap.mpsmin()) + u32::from(cd.mdts).min(40))).to_string()
    };
    let _ = writeln!(o, "Max Data Transfer Size:                {mdts}");
    let _ = writeln!(o, "Max Number of Namespaces:              {}", cd.nn.get());
    let nq = if c.io_queues_granted() > 0 {
        c.io_queues_granted().min(c.opts().num_io_queues)
    } else {
        c.opts().num_io_queues
    };
    let _ = writeln!(o, "Max Number of I/O Queues:              {nq}");
    let mut v = format!("{}.{}", vs.mjr(), vs.mnr());
    if vs.ter() != 0 {
        let _ = write!(v, ".{}", vs.ter());
    }
    let _ = writeln!(o, "NVMe Specification Version (VS):       {v}");
    let ver = cd.ver.get();
    if ver != 0 {
        let mut v = format!("{}.{}", ver >> 16, (ver >> 8) & 0xff);
        if ver & 0xff != 0 {
            let _ = write!(v, ".{}", ver & 0xff);
        }
        let _ = writeln!(o, "NVMe Specification Version (Identify): {v}");
    }
    let _ = writeln!(
        o,
        "Maximum Queue Entries:                 {}",
        u32::from(cap.mqes()) + 1
    );
    let _ = writeln!(
        o,
        "Contiguous Queues Required:            {}",
        yes(cap.cqr() == 1)
    );
    let _ = writeln!(o, "Arbitration Mechanisms Supported");
    let ams = u32::from(cap.ams());
    let _ = writeln!(
        o,
        "  Weighted Round Robin:                {}",
        sup(bit(ams, 0))
    );
    let _ = writeln!(
        o,
        "  Vendor Specific:                     {}",
        sup(bit(ams, 1))
    );
    let _ = writeln!(
        o,
        "Reset Timeout:                         {} ms",
        500 * u64::from(cap.to())
    );
    let _ = writeln!(
        o,
        "Doorbell Stride:                       {} bytes",
        1u64 << (2 + cap.dstrd())
    );
    let _ = writeln!(
        o,
        "NVM Subsystem Reset:                   {}",
        sup(cap.nssrs() == 1)
    );
    let _ = writeln!(o, "Command Sets Supported");
    let _ = writeln!(
        o,
        "  NVM Command Set:                     {}",
        sup(cap.css() & 1 == 1)
    );
    let _ = writeln!(
        o,
        "Boot Partition:                        {}",
        sup(cap.bps() == 1)
    );
    let _ = writeln!(
        o,
        "Memory Page Size Minimum:              {} bytes",
        1u64 << (12 + cap.mpsmin())
    );
    let _ = writeln!(
        o,
        "Memory Page Size Maximum:              {} bytes",
        1u64 << (12 + cap.mpsmax())
    );
    let _ = writeln!(
        o,
        "Persistent Memory Region:              {}",
        sup(cap.pmrs() == 1)
    );
    let oaes = cd.oaes.get();
    let _ = writeln!(o, "Optional Asynchronous Events Supported");
    let rows = [
        ("  Namespace Attribute Notices:         ", 8),
        ("  Firmware Activation Notices:         ", 9),
        ("  ANA Change Notices:                  ", 11),
        ("  PLE Aggregate Log Change Notices:    ", 12),
        ("  LBA Status Info Alert Notices:       ", 13),
        ("  EGE Aggregate Log Change Notices:    ", 14),
        ("  Normal NVM Subsystem Shutdown event: ", 15),
        ("  Zone Descriptor Change Notices:      ", 27),
        ("  Discovery Log Change Notices:        ", 31),
    ];
    for (label, b) in rows {
        let _ = writeln!(o, "{label}{}", sup(bit(oaes, b)));
    }
    let ctratt = cd.ctratt.get();
    let _ = writeln!(o, "Controller Attributes");
    let rows = [
        ("  128-bit Host Identifier:             ", 0),
        ("  Non-Operational Permissive Mode:     ", 1),
        ("  NVM Sets:                            ", 2),
        ("  Read Recovery Levels:                ", 3),
        ("  Endurance Groups:                    ", 4),
        ("  Predictable Latency Mode:            ", 5),
        ("  Traffic Based Keep ALive:            ", 6),
        ("  Namespace Granularity:               ", 7),
        ("  SQ Associations:                     ", 8),
        ("  UUID List:                           ", 9),
        ("  Multi-Domain Subsystem:              ", 10),
        ("  Fixed Capacity Management:           ", 11),
        ("  Variable Capacity Management:        ", 12),
        ("  Delete Endurance Group:              ", 13),
        ("  Delete NVM Set:                      ", 14),
        ("  Extended LBA Formats Supported:      ", 15),
        ("  Flexible Data Placement Supported:   ", 19),
    ];
    for (label, b) in rows {
        let _ = writeln!(o, "{label}{}", sup(bit(ctratt, b)));
    }
    o.push('\n');
    o.push_str("Controller Memory Buffer Support\n================================\n");
    o.push_str("Supported:                             No\n\n");
    o.push_str("Persistent Memory Region Support\n================================\n");
    o.push_str("Supported:                             No\n\n");
}

fn admin_attrs(o: &mut Out, cd: &IdentifyController) {
    let oacs = u32::from(cd.oacs.get());
    let _ = writeln!(o, "Admin Command Set Attributes");
    let _ = writeln!(o, "============================");
    let rows = [
        ("Security Send/Receive:                 ", 0),
        ("Format NVM:                            ", 1),
        ("Firmware Activate/Download:            ", 2),
        ("Namespace Management:                  ", 3),
        ("Device Self-Test:                      ", 4),
        ("Directives:                            ", 5),
        ("NVMe-MI:                               ", 6),
        ("Virtualization Management:             ", 7),
        ("Doorbell Buffer Config:                ", 8),
        ("Get LBA Status Capability:             ", 9),
        ("Command & Feature Lockdown Capability: ", 10),
    ];
    for (label, b) in rows {
        let _ = writeln!(o, "{label}{}", sup(bit(oacs, b)));
    }
    let _ = writeln!(
        o,
        "Abort Command Limit:                   {}",
        u32::from(cd.acl) + 1
    );
    let _ = writeln!(
        o,
        "Async Event Request Limit:             {}",
        u32::from(cd.aerl) + 1
    );
    let fw = bit(oacs, 2);
    let frmw = u32::from(cd.frmw);
    let na = |s: String| if fw { s } else { "N/A".to_string() };
    let _ = writeln!(
        o,
        "Number of Firmware Slots:              {}",
        na(((frmw >> 1) & 7).to_string())
    );
    let _ = writeln!(
        o,
        "Firmware Slot 1 Read-Only:             {}",
        na(yes(bit(frmw, 0)).into())
    );
    let _ = writeln!(
        o,
        "Firmware Activation Without Reset:     {}",
        na(yes(bit(frmw, 4)).into())
    );
    let _ = writeln!(
        o,
        "Multiple Update Detection Support:     {}",
        na(yes(bit(frmw, 5)).into())
    );
    let fwug = match cd.fwug {
        0 => "No Information Provided".to_string(),
        0xff => "No Restriction".to_string(),
        g => format!("{} KiB", u32::from(g) * 4),
    };
    let _ = writeln!(o, "Firmware Update Granularity:           {fwug}");
    let lpa = u32::from(cd.lpa);
    let _ = writeln!(
        o,
        "Per-Namespace SMART Log:               {}",
        yes(bit(lpa, 0))
    );
    if bit(u32::from(cd.cmic), 3) {
        let _ = writeln!(o, "Asymmetric Namespace Access Log Page:  Supported");
        let _ = writeln!(o, "ANA Transition Time                 :  {} sec", cd.anatt);
        o.push('\n');
        let a = u32::from(cd.anacap);
        let _ = writeln!(o, "Asymmetric Namespace Access Capabilities");
        let _ = writeln!(
            o,
            "  ANA Optimized State               : {}",
            sup(bit(a, 0))
        );
        let _ = writeln!(
            o,
            "  ANA Non-Optimized State           : {}",
            sup(bit(a, 1))
        );
        let _ = writeln!(
            o,
            "  ANA Inaccessible State            : {}",
            sup(bit(a, 2))
        );
        let _ = writeln!(
            o,
            "  ANA Persistent Loss State         : {}",
            sup(bit(a, 3))
        );
        let _ = writeln!(
            o,
            "  ANA Change State                  : {}",
            sup(bit(a, 4))
        );
        let _ = writeln!(
            o,
            "  ANAGRPID is not changed           : {}",
            yes(bit(a, 6))
        );
        let _ = writeln!(
            o,
            "  Non-Zero ANAGRPID for NS Mgmt Cmd : {}",
            sup(bit(a, 7))
        );
        o.push('\n');
        let _ = writeln!(
            o,
            "ANA Group Identifier Maximum        : {}",
            cd.anagrpmax.get()
        );
        let _ = writeln!(
            o,
            "Number of ANA Group Identifiers     : {}",
            cd.nanagrpid.get()
        );
        let _ = writeln!(o, "Max Number of Allowed Namespaces    : {}", cd.mnan.get());
    } else {
        let _ = writeln!(o, "Asymmetric Namespace Access Log Page:  Not Supported");
    }
    let _ = writeln!(
        o,
        "Subsystem NQN:                         {}",
        cstr(&cd.subnqn)
    );
    let mlps = bit(lpa, 5);
    let _ = writeln!(
        o,
        "Command Effects Log Page:              {}",
        sup(bit(lpa, 1))
    );
    let _ = writeln!(
        o,
        "Get Log Page Extended Data:            {}",
        sup(bit(lpa, 2))
    );
    let _ = writeln!(
        o,
        "Telemetry Log Pages:                   {}",
        sup(bit(lpa, 3))
    );
    let _ = writeln!(
        o,
        "Persistent Event Log Pages:            {}",
        sup(bit(lpa, 4))
    );
    let may = if mlps { "Supported" } else { "May Support" };
    let _ = writeln!(o, "Supported Log Pages Log Page:          {may}");
    let _ = writeln!(o, "Commands Supported & Effects Log Page: {}", sup(mlps));
    let _ = writeln!(o, "Feature Identifiers & Effects Log Page:{may}");
    let _ = writeln!(o, "NVMe-MI Commands & Effects Log Page:   {may}");
    let _ = writeln!(
        o,
        "Data Area 4 for Telemetry Log:         {}",
        sup(bit(lpa, 6))
    );
    let _ = writeln!(
        o,
        "Error Log Page Entries Supported:      {}",
        u32::from(cd.elpe) + 1
    );
    let kas = cd.kas.get();
    if kas == 0 {
        let _ = writeln!(o, "Keep Alive:                            Not Supported");
    } else {
        let _ = writeln!(o, "Keep Alive:                            Supported");
        let _ = writeln!(
            o,
            "Keep Alive Granularity:                {} ms",
            u32::from(kas) * 100
        );
    }
    o.push('\n');
}

fn nvm_attrs(o: &mut Out, cd: &IdentifyController) {
    let _ = writeln!(o, "NVM Command Set Attributes");
    let _ = writeln!(o, "==========================");
    let _ = writeln!(o, "Submission Queue Entry Size");
    let _ = writeln!(
        o,
        "  Max:                       {}",
        1u32 << (cd.sqes >> 4).min(31)
    );
    let _ = writeln!(
        o,
        "  Min:                       {}",
        1u32 << (cd.sqes & 0xf)
    );
    let _ = writeln!(o, "Completion Queue Entry Size");
    let _ = writeln!(
        o,
        "  Max:                       {}",
        1u32 << (cd.cqes >> 4).min(31)
    );
    let _ = writeln!(
        o,
        "  Min:                       {}",
        1u32 << (cd.cqes & 0xf)
    );
    let _ = writeln!(o, "Number of Namespaces:        {}", cd.nn.get());
    let oncs = u32::from(cd.oncs.get());
    let rows = [
        ("Compare Command:             ", 0),
        ("Write Uncorrectable Command: ", 1),
        ("Dataset Management Command:  ", 2),
        ("Write Zeroes Command:        ", 3),
        ("Set Features Save Field:     ", 4),
        ("Reservations:                ", 5),
        ("Timestamp:                   ", 6),
        ("Copy:                        ", 8),
    ];
    for (label, b) in rows {
        let _ = writeln!(o, "{label}{}", sup(bit(oncs, b)));
    }
    let vwc = if cd.vwc & 1 == 1 {
        "Present"
    } else {
        "Not Present"
    };
    let _ = writeln!(o, "Volatile Write Cache:        {vwc}");
    let _ = writeln!(
        o,
        "Atomic Write Unit (Normal):  {}",
        u32::from(cd.awun.get()) + 1
    );
    let _ = writeln!(
        o,
        "Atomic Write Unit (PFail):   {}",
        u32::from(cd.awupf.get()) + 1
    );
    let _ = writeln!(
        o,
        "Atomic Compare & Write Unit: {}",
        u32::from(cd.acwu.get()) + 1
    );
    let _ = writeln!(
        o,
        "Fused Compare & Write:       {}",
        sup(cd.fuses.get() & 1 == 1)
    );
    let sgls = cd.sgls.get();
    let _ = writeln!(o, "Scatter-Gather List");
    let sgl = match sgls & 3 {
        1 => "Supported",
        2 => "Supported (Dword aligned)",
        _ => "Not Supported",
    };
    let _ = writeln!(o, "  SGL Command Set:           {sgl}");
    let rows = [
        ("  SGL Keyed:                 ", 2),
        ("  SGL Bit Bucket Descriptor: ", 16),
        ("  SGL Metadata Pointer:      ", 17),
        ("  Oversized SGL:             ", 18),
        ("  SGL Metadata Address:      ", 19),
        ("  SGL Offset:                ", 20),
        ("  Transport SGL Data Block:  ", 21),
    ];
    for (label, b) in rows {
        let _ = writeln!(o, "{label}{}", sup(bit(sgls, b)));
    }
    let rpmbs = cd.rpmbs.get();
    if rpmbs & 7 > 0 {
        let _ = writeln!(o, "Replay Protected Memory Block:  Supported");
        let _ = writeln!(o, "  Number of RPMB Units:  {}", rpmbs & 7);
        let auth = if (rpmbs >> 3) & 7 == 0 {
            "HMAC SHA-256"
        } else {
            "Unknown"
        };
        let _ = writeln!(o, "  Authentication Method: {auth}");
        let _ = writeln!(
            o,
            "  Total Size (in 128KB units) = {}",
            ((rpmbs >> 16) & 0xff) + 1
        );
        let _ = writeln!(
            o,
            "  Access Size (in 512B units) = {}",
            ((rpmbs >> 24) & 0xff) + 1
        );
    } else {
        let _ = writeln!(o, "Replay Protected Memory Block:  Not Supported");
    }
    for (i, crdt) in [cd.crdt1.get(), cd.crdt2.get(), cd.crdt3.get()]
        .into_iter()
        .enumerate()
    {
        if crdt != 0 {
            let _ = writeln!(
                o,
                "Command Retry Delay Time {}:  {} milliseconds",
                i + 1,
                u32::from(crdt) * 100
            );
        }
    }
    o.push('\n');
}

fn firmware(o: &mut Out, fw: &[u8]) {
    let _ = writeln!(o, "Firmware Slot Information");
    let _ = writeln!(o, "=========================");
    let afi = fw.first().copied().unwrap_or(0);
    let _ = writeln!(o, "Active slot:                 {}", afi & 7);
    if (afi >> 4) & 7 != 0 {
        let _ = writeln!(o, "Next controller reset slot:  {}", (afi >> 4) & 7);
    }
    for i in 0..7 {
        if let Some(rev) = fw.get(8 + i * 8..16 + i * 8)
            && rev.iter().any(|&b| b != 0)
        {
            let _ = writeln!(o, "Slot {} Firmware Revision:    {}", i + 1, ascii(rev));
        }
    }
    o.push('\n');
    o.push('\n');
}

fn admin_opc_name(opc: usize) -> &'static str {
    match opc {
        0x00 => "Delete I/O Submission Queue",
        0x01 => "Create I/O Submission Queue",
        0x02 => "Get Log Page",
        0x04 => "Delete I/O Completion Queue",
        0x05 => "Create I/O Completion Queue",
        0x06 => "Identify",
        0x08 => "Abort",
        0x09 => "Set Features",
        0x0a => "Get Features",
        0x0c => "Asynchronous Event Request",
        0x0d => "Namespace Management",
        0x10 => "Firmware Commit",
        0x11 => "Firmware Image Download",
        0x14 => "Device Self-test",
        0x15 => "Namespace Attachment",
        0x18 => "Keep Alive",
        0x19 => "Directive Send",
        0x1a => "Directive Receive",
        0x1c => "Virtualization Management",
        0x1d => "NVMe-MI Send",
        0x1e => "NVMe-MI Receive",
        0x7c => "Doorbell Buffer Config",
        0x80 => "Format NVM",
        0x81 => "Security Send",
        0x82 => "Security Receive",
        0x84 => "Sanitize",
        o if o >= 0xc0 => "Vendor specific",
        _ => "Unknown",
    }
}

fn io_opc_name(opc: usize) -> &'static str {
    match opc {
        0x00 => "Flush",
        0x01 => "Write",
        0x02 => "Read",
        0x04 => "Write Uncorrectable",
        0x05 => "Compare",
        0x08 => "Write Zeroes",
        0x09 => "Dataset Management",
        0x0c => "Verify",
        0x0d => "Reservation Register",
        0x0e => "Reservation Report",
        0x11 => "Reservation Acquire",
        0x12 => "IO Management Receive",
        0x15 => "Reservation Release",
        0x19 => "Copy",
        0x1d => "IO Management Send",
        o if o >= 0x80 => "Vendor specific",
        _ => "Unknown",
    }
}

fn effects(o: &mut Out, e: &[u8]) {
    let _ = writeln!(o, "Commands Supported and Effects");
    let _ = writeln!(o, "==============================");
    let section = |o: &mut Out, base: usize, name: fn(usize) -> &'static str| {
        for i in 0..256 {
            let Some(v) = e.get(base + i * 4..base + i * 4 + 4) else {
                break;
            };
            let v = le32(v, 0);
            if v & 1 == 0 {
                continue;
            }
            let cse = match (v >> 16) & 7 {
                1 => "Per-NS-Exclusive",
                2 => "All-NS-Exclusive",
                _ => "",
            };
            let _ = writeln!(
                o,
                "{:>30} ({:02X}h): Supported {}{}{}{}{}",
                name(i),
                i,
                if bit(v, 1) { "LBA-Change " } else { "" },
                if bit(v, 2) { "NS-Cap-Change " } else { "" },
                if bit(v, 3) {
                    "NS-Inventory-Change "
                } else {
                    ""
                },
                if bit(v, 4) { "Ctrlr-Cap-Change " } else { "" },
                cse
            );
        }
    };
    let _ = writeln!(o, "Admin Commands");
    let _ = writeln!(o, "--------------");
    section(o, 0, admin_opc_name);
    let _ = writeln!(o, "I/O Commands");
    let _ = writeln!(o, "------------");
    section(o, 1024, io_opc_name);
    o.push('\n');
}

fn error_log(o: &mut Out, log: &[u8], elpe: u8) {
    let _ = writeln!(o, "Error Log");
    let _ = writeln!(o, "=========");
    for i in 0..=usize::from(elpe) {
        let Some(e) = log.get(i * 64..i * 64 + 64) else {
            break;
        };
        let count = le64(e, 0);
        if count == 0 {
            continue;
        }
        if i != 0 {
            let _ = writeln!(o, "-----------");
        }
        let status = le16(e, 12);
        let _ = writeln!(o, "Entry: {i}");
        let _ = writeln!(o, "Error Count:            0x{count:x}");
        let _ = writeln!(o, "Submission Queue Id:    0x{:x}", le16(e, 8));
        let _ = writeln!(o, "Command Id:             0x{:x}", le16(e, 10));
        let _ = writeln!(o, "Phase Bit:              {:x}", status & 1);
        let _ = writeln!(o, "Status Code:            0x{:x}", (status >> 1) & 0xff);
        let _ = writeln!(o, "Status Code Type:       0x{:x}", (status >> 9) & 7);
        let _ = writeln!(o, "Do Not Retry:           {:x}", status >> 15);
        let _ = writeln!(o, "Error Location:         0x{:x}", le16(e, 14));
        let _ = writeln!(o, "LBA:                    0x{:x}", le64(e, 16));
        let _ = writeln!(o, "Namespace:              0x{:x}", le32(e, 24));
        let _ = writeln!(o, "Vendor Log Page:        0x{:x}", e[28]);
    }
    o.push('\n');
}

fn features(o: &mut Out, c: &Controller, cd: &IdentifyController, f: &Fetched) {
    if let Some(arb) = f.arbitration {
        let ab = arb & 7;
        let _ = writeln!(o, "Arbitration");
        let _ = writeln!(o, "===========");
        if ab == 7 {
            let _ = writeln!(o, "Arbitration Burst:           no limit");
        } else {
            let _ = writeln!(o, "Arbitration Burst:           {}", 1u32 << ab);
        }
        if c.cap().ams() & 1 == 1 {
            let _ = writeln!(
                o,
                "Low Priority Weight:         {}",
                ((arb >> 8) & 0xff) + 1
            );
            let _ = writeln!(
                o,
                "Medium Priority Weight:      {}",
                ((arb >> 16) & 0xff) + 1
            );
            let _ = writeln!(
                o,
                "High Priority Weight:        {}",
                ((arb >> 24) & 0xff) + 1
            );
        }
        o.push('\n');
    }
    if let Some(pm) = f.power {
        power(o, cd, pm & 0x1f);
    }
    if let Some(tt) = f.temp_threshold {
        health(o, &f.health, tt);
    }
    if let Some(nq) = f.num_queues {
        let _ = writeln!(o, "Number of Queues");
        let _ = writeln!(o, "================");
        let _ = writeln!(
            o,
            "Number of I/O Submission Queues:      {}",
            (nq & 0xffff) + 1
        );
        // spdk_nvme_identify masks with `0xFFFF0000 >> 16` (operator precedence), so it
        // prints the submission queue count again; kept for output parity.
        let _ = writeln!(
            o,
            "Number of I/O Completion Queues:      {}",
            (nq & 0xffff) + 1
        );
        o.push('\n');
    }
    let hctma = cd.hctma.get();
    if hctma & 1 == 1 {
        let _ = writeln!(o, "Host Controlled Thermal Management");
        let _ = writeln!(o, "==================================");
        let t = |v: u16| {
            if v == 0 {
                "Not Reported".to_string()
            } else {
                format!("{v} Kelvin ({} Celsius)", i32::from(v) - 273)
            }
        };
        let _ = writeln!(
            o,
            "Minimum Thermal Management Temperature:  {}",
            t(cd.mntmt.get())
        );
        let _ = writeln!(
            o,
            "Maximum Thermal Management Temperature:   {}",
            t(cd.mxtmt.get())
        );
        o.push('\n');
    }
}

fn power(o: &mut Out, cd: &IdentifyController, ps: u32) {
    let _ = writeln!(o, "Power Management");
    let _ = writeln!(o, "================");
    let _ = writeln!(
        o,
        "Number of Power States:          {}",
        u32::from(cd.npss) + 1
    );
    let _ = writeln!(o, "Current Power State:             Power State #{ps}");
    for i in 0..=usize::from(cd.npss).min(31) {
        let p = cd.psd[i];
        let mp = u32::from(p.mp.get());
        let _ = writeln!(o, "Power State #{i}:");
        if p.flags & 1 == 1 {
            let _ = writeln!(
                o,
                "  Max Power:                    {}.{:04} W",
                mp / 10000,
                mp % 10000
            );
        } else {
            let _ = writeln!(
                o,
                "  Max Power:                    {:3}.{:02} W",
                mp / 100,
                mp % 100
            );
        }
        let nops = if p.flags & 2 != 0 {
            "Non-Operation"
        } else {
            "Operational"
        };
        let _ = writeln!(o, "  Non-Operational State:         {nops}");
        let lat = |v: u32| {
            if v == 0 {
                "Not Reported".to_string()
            } else {
                format!("{v} microseconds")
            }
        };
        let _ = writeln!(o, "  Entry Latency:                 {}", lat(p.enlat.get()));
        let _ = writeln!(o, "  Exit Latency:                  {}", lat(p.exlat.get()));
        let _ = writeln!(o, "  Relative Read Throughput:      {}", p.rrt);
        let _ = writeln!(o, "  Relative Read Latency:         {}", p.rrl);
        let _ = writeln!(o, "  Relative Write Throughput:     {}", p.rwt);
        let _ = writeln!(o, "  Relative Write Latency:        {}", p.rwl);
        let pw = |scale: u8, v: u16| {
            let v = u32::from(v);
            match scale {
                1 => format!("{}.{:04} W", v / 10000, v % 10000),
                2 => format!("{}.{:02} W", v / 100, v % 100),
                _ => " Not Reported".to_string(),
            }
        };
        let _ = writeln!(
            o,
            "  Idle Power:                    {}",
            pw(p.ips >> 6, p.idlp.get())
        );
        let _ = writeln!(
            o,
            "  Active Power:                  {}",
            pw(p.apw_aps >> 6, p.actp.get())
        );
    }
    let _ = writeln!(
        o,
        "Non-Operational Permissive Mode: {}",
        sup(bit(cd.ctratt.get(), 1))
    );
    o.push('\n');
}

fn health(o: &mut Out, h: &[u8], threshold: u32) {
    if h.len() < 512 {
        return;
    }
    let cw = h[0];
    let warn = |b: u8| if cw >> b & 1 == 1 { "WARNING" } else { "OK" };
    let _ = writeln!(o, "Health Information");
    let _ = writeln!(o, "==================");
    let _ = writeln!(o, "Critical Warnings:");
    let _ = writeln!(o, "  Available Spare Space:     {}", warn(0));
    let _ = writeln!(o, "  Temperature:               {}", warn(1));
    let _ = writeln!(o, "  Device Reliability:        {}", warn(2));
    let _ = writeln!(o, "  Read Only:                 {}", yes(cw >> 3 & 1 == 1));
    let _ = writeln!(o, "  Volatile Memory Backup:    {}", warn(4));
    let temp = le16(h, 1);
    let _ = writeln!(
        o,
        "Current Temperature:         {temp} Kelvin ({} Celsius)",
        i32::from(temp) - 273
    );
    let _ = writeln!(
        o,
        "Temperature Threshold:       {threshold} Kelvin ({} Celsius)",
        i64::from(threshold) - 273
    );
    let _ = writeln!(o, "Available Spare:             {}%", h[3]);
    let _ = writeln!(o, "Available Spare Threshold:   {}%", h[4]);
    let _ = writeln!(o, "Life Percentage Used:        {}%", h[5]);
    let rows = [
        ("Data Units Read:             ", 32, ""),
        ("Data Units Written:          ", 48, ""),
        ("Host Read Commands:          ", 64, ""),
        ("Host Write Commands:         ", 80, ""),
        ("Controller Busy Time:        ", 96, " minutes"),
        ("Power Cycles:                ", 112, ""),
        ("Power On Hours:              ", 128, " hours"),
        ("Unsafe Shutdowns:            ", 144, ""),
        ("Unrecoverable Media Errors:  ", 160, ""),
        ("Lifetime Error Log Entries:  ", 176, ""),
    ];
    for (label, off, unit) in rows {
        let _ = writeln!(o, "{label}{}{unit}", u128_dec(&h[off..off + 16]));
    }
    let _ = writeln!(o, "Warning Temperature Time:    {} minutes", le32(h, 192));
    let _ = writeln!(o, "Critical Temperature Time:   {} minutes", le32(h, 196));
    for i in 0..8 {
        let t = le16(h, 200 + i * 2);
        if t != 0 {
            let _ = writeln!(
                o,
                "Temperature Sensor {}:        {t} Kelvin ({} Celsius)",
                i + 1,
                i32::from(t) - 273
            );
        }
    }
    o.push('\n');
}

fn namespace(o: &mut Out, c: &mut Controller, cd: &IdentifyController, ns: &Namespace) {
    let d = ns.data();
    let nsid = ns.id();
    let _ = writeln!(o, "Namespace ID:{nsid}");
    let er = {
        let mut sqe = nvme::spec::sqe::Sqe::new(nvme::spec::opcode::AdminOpcode::GET_FEATURES.0, 0);
        sqe.nsid = nsid.into();
        sqe.cdw10 = u32::from(Fid::ERROR_RECOVERY.0).into();
        c.admin_cmd(sqe, nvme::host::Payload::None, "Get Features")
            .ok()
            .map(|(cqe, _)| cqe.dw0.get())
    };
    if let Some(er) = er {
        let tler = er & 0xffff;
        if tler == 0 {
            let _ = writeln!(o, "Error Recovery Timeout:                Unlimited");
        } else {
            let _ = writeln!(
                o,
                "Error Recovery Timeout:                {} milliseconds",
                tler * 100
            );
        }
    }
    let descs = c
        .identify(Cns::NS_ID_DESCRIPTOR_LIST, nsid)
        .ok()
        .and_then(|b| NsIdDescriptor::parse_list(&b).ok())
        .unwrap_or_default();
    let csi = descs
        .iter()
        .find_map(|d| match d {
            NsIdDescriptor::Csi(c) => Some(c.0),
            _ => None,
        })
        .unwrap_or(0);
    let csi_name = match csi {
        0 => "NVM",
        1 => "KV",
        2 => "ZNS",
        0x30..=0x3f => "Vendor specific",
        _ => "Unknown",
    };
    let oncs = u32::from(cd.oncs.get());
    let _ = writeln!(
        o,
        "Command Set Identifier:                {csi_name} ({csi:02X}h)"
    );
    let _ = writeln!(
        o,
        "Deallocate:                            {}",
        sup(bit(oncs, 2))
    );
    let nsfeat = u32::from(d.nsfeat);
    let _ = writeln!(
        o,
        "Deallocated/Unwritten Error:           {}",
        sup(bit(nsfeat, 2))
    );
    let dl = match d.dlfeat & 7 {
        1 => "All 0x00",
        2 => "All 0xFF",
        _ => "Unknown",
    };
    let _ = writeln!(o, "Deallocated Read Value:                {dl}");
    let _ = writeln!(
        o,
        "Deallocate in Write Zeroes:            {}",
        sup(d.dlfeat & 8 != 0)
    );
    let guard = if d.dlfeat & 0x10 != 0 {
        "CRC for Read Value"
    } else {
        "0xFFFF"
    };
    let _ = writeln!(o, "Deallocated Guard Field:               {guard}");
    let _ = writeln!(
        o,
        "Flush:                                 {}",
        sup(cd.vwc & 1 == 1)
    );
    let _ = writeln!(
        o,
        "Reservation:                           {}",
        sup(d.rescap != 0)
    );
    if d.dps & 7 != 0 {
        let _ = writeln!(o, "End-to-End Data Protection:            Supported");
        let _ = writeln!(
            o,
            "Protection Type:                       Type{}",
            d.dps & 7
        );
        let first = if d.dps & 8 != 0 {
            "First 8/16 Bytes"
        } else {
            "Last 8/16 Bytes"
        };
        let _ = writeln!(o, "Protection Information Transferred as: {first}");
    }
    let lbaf = d.lba_format();
    if lbaf.ms.get() > 0 {
        let how = if d.flbas & 0x10 != 0 {
            "Extended Data LBA"
        } else {
            "Separate Metadata Buffer"
        };
        let _ = writeln!(o, "Metadata Transferred as:               {how}");
    }
    let share = if d.nmic & 1 == 1 {
        "Multiple Controllers"
    } else {
        "Private"
    };
    let _ = writeln!(o, "Namespace Sharing Capabilities:        {share}");
    let bs = u64::from(ns.block_size());
    let gib = |n: u64| n.saturating_mul(bs) / 1024 / 1024 / 1024;
    let (nsze, ncap, nuse) = (d.nsze.get(), d.ncap.get(), d.nuse.get());
    let _ = writeln!(
        o,
        "Size (in LBAs):                        {nsze} ({}GiB)",
        gib(nsze)
    );
    let _ = writeln!(
        o,
        "Capacity (in LBAs):                    {ncap} ({}GiB)",
        gib(ncap)
    );
    let _ = writeln!(
        o,
        "Utilization (in LBAs):                 {nuse} ({}GiB)",
        gib(nuse)
    );
    if d.noiob.get() != 0 {
        let _ = writeln!(
            o,
            "Optimal I/O Boundary:                  {} blocks",
            d.noiob.get()
        );
    }
    let hexbe = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    if d.nguid.iter().any(|&b| b != 0) {
        let _ = writeln!(
            o,
            "NGUID:                                 {}",
            hexbe(&d.nguid)
        );
    }
    if d.eui64.iter().any(|&b| b != 0) {
        let _ = writeln!(
            o,
            "EUI64:                                 {}",
            hexbe(&d.eui64)
        );
    }
    if let Some(u) = descs.iter().find_map(|d| match d {
        NsIdDescriptor::Uuid(u) => Some(*u),
        _ => None,
    }) {
        let _ = writeln!(
            o,
            "UUID:                                  {}",
            nvme::host::uuid_string(&u)
        );
    }
    let _ = writeln!(
        o,
        "Thin Provisioning:                     {}",
        sup(bit(nsfeat, 0))
    );
    let atomic = bit(nsfeat, 1);
    let _ = writeln!(o, "Per-NS Atomic Units:                   {}", yes(atomic));
    if atomic {
        let opt = [
            ("  Atomic Write Unit (Normal):          ", d.nawun.get()),
            ("  Atomic Write Unit (PFail):           ", d.nawupf.get()),
            ("  Preferred Write Granularity:         ", d.npwg.get()),
            ("  Atomic Compare & Write Unit:         ", d.nacwu.get()),
        ];
        for (label, v) in opt {
            if v != 0 {
                let _ = writeln!(o, "{label}{}", u32::from(v) + 1);
            }
        }
        let _ = writeln!(
            o,
            "  Atomic Boundary Size (Normal):       {}",
            d.nabsn.get()
        );
        let _ = writeln!(
            o,
            "  Atomic Boundary Size (PFail):        {}",
            d.nabspf.get()
        );
        let _ = writeln!(o, "  Atomic Boundary Offset:              {}", d.nabo.get());
    }
    if bit(oncs, 8) {
        let _ = writeln!(
            o,
            "Maximum Single Source Range Length:    {}",
            d.mssrl.get()
        );
        let _ = writeln!(o, "Maximum Copy Length:                   {}", d.mcl.get());
        let _ = writeln!(
            o,
            "Maximum Source Range Count:            {}",
            u32::from(d.msrc) + 1
        );
    }
    let _ = writeln!(
        o,
        "NGUID/EUI64 Never Reused:              {}",
        yes(bit(nsfeat, 3))
    );
    if bit(u32::from(cd.cmic), 3) {
        let _ = writeln!(
            o,
            "ANA group ID:                          {}",
            d.anagrpid.get()
        );
    }
    let _ = writeln!(
        o,
        "Namespace Write Protected:             {}",
        yes(d.nsattr & 1 == 1)
    );
    let ctratt = cd.ctratt.get();
    if bit(ctratt, 2) {
        let _ = writeln!(
            o,
            "NVM set ID:                            {}",
            d.nvmsetid.get()
        );
    }
    if bit(ctratt, 4) {
        let _ = writeln!(
            o,
            "Endurance group ID:                    {}",
            d.endgid.get()
        );
    }
    let _ = writeln!(
        o,
        "Number of LBA Formats:                 {}",
        u32::from(d.nlbaf) + 1
    );
    let _ = writeln!(
        o,
        "Current LBA Format:                    LBA Format #{:02}",
        d.lba_format_index()
    );
    for i in 0..=usize::from(d.nlbaf).min(63) {
        let f = d.lbaf[i];
        let _ = writeln!(
            o,
            "LBA Format #{i:02}: Data Size: {:5}  Metadata Size: {:5}",
            1u64 << f.lbads.min(63),
            f.ms.get()
        );
    }
    o.push('\n');
}

fn discovery(o: &mut Out, c: &mut Controller) -> Result<(), HostError> {
    let log = c.discovery_log()?;
    let _ = writeln!(o, "Discovery Log Page");
    let _ = writeln!(o, "==================");
    let _ = writeln!(o, "Generation Counter:                    {}", log.genctr);
    let _ = writeln!(
        o,
        "Number of Records:                     {}",
        log.entries.len()
    );
    let _ = writeln!(o, "Record Format:                         {}", log.recfmt);
    o.push('\n');
    for (i, e) in log.entries.iter().enumerate() {
        let trtype = match e.trtype {
            1 => "RDMA",
            2 => "FC",
            3 => "TCP",
            254 => "INTRA_HOST",
            _ => "unknown",
        };
        let adrfam = match e.adrfam {
            1 => "IPv4",
            2 => "IPv6",
            3 => "IB",
            4 => "FC",
            254 => "INTRA_HOST",
            _ => "unknown",
        };
        let subtype = match e.subtype {
            1 => "Referral to a discovery service",
            2 => "NVM Subsystem",
            3 => "Current Discovery Subsystem",
            _ => "Unknown",
        };
        let sc = match e.treq & 3 {
            0 => "Not Specified",
            1 => "Required",
            2 => "Not Required",
            _ => "Reserved",
        };
        let eflags = e.eflags.get();
        let _ = writeln!(o, "Discovery Log Entry {i}");
        let _ = writeln!(o, "----------------------");
        let _ = writeln!(
            o,
            "Transport Type:                        {} ({trtype})",
            e.trtype
        );
        let _ = writeln!(
            o,
            "Address Family:                        {} ({adrfam})",
            e.adrfam
        );
        let _ = writeln!(
            o,
            "Subsystem Type:                        {} ({subtype})",
            e.subtype
        );
        let _ = writeln!(o, "Entry Flags:");
        let _ = writeln!(o, "  Duplicate Returned Information:\t\t\t{}", eflags & 1);
        let _ = writeln!(
            o,
            "  Explicit Persistent Connection Support for Discovery: {}",
            (eflags >> 1) & 1
        );
        let _ = writeln!(o, "Transport Requirements:");
        let _ = writeln!(o, "  Secure Channel:                      {sc}");
        let portid = e.portid.get();
        let cntlid = e.cntlid.get();
        let _ = writeln!(
            o,
            "Port ID:                               {portid} (0x{portid:04x})"
        );
        let _ = writeln!(
            o,
            "Controller ID:                         {cntlid} (0x{cntlid:04x})"
        );
        let _ = writeln!(
            o,
            "Admin Max SQ Size:                     {}",
            e.asqsz.get()
        );
        let _ = writeln!(
            o,
            "Transport Service Identifier:          {}",
            cstr(&e.trsvcid)
        );
        let _ = writeln!(
            o,
            "NVM Subsystem Qualified Name:          {}",
            cstr(&e.subnqn)
        );
        let _ = writeln!(
            o,
            "Transport Address:                     {}",
            cstr(&e.traddr)
        );
    }
    Ok(())
}
