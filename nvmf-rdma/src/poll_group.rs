//! Per-Thread poll group: one CQ, PD and registered buffer pool per device, the queue pairs
//! placed here, and the loop that turns completions into [`RdmaQueue`] events and its
//! actions into posted work requests (SPDK `nvmf_rdma_poll_group_poll`).

use crate::cm;
use crate::config::{MAX_SGE, RdmaOpts};
use crate::proto::{Action, QueueConfig, RdmaQueue, Sge, UnitPool};
use crate::transport::RdmaConn;
use crate::verbs::{
    CmEventKind, CmId, Cq, DeviceAttr, EventChannel, OwnedMr, Pd, PoolMr, SendKind, SendOp, Srq, Wc,
};
use env::PollStatus;
use nvmf::transport::{AdrFam, ListenAddr, TransportPollGroup};
use nvmf::{NvmfError, Qpair};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// Work completions taken from a CQ per call.
const WC_BATCH: usize = 32;
/// Batches per CQ per poll (bounds one poll's work).
const MAX_BATCHES: usize = 8;
/// Size of a response capsule (a CQE).
const RSP_LEN: usize = 16;
/// Largest registered buffer pool per poll group and device.
const MAX_POOL_BYTES: u64 = 64 << 20;
/// How long a closing queue pair waits for its flushed work requests before it is destroyed
/// anyway (the device may be gone).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

const WR_RECV: u64 = 1;
const WR_READ: u64 = 2;
const WR_SEND: u64 = 3;
const WR_WRITE: u64 = 4;
/// Connection key of receives posted on a shared receive queue (connections start at 1).
const SRQ_KEY: u32 = 0;

fn wr_id(conn: u32, kind: u64, idx: u16) -> u64 {
    (u64::from(conn) << 32) | (kind << 16) | u64::from(idx)
}

fn split_wr_id(id: u64) -> (u32, u64, u16) {
    ((id >> 32) as u32, (id >> 16) & 0xffff, (id & 0xffff) as u16)
}

/// A device's shared receive queue with its receive buffers.
struct SharedRecv {
    // Field order: the SRQ goes before the buffers it receives into.
    srq: Srq,
    bufs: OwnedMr,
    /// Bytes of one receive buffer (SQE plus in-capsule data).
    recv_size: u32,
}

impl SharedRecv {
    fn post(&self, idx: u16) -> Result<(), crate::RdmaError> {
        let off = usize::from(idx) * self.recv_size as usize;
        self.srq.post_recv(
            wr_id(SRQ_KEY, WR_RECV, idx),
            self.bufs.addr(off),
            self.recv_size,
            self.bufs.lkey(),
        )
    }
}

struct Device {
    key: usize,
    // Field order: the pool registration, the SRQ, then the CQ, then the PD are released.
    pool_mr: PoolMr,
    srq: Option<SharedRecv>,
    cq: Cq,
    pd: Pd,
    cq_size: u32,
    cq_used: u32,
}

struct Conn {
    // Field order: the id (and its QP) goes first, then the buffers it used, then its channel.
    id: CmId,
    /// Per-QP receive buffers (None when the device's SRQ is used).
    recv: Option<OwnedMr>,
    rsp: OwnedMr,
    chan: EventChannel,
    dev: usize,
    queue: RdmaQueue,
    qpair: Qpair,
    /// Bytes of one receive buffer (SQE plus in-capsule data).
    recv_size: u32,
    recvs_posted: u32,
    cq_share: u32,
    /// The device can SEND with invalidate; otherwise the host invalidates its own keys.
    send_with_invalidate: bool,
    closing: Option<Instant>,
}

/// The RDMA transport's poll group.
pub struct RdmaPollGroup {
    // Field order: connections are destroyed before the devices' CQs and PDs.
    conns: BTreeMap<u32, Conn>,
    /// Connection key by local QP number (receives on a shared queue name only the QP).
    by_qpn: BTreeMap<u32, u32>,
    devices: Vec<Device>,
    pool: Rc<RefCell<UnitPool>>,
    opts: RdmaOpts,
    next_key: u32,
    wcs: Vec<Wc>,
}

impl std::fmt::Debug for RdmaPollGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaPollGroup")
            .field("conns", &self.conns.len())
            .field("devices", &self.devices.len())
            .finish()
    }
}

