//! Sans-IO core of one NVMe/RDMA queue pair: capsules in, work requests out.
//!
//! No verbs, no clock: the I/O layer (`verbs` + `poll_group`, feature `rdma`) reports what the
//! hardware did and executes the [`Action`]s this core yields. Called in this order:
//!
//! 1. [`RdmaQueue::new`] once the connection's depth is negotiated ([`crate::cm::negotiate`]).
//! 2. For each receive completion: [`RdmaQueue::on_recv`] with the received bytes (SQE plus
//!    in-capsule data); the receive buffer may be reposted right after (its bytes are copied).
//! 3. For each READ / SEND completion: [`RdmaQueue::on_read_done`] / [`RdmaQueue::on_send_done`]
//!    (WRITEs are unsignaled and complete before the SEND posted after them).
//! 4. For each response of the target core: [`RdmaQueue::on_response`].
//! 5. [`RdmaQueue::process_pending`] after buffer units were freed anywhere in the poll group.
//! 6. Drain [`RdmaQueue::poll_action`] and execute every action in order.
//! 7. On disconnect: [`RdmaQueue::disconnect`]; keep reporting completions (flushed work
//!    requests) until [`RdmaQueue::is_quiesced`], then destroy the queue pair.

use crate::error::RdmaError;
use crate::request::RdmaRequestState as St;
use nvme::spec::{Cqe, GenericStatus, Sgl, Sqe, Status};
use nvmf::{DataBuf, Request, Response};
use std::collections::{HashMap, VecDeque};

#[cfg(test)]
mod tests;

/// Size of a command capsule's SQE.
pub const SQE_LEN: usize = 64;

/// Data buffer units of one poll group: one allocation, registered once with the device
/// (SPDK's shared buffer pool); a transfer uses `ceil(len / unit)` units as separate SGEs.
#[derive(Debug)]
pub struct UnitPool {
    unit: usize,
    mem: Vec<u8>,
    free: Vec<u32>,
}

fn no_memory(what: &'static str, len: u64) -> RdmaError {
    let available = env::dma::mem_available().unwrap_or(0);
    tracing::error!(len, available, "{what}: cannot allocate {len} bytes");
    RdmaError::NoMemory {
        what,
        len,
        source: env::EnvError::NoMemory {
            requested: len,
            available,
        },
    }
}

/// `len` zeroed bytes for `what` (receive buffers, the data buffer pool), checked first
/// against the memory the system has available ([`env::dma::check_available`]) and then
/// reserved fallibly: a size from unbounded options is an [`RdmaError::NoMemory`] (logged),
/// never an abort, and nothing is allocated for it.
pub fn zeroed_buffer(len: u64, what: &'static str) -> Result<Vec<u8>, RdmaError> {
    if let Err(source) = env::dma::check_available(len, what) {
        return Err(RdmaError::NoMemory { what, len, source });
    }
    let n = usize::try_from(len).map_err(|_| no_memory(what, len))?;
    let mut mem = Vec::new();
    if mem.try_reserve_exact(n).is_err() {
        return Err(no_memory(what, len));
    }
    mem.resize(n, 0);
    Ok(mem)
}

/// A local scatter-gather entry: a window of the [`UnitPool`] memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sge {
    /// Byte offset into the pool memory.
    pub offset: usize,
    /// Length in bytes.
    pub len: u32,
}

impl UnitPool {
    /// `units` units of `unit_size` bytes (zeroed). The memory never moves afterwards.
    /// Fails with [`RdmaError::NoMemory`] (logged, nothing allocated) when the system does not
    /// have that much memory available.
    pub fn new(unit_size: u32, units: u32) -> Result<UnitPool, RdmaError> {
        let what = "RDMA poll group buffer pool";
        let len = u64::from(unit_size) * u64::from(units);
        let mem = zeroed_buffer(len, what)?;
        let mut free = Vec::new();
        if free.try_reserve_exact(units as usize).is_err() {
            return Err(no_memory(what, u64::from(units) * 4));
        }
        free.extend((0..units).rev());
        Ok(UnitPool {
            unit: unit_size as usize,
            mem,
            free,
        })
    }

