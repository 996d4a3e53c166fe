//! Poll groups (SPDK `spdk_nvmf_poll_group`): one per reactor Thread.
//!
//! A poll group owns its transports' poll groups, its copy of every subsystem (namespaces and
//! their bdev channels on this Thread), the controllers whose admin queue arrived here, and
//! the queue pairs. Configuration reaches it only by message ([`TargetSnap`] replaced whole),
//! so commands read it without locks.

use crate::ctrlr::Ctrlr;
use crate::qpair::Reply;
use crate::qpair::{Qpair, QpairInner, SnapCache, VisibleNs};
use crate::request::{Request, RequestState};
use crate::reservation::{HostId, Notice, ResvCommand};
use crate::subsystem::{Namespace, SubsysSnap};
use crate::transport::{DiscoverInfo, TransportOpts, TransportPollGroup};
use env::{PollStatus, Poller, ThreadId};
use nvme::spec::GenericStatus;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A discovery referral as poll groups see it.
#[derive(Clone, Debug)]
pub(crate) struct ReferralSnap {
    pub info: DiscoverInfo,
    pub subnqn: String,
    pub secure_channel: bool,
}

/// Everything a poll group needs from the target configuration (immutable, `Send + Sync`).
#[derive(Debug, Default)]
pub(crate) struct TargetSnap {
    pub subsystems: Vec<Arc<SubsysSnap>>,
    pub genctr: u64,
    pub referrals: Vec<ReferralSnap>,
    pub transports: HashMap<String, Arc<TransportOpts>>,
    pub crdt: [u16; 3],
    /// Allowed DH-HMAC-CHAP hash IDs (bit per ID).
    pub dhchap_digests: u32,
    /// Allowed DH-HMAC-CHAP group IDs (bit per ID).
    pub dhchap_dhgroups: u32,
}

/// Per poll group counters (`nvmf_get_stats`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PgStats {
    pub admin_qpairs: u64,
    pub io_qpairs: u64,
    pub completed_nvme_io: u64,
}

