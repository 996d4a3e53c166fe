//! Thin owning wrappers over libibverbs and librdmacm (rdma-sys). The only module with
//! `unsafe`: every foreign call sits here, each with the invariants that make it sound.
//! Objects are `!Send` (raw pointers) except [`CmId`], which moves once from the acceptor to
//! a poll group Thread.
#![allow(unsafe_code)]

use crate::error::RdmaError;
use crate::proto::{RemoteBuf, UnitPool};
use rdma_sys as ffi;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::ptr;
use std::rc::Rc;

fn last_err(call: &'static str) -> RdmaError {
    RdmaError::Verbs {
        call,
        source: std::io::Error::last_os_error(),
    }
}

fn rc_err(call: &'static str, rc: i32) -> Result<(), RdmaError> {
    if rc == 0 {
        return Ok(());
    }
    // verbs post calls return the errno; CM calls return -1 and set errno.
    let source = if rc > 0 {
        std::io::Error::from_raw_os_error(rc)
    } else {
        std::io::Error::last_os_error()
    };
    Err(RdmaError::Verbs { call, source })
}

/// An RDMA CM event channel in non-blocking mode.
#[derive(Debug)]
pub struct EventChannel(*mut ffi::rdma_event_channel);

impl EventChannel {
    /// Creates a channel whose `get_event` never blocks.
    pub fn new() -> Result<EventChannel, RdmaError> {
        // SAFETY: no arguments; returns an owned channel or null.
        let ch = unsafe { ffi::rdma_create_event_channel() };
        if ch.is_null() {
            return Err(last_err("rdma_create_event_channel"));
        }
        // SAFETY: `ch` is a valid channel just created; `fd` is its file descriptor.
        let fd = unsafe { (*ch).fd };
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let ok = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
        };
        let chan = EventChannel(ch);
        if !ok {
            return Err(last_err("fcntl(O_NONBLOCK)"));
        }
        Ok(chan)
    }

    /// The next CM event, if one is queued.
    pub fn get_event(&self) -> Option<CmEvent> {
        let mut ev: *mut ffi::rdma_cm_event = ptr::null_mut();
        // SAFETY: `self.0` is a valid channel; `ev` receives an event we must ack (CmEvent's
        // Drop does).
        let rc = unsafe { ffi::rdma_get_cm_event(self.0, &mut ev) };
        if rc != 0 || ev.is_null() {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                tracing::error!(error = %e, "rdma_get_cm_event failed");
            }
            return None;
        }
        Some(CmEvent(ev))
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: the channel is owned and every id using it was destroyed or migrated first
        // (owners drop ids before channels).
        unsafe { ffi::rdma_destroy_event_channel(self.0) };
    }
}

/// Kinds of CM events the target handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmEventKind {
    /// A host wants to connect (on a listener).
    ConnectRequest,
    /// The connection is up.
    Established,
    /// The host disconnected, the connection failed, or the address/device went away.
    Gone,
    /// Anything else (logged and acknowledged).
    Other(u32),
}

/// A CM event; acknowledged when dropped.
#[derive(Debug)]
pub struct CmEvent(*mut ffi::rdma_cm_event);

impl CmEvent {
    /// What happened.
    pub fn kind(&self) -> CmEventKind {
        use ffi::rdma_cm_event_type as t;
        // SAFETY: `self.0` is a valid, not yet acknowledged event.
        let e = unsafe { (*self.0).event };
        match e {
            t::RDMA_CM_EVENT_CONNECT_REQUEST => CmEventKind::ConnectRequest,
            t::RDMA_CM_EVENT_ESTABLISHED => CmEventKind::Established,
            t::RDMA_CM_EVENT_DISCONNECTED
            | t::RDMA_CM_EVENT_DEVICE_REMOVAL
            | t::RDMA_CM_EVENT_TIMEWAIT_EXIT
            | t::RDMA_CM_EVENT_ADDR_CHANGE
            | t::RDMA_CM_EVENT_CONNECT_ERROR
            | t::RDMA_CM_EVENT_UNREACHABLE
            | t::RDMA_CM_EVENT_REJECTED => CmEventKind::Gone,
            other => CmEventKind::Other(other),
        }
    }

