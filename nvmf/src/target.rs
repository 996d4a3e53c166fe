//! The NVMe-oF target (SPDK `spdk_nvmf_tgt`, `lib/nvmf/nvmf.c`) and the app glue
//! (SPDK `module/event/subsystems/nvmf/nvmf_tgt.c`).
//!
//! [`Target`] lives on the app thread: options, transports, subsystems, referrals and the list
//! of poll group Threads. Every configuration change rebuilds an immutable snapshot and sends
//! it to each poll group by message (SPDK's pause / update / resume, done at once per poll
//! group); the change's completion callback runs on the app thread once every poll group has
//! applied it.

use crate::NvmfError;
use crate::poll_group::{self, PollGroupRef, ReferralSnap, TargetSnap};
use crate::reservation::{HostId, Notice, ResvCommand};
use crate::subsystem::{AnaState, Listener, Namespace, SubType, Subsystem, SubsystemState};
use crate::transport::{AnyTransport, ListenAddr, Transport, TransportOpts};
use env::{Poller, ThreadHandle};
use nvme::spec::nqn::{DISCOVERY_NQN, validate_nqn};
use nvme::spec::{GenericStatus, Status};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default `max_subsystems` (SPDK `SPDK_NVMF_DEFAULT_MAX_SUBSYSTEMS`).
pub const DEFAULT_MAX_SUBSYSTEMS: u32 = 1024;
/// Largest `max_subsystems` `nvmf_set_max_subsystems` accepts (SPDK takes any u32; every
/// configuration change here copies the whole subsystem table, so the count is bounded).
pub const MAX_MAX_SUBSYSTEMS: u32 = 16_384;

/// `admin_cmd_passthru` of `nvmf_set_config`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminCmdPassthru {
    /// Forward Identify Controller to the backing NVMe (not supported by this target).
    pub identify_ctrlr: bool,
    /// Forward vendor-specific admin commands (not supported by this target).
    pub vendor_specific: bool,
}

/// Target options (`nvmf_set_config`, `nvmf_set_max_subsystems`, `nvmf_set_crdt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOpts {
    /// Subsystems the target may hold.
    pub max_subsystems: u32,
    /// Discovery filter ("match_any" or a combination of transport/address/svcid).
    pub discovery_filter: String,
    /// Admin passthrough switches.
    pub admin_cmd_passthru: AdminCmdPassthru,
    /// DH-HMAC-CHAP digests allowed.
    pub dhchap_digests: Vec<String>,
    /// DH-HMAC-CHAP groups allowed.
    pub dhchap_dhgroups: Vec<String>,
    /// Command retry delay times (CRDT1..3, 100 ms units).
    pub crdt: [u16; 3],
}

impl Default for TargetOpts {
    fn default() -> Self {
        TargetOpts {
            max_subsystems: DEFAULT_MAX_SUBSYSTEMS,
            discovery_filter: "match_any".into(),
            admin_cmd_passthru: AdminCmdPassthru::default(),
            dhchap_digests: ["sha256", "sha384", "sha512"].map(String::from).to_vec(),
            dhchap_dhgroups: [
                "null",
                "ffdhe2048",
                "ffdhe3072",
                "ffdhe4096",
                "ffdhe6144",
                "ffdhe8192",
            ]
            .map(String::from)
            .to_vec(),
            crdt: [0; 3],
        }
    }
}

/// Parameters of [`Target::add_ns_ext`] (SPDK `nvmf_subsystem_add_ns` `namespace`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NsOpts {
    /// Name of the bdev to expose.
    pub bdev_name: String,
    /// Requested NSID, 0 for the lowest free one.
    pub nsid: u32,
    /// UUID (the bdev's when `None`).
    pub uuid: Option<uuid::Uuid>,
    /// NGUID (the UUID's bytes when `None`).
    pub nguid: Option<[u8; 16]>,
    /// EUI-64 (zero when `None`).
    pub eui64: Option<[u8; 8]>,
    /// ANA group ID, 0 for the NSID.
    pub anagrpid: u32,
    /// Hidden until `nvmf_ns_add_host`.
    pub no_auto_visible: bool,
    /// Reservation persistence file (SPDK `ptpl_file`).
    pub ptpl_file: Option<std::path::PathBuf>,
}

/// A discovery referral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referral {
    /// Where the other discovery service listens.
    pub addr: ListenAddr,
    /// Its subsystem NQN (the discovery NQN unless given).
    pub subnqn: String,
    /// TLS required.
    pub secure_channel: bool,
}

type Factory = Box<dyn Fn(TransportOpts) -> Result<Box<dyn AnyTransport>, NvmfError>>;

pub(crate) struct TargetInner {
    pub id: u64,
    pub name: String,
    pub app_thread: ThreadHandle,
    pub opts: RefCell<TargetOpts>,
    factories: RefCell<HashMap<String, Factory>>,
    pub transports: RefCell<Vec<Box<dyn AnyTransport>>>,
    pub subsystems: RefCell<Vec<Subsystem>>,
    pub referrals: RefCell<Vec<Referral>>,
    pub poll_groups: RefCell<Vec<ThreadHandle>>,
    genctr: Cell<u64>,
    next_pg: Cell<usize>,
    acceptor: RefCell<Option<Poller>>,
}

/// The NVMe-oF target, owned by the app thread (`!Send`; clones share it).
#[derive(Clone)]
pub struct Target(pub(crate) Rc<TargetInner>);

static NEXT_TGT_ID: AtomicU64 = AtomicU64::new(1);

/// Acknowledgements still expected and what runs after the last one.
type Pending = (usize, Box<dyn FnOnce()>);

thread_local! {
    static PENDING: RefCell<HashMap<u64, Pending>> = RefCell::new(HashMap::new());
}
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static TARGETS: RefCell<HashMap<u64, std::rc::Weak<TargetInner>>> = RefCell::new(HashMap::new());
}

/// A namespace's bdev is going away (SPDK `nvmf_ns_event` on `SPDK_BDEV_EVENT_REMOVE`): remove
/// the namespace, which closes the descriptor once the poll groups drop their channels.
fn hot_remove(tgt_id: u64, nqn: &str, nsid: u32) {
    let Some(inner) = TARGETS.with(|t| t.borrow().get(&tgt_id).and_then(std::rc::Weak::upgrade))
    else {
        return;
    };
    let t = Target(inner);
    match t.remove_ns(nqn, nsid) {
        Ok(()) => {
            tracing::info!(nqn, nsid, "bdev removed: namespace removed");
            t.update(|| {});
        }
        Err(e) => tracing::debug!(nqn, nsid, error = %e, "bdev removal: namespace already gone"),
    }
}

