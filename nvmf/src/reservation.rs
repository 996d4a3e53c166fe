//! Namespace reservations (NVMe Base 2.0, 8.19 and 7.3-7.6; SPDK `lib/nvmf/subsystem.c`
//! `nvmf_ns_reservation_*` and `ctrlr.c` `nvmf_ns_reservation_request_check`).
//!
//! ```text
//!  I/O queue (poll group)                 app thread (owns Subsystem)
//!  ─ access check against the snapshot    ReservationState::register/acquire/release
//!  ─ Report from the snapshot      ──msg──▶ (one at a time, in arrival order)
//!  ─ Register/Acquire/Release             ├─ notices ──msg──▶ every poll group ─▶ Ctrlr log + AEN
//!          ▲                              └─ Target::update (new snapshot to every poll group)
//!          └──────────── completion ◀──msg── once every poll group has the new state
//! ```
//!
//! One [`ReservationState`] per namespace, shared by every controller of the subsystem and
//! keyed by the 128-bit Host Identifier of Fabrics Connect (controllers of one host share
//! one registration). It is changed only on the app thread; each change is pushed to the
//! poll groups inside the subsystem snapshot before the command completes, so the I/O path
//! checks access against its own copy without locks.
//!
//! Persistence through power loss (SPDK `ptpl_file`): a namespace added with a `ptpl_file`
//! is PTPL capable (RESCAP bit 0). Register with CPTPL=3 (or Set Features 83h) turns
//! persistence on, CPTPL=2 turns it off. While it is on, every change of the state is
//! written to the file in SPDK's JSON format ([`PtplRecord`]) on the app thread (temporary
//! file, fsync, rename) before the command completes; turning it off leaves an empty file,
//! as SPDK. Adding the namespace again loads the file ([`ReservationState::restore`]).

use crate::NvmfError;
use nvme::spec::io::{
    RACQA_ACQUIRE, RACQA_PREEMPT, RACQA_PREEMPT_AND_ABORT, RREGA_REGISTER, RREGA_REPLACE,
    RREGA_UNREGISTER, RRELA_CLEAR, RRELA_RELEASE, ReservationArgs, ReservationType,
};
use nvme::spec::log::{
    RESERVATION_LOG_REGISTRATION_PREEMPTED, RESERVATION_LOG_RESERVATION_PREEMPTED,
    RESERVATION_LOG_RESERVATION_RELEASED,
};
use nvme::spec::{GenericStatus, NvmOpcode, Status};
use serde::{Deserialize, Serialize};

/// Registrants one namespace holds (SPDK `SPDK_NVMF_MAX_NUM_REGISTRANTS`).
pub const MAX_REGISTRANTS: usize = 16;
/// Reservation Status extended data structure header size (NVMe Base 2.0, Figure 578).
pub const REPORT_EXT_HEADER_SIZE: usize = 64;
/// Registered Controller extended data structure size (NVMe Base 2.0, Figure 579).
pub const REPORT_EXT_ENTRY_SIZE: usize = 64;
/// Reservation Register / Acquire data structure size (CRKEY + NRKEY/PRKEY).
pub const KEY_DATA_SIZE: usize = 16;
/// Reservation Release data structure size (CRKEY).
pub const RELEASE_DATA_SIZE: usize = 8;
/// CPTPL: no change (NVMe Base 2.0, Figure 562).
const CPTPL_NO_CHANGE: u8 = 0;
/// CPTPL: clear PTPL (persistence through power loss off).
const CPTPL_CLEAR: u8 = 2;
/// CPTPL: persist through power loss (needs a `ptpl_file`).
const CPTPL_PERSIST: u8 = 3;
/// Largest `ptpl_file` accepted when a namespace is added (1 MiB).
pub const PTPL_FILE_MAX: u64 = 1 << 20;
/// CNTLID of a registrant restored from a `ptpl_file` (no controller of this target
/// registered it); reported as FFFFh, as SPDK.
pub const RESTORED_CNTLID: u16 = 0xffff;

/// A 128-bit Host Identifier (Connect data HOSTID).
pub type HostId = [u8; 16];

/// One registered host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registrant {
    /// The host's 128-bit Host Identifier.
    pub hostid: HostId,
    /// Its reservation key.
    pub rkey: u64,
    /// The controller that registered it (reported in the Reservation Report, as SPDK).
    pub cntlid: u16,
}

/// A reservation notification for the controllers of one host (log page 80h entry type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The host whose controllers get the log entry.
    pub hostid: HostId,
    /// `RESERVATION_LOG_*` type: registration preempted, reservation released or preempted.
    pub log_type: u8,
}

/// The result of a reservation command on the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Completion status.
    pub status: Status,
    /// True when the state changed (the poll groups need the new snapshot).
    pub changed: bool,
    /// Notifications for other hosts, in order.
    pub notices: Vec<Notice>,
    /// Hosts whose registration a preempt removed (preempt-and-abort waits for their I/O).
    pub preempted: Vec<HostId>,
}

impl Outcome {
    fn status(s: GenericStatus) -> Outcome {
        Outcome {
            status: s.into(),
            changed: false,
            notices: Vec::new(),
            preempted: Vec::new(),
        }
    }
    fn unchanged() -> Outcome {
        Outcome::status(GenericStatus::SUCCESS)
    }
    fn changed() -> Outcome {
        Outcome {
            changed: true,
            ..Outcome::unchanged()
        }
    }
}

/// Reservation state of one namespace (SPDK `spdk_nvmf_ns` registrants/holder/rtype/gen).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservationState {
    registrants: Vec<Registrant>,
    rtype: ReservationType,
    /// Holder of the reservation: the acquiring host, or in an "all registrants" type a
    /// registrant that stands for all of them (SPDK `ns->holder`); always a registrant.
    holder: Option<HostId>,
    generation: u32,
    /// The namespace has a `ptpl_file` (RESCAP bit 0).
    ptpl_capable: bool,
    /// Persistence through power loss is on (SPDK `ptpl_activated`, PTPLS).
    ptpl: bool,
}

fn all_regs(t: ReservationType) -> bool {
    t == ReservationType::WRITE_EXCLUSIVE_ALL_REGS
        || t == ReservationType::EXCLUSIVE_ACCESS_ALL_REGS
}

fn valid_type(t: ReservationType) -> bool {
    (ReservationType::WRITE_EXCLUSIVE.0..=ReservationType::EXCLUSIVE_ACCESS_ALL_REGS.0)
        .contains(&t.0)
}