trait AnyTpg {
    fn poll(&mut self) -> PollStatus;
    fn remove_qpair(&mut self) -> usize;
    fn disconnect_all(&mut self);
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<P: TransportPollGroup> AnyTpg for P {
    fn poll(&mut self) -> PollStatus {
        TransportPollGroup::poll(self)
    }
    fn remove_qpair(&mut self) -> usize {
        TransportPollGroup::remove_qpair(self)
    }
    fn disconnect_all(&mut self) {
        TransportPollGroup::disconnect_all(self)
    }
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// The command an admin Abort names (`Send`: it travels to the I/O queue's poll group).
#[derive(Clone, Debug)]
pub(crate) struct AbortTarget {
    pub subnqn: String,
    pub cntlid: u16,
    pub sqid: u16,
    pub cid: u16,
}

/// A namespace and this Thread's bdev channel for it.
type NsChannel = (Arc<bdev::Desc>, Rc<bdev::BdevChannel>);

pub(crate) struct PgInner {
    /// The target this poll group belongs to.
    pub tgt_id: u64,
    /// The app thread, where reservation changes run.
    app_thread: env::ThreadHandle,
    /// Commands answered by another Thread (reservation changes on the app thread, Abort of
    /// a command on another poll group), by token: queue pair and CID.
    parked: RefCell<HashMap<u64, (Weak<QpairInner>, u16)>>,
    next_park_token: Cell<u64>,
    transports: RefCell<Vec<(String, Box<dyn AnyTpg>)>>,
    view: RefCell<Arc<TargetSnap>>,
    /// Bdev channels by namespace, keyed by the address of the namespace's descriptor, which
    /// every snapshot of the namespace shares: a configuration update (a reservation change,
    /// another namespace added) keeps the channels of the namespaces it did not remove.
    channels: RefCell<HashMap<usize, NsChannel>>,
    /// Bumped on every configuration update (invalidates queue pairs' cached views).
    pub generation: Cell<u64>,
    ctrlrs: RefCell<Vec<Rc<Ctrlr>>>,
    qpairs: RefCell<Vec<Weak<QpairInner>>>,
    /// Commands received while their subsystem was paused (state [`RequestState::Queued`]).
    queued: RefCell<VecDeque<(Weak<QpairInner>, Request, RequestState)>>,
    pub stats: Cell<PgStats>,
    poller: RefCell<Option<Poller>>,
    /// When the housekeeping of [`PgInner::poll`] (keep-alive expiry, authentication
    /// deadlines, failed controllers, closed connections) is due next.
    next_housekeeping: Cell<env::Ticks>,
    /// The [`HOUSEKEEPING_EPOCH`] of the last housekeeping.
    housekeeping_epoch: Cell<u64>,
    /// The reactor sleeps when idle (interrupt mode): housekeeping runs on every poll, since
    /// the next poll may come only with the next event (nothing arms a timer for it).
    interrupt_mode: bool,
}

/// How often a busy-polling poll group looks for expired keep-alives, authentication
/// deadlines, failed controllers and closed connections: not on every poll, where its lists
/// (copied, walked) cost as much as a command (SPDK runs these on timed pollers too). In
/// interrupt mode it looks on every poll (polls are events there).
const HOUSEKEEPING_PERIOD: std::time::Duration = std::time::Duration::from_millis(1);

/// Bumped when a controller fails or resets: every poll group then does its housekeeping on
/// its next poll (its I/O queues of that controller disconnect at once, not up to
/// [`HOUSEKEEPING_PERIOD`] later).
static HOUSEKEEPING_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Asks every poll group for its housekeeping on its next poll.
pub(crate) fn request_housekeeping() {
    HOUSEKEEPING_EPOCH.fetch_add(1, Ordering::AcqRel);
}

thread_local! {
    static PGS: RefCell<HashMap<(u64, ThreadId), Rc<PgInner>>> = RefCell::new(HashMap::new());
}

/// Runs `f` with the poll group of target `tgt_id` on the current Thread, if there is one.
pub(crate) fn with_pg<R>(tgt_id: u64, f: impl FnOnce(&Rc<PgInner>) -> R) -> Option<R> {
    let tid = env::Thread::current()?.id();
    let pg = PGS.with(|m| m.borrow().get(&(tgt_id, tid)).cloned())?;
    Some(f(&pg))
}

/// Creates the poll group of target `tgt_id` on the current Thread.
pub(crate) fn create_on_current(
    tgt_id: u64,
    app_thread: env::ThreadHandle,
    snap: Arc<TargetSnap>,
) -> Result<(), crate::NvmfError> {
    let thread =
        env::Thread::current().ok_or(crate::NvmfError::Env(env::EnvError::NoCurrentThread))?;
    let pg = Rc::new(PgInner {
        tgt_id,
        app_thread,
        parked: RefCell::new(HashMap::new()),
        next_park_token: Cell::new(1),
        transports: RefCell::new(Vec::new()),
        view: RefCell::new(snap),
        channels: RefCell::new(HashMap::new()),
        generation: Cell::new(0),
        ctrlrs: RefCell::new(Vec::new()),
        qpairs: RefCell::new(Vec::new()),
        queued: RefCell::new(VecDeque::new()),
        stats: Cell::new(PgStats::default()),
        poller: RefCell::new(None),
        next_housekeeping: Cell::new(env::now()),
        housekeeping_epoch: Cell::new(HOUSEKEEPING_EPOCH.load(Ordering::Acquire)),
        interrupt_mode: env::reactors().is_some_and(|r| r.interrupt_mode()),
    });
    let weak = Rc::downgrade(&pg);
    let poller = env::poller_register(move || match weak.upgrade() {
        Some(pg) => pg.poll(),
        None => PollStatus::Idle,
    })?;
    *pg.poller.borrow_mut() = Some(poller);
    PGS.with(|m| m.borrow_mut().insert((tgt_id, thread.id()), pg));
    Ok(())
}

/// Removes (drops) the poll group of `tgt_id` on the current Thread; true if it existed.
pub(crate) fn destroy_on_current(tgt_id: u64) -> bool {
    let Some(thread) = env::Thread::current() else {
        return false;
    };
    let pg = PGS.with(|m| m.borrow_mut().remove(&(tgt_id, thread.id())));
    match pg {
        Some(pg) => {
            for q in pg.live_qpairs() {
                q.disconnect();
            }
            for (_, t) in pg.transports.borrow_mut().iter_mut() {
                t.disconnect_all();
            }
            pg.poller.borrow_mut().take();
            pg.channels.borrow_mut().clear();
            true
        }
        None => false,
    }
}

impl PgInner {
    pub fn subsystem(&self, nqn: &str) -> Option<Arc<SubsysSnap>> {
        self.view
            .borrow()
            .subsystems
            .iter()
            .find(|s| s.nqn == nqn)
            .cloned()
    }

    /// The view of a connected queue pair's subsystem, cached in the queue pair until the
    /// next configuration update (no string search per command).
    pub fn subsystem_for(&self, q: &QpairInner) -> Option<Arc<SubsysSnap>> {
        self.cached_view(q).map(|(s, _)| s)
    }

    /// The namespaces the queue pair's host sees (namespace masking), cached as
    /// [`PgInner::subsystem_for`]. Empty before Connect.
    pub fn visible_ns_for(&self, q: &QpairInner) -> Option<VisibleNs> {
        self.cached_view(q).map(|(_, v)| v)
    }

    fn cached_view(&self, q: &QpairInner) -> Option<(Arc<SubsysSnap>, VisibleNs)> {
        let cur = self.generation.get();
        if let Some(c) = q.snap_cache.borrow().as_ref()
            && c.generation == cur
        {
            return Some((c.snap.clone(), c.visible.clone()));
        }
        let s = self.subsystem(&q.subnqn.borrow())?;
        let visible = Rc::new(match q.ctrlr.borrow().as_ref() {
            Some(c) => s.visible_namespaces(&c.hostnqn),
            None => BTreeMap::new(),
        });
        *q.snap_cache.borrow_mut() = Some(SnapCache {
            generation: cur,
            snap: s.clone(),
            visible: visible.clone(),
        });
        Some((s, visible))
    }

    pub fn view(&self) -> Arc<TargetSnap> {
        self.view.borrow().clone()
    }

    pub fn genctr(&self) -> u64 {
        self.view.borrow().genctr
    }

    pub fn opts(&self, transport: &str) -> Arc<TransportOpts> {
        self.view
            .borrow()
            .transports
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(transport))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub fn count_io_qpair(&self) {
        let mut s = self.stats.get();
        s.io_qpairs += 1;
        self.stats.set(s);
    }

    pub fn count_completed_io(&self) {
        let mut s = self.stats.get();
        s.completed_nvme_io += 1;
        self.stats.set(s);
    }

    /// `nvmf_subsystem_get_qpairs` entries for subsystem `nqn` on this poll group.
    pub fn qpairs_json(&self, nqn: &str) -> Vec<serde_json::Value> {
        let thread = env::Thread::current().map(|t| t.name()).unwrap_or_default();
        self.live_qpairs()
            .iter()
            .filter(|q| q.state() == crate::QpairState::Active && *q.0.subnqn.borrow() == nqn)
            .filter_map(|q| {
                let c = q.0.ctrlr.borrow().clone()?;
                let mut o = serde_json::Map::new();
                o.insert("cntlid".into(), c.cntlid.into());
                o.insert("qid".into(), q.qid().into());
                let state = if q.0.auth_pending.get() {
                    "authenticating"
                } else {
                    "enabled"
                };
                o.insert("state".into(), state.into());
                o.insert("thread".into(), thread.clone().into());
                o.insert("hostnqn".into(), c.hostnqn.clone().into());
                if let Some(a) = q.0.listen.borrow().as_ref() {
                    o.insert(
                        "listen_address".into(),
                        serde_json::to_value(a).unwrap_or_default(),
                    );
                }
                if let Some(a) = q.0.peer.borrow().as_ref() {
                    o.insert(
                        "peer_address".into(),
                        serde_json::to_value(a).unwrap_or_default(),
                    );
                }
                if let Some(s) = q.0.auth.borrow().as_ref() {
                    o.insert("auth".into(), s.json());
                }
                Some(serde_json::Value::Object(o))
            })
            .collect()
    }

    /// This poll group's `nvmf_get_stats` entry.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = self.stats.get();
        let qs = self.live_qpairs();
        let active = |admin: bool| {
            qs.iter()
                .filter(|q| q.state() == crate::QpairState::Active && (q.qid() == 0) == admin)
                .count()
        };
        let unassoc = qs
            .iter()
            .filter(|q| q.state() == crate::QpairState::Uninitialized)
            .count();
        let transports: Vec<serde_json::Value> = self
            .transports
            .borrow()
            .iter()
            .map(|(n, _)| serde_json::json!({"trtype": n}))
            .collect();
        serde_json::json!({
            "name": env::Thread::current().map(|t| t.name()).unwrap_or_default(),
            "admin_qpairs": s.admin_qpairs,
            "io_qpairs": s.io_qpairs,
            "current_admin_qpairs": active(true),
            "current_io_qpairs": active(false),
            "current_unassociated_qpairs": unassoc,
            "pending_bdev_io": 0,
            "completed_nvme_io": s.completed_nvme_io,
            "transports": transports,
        })
    }

    /// True when subsystem `nqn` is paused in this poll group's view.
    pub fn is_paused(&self, nqn: &str) -> bool {
        self.subsystem(nqn)
            .is_some_and(|s| s.state == crate::SubsystemState::Paused)
    }

    /// Holds a command until its subsystem resumes.
    pub fn queue(&self, q: &Rc<QpairInner>, req: Request) {
        self.queued
            .borrow_mut()
            .push_back((Rc::downgrade(q), req, RequestState::Queued));
    }

    /// Drops the queued commands of a disconnected queue pair; returns how many.
    pub fn drop_queued_for(&self, q: &QpairInner) -> u32 {
        let mut queued = self.queued.borrow_mut();
        let before = queued.len();
        queued.retain(|(w, _, _)| !std::ptr::eq(w.as_ptr(), q));
        (before - queued.len()) as u32
    }

    fn replay_queued(self: &Rc<Self>) {
        let ready: Vec<_> = {
            let mut q = self.queued.borrow_mut();
            let (ready, wait): (VecDeque<_>, VecDeque<_>) = q.drain(..).partition(|(w, _, _)| {
                w.upgrade()
                    .is_none_or(|qp| !self.is_paused(&qp.subnqn.borrow()))
            });
            *q = wait;
            ready.into_iter().collect()
        };
        for (w, req, state) in ready {
            debug_assert_eq!(state, RequestState::Queued);
            if let Some(qp) = w.upgrade() {
                qp.resume(self, req);
            }
        }
    }

    /// Parks command `cid` of `q` until another Thread answers it through
    /// [`PgInner::finish_parked`] with the returned token.
    fn park(&self, q: &Rc<QpairInner>, cid: u16) -> u64 {
        let token = self.next_park_token.get();
        self.next_park_token.set(token.wrapping_add(1));
        self.parked
            .borrow_mut()
            .insert(token, (Rc::downgrade(q), cid));
        token
    }

    /// Completes the parked command `token` with `status` and completion DW0 `dw0`.
    pub fn finish_parked(&self, token: u64, status: nvme::spec::Status, dw0: u32) {
        let entry = self.parked.borrow_mut().remove(&token);
        match entry {
            Some((w, cid)) => {
                if let Some(q) = w.upgrade() {
                    q.complete_async(cid, crate::qpair::Reply::status(status).dw0(dw0));
                }
            }
            None => tracing::error!(token, "completion of an unknown parked command"),
        }
    }

    /// Sends a state-changing reservation command to the app thread (SPDK sends it to the
    /// subsystem's thread); it is answered through [`PgInner::finish_parked`]. Err when the
    /// app thread cannot be reached.
    pub fn send_reservation(
        &self,
        q: &Rc<QpairInner>,
        cid: u16,
        cmd: ResvCommand,
    ) -> Result<(), env::EnvError> {
        self.send_parked(q, cid, move |tgt_id, me, token| {
            crate::target::reservation_on_app(tgt_id, cmd, me, token)
        })
    }

    /// Runs `f` on the app thread with the [`crate::Target`]; the command `cid` of `q` is
    /// parked until `f` calls its answer with a status and completion DW0. Err when the app
    /// thread cannot be reached.
    pub fn send_app_call(
        &self,
        q: &Rc<QpairInner>,
        cid: u16,
        f: crate::target::AppCall,
    ) -> Result<(), env::EnvError> {
        self.send_parked(q, cid, move |tgt_id, me, token| {
            crate::target::app_call(tgt_id, f, me, token)
        })
    }

    /// Parks the command `cid` of `q` and runs `on_app(target id, this Thread, park token)`
    /// on the app thread; the token is dropped again when the app thread cannot be reached.
    fn send_parked(
        &self,
        q: &Rc<QpairInner>,
        cid: u16,
        on_app: impl FnOnce(u64, env::ThreadHandle, u64) + Send + 'static,
    ) -> Result<(), env::EnvError> {
        let me = env::Thread::current()
            .ok_or(env::EnvError::NoCurrentThread)?
            .handle();
        let token = self.park(q, cid);
        let tgt_id = self.tgt_id;
        let r = self.app_thread.send_msg(move || on_app(tgt_id, me, token));
        if r.is_err() {
            self.parked.borrow_mut().remove(&token);
        }
        r
    }

    /// Admin Abort of command `cid` on I/O queue `sqid` of controller `cntlid`, which lives
    /// on the poll group of Thread `owner`: asks that poll group ([`PgInner::abort_io`]) and
    /// answers the Abort (`abort_cid` on admin queue `q`) with its result. Err when the
    /// Thread cannot be reached.
    pub fn send_abort(
        &self,
        q: &Rc<QpairInner>,
        abort_cid: u16,
        owner: &env::ThreadHandle,
        target: AbortTarget,
    ) -> Result<(), env::EnvError> {
        let me = env::Thread::current()
            .ok_or(env::EnvError::NoCurrentThread)?
            .handle();
        let token = self.park(q, abort_cid);
        let tgt_id = self.tgt_id;
        let r = owner.send_msg(move || {
            let aborted = with_pg(tgt_id, |pg| pg.abort_io(&target)).unwrap_or(false);
            let dw0 = if aborted {
                0
            } else {
                nvme::spec::io::ABORT_DW0_NOT_ABORTED
            };
            let r = me.send_msg(move || {
                with_pg(tgt_id, |pg| {
                    pg.finish_parked(token, nvme::spec::Status::SUCCESS, dw0)
                });
            });
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot answer an Abort on its admin queue");
            }
        });
        if r.is_err() {
            self.parked.borrow_mut().remove(&token);
        }
        r
    }