    /// Units currently free.
    pub fn free_units(&self) -> usize {
        self.free.len()
    }

    /// Bytes per unit.
    pub fn unit_size(&self) -> usize {
        self.unit
    }

    /// The whole memory, for registration with the device.
    pub fn memory(&mut self) -> &mut [u8] {
        &mut self.mem
    }

    fn take(&mut self, n: usize) -> Option<Vec<u32>> {
        if self.free.len() < n {
            return None;
        }
        let at = self.free.len() - n;
        Some(self.free.split_off(at))
    }

    fn put(&mut self, units: &mut Vec<u32>) {
        self.free.append(units);
    }

    fn sges(&self, units: &[u32], len: u32) -> Vec<Sge> {
        let mut left = len as usize;
        let mut out = Vec::with_capacity(units.len());
        for u in units {
            if left == 0 {
                break;
            }
            let n = left.min(self.unit);
            out.push(Sge {
                offset: *u as usize * self.unit,
                len: n as u32,
            });
            left -= n;
        }
        out
    }

    fn read_out(&self, units: &[u32], len: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(len as usize);
        for s in self.sges(units, len) {
            v.extend_from_slice(
                self.mem
                    .get(s.offset..s.offset + s.len as usize)
                    .unwrap_or(&[]),
            );
        }
        v
    }

    fn write_in(&mut self, units: &[u32], data: &DataBuf, len: u32) {
        let mut at = 0;
        for s in self.sges(units, len) {
            if let Some(dst) = self.mem.get_mut(s.offset..s.offset + s.len as usize) {
                at += data.copy_to_slice_at(at, dst);
            }
        }
    }

    /// Test/host helper: the bytes of a local SGE.
    pub fn bytes(&self, sge: Sge) -> &[u8] {
        self.mem
            .get(sge.offset..sge.offset + sge.len as usize)
            .unwrap_or(&[])
    }

    /// Test/host helper: writes `src` into a local SGE (what an RDMA READ completion means).
    pub fn fill(&mut self, sge: Sge, src: &[u8]) {
        if let Some(dst) = self.mem.get_mut(sge.offset..sge.offset + sge.len as usize) {
            let n = dst.len().min(src.len());
            dst[..n].copy_from_slice(&src[..n]);
        }
    }
}

/// The host's memory as a keyed SGL describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteBuf {
    /// Remote virtual address.
    pub addr: u64,
    /// Remote key.
    pub rkey: u32,
    /// Transfer length.
    pub len: u32,
}

/// A work request (or chain) for the I/O layer to post, or a command for the target core.
#[derive(Debug)]
pub enum Action {
    /// Hand this command to [`nvmf::Qpair::handle_request`].
    Submit(Request),
    /// Post a signaled RDMA READ of `remote` into `local` (wr_id names `slot`).
    Read {
        /// Request slot.
        slot: u16,
        /// Host memory.
        remote: RemoteBuf,
        /// Pool memory.
        local: Vec<Sge>,
    },
    /// Post an optional unsignaled RDMA WRITE followed by a signaled SEND of `cqe`
    /// (SEND with invalidate of `invalidate` when the host asked for it).
    Send {
        /// Request slot.
        slot: u16,
        /// Data to write to the host first.
        write: Option<DataWrite>,
        /// The response capsule.
        cqe: Cqe,
        /// Remote key to invalidate with the SEND.
        invalidate: Option<u32>,
    },
}

/// An RDMA WRITE of pool memory to the host: where, and from which local entries.
pub type DataWrite = (RemoteBuf, Vec<Sge>);