impl RdmaPollGroup {
    /// An empty poll group; its buffer pool (`num_shared_buffers` units of `io_unit_size`,
    /// at most 64 MiB, at least one full I/O) is registered with each device on first use.
    /// Fails with [`NvmfError::Env`] (ENOMEM, logged) when the pool cannot be allocated.
    pub fn new(opts: RdmaOpts) -> Result<RdmaPollGroup, NvmfError> {
        let unit = u64::from(opts.io_unit_size.max(1));
        let units = u64::from(opts.num_shared_buffers)
            .min(MAX_POOL_BYTES / unit)
            .max(u64::from(opts.units_per_io()));
        let units = u32::try_from(units).map_err(|_| {
            NvmfError::InvalidParam(format!("{units} buffer units do not fit a u32"))
        })?;
        let pool = UnitPool::new(opts.io_unit_size, units)?;
        Ok(RdmaPollGroup {
            conns: BTreeMap::new(),
            by_qpn: BTreeMap::new(),
            devices: Vec::new(),
            pool: Rc::new(RefCell::new(pool)),
            opts,
            next_key: 1,
            wcs: Vec::with_capacity(WC_BATCH),
        })
    }

    fn device_for(&mut self, id: &CmId, attr: &DeviceAttr) -> Result<usize, NvmfError> {
        let key = id.device_key();
        if let Some(i) = self.devices.iter().position(|d| d.key == key) {
            return Ok(i);
        }
        let pd = Pd::new(id)?;
        let cq_size = self.opts.num_cqe.min(attr.max_cqe.max(1));
        let cq = Cq::new(id, cq_size)?;
        let pool_mr = PoolMr::new(&pd, &self.pool)?;
        let srq = if self.opts.no_srq || attr.max_srq_wr == 0 {
            None
        } else {
            let depth = self
                .opts
                .max_srq_depth
                .min(attr.max_srq_wr)
                .min(u32::from(u16::MAX));
            let recv_size = self.opts.recv_size();
            let sr = SharedRecv {
                srq: Srq::new(&pd, depth)?,
                bufs: OwnedMr::new(
                    &pd,
                    u64::from(recv_size) * u64::from(depth),
                    "NVMe/RDMA shared receive buffers",
                )?,
                recv_size,
            };
            for i in 0..depth as u16 {
                sr.post(i)?;
            }
            tracing::info!(depth, "NVMe/RDMA shared receive queue created");
            Some(sr)
        };
        self.devices.push(Device {
            key,
            pool_mr,
            srq,
            cq,
            pd,
            cq_size,
            cq_used: 0,
        });
        Ok(self.devices.len() - 1)
    }

