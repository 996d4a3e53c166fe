//! Admin commands of I/O and discovery controllers (SPDK `nvmf_ctrlr_process_admin_cmd`).

use crate::ctrlr::{
    AEC_ANA_CHANGE, AEC_DISCOVERY_LOG_CHANGE, AEC_NS_ATTR, Ctrlr, LID_CHANGED_NS_LIST,
    LID_DISCOVERY, LID_RESERVATION_NOTIFICATION, MAX_AERS, RESV_MASK_BITS,
};
use crate::discovery;
use crate::poll_group::{AbortTarget, PgInner};
use crate::qpair::{QpairInner, Reply};
use crate::request::{DataBuf, Request};
use crate::subsystem::SubsysSnap;
use bdev::IoType;
use nvme::spec::identify::{
    self as id, Cns, Csi, IDENTIFY_DATA_SIZE, IdentifyArgs, IdentifyController, IdentifyNamespace,
    NsIdDescriptor, NsList,
};
use nvme::spec::io::ABORT_DW0_NOT_ABORTED;
use nvme::spec::{AdminOpcode, CommandSpecificStatus, Fuse, GenericStatus, Status};
use std::rc::Rc;
use zerocopy::IntoBytes;

/// Firmware revision reported in Identify and the firmware slot log (SPDK prints its version).
pub const FIRMWARE_REVISION: &str = "25.09";
/// PCI vendor ID SPDK reports (Intel).
pub const VID: u16 = 0x8086;
/// IEEE OUI SPDK reports.
pub const IEEE_OUI: [u8; 3] = [0xe4, 0xd2, 0x5c];
/// Error log page entries supported minus one (Identify ELPE).
pub const ELPE: u8 = 127;
/// ANA transition time in seconds (SPDK `ANA_TRANSITION_TIME_IN_SEC`).
pub const ANATT: u8 = 10;
/// The ANA log page (NVMe Base 2.0, 5.16.1.13): header CHGCNT @0, NGRPS @8, then per group
/// ANAGRPID, NNSID, CHGCNT, state, 15 reserved bytes and (unless RGO) the NSIDs; both
/// CHGCNT fields carry the subsystem's ANA change count (SPDK leaves them 0). Each
/// group's state is the one of the listener the controller connected through (`listen`).
/// Only namespaces visible to `hostnqn` are listed (SPDK lists every namespace here;
/// masking would leak the NSIDs of hidden namespaces), and groups with none of them are
/// left out.
fn ana_page(
    snap: &SubsysSnap,
    hostnqn: &str,
    listen: Option<&crate::transport::ListenAddr>,
    chgcnt: u64,
    rgo: bool,
) -> Vec<u8> {
    let mut groups: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for ns in snap.namespaces.values().filter(|ns| ns.visible_to(hostnqn)) {
        groups.entry(ns.anagrpid).or_default().push(ns.nsid);
    }
    let mut page = Vec::new();
    page.extend_from_slice(&chgcnt.to_le_bytes());
    page.extend_from_slice(&(groups.len() as u16).to_le_bytes());
    page.extend_from_slice(&[0; 6]);
    for (g, nsids) in groups {
        page.extend_from_slice(&g.to_le_bytes());
        let n = if rgo { 0 } else { nsids.len() as u32 };
        page.extend_from_slice(&n.to_le_bytes());
        page.extend_from_slice(&chgcnt.to_le_bytes());
        page.push(snap.ana_state(listen, g).code());
        page.extend_from_slice(&[0; 15]);
        if !rgo {
            for n in nsids {
                page.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    page
}

/// Log page identifiers used here (NVMe Base 2.0, Figure 202).
mod lid {
    pub const SUPPORTED_LOG_PAGES: u8 = 0x00;
    pub const ERROR: u8 = 0x01;
    pub const HEALTH: u8 = 0x02;
    pub const FIRMWARE_SLOT: u8 = 0x03;
    pub const COMMAND_EFFECTS: u8 = 0x05;
    pub const ANA: u8 = 0x0c;
}

/// Feature identifiers (NVMe Base 2.0, Figure 315).
mod fid {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const INTERRUPT_VECTOR_CONFIGURATION: u8 = 0x09;
    pub const WRITE_ATOMICITY: u8 = 0x0a;
    pub const ASYNC_EVENT_CONFIGURATION: u8 = 0x0b;
    pub const KEEP_ALIVE_TIMER: u8 = 0x0f;
    pub const HOST_BEHAVIOR_SUPPORT: u8 = 0x16;
    pub const HOST_IDENTIFIER: u8 = 0x81;
    pub const RESERVATION_NOTIFICATION_MASK: u8 = 0x82;
    pub const RESERVATION_PERSISTENCE: u8 = 0x83;
}

fn invalid_field() -> Reply {
    Reply::status(GenericStatus::INVALID_FIELD.into())
}

fn invalid_ns() -> Reply {
    Reply::status(GenericStatus::INVALID_NAMESPACE_OR_FORMAT.into())
}

/// Returns `page[offset..offset+len]` zero padded to `len`, as the command's data.
fn page_reply(page: &[u8], offset: usize, len: usize) -> Reply {
    let mut out = vec![0u8; len];
    if offset < page.len() {
        let n = (page.len() - offset).min(len);
        out[..n].copy_from_slice(&page[offset..offset + n]);
    }
    Reply::status(Status::SUCCESS).data(DataBuf::from_vec(out))
}

/// Executes an admin command on the admin queue of a connected controller. None when the
/// answer comes later (AER).
pub(crate) fn exec(pg: &Rc<PgInner>, q: &Rc<QpairInner>, req: Request) -> Option<Reply> {
    let admin = q.admin.borrow().clone();
    let Some(ctrlr) = admin else {
        return Some(Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into()));
    };
    let opc = req.sqe.admin_opcode();
    if ctrlr.shared.cc().en() == 0 || ctrlr.shared.csts().rdy() == 0 {
        tracing::error!(opc = opc.0, "admin command sent to disabled controller");
        return Some(Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into()));
    }
    if req.length > ctrlr.opts.max_io_size {
        tracing::error!(len = req.length, "admin transfer larger than max_io_size");
        return Some(Reply::status(GenericStatus::DATA_SGL_LENGTH_INVALID.into()));
    }
    if req.sqe.fuse() != Fuse::Normal {
        tracing::error!(opc = opc.0, "fused admin command");
        return Some(invalid_field());
    }
    if ctrlr.discovery
        && !matches!(
            opc,
            AdminOpcode::IDENTIFY
                | AdminOpcode::GET_LOG_PAGE
                | AdminOpcode::KEEP_ALIVE
                | AdminOpcode::SET_FEATURES
                | AdminOpcode::GET_FEATURES
                | AdminOpcode::ASYNC_EVENT_REQUEST
        )
    {
        tracing::error!(
            opc = opc.0,
            "unsupported admin opcode on discovery controller"
        );
        return Some(Reply::status(GenericStatus::INVALID_OPCODE.into()));
    }
    let ctrlr_scoped = matches!(
        opc,
        AdminOpcode::ABORT | AdminOpcode::ASYNC_EVENT_REQUEST | AdminOpcode::KEEP_ALIVE
    );
    if ctrlr_scoped && req.sqe.nsid() != 0 {
        tracing::error!(
            opc = opc.0,
            nsid = req.sqe.nsid(),
            "controller-scoped command with NSID"
        );
        return Some(invalid_field());
    }
    let Some(snap) = pg.subsystem(&ctrlr.subnqn) else {
        return Some(Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into()));
    };
    if matches!(opc, AdminOpcode::GET_FEATURES | AdminOpcode::SET_FEATURES)
        && let Some(r) = ana_feature_refusal(&ctrlr, &snap, &req)
    {
        return Some(r);
    }
    match opc {
        AdminOpcode::IDENTIFY => Some(identify(pg, &ctrlr, &snap, &req)),
        AdminOpcode::GET_LOG_PAGE => Some(get_log_page(pg, &ctrlr, &snap, q, &req)),
        AdminOpcode::GET_FEATURES => Some(get_features(&ctrlr, &snap, &req)),
        AdminOpcode::SET_FEATURES
            if req.sqe.cdw10.get() as u8 == fid::RESERVATION_PERSISTENCE
                && req.sqe.cdw10.get() & (1 << 31) == 0 =>
        {
            set_reservation_persistence(pg, &ctrlr, q, &req)
        }
        AdminOpcode::SET_FEATURES => Some(set_features(&ctrlr, &snap, &req)),
        AdminOpcode::KEEP_ALIVE => {
            ctrlr.last_keep_alive.set(env::now());
            Some(Reply::status(Status::SUCCESS))
        }
        AdminOpcode::ASYNC_EVENT_REQUEST => {
            if ctrlr.aers.borrow().len() >= MAX_AERS {
                tracing::error!("AERL exceeded");
                return Some(Reply::status(
                    CommandSpecificStatus::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED.into(),
                ));
            }
            ctrlr.aers.borrow_mut().push_back(req.sqe.cid());
            ctrlr.flush_events();
            None
        }
        AdminOpcode::ABORT => abort(pg, &ctrlr, q, &req),
        _ => {
            tracing::info!(opc = opc.0, "unsupported admin opcode");
            Some(Reply::status(GenericStatus::INVALID_OPCODE.into()))
        }
    }
}