impl ReservationState {
    /// Registered hosts in registration order.
    pub fn registrants(&self) -> &[Registrant] {
        &self.registrants
    }

    /// The reservation type, `ReservationType(0)` when no reservation is held.
    pub fn rtype(&self) -> ReservationType {
        self.rtype
    }

    /// The generation counter (NVMe Base 2.0, Figure 577 GEN): incremented by every
    /// successful Register (also one that changes nothing), every Preempt and every Clear.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// True when the namespace has a `ptpl_file` and may persist through power loss.
    pub fn ptpl_capable(&self) -> bool {
        self.ptpl_capable
    }

    /// True when persistence through power loss is on (Reservation Report PTPLS, feature
    /// 83h).
    pub fn ptpl(&self) -> bool {
        self.ptpl
    }

    /// Sets persistence through power loss (Set Features 83h); false, and no change, when
    /// the namespace is not PTPL capable.
    pub fn set_ptpl(&mut self, on: bool) -> bool {
        if !self.ptpl_capable {
            return false;
        }
        self.ptpl = on;
        true
    }

    /// An empty state of a namespace with (`capable`) or without a `ptpl_file`.
    pub fn new(capable: bool) -> ReservationState {
        ReservationState {
            ptpl_capable: capable,
            ..ReservationState::default()
        }
    }

    /// True when `host` is registered.
    pub fn is_registrant(&self, host: &HostId) -> bool {
        self.registrants.iter().any(|r| &r.hostid == host)
    }

    /// True when `host` holds the reservation (every registrant does in the "all registrants"
    /// types).
    pub fn is_holder(&self, host: &HostId) -> bool {
        if self.rtype.0 == 0 {
            return false;
        }
        if all_regs(self.rtype) {
            self.is_registrant(host)
        } else {
            self.holder.as_ref() == Some(host)
        }
    }

    /// The holder's reservation key (0 when none or for the "all registrants" types).
    fn holder_key(&self) -> u64 {
        let Some(h) = self.holder.as_ref() else {
            return 0;
        };
        self.find(h).map_or(0, |i| self.registrants[i].rkey)
    }

    fn find(&self, host: &HostId) -> Option<usize> {
        self.registrants.iter().position(|r| &r.hostid == host)
    }

    fn others(&self, host: &HostId) -> Vec<HostId> {
        self.registrants
            .iter()
            .filter(|r| &r.hostid != host)
            .map(|r| r.hostid)
            .collect()
    }

    fn release_reservation(&mut self) {
        self.rtype = ReservationType(0);
        self.holder = None;
    }

    /// Removes registrant `i`, as SPDK `nvmf_ns_reservation_check_release_on_remove_registrant`:
    /// in an "all registrants" type the reservation passes to the first remaining
    /// registrant (released with the last one); in the other types it is released when its
    /// holder goes. The caller sends the release notifications the spec asks for.
    fn remove(&mut self, i: usize) {
        let gone = self.registrants.remove(i);
        if self.rtype.0 == 0 {
            return;
        }
        if all_regs(self.rtype) {
            match self.registrants.first() {
                None => self.release_reservation(),
                Some(next) => {
                    if self.holder.is_none_or(|h| h == gone.hostid) {
                        self.holder = Some(next.hostid);
                    }
                }
            }
        } else if self.holder == Some(gone.hostid) {
            self.release_reservation();
        }
    }

    /// Removes the registrants with key `key` (except `keep`); returns how many.
    fn remove_by_key(&mut self, key: u64, keep: Option<&HostId>) -> usize {
        let mut n = 0;
        while let Some(i) = self
            .registrants
            .iter()
            .position(|r| r.rkey == key && Some(&r.hostid) != keep)
        {
            self.remove(i);
            n += 1;
        }
        n
    }

    /// Access check of the I/O path (SPDK `nvmf_ns_reservation_request_check`, NVMe Base
    /// 2.0 Figure 575): true when `host` may run command `opc` (CDW10 `cdw10`) under the
    /// current reservation. Copy counts as a write (SPDK does not check it).
    pub fn allows(&self, host: &HostId, opc: NvmOpcode, cdw10: u32) -> bool {
        let t = self.rtype;
        if t.0 == 0 {
            return true;
        }
        let registrant = self.is_registrant(host);
        // The holder passes only while registered: a preempted or unregistered former holder
        // is fenced like any other host.
        if registrant && (all_regs(t) || self.holder.as_ref() == Some(host)) {
            return true;
        }
        let exclusive_access = t == ReservationType::EXCLUSIVE_ACCESS;
        let write_exclusive = t == ReservationType::WRITE_EXCLUSIVE;
        match opc {
            NvmOpcode::READ | NvmOpcode::COMPARE => {
                if exclusive_access {
                    return false;
                }
                let registrants_only = t == ReservationType::EXCLUSIVE_ACCESS_REG_ONLY
                    || t == ReservationType::EXCLUSIVE_ACCESS_ALL_REGS;
                !registrants_only || registrant
            }
            NvmOpcode::FLUSH
            | NvmOpcode::WRITE
            | NvmOpcode::WRITE_UNCORRECTABLE
            | NvmOpcode::WRITE_ZEROES
            | NvmOpcode::DATASET_MANAGEMENT
            | NvmOpcode::COPY => !(write_exclusive || exclusive_access) && registrant,
            NvmOpcode::RESERVATION_ACQUIRE => (cdw10 & 0x7) as u8 != RACQA_ACQUIRE && registrant,
            NvmOpcode::RESERVATION_RELEASE => registrant,
            _ => true,
        }
    }