    fn setup(&mut self, conn: RdmaConn, qpair: Qpair) -> Result<(), NvmfError> {
        let RdmaConn {
            id,
            addr,
            peer,
            negotiated,
            attr,
            qid,
        } = conn;
        let fail = |id: &CmId| id.reject(&cm::reject_private_data(cm::RejectStatus::NO_RESOURCES));
        let dev = match self.device_for(&id, &attr) {
            Ok(d) => d,
            Err(e) => {
                fail(&id);
                return Err(e);
            }
        };
        let depth = negotiated.queue_depth;
        let send_wr = (u32::from(depth) * 3 + 2).min(attr.max_qp_wr.max(2));
        let cq_share = send_wr + u32::from(depth);
        let d = &mut self.devices[dev];
        if d.cq_used + cq_share > d.cq_size {
            fail(&id);
            return Err(NvmfError::NoSpace(format!(
                "completion queue of {} entries is full",
                d.cq_size
            )));
        }
        let chan = EventChannel::new()?;
        let recv_size = self.opts.recv_size();
        let built = (|| {
            id.migrate(&chan)?;
            id.create_qp(
                &d.pd,
                &d.cq,
                d.srq.as_ref().map(|s| &s.srq),
                send_wr,
                u32::from(depth),
                MAX_SGE.min(attr.max_sge.max(1)),
            )?;
            let recv = match d.srq {
                Some(_) => None,
                None => Some(OwnedMr::new(
                    &d.pd,
                    u64::from(recv_size) * u64::from(depth),
                    "NVMe/RDMA receive buffers",
                )?),
            };
            let rsp = OwnedMr::new(
                &d.pd,
                RSP_LEN as u64 * u64::from(depth),
                "NVMe/RDMA response buffers",
            )?;
            Ok::<_, crate::RdmaError>((recv, rsp))
        })();
        let (recv, rsp) = match built {
            Ok(b) => b,
            Err(e) => {
                fail(&id);
                return Err(e.into());
            }
        };
        d.cq_used += cq_share;
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1).max(1);
        qpair.set_listen_addr(addr.clone());
        if let Some(p) = peer {
            qpair.set_peer_addr(ListenAddr {
                trtype: "RDMA".into(),
                adrfam: if p.is_ipv4() {
                    AdrFam::Ipv4
                } else {
                    AdrFam::Ipv6
                },
                traddr: p.ip().to_string(),
                trsvcid: p.port().to_string(),
            });
        }
        let queue = RdmaQueue::new(QueueConfig {
            depth,
            read_depth: negotiated.read_depth,
            max_send_depth: send_wr,
            in_capsule_data_size: self.opts.in_capsule_data_size,
            max_io_size: self.opts.max_io_size,
        });
        let mut c = Conn {
            id,
            recv,
            rsp,
            chan,
            dev,
            queue,
            qpair,
            recv_size,
            recvs_posted: 0,
            cq_share,
            send_with_invalidate: attr.send_with_invalidate,
            closing: None,
        };
        for i in 0..depth {
            if c.recv.is_none() {
                break;
            }
            if let Err(e) = c.post_recv(key, i) {
                fail(&c.id);
                self.devices[dev].cq_used -= cq_share;
                return Err(e.into());
            }
        }
        let ird = u8::try_from(negotiated.read_depth).unwrap_or(u8::MAX);
        if let Err(e) = c.id.accept(&cm::accept_private_data(depth), ird) {
            self.devices[dev].cq_used -= cq_share;
            return Err(e.into());
        }
        tracing::info!(%addr, qid, depth, srq = c.recv.is_none(), "NVMe/RDMA queue pair accepted");
        self.by_qpn.insert(c.id.qp_num(), key);
        self.conns.insert(key, c);
        Ok(())
    }

    /// A receive on device `dev`'s shared queue: route it by QP number, then repost it.
    fn on_srq_recv(&mut self, dev: usize, wc: Wc, idx: u16) {
        let Some(sr) = self.devices.get(dev).and_then(|d| d.srq.as_ref()) else {
            return;
        };
        let conn = self
            .by_qpn
            .get(&wc.qp_num)
            .and_then(|k| self.conns.get_mut(k));
        if let Some(c) = conn {
            let mut pool = self.pool.borrow_mut();
            if !wc.ok {
                if c.closing.is_none() {
                    tracing::error!(
                        status = wc.status,
                        "receive failed; tearing the queue pair down"
                    );
                }
                c.close(&mut pool);
            } else if c.closing.is_none() {
                let off = usize::from(idx) * sr.recv_size as usize;
                let len = (wc.byte_len as usize).min(sr.recv_size as usize);
                let res = match sr.bufs.bytes().get(off..off + len) {
                    Some(capsule) => c.queue.on_recv(&mut pool, capsule),
                    None => Err(crate::RdmaError::Protocol(
                        "receive index out of range".into(),
                    )),
                };
                if let Err(e) = res {
                    tracing::error!(error = %e, "NVMe/RDMA host error; tearing the queue pair down");
                    c.close(&mut pool);
                }
            }
        } else {
            tracing::debug!(qp_num = wc.qp_num, "receive for a destroyed queue pair");
        }
        if let Err(e) = sr.post(idx) {
            tracing::error!(error = %e, "cannot repost a shared receive");
        }
    }

    fn on_wc(&mut self, dev: usize, wc: Wc) {
        let (key, kind, idx) = split_wr_id(wc.wr_id);
        if key == SRQ_KEY && kind == WR_RECV {
            self.on_srq_recv(dev, wc, idx);
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            tracing::debug!(wr_id = wc.wr_id, "completion for a destroyed queue pair");
            return;
        };
        let mut pool = self.pool.borrow_mut();
        if !wc.ok && c.closing.is_none() {
            tracing::error!(
                status = wc.status,
                kind,
                "work request failed; tearing the queue pair down"
            );
        }
        match kind {
            WR_RECV => {
                c.recvs_posted = c.recvs_posted.saturating_sub(1);
                if !wc.ok || c.closing.is_some() {
                    c.close(&mut pool);
                    return;
                }
                let off = usize::from(idx) * c.recv_size as usize;
                let len = (wc.byte_len as usize).min(c.recv_size as usize);
                let bytes = c.recv.as_ref().map(|r| r.bytes()).unwrap_or_default();
                let res = match bytes.get(off..off + len) {
                    Some(capsule) => c.queue.on_recv(&mut pool, capsule),
                    None => Err(crate::RdmaError::Protocol(
                        "receive index out of range".into(),
                    )),
                };
                if let Err(e) = res {
                    tracing::error!(error = %e, "NVMe/RDMA host error; tearing the queue pair down");
                    c.close(&mut pool);
                    return;
                }
                if let Err(e) = c.post_recv(key, idx) {
                    tracing::error!(error = %e, "cannot repost a receive");
                    c.close(&mut pool);
                }
            }
            WR_READ => {
                c.queue.on_read_done(&mut pool, idx, wc.ok);
                if !wc.ok {
                    c.close(&mut pool);
                }
            }
            WR_SEND => {
                c.queue.on_send_done(&mut pool, idx, wc.ok);
                if !wc.ok {
                    c.close(&mut pool);
                }
            }
            _ => {
                // Unsignaled WRITEs only complete on error; the SEND after them is flushed.
                if !wc.ok {
                    c.close(&mut pool);
                }
            }
        }
    }
}