    /// The listener a connect request arrived on (as a raw identity for matching).
    pub fn listen_id(&self) -> usize {
        // SAFETY: valid event.
        unsafe { (*self.0).listen_id as usize }
    }

    /// Takes ownership of the new connection's id (connect requests only).
    pub fn take_conn_id(&self) -> Option<CmId> {
        // SAFETY: valid event; for CONNECT_REQUEST `id` is a new id the application owns.
        let id = unsafe { (*self.0).id };
        (!id.is_null()).then_some(CmId(id))
    }

    /// The connect request's private data (copied) and the host's initiator depth.
    pub fn conn_param(&self) -> (Vec<u8>, u8) {
        // SAFETY: for CONNECT_REQUEST events `param.conn` is the active union member; its
        // private data pointer is valid for `private_data_len` bytes until the ack.
        unsafe {
            let p = &(*self.0).param.conn;
            let data = if p.private_data.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(
                    p.private_data.cast::<u8>(),
                    usize::from(p.private_data_len),
                )
                .to_vec()
            };
            (data, p.initiator_depth)
        }
    }
}

impl Drop for CmEvent {
    fn drop(&mut self) {
        // SAFETY: each event is acknowledged exactly once, here.
        unsafe { ffi::rdma_ack_cm_event(self.0) };
    }
}

/// Device limits used for queue sizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceAttr {
    /// `max_qp_wr`.
    pub max_qp_wr: u32,
    /// `max_qp_init_rd_atom`.
    pub max_qp_init_rd_atom: u32,
    /// `max_cqe`.
    pub max_cqe: u32,
    /// `max_sge`.
    pub max_sge: u32,
    /// The device can SEND with invalidate (`IBV_DEVICE_MEM_MGT_EXTENSIONS`).
    pub send_with_invalidate: bool,
    /// `max_srq_wr` (0: no shared receive queues).
    pub max_srq_wr: u32,
}

/// An owned RDMA CM id (listener or connection). Destroys its QP (if any) and itself on drop.
#[derive(Debug)]
pub struct CmId(*mut ffi::rdma_cm_id);

// SAFETY: an id is used by one thread at a time: created or accepted on the app thread, then
// moved whole to one poll group Thread; librdmacm calls on an id are thread-safe.
unsafe impl Send for CmId {}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

impl CmId {
    /// A listener bound to `addr` on `chan` (RDMA_PS_TCP), listening with `backlog`.
    pub fn listen(chan: &EventChannel, addr: SocketAddr, backlog: u32) -> Result<CmId, RdmaError> {
        let mut id: *mut ffi::rdma_cm_id = ptr::null_mut();
        // SAFETY: valid channel; `id` receives an owned id.
        let rc = unsafe {
            ffi::rdma_create_id(
                chan.0,
                &mut id,
                ptr::null_mut(),
                ffi::rdma_port_space::RDMA_PS_TCP,
            )
        };
        if rc != 0 || id.is_null() {
            return Err(last_err("rdma_create_id"));
        }
        let id = CmId(id);
        let (mut ss, _) = to_sockaddr(addr);
        // SAFETY: valid id; `ss` holds a sockaddr of the family its header says.
        let rc =
            unsafe { ffi::rdma_bind_addr(id.0, (&mut ss as *mut libc::sockaddr_storage).cast()) };
        rc_err("rdma_bind_addr", rc)?;
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        // SAFETY: valid, bound id.
        let rc = unsafe { ffi::rdma_listen(id.0, backlog) };
        rc_err("rdma_listen", rc)?;
        Ok(id)
    }

