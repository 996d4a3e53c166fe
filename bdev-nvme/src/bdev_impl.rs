//! One NVMe namespace as a bdev (SPDK `bdev_nvme.c` I/O path): per-Thread channels own an
//! I/O queue pair and a poller; large I/O is split into several NVMe commands.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bdev::module::BdevOps;
use bdev::{BdevError, BdevIo, IoRequest, IoStatus, IoType};
use nvme::host::{Completion, HostError, IoQpair, Rejected};
use serde_json::{Value, json};

use crate::ctrlr::NvmeCtrlr;

/// Most DSM ranges per command and blocks per range.
const DSM_MAX_RANGES: usize = 256;
const DSM_MAX_RANGE_BLOCKS: u64 = u32::MAX as u64;
/// Most blocks of one Write Zeroes command (NLB is 16 bits, 0-based).
const WZ_MAX_BLOCKS: u64 = 0x1_0000;

/// Operations of one NVMe bdev.
#[derive(Debug)]
pub struct NvmeBdev {
    ctrlr: Arc<NvmeCtrlr>,
    nsid: u32,
    block_size: u32,
    max_blocks: u64,
}

impl NvmeBdev {
    /// A bdev for namespace `nsid` of `ctrlr`; reads and writes are split at `max_blocks`.
    pub fn new(ctrlr: Arc<NvmeCtrlr>, nsid: u32, block_size: u32, max_blocks: u64) -> Self {
        NvmeBdev {
            ctrlr,
            nsid,
            block_size,
            max_blocks: max_blocks.max(1),
        }
    }
}

/// One bdev I/O in flight, maybe split into several commands.
struct Parent {
    io: Option<BdevIo>,
    pending: u32,
    status: IoStatus,
    /// Bytes per child command (read data lands at child index x this).
    chunk_bytes: usize,
}

struct ChanState {
    qpair: IoQpair,
    parents: Vec<Option<Parent>>,
    free: Vec<u32>,
    done: Vec<Completion>,
    failed_at: Option<Instant>,
}

/// A per-Thread channel: the queue pair and the poller that reaps it (and, when the reactors
/// run in interrupt mode, an fd interrupt on the queue pair's socket so that a completion
/// wakes a sleeping reactor).
pub struct NvmeChannel {
    // Declared (so dropped) first: the interrupt must go before the socket it watches.
    _intr: Rc<RefCell<Option<(RawFd, env::Interrupt)>>>,
    st: Rc<RefCell<ChanState>>,
    _poller: env::Poller,
}

/// In interrupt mode: keeps an fd interrupt registered on the queue pair's current socket.
/// Dropped as soon as the qpair failed (its socket is still open then, so the epoll entry
/// removed is ours), registered again once a reconnect gave the qpair a new socket.
fn arm_interrupt(
    st: &Rc<RefCell<ChanState>>,
    ctrlr: &Arc<NvmeCtrlr>,
    slot: &RefCell<Option<(RawFd, env::Interrupt)>>,
) {
    let want = {
        let s = st.borrow();
        if s.qpair.failure().is_some() {
            None
        } else {
            s.qpair.raw_fd()
        }
    };
    let have = slot.borrow().as_ref().map(|(fd, _)| *fd);
    if want == have {
        return;
    }
    // Drop the old registration first: the new socket may reuse the descriptor number.
    slot.borrow_mut().take();
    let Some(fd) = want else { return };
    let weak = Rc::downgrade(st);
    let c = Arc::clone(ctrlr);
    match env::interrupt_register(fd, move || {
        let Some(st) = weak.upgrade() else {
            return env::PollStatus::Idle;
        };
        let busy = st.borrow_mut().poll(&c);
        env::PollStatus::from_busy(busy)
    }) {
        Ok(i) => *slot.borrow_mut() = Some((fd, i)),
        Err(e) => {
            tracing::error!(ctrlr = %ctrlr.name(), error = %e, "cannot register the I/O queue pair interrupt");
        }
    }
}

fn tag(parent: u32, child: u32) -> u64 {
    (u64::from(parent) << 32) | u64::from(child)
}

fn status_of(c: &Completion) -> IoStatus {
    if c.is_success() {
        IoStatus::Success
    } else {
        IoStatus::NvmeError {
            sct: c.status.sct.0,
            sc: c.status.sc,
            cdw0: c.dw0,
        }
    }
}