    /// Aborts a command that has not reached the bdev yet: the first half of a fused pair
    /// waiting for its second, or an I/O waiting for bdev resources (SPDK aborts requests
    /// still queued in the target; one already at the bdev is not aborted). True when it
    /// was aborted; the command completes with Command Aborted By Request.
    pub fn abort_io(&self, t: &AbortTarget) -> bool {
        let Some(q) = self.live_qpairs().into_iter().find(|q| {
            q.qid() == t.sqid
                && !q.is_disconnected()
                && *q.0.subnqn.borrow() == t.subnqn
                && q.cntlid() == Some(t.cntlid)
        }) else {
            return false;
        };
        let q = &q.0;
        let aborted = Reply::status(GenericStatus::ABORTED_BY_REQUEST.into());
        let first = q.fused.borrow_mut().take_if(|r| r.sqe.cid() == t.cid);
        if first.is_some() {
            tracing::info!(sqid = t.sqid, cid = t.cid, "fused first command aborted");
            q.complete_async(t.cid, aborted);
            return true;
        }
        if q.abort_waiting(t.cid) {
            tracing::info!(
                sqid = t.sqid,
                cid = t.cid,
                "I/O waiting for bdev resources or data buffers aborted"
            );
            q.complete_async(t.cid, aborted);
            return true;
        }
        tracing::debug!(
            sqid = t.sqid,
            cid = t.cid,
            "Abort: command not found or already executing"
        );
        false
    }

