//! Controllers, dynamic model (SPDK `lib/nvmf/ctrlr.c`): Fabrics Connect, Property Get/Set,
//! keep alive, asynchronous events.
//!
//! A controller is created by an admin-queue Connect on the poll group that received it and
//! lives there ([`Ctrlr`], `!Send`). What I/O queues on other poll groups need (controller ID,
//! CC/CSTS, the set of I/O queue IDs, the failed flag) is in [`CtrlrShared`]; it is touched
//! only at Connect, at enable/shutdown and at teardown, never per I/O command.

use crate::poll_group::PgInner;
use crate::qpair::{QpairInner, Reply};
use crate::request::Request;
use crate::subsystem::SubsysSnap;
use crate::transport::{ListenAddr, TransportOpts};
use env::Ticks;
use nvme::spec::fabrics::{
    CNTLID_DYNAMIC, CONNECT_DATA_SIZE, ConnectCmd, ConnectData, InvalidParam, PropertyGetCmd,
    PropertySetCmd, connect_data_offset, connect_success_dw0,
};
use nvme::spec::props::{Cap, Cc, Csts, PropertyOffset, PropertySize, Shn, Shst, Vs};
use nvme::spec::{CommandSpecificStatus, FabricsCommandType, GenericStatus, Sct, Status};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fabrics Connect status: invalid parameters (NVMe-oF 1.1, Figure 21).
pub(crate) const SC_CONNECT_INVALID_PARAM: u8 = 0x82;
/// Fabrics Connect status: incompatible format.
pub(crate) const SC_CONNECT_INCOMPATIBLE_FORMAT: u8 = 0x80;
/// Fabrics Connect status: controller busy.
pub(crate) const SC_CONNECT_CTRLR_BUSY: u8 = 0x81;
/// Fabrics Connect status: invalid host.
pub(crate) const SC_CONNECT_INVALID_HOST: u8 = 0x84;
/// Discovery controllers without a host KATO are reaped after this (SPDK `NVMF_DISC_KATO_IN_MS`).
pub(crate) const DISC_KATO_MS: u32 = 120_000;
/// One KAS unit in milliseconds.
pub(crate) const KAS_UNIT_MS: u32 = 100;

/// The KATO a controller uses for a host's `requested` value in milliseconds (Connect KATO
/// or Set Features Keep Alive Timer), as SPDK: 0 stays 0 (no keep-alive), at most `min_kato`
/// becomes `min_kato`, anything else is rounded up to the KAS granularity. Computed in 64
/// bits: a value whose rounding does not fit in 32 bits (e.g. 0xFFFFFFFF) is clamped to the
/// largest multiple of the granularity that does, with a warning.
pub(crate) fn effective_kato(requested: u32, opts: &TransportOpts) -> u32 {
    if requested == 0 {
        return 0;
    }
    if requested <= opts.min_kato {
        return opts.min_kato;
    }
    let unit = u64::from(opts.kas) * u64::from(KAS_UNIT_MS);
    if unit == 0 {
        return requested;
    }
    let rounded = u64::from(requested).div_ceil(unit) * unit;
    match u32::try_from(rounded) {
        Ok(k) => k,
        Err(_) => {
            let clamped = (u64::from(u32::MAX) / unit) * unit;
            tracing::warn!(
                requested,
                clamped,
                "keep alive timeout rounded to the KAS granularity exceeds 32 bits; clamped"
            );
            // `clamped` <= u32::MAX by construction.
            u32::try_from(clamped).unwrap_or(u32::MAX)
        }
    }
}

/// Reset/shutdown timeout reported in CAP.TO (SPDK `NVMF_CTRLR_RESET_SHN_TIMEOUT_IN_MS`).
pub(crate) const RESET_SHN_TIMEOUT_MS: u32 = 15_000;
/// Outstanding AERs per controller (Identify AERL + 1, SPDK `NVMF_MAX_ASYNC_EVENTS`).
pub(crate) const MAX_AERS: usize = 4;

/// Controllers of one subsystem (shared by its poll groups; touched at Connect/teardown).
#[derive(Debug, Default)]
pub(crate) struct CtrlrTable {
    pub map: BTreeMap<u16, Arc<CtrlrShared>>,
    next: u16,
}

impl CtrlrTable {
    /// Next free controller ID in `min..=max`, round robin as SPDK `nvmf_subsystem_gen_cntlid`.
    pub fn alloc(&mut self, min: u16, max: u16) -> Option<u16> {
        let span = u32::from(max.checked_sub(min)?) + 1;
        let start = if self.next < min || self.next > max {
            min
        } else {
            self.next
        };
        for i in 0..span {
            let off = (u32::from(start - min) + i) % span;
            let id = min + off as u16;
            if !self.map.contains_key(&id) {
                self.next = if id == max { min } else { id + 1 };
                return Some(id);
            }
        }
        None
    }
}