/// SPDK `nvmf_ctrlr_get_features` / `nvmf_ctrlr_set_features`: the namespace-scoped
/// features Error Recovery, Write Atomicity and the two reservation features of a
/// namespace whose ANA group is Inaccessible on this controller's listener answer Path
/// Related Status Asymmetric Access Inaccessible.
fn ana_feature_refusal(ctrlr: &Ctrlr, snap: &SubsysSnap, req: &Request) -> Option<Reply> {
    let f = req.sqe.cdw10.get() as u8;
    if ctrlr.discovery
        || !snap.ana_reporting
        || !matches!(
            f,
            fid::ERROR_RECOVERY
                | fid::WRITE_ATOMICITY
                | fid::RESERVATION_NOTIFICATION_MASK
                | fid::RESERVATION_PERSISTENCE
        )
    {
        return None;
    }
    let ns = snap.visible_ns(&ctrlr.shared.hostnqn, req.sqe.nsid())?;
    let state = snap.ana_state(ctrlr.shared.listen.as_ref(), ns.anagrpid);
    if state != crate::subsystem::AnaState::Inaccessible {
        return None;
    }
    tracing::error!(
        fid = f,
        nsid = ns.nsid,
        "Get/Set Features of a namespace on an ANA inaccessible path"
    );
    Some(Reply::status(
        nvme::spec::PathStatus::ASYMMETRIC_ACCESS_INACCESSIBLE.into(),
    ))
}