    /// Reservation Register (SPDK `nvmf_ns_reservation_register`). `crkey`/`nrkey` come from
    /// the 16-byte data structure.
    ///
    /// CPTPL is applied first, as SPDK: 10b turns persistence off, 11b on (Invalid Field
    /// without a `ptpl_file`), 01b is reserved (Invalid Field). A CPTPL change marks the
    /// state changed even when the registration action then fails.
    pub fn register(
        &mut self,
        host: &HostId,
        cntlid: u16,
        args: ReservationArgs,
        crkey: u64,
        nrkey: u64,
    ) -> Outcome {
        let mut ptpl_changed = false;
        match args.cptpl {
            CPTPL_NO_CHANGE => {}
            CPTPL_CLEAR => {
                ptpl_changed = self.ptpl;
                self.ptpl = false;
            }
            CPTPL_PERSIST if self.ptpl_capable => {
                ptpl_changed = !self.ptpl;
                self.ptpl = true;
            }
            CPTPL_PERSIST => {
                tracing::error!("Reservation Register CPTPL=3 on a namespace without ptpl_file");
                return Outcome::status(GenericStatus::INVALID_FIELD);
            }
            other => {
                tracing::error!(cptpl = other, "Reservation Register with reserved CPTPL");
                return Outcome::status(GenericStatus::INVALID_FIELD);
            }
        }
        let mut out = self.register_action(host, cntlid, args, crkey, nrkey);
        out.changed |= ptpl_changed;
        out
    }

    fn register_action(
        &mut self,
        host: &HostId,
        cntlid: u16,
        args: ReservationArgs,
        crkey: u64,
        nrkey: u64,
    ) -> Outcome {
        let idx = self.find(host);
        let mut out = match args.action {
            RREGA_REGISTER => match idx {
                None => self.add(host, cntlid, nrkey),
                Some(i) if self.registrants[i].rkey == nrkey => Outcome::unchanged(),
                Some(i) => {
                    tracing::error!(
                        rkey = self.registrants[i].rkey,
                        "host already registered with another key"
                    );
                    Outcome::status(GenericStatus::RESERVATION_CONFLICT)
                }
            },
            RREGA_UNREGISTER => {
                let Some(i) = idx.filter(|i| args.iekey || self.registrants[*i].rkey == crkey)
                else {
                    tracing::error!("unregister: not registered or CRKEY mismatch");
                    return Outcome::status(GenericStatus::RESERVATION_CONFLICT);
                };
                let old = self.rtype;
                let others = self.others(host);
                self.remove(i);
                let mut out = Outcome::changed();
                let registrants_only = old == ReservationType::WRITE_EXCLUSIVE_REG_ONLY
                    || old == ReservationType::EXCLUSIVE_ACCESS_REG_ONLY;
                if self.rtype.0 == 0 && registrants_only {
                    out.notices = notices(&others, RESERVATION_LOG_RESERVATION_RELEASED);
                }
                out
            }
            RREGA_REPLACE => {
                if nrkey == 0 {
                    tracing::error!("cannot register a zero key");
                    return Outcome::status(GenericStatus::INVALID_FIELD);
                }
                match idx {
                    Some(i) if !args.iekey && self.registrants[i].rkey != crkey => {
                        tracing::error!("replace: CRKEY mismatch");
                        Outcome::status(GenericStatus::RESERVATION_CONFLICT)
                    }
                    Some(i) if self.registrants[i].rkey == nrkey => Outcome::unchanged(),
                    Some(i) => {
                        self.registrants[i].rkey = nrkey;
                        Outcome::changed()
                    }
                    None if args.iekey => self.add(host, cntlid, nrkey),
                    None => {
                        tracing::error!("replace: host not registered");
                        Outcome::status(GenericStatus::RESERVATION_CONFLICT)
                    }
                }
            }
            other => {
                tracing::error!(rrega = other, "invalid Reservation Register action");
                Outcome::status(GenericStatus::INVALID_FIELD)
            }
        };
        // NVMe Base 2.0, Figure 577: GEN counts every successful Register (SPDK counts
        // registrants added and removed only).
        if out.status.is_success() {
            self.generation = self.generation.wrapping_add(1);
            out.changed = true;
        }
        out
    }

    fn add(&mut self, host: &HostId, cntlid: u16, key: u64) -> Outcome {
        if key == 0 {
            tracing::error!("cannot register a zero key");
            return Outcome::status(GenericStatus::INVALID_FIELD);
        }
        if self.registrants.len() >= MAX_REGISTRANTS {
            tracing::error!(max = MAX_REGISTRANTS, "too many registrants");
            return Outcome::status(GenericStatus::INVALID_FIELD);
        }
        self.registrants.push(Registrant {
            hostid: *host,
            rkey: key,
            cntlid,
        });
        Outcome::changed()
    }

    /// Reservation Acquire (SPDK `nvmf_ns_reservation_acquire`, with the v26 preempt fixes:
    /// every registrant holding the preempted key goes, and preempt-and-abort is accepted).
    pub fn acquire(
        &mut self,
        host: &HostId,
        args: ReservationArgs,
        crkey: u64,
        prkey: u64,
    ) -> Outcome {
        if args.iekey || !valid_type(args.rtype) {
            tracing::error!(
                iekey = args.iekey,
                rtype = args.rtype.0,
                "Reservation Acquire with IEKEY or an invalid type"
            );
            return Outcome::status(GenericStatus::INVALID_FIELD);
        }
        match self.find(host) {
            Some(i) if self.registrants[i].rkey == crkey => {}
            _ => {
                tracing::error!("acquire: not registered or CRKEY mismatch");
                return Outcome::status(GenericStatus::RESERVATION_CONFLICT);
            }
        }
        match args.action {
            RACQA_ACQUIRE => {
                if self.is_holder(host) && self.rtype == args.rtype {
                    Outcome::unchanged()
                } else if self.rtype.0 == 0 {
                    self.rtype = args.rtype;
                    self.holder = Some(*host);
                    Outcome::changed()
                } else {
                    tracing::error!("acquire: reservation held by another host or another type");
                    Outcome::status(GenericStatus::RESERVATION_CONFLICT)
                }
            }
            RACQA_PREEMPT | RACQA_PREEMPT_AND_ABORT => self.preempt(host, args.rtype, prkey),
            other => {
                tracing::error!(racqa = other, "invalid Reservation Acquire action");
                Outcome::status(GenericStatus::INVALID_FIELD)
            }
        }
    }