    /// Delivers reservation notifications to this poll group's controllers of the hosts
    /// they name (SPDK `nvmf_subsystem_gen_ctrlr_notification`).
    pub fn reservation_notices(&self, nqn: &str, nsid: u32, notices: &[Notice]) {
        for c in self.ctrlrs() {
            if c.discovery || c.subnqn != nqn {
                continue;
            }
            for n in notices.iter().filter(|n| n.hostid == c.shared.hostid) {
                c.reservation_notice(nsid, n.log_type);
            }
        }
    }

    /// In-flight I/O commands of hosts `hosts` on namespace `nsid` of `nqn` in this poll
    /// group (preempt-and-abort waits until there is none).
    pub fn inflight_of_hosts(&self, nqn: &str, nsid: u32, hosts: &[HostId]) -> u32 {
        self.live_qpairs()
            .iter()
            .filter(|q| *q.0.subnqn.borrow() == nqn)
            .filter(|q| {
                q.0.ctrlr
                    .borrow()
                    .as_ref()
                    .is_some_and(|c| hosts.contains(&c.hostid))
            })
            .map(|q| q.0.inflight_on(nsid))
            .sum()
    }

    /// I/O commands in flight on any namespace of subsystem `nqn` in this poll group (a
    /// pause completes when there is none in any poll group).
    pub fn inflight_of_subsystem(&self, nqn: &str) -> u32 {
        self.live_qpairs()
            .iter()
            .filter(|q| *q.0.subnqn.borrow() == nqn)
            .map(|q| q.0.inflight_total())
            .sum()
    }