/// Limits of one queue pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Negotiated queue depth (request slots).
    pub depth: u16,
    /// RDMA READs in flight at most.
    pub read_depth: u16,
    /// Send queue work requests in flight at most.
    pub max_send_depth: u32,
    /// In-capsule data size.
    pub in_capsule_data_size: u32,
    /// Largest transfer.
    pub max_io_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    None,
    HostToCtrl,
    CtrlToHost,
}

#[derive(Debug)]
struct Slot {
    state: St,
    sqe: Sqe,
    dir: Dir,
    remote: Option<RemoteBuf>,
    invalidate: Option<u32>,
    units: Vec<u32>,
    /// Send queue work requests posted for this slot (counted back at its signaled completion).
    wrs: u32,
    /// Response waiting for send queue room.
    pending: Option<(Cqe, Option<DataWrite>)>,
}

impl Slot {
    fn free() -> Slot {
        Slot {
            state: St::Free,
            sqe: Sqe::default(),
            dir: Dir::None,
            remote: None,
            invalidate: None,
            units: Vec::new(),
            wrs: 0,
            pending: None,
        }
    }
}

/// The transport state of one RDMA queue pair (see the module docs for the call order).
#[derive(Debug)]
pub struct RdmaQueue {
    cfg: QueueConfig,
    slots: Vec<Slot>,
    free: Vec<u16>,
    by_cid: HashMap<u16, u16>,
    need_buffer: VecDeque<u16>,
    read_pending: VecDeque<u16>,
    send_pending: VecDeque<u16>,
    reads_in_flight: u32,
    send_in_flight: u32,
    actions: VecDeque<Action>,
    closing: bool,
}

fn xfer_dir(sqe: &Sqe) -> u8 {
    if sqe.is_fabrics() {
        sqe.fctype().0 & 3
    } else {
        sqe.opc & 3
    }
}

impl RdmaQueue {
    /// A queue pair with `cfg.depth` free request slots.
    pub fn new(cfg: QueueConfig) -> RdmaQueue {
        RdmaQueue {
            cfg,
            slots: (0..cfg.depth).map(|_| Slot::free()).collect(),
            free: (0..cfg.depth).rev().collect(),
            by_cid: HashMap::new(),
            need_buffer: VecDeque::new(),
            read_pending: VecDeque::new(),
            send_pending: VecDeque::new(),
            reads_in_flight: 0,
            send_in_flight: 0,
            actions: VecDeque::new(),
            closing: false,
        }
    }

    /// The queue's limits.
    pub fn config(&self) -> QueueConfig {
        self.cfg
    }

    /// State of request slot `slot` (None when out of range).
    pub fn slot_state(&self, slot: u16) -> Option<St> {
        self.slots.get(usize::from(slot)).map(|s| s.state)
    }

    /// Request slots in use.
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Work requests posted on the send queue and not yet completed.
    pub fn send_in_flight(&self) -> u32 {
        self.send_in_flight
    }

    /// Next action to execute.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// True once [`RdmaQueue::disconnect`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// True when closing and no posted work request is outstanding: the queue pair may be
    /// destroyed without leaking work requests.
    pub fn is_quiesced(&self) -> bool {
        self.closing && self.send_in_flight == 0
    }