    /// Raw identity (to match events' `listen_id`).
    pub fn raw(&self) -> usize {
        self.0 as usize
    }

    /// The device context the id is bound to (identity for per-device resources).
    pub fn device_key(&self) -> usize {
        // SAFETY: valid id.
        unsafe { (*self.0).verbs as usize }
    }

    /// The device's limits.
    pub fn device_attr(&self) -> Result<DeviceAttr, RdmaError> {
        // SAFETY: valid id; `verbs` is its device context (non-null for connection ids).
        let ctx = unsafe { (*self.0).verbs };
        if ctx.is_null() {
            return Err(RdmaError::NoDevice("connection id without a device".into()));
        }
        // SAFETY: ibv_device_attr is plain data; zeroed is valid and the call fills it.
        let mut attr: ffi::ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: valid context and out pointer.
        let rc = unsafe { ffi::ibv_query_device(ctx, &mut attr) };
        rc_err("ibv_query_device", rc)?;
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        Ok(DeviceAttr {
            max_qp_wr: u(attr.max_qp_wr),
            max_qp_init_rd_atom: u(attr.max_qp_init_rd_atom),
            max_cqe: u(attr.max_cqe),
            max_sge: u(attr.max_sge),
            max_srq_wr: if attr.max_srq > 0 {
                u(attr.max_srq_wr)
            } else {
                0
            },
            send_with_invalidate: attr.device_cap_flags
                & ffi::ibv_device_cap_flags::IBV_DEVICE_MEM_MGT_EXTENSIONS.0
                != 0,
        })
    }