impl Conn {
    fn post_recv(&mut self, key: u32, idx: u16) -> Result<(), crate::RdmaError> {
        let Some(recv) = self.recv.as_ref() else {
            return Ok(());
        };
        let off = usize::from(idx) * self.recv_size as usize;
        self.id.post_recv(
            wr_id(key, WR_RECV, idx),
            recv.addr(off),
            self.recv_size,
            recv.lkey(),
        )?;
        self.recvs_posted += 1;
        Ok(())
    }

    fn close(&mut self, pool: &mut UnitPool) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some(Instant::now());
        self.qpair.disconnect();
        self.queue.disconnect(pool);
        self.id.disconnect();
    }

    fn quiesced(&self) -> bool {
        match self.closing {
            None => false,
            Some(t) => {
                (self.queue.is_quiesced() && self.recvs_posted == 0) || t.elapsed() > FLUSH_TIMEOUT
            }
        }
    }

    /// Runs responses and actions until neither produces anything; true when busy.
    fn drive(&mut self, key: u32, pool: &mut UnitPool, pool_mr: &PoolMr) -> bool {
        let mut busy = false;
        loop {
            let mut progressed = false;
            while let Some(rsp) = self.qpair.poll_response() {
                progressed = true;
                self.queue.on_response(pool, rsp);
            }
            self.queue.process_pending(pool);
            while let Some(a) = self.queue.poll_action() {
                progressed = true;
                self.execute(key, a, pool, pool_mr);
            }
            if self.closing.is_none() && self.qpair.is_disconnected() {
                tracing::info!(
                    qid = self.qpair.qid(),
                    "queue pair disconnected by the target"
                );
                self.close(pool);
                progressed = true;
            }
            if !progressed {
                return busy;
            }
            busy = true;
        }
    }

    fn sges(pool_mr: &PoolMr, local: &[Sge]) -> Vec<(u64, u32, u32)> {
        local
            .iter()
            .map(|s| (pool_mr.addr(s.offset), s.len, pool_mr.lkey()))
            .collect()
    }

    fn execute(&mut self, key: u32, a: Action, pool: &mut UnitPool, pool_mr: &PoolMr) {
        match a {
            Action::Submit(req) => self.qpair.handle_request(req),
            Action::Read {
                slot,
                remote,
                local,
            } => {
                let op = SendOp {
                    wr_id: wr_id(key, WR_READ, slot),
                    kind: SendKind::Read(remote),
                    signaled: true,
                    sges: Self::sges(pool_mr, &local),
                };
                if let Err(e) = self.id.post_send(&[op]) {
                    tracing::error!(error = %e, "cannot post RDMA READ");
                    self.queue.on_read_done(pool, slot, false);
                    self.close(pool);
                }
            }
            Action::Send {
                slot,
                write,
                cqe,
                invalidate,
            } => {
                let off = usize::from(slot) * RSP_LEN;
                if let Some(dst) = self.rsp.bytes_mut().get_mut(off..off + RSP_LEN) {
                    dst.copy_from_slice(cqe.as_bytes());
                }
                let mut ops = Vec::with_capacity(2);
                if let Some((remote, local)) = write {
                    ops.push(SendOp {
                        wr_id: wr_id(key, WR_WRITE, slot),
                        kind: SendKind::Write(remote),
                        signaled: false,
                        sges: Self::sges(pool_mr, &local),
                    });
                }
                ops.push(SendOp {
                    wr_id: wr_id(key, WR_SEND, slot),
                    kind: SendKind::Send {
                        invalidate: invalidate.filter(|_| self.send_with_invalidate),
                    },
                    signaled: true,
                    sges: vec![(self.rsp.addr(off), RSP_LEN as u32, self.rsp.lkey())],
                });
                if let Err(e) = self.id.post_send(&ops) {
                    tracing::error!(error = %e, "cannot post response SEND");
                    self.queue.on_send_done(pool, slot, false);
                    self.close(pool);
                }
            }
        }
    }
}