    /// A command capsule arrived (`capsule` = 64-byte SQE followed by in-capsule data).
    ///
    /// Errors are the host's protocol violations (short capsule, more commands in flight than
    /// the negotiated depth); the caller tears the queue pair down. Bad commands are answered
    /// with an NVMe status instead.
    pub fn on_recv(&mut self, pool: &mut UnitPool, capsule: &[u8]) -> Result<(), RdmaError> {
        if self.closing {
            return Ok(());
        }
        let Some(sqe_bytes) = capsule.get(..SQE_LEN) else {
            return Err(RdmaError::Protocol(format!(
                "capsule of {} bytes is shorter than an SQE",
                capsule.len()
            )));
        };
        let sqe = Sqe::read_from(sqe_bytes)
            .map_err(|e| RdmaError::Protocol(format!("capsule does not parse: {e}")))?;
        let Some(slot) = self.free.pop() else {
            return Err(RdmaError::Protocol(format!(
                "command cid {} exceeds the negotiated queue depth {}",
                sqe.cid(),
                self.cfg.depth
            )));
        };
        let cid = sqe.cid();
        {
            let s = &mut self.slots[usize::from(slot)];
            *s = Slot::free();
            s.state = St::New;
            s.sqe = sqe;
        }
        if self.by_cid.contains_key(&cid) {
            tracing::error!(cid, "command identifier already in use");
            self.fail(slot, GenericStatus::CID_CONFLICT.into());
            return Ok(());
        }
        self.by_cid.insert(cid, slot);
        let dir = match xfer_dir(&sqe) {
            0 => Dir::None,
            1 => Dir::HostToCtrl,
            2 => Dir::CtrlToHost,
            _ => {
                tracing::error!(cid, opc = sqe.opc, "bidirectional opcode not supported");
                self.fail(slot, GenericStatus::INVALID_OPCODE.into());
                return Ok(());
            }
        };
        self.slots[usize::from(slot)].dir = dir;
        if dir == Dir::None {
            self.submit(slot, Request::new(sqe, 0));
            return Ok(());
        }
        match sqe.sgl().decode() {
            Ok(Sgl::DataBlockOffset { offset, length }) if dir == Dir::HostToCtrl => {
                self.in_capsule(slot, capsule, offset, length);
            }
            Ok(Sgl::KeyedDataBlock {
                address,
                length,
                key,
                invalidate,
            }) => {
                if length > self.cfg.max_io_size {
                    tracing::error!(
                        cid,
                        length,
                        max = self.cfg.max_io_size,
                        "SGL length exceeds max_io_size"
                    );
                    self.fail(slot, GenericStatus::DATA_SGL_LENGTH_INVALID.into());
                    return Ok(());
                }
                if length == 0 {
                    self.submit(slot, Request::new(sqe, 0));
                    return Ok(());
                }
                let s = &mut self.slots[usize::from(slot)];
                s.remote = Some(RemoteBuf {
                    addr: address,
                    rkey: key,
                    len: length,
                });
                s.invalidate = invalidate.then_some(key);
                s.state = St::NeedBuffer;
                self.need_buffer.push_back(slot);
                self.process_pending(pool);
            }
            Ok(other) => {
                tracing::error!(cid, ?other, "SGL descriptor not supported on RDMA");
                self.fail(slot, GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into());
            }
            Err(e) => {
                tracing::error!(cid, error = %e, "invalid SGL descriptor");
                self.fail(slot, GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID.into());
            }
        }
        Ok(())
    }

    fn in_capsule(&mut self, slot: u16, capsule: &[u8], offset: u64, length: u32) {
        let s = &self.slots[usize::from(slot)];
        let cid = s.sqe.cid();
        let icd = u64::from(self.cfg.in_capsule_data_size);
        if offset > icd {
            tracing::error!(cid, offset, icd, "in-capsule offset exceeds capsule length");
            self.fail(slot, GenericStatus::INVALID_SGL_OFFSET.into());
            return;
        }
        let data = &capsule[SQE_LEN..];
        let end = offset + u64::from(length);
        if end > icd || end > data.len() as u64 {
            tracing::error!(
                cid,
                offset,
                length,
                received = data.len(),
                icd,
                "in-capsule data length exceeds the capsule"
            );
            self.fail(slot, GenericStatus::DATA_SGL_LENGTH_INVALID.into());
            return;
        }
        let bytes = data[offset as usize..end as usize].to_vec();
        let sqe = s.sqe;
        self.submit(slot, Request::with_data(sqe, DataBuf::from_vec(bytes)));
    }

    fn submit(&mut self, slot: u16, req: Request) {
        self.slots[usize::from(slot)].state = St::Executing;
        self.actions.push_back(Action::Submit(req));
    }

