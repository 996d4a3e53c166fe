//! Subsystems, namespaces, hosts and listeners (SPDK `lib/nvmf/subsystem.c`).
//!
//! The configuration lives on the app thread in [`Subsystem`]. Each change produces a new
//! immutable snapshot that the target sends to every poll group by message, so the I/O
//! path reads only its own poll group's copy and takes no lock.
//!
//! Namespace masking (SPDK `no_auto_visible`, `nvmf_ns_add_host`): a namespace added with
//! `no_auto_visible` is visible only to the host NQNs in [`Namespace::hosts`]. Visibility is
//! a function of the snapshot and the controller's host NQN; each I/O queue pair caches the
//! namespaces its host sees once per configuration generation, so a hidden namespace is
//! simply absent on the I/O path, and admin commands look namespaces up through the same
//! rule.
//!
//! Asymmetric Namespace Access (subsystems with `ana_reporting`): every [`Listener`] keeps
//! an [`AnaState`] per ANA group. A controller reads the states of the listener its admin
//! queue connected through: the ANA log page, Identify Namespace NUSE, the I/O path (an
//! Inaccessible group answers Path Related Status "Asymmetric Access Inaccessible") and
//! the ANA change notice raised when an update changes one of them.

use crate::NvmfError;
use crate::ctrlr::CtrlrTable;
use crate::reservation::ReservationState;
use crate::transport::{DiscoverInfo, ListenAddr};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// SPDK's default serial number (`nvmf_create_subsystem` without `serial_number`).
pub const DEFAULT_SERIAL: &str = "00000000000000000000";
/// SPDK's default model number.
pub const DEFAULT_MODEL: &str = "SPDK bdev Controller";
/// Namespaces of a subsystem created with `max_namespaces` 0 (SPDK
/// `NVMF_SUBSYSTEM_DEFAULT_NAMESPACES`).
pub const DEFAULT_MAX_NAMESPACES: u32 = 32;
/// Largest `max_namespaces` accepted. Tables sized by it are built per listener and per
/// controller and walked by RPCs, so a huge value (the field is a u32) would let one RPC or
/// config line allocate gigabytes; SPDK bounds it only by its calloc failing, the Linux target
/// at 1024.
pub const MAX_NAMESPACES_LIMIT: u32 = 65536;
/// Smallest dynamic controller ID.
pub const MIN_CNTLID: u16 = 0x0001;
/// Largest dynamic controller ID (NVMe: 0xFFF0.. are reserved).
pub const MAX_CNTLID: u16 = 0xffef;
/// Serial number field length in bytes (Identify Controller SN).
pub const SN_MAX_LEN: usize = 20;
/// Model number field length in bytes (Identify Controller MN).
pub const MN_MAX_LEN: usize = 40;

/// Subsystem type as `nvmf_get_subsystems` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SubType {
    /// The discovery subsystem.
    Discovery,
    /// An NVM subsystem.
    #[serde(rename = "NVMe")]
    Nvme,
}

/// Subsystem states (SPDK `spdk_nvmf_subsystem_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsystemState {
    /// Created, not started: Connect is not accepted.
    Inactive,
    /// Serving I/O.
    Active,
    /// Paused: new commands wait until resume.
    Paused,
}

/// One namespace (SPDK `spdk_nvmf_ns`).
#[derive(Clone)]
pub struct Namespace {
    /// Namespace ID (1-based).
    pub nsid: u32,
    /// Name of the backing bdev.
    pub bdev_name: String,
    /// UUID reported in the NS ID descriptor list.
    pub uuid: uuid::Uuid,
    /// NGUID (16 bytes).
    pub nguid: [u8; 16],
    /// EUI-64, all zero when not set.
    pub eui64: [u8; 8],
    /// ANA group ID.
    pub anagrpid: u32,
    /// Hidden from controllers until `nvmf_ns_add_host` (SPDK `!ns->always_visible`).
    pub no_auto_visible: bool,
    /// Host NQNs this namespace is visible to when `no_auto_visible` (`nvmf_ns_add_host`),
    /// in the order added.
    pub hosts: Vec<String>,
    /// Whether the UUID, NGUID and EUI-64 were given explicitly (save_config prints them).
    pub explicit_ids: (bool, bool, bool),
    /// Where the reservation state persists through power loss (SPDK `ptpl_file`), as
    /// given; `None` when the namespace is not PTPL capable.
    pub ptpl_file: Option<std::path::PathBuf>,
    /// The open, claimed descriptor every poll group gets its channel from.
    pub(crate) desc: Arc<bdev::Desc>,
    /// Registrants and reservation, changed only on the app thread (see [`crate::reservation`]).
    pub(crate) resv: ReservationState,
}