    fn preempt(&mut self, host: &HostId, rtype: ReservationType, prkey: u64) -> Outcome {
        let before = self.others(host);
        let mut released = false;
        if self.rtype.0 == 0 {
            self.remove_by_key(prkey, None);
        } else if !all_regs(self.rtype) {
            let holder_key = self.holder_key();
            if self.is_holder(host) && holder_key == prkey {
                self.rtype = rtype;
                released = true;
            } else if holder_key == prkey {
                self.remove_by_key(prkey, Some(host));
                self.rtype = rtype;
                self.holder = Some(*host);
                released = true;
            } else if prkey != 0 {
                self.remove_by_key(prkey, None);
            } else {
                tracing::error!("preempt: PRKEY is zero");
                return Outcome::status(GenericStatus::RESERVATION_CONFLICT);
            }
        } else if prkey == 0 {
            while let Some(i) = self.registrants.iter().position(|r| &r.hostid != host) {
                self.registrants.remove(i);
            }
            self.rtype = rtype;
            self.holder = Some(*host);
        } else if self.remove_by_key(prkey, None) == 0 {
            tracing::error!(prkey, "preempt: PRKEY matches no registrant");
            return Outcome::status(GenericStatus::RESERVATION_CONFLICT);
        }
        self.generation = self.generation.wrapping_add(1);
        let after = self.others(host);
        let preempted: Vec<HostId> = before.into_iter().filter(|h| !after.contains(h)).collect();
        let mut out = Outcome::changed();
        out.notices = notices(&preempted, RESERVATION_LOG_REGISTRATION_PREEMPTED);
        if released {
            out.notices
                .extend(notices(&after, RESERVATION_LOG_RESERVATION_RELEASED));
        }
        out.preempted = preempted;
        out
    }

    /// Reservation Release (SPDK `nvmf_ns_reservation_release`); `crkey` from the 8-byte data.
    pub fn release(&mut self, host: &HostId, args: ReservationArgs, crkey: u64) -> Outcome {
        if args.iekey {
            tracing::error!("Reservation Release with IEKEY");
            return Outcome::status(GenericStatus::INVALID_FIELD);
        }
        match self.find(host) {
            Some(i) if self.registrants[i].rkey == crkey => {}
            _ => {
                tracing::error!("release: not registered or CRKEY mismatch");
                return Outcome::status(GenericStatus::RESERVATION_CONFLICT);
            }
        }
        let others = self.others(host);
        match args.action {
            RRELA_RELEASE => {
                if self.rtype.0 == 0 {
                    return Outcome::unchanged();
                }
                if self.rtype != args.rtype {
                    tracing::error!(
                        held = self.rtype.0,
                        given = args.rtype.0,
                        "release: type does not match the reservation"
                    );
                    return Outcome::status(GenericStatus::INVALID_FIELD);
                }
                if !self.is_holder(host) {
                    return Outcome::unchanged();
                }
                let old = self.rtype;
                self.release_reservation();
                let mut out = Outcome::changed();
                if old != ReservationType::WRITE_EXCLUSIVE
                    && old != ReservationType::EXCLUSIVE_ACCESS
                {
                    out.notices = notices(&others, RESERVATION_LOG_RESERVATION_RELEASED);
                }
                out
            }
            RRELA_CLEAR => {
                self.registrants.clear();
                self.release_reservation();
                self.generation = self.generation.wrapping_add(1);
                let mut out = Outcome::changed();
                out.notices = notices(&others, RESERVATION_LOG_RESERVATION_PREEMPTED);
                out
            }
            other => {
                tracing::error!(rrela = other, "invalid Reservation Release action");
                Outcome::status(GenericStatus::INVALID_FIELD)
            }
        }
    }

    /// The Reservation Status extended data structure (NVMe Base 2.0, Figures 578-579):
    /// a 64-byte header (GEN, RTYPE, REGCTL, PTPLS) and one 64-byte entry per registrant
    /// (CNTLID, RCSTS holder bit, RKEY, 128-bit HOSTID), in registration order.
    pub fn report_extended(&self) -> Vec<u8> {
        let mut out = vec![0u8; REPORT_EXT_HEADER_SIZE];
        out[0..4].copy_from_slice(&self.generation.to_le_bytes());
        out[4] = self.rtype.0;
        out[5..7].copy_from_slice(&(self.registrants.len() as u16).to_le_bytes());
        out[9] = u8::from(self.ptpl);
        for r in &self.registrants {
            let mut e = [0u8; REPORT_EXT_ENTRY_SIZE];
            e[0..2].copy_from_slice(&r.cntlid.to_le_bytes());
            e[2] = u8::from(self.is_holder(&r.hostid));
            e[8..16].copy_from_slice(&r.rkey.to_le_bytes());
            e[16..32].copy_from_slice(&r.hostid);
            out.extend_from_slice(&e);
        }
        out
    }
}

/// One registrant in a `ptpl_file` (SPDK `_nvmf_ns_registrant`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtplRegistrant {
    /// Reservation key.
    pub rkey: u64,
    /// The host's 128-bit Host Identifier as a lowercase UUID string.
    pub host_uuid: String,
}

/// The JSON object of a `ptpl_file`, keys and order as SPDK v25.09
/// (`nvmf_ns_reservation_update_json`): `ptpl`, `rtype`, `crkey`, `bdev_uuid`,
/// `holder_uuid` (empty without a single holder), `registrants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtplRecord {
    /// Persistence through power loss is on.
    #[serde(default)]
    pub ptpl: bool,
    /// Reservation type (0 none).
    #[serde(default)]
    pub rtype: u32,
    /// The holder's reservation key (0 none).
    #[serde(default)]
    pub crkey: u64,
    /// UUID of the namespace's bdev (lowercase).
    pub bdev_uuid: String,
    /// Host Identifier of the holder as a UUID, empty for none or an "all registrants" type.
    #[serde(default)]
    pub holder_uuid: String,
    /// Registrants in registration order.
    pub registrants: Vec<PtplRegistrant>,
}

fn host_uuid(h: &HostId) -> String {
    uuid::Uuid::from_bytes(*h).to_string()
}

impl ReservationState {
    /// The `ptpl_file` record of this state for a namespace whose bdev has UUID `bdev`
    /// (SPDK `nvmf_ns_update_reservation_info`; crkey of an "all registrants" type is the
    /// first registrant's key, the holder SPDK restores).
    pub fn to_record(&self, bdev: &uuid::Uuid) -> PtplRecord {
        let (crkey, holder_uuid) = if self.rtype.0 == 0 {
            (0, String::new())
        } else if all_regs(self.rtype) {
            (
                self.registrants.first().map_or(0, |r| r.rkey),
                String::new(),
            )
        } else {
            (
                self.holder_key(),
                self.holder.as_ref().map(host_uuid).unwrap_or_default(),
            )
        };
        PtplRecord {
            ptpl: self.ptpl,
            rtype: u32::from(self.rtype.0),
            crkey,
            bdev_uuid: bdev.to_string(),
            holder_uuid,
            registrants: self
                .registrants
                .iter()
                .map(|r| PtplRegistrant {
                    rkey: r.rkey,
                    host_uuid: host_uuid(&r.hostid),
                })
                .collect(),
        }
    }