    /// Completes a command the transport refused before the target core saw it.
    fn fail(&mut self, slot: u16, status: Status) {
        let s = &mut self.slots[usize::from(slot)];
        let cqe = Cqe::new(s.sqe.cid(), status);
        s.state = St::ReadyToCompletePending;
        s.pending = Some((cqe, None));
        self.send_pending.push_back(slot);
        self.process_sends();
    }

    /// Assigns buffers, starts READs and sends responses that were waiting for resources.
    pub fn process_pending(&mut self, pool: &mut UnitPool) {
        if self.closing {
            return;
        }
        while let Some(&slot) = self.need_buffer.front() {
            let s = &mut self.slots[usize::from(slot)];
            let len = s.remote.map_or(0, |r| r.len);
            let n = (len as usize).div_ceil(pool.unit_size().max(1));
            let Some(units) = pool.take(n) else {
                break;
            };
            self.need_buffer.pop_front();
            s.units = units;
            s.state = St::HaveBuffer;
            if s.dir == Dir::HostToCtrl {
                s.state = St::DataTransferToControllerPending;
                self.read_pending.push_back(slot);
            } else {
                s.state = St::ReadyToExecute;
                let req = Request::new(s.sqe, len);
                self.submit(slot, req);
            }
        }
        while let Some(&slot) = self.read_pending.front() {
            if self.reads_in_flight >= u32::from(self.cfg.read_depth)
                || self.send_in_flight >= self.cfg.max_send_depth
            {
                break;
            }
            self.read_pending.pop_front();
            let s = &mut self.slots[usize::from(slot)];
            let Some(remote) = s.remote else {
                continue;
            };
            s.state = St::TransferringHostToController;
            s.wrs = 1;
            self.reads_in_flight += 1;
            self.send_in_flight += 1;
            let local = pool.sges(&s.units, remote.len);
            self.actions.push_back(Action::Read {
                slot,
                remote,
                local,
            });
        }
        self.process_sends();
    }

    fn process_sends(&mut self) {
        while let Some(&slot) = self.send_pending.front() {
            let s = &mut self.slots[usize::from(slot)];
            let need = if s.pending.as_ref().is_some_and(|p| p.1.is_some()) {
                2
            } else {
                1
            };
            if self.send_in_flight + need > self.cfg.max_send_depth {
                break;
            }
            self.send_pending.pop_front();
            let Some((cqe, write)) = s.pending.take() else {
                continue;
            };
            s.state = if write.is_some() {
                St::TransferringControllerToHost
            } else {
                St::ReadyToComplete
            };
            if s.state == St::ReadyToComplete {
                s.state = St::Completing;
            }
            s.wrs = need;
            self.send_in_flight += need;
            self.actions.push_back(Action::Send {
                slot,
                write,
                cqe,
                invalidate: s.invalidate,
            });
        }
    }

    /// The RDMA READ of `slot` completed (`ok` false: flushed or failed).
    pub fn on_read_done(&mut self, pool: &mut UnitPool, slot: u16, ok: bool) {
        let Some(s) = self.slots.get_mut(usize::from(slot)) else {
            tracing::error!(slot, "READ completion for an unknown slot");
            return;
        };
        if s.state != St::TransferringHostToController {
            tracing::error!(slot, state = ?s.state, "unexpected READ completion");
            return;
        }
        self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
        self.send_in_flight = self.send_in_flight.saturating_sub(s.wrs);
        s.wrs = 0;
        if !ok || self.closing {
            tracing::debug!(slot, "RDMA READ did not complete; request dropped");
            self.release(pool, slot);
            return;
        }
        let len = s.remote.map_or(0, |r| r.len);
        let data = pool.read_out(&s.units, len);
        let sqe = s.sqe;
        let mut units = std::mem::take(&mut s.units);
        pool.put(&mut units);
        s.state = St::ReadyToExecute;
        self.submit(slot, Request::with_data(sqe, DataBuf::from_vec(data)));
        self.process_pending(pool);
    }