impl Namespace {
    /// True when a controller of host `hostnqn` sees this namespace (SPDK
    /// `nvmf_ctrlr_init_visible_ns`: always visible, or the host was added to it).
    pub fn visible_to(&self, hostnqn: &str) -> bool {
        !self.no_auto_visible || self.hosts.iter().any(|h| h == hostnqn)
    }

    /// The namespace's reservation state (registrants, holder, type, generation).
    pub fn reservation(&self) -> &ReservationState {
        &self.resv
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("nsid", &self.nsid)
            .field("bdev_name", &self.bdev_name)
            .finish()
    }
}

/// Asymmetric Namespace Access states a listener reports per ANA group (NVMe Base 2.0,
/// 8.1.3; the three SPDK's `nvmf_subsystem_listener_set_ana_state` accepts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnaState {
    /// Optimized (01h): the preferred path.
    #[default]
    Optimized,
    /// Non-Optimized (02h): serves I/O, not preferred.
    NonOptimized,
    /// Inaccessible (03h): I/O fails with Asymmetric Access Inaccessible.
    Inaccessible,
}

impl AnaState {
    /// The state's code in the ANA log page.
    pub fn code(self) -> u8 {
        match self {
            AnaState::Optimized => 0x01,
            AnaState::NonOptimized => 0x02,
            AnaState::Inaccessible => 0x03,
        }
    }

    /// SPDK's name ("optimized", "non_optimized", "inaccessible").
    pub fn name(self) -> &'static str {
        match self {
            AnaState::Optimized => "optimized",
            AnaState::NonOptimized => "non_optimized",
            AnaState::Inaccessible => "inaccessible",
        }
    }

    /// Parses SPDK's name, ignoring case (SPDK `rpc_ana_state_parse`).
    pub fn parse(s: &str) -> Option<AnaState> {
        [
            AnaState::Optimized,
            AnaState::NonOptimized,
            AnaState::Inaccessible,
        ]
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(s))
    }
}

/// A listener of a subsystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Its address.
    pub addr: ListenAddr,
    /// TLS required.
    pub secure_channel: bool,
    /// ANA state of each ANA group (index = ANAGRPID - 1, `max_nsid` entries) for
    /// controllers connected through this listener (SPDK `listener->ana_state`).
    pub ana_states: Vec<AnaState>,
    /// State of the groups past the end of `ana_states` (a subsystem without
    /// `max_namespaces` grows its `max_nsid`): the state the listener was added with, or the
    /// last one set for every group at once.
    pub default_ana_state: AnaState,
}

impl Listener {
    /// The ANA state of group `anagrpid` on this listener: its entry in `ana_states`,
    /// `default_ana_state` past the end of the table, Inaccessible for group 0 (no
    /// namespace is in it).
    pub fn ana_state(&self, anagrpid: u32) -> AnaState {
        let Some(i) = anagrpid.checked_sub(1) else {
            tracing::warn!(addr = %self.addr, "ANA state asked for group 0: inaccessible");
            return AnaState::Inaccessible;
        };
        self.ana_states
            .get(i as usize)
            .copied()
            .unwrap_or(self.default_ana_state)
    }
}

/// The DH-HMAC-CHAP keys of one host of a subsystem (keys of the [`crate::keyring`]).
#[derive(Clone, Debug, Default)]
pub struct HostKeys {
    /// The key the host proves it knows (`dhchap_key`); authentication is required when set.
    pub dhchap_key: Option<Arc<crate::keyring::Key>>,
    /// The key the controller proves it knows when the host asks (`dhchap_ctrlr_key`,
    /// bidirectional authentication).
    pub dhchap_ctrlr_key: Option<Arc<crate::keyring::Key>>,
}