/// What every poll group may read about a controller (`Send + Sync`).
#[derive(Debug)]
pub(crate) struct CtrlrShared {
    pub cntlid: u16,
    pub subnqn: String,
    pub hostnqn: String,
    pub hostid: [u8; 16],
    pub cc: AtomicU32,
    pub csts: AtomicU32,
    /// Connected I/O queue IDs and the poll group Thread each lives on (Abort routing).
    pub io_qids: Mutex<BTreeMap<u16, env::ThreadHandle>>,
    /// Bumped by a controller reset or shutdown: I/O queues of older epochs disconnect.
    pub epoch: std::sync::atomic::AtomicU64,
    pub failed: AtomicBool,
    pub max_qpairs: u32,
    /// The listener the admin queue connected through (ANA states), when the transport
    /// recorded it.
    pub listen: Option<ListenAddr>,
    /// The keep alive timeout in ms (Features KATO, mirrored here for the controller's
    /// I/O queues on other threads: their authentication steps time out after it).
    pub kato_ms: AtomicU32,
}

impl CtrlrShared {
    pub fn cc(&self) -> Cc {
        Cc(self.cc.load(Ordering::Acquire))
    }
    pub fn csts(&self) -> Csts {
        Csts(self.csts.load(Ordering::Acquire))
    }
    pub fn is_ready(&self) -> bool {
        self.csts().rdy() == 1 && self.cc().en() == 1
    }
}

/// Feature values a controller keeps (SPDK `spdk_nvmf_ctrlr_feat`).
#[derive(Clone, Debug)]
pub(crate) struct Features {
    pub arbitration: u32,
    pub power_management: u32,
    pub temperature_threshold: u32,
    pub error_recovery: u32,
    pub volatile_write_cache: u32,
    pub number_of_queues: u32,
    pub interrupt_vector_configuration: u32,
    pub write_atomicity: u32,
    pub async_event_configuration: u32,
    pub keep_alive_timer: u32,
    pub host_behavior: [u8; 512],
}

/// A controller, living on the poll group of its admin queue.
pub(crate) struct Ctrlr {
    pub shared: Arc<CtrlrShared>,
    pub cap: Cap,
    pub vs: Vs,
    pub aqa: Cell<u32>,
    pub asq: Cell<u64>,
    pub acq: Cell<u64>,
    pub feat: RefCell<Features>,
    pub subnqn: String,
    pub discovery: bool,
    pub admin_qpair: RefCell<Weak<QpairInner>>,
    pub last_keep_alive: Cell<Ticks>,
    /// Outstanding AER command IDs.
    pub aers: RefCell<VecDeque<u16>>,
    /// Events waiting for an AER (completion DW0 values).
    pub pending_events: RefCell<VecDeque<u32>>,
    /// Changed NS list (SPDK keeps up to 1024 entries; more -> 0xffffffff first entry).
    pub changed_ns: RefCell<Vec<u32>>,
    /// NS attribute notice masked until the changed NS log is read (RAE=0).
    pub ns_notice_masked: Cell<bool>,
    /// NSIDs this controller sees (active and visible to its host), to detect changes on
    /// subsystem updates.
    pub known_nsids: RefCell<BTreeSet<u32>>,
    /// Discovery genctr this controller last saw.
    pub seen_genctr: Cell<u64>,
    /// Discovery log change notice masked until the discovery log is read.
    pub disc_notice_masked: Cell<bool>,
    /// Reservation notification log entries not read yet: (log page count, type, NSID).
    pub resv_log: RefCell<VecDeque<(u64, u8, u32)>>,
    /// Log page count of the newest reservation notification (SPDK `log_page_count`).
    pub resv_log_count: Cell<u64>,
    /// Reservation Log Page Available notice masked until the log is read with RAE=0.
    pub resv_notice_masked: Cell<bool>,
    /// Reservation Notification Mask (feature 82h) set for one NSID.
    pub resv_masks: RefCell<BTreeMap<u32, u32>>,
    /// Reservation Notification Mask of the namespaces without their own (set with NSID
    /// FFFFFFFFh).
    pub resv_mask_all: Cell<u32>,
    /// ANA state of every group as this controller last saw it (change detection).
    pub known_ana: RefCell<Vec<crate::subsystem::AnaState>>,
    /// ANA change notice masked until the ANA log is read with RAE=0.
    pub ana_notice_masked: Cell<bool>,
    pub opts: Arc<TransportOpts>,
}