    /// The peer's address, if it is IPv4 or IPv6.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        // SAFETY: valid id; the route's destination address is a sockaddr whose family field
        // tells which union member is valid.
        unsafe {
            let d = &(*self.0).route.addr.dst_addr_union;
            match i32::from(d.dst_addr.sa_family) {
                libc::AF_INET => {
                    let s = d.dst_sin;
                    let ip = std::net::Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr));
                    Some(SocketAddr::from((ip, u16::from_be(s.sin_port))))
                }
                libc::AF_INET6 => {
                    let s = d.dst_sin6;
                    let ip = std::net::Ipv6Addr::from(s.sin6_addr.s6_addr);
                    Some(SocketAddr::from((ip, u16::from_be(s.sin6_port))))
                }
                _ => None,
            }
        }
    }

    /// Rejects a connect request with private data.
    pub fn reject(&self, private_data: &[u8]) {
        let len = u8::try_from(private_data.len()).unwrap_or(0);
        // SAFETY: valid id with a pending connect request; data valid for `len` bytes.
        let rc = unsafe { ffi::rdma_reject(self.0, private_data.as_ptr().cast(), len) };
        if rc != 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "rdma_reject failed");
        }
    }

    /// Moves the id's events to `chan`.
    pub fn migrate(&self, chan: &EventChannel) -> Result<(), RdmaError> {
        // SAFETY: valid id and channel; no unacknowledged events of this id are outstanding
        // (the connect request was acknowledged by the acceptor).
        let rc = unsafe { ffi::rdma_migrate_id(self.0, chan.0) };
        rc_err("rdma_migrate_id", rc)
    }

    /// Creates the RC queue pair on `pd` with both queues on `cq`.
    pub fn create_qp(
        &self,
        pd: &Pd,
        cq: &Cq,
        srq: Option<&Srq>,
        send_wr: u32,
        recv_wr: u32,
        send_sge: u32,
    ) -> Result<(), RdmaError> {
        // SAFETY: ibv_qp_init_attr is plain data; zeroed then filled.
        let mut attr: ffi::ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        attr.send_cq = cq.0;
        attr.recv_cq = cq.0;
        attr.qp_type = ffi::ibv_qp_type::IBV_QPT_RC;
        attr.sq_sig_all = 0;
        attr.cap.max_send_wr = send_wr;
        attr.cap.max_recv_wr = recv_wr;
        attr.cap.max_send_sge = send_sge;
        attr.cap.max_recv_sge = 1;
        if let Some(srq) = srq {
            attr.srq = srq.0;
            attr.cap.max_recv_wr = 0;
        }
        // SAFETY: valid id, PD and CQ of the id's device; `attr` outlives the call.
        let rc = unsafe { ffi::rdma_create_qp(self.0, pd.0, &mut attr) };
        rc_err("rdma_create_qp", rc)
    }

    /// Accepts the connection with the NVMe/RDMA accept private data.
    pub fn accept(&self, private_data: &[u8], initiator_depth: u8) -> Result<(), RdmaError> {
        // SAFETY: rdma_conn_param is plain data.
        let mut p: ffi::rdma_conn_param = unsafe { std::mem::zeroed() };
        p.private_data = private_data.as_ptr().cast();
        p.private_data_len = u8::try_from(private_data.len()).unwrap_or(0);
        p.responder_resources = 0;
        p.initiator_depth = initiator_depth;
        p.rnr_retry_count = 7;
        // SAFETY: valid id with a QP; `p` and the private data outlive the call.
        let rc = unsafe { ffi::rdma_accept(self.0, &mut p) };
        rc_err("rdma_accept", rc)
    }

    /// Starts a disconnect (moves the QP to the error state: posted WRs get flushed).
    pub fn disconnect(&self) {
        // SAFETY: valid id; disconnecting twice only returns an error we ignore.
        let _ = unsafe { ffi::rdma_disconnect(self.0) };
    }

    /// The queue pair number (0 before the QP exists).
    pub fn qp_num(&self) -> u32 {
        let qp = self.qp();
        if qp.is_null() {
            return 0;
        }
        // SAFETY: valid QP of this id.
        unsafe { (*qp).qp_num }
    }

    fn qp(&self) -> *mut ffi::ibv_qp {
        // SAFETY: valid id.
        unsafe { (*self.0).qp }
    }

    /// Posts one receive of `len` bytes at `addr` (registered with `lkey`).
    pub fn post_recv(&self, wr_id: u64, addr: u64, len: u32, lkey: u32) -> Result<(), RdmaError> {
        let qp = self.qp();
        if qp.is_null() {
            return Err(RdmaError::Protocol("no queue pair".into()));
        }
        let mut sge = ffi::ibv_sge {
            addr,
            length: len,
            lkey,
        };
        let mut wr = ffi::ibv_recv_wr {
            wr_id,
            next: ptr::null_mut(),
            sg_list: &mut sge,
            num_sge: 1,
        };
        let mut bad: *mut ffi::ibv_recv_wr = ptr::null_mut();
        // SAFETY: valid QP; `wr` and `sge` live through the call (the provider copies them);
        // the buffer stays registered and alive until the QP is destroyed.
        let rc = unsafe { ffi::ibv_post_recv(qp, &mut wr, &mut bad) };
        rc_err("ibv_post_recv", rc)
    }

    /// Posts an RDMA operation chain: optional data WR (READ signaled, or WRITE unsignaled)
    /// and optional SEND (signaled, with invalidate when asked).
    pub fn post_send(&self, ops: &[SendOp]) -> Result<(), RdmaError> {
        let qp = self.qp();
        if qp.is_null() || ops.is_empty() {
            return Err(RdmaError::Protocol("no queue pair".into()));
        }
        let mut sges: Vec<Vec<ffi::ibv_sge>> = ops
            .iter()
            .map(|o| {
                o.sges
                    .iter()
                    .map(|&(addr, length, lkey)| ffi::ibv_sge { addr, length, lkey })
                    .collect()
            })
            .collect();
        // SAFETY: ibv_send_wr is plain data; zeroed then filled.
        let mut wrs: Vec<ffi::ibv_send_wr> =
            ops.iter().map(|_| unsafe { std::mem::zeroed() }).collect();
        for (i, o) in ops.iter().enumerate() {
            let w = &mut wrs[i];
            w.wr_id = o.wr_id;
            w.sg_list = sges[i].as_mut_ptr();
            w.num_sge = sges[i].len() as i32;
            w.send_flags = if o.signaled {
                ffi::ibv_send_flags::IBV_SEND_SIGNALED.0
            } else {
                0
            };
            match o.kind {
                SendKind::Read(r) | SendKind::Write(r) => {
                    w.opcode = if matches!(o.kind, SendKind::Read(_)) {
                        ffi::ibv_wr_opcode::IBV_WR_RDMA_READ
                    } else {
                        ffi::ibv_wr_opcode::IBV_WR_RDMA_WRITE
                    };
                    w.wr.rdma = ffi::rdma_t {
                        remote_addr: r.addr,
                        rkey: r.rkey,
                    };
                }
                SendKind::Send { invalidate: None } => w.opcode = ffi::ibv_wr_opcode::IBV_WR_SEND,
                SendKind::Send {
                    invalidate: Some(k),
                } => {
                    w.opcode = ffi::ibv_wr_opcode::IBV_WR_SEND_WITH_INV;
                    w.imm_data_invalidated_rkey_union.invalidated_rkey = k;
                }
            }
        }
        for i in 1..wrs.len() {
            let next: *mut ffi::ibv_send_wr = &mut wrs[i];
            wrs[i - 1].next = next;
        }
        let mut bad: *mut ffi::ibv_send_wr = ptr::null_mut();
        // SAFETY: valid QP; the WR chain and SGE arrays live through the call (providers
        // copy them); local buffers are registered and outlive the QP.
        let rc = unsafe { ffi::ibv_post_send(qp, wrs.as_mut_ptr(), &mut bad) };
        rc_err("ibv_post_send", rc)
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: owned id; its QP (if any) is destroyed first; no event of it is pending
        // (owners ack events before dropping ids).
        unsafe {
            if !(*self.0).qp.is_null() {
                ffi::rdma_destroy_qp(self.0);
            }
            ffi::rdma_destroy_id(self.0);
        }
    }
}