/// A subsystem's configuration (SPDK `spdk_nvmf_subsystem`), owned by the app thread.
#[derive(Debug)]
pub struct Subsystem {
    /// Subsystem NQN.
    pub nqn: String,
    /// Discovery or NVMe.
    pub subtype: SubType,
    /// Current state.
    pub state: SubsystemState,
    /// Serial number (at most 20 printable ASCII bytes).
    pub serial_number: String,
    /// Model number (at most 40 printable ASCII bytes).
    pub model_number: String,
    /// Namespace slots (NN).
    pub max_namespaces: u32,
    /// Lowest controller ID handed out.
    pub min_cntlid: u16,
    /// Highest controller ID handed out.
    pub max_cntlid: u16,
    /// Any host may connect.
    pub allow_any_host: bool,
    /// Hosts allowed to connect when `allow_any_host` is false.
    pub hosts: Vec<String>,
    /// DH-HMAC-CHAP keys of the hosts that have them (`nvmf_subsystem_add_host`
    /// `dhchap_key` / `dhchap_ctrlr_key`), by host NQN. Shared with the poll group snapshots,
    /// so a key's reference count is 1 (the ring) + the hosts that name it, as SPDK's.
    pub host_keys: BTreeMap<String, Arc<HostKeys>>,
    /// Listeners, in the order added.
    pub listeners: Vec<Listener>,
    /// Namespaces by NSID.
    pub namespaces: BTreeMap<u32, Namespace>,
    /// ANA reporting enabled.
    pub ana_reporting: bool,
    /// ANA change count: incremented by every ANA state change on any listener (ANA log
    /// page CHGCNT).
    pub ana_change_count: u64,
    pub(crate) ctrlrs: Arc<Mutex<CtrlrTable>>,
}

impl Subsystem {
    /// A new inactive subsystem with SPDK's defaults.
    pub fn new(nqn: &str, subtype: SubType) -> Subsystem {
        Subsystem {
            nqn: nqn.to_string(),
            subtype,
            state: SubsystemState::Inactive,
            serial_number: DEFAULT_SERIAL.to_string(),
            model_number: DEFAULT_MODEL.to_string(),
            max_namespaces: 0,
            min_cntlid: MIN_CNTLID,
            max_cntlid: MAX_CNTLID,
            allow_any_host: subtype == SubType::Discovery,
            hosts: Vec::new(),
            host_keys: BTreeMap::new(),
            listeners: Vec::new(),
            namespaces: BTreeMap::new(),
            ana_reporting: false,
            ana_change_count: 0,
            ctrlrs: Arc::new(Mutex::new(CtrlrTable::default())),
        }
    }