/// How long preempt-and-abort waits for the preempted hosts' I/O (SPDK
/// `NS_RESERVATION_IO_WAIT_TIMEOUT_S`).
pub(crate) const PREEMPT_ABORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between two checks of the preempted hosts' I/O (SPDK
/// `NS_RESERVATION_IO_WAIT_CHECK_INTERVAL`, 100 µs).
const PREEMPT_ABORT_CHECK_INTERVAL: Duration = Duration::from_micros(100);

/// Completion callback of a reservation command, run on the app thread.
type ResvAnswer = Box<dyn FnOnce(Status)>;

/// Runs a state-changing reservation command on the app thread (SPDK
/// `nvmf_ns_reservation_request` on the subsystem's thread). Commands run one at a time in
/// arrival order; a command that changed the state completes only once every poll group
/// has the new snapshot (SPDK `nvmf_subsystem_update_ns`), and notifications reach the
/// poll groups before that snapshot.
pub(crate) fn reservation_on_app(tgt_id: u64, cmd: ResvCommand, reply: ThreadHandle, token: u64) {
    let answer: ResvAnswer = Box::new(move |status: Status| {
        let r = reply.send_msg(move || {
            poll_group::with_pg(tgt_id, |pg| pg.finish_parked(token, status, 0));
        });
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot complete a reservation command on its poll group");
        }
    });
    let Some(inner) = TARGETS.with(|t| t.borrow().get(&tgt_id).and_then(std::rc::Weak::upgrade))
    else {
        answer(GenericStatus::INTERNAL_DEVICE_ERROR.into());
        return;
    };
    let t = Target(inner);
    let out = t.with_subsystem(&cmd.subnqn, |s| {
        s.namespaces.get_mut(&cmd.nsid).map(|ns| {
            let mut out = cmd.apply(&mut ns.resv);
            // SPDK `nvmf_ns_reservation_update_state`: the file follows every change while
            // persistence is on, and every Register change (CPTPL=2 empties it).
            let persist = out.changed
                && (ns.resv.ptpl() || cmd.opc == nvme::spec::NvmOpcode::RESERVATION_REGISTER);
            if persist && let Err(e) = persist_ns(ns) {
                tracing::error!(nsid = cmd.nsid, error = %e, "cannot write the ptpl_file");
                out.status = GenericStatus::INTERNAL_DEVICE_ERROR.into();
            }
            out
        })
    });
    let Ok(Some(out)) = out else {
        tracing::error!(nsid = cmd.nsid, subnqn = %cmd.subnqn, "reservation command for a namespace that is gone");
        answer(Status::from(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).with_dnr());
        return;
    };
    tracing::debug!(
        nsid = cmd.nsid,
        opc = cmd.opc.0,
        action = cmd.args.action,
        status = %out.status,
        changed = out.changed,
        "reservation command"
    );
    if !out.notices.is_empty() {
        t.send_reservation_notices(&cmd.subnqn, cmd.nsid, out.notices.clone());
    }
    if !out.changed {
        answer(out.status);
        return;
    }
    let status = out.status;
    let wait = cmd.is_preempt_and_abort() && !out.preempted.is_empty();
    let t2 = t.clone();
    t.update(move || {
        if wait {
            let w = Rc::new(PreemptWait {
                nqn: cmd.subnqn,
                nsid: cmd.nsid,
                hosts: out.preempted,
                deadline: env::now() + PREEMPT_ABORT_TIMEOUT,
                answer: RefCell::new(Some(answer)),
                poller: RefCell::new(None),
            });
            t2.check_preempted_io(w);
        } else {
            answer(status);
        }
    });
}

/// Writes the reservation state of a PTPL capable namespace to its `ptpl_file` (nothing
/// to do without one).
pub(crate) fn persist_ns(ns: &Namespace) -> std::io::Result<()> {
    match &ns.ptpl_file {
        Some(path) => crate::reservation::write_ptpl_file(path, &ns.resv, &ns.desc.bdev().uuid()),
        None => Ok(()),
    }
}

/// Answer of a command run on the app thread: completion status and DW0.
pub(crate) type AppAnswer = Box<dyn FnOnce(Status, u32)>;
/// A command's work on the app thread (see [`crate::PollGroupRef`]'s `send_app_call`).
pub(crate) type AppCall = Box<dyn FnOnce(&Target, AppAnswer) + Send>;

/// Runs `f` on the app thread; its answer completes parked command `token` on `reply`.
pub(crate) fn app_call(tgt_id: u64, f: AppCall, reply: ThreadHandle, token: u64) {
    let answer: AppAnswer = Box::new(move |status: Status, dw0: u32| {
        let r = reply.send_msg(move || {
            poll_group::with_pg(tgt_id, |pg| pg.finish_parked(token, status, dw0));
        });
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot complete a command on its poll group");
        }
    });
    match TARGETS.with(|t| t.borrow().get(&tgt_id).and_then(std::rc::Weak::upgrade)) {
        Some(inner) => f(&Target(inner), answer),
        None => answer(GenericStatus::INTERNAL_DEVICE_ERROR.into(), 0),
    }
}

/// Interval between two checks of a pausing subsystem's outstanding I/O.
pub const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(1);
/// How often a pause still waiting for outstanding I/O logs a warning.
pub const DRAIN_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// A pause waiting for the I/O in flight on its subsystem.
struct DrainWait {
    nqn: String,
    done: RefCell<Option<Box<dyn FnOnce()>>>,
    poller: RefCell<Option<Poller>>,
    next_warn: Cell<env::Ticks>,
}

/// A preempt-and-abort waiting for the preempted hosts' in-flight I/O on its namespace.
struct PreemptWait {
    nqn: String,
    nsid: u32,
    hosts: Vec<HostId>,
    deadline: env::Ticks,
    answer: RefCell<Option<ResvAnswer>>,
    poller: RefCell<Option<Poller>>,
}

fn ack(token: u64) {
    let done = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let finished = match p.get_mut(&token) {
            Some((left, _)) => {
                *left -= 1;
                *left == 0
            }
            None => false,
        };
        if finished {
            p.remove(&token).map(|(_, f)| f)
        } else {
            None
        }
    });
    if let Some(f) = done {
        f();
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.0.name)
            .finish()
    }
}