/// Async event completion dword 0 (NVMe Base 2.0, Figure 146): type | info << 8 | lid << 16.
pub(crate) fn aen_dw0(ty: u8, info: u8, lid: u8) -> u32 {
    u32::from(ty) | (u32::from(info) << 8) | (u32::from(lid) << 16)
}
/// Async event type Notice.
pub(crate) const AER_TYPE_NOTICE: u8 = 0x2;
/// Notice: namespace attribute changed.
pub(crate) const AER_NOTICE_NS_ATTR_CHANGED: u8 = 0x00;
/// Notice: discovery log page change.
pub(crate) const AER_NOTICE_DISCOVERY_LOG_CHANGE: u8 = 0xf0;
/// AEC bit: namespace attribute notices.
pub(crate) const AEC_NS_ATTR: u32 = 1 << 8;
/// AEC bit: ANA change notices.
pub(crate) const AEC_ANA_CHANGE: u32 = 1 << 11;
/// Notice: asymmetric namespace access change.
pub(crate) const AER_NOTICE_ANA_CHANGE: u8 = 0x03;
/// Log page: asymmetric namespace access.
pub(crate) const LID_ANA: u8 = 0x0c;
/// AEC bit: discovery log change notices.
pub(crate) const AEC_DISCOVERY_LOG_CHANGE: u32 = 1 << 31;
/// Log page: changed namespace list.
pub(crate) const LID_CHANGED_NS_LIST: u8 = 0x04;
/// Log page: discovery.
pub(crate) const LID_DISCOVERY: u8 = 0x70;
/// Log page: reservation notification.
pub(crate) const LID_RESERVATION_NOTIFICATION: u8 = 0x80;
/// Async event type I/O command specific status.
pub(crate) const AER_TYPE_IO: u8 = 0x6;
/// I/O command specific status: reservation log page available.
pub(crate) const AER_IO_RESERVATION_LOG_AVAIL: u8 = 0x00;
/// Reservation notification log entries a controller keeps (SPDK: 255, then the newest
/// entry's count moves on).
pub(crate) const MAX_RESV_LOG_ENTRIES: usize = 255;
/// Reservation Notification Mask bits the feature keeps (REGPRE, RESREL, RESPRE).
pub(crate) const RESV_MASK_BITS: u32 = nvme::spec::features::RESV_MASK_REGPRE
    | nvme::spec::features::RESV_MASK_RESREL
    | nvme::spec::features::RESV_MASK_RESPRE;

impl Ctrlr {
    /// Queues an asynchronous event and completes an outstanding AER if there is one.
    pub fn queue_event(&self, dw0: u32) {
        self.pending_events.borrow_mut().push_back(dw0);
        self.flush_events();
    }

    /// Pairs pending events with outstanding AERs.
    pub fn flush_events(&self) {
        let Some(q) = self.admin_qpair.borrow().upgrade() else {
            return;
        };
        loop {
            if self.pending_events.borrow().is_empty() || self.aers.borrow().is_empty() {
                return;
            }
            let (Some(dw0), Some(cid)) = (
                self.pending_events.borrow_mut().pop_front(),
                self.aers.borrow_mut().pop_front(),
            ) else {
                return;
            };
            q.outstanding.set(q.outstanding.get().saturating_sub(1));
            q.push_reply(cid, Reply::status(Status::SUCCESS).dw0(dw0));
        }
    }

    /// Records namespace changes seen in a subsystem update and raises the NS attribute
    /// notice (NVMe Base 2.0, 5.2: once until the Changed NS List log is read). Only the
    /// namespaces this controller's host sees count: a namespace added with
    /// `no_auto_visible`, or made visible/invisible to another host, changes nothing here
    /// (SPDK `nvmf_ns_visible` notifies only the controllers of that host).
    pub fn namespaces_changed(&self, snap: &SubsysSnap) {
        let now = snap.visible_nsids(&self.shared.hostnqn);
        let changed: Vec<u32> = {
            let known = self.known_nsids.borrow();
            known.symmetric_difference(&now).copied().collect()
        };
        if changed.is_empty() {
            return;
        }
        *self.known_nsids.borrow_mut() = now;
        {
            let mut list = self.changed_ns.borrow_mut();
            for n in changed {
                if list.len() >= 1024 {
                    list.clear();
                    list.push(u32::MAX);
                    break;
                }
                if !list.contains(&n) {
                    list.push(n);
                }
            }
            list.sort_unstable();
        }
        let aec = self.feat.borrow().async_event_configuration;
        if aec & AEC_NS_ATTR != 0 && !self.ns_notice_masked.get() {
            self.ns_notice_masked.set(true);
            self.queue_event(aen_dw0(
                AER_TYPE_NOTICE,
                AER_NOTICE_NS_ATTR_CHANGED,
                LID_CHANGED_NS_LIST,
            ));
        }
    }

    /// Raises the ANA change notice (NVMe Base 2.0, 8.1.4; SPDK
    /// `nvmf_ctrlr_async_event_ana_change_notice`) when a subsystem update changed the ANA
    /// state of a group on this controller's listener; masked until the ANA log is read
    /// with RAE=0.
    pub fn ana_changed(&self, snap: &SubsysSnap) {
        let now = snap.ana_states(self.shared.listen.as_ref());
        if *self.known_ana.borrow() == now {
            return;
        }
        *self.known_ana.borrow_mut() = now;
        let aec = self.feat.borrow().async_event_configuration;
        tracing::info!(cntlid = self.shared.cntlid, "ANA state changed");
        if aec & AEC_ANA_CHANGE != 0 && !self.ana_notice_masked.get() {
            self.ana_notice_masked.set(true);
            self.queue_event(aen_dw0(AER_TYPE_NOTICE, AER_NOTICE_ANA_CHANGE, LID_ANA));
        }
    }

    /// The Reservation Notification Mask of namespace `nsid`.
    pub fn resv_mask(&self, nsid: u32) -> u32 {
        self.resv_masks
            .borrow()
            .get(&nsid)
            .copied()
            .unwrap_or(self.resv_mask_all.get())
    }