impl ChanState {
    fn alloc_parent(&mut self, io: BdevIo, chunk_bytes: usize) -> u32 {
        let p = Parent {
            io: Some(io),
            pending: 0,
            status: IoStatus::Success,
            chunk_bytes,
        };
        match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.parents.get_mut(i as usize) {
                    *s = Some(p);
                }
                i
            }
            None => {
                self.parents.push(Some(p));
                (self.parents.len() - 1) as u32
            }
        }
    }

    /// Child completed (or failed to submit): account and complete the parent when done.
    fn child_done(&mut self, idx: u32, child: u32, c: Option<Completion>, fail: Option<IoStatus>) {
        let Some(Some(p)) = self.parents.get_mut(idx as usize) else {
            tracing::error!(parent = idx, "completion for an unknown bdev I/O");
            return;
        };
        if let Some(c) = c {
            let st = status_of(&c);
            if st == IoStatus::Success {
                if let Some(io) = p.io.as_mut()
                    && let IoRequest::Read { bufs, .. } = io.request_mut()
                {
                    bufs.copy_from_slice_at(child as usize * p.chunk_bytes, &c.buf);
                }
            } else if p.status == IoStatus::Success {
                p.status = st;
            }
            p.pending = p.pending.saturating_sub(1);
        }
        if let Some(f) = fail
            && p.status == IoStatus::Success
        {
            p.status = f;
        }
        if p.pending == 0 {
            self.finish(idx);
        }
    }

    fn finish(&mut self, idx: u32) {
        if let Some(slot) = self.parents.get_mut(idx as usize)
            && let Some(mut p) = slot.take()
        {
            if let Some(io) = p.io.take() {
                io.complete(p.status);
            }
            self.free.push(idx);
        }
    }

    fn poll(&mut self, ctrlr: &NvmeCtrlr) -> bool {
        let mut done = std::mem::take(&mut self.done);
        let r = self.qpair.process_completions(&mut done);
        let n = done.len();
        for c in done.drain(..) {
            let (idx, child) = ((c.tag >> 32) as u32, c.tag as u32);
            self.child_done(idx, child, Some(c), None);
        }
        self.done = done;
        if let Err(e) = r {
            let now = Instant::now();
            match self.failed_at {
                None => {
                    tracing::error!(ctrlr = %ctrlr.name(), error = %e, "I/O queue pair failed");
                    self.failed_at = Some(now);
                }
                Some(t) => {
                    if let Some(delay) = ctrlr.reconnect_delay()
                        && now.duration_since(t) >= delay
                    {
                        self.failed_at = Some(now);
                        match ctrlr.lock().reconnect_io_qpair(&mut self.qpair) {
                            Ok(()) => {
                                tracing::info!(ctrlr = %ctrlr.name(), "I/O queue pair reconnected");
                                self.failed_at = None;
                            }
                            Err(e) => {
                                tracing::warn!(ctrlr = %ctrlr.name(), error = %e, "I/O queue pair reconnect failed");
                            }
                        }
                    }
                }
            }
        }
        n > 0
    }
}

/// What to send for one child command.
enum Cmd {
    Read { lba: u64, len: usize },
    Write { lba: u64, data: Vec<u8> },
    WriteZeroes { lba: u64, nlb: u32 },
    Dsm { ranges: Vec<(u64, u32)> },
    Flush,
}

impl NvmeBdev {
    fn children(&self, io: &IoRequest) -> Result<(Vec<Cmd>, usize), IoStatus> {
        let bs = u64::from(self.block_size);
        let chunk = self.max_blocks;
        let split = |off: u64, n: u64, step: u64| {
            let mut v = Vec::new();
            let mut o = 0;
            while o < n {
                let k = (n - o).min(step);
                v.push((off + o, k));
                o += k;
            }
            v
        };
        Ok(match io {
            IoRequest::Read {
                offset_blocks,
                num_blocks,
                ..
            } => (
                split(*offset_blocks, *num_blocks, chunk)
                    .into_iter()
                    .map(|(lba, n)| Cmd::Read {
                        lba,
                        len: (n * bs) as usize,
                    })
                    .collect(),
                (chunk * bs) as usize,
            ),
            IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs,
            } => {
                let mut v = Vec::new();
                for (i, (lba, n)) in split(*offset_blocks, *num_blocks, chunk)
                    .into_iter()
                    .enumerate()
                {
                    let mut data = vec![0u8; (n * bs) as usize];
                    bufs.copy_to_slice_at(i * (chunk * bs) as usize, &mut data);
                    v.push(Cmd::Write { lba, data });
                }
                (v, (chunk * bs) as usize)
            }
            IoRequest::WriteZeroes {
                offset_blocks,
                num_blocks,
            } => (
                split(*offset_blocks, *num_blocks, WZ_MAX_BLOCKS)
                    .into_iter()
                    .map(|(lba, n)| Cmd::WriteZeroes { lba, nlb: n as u32 })
                    .collect(),
                0,
            ),
            IoRequest::Unmap {
                offset_blocks,
                num_blocks,
            } => {
                let ranges: Vec<(u64, u32)> =
                    split(*offset_blocks, *num_blocks, DSM_MAX_RANGE_BLOCKS)
                        .into_iter()
                        .map(|(l, n)| (l, n as u32))
                        .collect();
                (
                    ranges
                        .chunks(DSM_MAX_RANGES)
                        .map(|c| Cmd::Dsm { ranges: c.to_vec() })
                        .collect(),
                    0,
                )
            }
            IoRequest::Flush { .. } => (vec![Cmd::Flush], 0),
            _ => return Err(IoStatus::Invalid(bdev::InvalidIo::Unsupported)),
        })
    }
}