    /// The target core answered a command.
    pub fn on_response(&mut self, pool: &mut UnitPool, rsp: Response) {
        let cid = rsp.cqe.cid();
        let Some(&slot) = self.by_cid.get(&cid) else {
            tracing::error!(cid, "response for a command that is not in flight");
            return;
        };
        let s = &mut self.slots[usize::from(slot)];
        if s.state != St::Executing {
            tracing::error!(cid, state = ?s.state, "response in unexpected state");
            return;
        }
        s.state = St::Executed;
        let mut write = None;
        if let (Some(data), Some(remote), Dir::CtrlToHost) = (rsp.data.as_ref(), s.remote, s.dir)
            && rsp.cqe.status().is_success()
        {
            let total = u32::try_from(data.total_len()).unwrap_or(u32::MAX);
            let len = total.min(remote.len);
            if total > remote.len {
                tracing::warn!(
                    cid,
                    total,
                    sgl = remote.len,
                    "response data truncated to the SGL"
                );
            }
            if len > 0 {
                pool.write_in(&s.units, data, len);
                write = Some((RemoteBuf { len, ..remote }, pool.sges(&s.units, len)));
            }
        }
        s.state = if write.is_some() {
            St::DataTransferToHostPending
        } else {
            St::ReadyToCompletePending
        };
        s.pending = Some((rsp.cqe, write));
        self.send_pending.push_back(slot);
        self.process_sends();
    }

    /// The SEND of `slot`'s response completed (`ok` false: flushed or failed).
    pub fn on_send_done(&mut self, pool: &mut UnitPool, slot: u16, ok: bool) {
        let Some(s) = self.slots.get_mut(usize::from(slot)) else {
            tracing::error!(slot, "SEND completion for an unknown slot");
            return;
        };
        if !matches!(s.state, St::Completing | St::TransferringControllerToHost) {
            tracing::error!(slot, state = ?s.state, "unexpected SEND completion");
            return;
        }
        if !ok {
            tracing::debug!(slot, "response SEND did not complete");
        }
        self.send_in_flight = self.send_in_flight.saturating_sub(s.wrs);
        s.wrs = 0;
        s.state = St::Completed;
        self.release(pool, slot);
        self.process_pending(pool);
    }

    fn release(&mut self, pool: &mut UnitPool, slot: u16) {
        let s = &mut self.slots[usize::from(slot)];
        pool.put(&mut s.units);
        let cid = s.sqe.cid();
        if self.by_cid.get(&cid) == Some(&slot) {
            self.by_cid.remove(&cid);
        }
        *s = Slot::free();
        self.free.push(slot);
    }

    /// Tears the queue down: requests waiting for resources or executing in the target core
    /// are released now (their responses will never come); requests with posted work
    /// requests wait for those to complete (flushed) through `on_*_done`.
    pub fn disconnect(&mut self, pool: &mut UnitPool) {
        if self.closing {
            return;
        }
        self.closing = true;
        for a in std::mem::take(&mut self.actions) {
            // Work requests never posted will never complete: take their credit back.
            let (slot, read) = match a {
                Action::Read { slot, .. } => (slot, true),
                Action::Send { slot, .. } => (slot, false),
                Action::Submit(_) => continue,
            };
            let wrs = self.slots[usize::from(slot)].wrs;
            self.send_in_flight = self.send_in_flight.saturating_sub(wrs);
            if read {
                self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
            }
            self.release(pool, slot);
        }
        self.need_buffer.clear();
        self.read_pending.clear();
        self.send_pending.clear();
        for i in 0..self.slots.len() {
            let slot = i as u16;
            let st = self.slots[i].state;
            if !matches!(
                st,
                St::Free
                    | St::TransferringHostToController
                    | St::TransferringControllerToHost
                    | St::Completing
            ) {
                self.release(pool, slot);
            }
        }
    }
}