    /// The state of a PTPL capable namespace restored from `rec` (SPDK
    /// `nvmf_ns_reservation_restore`): the bdev UUID must be `bdev`, at most
    /// [`MAX_REGISTRANTS`] distinct registrants with non-zero keys, `rtype` 0..=6, `crkey`
    /// 0 or a registrant's key, and a single-holder type names a registered holder. As SPDK,
    /// a record with persistence off or without registrants restores an empty state.
    pub fn restore(rec: &PtplRecord, bdev: &uuid::Uuid) -> Result<ReservationState, NvmfError> {
        let bad = |m: String| Err(NvmfError::InvalidParam(format!("ptpl_file: {m}")));
        let file_bdev = uuid::Uuid::parse_str(&rec.bdev_uuid);
        if file_bdev.as_ref().ok() != Some(bdev) {
            return bad(format!(
                "bdev_uuid {} is not the namespace's bdev {bdev}",
                rec.bdev_uuid
            ));
        }
        if rec.registrants.len() > MAX_REGISTRANTS {
            return bad(format!(
                "{} registrants, at most {MAX_REGISTRANTS}",
                rec.registrants.len()
            ));
        }
        let mut state = ReservationState::new(true);
        if !rec.ptpl || rec.registrants.is_empty() {
            return Ok(state);
        }
        for r in &rec.registrants {
            let Ok(u) = uuid::Uuid::parse_str(&r.host_uuid) else {
                return bad(format!("host_uuid '{}' is not a UUID", r.host_uuid));
            };
            let hostid = *u.as_bytes();
            if r.rkey == 0 || state.is_registrant(&hostid) {
                return bad(format!(
                    "registrant {} has key 0 or appears twice",
                    r.host_uuid
                ));
            }
            state.registrants.push(Registrant {
                hostid,
                rkey: r.rkey,
                cntlid: RESTORED_CNTLID,
            });
        }
        if rec.crkey != 0 && !state.registrants.iter().any(|r| r.rkey == rec.crkey) {
            return bad(format!("crkey {:#x} matches no registrant", rec.crkey));
        }
        let rtype = match u8::try_from(rec.rtype) {
            Ok(t) if t == 0 || valid_type(ReservationType(t)) => ReservationType(t),
            _ => return bad(format!("invalid rtype {}", rec.rtype)),
        };
        state.rtype = rtype;
        state.ptpl = true;
        if rtype.0 != 0 && !all_regs(rtype) {
            let holder = uuid::Uuid::parse_str(&rec.holder_uuid)
                .ok()
                .map(|u| *u.as_bytes())
                .filter(|h| state.is_registrant(h));
            match holder {
                Some(h) => state.holder = Some(h),
                None => {
                    return bad(format!(
                        "holder_uuid '{}' is not a registrant",
                        rec.holder_uuid
                    ));
                }
            }
        } else if all_regs(rtype) {
            state.holder = state.registrants.first().map(|r| r.hostid);
        }
        Ok(state)
    }
}

/// Loads the reservation state of a namespace with `ptpl_file` `path` whose bdev has UUID
/// `bdev` (SPDK `nvmf_ns_reservation_load_json` + restore). A missing or empty file is an
/// empty state (SPDK empties the file when persistence goes off). The path must be
/// absolute, without `..` components, and name a regular file, not a symbolic link, of at most [`PTPL_FILE_MAX`] bytes holding one
/// [`PtplRecord`]: it is opened once with `O_NOFOLLOW | O_NONBLOCK` and the opened handle's
/// type checked, so a directory, FIFO or device is refused before any data is read.
pub fn load_ptpl_file(
    path: &std::path::Path,
    bdev: &uuid::Uuid,
) -> Result<ReservationState, NvmfError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    if path.file_name().is_none() {
        return Err(NvmfError::InvalidParam(format!(
            "ptpl_file '{shown}' does not name a file"
        )));
    }
    // The file is created and replaced later on a remote host's request (Register with
    // CPTPL=3): only an absolute path without `..` is taken, so what it names is plain.
    if !path.is_absolute() {
        tracing::error!(path = %shown, "ptpl_file is not an absolute path");
        return Err(NvmfError::InvalidParam(format!(
            "ptpl_file '{shown}' is not an absolute path"
        )));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        tracing::error!(path = %shown, "ptpl_file has a '..' component");
        return Err(NvmfError::InvalidParam(format!(
            "ptpl_file '{shown}' has a '..' component"
        )));
    }
    // One open, checked through its handle (no check-then-open race): O_NOFOLLOW refuses
    // a symbolic link planted at the path, O_NONBLOCK keeps a FIFO from blocking the open.
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ReservationState::new(true));
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::error!(path = %shown, "ptpl_file is a symbolic link");
            return Err(NvmfError::InvalidParam(format!(
                "ptpl_file {shown} is a symbolic link, not a regular file"
            )));
        }
        Err(e) => {
            return Err(NvmfError::InvalidParam(format!("ptpl_file {shown}: {e}")));
        }
    };
    let meta = f
        .metadata()
        .map_err(|e| NvmfError::InvalidParam(format!("ptpl_file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(NvmfError::InvalidParam(format!(
            "ptpl_file {shown} is not a regular file"
        )));
    }
    if meta.len() > PTPL_FILE_MAX {
        return Err(NvmfError::InvalidParam(format!(
            "ptpl_file {shown} is {} bytes, larger than {PTPL_FILE_MAX}",
            meta.len()
        )));
    }
    let mut data = Vec::new();
    f.take(PTPL_FILE_MAX + 1)
        .read_to_end(&mut data)
        .map_err(|e| NvmfError::InvalidParam(format!("ptpl_file {shown}: {e}")))?;
    if data.len() as u64 > PTPL_FILE_MAX {
        return Err(NvmfError::InvalidParam(format!(
            "ptpl_file {shown} is larger than {PTPL_FILE_MAX} bytes"
        )));
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(ReservationState::new(true));
    }
    let rec: PtplRecord = serde_json::from_slice(&data).map_err(|e| {
        NvmfError::InvalidParam(format!("ptpl_file {shown}: invalid reservation JSON: {e}"))
    })?;
    ReservationState::restore(&rec, bdev)
}