    /// Largest NSID this subsystem can hold (`max_namespaces`, or the highest NSID in use when
    /// unlimited).
    pub fn max_nsid(&self) -> u32 {
        if self.max_namespaces > 0 {
            self.max_namespaces
        } else {
            self.namespaces
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0)
                .max(1024)
        }
    }

    /// True when `hostnqn` may connect (SPDK `spdk_nvmf_subsystem_host_allowed`).
    pub fn host_allowed(&self, hostnqn: &str) -> bool {
        self.allow_any_host || self.hosts.iter().any(|h| h == hostnqn)
    }

    /// Picks the NSID for a new namespace: `requested` if free and in range, else the lowest
    /// free one (SPDK `spdk_nvmf_subsystem_add_ns_ext`).
    pub fn pick_nsid(&self, requested: u32) -> Result<u32, NvmfError> {
        let max = if self.max_namespaces > 0 {
            self.max_namespaces
        } else {
            u32::MAX - 1
        };
        if requested != 0 {
            if requested > max {
                return Err(NvmfError::InvalidParam(format!(
                    "Requested NSID {requested} too large"
                )));
            }
            if self.namespaces.contains_key(&requested) {
                return Err(NvmfError::Exists(format!(
                    "Requested NSID {requested} already in use"
                )));
            }
            return Ok(requested);
        }
        (1..=max)
            .find(|n| !self.namespaces.contains_key(n))
            .ok_or_else(|| NvmfError::NoSpace("no free namespace ID".into()))
    }

    /// Makes namespace `nsid` visible (`visible` true) or invisible to host `hostnqn` (SPDK
    /// `nvmf_ns_visible`): the host NQN must be valid, `nsid` in `1..=max_nsid` and in use,
    /// and the namespace must have been added with `no_auto_visible`. Adding a host twice
    /// or removing one that was never added succeeds without change, as in SPDK.
    pub fn set_ns_visible(
        &mut self,
        nsid: u32,
        hostnqn: &str,
        visible: bool,
    ) -> Result<(), NvmfError> {
        nvme::spec::nqn::validate_nqn(hostnqn)
            .map_err(|e| NvmfError::InvalidParam(format!("host NQN {hostnqn}: {e}")))?;
        if self.subtype == SubType::Discovery || nsid == 0 || nsid > self.max_nsid() {
            return Err(NvmfError::InvalidParam(format!("Invalid NSID {nsid}")));
        }
        let ns = self
            .namespaces
            .get_mut(&nsid)
            .ok_or_else(|| NvmfError::NotFound(format!("namespace {nsid} does not exist")))?;
        if !ns.no_auto_visible {
            return Err(NvmfError::NotPermitted(format!(
                "namespace {nsid} is visible to every host (no_auto_visible is false)"
            )));
        }
        let pos = ns.hosts.iter().position(|h| h == hostnqn);
        match (visible, pos) {
            (true, None) => ns.hosts.push(hostnqn.to_string()),
            (false, Some(i)) => {
                ns.hosts.remove(i);
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets the ANA state of group `anagrpid` (every group when 0) on the listener at
    /// `addr` (SPDK `spdk_nvmf_subsystem_set_ana_state`): needs `ana_reporting`, an
    /// `anagrpid` of at most `max_nsid` and an existing listener. True when a state changed.
    pub fn set_ana_state(
        &mut self,
        addr: &ListenAddr,
        state: AnaState,
        anagrpid: u32,
    ) -> Result<bool, NvmfError> {
        if !self.ana_reporting {
            return Err(NvmfError::InvalidParam(format!(
                "ANA reporting is disabled on {}",
                self.nqn
            )));
        }
        let max = self.max_nsid();
        if anagrpid > max {
            return Err(NvmfError::InvalidParam(format!(
                "ANA group ID {anagrpid} is more than maximum {max}"
            )));
        }
        let l = self
            .listeners
            .iter_mut()
            .find(|l| l.addr.same_as(addr))
            .ok_or_else(|| NvmfError::InvalidParam(format!("Unable to find listener {addr}")))?;
        l.ana_states.resize(max as usize, l.default_ana_state);
        if anagrpid == 0 {
            l.default_ana_state = state;
        }
        let mut changed = false;
        for (i, s) in l.ana_states.iter_mut().enumerate() {
            if (anagrpid == 0 || i + 1 == anagrpid as usize) && *s != state {
                *s = state;
                changed = true;
            }
        }
        if changed {
            self.ana_change_count = self.ana_change_count.wrapping_add(1);
        }
        Ok(changed)
    }

    /// Validates and sets the serial number (SPDK: at most 20 printable ASCII characters).
    pub fn set_sn(&mut self, sn: &str) -> Result<(), NvmfError> {
        check_ascii(sn, SN_MAX_LEN, "serial_number")?;
        self.serial_number = sn.to_string();
        Ok(())
    }

    /// Validates and sets the model number (SPDK: at most 40 printable ASCII characters).
    pub fn set_mn(&mut self, mn: &str) -> Result<(), NvmfError> {
        check_ascii(mn, MN_MAX_LEN, "model_number")?;
        self.model_number = mn.to_string();
        Ok(())
    }

    pub(crate) fn snapshot(&self, listeners: Vec<(Listener, DiscoverInfo)>) -> SubsysSnap {
        SubsysSnap {
            nqn: self.nqn.clone(),
            subtype: self.subtype,
            state: self.state,
            serial_number: self.serial_number.clone(),
            model_number: self.model_number.clone(),
            max_nsid: self.max_nsid(),
            min_cntlid: self.min_cntlid,
            max_cntlid: self.max_cntlid,
            allow_any_host: self.allow_any_host,
            hosts: self.hosts.clone(),
            host_keys: self.host_keys.clone(),
            listeners,
            namespaces: self
                .namespaces
                .values()
                .map(|ns| (ns.nsid, Arc::new(ns.clone())))
                .collect(),
            ana_reporting: self.ana_reporting,
            ana_change_count: self.ana_change_count,
            ctrlrs: self.ctrlrs.clone(),
        }
    }
}

fn check_ascii(s: &str, max: usize, what: &str) -> Result<(), NvmfError> {
    if s.len() > max {
        return Err(NvmfError::InvalidParam(format!(
            "{what} '{s}' is longer than {max} characters"
        )));
    }
    if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(NvmfError::InvalidParam(format!(
            "{what} '{s}' has characters outside printable ASCII"
        )));
    }
    Ok(())
}

/// Immutable copy of a subsystem that poll groups read (sent by message on every change).
#[derive(Debug)]
pub(crate) struct SubsysSnap {
    pub nqn: String,
    pub subtype: SubType,
    pub state: SubsystemState,
    pub serial_number: String,
    pub model_number: String,
    pub max_nsid: u32,
    pub min_cntlid: u16,
    pub max_cntlid: u16,
    pub allow_any_host: bool,
    pub hosts: Vec<String>,
    pub host_keys: BTreeMap<String, Arc<HostKeys>>,
    pub listeners: Vec<(Listener, DiscoverInfo)>,
    pub namespaces: BTreeMap<u32, Arc<Namespace>>,
    pub ana_reporting: bool,
    pub ana_change_count: u64,
    pub ctrlrs: Arc<Mutex<CtrlrTable>>,
}

impl SubsysSnap {
    /// Namespace `nsid` if host `hostnqn` sees it (SPDK `nvmf_ctrlr_get_ns`): an invisible
    /// namespace is treated exactly as an inactive NSID.
    pub fn visible_ns(&self, hostnqn: &str, nsid: u32) -> Option<&Arc<Namespace>> {
        self.namespaces
            .get(&nsid)
            .filter(|ns| ns.visible_to(hostnqn))
    }

    /// The namespaces host `hostnqn` sees, by NSID.
    pub fn visible_namespaces(&self, hostnqn: &str) -> BTreeMap<u32, Arc<Namespace>> {
        self.namespaces
            .iter()
            .filter(|(_, ns)| ns.visible_to(hostnqn))
            .map(|(n, ns)| (*n, ns.clone()))
            .collect()
    }

    /// NSIDs host `hostnqn` sees.
    pub fn visible_nsids(&self, hostnqn: &str) -> BTreeSet<u32> {
        self.namespaces
            .iter()
            .filter(|(_, ns)| ns.visible_to(hostnqn))
            .map(|(n, _)| *n)
            .collect()
    }

    pub fn host_allowed(&self, hostnqn: &str) -> bool {
        self.allow_any_host || self.hosts.iter().any(|h| h == hostnqn)
    }

    /// ANA state of group `anagrpid` for a controller connected through `listen` (SPDK
    /// `nvmf_ctrlr_get_ana_state`): Optimized without ANA reporting or when the transport
    /// did not record the listen address; Inaccessible when that listener is gone.
    pub fn ana_state(&self, listen: Option<&ListenAddr>, anagrpid: u32) -> AnaState {
        if !self.ana_reporting {
            return AnaState::Optimized;
        }
        let Some(addr) = listen else {
            return AnaState::Optimized;
        };
        match self.listeners.iter().find(|(l, _)| l.addr.same_as(addr)) {
            Some((l, _)) => l.ana_state(anagrpid),
            None => AnaState::Inaccessible,
        }
    }

    /// The ANA states of every group for a controller connected through `listen`.
    pub fn ana_states(&self, listen: Option<&ListenAddr>) -> Vec<AnaState> {
        (1..=self.max_nsid)
            .map(|g| self.ana_state(listen, g))
            .collect()
    }

    pub fn is_discovery(&self) -> bool {
        self.subtype == SubType::Discovery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_longer_than_20_is_refused() {
        let mut s = Subsystem::new("nqn.2016-06.io.spdk:cnode1", SubType::Nvme);
        assert!(s.set_sn("012345678901234567890").is_err());
        s.set_sn("SPDK001").unwrap();
        assert_eq!(s.serial_number, "SPDK001");
        assert!(s.set_mn("bad\u{7}").is_err());
    }

    #[test]
    fn ana_groups_past_the_listener_table_take_its_default_state_not_optimized() {
        let mut s = Subsystem::new("nqn.2016-06.io.spdk:cnode1", SubType::Nvme);
        s.ana_reporting = true;
        s.max_namespaces = 2;
        let addr = ListenAddr::tcp("127.0.0.1", "4420");
        s.listeners.push(Listener {
            addr: addr.clone(),
            secure_channel: false,
            ana_states: vec![AnaState::Inaccessible; 2],
            default_ana_state: AnaState::Inaccessible,
        });
        let l = &s.listeners[0];
        assert_eq!(l.ana_state(2), AnaState::Inaccessible);
        assert_eq!(l.ana_state(3), AnaState::Inaccessible);
        assert_eq!(l.ana_state(0), AnaState::Inaccessible);
        // Every group set at once: groups the table does not hold yet follow.
        assert!(s.set_ana_state(&addr, AnaState::NonOptimized, 0).unwrap());
        assert_eq!(s.listeners[0].ana_state(7), AnaState::NonOptimized);
        // One group set after max_nsid grew: the new entries keep the default, not Optimized.
        s.max_namespaces = 4;
        assert!(s.set_ana_state(&addr, AnaState::Optimized, 1).unwrap());
        assert_eq!(
            s.listeners[0].ana_states,
            vec![
                AnaState::Optimized,
                AnaState::NonOptimized,
                AnaState::NonOptimized,
                AnaState::NonOptimized
            ]
        );
        assert_eq!(s.listeners[0].default_ana_state, AnaState::NonOptimized);
    }
}