impl Target {
    /// Creates a target on the current (app) Thread with the discovery subsystem.
    pub fn new(name: &str) -> Result<Target, NvmfError> {
        let app = env::Thread::current().ok_or(NvmfError::Env(env::EnvError::NoCurrentThread))?;
        let mut disc = Subsystem::new(DISCOVERY_NQN, SubType::Discovery);
        disc.state = SubsystemState::Active;
        let inner = Rc::new(TargetInner {
            id: NEXT_TGT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            app_thread: app.handle(),
            opts: RefCell::new(TargetOpts::default()),
            factories: RefCell::new(HashMap::new()),
            transports: RefCell::new(Vec::new()),
            subsystems: RefCell::new(vec![disc]),
            referrals: RefCell::new(Vec::new()),
            poll_groups: RefCell::new(Vec::new()),
            genctr: Cell::new(0),
            next_pg: Cell::new(0),
            acceptor: RefCell::new(None),
        });
        TARGETS.with(|t| t.borrow_mut().insert(inner.id, Rc::downgrade(&inner)));
        Ok(Target(inner))
    }

    /// The target's name ("nvmf_tgt" for the app's default target).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Options.
    pub fn opts(&self) -> TargetOpts {
        self.0.opts.borrow().clone()
    }

    /// Replaces the options (startup-time RPCs).
    pub fn set_opts(&self, opts: TargetOpts) {
        *self.0.opts.borrow_mut() = opts;
    }

    /// Registers how to build transport `name` ("TCP", ...); the app calls this for each
    /// transport it links.
    pub fn register_transport_factory<T: Transport>(
        &self,
        name: &str,
        factory: impl Fn(TransportOpts) -> Result<T, NvmfError> + 'static,
    ) {
        let f: Factory = Box::new(move |o| Ok(Box::new(factory(o)?) as Box<dyn AnyTransport>));
        self.0
            .factories
            .borrow_mut()
            .insert(name.to_ascii_uppercase(), f);
    }

    /// True when a factory for `trtype` is registered.
    pub fn has_transport_factory(&self, trtype: &str) -> bool {
        self.0
            .factories
            .borrow()
            .contains_key(&trtype.to_ascii_uppercase())
    }