    pub fn add_ctrlr(&self, c: Rc<Ctrlr>) {
        let mut s = self.stats.get();
        s.admin_qpairs += 1;
        self.stats.set(s);
        self.ctrlrs.borrow_mut().push(c);
    }

    pub fn remove_ctrlr(&self, c: &Rc<Ctrlr>) {
        self.ctrlrs.borrow_mut().retain(|x| !Rc::ptr_eq(x, c));
        if let Some(s) = self.subsystem(&c.subnqn) {
            let mut t = match s.ctrlrs.lock() {
                Ok(t) => t,
                Err(p) => p.into_inner(),
            };
            t.map.remove(&c.shared.cntlid);
        }
    }

    pub fn ctrlrs(&self) -> Vec<Rc<Ctrlr>> {
        self.ctrlrs.borrow().clone()
    }

    pub fn live_qpairs(&self) -> Vec<Qpair> {
        self.qpairs
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .map(Qpair)
            .collect()
    }

    /// The bdev channel of namespace `nsid` of `nqn` on this Thread (created on first use).
    pub fn channel(&self, ns: &Arc<Namespace>) -> Result<Rc<bdev::BdevChannel>, bdev::BdevError> {
        let key = Arc::as_ptr(&ns.desc) as usize;
        if let Some((_, ch)) = self.channels.borrow().get(&key) {
            return Ok(ch.clone());
        }
        let ch = Rc::new(ns.desc.get_io_channel()?);
        self.channels
            .borrow_mut()
            .insert(key, (ns.desc.clone(), ch.clone()));
        Ok(ch)
    }