/// What one send-queue work request does.
#[derive(Clone, Copy, Debug)]
pub enum SendKind {
    /// RDMA READ from the host.
    Read(RemoteBuf),
    /// RDMA WRITE to the host.
    Write(RemoteBuf),
    /// SEND of a response capsule.
    Send {
        /// Remote key to invalidate.
        invalidate: Option<u32>,
    },
}

/// One send-queue work request: id, kind, signaled, local entries (address, length, lkey).
#[derive(Clone, Debug)]
pub struct SendOp {
    /// Work request id.
    pub wr_id: u64,
    /// What it does.
    pub kind: SendKind,
    /// Generates a completion.
    pub signaled: bool,
    /// Local entries.
    pub sges: Vec<(u64, u32, u32)>,
}

/// An owned protection domain.
#[derive(Debug)]
pub struct Pd(*mut ffi::ibv_pd);

impl Pd {
    /// Allocates a PD on the device of `id`.
    pub fn new(id: &CmId) -> Result<Pd, RdmaError> {
        // SAFETY: valid id with a device context.
        let pd = unsafe { ffi::ibv_alloc_pd((*id.0).verbs) };
        if pd.is_null() {
            return Err(last_err("ibv_alloc_pd"));
        }
        Ok(Pd(pd))
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: owned PD; its MRs and QPs are dropped before it (field order of owners).
        unsafe { ffi::ibv_dealloc_pd(self.0) };
    }
}

/// An owned completion queue.
#[derive(Debug)]
pub struct Cq(*mut ffi::ibv_cq);

/// One work completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wc {
    /// The work request id.
    pub wr_id: u64,
    /// True when it succeeded.
    pub ok: bool,
    /// Bytes received (receives).
    pub byte_len: u32,
    /// Raw status (for logs).
    pub status: u32,
    /// The local queue pair it belongs to.
    pub qp_num: u32,
}