/// Writes `state` to `path` atomically (SPDK `nvmf_ns_reservation_update_json`): the
/// compact JSON record while persistence is on, an empty file once it is off; written to a
/// temporary file in the same directory (`.<name>.tmp.<pid>`, created exclusively with
/// `O_EXCL | O_NOFOLLOW`), synced, renamed over `path`, directory synced.
pub fn write_ptpl_file(
    path: &std::path::Path,
    state: &ReservationState,
    bdev: &uuid::Uuid,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let data = if state.ptpl {
        serde_json::to_vec(&state.to_record(bdev)).map_err(std::io::Error::other)?
    } else {
        Vec::new()
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("ptpl_file has no file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // The temporary file must be new (O_EXCL) and not a symbolic link (O_NOFOLLOW): in a
    // world-writable directory a file or link planted at its name would otherwise make
    // the target overwrite another file. A leftover (or planted) entry is unlinked (which
    // never follows a link) and the exclusive create tried once more.
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
    };
    let f = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            tracing::warn!(tmp = %tmp.display(), "removing a stale ptpl temporary file");
            std::fs::remove_file(&tmp)?;
            create()
        }
        other => other,
    };
    let mut f = f?;
    let res = (|| {
        f.write_all(&data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A state-changing reservation command on its way to the app thread (`Send`).
#[derive(Clone, Debug)]
pub(crate) struct ResvCommand {
    pub subnqn: String,
    pub nsid: u32,
    pub hostid: HostId,
    pub cntlid: u16,
    pub opc: NvmOpcode,
    pub args: ReservationArgs,
    /// CRKEY (bytes 0..8 of the data).
    pub crkey: u64,
    /// NRKEY (register) or PRKEY (acquire), bytes 8..16; 0 for release.
    pub key2: u64,
}

impl ResvCommand {
    /// Applies the command to `state`.
    pub fn apply(&self, state: &mut ReservationState) -> Outcome {
        let h = &self.hostid;
        match self.opc {
            NvmOpcode::RESERVATION_REGISTER => {
                state.register(h, self.cntlid, self.args, self.crkey, self.key2)
            }
            NvmOpcode::RESERVATION_ACQUIRE => state.acquire(h, self.args, self.crkey, self.key2),
            NvmOpcode::RESERVATION_RELEASE => state.release(h, self.args, self.crkey),
            _ => Outcome::status(GenericStatus::INVALID_OPCODE),
        }
    }

    /// True for Reservation Acquire with action preempt-and-abort.
    pub fn is_preempt_and_abort(&self) -> bool {
        self.opc == NvmOpcode::RESERVATION_ACQUIRE && self.args.action == RACQA_PREEMPT_AND_ABORT
    }
}

fn notices(hosts: &[HostId], log_type: u8) -> Vec<Notice> {
    hosts
        .iter()
        .map(|h| Notice {
            hostid: *h,
            log_type,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: HostId = [0xa; 16];
    const B: HostId = [0xb; 16];
    const C: HostId = [0xc; 16];

    fn args(action: u8, rtype: u8) -> ReservationArgs {
        ReservationArgs {
            action,
            iekey: false,
            rtype: ReservationType(rtype),
            cptpl: 0,
        }
    }

    fn conflict() -> Status {
        GenericStatus::RESERVATION_CONFLICT.into()
    }

    fn args_cptpl(action: u8, cptpl: u8) -> ReservationArgs {
        ReservationArgs {
            cptpl,
            ..args(action, 0)
        }
    }

    #[test]
    fn cptpl_turns_persistence_on_and_off_and_counts_as_a_change_even_on_conflict() {
        let mut plain = ReservationState::default();
        assert_eq!(
            plain
                .register(&A, 1, args_cptpl(RREGA_REGISTER, 3), 0, 10)
                .status,
            GenericStatus::INVALID_FIELD.into()
        );
        let mut s = ReservationState::new(true);
        let out = s.register(&A, 1, args_cptpl(RREGA_REGISTER, 3), 0, 10);
        assert!(out.changed && s.ptpl());
        // Same key again with CPTPL=3: success, persistence stays on (the generation moves).
        let out = s.register(&A, 1, args_cptpl(RREGA_REGISTER, 3), 0, 10);
        assert_eq!(out.status, Status::SUCCESS);
        assert!(s.ptpl());
        assert_eq!(s.generation(), 2);
        // CPTPL=2 with a conflicting key: persistence goes off (SPDK applies CPTPL first),
        // the command still answers Reservation Conflict and the state counts as changed.
        let out = s.register(&A, 1, args_cptpl(RREGA_REGISTER, 2), 0, 11);
        assert_eq!((out.status, out.changed), (conflict(), true));
        assert!(!s.ptpl());
        assert_eq!(
            s.register(&A, 1, args_cptpl(RREGA_REGISTER, 1), 0, 10)
                .status,
            GenericStatus::INVALID_FIELD.into()
        );
    }

    #[test]
    fn ptpl_record_round_trips_holder_type_and_registrants() {
        let bdev = uuid::Uuid::from_bytes([0x42; 16]);
        let mut s = ReservationState::new(true);
        s.register(&A, 1, args_cptpl(RREGA_REGISTER, 3), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        s.acquire(&B, args(RACQA_ACQUIRE, 2), 20, 0);
        let rec = s.to_record(&bdev);
        assert_eq!(
            rec,
            PtplRecord {
                ptpl: true,
                rtype: 2,
                crkey: 20,
                bdev_uuid: "42424242-4242-4242-4242-424242424242".into(),
                holder_uuid: "0b0b0b0b-0b0b-0b0b-0b0b-0b0b0b0b0b0b".into(),
                registrants: vec![
                    PtplRegistrant {
                        rkey: 10,
                        host_uuid: "0a0a0a0a-0a0a-0a0a-0a0a-0a0a0a0a0a0a".into()
                    },
                    PtplRegistrant {
                        rkey: 20,
                        host_uuid: "0b0b0b0b-0b0b-0b0b-0b0b-0b0b0b0b0b0b".into()
                    },
                ],
            }
        );
        let r = ReservationState::restore(&rec, &bdev).unwrap();
        assert!(r.ptpl() && r.ptpl_capable() && r.is_holder(&B) && !r.is_holder(&A));
        assert_eq!(r.rtype(), ReservationType::EXCLUSIVE_ACCESS);
        assert_eq!(
            r.registrants().iter().map(|x| x.rkey).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert!(!r.allows(&C, NvmOpcode::READ, 0));
        // Another bdev's file is refused.
        let other = uuid::Uuid::from_bytes([0x43; 16]);
        assert!(ReservationState::restore(&rec, &other).is_err());
    }

    #[test]
    fn restored_registrants_report_cntlid_ffffh() {
        let bdev = uuid::Uuid::from_bytes([0x42; 16]);
        let mut s = ReservationState::new(true);
        s.register(&A, 7, args_cptpl(RREGA_REGISTER, 3), 0, 10);
        let r = ReservationState::restore(&s.to_record(&bdev), &bdev).unwrap();
        let rep = r.report_extended();
        assert_eq!(rep.len(), REPORT_EXT_HEADER_SIZE + REPORT_EXT_ENTRY_SIZE);
        assert_eq!(&rep[64..66], &[0xff, 0xff]);
        assert_eq!(r.registrants()[0].cntlid, RESTORED_CNTLID);
        // The live state keeps the registering controller's CNTLID.
        assert_eq!(&s.report_extended()[64..66], &7u16.to_le_bytes());
    }

    #[test]
    fn ptpl_write_does_not_follow_a_symlink_planted_at_the_temporary_name() {
        let bdev = uuid::Uuid::from_bytes([0x42; 16]);
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("ns1.json");
        let tmp = dir
            .path()
            .join(format!(".ns1.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let mut s = ReservationState::new(true);
        s.register(&A, 1, args_cptpl(RREGA_REGISTER, 3), 0, 10);
        write_ptpl_file(&path, &s, &bdev).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&tmp).is_err());
        let written: PtplRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written, s.to_record(&bdev));
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn ptpl_load_refuses_a_symlink_even_to_a_valid_file() {
        let bdev = uuid::Uuid::from_bytes([0x42; 16]);
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let mut s = ReservationState::new(true);
        s.register(&A, 1, args_cptpl(RREGA_REGISTER, 3), 0, 10);
        write_ptpl_file(&real, &s, &bdev).unwrap();
        assert_eq!(load_ptpl_file(&real, &bdev).unwrap().registrants().len(), 1);
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = load_ptpl_file(&link, &bdev).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn holder_unregister_releases_registrants_only_reservation_with_notice() {
        let mut s = ReservationState::default();
        assert!(s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10).changed);
        assert!(s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20).changed);
        assert_eq!(
            s.acquire(&A, args(RACQA_ACQUIRE, 3), 10, 0).status,
            Status::SUCCESS
        );
        let out = s.register(&A, 1, args(RREGA_UNREGISTER, 0), 10, 0);
        assert_eq!(out.status, Status::SUCCESS);
        assert_eq!(s.rtype(), ReservationType(0));
        assert_eq!(
            out.notices,
            vec![Notice {
                hostid: B,
                log_type: RESERVATION_LOG_RESERVATION_RELEASED
            }]
        );
        assert_eq!(s.generation(), 3);
    }

    #[test]
    fn all_registrants_reservation_survives_until_last_registrant_leaves() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        s.acquire(&B, args(RACQA_ACQUIRE, 5), 20, 0);
        assert!(s.is_holder(&A) && s.is_holder(&B));
        s.register(&B, 2, args(RREGA_UNREGISTER, 0), 20, 0);
        assert_eq!(s.rtype(), ReservationType::WRITE_EXCLUSIVE_ALL_REGS);
        assert!(s.is_holder(&A));
        s.register(&A, 1, args(RREGA_UNREGISTER, 0), 10, 0);
        assert_eq!(s.rtype(), ReservationType(0));
    }

    #[test]
    fn preempt_removes_every_registrant_with_the_holders_key() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&C, 3, args(RREGA_REGISTER, 0), 0, 30);
        s.acquire(&A, args(RACQA_ACQUIRE, 1), 10, 0);
        let out = s.acquire(&C, args(RACQA_PREEMPT, 2), 30, 10);
        assert_eq!(out.status, Status::SUCCESS);
        assert_eq!(out.preempted, vec![A, B]);
        assert_eq!(s.registrants().len(), 1);
        assert!(s.is_holder(&C));
        assert_eq!(s.rtype(), ReservationType::EXCLUSIVE_ACCESS);
        // A zero PRKEY against a holder of another key is a conflict.
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 11);
        assert_eq!(
            s.acquire(&A, args(RACQA_PREEMPT, 1), 11, 0).status,
            conflict()
        );
    }

    #[test]
    fn all_registrants_holder_preempted_by_key_is_fenced_and_holder_passes_on() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        assert!(s.acquire(&A, args(RACQA_ACQUIRE, 5), 10, 0).changed);
        let out = s.acquire(&B, args(RACQA_PREEMPT, 5), 20, 10);
        assert_eq!(out.status, Status::SUCCESS);
        assert_eq!(out.preempted, vec![A]);
        assert!(!s.is_registrant(&A));
        assert_eq!(s.rtype(), ReservationType::WRITE_EXCLUSIVE_ALL_REGS);
        assert_eq!(s.holder, Some(B));
        // A is no longer a registrant: Write Exclusive - All Registrants lets it read only.
        assert!(!s.allows(&A, NvmOpcode::WRITE, 0));
        assert!(!s.allows(&A, NvmOpcode::WRITE_ZEROES, 0));
        assert!(s.allows(&A, NvmOpcode::READ, 0));
        assert!(s.allows(&B, NvmOpcode::WRITE, 0));
    }

    #[test]
    fn all_registrants_holder_that_unregisters_loses_access_and_holder_passes_on() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        s.register(&C, 3, args(RREGA_REGISTER, 0), 0, 30);
        s.acquire(&A, args(RACQA_ACQUIRE, 6), 10, 0);
        let out = s.register(&A, 1, args(RREGA_UNREGISTER, 0), 10, 0);
        assert_eq!(out.status, Status::SUCCESS);
        assert_eq!(out.notices, Vec::new());
        assert_eq!(s.rtype(), ReservationType::EXCLUSIVE_ACCESS_ALL_REGS);
        assert_eq!(s.holder, Some(B));
        assert!(!s.allows(&A, NvmOpcode::READ, 0));
        assert!(!s.allows(&A, NvmOpcode::WRITE, 0));
        assert!(s.allows(&B, NvmOpcode::WRITE, 0) && s.allows(&C, NvmOpcode::READ, 0));
        // The new holder leaves too: the holder moves to C; the last one releases.
        s.register(&B, 2, args(RREGA_UNREGISTER, 0), 20, 0);
        assert_eq!(s.holder, Some(C));
        s.register(&C, 3, args(RREGA_UNREGISTER, 0), 30, 0);
        assert_eq!((s.rtype(), s.holder), (ReservationType(0), None));
        assert!(s.allows(&A, NvmOpcode::WRITE, 0));
    }

    #[test]
    fn self_preempt_into_all_registrants_type_then_preempted_holder_is_fenced() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        s.acquire(&A, args(RACQA_ACQUIRE, 1), 10, 0);
        // The holder preempts itself into Write Exclusive - All Registrants.
        let out = s.acquire(&A, args(RACQA_PREEMPT, 5), 10, 10);
        assert_eq!(out.status, Status::SUCCESS);
        assert_eq!(s.rtype(), ReservationType::WRITE_EXCLUSIVE_ALL_REGS);
        assert!(s.is_holder(&A) && s.is_holder(&B));
        // B removes A by its key: A must lose write access.
        let out = s.acquire(&B, args(RACQA_PREEMPT, 5), 20, 10);
        assert_eq!(out.preempted, vec![A]);
        assert_eq!(s.holder, Some(B));
        assert!(!s.allows(&A, NvmOpcode::WRITE, 0));
        assert!(s.allows(&B, NvmOpcode::WRITE, 0));
        // In a single-holder type, a holder that is no longer registered never passes.
        let mut t = ReservationState::default();
        t.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        t.acquire(&A, args(RACQA_ACQUIRE, 2), 10, 0);
        t.register(&A, 1, args(RREGA_UNREGISTER, 0), 10, 0);
        assert_eq!((t.rtype(), t.holder), (ReservationType(0), None));
    }

    #[test]
    fn access_table_for_non_holders() {
        // (type, registrant read, registrant write, other read, other write)
        let table = [
            (1, true, false, true, false),
            (2, false, false, false, false),
            (3, true, true, true, false),
            (4, true, true, false, false),
            (5, true, true, true, false),
            (6, true, true, false, false),
        ];
        for (t, rr, rw, or, ow) in table {
            let mut s = ReservationState::default();
            s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
            s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
            assert!(
                s.acquire(&A, args(RACQA_ACQUIRE, t), 10, 0).changed,
                "type {t}"
            );
            assert!(s.allows(&A, NvmOpcode::WRITE, 0) && s.allows(&A, NvmOpcode::READ, 0));
            assert_eq!(
                s.allows(&B, NvmOpcode::READ, 0),
                rr,
                "type {t} registrant read"
            );
            assert_eq!(
                s.allows(&B, NvmOpcode::WRITE, 0),
                rw,
                "type {t} registrant write"
            );
            assert_eq!(s.allows(&C, NvmOpcode::READ, 0), or, "type {t} other read");
            assert_eq!(
                s.allows(&C, NvmOpcode::WRITE, 0),
                ow,
                "type {t} other write"
            );
            assert_eq!(s.allows(&C, NvmOpcode::COPY, 0), ow, "type {t} other copy");
        }
    }
    #[test]
    fn all_registrants_preempt_with_zero_key_takes_over_with_the_new_type() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        s.register(&C, 3, args(RREGA_REGISTER, 0), 0, 30);
        s.acquire(&A, args(RACQA_ACQUIRE, 6), 10, 0);
        let out = s.acquire(&B, args(RACQA_PREEMPT, 1), 20, 0);
        assert_eq!(out.status, Status::SUCCESS);
        assert_eq!(out.preempted, vec![A, C]);
        assert_eq!(s.rtype(), ReservationType::WRITE_EXCLUSIVE);
        assert!(s.is_holder(&B) && !s.is_registrant(&A));
        // A non-zero PRKEY that matches nobody is a conflict in the all-registrants types.
        s.release(&B, args(RRELA_RELEASE, 1), 20);
        s.acquire(&B, args(RACQA_ACQUIRE, 5), 20, 0);
        assert_eq!(
            s.acquire(&B, args(RACQA_PREEMPT, 5), 20, 99).status,
            conflict()
        );
    }

    #[test]
    fn releasing_write_exclusive_or_exclusive_access_notifies_nobody() {
        for (t, notified) in [
            (1u8, false),
            (2, false),
            (3, true),
            (4, true),
            (5, true),
            (6, true),
        ] {
            let mut s = ReservationState::default();
            s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
            s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
            s.acquire(&A, args(RACQA_ACQUIRE, t), 10, 0);
            let out = s.release(&A, args(RRELA_RELEASE, t), 10);
            assert_eq!(out.status, Status::SUCCESS, "type {t}");
            assert_eq!(s.rtype(), ReservationType(0), "type {t}");
            let expect = if notified {
                vec![Notice {
                    hostid: B,
                    log_type: RESERVATION_LOG_RESERVATION_RELEASED,
                }]
            } else {
                Vec::new()
            };
            assert_eq!(out.notices, expect, "type {t}");
        }
    }

    #[test]
    fn reservation_commands_of_non_holders_are_checked_like_spdk() {
        let mut s = ReservationState::default();
        s.register(&A, 1, args(RREGA_REGISTER, 0), 0, 10);
        s.register(&B, 2, args(RREGA_REGISTER, 0), 0, 20);
        s.acquire(&A, args(RACQA_ACQUIRE, 1), 10, 0);
        let acq = |action: u8| u32::from(action);
        assert!(!s.allows(&B, NvmOpcode::RESERVATION_ACQUIRE, acq(RACQA_ACQUIRE)));
        assert!(s.allows(&B, NvmOpcode::RESERVATION_ACQUIRE, acq(RACQA_PREEMPT)));
        assert!(!s.allows(&C, NvmOpcode::RESERVATION_ACQUIRE, acq(RACQA_PREEMPT)));
        assert!(s.allows(&B, NvmOpcode::RESERVATION_RELEASE, 0));
        assert!(!s.allows(&C, NvmOpcode::RESERVATION_RELEASE, 0));
        assert!(s.allows(&C, NvmOpcode::RESERVATION_REGISTER, 0));
        assert!(s.allows(&C, NvmOpcode::RESERVATION_REPORT, 0));
    }
}