    /// Adds a reservation notification for namespace `nsid` to the log unless masked, and
    /// raises Reservation Log Page Available once until the log is read (SPDK
    /// `nvmf_ctrlr_reservation_notice_log`, `_nvmf_ctrlr_add_reservation_log`).
    pub fn reservation_notice(&self, nsid: u32, log_type: u8) {
        use nvme::spec::features::{RESV_MASK_REGPRE, RESV_MASK_RESPRE, RESV_MASK_RESREL};
        use nvme::spec::log::{
            RESERVATION_LOG_REGISTRATION_PREEMPTED, RESERVATION_LOG_RESERVATION_PREEMPTED,
            RESERVATION_LOG_RESERVATION_RELEASED,
        };
        let bit = match log_type {
            RESERVATION_LOG_REGISTRATION_PREEMPTED => RESV_MASK_REGPRE,
            RESERVATION_LOG_RESERVATION_RELEASED => RESV_MASK_RESREL,
            RESERVATION_LOG_RESERVATION_PREEMPTED => RESV_MASK_RESPRE,
            _ => return,
        };
        if self.resv_mask(nsid) & bit != 0 {
            tracing::debug!(nsid, log_type, "reservation notification masked");
            return;
        }
        let count = match self.resv_log_count.get() {
            u64::MAX => 1,
            c => c + 1,
        };
        self.resv_log_count.set(count);
        {
            let mut log = self.resv_log.borrow_mut();
            if log.len() >= MAX_RESV_LOG_ENTRIES {
                if let Some(last) = log.back_mut() {
                    last.0 = count;
                }
                return;
            }
            log.push_back((count, log_type, nsid));
        }
        tracing::info!(
            cntlid = self.shared.cntlid,
            nsid,
            log_type,
            "reservation notification"
        );
        if !self.resv_notice_masked.get() {
            self.resv_notice_masked.set(true);
            self.queue_event(aen_dw0(
                AER_TYPE_IO,
                AER_IO_RESERVATION_LOG_AVAIL,
                LID_RESERVATION_NOTIFICATION,
            ));
        }
    }

    /// Raises the discovery log change notice when the generation counter moved.
    pub fn discovery_changed(&self, genctr: u64) {
        if genctr == self.seen_genctr.get() {
            return;
        }
        self.seen_genctr.set(genctr);
        let aec = self.feat.borrow().async_event_configuration;
        if aec & AEC_DISCOVERY_LOG_CHANGE != 0 && !self.disc_notice_masked.get() {
            self.disc_notice_masked.set(true);
            self.queue_event(aen_dw0(
                AER_TYPE_NOTICE,
                AER_NOTICE_DISCOVERY_LOG_CHANGE,
                LID_DISCOVERY,
            ));
        }
    }

    /// True when the keep alive timer expired at `now` (SPDK `nvmf_ctrlr_keep_alive_poll`).
    pub fn keep_alive_expired(&self, now: Ticks) -> bool {
        let kato = self.feat.borrow().keep_alive_timer;
        if kato == 0 {
            return false;
        }
        now.duration_since(self.last_keep_alive.get()) > Duration::from_millis(u64::from(kato))
    }

    /// Marks the controller fatal (CSTS.CFS) and failed, so every queue disconnects.
    pub fn fail(&self) {
        self.shared
            .csts
            .store(self.shared.csts().with_cfs(1).0, Ordering::Release);
        self.shared.failed.store(true, Ordering::Release);
        crate::poll_group::request_housekeeping();
    }

    /// Property Get (SPDK `nvmf_property_get`).
    pub fn property_get(&self, cmd: &PropertyGetCmd) -> Reply {
        let Ok(size) = cmd.size() else {
            return Reply::status(fabric_invalid_param());
        };
        let ofst = cmd.offset();
        let Some((base, psize, value)) = self.prop_value(ofst.0, size.bytes()) else {
            return Reply::status(fabric_invalid_param());
        };
        let v = if size.bytes() == psize {
            value
        } else if ofst.0 == base {
            value & 0xffff_ffff
        } else {
            value >> 32
        };
        Reply::status(Status::SUCCESS).dw01(v)
    }

    fn prop_value(&self, ofst: u32, size: u32) -> Option<(u32, u32, u64)> {
        let props: [(PropertyOffset, u32, u64); 9] = [
            (PropertyOffset::CAP, 8, self.cap.0),
            (PropertyOffset::VS, 4, u64::from(self.vs.0)),
            (PropertyOffset::CC, 4, u64::from(self.shared.cc().0)),
            (PropertyOffset::CSTS, 4, u64::from(self.shared.csts().0)),
            (PropertyOffset::NSSR, 4, 0),
            (PropertyOffset::AQA, 4, u64::from(self.aqa.get())),
            (PropertyOffset::ASQ, 8, self.asq.get()),
            (PropertyOffset::ACQ, 8, self.acq.get()),
            (
                PropertyOffset::CRTO,
                4,
                u64::from(RESET_SHN_TIMEOUT_MS / 500),
            ),
        ];
        props
            .iter()
            .find(|(o, psize, _)| ofst >= o.0 && ofst + size <= o.0 + psize)
            .map(|(o, psize, v)| (o.0, *psize, *v))
    }