    /// Creates transport `trtype` and adds it to every poll group (SPDK
    /// `spdk_nvmf_transport_create` + `spdk_nvmf_tgt_add_transport`).
    pub fn create_transport(
        &self,
        trtype: &str,
        mut opts: TransportOpts,
        done: impl FnOnce(Result<(), NvmfError>) + 'static,
    ) {
        let key = trtype.to_ascii_uppercase();
        if self.transport_exists(&key) {
            return done(Err(NvmfError::Exists(format!(
                "Transport type '{trtype}' already exists"
            ))));
        }
        if let Err(e) = opts.validate() {
            tracing::error!(trtype, error = %e, "transport options refused");
            return done(Err(e));
        }
        let t = {
            let f = self.0.factories.borrow();
            let Some(factory) = f.get(&key) else {
                return done(Err(NvmfError::InvalidParam(format!(
                    "Invalid transport type '{trtype}'"
                ))));
            };
            match factory(opts) {
                Ok(t) => t,
                Err(e) => return done(Err(e)),
            }
        };
        let installers: Vec<_> = self
            .0
            .poll_groups
            .borrow()
            .iter()
            .map(|th| (th.clone(), t.poll_group_installer()))
            .collect();
        self.0.transports.borrow_mut().push(t);
        tracing::info!(trtype = %key, "transport created");
        let started = self.0.acceptor.borrow().is_some();
        if started && let Err(e) = self.arm_acceptor() {
            tracing::error!(error = %e, "cannot re-arm the acceptor poller");
        }
        let tgt_id = self.0.id;
        self.fan_out(
            installers
                .into_iter()
                .map(|(th, inst)| {
                    let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                        poll_group::with_pg(tgt_id, |pg| inst(&PollGroupRef(pg.clone())));
                    });
                    (th, f)
                })
                .collect(),
            move || done(Ok(())),
        );
        self.update(|| {});
    }

    pub(crate) fn transport_exists(&self, key: &str) -> bool {
        self.0
            .transports
            .borrow()
            .iter()
            .any(|t| t.name().eq_ignore_ascii_case(key))
    }

    /// `nvmf_get_transports` entries.
    pub fn transports_json(&self, trtype: Option<&str>) -> Vec<serde_json::Value> {
        self.0
            .transports
            .borrow()
            .iter()
            .filter(|t| trtype.is_none_or(|n| t.name().eq_ignore_ascii_case(n)))
            .map(|t| t.dump_json())
            .collect()
    }

    /// Starts the target on `threads` (one poll group per Thread) and its acceptor poller on
    /// the current (app) Thread; `done` runs when every poll group exists.
    pub fn start(
        &self,
        threads: Vec<ThreadHandle>,
        done: impl FnOnce() + 'static,
    ) -> Result<(), NvmfError> {
        let tgt_id = self.0.id;
        let snap = self.snapshot();
        let app = self.0.app_thread.clone();
        let mut msgs: Vec<(ThreadHandle, Box<dyn FnOnce() + Send>)> = Vec::new();
        for th in &threads {
            let snap = snap.clone();
            let installers: Vec<_> = self
                .0
                .transports
                .borrow()
                .iter()
                .map(|t| t.poll_group_installer())
                .collect();
            let app = app.clone();
            msgs.push((
                th.clone(),
                Box::new(move || {
                    if let Err(e) = poll_group::create_on_current(tgt_id, app, snap) {
                        tracing::error!(error = %e, "poll group creation failed");
                        return;
                    }
                    poll_group::with_pg(tgt_id, |pg| {
                        for inst in installers {
                            inst(&PollGroupRef(pg.clone()));
                        }
                    });
                }),
            ));
        }
        *self.0.poll_groups.borrow_mut() = threads;
        self.arm_acceptor()?;
        self.fan_out(msgs, done);
        Ok(())
    }

    /// (Re)registers the acceptor poller on the current Thread with the smallest
    /// `acceptor_poll_rate` of the transports (the default without one), as SPDK runs one
    /// acceptor per transport at that transport's rate.
    fn arm_acceptor(&self) -> Result<(), NvmfError> {
        let period = self
            .0
            .transports
            .borrow()
            .iter()
            .map(|t| t.opts().acceptor_poll_rate)
            .min()
            .unwrap_or(crate::transport::DEFAULT_ACCEPTOR_POLL_RATE);
        let weak = Rc::downgrade(&self.0);
        let poller = env::poller_register_periodic(
            move || match weak.upgrade() {
                Some(inner) => Target(inner).accept_once(),
                None => env::PollStatus::Idle,
            },
            Duration::from_micros(u64::from(period)),
        )?;
        tracing::debug!(period_us = period, "acceptor poller armed");
        *self.0.acceptor.borrow_mut() = Some(poller);
        Ok(())
    }

    /// Accepts pending connections and sends each to the next poll group (round robin).
    pub fn accept_once(&self) -> env::PollStatus {
        let mut busy = false;
        loop {
            let install = {
                let mut ts = self.0.transports.borrow_mut();
                ts.iter_mut().find_map(|t| t.accept())
            };
            let Some(install) = install else { break };
            busy = true;
            let pgs = self.0.poll_groups.borrow();
            if pgs.is_empty() {
                tracing::error!("connection accepted with no poll group: dropped");
                continue;
            }
            let i = self.0.next_pg.get() % pgs.len();
            self.0.next_pg.set(i + 1);
            let tgt_id = self.0.id;
            if let Err(e) = pgs[i].send_msg(move || {
                poll_group::with_pg(tgt_id, |pg| install(&PollGroupRef(pg.clone())));
            }) {
                tracing::error!(error = %e, "cannot hand a connection to its poll group");
            }
        }
        if busy {
            env::PollStatus::Busy
        } else {
            env::PollStatus::Idle
        }
    }

    /// Stops listening, disconnects everything and destroys the poll groups (SPDK nvmf
    /// subsystem fini); `done` runs on the app thread at the end.
    pub fn fini(&self, done: impl FnOnce() + 'static) {
        self.0.acceptor.borrow_mut().take();
        let addrs: Vec<ListenAddr> = self
            .0
            .subsystems
            .borrow()
            .iter()
            .flat_map(|s| s.listeners.iter().map(|l| l.addr.clone()))
            .collect();
        for a in addrs {
            self.stop_listen_if_unused(&a, true);
        }
        for s in self.0.subsystems.borrow_mut().iter_mut() {
            s.state = SubsystemState::Inactive;
        }
        let tgt_id = self.0.id;
        let msgs = self
            .0
            .poll_groups
            .borrow()
            .iter()
            .map(|th| {
                let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                    poll_group::destroy_on_current(tgt_id);
                });
                (th.clone(), f)
            })
            .collect();
        let inner = self.0.clone();
        self.fan_out(msgs, move || {
            inner
                .subsystems
                .borrow_mut()
                .retain(|s| s.subtype == SubType::Discovery);
            inner.transports.borrow_mut().clear();
            inner.poll_groups.borrow_mut().clear();
            tracing::info!(target = %inner.name, "nvmf target stopped");
            done();
        });
    }

    /// Sends reservation notifications of namespace `nsid` of `nqn` to every poll group.
    fn send_reservation_notices(&self, nqn: &str, nsid: u32, notices: Vec<Notice>) {
        let tgt_id = self.0.id;
        for th in self.0.poll_groups.borrow().iter() {
            let (nqn, notices) = (nqn.to_string(), notices.clone());
            let r = th.send_msg(move || {
                poll_group::with_pg(tgt_id, |pg| pg.reservation_notices(&nqn, nsid, &notices));
            });
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot send reservation notifications to a poll group");
            }
        }
    }

    /// Counts the preempted hosts' in-flight I/O on every poll group; answers the
    /// preempt-and-abort when there is none, Command Interrupted after
    /// [`PREEMPT_ABORT_TIMEOUT`], and otherwise checks again after
    /// `PREEMPT_ABORT_CHECK_INTERVAL` (SPDK `ns_reservation_pg_io_wait_check`). The I/O
    /// itself is not aborted: it already reached the bdev, and new commands of the
    /// preempted hosts already get Reservation Conflict.
    fn check_preempted_io(&self, w: Rc<PreemptWait>) {
        let tgt_id = self.0.id;
        let total = Arc::new(AtomicU64::new(0));
        let msgs = self
            .0
            .poll_groups
            .borrow()
            .iter()
            .map(|th| {
                let (nqn, nsid, hosts, total) =
                    (w.nqn.clone(), w.nsid, w.hosts.clone(), total.clone());
                let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                    let n =
                        poll_group::with_pg(tgt_id, |pg| pg.inflight_of_hosts(&nqn, nsid, &hosts))
                            .unwrap_or(0);
                    total.fetch_add(u64::from(n), Ordering::AcqRel);
                });
                (th.clone(), f)
            })
            .collect();
        let t = self.clone();
        self.fan_out(msgs, move || {
            let left = total.load(Ordering::Acquire);
            let status = if left == 0 {
                Some(Status::SUCCESS)
            } else if env::now() >= w.deadline {
                tracing::error!(
                    left,
                    nsid = w.nsid,
                    "preempt-and-abort timed out waiting for the preempted hosts' I/O"
                );
                Some(GenericStatus::COMMAND_INTERRUPTED.into())
            } else {
                None
            };
            if let Some(s) = status {
                if let Some(a) = w.answer.borrow_mut().take() {
                    a(s);
                }
                return;
            }
            let t2 = t.clone();
            let again = check_again_after(
                &w,
                |w| &w.poller,
                PREEMPT_ABORT_CHECK_INTERVAL,
                move |w2| t2.check_preempted_io(w2),
            );
            if let Err(e) = again {
                tracing::error!(error = %e, "cannot wait for the preempted hosts' I/O");
                if let Some(a) = w.answer.borrow_mut().take() {
                    a(GenericStatus::INTERNAL_DEVICE_ERROR.into());
                }
            }
        });
    }

    /// Sends one message per Thread and runs `done` on the app thread when all ran.
    pub(crate) fn fan_out(
        &self,
        msgs: Vec<(ThreadHandle, Box<dyn FnOnce() + Send>)>,
        done: impl FnOnce() + 'static,
    ) {
        if msgs.is_empty() {
            done();
            return;
        }
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        PENDING.with(|p| p.borrow_mut().insert(token, (msgs.len(), Box::new(done))));
        for (th, f) in msgs {
            let app = self.0.app_thread.clone();
            let app2 = app.clone();
            let r = th.send_msg(move || {
                f();
                if let Err(e) = app.send_msg(move || ack(token)) {
                    tracing::error!(error = %e, "cannot acknowledge to the app thread");
                }
            });
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot reach a poll group");
                let _ = app2.send_msg(move || ack(token));
            }
        }
    }

    /// Builds the snapshot poll groups read.
    pub(crate) fn snapshot(&self) -> Arc<TargetSnap> {
        let ts = self.0.transports.borrow();
        let discover = |a: &ListenAddr| {
            ts.iter()
                .find(|t| t.name().eq_ignore_ascii_case(&a.trtype))
                .map(|t| t.listener_discover(a))
        };
        let subsystems = self
            .0
            .subsystems
            .borrow()
            .iter()
            .map(|s| {
                let ls = s
                    .listeners
                    .iter()
                    .filter_map(|l| discover(&l.addr).map(|d| (l.clone(), d)))
                    .collect();
                Arc::new(s.snapshot(ls))
            })
            .collect();
        let referrals = self
            .0
            .referrals
            .borrow()
            .iter()
            .filter_map(|r| {
                discover(&r.addr).map(|info| ReferralSnap {
                    info,
                    subnqn: r.subnqn.clone(),
                    secure_channel: r.secure_channel,
                })
            })
            .collect();
        Arc::new(TargetSnap {
            subsystems,
            genctr: self.0.genctr.get(),
            referrals,
            transports: ts
                .iter()
                .map(|t| (t.name(), Arc::new(t.opts().clone())))
                .collect(),
            crdt: self.0.opts.borrow().crdt,
            dhchap_digests: crate::auth::digest_mask(&self.0.opts.borrow().dhchap_digests),
            dhchap_dhgroups: crate::auth::dhgroup_mask(&self.0.opts.borrow().dhchap_dhgroups),
        })
    }

    /// Pushes the current configuration to every poll group; `done` runs when all applied it.
    pub fn update(&self, done: impl FnOnce() + 'static) {
        let snap = self.snapshot();
        let tgt_id = self.0.id;
        let msgs = self
            .0
            .poll_groups
            .borrow()
            .iter()
            .map(|th| {
                let snap = snap.clone();
                let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                    poll_group::with_pg(tgt_id, |pg| pg.update(snap));
                });
                (th.clone(), f)
            })
            .collect();
        self.fan_out(msgs, done);
    }

    fn bump_genctr(&self) {
        self.0.genctr.set(self.0.genctr.get() + 1);
    }

    /// Runs `f` on subsystem `nqn`.
    pub fn with_subsystem<R>(
        &self,
        nqn: &str,
        f: impl FnOnce(&mut Subsystem) -> R,
    ) -> Result<R, NvmfError> {
        let mut subs = self.0.subsystems.borrow_mut();
        let s = subs.iter_mut().find(|s| s.nqn == nqn).ok_or_else(|| {
            NvmfError::NotFound(format!("Unable to find subsystem with NQN {nqn}"))
        })?;
        Ok(f(s))
    }

    /// NQNs of all subsystems, discovery first, in creation order.
    pub fn subsystem_nqns(&self) -> Vec<String> {
        self.0
            .subsystems
            .borrow()
            .iter()
            .map(|s| s.nqn.clone())
            .collect()
    }

    /// Creates (and starts) an NVM subsystem (SPDK `spdk_nvmf_subsystem_create` + start).
    pub fn create_subsystem(&self, mut s: Subsystem) -> Result<(), NvmfError> {
        validate_nqn(&s.nqn).map_err(|e| NvmfError::InvalidParam(e.to_string()))?;
        if s.nqn == DISCOVERY_NQN {
            return Err(NvmfError::Exists(s.nqn.clone()));
        }
        if s.min_cntlid == 0
            || s.min_cntlid > s.max_cntlid
            || s.max_cntlid > crate::subsystem::MAX_CNTLID
        {
            return Err(NvmfError::InvalidParam(format!(
                "Invalid cntlid range [{}-{}]",
                s.min_cntlid, s.max_cntlid
            )));
        }
        if s.max_namespaces > crate::subsystem::MAX_NAMESPACES_LIMIT {
            return Err(NvmfError::InvalidParam(format!(
                "max_namespaces {} above the limit {}",
                s.max_namespaces,
                crate::subsystem::MAX_NAMESPACES_LIMIT
            )));
        }
        {
            let subs = self.0.subsystems.borrow();
            if subs.iter().any(|x| x.nqn == s.nqn) {
                return Err(NvmfError::Exists(format!(
                    "Subsystem NQN '{}' already exists",
                    s.nqn
                )));
            }
            let max = self.0.opts.borrow().max_subsystems as usize;
            if subs.len() >= max {
                return Err(NvmfError::NoSpace("max_subsystems reached".into()));
            }
        }
        if s.max_namespaces == 0 {
            s.max_namespaces = crate::subsystem::DEFAULT_MAX_NAMESPACES;
        }
        s.state = SubsystemState::Active;
        tracing::info!(nqn = %s.nqn, "subsystem created");
        self.0.subsystems.borrow_mut().push(s);
        self.bump_genctr();
        Ok(())
    }

    /// Deletes a subsystem: its controllers fail, its namespaces close when the poll groups
    /// release them.
    pub fn delete_subsystem(&self, nqn: &str) -> Result<(), NvmfError> {
        if nqn == DISCOVERY_NQN {
            return Err(NvmfError::InvalidParam(
                "the discovery subsystem cannot be deleted".into(),
            ));
        }
        let s = {
            let mut subs = self.0.subsystems.borrow_mut();
            let i = subs.iter().position(|s| s.nqn == nqn).ok_or_else(|| {
                NvmfError::NotFound(format!("Unable to find subsystem with NQN {nqn}"))
            })?;
            subs.remove(i)
        };
        for l in &s.listeners {
            self.stop_listen_if_unused(&l.addr, false);
        }
        self.bump_genctr();
        tracing::info!(nqn, "subsystem deleted");
        Ok(())
    }

    /// Adds a listener: starts the transport listening (SPDK `spdk_nvmf_tgt_listen_ext` +
    /// `spdk_nvmf_subsystem_add_listener`).
    pub fn add_listener(
        &self,
        nqn: &str,
        addr: ListenAddr,
        secure_channel: bool,
    ) -> Result<(), NvmfError> {
        self.add_listener_ext(nqn, addr, secure_channel, AnaState::Optimized)
    }

    /// [`Target::add_listener`] with the initial ANA state of every group on the listener
    /// (SPDK `nvmf_subsystem_add_listener` `ana_state`).
    pub fn add_listener_ext(
        &self,
        nqn: &str,
        addr: ListenAddr,
        secure_channel: bool,
        ana_state: AnaState,
    ) -> Result<(), NvmfError> {
        let exists =
            self.with_subsystem(nqn, |s| s.listeners.iter().any(|l| l.addr.same_as(&addr)))?;
        if exists {
            return Err(NvmfError::Exists(format!("Listener {addr} already exists")));
        }
        {
            let mut ts = self.0.transports.borrow_mut();
            let t = ts
                .iter_mut()
                .find(|t| t.name().eq_ignore_ascii_case(&addr.trtype))
                .ok_or_else(|| {
                    NvmfError::NotFound(format!("Unable to find {} transport", addr.trtype))
                })?;
            t.listen(&addr)?;
        }
        self.with_subsystem(nqn, |s| {
            let groups = s.max_nsid() as usize;
            s.listeners.push(Listener {
                addr,
                secure_channel,
                ana_states: vec![ana_state; groups],
                default_ana_state: ana_state,
            })
        })?;
        self.bump_genctr();
        Ok(())
    }

    /// Sets the ANA state of group `anagrpid` (all groups when 0) on listener `addr` of
    /// subsystem `nqn` (SPDK `spdk_nvmf_subsystem_set_ana_state`; see
    /// [`Subsystem::set_ana_state`] for the checks). Controllers connected through that
    /// listener see the new state, and get an ANA change notice, once [`Target::update`]
    /// reached their poll groups. True when a state changed.
    pub fn set_ana_state(
        &self,
        nqn: &str,
        addr: &ListenAddr,
        state: AnaState,
        anagrpid: u32,
    ) -> Result<bool, NvmfError> {
        let changed = self.with_subsystem(nqn, |s| s.set_ana_state(addr, state, anagrpid))??;
        tracing::info!(nqn, %addr, anagrpid, state = state.name(), changed, "ANA state set");
        Ok(changed)
    }

    /// Removes a listener; the transport stops listening when no subsystem uses the address.
    pub fn remove_listener(&self, nqn: &str, addr: &ListenAddr) -> Result<(), NvmfError> {
        let removed = self.with_subsystem(nqn, |s| {
            let before = s.listeners.len();
            s.listeners.retain(|l| !l.addr.same_as(addr));
            before != s.listeners.len()
        })?;
        if !removed {
            return Err(NvmfError::NotFound(format!(
                "Unable to find listener {addr}"
            )));
        }
        self.stop_listen_if_unused(addr, false);
        self.bump_genctr();
        Ok(())
    }

    fn stop_listen_if_unused(&self, addr: &ListenAddr, force: bool) {
        let used = !force
            && self
                .0
                .subsystems
                .borrow()
                .iter()
                .any(|s| s.listeners.iter().any(|l| l.addr.same_as(addr)));
        if used {
            return;
        }
        let mut ts = self.0.transports.borrow_mut();
        if let Some(t) = ts
            .iter_mut()
            .find(|t| t.name().eq_ignore_ascii_case(&addr.trtype))
            && let Err(e) = t.stop_listen(addr)
        {
            tracing::warn!(%addr, error = %e, "stop_listen failed");
        }
    }

    /// Pauses subsystem `nqn` (SPDK `spdk_nvmf_subsystem_pause`): new commands on its
    /// queues wait until resume; `done` runs once every poll group applied the pause and
    /// the I/O already executing on its namespaces completed (checked every
    /// [`DRAIN_CHECK_INTERVAL`]; as SPDK there is no time limit, a warning is logged every
    /// [`DRAIN_WARN_INTERVAL`] while I/O is still outstanding).
    pub fn pause_subsystem(
        &self,
        nqn: &str,
        done: impl FnOnce() + 'static,
    ) -> Result<(), NvmfError> {
        self.with_subsystem(nqn, |s| match s.state {
            SubsystemState::Active => {
                s.state = SubsystemState::Paused;
                Ok(())
            }
            other => Err(NvmfError::Busy(format!("subsystem {nqn} is {other:?}"))),
        })??;
        let w = Rc::new(DrainWait {
            nqn: nqn.to_string(),
            done: RefCell::new(Some(Box::new(done))),
            poller: RefCell::new(None),
            next_warn: Cell::new(env::now() + DRAIN_WARN_INTERVAL),
        });
        let t = self.clone();
        self.update(move || t.check_drained(w));
        Ok(())
    }

    /// Completes a pause once no poll group has I/O in flight on the subsystem; otherwise
    /// checks again after [`DRAIN_CHECK_INTERVAL`].
    fn check_drained(&self, w: Rc<DrainWait>) {
        let tgt_id = self.0.id;
        let total = Arc::new(AtomicU64::new(0));
        let msgs = self
            .0
            .poll_groups
            .borrow()
            .iter()
            .map(|th| {
                let (nqn, total) = (w.nqn.clone(), total.clone());
                let f: Box<dyn FnOnce() + Send> = Box::new(move || {
                    let n = poll_group::with_pg(tgt_id, |pg| pg.inflight_of_subsystem(&nqn))
                        .unwrap_or(0);
                    total.fetch_add(u64::from(n), Ordering::AcqRel);
                });
                (th.clone(), f)
            })
            .collect();
        let t = self.clone();
        self.fan_out(msgs, move || {
            let left = total.load(Ordering::Acquire);
            if left == 0 {
                tracing::info!(nqn = %w.nqn, "subsystem paused, outstanding I/O drained");
                if let Some(d) = w.done.borrow_mut().take() {
                    d();
                }
                return;
            }
            if env::now() >= w.next_warn.get() {
                tracing::warn!(nqn = %w.nqn, left, "pause still waiting for outstanding I/O");
                w.next_warn.set(env::now() + DRAIN_WARN_INTERVAL);
            }
            let t2 = t.clone();
            let again = check_again_after(
                &w,
                |w| &w.poller,
                DRAIN_CHECK_INTERVAL,
                move |w2| t2.check_drained(w2),
            );
            if let Err(e) = again {
                tracing::error!(error = %e, "cannot wait for outstanding I/O; pause completes now");
                if let Some(d) = w.done.borrow_mut().take() {
                    d();
                }
            }
        });
    }

    /// Resumes a paused subsystem; queued commands run (SPDK `spdk_nvmf_subsystem_resume`).
    pub fn resume_subsystem(
        &self,
        nqn: &str,
        done: impl FnOnce() + 'static,
    ) -> Result<(), NvmfError> {
        self.with_subsystem(nqn, |s| match s.state {
            SubsystemState::Paused => {
                s.state = SubsystemState::Active;
                Ok(())
            }
            other => Err(NvmfError::Busy(format!("subsystem {nqn} is {other:?}"))),
        })??;
        self.update(done);
        Ok(())
    }

    /// Adds a namespace backed by bdev `bdev_name`, opened and claimed exclusively for writes.
    /// Returns the NSID. Shorthand for [`Target::add_ns_ext`] without a `ptpl_file`.
    #[allow(clippy::too_many_arguments)]
    pub fn add_ns(
        &self,
        nqn: &str,
        bdev_name: &str,
        nsid: u32,
        uuid: Option<uuid::Uuid>,
        nguid: Option<[u8; 16]>,
        eui64: Option<[u8; 8]>,
        anagrpid: u32,
        no_auto_visible: bool,
    ) -> Result<u32, NvmfError> {
        self.add_ns_ext(
            nqn,
            NsOpts {
                bdev_name: bdev_name.to_string(),
                nsid,
                uuid,
                nguid,
                eui64,
                anagrpid,
                no_auto_visible,
                ptpl_file: None,
            },
        )
    }

    /// Adds a namespace (SPDK `spdk_nvmf_subsystem_add_ns_ext`): opens and claims the bdev;
    /// with a `ptpl_file`, the namespace is PTPL capable and the reservation state is
    /// loaded from the file when it exists ([`crate::reservation::load_ptpl_file`]); a
    /// file that is not a regular file, too large, not valid JSON or of another bdev fails
    /// the add (the bdev is released). Returns the NSID.
    pub fn add_ns_ext(&self, nqn: &str, o: NsOpts) -> Result<u32, NvmfError> {
        let bdev_name = o.bdev_name.as_str();
        let (nsid, anagrpid) = self.with_subsystem(nqn, |s| {
            if s.subtype == SubType::Discovery {
                return Err(NvmfError::InvalidParam(
                    "discovery subsystem has no namespaces".into(),
                ));
            }
            let nsid = s.pick_nsid(o.nsid)?;
            // ANA group defaults to the NSID; it must be a group of the subsystem's table
            // (SPDK: "ANAGRPID greater than maximum NSID not allowed").
            let anagrpid = if o.anagrpid == 0 { nsid } else { o.anagrpid };
            let max = s.max_nsid().max(nsid);
            if anagrpid > max {
                tracing::error!(
                    nqn,
                    anagrpid,
                    max,
                    "ANAGRPID greater than maximum NSID not allowed"
                );
                return Err(NvmfError::InvalidParam(format!(
                    "ANAGRPID {anagrpid} greater than maximum NSID {max} not allowed"
                )));
            }
            Ok((nsid, anagrpid))
        })??;
        let app = self.0.app_thread.clone();
        let (tgt_id, sub) = (self.0.id, nqn.to_string());
        let desc = bdev::open_ext(bdev_name, true, move |ev| {
            if ev == bdev::BdevEvent::Remove {
                let sub = sub.clone();
                let r = app.send_msg(move || hot_remove(tgt_id, &sub, nsid));
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot forward a bdev removal to the app thread");
                }
            }
        })
        .map_err(|e| NvmfError::NotFound(format!("bdev {bdev_name}: {e}")))?;
        desc.claim(bdev::ClaimType::ExclusiveWrite, "NVMe-oF Target")
            .map_err(|e| NvmfError::Busy(format!("bdev {bdev_name} cannot be claimed: {e}")))?;
        let b = desc.bdev();
        let resv = match &o.ptpl_file {
            None => Default::default(),
            Some(path) => {
                let st = crate::reservation::load_ptpl_file(path, &b.uuid()).inspect_err(|e| {
                    tracing::error!(nqn, bdev = bdev_name, error = %e, "cannot load ptpl_file");
                })?;
                tracing::info!(
                    nqn,
                    bdev = bdev_name,
                    file = %path.display(),
                    registrants = st.registrants().len(),
                    ptpl = st.ptpl(),
                    "reservation state loaded from ptpl_file"
                );
                st
            }
        };
        let uuid_v = o.uuid.unwrap_or_else(|| b.uuid());
        let nguid_v = o.nguid.unwrap_or(*uuid_v.as_bytes());
        let ns = Namespace {
            nsid,
            bdev_name: b.name().to_string(),
            uuid: uuid_v,
            nguid: nguid_v,
            eui64: o.eui64.unwrap_or([0; 8]),
            anagrpid,
            no_auto_visible: o.no_auto_visible,
            hosts: Vec::new(),
            explicit_ids: (o.uuid.is_some(), o.nguid.is_some(), o.eui64.is_some()),
            ptpl_file: o.ptpl_file,
            desc: Arc::new(desc),
            resv,
        };
        self.with_subsystem(nqn, |s| s.namespaces.insert(nsid, ns))?;
        tracing::info!(nqn, nsid, bdev = bdev_name, "namespace added");
        Ok(nsid)
    }

    /// Removes namespace `nsid`.
    pub fn remove_ns(&self, nqn: &str, nsid: u32) -> Result<(), NvmfError> {
        let removed = self.with_subsystem(nqn, |s| s.namespaces.remove(&nsid))?;
        match removed {
            Some(_) => Ok(()),
            None => Err(NvmfError::NotFound(format!("Invalid NSID {nsid}"))),
        }
    }

    /// Makes namespace `nsid` of `nqn` visible to host `hostnqn` (SPDK
    /// `spdk_nvmf_ns_add_host`); see [`Subsystem::set_ns_visible`] for the checks. Connected
    /// controllers of that host see the namespace, with a Namespace Attribute Changed event,
    /// once [`Target::update`] reached their poll groups.
    pub fn ns_add_host(&self, nqn: &str, nsid: u32, hostnqn: &str) -> Result<(), NvmfError> {
        self.with_subsystem(nqn, |s| s.set_ns_visible(nsid, hostnqn, true))??;
        tracing::info!(nqn, nsid, hostnqn, "namespace made visible to host");
        Ok(())
    }

    /// Hides namespace `nsid` of `nqn` from host `hostnqn` again (SPDK
    /// `spdk_nvmf_ns_remove_host`); its controllers lose access at the next
    /// [`Target::update`].
    pub fn ns_remove_host(&self, nqn: &str, nsid: u32, hostnqn: &str) -> Result<(), NvmfError> {
        self.with_subsystem(nqn, |s| s.set_ns_visible(nsid, hostnqn, false))??;
        tracing::info!(nqn, nsid, hostnqn, "namespace hidden from host");
        Ok(())
    }

    /// Adds `hostnqn` to the allow list.
    pub fn add_host(&self, nqn: &str, hostnqn: &str) -> Result<(), NvmfError> {
        self.add_host_with_keys(nqn, hostnqn, crate::subsystem::HostKeys::default())
    }

    /// Adds `hostnqn` to the allow list with DH-HMAC-CHAP keys (SPDK
    /// `spdk_nvmf_subsystem_add_host_ext`): a host with a `dhchap_key` must authenticate
    /// after Connect. A controller key needs a host key.
    pub fn add_host_with_keys(
        &self,
        nqn: &str,
        hostnqn: &str,
        keys: crate::subsystem::HostKeys,
    ) -> Result<(), NvmfError> {
        validate_nqn(hostnqn).map_err(|e| NvmfError::InvalidParam(e.to_string()))?;
        if keys.dhchap_ctrlr_key.is_some() && keys.dhchap_key.is_none() {
            return Err(NvmfError::InvalidParam(
                "DH-HMAC-CHAP controller key requires host key".into(),
            ));
        }
        self.with_subsystem(nqn, |s| {
            if s.hosts.iter().any(|h| h == hostnqn) {
                return Err(NvmfError::Exists(hostnqn.to_string()));
            }
            s.hosts.push(hostnqn.to_string());
            if keys.dhchap_key.is_some() {
                s.host_keys.insert(hostnqn.to_string(), Arc::new(keys));
            }
            Ok(())
        })??;
        self.bump_genctr();
        Ok(())
    }

    /// Replaces the DH-HMAC-CHAP keys of allowed host `hostnqn` (SPDK
    /// `spdk_nvmf_subsystem_set_keys`; no key clears them): queues authenticate with the new
    /// keys from their next transaction on.
    pub fn set_host_keys(
        &self,
        nqn: &str,
        hostnqn: &str,
        keys: crate::subsystem::HostKeys,
    ) -> Result<(), NvmfError> {
        if keys.dhchap_ctrlr_key.is_some() && keys.dhchap_key.is_none() {
            return Err(NvmfError::InvalidParam(
                "DH-HMAC-CHAP controller key requires host key".into(),
            ));
        }
        self.with_subsystem(nqn, |s| {
            if !s.hosts.iter().any(|h| h == hostnqn) {
                return Err(NvmfError::InvalidParam(format!(
                    "host {hostnqn} is not allowed on {nqn}"
                )));
            }
            if keys.dhchap_key.is_some() {
                s.host_keys.insert(hostnqn.to_string(), Arc::new(keys));
            } else {
                s.host_keys.remove(hostnqn);
            }
            Ok(())
        })??;
        tracing::info!(nqn, hostnqn, "DH-HMAC-CHAP keys changed");
        Ok(())
    }

    /// Removes `hostnqn` from the allow list (its controllers stay connected, as SPDK).
    pub fn remove_host(&self, nqn: &str, hostnqn: &str) -> Result<(), NvmfError> {
        let found = self.with_subsystem(nqn, |s| {
            let before = s.hosts.len();
            s.hosts.retain(|h| h != hostnqn);
            s.host_keys.remove(hostnqn);
            before != s.hosts.len()
        })?;
        if !found {
            return Err(NvmfError::NotFound(hostnqn.to_string()));
        }
        self.bump_genctr();
        Ok(())
    }

    /// Sets `allow_any_host`.
    pub fn allow_any_host(&self, nqn: &str, allow: bool) -> Result<(), NvmfError> {
        self.with_subsystem(nqn, |s| s.allow_any_host = allow)?;
        self.bump_genctr();
        Ok(())
    }

    /// Adds a discovery referral.
    pub fn add_referral(&self, r: Referral) -> Result<(), NvmfError> {
        let mut refs = self.0.referrals.borrow_mut();
        if refs
            .iter()
            .any(|x| x.addr.same_as(&r.addr) && x.subnqn == r.subnqn)
        {
            return Err(NvmfError::Exists(format!(
                "referral {} already exists",
                r.addr
            )));
        }
        refs.push(r);
        drop(refs);
        self.bump_genctr();
        Ok(())
    }

    /// Removes a discovery referral.
    pub fn remove_referral(
        &self,
        addr: &ListenAddr,
        subnqn: Option<&str>,
    ) -> Result<(), NvmfError> {
        let mut refs = self.0.referrals.borrow_mut();
        let before = refs.len();
        refs.retain(|x| !(x.addr.same_as(addr) && subnqn.is_none_or(|n| n == x.subnqn)));
        if before == refs.len() {
            return Err(NvmfError::NotFound(format!("referral {addr}")));
        }
        drop(refs);
        self.bump_genctr();
        Ok(())
    }

    /// The discovery generation counter.
    pub fn genctr(&self) -> u64 {
        self.0.genctr.get()
    }

    /// Poll group Threads.
    pub fn poll_group_threads(&self) -> Vec<ThreadHandle> {
        self.0.poll_groups.borrow().clone()
    }
}

/// Runs `check(waiter)` once, `interval` from now, on the current Thread; the waiter's
/// `slot` field holds the one-shot poller until then.
fn check_again_after<W: 'static>(
    waiter: &Rc<W>,
    slot: fn(&W) -> &RefCell<Option<Poller>>,
    interval: Duration,
    check: impl FnOnce(Rc<W>) + 'static,
) -> Result<(), env::EnvError> {
    let w = waiter.clone();
    let mut check = Some(check);
    let poller = env::poller_register_periodic(
        move || {
            let (c, w) = (check.take(), w.clone());
            // One shot: unregister, then check.
            slot(&w).borrow_mut().take();
            if let Some(c) = c {
                c(w);
            }
            env::PollStatus::Busy
        },
        interval,
    )?;
    *slot(waiter).borrow_mut() = Some(poller);
    Ok(())
}