    /// Installs a new configuration view and tells controllers what changed.
    pub fn update(self: &Rc<Self>, snap: Arc<TargetSnap>) {
        *self.view.borrow_mut() = snap.clone();
        self.generation.set(self.generation.get() + 1);
        // Drop cached views now so removed namespaces release their descriptors.
        for q in self.live_qpairs() {
            q.0.snap_cache.borrow_mut().take();
        }
        self.channels.borrow_mut().retain(|_, (desc, _)| {
            snap.subsystems
                .iter()
                .any(|s| s.namespaces.values().any(|n| Arc::ptr_eq(&n.desc, desc)))
        });
        for c in self.ctrlrs() {
            match snap.subsystems.iter().find(|s| s.nqn == c.subnqn) {
                Some(_) if c.discovery => c.discovery_changed(snap.genctr),
                Some(s) => {
                    c.namespaces_changed(s);
                    c.ana_changed(s);
                }
                None => {
                    tracing::info!(
                        cntlid = c.shared.cntlid,
                        "subsystem removed: controller fails"
                    );
                    c.fail();
                }
            }
        }
        self.replay_queued();
    }

    fn poll(&self) -> PollStatus {
        let mut busy = false;
        {
            let mut ts = self.transports.borrow_mut();
            for (_, t) in ts.iter_mut() {
                busy |= t.poll() == PollStatus::Busy;
            }
        }
        let now = env::now();
        let epoch = HOUSEKEEPING_EPOCH.load(Ordering::Acquire);
        if !self.interrupt_mode
            && now < self.next_housekeeping.get()
            && epoch == self.housekeeping_epoch.get()
        {
            return if busy {
                PollStatus::Busy
            } else {
                PollStatus::Idle
            };
        }
        self.next_housekeeping.set(now + HOUSEKEEPING_PERIOD);
        self.housekeeping_epoch.set(epoch);
        for c in self.ctrlrs() {
            if c.keep_alive_expired(now) {
                tracing::warn!(
                    cntlid = c.shared.cntlid,
                    subnqn = %c.subnqn,
                    hostnqn = %c.shared.hostnqn,
                    "Disconnecting host from subsystem due to keep alive timeout"
                );
                c.fail();
                busy = true;
            }
        }
        for q in self.live_qpairs() {
            if !q.is_disconnected() && crate::auth::poll(&q.0, now) {
                q.disconnect();
                busy = true;
            }
        }
        for q in self.live_qpairs() {
            if !q.is_disconnected() && q.ctrlr_failed() {
                q.disconnect();
                busy = true;
            }
        }
        {
            let mut ts = self.transports.borrow_mut();
            for (_, t) in ts.iter_mut() {
                t.remove_qpair();
            }
        }
        self.qpairs.borrow_mut().retain(|w| w.strong_count() > 0);
        if busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }
}

/// A handle on the poll group of the current Thread, given to transport installers.
pub struct PollGroupRef(pub(crate) Rc<PgInner>);

impl PollGroupRef {
    /// Installs a transport's poll group built on this Thread.
    pub(crate) fn install_transport<P: TransportPollGroup>(&self, name: &str, tpg: P) {
        self.0
            .transports
            .borrow_mut()
            .push((name.to_string(), Box::new(tpg)));
    }

    /// Creates a queue pair for an accepted connection and hands both to the transport's
    /// poll group.
    pub(crate) fn add_connection<P: TransportPollGroup>(&self, name: &str, conn: P::Connection) {
        let qpair = Qpair::new(&self.0, name);
        let mut ts = self.0.transports.borrow_mut();
        let Some(tpg) = ts
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, t)| t.as_any().downcast_mut::<P>())
        else {
            tracing::error!(
                transport = name,
                "no poll group for transport: connection dropped"
            );
            return;
        };
        self.0.qpairs.borrow_mut().push(Rc::downgrade(&qpair.0));
        if let Err(e) = tpg.add_qpair(conn, qpair) {
            tracing::error!(transport = name, error = %e, "transport refused a connection");
        }
    }
}