    /// Property Set (SPDK `nvmf_property_set`).
    pub fn property_set(&self, cmd: &PropertySetCmd) -> Reply {
        let Ok(size) = cmd.size() else {
            return Reply::status(fabric_invalid_param());
        };
        let ofst = cmd.offset().0;
        let value = cmd.value.get();
        let Some((base, psize, old)) = self.prop_value(ofst, size.bytes()) else {
            return Reply::status(fabric_invalid_param());
        };
        let lower = value & 0xffff_ffff;
        let new = if psize == 8 && size == PropertySize::Four {
            if ofst == base {
                (old & !0xffff_ffff) | lower
            } else {
                (old & 0xffff_ffff) | (lower << 32)
            }
        } else {
            value
        };
        match PropertyOffset(base) {
            PropertyOffset::CC => {
                if self.set_cc(Cc(new as u32)) {
                    Reply::status(Status::SUCCESS)
                } else {
                    Reply::status(fabric_invalid_param())
                }
            }
            PropertyOffset::AQA => {
                self.aqa.set(new as u32);
                Reply::status(Status::SUCCESS)
            }
            PropertyOffset::ASQ => {
                self.asq.set(new);
                Reply::status(Status::SUCCESS)
            }
            PropertyOffset::ACQ => {
                self.acq.set(new);
                Reply::status(Status::SUCCESS)
            }
            // CSTS writes are ignored by SPDK (nvmf_prop_set_csts logs and succeeds only for
            // a no-op); NSSR needs NSSRS which this target does not advertise.
            _ => Reply::status(fabric_invalid_param()),
        }
    }

    /// Applies a CC write: enable, disable (reset) and shutdown notifications, as SPDK
    /// `nvmf_prop_set_cc`. Returns false for a write SPDK refuses.
    fn set_cc(&self, cc: Cc) -> bool {
        let old = self.shared.cc();
        let mut csts = self.shared.csts();
        if cc.en() == 1 && old.en() == 0 {
            if cc.iosqes() != 6 || cc.iocqes() != 4 {
                // SPDK accepts CC with zero IOSQES/IOCQES (the I/O Connect then fails); only
                // a non-zero mismatch is refused here.
                if cc.iosqes() != 0 || cc.iocqes() != 0 {
                    tracing::error!(cc = cc.0, "CC.EN=1 with invalid IOSQES/IOCQES");
                    return false;
                }
            }
            if cc.mps() != 0 {
                tracing::error!(mps = cc.mps(), "CC.MPS larger than CAP.MPSMAX");
                return false;
            }
            tracing::debug!(cntlid = self.shared.cntlid, "controller enabled");
            csts = csts.with_rdy(1).with_shst(Shst::NORMAL.0);
        } else if cc.en() == 0 && old.en() == 1 {
            tracing::debug!(cntlid = self.shared.cntlid, "controller reset");
            csts = csts.with_rdy(0).with_shst(Shst::NORMAL.0);
        }
        let shn = Shn(cc.shn());
        if shn != Shn(old.shn()) && (shn == Shn::NORMAL || shn == Shn::ABRUPT) {
            tracing::debug!(cntlid = self.shared.cntlid, "controller shutdown");
            csts = csts.with_shst(Shst::COMPLETE.0).with_rdy(0);
            // Shutdown removes the I/O queues' ability to run commands (CC.EN stays as the
            // host wrote it).
        } else if shn == Shn::NONE && Shn(old.shn()) != Shn::NONE {
            csts = csts.with_shst(Shst::NORMAL.0);
        }
        let reset = (cc.en() == 0 && old.en() == 1)
            || (shn != Shn(old.shn()) && (shn == Shn::NORMAL || shn == Shn::ABRUPT));
        if reset {
            // SPDK disconnects the I/O queues on reset and shutdown (nvmf_ctrlr_cc_reset_shn).
            self.shared.epoch.fetch_add(1, Ordering::AcqRel);
            crate::poll_group::request_housekeeping();
            match self.shared.io_qids.lock() {
                Ok(mut q) => q.clear(),
                Err(p) => p.into_inner().clear(),
            }
        }
        self.shared.cc.store(cc.0, Ordering::Release);
        self.shared.csts.store(csts.0, Ordering::Release);
        true
    }
}

/// Connect: invalid parameter with IATTR/IPO (SPDK `nvmf_invalid_connect_response`).
pub(crate) fn connect_invalid(p: InvalidParam) -> Reply {
    Reply::status(Status::new(Sct::COMMAND_SPECIFIC, SC_CONNECT_INVALID_PARAM)).dw0(p.to_dw0())
}

/// Fabrics "Invalid Parameter" for a Property Get/Set.
fn fabric_invalid_param() -> Status {
    Status::new(Sct::COMMAND_SPECIFIC, SC_CONNECT_INVALID_PARAM)
}

use nvme::spec::fabrics::connect_cmd_offset::{QID as IPO_QID, SQSIZE as IPO_SQSIZE};