impl TransportPollGroup for RdmaPollGroup {
    type Connection = RdmaConn;

    fn add_qpair(&mut self, conn: RdmaConn, qpair: Qpair) -> Result<(), NvmfError> {
        self.setup(conn, qpair)
    }

    fn poll(&mut self) -> PollStatus {
        let mut busy = false;
        // CM events: disconnects, device removal, address changes.
        for c in self.conns.values_mut() {
            while let Some(ev) = c.chan.get_event() {
                busy = true;
                match ev.kind() {
                    CmEventKind::Gone => {
                        tracing::info!("NVMe/RDMA host disconnected");
                        drop(ev);
                        c.close(&mut self.pool.borrow_mut());
                    }
                    other => tracing::debug!(?other, "CM event"),
                }
            }
        }
        // Completions.
        for d in 0..self.devices.len() {
            for _ in 0..MAX_BATCHES {
                let mut wcs = std::mem::take(&mut self.wcs);
                self.devices[d].cq.poll(&mut wcs, WC_BATCH);
                let n = wcs.len();
                for wc in wcs.drain(..) {
                    self.on_wc(d, wc);
                }
                self.wcs = wcs;
                busy |= n > 0;
                if n < WC_BATCH {
                    break;
                }
            }
        }
        // Responses, pending work and actions.
        let mut pool = self.pool.borrow_mut();
        for (key, c) in self.conns.iter_mut() {
            let Some(d) = self.devices.get(c.dev) else {
                continue;
            };
            busy |= c.drive(*key, &mut pool, &d.pool_mr);
        }
        if busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }

    fn remove_qpair(&mut self) -> usize {
        let done: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.quiesced() && c.qpair.is_drained())
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some(c) = self.conns.remove(&k) {
                self.by_qpn.retain(|_, v| *v != k);
                if !(c.queue.is_quiesced() && c.recvs_posted == 0) {
                    tracing::warn!(
                        sends = c.queue.send_in_flight(),
                        recvs = c.recvs_posted,
                        "destroying a queue pair whose work requests were not flushed in time"
                    );
                }
                if let Some(d) = self.devices.get_mut(c.dev) {
                    d.cq_used = d.cq_used.saturating_sub(c.cq_share);
                }
                tracing::debug!(qid = c.qpair.qid(), "NVMe/RDMA queue pair destroyed");
            }
        }
        self.conns.len()
    }

    fn disconnect_all(&mut self) {
        let mut pool = self.pool.borrow_mut();
        for c in self.conns.values_mut() {
            c.close(&mut pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wr_id_round_trips_connection_kind_and_slot() {
        let id = wr_id(0xdead_beef, WR_SEND, 0xfffe);
        assert_eq!(split_wr_id(id), (0xdead_beef, WR_SEND, 0xfffe));
        assert_eq!(split_wr_id(wr_id(1, WR_RECV, 0)), (1, WR_RECV, 0));
    }

    #[test]
    fn poll_group_pool_is_bounded_and_holds_one_io() {
        let o = RdmaOpts {
            max_queue_depth: 128,
            in_capsule_data_size: 4096,
            max_io_size: 131_072,
            io_unit_size: 8192,
            num_shared_buffers: 1_000_000,
            max_srq_depth: 4096,
            no_srq: false,
            num_cqe: 4096,
            acceptor_backlog: 100,
            no_wr_batching: false,
        };
        let pg = RdmaPollGroup::new(o.clone()).unwrap();
        assert_eq!(pg.pool.borrow().free_units(), (64 << 20) / 8192);
        let pg = RdmaPollGroup::new(RdmaOpts {
            num_shared_buffers: 16,
            ..o
        })
        .unwrap();
        assert_eq!(pg.pool.borrow().free_units(), 16);
    }
}
