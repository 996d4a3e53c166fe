//! Queue pairs (SPDK `spdk_nvmf_qpair`): the target side of one transport connection.
//!
//! The transport calls [`Qpair::handle_request`] with each decoded command and drains
//! [`Qpair::poll_response`]; see [`crate::transport`] for the full order.

use crate::ctrlr::{self, Ctrlr, CtrlrShared};
use crate::poll_group::PgInner;
use crate::request::{DataBuf, Request, Response};
use crate::transport::ListenAddr;
use nvme::spec::{Cqe, GenericStatus, Status};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Queue pair states (SPDK `spdk_nvmf_qpair_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QpairState {
    /// Accepted, waiting for Fabrics Connect.
    Uninitialized,
    /// Connected to a controller.
    Active,
    /// Disconnected: no new commands; outstanding ones finish, their answers are dropped.
    Deactivating,
}

/// A controller's answer before it becomes a CQE.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: Status,
    pub dw0: u32,
    pub dw1: u32,
    pub data: Option<DataBuf>,
}

impl Reply {
    pub fn status(status: Status) -> Reply {
        Reply {
            status,
            dw0: 0,
            dw1: 0,
            data: None,
        }
    }
    pub fn dw0(mut self, v: u32) -> Reply {
        self.dw0 = v;
        self
    }
    pub fn dw01(mut self, v: u64) -> Reply {
        self.dw0 = v as u32;
        self.dw1 = (v >> 32) as u32;
        self
    }
    pub fn data(mut self, d: DataBuf) -> Reply {
        self.data = Some(d);
        self
    }
}

/// A queue pair's view of its subsystem for one poll group generation: the snapshot and the
/// namespaces its host sees (namespace masking checked once per configuration change, not
/// per command; an invisible namespace is simply absent).
pub(crate) struct SnapCache {
    pub generation: u64,
    pub snap: Arc<crate::subsystem::SubsysSnap>,
    pub visible: VisibleNs,
}

/// The namespaces one host sees, by NSID.
pub(crate) type VisibleNs = Rc<std::collections::BTreeMap<u32, Arc<crate::subsystem::Namespace>>>;

pub(crate) struct QpairInner {
    pub pg: Weak<PgInner>,
    pub transport: String,
    pub listen: RefCell<Option<ListenAddr>>,
    pub peer: RefCell<Option<ListenAddr>>,
    pub qid: Cell<u16>,
    pub sqsize: Cell<u16>,
    sqhd: Cell<u16>,
    pub state: Cell<QpairState>,
    pub ctrlr: RefCell<Option<Arc<CtrlrShared>>>,
    pub admin: RefCell<Option<Rc<Ctrlr>>>,
    pub subnqn: RefCell<String>,
    pub outstanding: Cell<u32>,
    /// Cached subsystem view, valid for one poll group generation.
    pub snap_cache: RefCell<Option<SnapCache>>,
    /// The transport's `max_io_size`, fixed at Connect.
    pub max_io: Cell<u32>,
    /// Controller epoch at I/O Connect (see `CtrlrShared::epoch`).
    pub epoch: Cell<u64>,
    /// First command of a fused pair waiting for its second.
    pub fused: RefCell<Option<Request>>,
    /// I/O commands submitted to the bdev and not completed, per NSID (few namespaces per
    /// queue: a short list). Preempt-and-abort waits on it.
    inflight: RefCell<Vec<(u32, u32)>>,
    /// I/O commands waiting for bdev resources (bdev `queue_io_wait`) by CID, with the flag
    /// that cancels their retry when an Abort completed them.
    waiting: RefCell<Vec<(u16, Rc<Cell<bool>>)>>,
    responses: RefCell<VecDeque<Response>>,
    /// The DH-HMAC-CHAP transaction in progress, if any.
    pub auth: RefCell<Option<crate::auth::Session>>,
    /// Connected but not authenticated yet: only Authentication Send/Receive are allowed.
    pub auth_pending: Cell<bool>,
}

impl QpairInner {
    /// Queues the completion of command `cid` (dropped when the queue is disconnected).
    pub fn push_reply(&self, cid: u16, r: Reply) {
        if self.state.get() == QpairState::Deactivating {
            tracing::debug!(cid, "response dropped: queue pair disconnected");
            return;
        }
        let mut cqe = Cqe::new(cid, r.status);
        cqe.dw0 = r.dw0.into();
        cqe.dw1 = r.dw1.into();
        cqe.sqhd = self.sqhd.get().into();
        cqe.sqid = self.qid.get().into();
        let data = if r.status.is_success() { r.data } else { None };
        self.responses
            .borrow_mut()
            .push_back(Response { cqe, data });
    }

    /// Completes an asynchronous command.
    pub fn complete_async(&self, cid: u16, r: Reply) {
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
        if self.qid.get() != 0
            && self.state.get() == QpairState::Active
            && let Some(pg) = self.pg.upgrade()
        {
            pg.count_completed_io();
        }
        self.push_reply(cid, r);
    }

    /// Counts one more I/O command in flight on namespace `nsid`.
    pub fn inflight_add(&self, nsid: u32) {
        let mut v = self.inflight.borrow_mut();
        match v.iter_mut().find(|(n, _)| *n == nsid) {
            Some((_, c)) => *c += 1,
            None => v.push((nsid, 1)),
        }
    }

    /// One I/O command on namespace `nsid` finished (or was dropped unsubmitted).
    pub fn inflight_done(&self, nsid: u32) {
        let mut v = self.inflight.borrow_mut();
        if let Some(i) = v.iter().position(|(n, _)| *n == nsid) {
            v[i].1 -= 1;
            if v[i].1 == 0 {
                v.swap_remove(i);
            }
        }
    }

    /// I/O commands in flight on every namespace.
    pub fn inflight_total(&self) -> u32 {
        self.inflight.borrow().iter().map(|(_, c)| *c).sum()
    }

    /// I/O commands in flight on namespace `nsid`.
    pub fn inflight_on(&self, nsid: u32) -> u32 {
        self.inflight
            .borrow()
            .iter()
            .find(|(n, _)| *n == nsid)
            .map_or(0, |(_, c)| *c)
    }

    /// Records command `cid` as waiting for bdev resources; setting the returned flag
    /// cancels its retry.
    pub fn wait_for_resources(&self, cid: u16) -> Rc<Cell<bool>> {
        let flag = Rc::new(Cell::new(false));
        self.waiting.borrow_mut().push((cid, flag.clone()));
        flag
    }

    /// The waiting command with `flag` is being retried (or dropped).
    pub fn resources_ready(&self, flag: &Rc<Cell<bool>>) {
        self.waiting
            .borrow_mut()
            .retain(|(_, f)| !Rc::ptr_eq(f, flag));
    }

    /// Cancels the retry of waiting command `cid`; true if there was one (the caller
    /// completes it).
    pub fn abort_waiting(&self, cid: u16) -> bool {
        let mut w = self.waiting.borrow_mut();
        let Some(i) = w.iter().position(|(c, _)| *c == cid) else {
            return false;
        };
        let (_, flag) = w.remove(i);
        flag.set(true);
        true
    }

    fn advance_sqhd(&self) {
        let size = u32::from(self.sqsize.get()) + 1;
        let next = (u32::from(self.sqhd.get()) + 1) % size.max(1);
        self.sqhd.set(next as u16);
    }

    pub fn cntlid(&self) -> Option<u16> {
        self.ctrlr.borrow().as_ref().map(|c| c.cntlid)
    }

    /// Runs a command on a connected queue pair (fabrics, admin or I/O).
    pub fn dispatch(self: &Rc<Self>, pg: &Rc<PgInner>, req: Request) -> Option<Reply> {
        if is_auth_cmd(&req) {
            Some(crate::auth::exec(pg, self, &req))
        } else if req.sqe.is_fabrics() {
            Some(ctrlr::fabrics_cmd(self, &req))
        } else if self.admin.borrow().is_some() {
            crate::admin::exec(pg, self, req)
        } else {
            crate::io::exec(pg, self, req)
        }
    }

    /// Runs a command that waited while its subsystem was paused.
    pub fn resume(self: &Rc<Self>, pg: &Rc<PgInner>, req: Request) {
        if self.state.get() != QpairState::Active {
            self.outstanding
                .set(self.outstanding.get().saturating_sub(1));
            return;
        }
        let cid = req.sqe.cid();
        if let Some(r) = self.dispatch(pg, req) {
            self.complete_async(cid, r);
        }
    }

    /// Disconnects; tears the controller down when this is its admin queue.
    pub fn disconnect(&self) {
        if self.state.get() == QpairState::Deactivating {
            return;
        }
        self.state.set(QpairState::Deactivating);
        self.responses.borrow_mut().clear();
        if self.fused.borrow_mut().take().is_some() {
            self.outstanding
                .set(self.outstanding.get().saturating_sub(1));
        }
        if let Some(pg) = self.pg.upgrade() {
            let n = pg.drop_queued_for(self);
            self.outstanding
                .set(self.outstanding.get().saturating_sub(n));
        }
        let shared = self.ctrlr.borrow().clone();
        if let Some(admin) = self.admin.borrow_mut().take() {
            let aers = admin.aers.borrow_mut().drain(..).count() as u32;
            self.outstanding
                .set(self.outstanding.get().saturating_sub(aers));
            admin.fail();
            if let Some(pg) = self.pg.upgrade() {
                pg.remove_ctrlr(&admin);
            }
            tracing::info!(cntlid = admin.shared.cntlid, "controller destroyed");
        } else if let Some(c) = shared
            && c.epoch.load(Ordering::Acquire) == self.epoch.get()
        {
            let mut qids = match c.io_qids.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            qids.remove(&self.qid.get());
        }
        tracing::debug!(qid = self.qid.get(), "queue pair disconnected");
    }
}

/// An Authentication Send or Receive fabrics command.
fn is_auth_cmd(req: &Request) -> bool {
    req.sqe.is_fabrics()
        && matches!(
            req.sqe.fctype(),
            nvme::spec::FabricsCommandType::AUTHENTICATION_SEND
                | nvme::spec::FabricsCommandType::AUTHENTICATION_RECV
        )
}

/// A queue pair handle, owned by a transport poll group (`!Send`: it lives on that Thread).
#[derive(Clone)]
pub struct Qpair(pub(crate) Rc<QpairInner>);

impl std::fmt::Debug for Qpair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qpair")
            .field("qid", &self.0.qid.get())
            .field("state", &self.0.state.get())
            .finish()
    }
}

impl Qpair {
    pub(crate) fn new(pg: &Rc<PgInner>, transport: &str) -> Qpair {
        Qpair(Rc::new(QpairInner {
            pg: Rc::downgrade(pg),
            transport: transport.to_string(),
            listen: RefCell::new(None),
            peer: RefCell::new(None),
            qid: Cell::new(0),
            sqsize: Cell::new(0),
            sqhd: Cell::new(0),
            state: Cell::new(QpairState::Uninitialized),
            ctrlr: RefCell::new(None),
            admin: RefCell::new(None),
            subnqn: RefCell::new(String::new()),
            outstanding: Cell::new(0),
            snap_cache: RefCell::new(None),
            max_io: Cell::new(0),
            epoch: Cell::new(0),
            fused: RefCell::new(None),
            inflight: RefCell::new(Vec::new()),
            waiting: RefCell::new(Vec::new()),
            responses: RefCell::new(VecDeque::new()),
            auth: RefCell::new(None),
            auth_pending: Cell::new(false),
        }))
    }

    /// Records the listener this connection arrived on (discovery filtering, ACL, RPC output).
    pub fn set_listen_addr(&self, addr: ListenAddr) {
        *self.0.listen.borrow_mut() = Some(addr);
    }

    /// Records the host's address (RPC output).
    pub fn set_peer_addr(&self, addr: ListenAddr) {
        *self.0.peer.borrow_mut() = Some(addr);
    }

    /// Executes one command. Its response appears in [`Qpair::poll_response`], now (fabrics,
    /// most admin commands, errors) or after a later poll (bdev I/O, AER).
    pub fn handle_request(&self, req: Request) {
        let q = &self.0;
        let cid = req.sqe.cid();
        if q.state.get() == QpairState::Deactivating {
            tracing::debug!(cid, "command on a disconnected queue pair ignored");
            return;
        }
        let Some(pg) = q.pg.upgrade() else {
            return;
        };
        q.advance_sqhd();
        q.outstanding.set(q.outstanding.get() + 1);
        let reply = match q.state.get() {
            QpairState::Uninitialized => {
                if req.sqe.is_fabrics()
                    && req.sqe.fctype() == nvme::spec::FabricsCommandType::CONNECT
                {
                    let r = ctrlr::connect(&pg, q, &req);
                    if r.status.is_success() {
                        q.state.set(QpairState::Active);
                        let sub = q.ctrlr.borrow().as_ref().map(|c| c.subnqn.clone());
                        if q.subnqn.borrow().is_empty()
                            && let Some(sub) = sub
                        {
                            *q.subnqn.borrow_mut() = sub;
                        }
                    } else {
                        q.sqsize.set(0);
                    }
                    Some(r)
                } else {
                    tracing::error!(opc = req.sqe.opc, "command received before CONNECT");
                    Some(Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into()))
                }
            }
            QpairState::Active if q.auth_pending.get() && !is_auth_cmd(&req) => {
                // SPDK `nvmf_check_qpair_active`, state AUTHENTICATING.
                tracing::error!(
                    opc = req.sqe.opc,
                    qid = q.qid.get(),
                    "command received before authentication"
                );
                Some(Reply::status(
                    nvme::spec::CommandSpecificStatus::AUTH_REQUIRED.into(),
                ))
            }
            QpairState::Active => {
                let paused = pg
                    .subsystem_for(q)
                    .is_some_and(|s| s.state == crate::SubsystemState::Paused);
                if !req.sqe.is_fabrics() && paused {
                    tracing::debug!(cid, "subsystem paused: command queued");
                    pg.queue(q, req);
                    None
                } else {
                    q.dispatch(&pg, req)
                }
            }
            QpairState::Deactivating => None,
        };
        if let Some(r) = reply {
            q.complete_async(cid, r);
        }
    }

    /// Next response to send, in completion order.
    pub fn poll_response(&self) -> Option<Response> {
        self.0.responses.borrow_mut().pop_front()
    }

    /// The transport lost the connection (or the target tears it down): stop accepting
    /// commands; outstanding bdev I/O completes and its answers are dropped.
    pub fn disconnect(&self) {
        self.0.disconnect();
    }

    /// True once disconnected (by the transport, keep-alive expiry, controller failure or
    /// subsystem removal): the transport should close its connection.
    pub fn is_disconnected(&self) -> bool {
        self.0.state.get() == QpairState::Deactivating
    }

    /// True when disconnected and no command is still executing: the transport may free it.
    pub fn is_drained(&self) -> bool {
        self.is_disconnected() && self.0.outstanding.get() == 0
    }

    /// Current state.
    pub fn state(&self) -> QpairState {
        self.0.state.get()
    }

    /// Queue ID (0 = admin), valid once connected.
    pub fn qid(&self) -> u16 {
        self.0.qid.get()
    }

    /// Controller ID, once connected.
    pub fn cntlid(&self) -> Option<u16> {
        self.0.cntlid()
    }

    /// Commands received and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.0.outstanding.get()
    }

    /// True when the controller failed, or (for an I/O queue) was reset or shut down since
    /// this queue connected.
    pub(crate) fn ctrlr_failed(&self) -> bool {
        let q = &self.0;
        q.ctrlr.borrow().as_ref().is_some_and(|c| {
            c.failed.load(Ordering::Acquire)
                || (q.admin.borrow().is_none()
                    && q.state.get() == QpairState::Active
                    && c.epoch.load(Ordering::Acquire) != q.epoch.get())
        })
    }
}