/// Handles a Fabrics Connect on an unconnected queue pair (SPDK `nvmf_ctrlr_cmd_connect`).
pub(crate) fn connect(pg: &Rc<PgInner>, qp: &Rc<QpairInner>, req: &Request) -> Reply {
    let cmd = ConnectCmd::from_sqe(&req.sqe);
    let Some(data) = req.data.as_ref() else {
        return Reply::status(GenericStatus::INVALID_FIELD.into());
    };
    if (req.length as usize) < CONNECT_DATA_SIZE || data.total_len() < CONNECT_DATA_SIZE {
        tracing::error!(len = req.length, "Connect data length too small");
        return Reply::status(GenericStatus::INVALID_FIELD.into());
    }
    let mut raw = [0u8; CONNECT_DATA_SIZE];
    data.copy_to_slice_at(0, &mut raw);
    let Ok(cd) = ConnectData::read_from(&raw) else {
        return Reply::status(GenericStatus::INVALID_FIELD.into());
    };
    let Ok(subnqn) = cd.subnqn() else {
        tracing::error!("Connect SUBNQN is not a valid NUL-terminated string");
        return connect_invalid(InvalidParam::in_data(connect_data_offset::SUBNQN));
    };
    let Some(snap) = pg.subsystem(subnqn) else {
        tracing::error!(subnqn, "Connect to unknown subsystem");
        return connect_invalid(InvalidParam::in_data(connect_data_offset::SUBNQN));
    };
    let Ok(hostnqn) = cd.hostnqn() else {
        tracing::error!("Connect HOSTNQN is not a valid NUL-terminated string");
        return connect_invalid(InvalidParam::in_data(connect_data_offset::HOSTNQN));
    };
    if snap.state != crate::subsystem::SubsystemState::Active {
        tracing::error!(subnqn, "Connect while the subsystem is not active");
        return Reply::status(Status::new(Sct::COMMAND_SPECIFIC, SC_CONNECT_CTRLR_BUSY));
    }
    if !snap.host_allowed(hostnqn) {
        tracing::error!(subnqn, hostnqn, "Subsystem does not allow host");
        return Reply::status(Status::new(Sct::COMMAND_SPECIFIC, SC_CONNECT_INVALID_HOST));
    }
    let listen = qp.listen.borrow().clone();
    if let Some(l) = listen
        && !snap.is_discovery()
        && !snap.listeners.iter().any(|(x, _)| x.addr.same_as(&l))
    {
        tracing::error!(subnqn, hostnqn, %l, "Subsystem does not allow host to connect at this address");
        return Reply::status(Status::new(Sct::COMMAND_SPECIFIC, SC_CONNECT_INVALID_HOST));
    }
    if cmd.recfmt.get() != 0 {
        tracing::error!(recfmt = cmd.recfmt.get(), "Connect with unsupported RECFMT");
        return Reply::status(Status::new(
            Sct::COMMAND_SPECIFIC,
            SC_CONNECT_INCOMPATIBLE_FORMAT,
        ));
    }
    let opts = pg.opts(&qp.transport);
    let sqsize = cmd.sqsize.get();
    let qid = cmd.qid.get();
    if sqsize == 0 {
        tracing::error!("Connect with SQSIZE 0");
        return connect_invalid(InvalidParam::in_cmd(IPO_SQSIZE));
    }
    let limit = if qid == 0 {
        opts.max_aq_depth
    } else {
        u32::from(opts.max_queue_depth)
    };
    if u32::from(sqsize) >= limit {
        tracing::error!(
            sqsize,
            max = limit - 1,
            qid,
            "Connect with SQSIZE too large"
        );
        return connect_invalid(InvalidParam::in_cmd(IPO_SQSIZE));
    }
    qp.sqsize.set(sqsize);
    qp.max_io.set(opts.max_io_size);
    if qid == 0 {
        if cd.cntlid() != CNTLID_DYNAMIC {
            tracing::error!(
                cntlid = cd.cntlid(),
                "only the dynamic controller model is supported"
            );
            return connect_invalid(InvalidParam::in_data(connect_data_offset::CNTLID));
        }
        let r = connect_admin(pg, qp, &snap, cmd, &cd, hostnqn, opts);
        require_auth(pg, qp, &snap, hostnqn, r)
    } else {
        let r = connect_io(pg, qp, &snap, qid, &cd, hostnqn);
        require_auth(pg, qp, &snap, hostnqn, r)
    }
}

/// After a successful Connect of a host with a DH-HMAC-CHAP key: AUTHREQ.ATR in the answer
/// and the queue waits for authentication (SPDK `nvmf_ctrlr_send_connect_rsp`; every queue
/// authenticates, admin and I/O).
fn require_auth(
    pg: &Rc<PgInner>,
    qp: &Rc<QpairInner>,
    snap: &SubsysSnap,
    hostnqn: &str,
    r: Reply,
) -> Reply {
    if !r.status.is_success() || !snap.host_keys.contains_key(hostnqn) {
        return r;
    }
    // Built from the snapshot this Connect used, so it cannot miss the subsystem; with no
    // controller attached, fail closed: a host with a key never gets an unauthenticated queue.
    let Some(shared) = qp.ctrlr.borrow().clone() else {
        tracing::error!(
            qid = qp.qid.get(),
            hostnqn,
            "authentication required but the queue has no controller; Connect refused"
        );
        return Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into());
    };
    let params = crate::auth::params_for(pg, &shared, snap);
    *qp.auth.borrow_mut() = Some(crate::auth::Session::new(params));
    qp.auth_pending.set(true);
    tracing::info!(
        qid = qp.qid.get(),
        hostnqn,
        "queue connected; authentication required"
    );
    let dw0 = r.dw0 | (u32::from(AUTHREQ_ATR) << 16);
    r.dw0(dw0)
}