/// Set Features Reservation Persistence (SPDK
/// `nvmf_ctrlr_set_features_reservation_persistence`), on the app thread that owns the
/// reservation state: one visible PTPL capable namespace, or every PTPL capable namespace
/// visible to the host for NSID FFFFFFFFh; anything else Invalid Field. Success answers Feature Identifier Not
/// Saveable as SPDK. Unlike SPDK the `ptpl_file` is rewritten at once (empty when
/// persistence goes off), so the file never claims a persistence that is off.
fn set_reservation_persistence(
    pg: &Rc<PgInner>,
    ctrlr: &Ctrlr,
    q: &Rc<QpairInner>,
    req: &Request,
) -> Option<Reply> {
    let nsid = req.sqe.nsid();
    let on = req.sqe.cdw11.get() & nvme::spec::features::RESV_PERSIST_PTPL != 0;
    let (subnqn, hostnqn) = (ctrlr.subnqn.clone(), ctrlr.shared.hostnqn.clone());
    let call: crate::target::AppCall = Box::new(move |t, answer| {
        let res = t.with_subsystem(&subnqn, |s| {
            let mut touched = Vec::new();
            if nsid == NSID_ALL {
                // Every namespace this host sees: a masked namespace is not the host's to
                // change.
                for ns in s
                    .namespaces
                    .values_mut()
                    .filter(|ns| ns.visible_to(&hostnqn))
                {
                    if ns.resv.set_ptpl(on) {
                        touched.push(ns.nsid);
                    }
                }
            } else if let Some(ns) = s
                .namespaces
                .get_mut(&nsid)
                .filter(|ns| ns.visible_to(&hostnqn) && ns.resv.ptpl_capable())
            {
                ns.resv.set_ptpl(on);
                touched.push(nsid);
            } else {
                return None;
            }
            let mut ok = true;
            for n in &touched {
                if let Some(ns) = s.namespaces.get(n)
                    && let Err(e) = crate::target::persist_ns(ns)
                {
                    tracing::error!(nsid = n, error = %e, "cannot write the ptpl_file");
                    ok = false;
                }
            }
            Some(ok)
        });
        match res {
            Ok(Some(ok)) => {
                let status: Status = if ok {
                    CommandSpecificStatus::FEATURE_ID_NOT_SAVEABLE.into()
                } else {
                    GenericStatus::INTERNAL_DEVICE_ERROR.into()
                };
                t.update(move || answer(status, 0));
            }
            _ => {
                tracing::error!(
                    nsid,
                    "Set Features Reservation Persistence: invalid NSID or no ptpl_file"
                );
                answer(GenericStatus::INVALID_FIELD.into(), 0);
            }
        }
    });
    match pg.send_app_call(q, req.sqe.cid(), call) {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the app thread");
            Some(Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into()))
        }
    }
}

/// Abort (SPDK `nvmf_ctrlr_abort`): an outstanding AER on the admin queue, or a command of
/// an I/O queue of this controller that has not reached the bdev yet (see
/// [`PgInner::abort_io`]; the I/O queue's poll group answers, so the Abort completes later).
/// Anything else, reservation commands included, completes with DW0 bit 0 set: not aborted.
fn abort(pg: &Rc<PgInner>, ctrlr: &Ctrlr, q: &Rc<QpairInner>, req: &Request) -> Option<Reply> {
    let cdw10 = req.sqe.cdw10.get();
    let (sqid, cid) = (cdw10 as u16, (cdw10 >> 16) as u16);
    let not_aborted = Reply::status(Status::SUCCESS).dw0(ABORT_DW0_NOT_ABORTED);
    if sqid == 0 {
        let pos = ctrlr.aers.borrow().iter().position(|c| *c == cid);
        if let Some(pos) = pos {
            ctrlr.aers.borrow_mut().remove(pos);
            q.complete_async(cid, Reply::status(GenericStatus::ABORTED_BY_REQUEST.into()));
            return Some(Reply::status(Status::SUCCESS).dw0(0));
        }
        return Some(not_aborted);
    }
    let owner = match ctrlr.shared.io_qids.lock() {
        Ok(m) => m.get(&sqid).cloned(),
        Err(p) => p.into_inner().get(&sqid).cloned(),
    };
    let Some(owner) = owner else {
        tracing::debug!(sqid, cid, "Abort for a queue this controller does not have");
        return Some(not_aborted);
    };
    let target = AbortTarget {
        subnqn: ctrlr.subnqn.clone(),
        cntlid: ctrlr.shared.cntlid,
        sqid,
        cid,
    };
    match pg.send_abort(q, req.sqe.cid(), &owner, target) {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(error = %e, sqid, "cannot reach the poll group of the aborted queue");
            Some(not_aborted)
        }
    }
}