impl Cq {
    /// A CQ of `cqe` entries on the device of `id`.
    pub fn new(id: &CmId, cqe: u32) -> Result<Cq, RdmaError> {
        let n = i32::try_from(cqe).unwrap_or(i32::MAX);
        // SAFETY: valid device context; no channel, no context pointer.
        let cq =
            unsafe { ffi::ibv_create_cq((*id.0).verbs, n, ptr::null_mut(), ptr::null_mut(), 0) };
        if cq.is_null() {
            return Err(last_err("ibv_create_cq"));
        }
        Ok(Cq(cq))
    }

    /// Polls up to `out.capacity()` completions into `out` (cleared first).
    pub fn poll(&self, out: &mut Vec<Wc>, max: usize) {
        out.clear();
        // SAFETY: ibv_wc is plain data.
        let mut wcs: Vec<ffi::ibv_wc> = (0..max).map(|_| unsafe { std::mem::zeroed() }).collect();
        let n = i32::try_from(max).unwrap_or(i32::MAX);
        // SAFETY: valid CQ; `wcs` has room for `n` entries.
        let got = unsafe { ffi::ibv_poll_cq(self.0, n, wcs.as_mut_ptr()) };
        if got < 0 {
            tracing::error!(rc = got, "ibv_poll_cq failed");
            return;
        }
        for w in wcs.iter().take(got as usize) {
            out.push(Wc {
                wr_id: w.wr_id,
                ok: w.status == ffi::ibv_wc_status::IBV_WC_SUCCESS,
                byte_len: w.byte_len,
                status: w.status,
                qp_num: w.qp_num,
            });
        }
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: owned CQ; every QP using it was destroyed before (owners drop connections
        // before devices).
        let rc = unsafe { ffi::ibv_destroy_cq(self.0) };
        if rc != 0 {
            tracing::error!(rc, "ibv_destroy_cq failed");
        }
    }
}

/// An owned memory registration (private: only the owning wrappers below create one, so
/// the registered memory always outlives it).
#[derive(Debug)]
struct Mr(*mut ffi::ibv_mr);

impl Mr {
    /// # Safety
    /// `mem` must stay alive and in place until the returned MR is dropped.
    unsafe fn new(pd: &Pd, mem: &mut [u8]) -> Result<Mr, RdmaError> {
        let access = ffi::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0 as i32;
        // SAFETY: valid PD; `mem` is valid for its length and outlives the MR (caller).
        let mr = unsafe { ffi::ibv_reg_mr(pd.0, mem.as_mut_ptr().cast(), mem.len(), access) };
        if mr.is_null() {
            return Err(last_err("ibv_reg_mr"));
        }
        Ok(Mr(mr))
    }

    fn lkey(&self) -> u32 {
        // SAFETY: valid MR.
        unsafe { (*self.0).lkey }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: owned MR; no posted WR references it any more (QPs destroyed first).
        unsafe { ffi::ibv_dereg_mr(self.0) };
    }
}

/// Heap memory registered for local writes (receive buffers, response capsules).
#[derive(Debug)]
pub struct OwnedMr {
    // Field order: the registration is dropped before the memory.
    mr: Mr,
    mem: Box<[u8]>,
}

impl OwnedMr {
    /// `len` zeroed bytes for `what`, registered on `pd`. Fails with
    /// [`RdmaError::NoMemory`] (nothing allocated) when the system does not have them
    /// ([`crate::proto::zeroed_buffer`]).
    pub fn new(pd: &Pd, len: u64, what: &'static str) -> Result<OwnedMr, RdmaError> {
        let mut mem = crate::proto::zeroed_buffer(len.max(1), what)?.into_boxed_slice();
        // SAFETY: the boxed slice never moves and is dropped after `mr` (field order).
        let mr = unsafe { Mr::new(pd, &mut mem)? };
        Ok(OwnedMr { mr, mem })
    }