/// AUTHREQ bit 0 (ATR): authentication required (NVMe-oF 1.1a Connect response).
const AUTHREQ_ATR: u16 = 1;

fn connect_admin(
    pg: &Rc<PgInner>,
    qp: &Rc<QpairInner>,
    snap: &SubsysSnap,
    cmd: &ConnectCmd,
    cd: &ConnectData,
    hostnqn: &str,
    opts: Arc<TransportOpts>,
) -> Reply {
    let cntlid = {
        let mut table = match snap.ctrlrs.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let Some(id) = table.alloc(snap.min_cntlid, snap.max_cntlid) else {
            tracing::error!(subnqn = %snap.nqn, "no controller ID left");
            return Reply::status(Status::new(Sct::COMMAND_SPECIFIC, SC_CONNECT_CTRLR_BUSY));
        };
        let shared = Arc::new(CtrlrShared {
            cntlid: id,
            subnqn: snap.nqn.clone(),
            hostnqn: hostnqn.to_string(),
            hostid: cd.hostid,
            cc: AtomicU32::new(0),
            csts: AtomicU32::new(0),
            io_qids: Mutex::new(BTreeMap::new()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            failed: AtomicBool::new(false),
            max_qpairs: opts.max_qpairs_per_ctrlr(),
            listen: qp.listen.borrow().clone(),
            kato_ms: AtomicU32::new(0),
        });
        table.map.insert(id, shared);
        id
    };
    let Some(shared) = snap
        .ctrlrs
        .lock()
        .ok()
        .and_then(|t| t.map.get(&cntlid).cloned())
    else {
        return Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into());
    };
    let host_kato = cmd.kato.get();
    let mut kato = if opts.kas == 0 {
        0
    } else {
        effective_kato(host_kato, &opts)
    };
    // SPDK enables ANA change notices by default when the subsystem reports ANA.
    let mut aec = AEC_NS_ATTR
        | if snap.ana_reporting {
            AEC_ANA_CHANGE
        } else {
            0
        };
    let discovery = snap.is_discovery();
    if discovery {
        if kato == 0 {
            kato = DISC_KATO_MS;
            aec = 0;
        } else {
            aec = AEC_DISCOVERY_LOG_CHANGE;
        }
    }
    shared.kato_ms.store(kato, Ordering::Release);
    let nq = opts.max_qpairs_per_ctrlr().saturating_sub(2);
    let cap = Cap(0)
        .with_cqr(1)
        .with_mqes(opts.max_queue_depth - 1)
        .with_to((RESET_SHN_TIMEOUT_MS / 500) as u8)
        .with_css(nvme::spec::props::CAP_CSS_NVM);
    let ctrlr = Rc::new(Ctrlr {
        shared: shared.clone(),
        cap,
        vs: Vs::V1_4,
        aqa: Cell::new(0),
        asq: Cell::new(0),
        acq: Cell::new(0),
        feat: RefCell::new(Features {
            number_of_queues: nq | (nq << 16),
            keep_alive_timer: kato,
            async_event_configuration: aec,
            interrupt_vector_configuration: 1 << 16,
            volatile_write_cache: u32::from(
                snap.namespaces
                    .values()
                    .any(|n| n.desc.bdev().write_cache()),
            ),
            host_behavior: [0; 512],
            arbitration: 0,
            power_management: 0,
            temperature_threshold: 0,
            error_recovery: 0,
            write_atomicity: 0,
        }),
        subnqn: snap.nqn.clone(),
        discovery,
        admin_qpair: RefCell::new(Rc::downgrade(qp)),
        last_keep_alive: Cell::new(env::now()),
        aers: RefCell::new(VecDeque::new()),
        pending_events: RefCell::new(VecDeque::new()),
        changed_ns: RefCell::new(Vec::new()),
        ns_notice_masked: Cell::new(false),
        known_nsids: RefCell::new(snap.visible_nsids(hostnqn)),
        seen_genctr: Cell::new(pg.genctr()),
        disc_notice_masked: Cell::new(false),
        resv_log: RefCell::new(VecDeque::new()),
        resv_log_count: Cell::new(0),
        resv_notice_masked: Cell::new(false),
        resv_masks: RefCell::new(BTreeMap::new()),
        resv_mask_all: Cell::new(0),
        known_ana: RefCell::new(snap.ana_states(shared.listen.as_ref())),
        ana_notice_masked: Cell::new(false),
        opts,
    });
    qp.qid.set(0);
    *qp.ctrlr.borrow_mut() = Some(shared);
    *qp.admin.borrow_mut() = Some(ctrlr.clone());
    pg.add_ctrlr(ctrlr);
    tracing::info!(cntlid, subnqn = %snap.nqn, hostnqn, kato, "controller created");
    Reply::status(Status::SUCCESS).dw0(connect_success_dw0(cntlid, 0))
}