fn identify(pg: &Rc<PgInner>, ctrlr: &Ctrlr, snap: &SubsysSnap, req: &Request) -> Reply {
    let args = IdentifyArgs::from_sqe(&req.sqe);
    let len = req.length as usize;
    if len < IDENTIFY_DATA_SIZE {
        tracing::error!(len, "Identify with a buffer shorter than 4096 bytes");
        return invalid_field();
    }
    let nsid = req.sqe.nsid();
    // Namespace masking: every namespace lookup goes through the host's visibility, so a
    // namespace hidden from this host answers exactly as an inactive NSID (SPDK
    // `nvmf_ctrlr_get_ns`).
    let host = ctrlr.shared.hostnqn.as_str();
    if ctrlr.discovery && args.cns != Cns::CONTROLLER {
        return invalid_field();
    }
    let mut buf = [0u8; IDENTIFY_DATA_SIZE];
    match args.cns {
        Cns::CONTROLLER => {
            let c = identify_ctrlr(pg, ctrlr, snap);
            buf.copy_from_slice(c.as_bytes());
        }
        Cns::NAMESPACE => {
            if nsid == 0 || nsid > snap.max_nsid {
                return invalid_ns();
            }
            // An inactive (or invisible) NSID in range: success with zeroed data.
            if let Some(ns) = snap.visible_ns(host, nsid) {
                buf.copy_from_slice(identify_ns(ns, snap, ctrlr).as_bytes());
            }
        }
        Cns::ACTIVE_NS_LIST | Cns::ACTIVE_NS_LIST_IOCS => {
            if args.cns == Cns::ACTIVE_NS_LIST_IOCS && args.csi != Csi::NVM {
                return invalid_field();
            }
            if nsid >= 0xffff_fffe {
                return invalid_ns();
            }
            let list = NsList::from_ids(
                snap.namespaces
                    .values()
                    .filter(|ns| ns.nsid > nsid && ns.visible_to(host))
                    .map(|ns| ns.nsid),
            );
            buf.copy_from_slice(list.as_bytes());
        }
        Cns::NS_ID_DESCRIPTOR_LIST => {
            // SPDK `nvmf_ctrlr_identify_ns_id_descriptor_list`: an NSID out of range is
            // Invalid Namespace or Format, an inactive (or invisible) one Invalid Field.
            if nsid == 0 || nsid > snap.max_nsid {
                return invalid_ns();
            }
            let Some(ns) = snap.visible_ns(host, nsid) else {
                tracing::error!(nsid, "Identify NS ID descriptor list with inactive NSID");
                return invalid_field();
            };
            let mut list = Vec::new();
            if ns.eui64 != [0; 8] {
                list.push(NsIdDescriptor::Eui64(ns.eui64));
            }
            if ns.nguid != [0; 16] {
                list.push(NsIdDescriptor::Nguid(ns.nguid));
            }
            if !ns.uuid.is_nil() {
                list.push(NsIdDescriptor::Uuid(*ns.uuid.as_bytes()));
            }
            list.push(NsIdDescriptor::Csi(Csi::NVM));
            if NsIdDescriptor::write_list(&list, &mut buf).is_err() {
                return Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into());
            }
        }
        Cns::NAMESPACE_IOCS => {
            if args.csi != Csi::NVM {
                return invalid_field();
            }
            if nsid == 0 || nsid > snap.max_nsid {
                return invalid_ns();
            }
            // NVM command set specific namespace data: no extended LBA formats; all zero.
        }
        Cns::CONTROLLER_IOCS => {
            if args.csi != Csi::NVM {
                return invalid_field();
            }
            // NVM command set specific controller data (VSL, WZSL, WUSL, DMRL...): zero means
            // "no limit reported", as SPDK reports for bdevs without such limits.
        }
        Cns::NAMESPACE_IOCS_INDEPENDENT => {
            if nsid == 0 || nsid > snap.max_nsid {
                return invalid_ns();
            }
            if snap.visible_ns(host, nsid).is_some() {
                // NVMe Base 2.0, Figure 319: NSFEAT @0, NMIC @1, ..., NSTAT @4 (bit 0 ready).
                buf[1] = id::NMIC_SHARED;
                buf[4] = 1;
            }
        }
        Cns::IOCS => {
            // I/O Command Set data structure (NVMe Base 2.0, Figure 290): vector 0 has only
            // the NVM command set (bit 0).
            buf[0] = 0x01;
        }
        _ => {
            tracing::info!(cns = args.cns.0, "unsupported Identify CNS");
            return invalid_field();
        }
    }
    page_reply(&buf, 0, len.min(IDENTIFY_DATA_SIZE))
}

/// MDTS in units of the minimum page size (4 KiB): log2(max_io_size / 4096).
fn mdts(max_io_size: u32) -> u8 {
    let pages = (max_io_size / 4096).max(1);
    (31 - pages.leading_zeros()) as u8
}