    /// Local key.
    pub fn lkey(&self) -> u32 {
        self.mr.lkey()
    }

    /// Device address of byte `off`.
    pub fn addr(&self, off: usize) -> u64 {
        self.mem.as_ptr() as u64 + off as u64
    }

    /// The memory.
    pub fn bytes(&self) -> &[u8] {
        &self.mem
    }

    /// The memory, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }
}

/// A poll group's [`UnitPool`] registered on one device's PD (registered once, at creation).
#[derive(Debug)]
pub struct PoolMr {
    // Field order: the registration is dropped before the pool reference.
    mr: Mr,
    base: u64,
    _pool: Rc<RefCell<UnitPool>>,
}

impl PoolMr {
    /// Registers the pool's memory (which never moves: `UnitPool` has no way to resize it).
    pub fn new(pd: &Pd, pool: &Rc<RefCell<UnitPool>>) -> Result<PoolMr, RdmaError> {
        let mut p = pool.borrow_mut();
        let mem = p.memory();
        let base = mem.as_mut_ptr() as u64;
        // SAFETY: the pool's memory stays in place and alive while this PoolMr holds an Rc
        // to the pool; `mr` is dropped first (field order).
        let mr = unsafe { Mr::new(pd, mem)? };
        drop(p);
        Ok(PoolMr {
            mr,
            base,
            _pool: pool.clone(),
        })
    }

    /// Local key.
    pub fn lkey(&self) -> u32 {
        self.mr.lkey()
    }

    /// Device address of pool byte `off`.
    pub fn addr(&self, off: usize) -> u64 {
        self.base + off as u64
    }
}

/// An owned shared receive queue.
#[derive(Debug)]
pub struct Srq(*mut ffi::ibv_srq);

impl Srq {
    /// A shared receive queue of `max_wr` single-entry receives on `pd`.
    pub fn new(pd: &Pd, max_wr: u32) -> Result<Srq, RdmaError> {
        // SAFETY: ibv_srq_init_attr is plain data.
        let mut attr: ffi::ibv_srq_init_attr = unsafe { std::mem::zeroed() };
        attr.attr.max_wr = max_wr;
        attr.attr.max_sge = 1;
        // SAFETY: valid PD; `attr` outlives the call.
        let srq = unsafe { ffi::ibv_create_srq(pd.0, &mut attr) };
        if srq.is_null() {
            return Err(last_err("ibv_create_srq"));
        }
        Ok(Srq(srq))
    }

    /// Posts one receive of `len` bytes at `addr` (registered with `lkey`).
    pub fn post_recv(&self, wr_id: u64, addr: u64, len: u32, lkey: u32) -> Result<(), RdmaError> {
        let mut sge = ffi::ibv_sge {
            addr,
            length: len,
            lkey,
        };
        let mut wr = ffi::ibv_recv_wr {
            wr_id,
            next: ptr::null_mut(),
            sg_list: &mut sge,
            num_sge: 1,
        };
        let mut bad: *mut ffi::ibv_recv_wr = ptr::null_mut();
        // SAFETY: valid SRQ; `wr` and `sge` live through the call; the buffer stays
        // registered and alive until the SRQ is destroyed (owner field order).
        let rc = unsafe { ffi::ibv_post_srq_recv(self.0, &mut wr, &mut bad) };
        rc_err("ibv_post_srq_recv", rc)
    }
}

impl Drop for Srq {
    fn drop(&mut self) {
        // SAFETY: owned SRQ; every QP attached to it was destroyed before (owners drop
        // connections before devices).
        let rc = unsafe { ffi::ibv_destroy_srq(self.0) };
        if rc != 0 {
            tracing::error!(rc, "ibv_destroy_srq failed");
        }
    }
}