impl BdevOps for NvmeBdev {
    type Channel = NvmeChannel;

    fn create_channel(&self) -> Result<NvmeChannel, BdevError> {
        let qpair = self
            .ctrlr
            .lock()
            .alloc_io_qpair(self.ctrlr.io_queue_size())
            .map_err(|e| BdevError::NoMemory(format!("I/O queue pair: {e}")))?;
        let st = Rc::new(RefCell::new(ChanState {
            qpair,
            parents: Vec::new(),
            free: Vec::new(),
            done: Vec::new(),
            failed_at: None,
        }));
        let interrupt_mode = env::reactors().is_some_and(|r| r.interrupt_mode());
        let intr: Rc<RefCell<Option<(RawFd, env::Interrupt)>>> = Rc::default();
        if interrupt_mode {
            arm_interrupt(&st, &self.ctrlr, &intr);
        }
        let st2 = Rc::downgrade(&st);
        let intr2 = Rc::downgrade(&intr);
        let ctrlr = Arc::clone(&self.ctrlr);
        let poller = env::poller_register(move || {
            let Some(st) = st2.upgrade() else {
                return env::PollStatus::Idle;
            };
            let busy = {
                let mut s = st.borrow_mut();
                // Bytes the socket did not take yet must not wait for a wake-up.
                s.poll(&ctrlr) || s.qpair.has_unsent()
            };
            if interrupt_mode && let Some(intr) = intr2.upgrade() {
                arm_interrupt(&st, &ctrlr, &intr);
            }
            env::PollStatus::from_busy(busy)
        })
        .map_err(|_| BdevError::NoThread)?;
        Ok(NvmeChannel {
            _intr: intr,
            st,
            _poller: poller,
        })
    }

    fn submit_request(&self, ch: &NvmeChannel, io: BdevIo) {
        let (cmds, chunk_bytes) = match self.children(io.request()) {
            Ok(v) => v,
            Err(s) => return io.complete(s),
        };
        let mut st = ch.st.borrow_mut();
        if st.qpair.failure().is_some() {
            return io.complete(IoStatus::Failed);
        }
        if st.qpair.depth() - st.qpair.outstanding() < cmds.len() {
            // The bdev layer queues and retries it once I/O completes.
            return io.complete(IoStatus::Nomem);
        }
        let idx = st.alloc_parent(io, chunk_bytes);
        let total = cmds.len();
        for (i, cmd) in cmds.into_iter().enumerate() {
            let t = tag(idx, i as u32);
            let nsid = self.nsid;
            let r: Result<u16, Rejected> = match cmd {
                Cmd::Read { lba, len } => st.qpair.read(nsid, lba, vec![0u8; len], t),
                Cmd::Write { lba, data } => st.qpair.write(nsid, lba, data, t),
                Cmd::WriteZeroes { lba, nlb } => st.qpair.write_zeroes(nsid, lba, nlb, t),
                Cmd::Dsm { ranges } => st.qpair.deallocate(nsid, &ranges, t),
                Cmd::Flush => st.qpair.flush(nsid, t),
            };
            match r {
                Ok(_) => {
                    if let Some(Some(p)) = st.parents.get_mut(idx as usize) {
                        p.pending += 1;
                    }
                }
                Err(rej) => {
                    tracing::error!(error = %rej.error, child = i, of = total, "NVMe command not submitted");
                    let status = match rej.error {
                        HostError::QueueFull if i == 0 => IoStatus::Nomem,
                        _ => IoStatus::Failed,
                    };
                    st.child_done(idx, i as u32, None, Some(status));
                    return;
                }
            }
        }
    }

    fn io_type_supported(&self, t: IoType) -> bool {
        matches!(
            t,
            IoType::Read | IoType::Write | IoType::Flush | IoType::Unmap | IoType::WriteZeroes
        )
    }

    fn dump_info_json(&self) -> Value {
        let c = self.ctrlr.lock();
        let t = self.ctrlr.trid();
        let cd = c.data();
        json!({
            "nvme": [{
                "trid": {
                    "trtype": t.trtype.as_str(),
                    "adrfam": t.adrfam.as_str(),
                    "traddr": t.traddr,
                    "trsvcid": t.trsvcid,
                    "subnqn": t.subnqn,
                },
                "ctrlr_data": {
                    "cntlid": cd.cntlid.get(),
                    "vendor_id": format!("0x{:04x}", cd.vid.get()),
                    "model_number": cd.model_number().unwrap_or_default(),
                    "serial_number": cd.serial_number().unwrap_or_default(),
                    "firmware_revision": cd.firmware_revision().unwrap_or_default(),
                    "subnqn": cd.subnqn().unwrap_or_default(),
                },
                "ns_data": { "id": self.nsid },
            }]
        })
    }

    fn destruct(&self) {
        tracing::debug!(nsid = self.nsid, ctrlr = %self.ctrlr.name(), "NVMe bdev destructed");
    }
}