pub(crate) fn identify_ctrlr(
    pg: &Rc<PgInner>,
    ctrlr: &Ctrlr,
    snap: &SubsysSnap,
) -> IdentifyController {
    use zerocopy::FromZeros;
    let opts = &ctrlr.opts;
    let mut c = IdentifyController::new_zeroed();
    c.vid = VID.into();
    c.ssvid = VID.into();
    let _ = c.set_serial_number(&snap.serial_number);
    let _ = c.set_model_number(&snap.model_number);
    let _ = c.set_firmware_revision(FIRMWARE_REVISION);
    c.rab = 6;
    c.ieee = IEEE_OUI;
    c.mdts = mdts(opts.max_io_size);
    c.cntlid = ctrlr.shared.cntlid.into();
    c.ver = ctrlr.vs.0.into();
    c.kas = opts.kas.into();
    c.maxcmd = opts.max_queue_depth.into();
    c.sgls = (id::SGLS_SUPPORTED | id::SGLS_KEYED | id::SGLS_OFFSET).into();
    c.lpa = id::LPA_CELP | id::LPA_EDLP;
    c.elpe = ELPE;
    c.ctratt = id::CTRATT_HOST_ID_128.into();
    let _ = c.set_subnqn(&snap.nqn);
    if ctrlr.discovery {
        c.cntrltype = id::CNTRLTYPE_DISCOVERY;
        c.oaes = id::OAES_DISCOVERY_LOG_CHANGE.into();
        return c;
    }
    let view = pg.view();
    c.cntrltype = id::CNTRLTYPE_IO;
    c.cmic = id::CMIC_MULTI_PORT | id::CMIC_MULTI_CTRLR;
    c.oaes = id::OAES_NS_ATTR.into();
    if snap.ana_reporting {
        c.cmic |= id::CMIC_ANA_REPORTING;
        c.oaes = (id::OAES_NS_ATTR | id::OAES_ANA_CHANGE).into();
        c.anacap = id::ANACAP_OPTIMIZED | id::ANACAP_NON_OPTIMIZED | id::ANACAP_INACCESSIBLE;
        c.anatt = ANATT;
        c.anagrpmax = snap.max_nsid.into();
        c.nanagrpid = snap.max_nsid.into();
    }
    c.crdt1 = view.crdt[0].into();
    c.crdt2 = view.crdt[1].into();
    c.crdt3 = view.crdt[2].into();
    c.acl = 3;
    c.aerl = (MAX_AERS - 1) as u8;
    c.frmw = id::FRMW_SLOT1_RO | (1 << id::FRMW_NUM_SLOTS_SHIFT);
    c.sqes = 0x66;
    c.cqes = 0x44;
    c.nn = snap.max_nsid.into();
    c.mnan = snap.max_nsid.into();
    // What every namespace's bdev accepts, natively or emulated by the bdev layer
    // (compare: SPDK's nvmf sets ONCS compare for every bdev).
    let all = |t: IoType| {
        snap.namespaces
            .values()
            .all(|n| n.desc.bdev().accepts_io_type(t))
    };
    let mut oncs = 0u16;
    if all(IoType::Compare) {
        oncs |= id::ONCS_COMPARE;
    }
    if all(IoType::Unmap) {
        oncs |= id::ONCS_DSM;
    }
    if all(IoType::WriteZeroes) {
        oncs |= id::ONCS_WRITE_ZEROES;
    }
    if all(IoType::Copy) {
        oncs |= id::ONCS_COPY;
    }
    // Reservations are kept by the target itself, for every bdev (SPDK sets it always).
    oncs |= id::ONCS_RESERVATIONS;
    c.oncs = oncs.into();
    c.fuses = id::FUSES_COMPARE_AND_WRITE.into();
    let vwc = snap
        .namespaces
        .values()
        .any(|n| n.desc.bdev().write_cache());
    c.vwc = if vwc { id::VWC_PRESENT } else { 0 } | id::VWC_FLUSH_BROADCAST_NOT_SUPPORTED;
    c.ioccsz = (4 + opts.in_capsule_data_size / 16).into();
    c.iorcsz = 1.into();
    c.msdbd = 1;
    c
}

fn identify_ns(
    ns: &crate::subsystem::Namespace,
    snap: &SubsysSnap,
    ctrlr: &Ctrlr,
) -> IdentifyNamespace {
    use zerocopy::FromZeros;
    let b = ns.desc.bdev();
    let mut n = IdentifyNamespace::new_zeroed();
    n.nsze = b.num_blocks().into();
    n.ncap = b.num_blocks().into();
    n.nuse = b.num_blocks().into();
    n.nlbaf = 0;
    n.flbas = 0;
    n.lbaf[0].lbads = b.block_size().trailing_zeros() as u8;
    n.nmic = id::NMIC_SHARED;
    if b.io_type_supported(IoType::Unmap) {
        // DLFEAT: deallocated blocks read as zeroes (bit 3 Write Zeroes DEAC, bits 2:0 = 1).
        n.dlfeat = 0x09;
    }
    n.nguid = ns.nguid;
    n.eui64 = ns.eui64;
    // Every reservation type and IEKEY; persistence through power loss with a ptpl_file.
    n.rescap = id::RESCAP_WRITE_EXCLUSIVE
        | id::RESCAP_EXCLUSIVE_ACCESS
        | id::RESCAP_WRITE_EXCLUSIVE_REG_ONLY
        | id::RESCAP_EXCLUSIVE_ACCESS_REG_ONLY
        | id::RESCAP_WRITE_EXCLUSIVE_ALL_REG
        | id::RESCAP_EXCLUSIVE_ACCESS_ALL_REG
        | id::RESCAP_IGNORE_EXISTING_KEY;
    if ns.resv.ptpl_capable() {
        n.rescap |= id::RESCAP_PTPL;
    }
    if snap.ana_reporting {
        n.anagrpid = ns.anagrpid.into();
        // SPDK `nvmf_ctrlr_identify_ns`: NUSE 0 on a path where the group is inaccessible.
        let state = snap.ana_state(ctrlr.shared.listen.as_ref(), ns.anagrpid);
        if state == crate::subsystem::AnaState::Inaccessible {
            n.nuse = 0.into();
        }
    }
    n
}