fn connect_io(
    pg: &Rc<PgInner>,
    qp: &Rc<QpairInner>,
    snap: &SubsysSnap,
    qid: u16,
    cd: &ConnectData,
    hostnqn: &str,
) -> Reply {
    let shared = snap
        .ctrlrs
        .lock()
        .ok()
        .and_then(|t| t.map.get(&cd.cntlid()).cloned());
    let Some(shared) = shared else {
        tracing::error!(cntlid = cd.cntlid(), "Unknown controller ID");
        return connect_invalid(InvalidParam::in_data(connect_data_offset::CNTLID));
    };
    if shared.failed.load(Ordering::Acquire) {
        tracing::error!("I/O connect while the controller is being destroyed");
        return connect_invalid(InvalidParam::in_cmd(IPO_QID));
    }
    if snap.is_discovery() {
        tracing::error!("I/O connect not allowed on discovery controller");
        return connect_invalid(InvalidParam::in_cmd(IPO_QID));
    }
    if shared.hostnqn != hostnqn {
        tracing::error!(hostnqn, "I/O connect host differs from the admin connect");
        return connect_invalid(InvalidParam::in_data(connect_data_offset::HOSTNQN));
    }
    let cc = shared.cc();
    if cc.en() == 0 {
        tracing::error!("Got I/O connect before ctrlr was enabled");
        return connect_invalid(InvalidParam::in_cmd(IPO_QID));
    }
    if cc.iosqes() != 6 {
        tracing::error!(iosqes = cc.iosqes(), "Got I/O connect with invalid IOSQES");
        return connect_invalid(InvalidParam::in_cmd(IPO_QID));
    }
    if cc.iocqes() != 4 {
        tracing::error!(iocqes = cc.iocqes(), "Got I/O connect with invalid IOCQES");
        return connect_invalid(InvalidParam::in_cmd(IPO_QID));
    }
    if u32::from(qid) >= shared.max_qpairs {
        tracing::error!(qid, max = shared.max_qpairs - 1, "Requested QID too large");
        return Reply::status(CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER.into());
    }
    {
        let mut qids = match shared.io_qids.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        if qids.contains_key(&qid) {
            tracing::error!(qid, "Got I/O connect with duplicate QID");
            return Reply::status(CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER.into());
        }
        let Some(me) = env::Thread::current() else {
            return Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into());
        };
        qids.insert(qid, me.handle());
    }
    qp.qid.set(qid);
    qp.epoch.set(shared.epoch.load(Ordering::Acquire));
    let cntlid = shared.cntlid;
    *qp.ctrlr.borrow_mut() = Some(shared);
    *qp.subnqn.borrow_mut() = snap.nqn.clone();
    pg.count_io_qpair();
    tracing::debug!(cntlid, qid, "I/O queue connected");
    Reply::status(Status::SUCCESS).dw0(connect_success_dw0(cntlid, 0))
}

/// Dispatches a fabrics command on a connected queue (Property Get/Set on the admin queue).
pub(crate) fn fabrics_cmd(qp: &Rc<QpairInner>, req: &Request) -> Reply {
    let fctype = req.sqe.fctype();
    if fctype == FabricsCommandType::CONNECT {
        tracing::error!(qid = qp.qid.get(), "Connect on an already connected queue");
        return Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into());
    }
    let admin = qp.admin.borrow().clone();
    let Some(ctrlr) = admin else {
        tracing::error!(
            fctype = fctype.0,
            "unexpected fabrics command on an I/O queue"
        );
        return Reply::status(GenericStatus::INVALID_OPCODE.into());
    };
    match fctype {
        FabricsCommandType::PROPERTY_GET => ctrlr.property_get(PropertyGetCmd::from_sqe(&req.sqe)),
        FabricsCommandType::PROPERTY_SET => ctrlr.property_set(PropertySetCmd::from_sqe(&req.sqe)),
        _ => {
            tracing::info!(fctype = fctype.0, "unsupported fabrics command");
            Reply::status(GenericStatus::INVALID_OPCODE.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cntlid_allocation_is_round_robin_within_range() {
        let mut t = CtrlrTable::default();
        assert_eq!(t.alloc(5, 7), Some(5));
        t.map.insert(5, dummy(5));
        assert_eq!(t.alloc(5, 7), Some(6));
        t.map.insert(6, dummy(6));
        assert_eq!(t.alloc(5, 7), Some(7));
        t.map.insert(7, dummy(7));
        assert_eq!(t.alloc(5, 7), None);
        t.map.remove(&6);
        assert_eq!(t.alloc(5, 7), Some(6));
    }

    fn dummy(id: u16) -> Arc<CtrlrShared> {
        Arc::new(CtrlrShared {
            cntlid: id,
            subnqn: String::new(),
            hostnqn: String::new(),
            hostid: [0; 16],
            cc: AtomicU32::new(0),
            csts: AtomicU32::new(0),
            io_qids: Mutex::new(BTreeMap::new()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            failed: AtomicBool::new(false),
            max_qpairs: 128,
            listen: None,
            kato_ms: AtomicU32::new(0),
        })
    }

    #[test]
    fn aen_dword_layout() {
        assert_eq!(
            aen_dw0(
                AER_TYPE_NOTICE,
                AER_NOTICE_NS_ATTR_CHANGED,
                LID_CHANGED_NS_LIST
            ),
            0x0004_0002
        );
    }
}