fn get_log_page(
    pg: &Rc<PgInner>,
    ctrlr: &Ctrlr,
    snap: &SubsysSnap,
    q: &Rc<QpairInner>,
    req: &Request,
) -> Reply {
    let cdw10 = req.sqe.cdw10.get();
    let cdw11 = req.sqe.cdw11.get();
    let lid = cdw10 as u8;
    let rae = cdw10 & (1 << 15) != 0;
    let numd = u64::from(cdw10 >> 16) | (u64::from(cdw11 & 0xffff) << 16);
    let len = ((numd + 1) * 4) as usize;
    let offset = u64::from(req.sqe.cdw12.get()) | (u64::from(req.sqe.cdw13.get()) << 32);
    if offset & 3 != 0 {
        tracing::error!(offset, "Get Log Page offset not dword aligned");
        return invalid_field();
    }
    if len > req.length as usize {
        tracing::error!(
            len,
            buffer = req.length,
            "Get Log Page longer than its buffer"
        );
        return invalid_field();
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    if ctrlr.discovery {
        if lid != LID_DISCOVERY {
            return Reply::status(CommandSpecificStatus::INVALID_LOG_PAGE.into());
        }
        let hostnqn = &ctrlr.shared.hostnqn;
        let listen = q.listen.borrow().clone();
        let page = discovery::log_page(&pg.view(), hostnqn, listen.as_ref());
        if !rae {
            ctrlr.disc_notice_masked.set(false);
        }
        return page_reply(&page, offset, len);
    }
    match lid {
        lid::SUPPORTED_LOG_PAGES => {
            let mut page = vec![0u8; 1024];
            for l in [
                lid::SUPPORTED_LOG_PAGES,
                lid::ERROR,
                lid::HEALTH,
                lid::FIRMWARE_SLOT,
                LID_CHANGED_NS_LIST,
                lid::COMMAND_EFFECTS,
                LID_RESERVATION_NOTIFICATION,
            ] {
                page[usize::from(l) * 4] = 1;
            }
            if snap.ana_reporting {
                page[usize::from(lid::ANA) * 4] = 1;
            }
            page_reply(&page, offset, len)
        }
        lid::ANA if snap.ana_reporting => {
            let rgo = (cdw10 >> 8) & 0x1 != 0;
            let page = ana_page(
                snap,
                &ctrlr.shared.hostnqn,
                ctrlr.shared.listen.as_ref(),
                snap.ana_change_count,
                rgo,
            );
            if !rae {
                ctrlr.ana_notice_masked.set(false);
            }
            page_reply(&page, offset, len)
        }
        LID_RESERVATION_NOTIFICATION => reservation_log(ctrlr, offset, len, rae),
        lid::ERROR => page_reply(&[0u8; 64], offset, len),
        lid::HEALTH => page_reply(&[0u8; 512], offset, len),
        lid::FIRMWARE_SLOT => {
            let mut page = [0u8; 512];
            page[0] = 1; // AFI: slot 1 active
            page[8..16].fill(b' ');
            page[8..8 + FIRMWARE_REVISION.len()].copy_from_slice(FIRMWARE_REVISION.as_bytes());
            page_reply(&page, offset, len)
        }
        LID_CHANGED_NS_LIST => {
            let mut page = vec![0u8; 4096];
            {
                let list = ctrlr.changed_ns.borrow();
                for (i, n) in list.iter().take(1024).enumerate() {
                    page[i * 4..i * 4 + 4].copy_from_slice(&n.to_le_bytes());
                }
            }
            if !rae {
                ctrlr.changed_ns.borrow_mut().clear();
                ctrlr.ns_notice_masked.set(false);
            }
            page_reply(&page, offset, len)
        }
        lid::COMMAND_EFFECTS => {
            let mut page = vec![0u8; 4096];
            let csupp = 1u32;
            let lbcc = 1u32 << 1;
            for opc in [
                AdminOpcode::GET_LOG_PAGE,
                AdminOpcode::IDENTIFY,
                AdminOpcode::ABORT,
                AdminOpcode::SET_FEATURES,
                AdminOpcode::GET_FEATURES,
                AdminOpcode::ASYNC_EVENT_REQUEST,
                AdminOpcode::KEEP_ALIVE,
            ] {
                let o = usize::from(opc.0) * 4;
                page[o..o + 4].copy_from_slice(&csupp.to_le_bytes());
            }
            for (opc, e) in [
                (0x00u8, csupp | lbcc),
                (0x01, csupp | lbcc),
                (0x02, csupp),
                (0x05, csupp),
                (0x08, csupp | lbcc),
                (0x09, csupp | lbcc),
                (0x19, csupp | lbcc),
                (0x0d, csupp),
                (0x0e, csupp),
                (0x11, csupp),
                (0x15, csupp),
            ] {
                let o = 1024 + usize::from(opc) * 4;
                page[o..o + 4].copy_from_slice(&e.to_le_bytes());
            }
            page_reply(&page, offset, len)
        }
        _ => {
            tracing::info!(lid, "unsupported log page");
            Reply::status(CommandSpecificStatus::INVALID_LOG_PAGE.into())
        }
    }
}

const FEAT_CHANGEABLE: u32 = 1 << 2;
/// NSID addressing every namespace.
const NSID_ALL: u32 = 0xffff_ffff;

/// The Reservation Notification log page (NVMe Base 2.0, 5.16.1.26): the unread entries,
/// 64 bytes each, oldest first, with the number of entries after each (capped at 255).
/// Reading consumes every entry up to the end of the transfer (SPDK
/// `nvmf_get_reservation_notification_log_page`); an offset past the entries is Invalid
/// Field; with no entry the page is zero. RAE=0 re-arms the notice.
fn reservation_log(ctrlr: &Ctrlr, offset: usize, len: usize, rae: bool) -> Reply {
    use nvme::spec::log::ReservationNotificationLog;
    const ENTRY: usize = size_of::<ReservationNotificationLog>();
    let mut log = ctrlr.resv_log.borrow_mut();
    let n = log.len();
    if n > 0 && offset >= n * ENTRY {
        tracing::error!(
            offset,
            entries = n,
            "reservation log page offset past its entries"
        );
        return invalid_field();
    }
    let mut page = Vec::with_capacity(n * ENTRY);
    for (i, (count, log_type, nsid)) in log.iter().enumerate() {
        let e = ReservationNotificationLog {
            log_page_count: (*count).into(),
            log_type: *log_type,
            num_avail_log_pages: (n - 1 - i).min(usize::from(u8::MAX)) as u8,
            nsid: (*nsid).into(),
            ..Default::default()
        };
        page.extend_from_slice(e.as_bytes());
    }
    let consumed = offset.saturating_add(len).div_ceil(ENTRY).min(n);
    log.drain(..consumed);
    if !rae {
        ctrlr.resv_notice_masked.set(false);
    }
    page_reply(&page, offset, len)
}

fn get_features(ctrlr: &Ctrlr, snap: &SubsysSnap, req: &Request) -> Reply {
    let cdw10 = req.sqe.cdw10.get();
    let f = cdw10 as u8;
    let sel = ((cdw10 >> 8) & 0x7) as u8;
    let feat = ctrlr.feat.borrow();
    if ctrlr.discovery && f != fid::KEEP_ALIVE_TIMER && f != fid::ASYNC_EVENT_CONFIGURATION {
        return invalid_field();
    }
    let value = match f {
        fid::ARBITRATION => feat.arbitration,
        fid::POWER_MANAGEMENT => feat.power_management,
        fid::TEMPERATURE_THRESHOLD => feat.temperature_threshold,
        fid::ERROR_RECOVERY => feat.error_recovery,
        fid::VOLATILE_WRITE_CACHE => feat.volatile_write_cache,
        fid::NUMBER_OF_QUEUES => feat.number_of_queues,
        fid::INTERRUPT_COALESCING => 0,
        fid::INTERRUPT_VECTOR_CONFIGURATION => feat.interrupt_vector_configuration,
        fid::WRITE_ATOMICITY => feat.write_atomicity,
        fid::ASYNC_EVENT_CONFIGURATION => feat.async_event_configuration,
        fid::KEEP_ALIVE_TIMER => feat.keep_alive_timer,
        fid::HOST_IDENTIFIER => {
            if req.sqe.cdw11.get() & 1 == 0 {
                tracing::error!("Get Features Host Identifier with EXHID=0");
                return invalid_field();
            }
            if (req.length as usize) < ctrlr.shared.hostid.len() {
                tracing::error!(
                    len = req.length,
                    "Get Features Host Identifier buffer too short"
                );
                return invalid_field();
            }
            return page_reply(&ctrlr.shared.hostid, 0, 16);
        }
        fid::RESERVATION_NOTIFICATION_MASK => {
            // SPDK `nvmf_ctrlr_get_features_reservation_notification_mask`: one namespace.
            let nsid = req.sqe.nsid();
            if nsid == NSID_ALL || snap.visible_ns(&ctrlr.shared.hostnqn, nsid).is_none() {
                tracing::error!(
                    nsid,
                    "Get Features Reservation Notification Mask: invalid NSID"
                );
                return invalid_field();
            }
            return Reply::status(Status::SUCCESS).dw0(ctrlr.resv_mask(nsid));
        }
        fid::RESERVATION_PERSISTENCE => {
            let nsid = req.sqe.nsid();
            if snap.visible_ns(&ctrlr.shared.hostnqn, nsid).is_none() {
                tracing::error!(nsid, "Get Features Reservation Persistence: invalid NSID");
                return invalid_field();
            }
            let on = snap
                .visible_ns(&ctrlr.shared.hostnqn, nsid)
                .is_some_and(|ns| ns.resv.ptpl());
            return Reply::status(Status::SUCCESS).dw0(u32::from(on));
        }
        fid::HOST_BEHAVIOR_SUPPORT => {
            return page_reply(&feat.host_behavior, 0, (req.length as usize).min(512));
        }
        _ => {
            tracing::info!(fid = f, "Get Features with unsupported feature ID");
            return invalid_field();
        }
    };
    if sel == 3 {
        return Reply::status(Status::SUCCESS).dw0(FEAT_CHANGEABLE);
    }
    Reply::status(Status::SUCCESS).dw0(value)
}

fn set_features(ctrlr: &Ctrlr, snap: &SubsysSnap, req: &Request) -> Reply {
    let cdw10 = req.sqe.cdw10.get();
    let cdw11 = req.sqe.cdw11.get();
    let f = cdw10 as u8;
    if cdw10 & (1 << 31) != 0 {
        tracing::error!(fid = f, "Set Features with SV=1");
        return Reply::status(CommandSpecificStatus::FEATURE_ID_NOT_SAVEABLE.into());
    }
    if ctrlr.discovery && f != fid::KEEP_ALIVE_TIMER && f != fid::ASYNC_EVENT_CONFIGURATION {
        return invalid_field();
    }
    let mut feat = ctrlr.feat.borrow_mut();
    match f {
        fid::ARBITRATION => feat.arbitration = cdw11,
        fid::POWER_MANAGEMENT => {
            if cdw11 & 0x1f != 0 {
                tracing::error!(ps = cdw11 & 0x1f, "Set Features power state other than 0");
                return invalid_field();
            }
            feat.power_management = cdw11;
        }
        fid::TEMPERATURE_THRESHOLD => {
            // THSEL bits 21:20 values 2-3 are reserved.
            if (cdw11 >> 20) & 0x3 > 1 {
                return invalid_field();
            }
            feat.temperature_threshold = cdw11;
        }
        fid::ERROR_RECOVERY => {
            if cdw11 & (1 << 16) != 0 {
                // DULBE needs deallocated-block errors, which the target does not report.
                return invalid_field();
            }
            feat.error_recovery = cdw11;
        }
        fid::VOLATILE_WRITE_CACHE => feat.volatile_write_cache = cdw11 & 1,
        fid::NUMBER_OF_QUEUES => {
            let busy = ctrlr
                .shared
                .io_qids
                .lock()
                .map(|q| !q.is_empty())
                .unwrap_or(true);
            if busy {
                tracing::error!("Set Features Number of Queues after I/O queues were created");
                return Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into());
            }
            return Reply::status(Status::SUCCESS).dw0(feat.number_of_queues);
        }
        fid::INTERRUPT_COALESCING => {
            return Reply::status(CommandSpecificStatus::FEATURE_NOT_CHANGEABLE.into());
        }
        fid::INTERRUPT_VECTOR_CONFIGURATION => feat.interrupt_vector_configuration = cdw11,
        fid::WRITE_ATOMICITY => feat.write_atomicity = cdw11 & 1,
        fid::ASYNC_EVENT_CONFIGURATION => {
            let allowed = if ctrlr.discovery {
                AEC_DISCOVERY_LOG_CHANGE
            } else {
                AEC_NS_ATTR | AEC_ANA_CHANGE | 0xff
            };
            feat.async_event_configuration = cdw11 & allowed;
        }
        fid::KEEP_ALIVE_TIMER => {
            // Keep-alive cannot be turned off once the controller runs (SPDK; a host may ask
            // for KATO 0 only at Connect).
            if cdw11 == 0 {
                tracing::error!(
                    cntlid = ctrlr.shared.cntlid,
                    "Set Features Keep Alive Timer 0 refused: keep-alive cannot be disabled"
                );
                return Reply::status(GenericStatus::KEEP_ALIVE_INVALID.into());
            }
            feat.keep_alive_timer = crate::ctrlr::effective_kato(cdw11, &ctrlr.opts);
            ctrlr
                .shared
                .kato_ms
                .store(feat.keep_alive_timer, std::sync::atomic::Ordering::Release);
            ctrlr.last_keep_alive.set(env::now());
        }
        fid::HOST_IDENTIFIER => {
            tracing::error!("Set Features Host Identifier not allowed");
            return Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into());
        }
        fid::RESERVATION_NOTIFICATION_MASK => {
            // Per controller (SPDK keeps one mask per namespace for all controllers).
            let nsid = req.sqe.nsid();
            let mask = cdw11 & RESV_MASK_BITS;
            if nsid == NSID_ALL {
                ctrlr.resv_masks.borrow_mut().clear();
                ctrlr.resv_mask_all.set(mask);
            } else if snap.visible_ns(&ctrlr.shared.hostnqn, nsid).is_some() {
                ctrlr.resv_masks.borrow_mut().insert(nsid, mask);
            } else {
                tracing::error!(
                    nsid,
                    "Set Features Reservation Notification Mask: invalid NSID"
                );
                return invalid_field();
            }
        }
        fid::HOST_BEHAVIOR_SUPPORT => {
            let Some(d) = req.data.as_ref() else {
                return invalid_field();
            };
            let mut hb = [0u8; 512];
            d.copy_to_slice_at(0, &mut hb);
            feat.host_behavior = hb;
        }
        _ => {
            tracing::info!(fid = f, "Set Features with unsupported feature ID");
            return invalid_field();
        }
    }
    Reply::status(Status::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdts_from_max_io_size() {
        assert_eq!(mdts(131_072), 5);
        assert_eq!(mdts(4096), 0);
        assert_eq!(mdts(1 << 20), 8);
    }

    #[test]
    fn page_reply_pads_and_offsets() {
        let r = page_reply(&[1, 2, 3, 4, 5, 6, 7, 8], 4, 8);
        assert_eq!(r.data.unwrap().to_vec(), vec![5, 6, 7, 8, 0, 0, 0, 0]);
    }
}
