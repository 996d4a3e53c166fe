//! NVM I/O commands mapped to bdev calls (SPDK `lib/nvmf/ctrlr_bdev.c`).
//!
//! Every command is checked before it reaches the bdev: namespace, LBA range, transfer length
//! against the SGL length, supported I/O types. Submission uses the poll group's own bdev
//! channel for the namespace; completions come back on the same Thread and become the
//! queue pair's response.

use crate::ctrlr::CtrlrShared;
use crate::poll_group::PgInner;
use crate::qpair::{QpairInner, Reply};
use crate::request::{DataBuf, Request};
use crate::reservation::{KEY_DATA_SIZE, RELEASE_DATA_SIZE, REPORT_EXT_HEADER_SIZE, ResvCommand};
use crate::subsystem::Namespace;
use bdev::{BdevChannel, InvalidIo, IoCompletion, IoRequest, IoStatus, IoType};
use nvme::spec::io::ReservationArgs;
use nvme::spec::{Fuse, GenericStatus, MediaStatus, NvmOpcode, Sct, Status};
use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::sync::Arc;

/// DSM range entry size in bytes (NVM Command Set 1.0, Figure 39).
const DSM_RANGE_SIZE: usize = 16;
/// DSM attribute: deallocate (CDW11 bit 2).
const DSM_AD: u32 = 1 << 2;
/// Copy source range entry size, format 0.
const COPY_RANGE_SIZE: usize = 32;
/// Reservation Report CDW11 bit 0: extended data structure (EDS).
const RESV_REPORT_EDS: u32 = 1 << 0;

fn st(s: GenericStatus) -> Reply {
    Reply::status(Status::from(s).with_dnr())
}

/// Maps a bdev completion status to an NVMe status (SPDK `spdk_bdev_io_get_nvme_status`).
pub(crate) fn nvme_status(s: IoStatus) -> Status {
    match s {
        IoStatus::Success => Status::SUCCESS,
        IoStatus::Miscompare => Status::from(MediaStatus::COMPARE_FAILURE),
        IoStatus::Aborted => Status::from(GenericStatus::ABORTED_BY_REQUEST),
        IoStatus::NvmeError { sct, sc, .. } => Status::new(Sct(sct), sc),
        IoStatus::Invalid(InvalidIo::OutOfRange) => {
            Status::from(GenericStatus::LBA_OUT_OF_RANGE).with_dnr()
        }
        IoStatus::Invalid(InvalidIo::Unsupported) => {
            Status::from(GenericStatus::INVALID_OPCODE).with_dnr()
        }
        IoStatus::Invalid(InvalidIo::BufferTooShort) => {
            Status::from(GenericStatus::DATA_SGL_LENGTH_INVALID).with_dnr()
        }
        IoStatus::Invalid(_) => Status::from(GenericStatus::INVALID_FIELD).with_dnr(),
        _ => Status::from(GenericStatus::INTERNAL_DEVICE_ERROR),
    }
}

/// The command an I/O belongs to, so an Abort can cancel it while it waits for bdev
/// resources.
#[derive(Clone)]
struct Abortable {
    q: Weak<QpairInner>,
    cid: u16,
}

impl Abortable {
    fn new(q: &Rc<QpairInner>, cid: u16) -> Option<Abortable> {
        Some(Abortable {
            q: Rc::downgrade(q),
            cid,
        })
    }
}

/// Submits `request`, retrying after `queue_io_wait` when the bdev is out of resources. While
/// it waits, an Abort of `ab`'s command completes the command and cancels the retry (the
/// request and `done` are dropped unsubmitted).
fn submit(
    ch: Rc<BdevChannel>,
    ab: Option<Abortable>,
    request: IoRequest,
    done: impl FnOnce(IoCompletion) + 'static,
) {
    let ch2 = ch.clone();
    ch.submit(request, move |c: IoCompletion| {
        if c.status != IoStatus::Nomem {
            done(c);
            return;
        }
        let ch3 = ch2.clone();
        let flag = ab
            .as_ref()
            .and_then(|a| a.q.upgrade().map(|q| q.wait_for_resources(a.cid)));
        ch2.queue_io_wait(move || {
            if let (Some(a), Some(f)) = (ab.as_ref(), flag.as_ref()) {
                if let Some(q) = a.q.upgrade() {
                    q.resources_ready(f);
                }
                if f.get() {
                    tracing::debug!(cid = a.cid, "aborted while waiting for bdev resources");
                    return;
                }
            }
            submit(ch3, ab, c.request, done)
        });
    });
}

/// What runs once a read's buffers are all there.
type ReadBufsDone = Box<dyn FnOnce(DataBuf)>;

/// A read gathering its data buffers from the iobuf pools.
struct Gather {
    acc: DataBuf,
    /// Bytes of the whole read.
    total: usize,
    left: usize,
    chunk: usize,
    ab: Option<Abortable>,
    then: ReadBufsDone,
    /// Set while the read waits: an Abort of its command sets it (the qpair's
    /// `wait_for_resources` list).
    flag: Option<Rc<Cell<bool>>>,
    /// This read is the Thread's one allowed to wait holding part of its buffers.
    holder: Option<PartialHolder>,
}

thread_local! {
    /// A read on this Thread waits holding part of its buffers.
    static PARTIAL_HELD: Cell<bool> = const { Cell::new(false) };
}

/// The right to wait holding part of a read's buffers (one per Thread), given up when dropped
/// (the read completes, is aborted or its queue pair goes away).
struct PartialHolder;

impl PartialHolder {
    fn claim() -> Option<PartialHolder> {
        PARTIAL_HELD.with(|h| (!h.replace(true)).then_some(PartialHolder))
    }
}

impl Drop for PartialHolder {
    fn drop(&mut self) {
        PARTIAL_HELD.with(|h| h.set(false));
    }
}

/// Gets iobuf buffers for `len` bytes of read data, in segments of at most the large buffer
/// size, then runs `then` with them (the transport sends them without copying). When the
/// pools are empty the read waits (SPDK `spdk_nvmf_request_get_buffers` with iobuf queuing):
/// it is queued on this Thread and served oldest first as buffers return, so the pool sizes
/// bound the memory reads use. Of the reads needing several buffers, one per Thread at a
/// time may wait holding part of them; the others give theirs back and start over, so reads
/// cannot deadlock on partial sets. While it waits an Abort of `ab`'s command cancels it (the
/// buffers and `then` are dropped); so does the queue pair going away. Only when the pools
/// cannot be used at all (initialisation failed, no current Thread) is heap memory used.
fn read_bufs(len: usize, ab: Option<Abortable>, then: ReadBufsDone) {
    // Before the pools exist this is the configured size, at most the rounded one.
    let chunk = (env::iobuf_get_options().large_bufsize as usize).max(1);
    gather(Gather {
        acc: DataBuf::new(),
        total: len,
        left: len,
        chunk,
        ab,
        then,
        flag: None,
        holder: None,
    });
}

fn gather(mut g: Gather) {
    while g.left > 0 {
        let n = g.left.min(g.chunk);
        let slot: Rc<std::cell::RefCell<Option<Gather>>> = Rc::default();
        let slot2 = slot.clone();
        let got = env::iobuf_get_or_wait(n, move |buf| {
            let Some(mut g) = slot2.borrow_mut().take() else {
                return;
            };
            let q = g.ab.as_ref().map(|a| (a.cid, a.q.upgrade()));
            if let Some((cid, q)) = q {
                let Some(q) = q else {
                    tracing::debug!(cid, "queue pair gone while its read waited for buffers");
                    return;
                };
                if let Some(f) = g.flag.take() {
                    q.resources_ready(&f);
                    if f.get() {
                        tracing::debug!(cid, "aborted while waiting for read buffers");
                        return;
                    }
                }
            }
            push_buf(&mut g, buf, n);
            gather(g);
        });
        match got {
            Ok(Some(buf)) => push_buf(&mut g, buf, n),
            Ok(None) => {
                // At most one read per Thread waits holding part of its buffers: reads each
                // holding some while waiting for the rest could hold the whole pool and wait
                // for each other for ever. Another one gives its part back and waits for a
                // first buffer again (segment sizes only need to add up).
                let partial = if g.left < g.total && g.holder.is_none() {
                    match PartialHolder::claim() {
                        Some(h) => {
                            g.holder = Some(h);
                            DataBuf::new()
                        }
                        None => {
                            tracing::debug!(
                                len = g.total,
                                "another read holds a partial set: buffers given back, read waits"
                            );
                            g.left = g.total;
                            std::mem::replace(&mut g.acc, DataBuf::new())
                        }
                    }
                } else {
                    DataBuf::new()
                };
                tracing::debug!(len = n, "iobuf pool empty: read waits for a buffer");
                g.flag =
                    g.ab.as_ref()
                        .and_then(|a| a.q.upgrade().map(|q| q.wait_for_resources(a.cid)));
                *slot.borrow_mut() = Some(g);
                // Given back only once the waiter is in place.
                drop(partial);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, len = g.left, "iobuf pools unusable; read buffer from the heap");
                g.acc.push(bdev::IoVec::from_vec(vec![0; g.left]));
                g.left = 0;
            }
        }
    }
    (g.then)(g.acc)
}

fn push_buf(g: &mut Gather, buf: env::IoBuf, n: usize) {
    match bdev::IoVec::new(buf, 0, n) {
        Ok(v) => g.acc.push(v),
        Err(e) => {
            tracing::error!(error = %e, len = n, "iobuf buffer shorter than asked; heap segment used");
            g.acc.push(bdev::IoVec::from_vec(vec![0; n]));
        }
    }
    g.left -= n;
}

/// Counts an I/O command in flight on its queue pair's namespace until dropped (completed
/// or never submitted).
struct Inflight {
    q: Weak<QpairInner>,
    nsid: u32,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if let Some(q) = self.q.upgrade() {
            q.inflight_done(self.nsid);
        }
    }
}

/// Completion for `cid` on the queue pair (if it still exists); the command counts as in
/// flight on `nsid` until the completion runs or is dropped.
fn completer(q: &Rc<QpairInner>, cid: u16, nsid: u32) -> impl FnOnce(Reply) + 'static {
    let w: Weak<QpairInner> = Rc::downgrade(q);
    q.inflight_add(nsid);
    let guard = Inflight { q: w.clone(), nsid };
    move |r| {
        drop(guard);
        if let Some(q) = w.upgrade() {
            q.complete_async(cid, r);
        }
    }
}

/// A command refused before execution ends a fused first command waiting for its second:
/// Failed Fused when the refused one is that second, Missing Fused otherwise.
fn fail_waiting_fused(q: &Rc<QpairInner>, req: &Request) {
    if req.sqe.fuse() != Fuse::First
        && let Some(first) = q.fused.borrow_mut().take()
    {
        let s = if req.sqe.fuse() == Fuse::Second {
            GenericStatus::ABORTED_FAILED_FUSED
        } else {
            GenericStatus::ABORTED_MISSING_FUSED
        };
        q.complete_async(first.sqe.cid(), st(s));
    }
}

/// Executes an I/O command; None when it went to the bdev (answered later).
pub(crate) fn exec(pg: &Rc<PgInner>, q: &Rc<QpairInner>, req: Request) -> Option<Reply> {
    let shared = q.ctrlr.borrow().clone()?;
    if !shared.is_ready() || shared.csts().shst() != 0 {
        tracing::error!(opc = req.sqe.opc, "I/O command sent to disabled controller");
        return Some(Reply::status(GenericStatus::COMMAND_SEQUENCE_ERROR.into()));
    }
    let Some(visible) = pg.visible_ns_for(q) else {
        return Some(Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into()));
    };
    let max_io = q.max_io.get();
    if req.length > max_io {
        tracing::error!(
            len = req.length,
            max_io,
            "transfer larger than max_io_size (MDTS)"
        );
        return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
    }
    let nsid = req.sqe.nsid();
    // Only the namespaces this host sees are in `visible`: a masked namespace answers
    // exactly as an inactive one and its bdev is never reached.
    let Some(ns) = visible.get(&nsid).cloned() else {
        tracing::error!(
            nsid,
            "I/O command for an inactive, invisible or invalid namespace"
        );
        return Some(st(GenericStatus::INVALID_NAMESPACE_OR_FORMAT));
    };
    // ANA (SPDK `nvmf_ctrlr_process_io_cmd`): a group inaccessible through this
    // controller's listener fails the command with a path status, the bdev is never reached;
    // Non-Optimized serves I/O.
    if let Some(snap) = pg.subsystem_for(q)
        && snap.ana_reporting
        && snap.ana_state(shared.listen.as_ref(), ns.anagrpid)
            == crate::subsystem::AnaState::Inaccessible
    {
        tracing::debug!(
            nsid,
            anagrpid = ns.anagrpid,
            cntlid = shared.cntlid,
            "I/O on an ANA inaccessible path"
        );
        fail_waiting_fused(q, &req);
        return Some(Reply::status(
            nvme::spec::PathStatus::ASYMMETRIC_ACCESS_INACCESSIBLE.into(),
        ));
    }
    let opc = req.sqe.nvm_opcode();
    // Reservations: checked against this poll group's snapshot, no lock (SPDK
    // `nvmf_ns_reservation_request_check`); a refused command never reaches the bdev.
    if !ns.resv.allows(&shared.hostid, opc, req.sqe.cdw10.get()) {
        tracing::debug!(
            nsid,
            opc = opc.0,
            cntlid = shared.cntlid,
            "Reservation Conflict"
        );
        fail_waiting_fused(q, &req);
        return Some(Reply::status(GenericStatus::RESERVATION_CONFLICT.into()));
    }
    match opc {
        NvmOpcode::RESERVATION_REPORT => return Some(report(&ns, &req)),
        NvmOpcode::RESERVATION_REGISTER
        | NvmOpcode::RESERVATION_ACQUIRE
        | NvmOpcode::RESERVATION_RELEASE => return reservation_update(pg, q, &shared, nsid, req),
        _ => {}
    }
    let ch = match pg.channel(&ns) {
        Ok(ch) => ch,
        Err(e) => {
            tracing::error!(nsid, error = %e, "no bdev channel");
            return Some(Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into()));
        }
    };
    match req.sqe.fuse() {
        Fuse::Normal => {
            if let Some(first) = q.fused.borrow_mut().take() {
                // A first fused command not followed by its second one.
                let cid = first.sqe.cid();
                q.complete_async(cid, st(GenericStatus::ABORTED_MISSING_FUSED));
            }
        }
        Fuse::First => {
            if req.sqe.nvm_opcode() != NvmOpcode::COMPARE {
                return Some(st(GenericStatus::INVALID_FIELD));
            }
            if let Some(prev) = q.fused.borrow_mut().replace(req) {
                q.complete_async(prev.sqe.cid(), st(GenericStatus::ABORTED_MISSING_FUSED));
            }
            return None;
        }
        Fuse::Second => {
            let first = q.fused.borrow_mut().take();
            let Some(first) = first else {
                return Some(st(GenericStatus::ABORTED_MISSING_FUSED));
            };
            return compare_and_write(q, &ns, ch, first, req);
        }
        Fuse::Reserved => return Some(st(GenericStatus::INVALID_FIELD)),
    }
    let cid = req.sqe.cid();
    let done = completer(q, cid, nsid);
    match opc {
        NvmOpcode::READ | NvmOpcode::WRITE | NvmOpcode::COMPARE => {
            rw(&ns, ch, req, Abortable::new(q, cid), done)
        }
        NvmOpcode::FLUSH => {
            let b = ns.desc.bdev();
            if !b.io_type_supported(IoType::Flush) {
                return Some(Reply::status(Status::SUCCESS));
            }
            submit(
                ch,
                Abortable::new(q, cid),
                IoRequest::Flush {
                    offset_blocks: 0,
                    num_blocks: b.num_blocks(),
                },
                move |c| done(Reply::status(nvme_status(c.status))),
            );
            None
        }
        NvmOpcode::WRITE_ZEROES => {
            let (slba, nlb) = lba_range(&req);
            if let Some(r) = check_range(&ns, slba, nlb) {
                return Some(r);
            }
            if !ns.desc.bdev().io_type_supported(IoType::WriteZeroes) {
                return Some(st(GenericStatus::INVALID_OPCODE));
            }
            submit(
                ch,
                Abortable::new(q, cid),
                IoRequest::WriteZeroes {
                    offset_blocks: slba,
                    num_blocks: nlb,
                },
                move |c| done(Reply::status(nvme_status(c.status))),
            );
            None
        }
        NvmOpcode::DATASET_MANAGEMENT => dsm(&ns, ch, &req, done),
        NvmOpcode::COPY => copy(&ns, ch, &req, Abortable::new(q, cid), done),
        _ => {
            tracing::info!(opc = opc.0, "unsupported I/O opcode");
            Some(st(GenericStatus::INVALID_OPCODE))
        }
    }
}

/// Reservation Report (SPDK `nvmf_ns_reservation_report`), answered from this poll group's
/// snapshot: every state change completes only after all poll groups have it. NVMe-oF
/// hosts use 128-bit Host Identifiers, so the regular data structure (EDS=0) is refused
/// with Host Identifier Inconsistent Format (NVMe Base 2.0, 5.27.1.25), as SPDK and Linux
/// nvmet do. NUMD below the 64-byte header is an Internal Device Error (SPDK); a longer
/// NUMD is served up to the buffer's length.
fn report(ns: &Namespace, req: &Request) -> Reply {
    if req.length == 0 {
        tracing::error!("Reservation Report without a data buffer");
        return Reply::status(GenericStatus::INVALID_FIELD.into());
    }
    if req.sqe.cdw11.get() & RESV_REPORT_EDS == 0 {
        tracing::error!("Reservation Report with EDS=0: NVMe-oF uses 128-bit host identifiers");
        return Reply::status(GenericStatus::HOSTID_INCONSISTENT_FORMAT.into());
    }
    let want = (u64::from(req.sqe.cdw10.get()) + 1) * 4;
    if want < REPORT_EXT_HEADER_SIZE as u64 {
        tracing::error!(
            bytes = want,
            "Reservation Report NUMD shorter than the header"
        );
        return Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into());
    }
    let n = want.min(u64::from(req.length)) as usize;
    let page = ns.resv.report_extended();
    let mut out = vec![0u8; n];
    let k = n.min(page.len());
    out[..k].copy_from_slice(&page[..k]);
    Reply::status(Status::SUCCESS).data(DataBuf::from_vec(out))
}

/// Reservation Register/Acquire/Release: checks the key data and sends the command to the
/// app thread, which owns the state (answered later).
fn reservation_update(
    pg: &Rc<PgInner>,
    q: &Rc<QpairInner>,
    shared: &CtrlrShared,
    nsid: u32,
    req: Request,
) -> Option<Reply> {
    let opc = req.sqe.nvm_opcode();
    let need = if opc == NvmOpcode::RESERVATION_RELEASE {
        RELEASE_DATA_SIZE
    } else {
        KEY_DATA_SIZE
    };
    let Some(data) = req
        .data
        .as_ref()
        .filter(|d| d.total_len() >= need && req.length as usize >= need)
    else {
        tracing::error!(
            opc = opc.0,
            len = req.length,
            need,
            "reservation command without its key data"
        );
        return Some(Reply::status(GenericStatus::INVALID_FIELD.into()));
    };
    let mut raw = [0u8; KEY_DATA_SIZE];
    data.copy_to_slice_at(0, &mut raw[..need]);
    let key = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let cmd = ResvCommand {
        subnqn: shared.subnqn.clone(),
        nsid,
        hostid: shared.hostid,
        cntlid: shared.cntlid,
        opc,
        args: ReservationArgs::from_sqe(&req.sqe),
        crkey: key(0),
        key2: key(8),
    };
    match pg.send_reservation(q, req.sqe.cid(), cmd) {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the app thread for a reservation command");
            Some(Reply::status(GenericStatus::INTERNAL_DEVICE_ERROR.into()))
        }
    }
}

/// SLBA (CDW10-11) and NLB (CDW12 bits 15:0, 0-based) of a read/write-like command.
fn lba_range(req: &Request) -> (u64, u64) {
    let slba = u64::from(req.sqe.cdw10.get()) | (u64::from(req.sqe.cdw11.get()) << 32);
    let nlb = u64::from(req.sqe.cdw12.get() & 0xffff) + 1;
    (slba, nlb)
}

fn check_range(ns: &Namespace, slba: u64, nlb: u64) -> Option<Reply> {
    let blocks = ns.desc.bdev().num_blocks();
    match slba.checked_add(nlb) {
        Some(end) if end <= blocks => None,
        _ => {
            tracing::error!(slba, nlb, blocks, "LBA range out of the namespace");
            Some(st(GenericStatus::LBA_OUT_OF_RANGE))
        }
    }
}

fn rw(
    ns: &Arc<Namespace>,
    ch: Rc<BdevChannel>,
    req: Request,
    ab: Option<Abortable>,
    done: impl FnOnce(Reply) + 'static,
) -> Option<Reply> {
    let (slba, nlb) = lba_range(&req);
    if let Some(r) = check_range(ns, slba, nlb) {
        return Some(r);
    }
    let bs = u64::from(ns.desc.bdev().block_size());
    let bytes = nlb * bs;
    if bytes > u64::from(req.length) {
        tracing::error!(bytes, sgl = req.length, "transfer longer than the SGL");
        return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
    }
    let opc = req.sqe.nvm_opcode();
    let io = match opc {
        NvmOpcode::READ => {
            let ab2 = ab.clone();
            read_bufs(
                bytes as usize,
                ab,
                Box::new(move |bufs| {
                    let io = IoRequest::Read {
                        offset_blocks: slba,
                        num_blocks: nlb,
                        bufs,
                    };
                    submit(ch, ab2, io, rw_done(done));
                }),
            );
            return None;
        }
        _ => {
            let Some(data) = req.data else {
                return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
            };
            if (data.total_len() as u64) < bytes {
                return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
            }
            if opc == NvmOpcode::WRITE {
                IoRequest::Write {
                    offset_blocks: slba,
                    num_blocks: nlb,
                    bufs: data,
                }
            } else {
                // Native or emulated by the bdev layer (SPDK's nvmf offers Compare for
                // every bdev).
                if !ns.desc.bdev().accepts_io_type(IoType::Compare) {
                    return Some(st(GenericStatus::INVALID_OPCODE));
                }
                IoRequest::Compare {
                    offset_blocks: slba,
                    num_blocks: nlb,
                    bufs: data,
                }
            }
        }
    };
    submit(ch, ab, io, rw_done(done));
    None
}

/// The completion of a read, write or compare: its status, and a successful read's data.
fn rw_done(done: impl FnOnce(Reply) + 'static) -> impl FnOnce(IoCompletion) + 'static {
    move |c| {
        let status = nvme_status(c.status);
        let is_read = matches!(c.request, IoRequest::Read { .. });
        let mut r = Reply::status(status);
        if is_read
            && status.is_success()
            && let Some((bufs, _)) = c.into_bufs()
        {
            r = r.data(bufs);
        }
        done(r)
    }
}

fn compare_and_write(
    q: &Rc<QpairInner>,
    ns: &Arc<Namespace>,
    ch: Rc<BdevChannel>,
    first: Request,
    second: Request,
) -> Option<Reply> {
    let (c_cid, w_cid) = (first.sqe.cid(), second.sqe.cid());
    let fail_both = |s: GenericStatus| {
        q.complete_async(c_cid, st(GenericStatus::ABORTED_FAILED_FUSED));
        Some(st(s))
    };
    if second.sqe.nvm_opcode() != NvmOpcode::WRITE {
        return fail_both(GenericStatus::INVALID_FIELD);
    }
    let (slba, nlb) = lba_range(&first);
    if lba_range(&second) != (slba, nlb) || first.sqe.nsid() != second.sqe.nsid() {
        return fail_both(GenericStatus::INVALID_FIELD);
    }
    if check_range(ns, slba, nlb).is_some() {
        q.complete_async(c_cid, st(GenericStatus::LBA_OUT_OF_RANGE));
        return Some(st(GenericStatus::ABORTED_FAILED_FUSED));
    }
    if !ns.desc.bdev().accepts_io_type(IoType::CompareAndWrite) {
        return fail_both(GenericStatus::INVALID_OPCODE);
    }
    let bytes = (nlb * u64::from(ns.desc.bdev().block_size())) as usize;
    let (Some(cmp), Some(wr)) = (first.data, second.data) else {
        return fail_both(GenericStatus::DATA_SGL_LENGTH_INVALID);
    };
    if cmp.total_len() < bytes || wr.total_len() < bytes {
        return fail_both(GenericStatus::DATA_SGL_LENGTH_INVALID);
    }
    let nsid = first.sqe.nsid();
    let done_c = completer(q, c_cid, nsid);
    let done_w = completer(q, w_cid, nsid);
    // A fused pair is not abortable on its own (both halves complete together).
    submit(
        ch,
        None,
        IoRequest::CompareAndWrite {
            offset_blocks: slba,
            num_blocks: nlb,
            compare: cmp,
            write: wr,
        },
        move |c| {
            let s = nvme_status(c.status);
            if c.status == IoStatus::Miscompare {
                done_c(Reply::status(s));
                done_w(st(GenericStatus::ABORTED_FAILED_FUSED));
            } else {
                done_c(Reply::status(s));
                done_w(Reply::status(s));
            }
        },
    );
    None
}

fn dsm(
    ns: &Arc<Namespace>,
    ch: Rc<BdevChannel>,
    req: &Request,
    done: impl FnOnce(Reply) + 'static,
) -> Option<Reply> {
    let nr = (req.sqe.cdw10.get() & 0xff) as usize + 1;
    let attrs = req.sqe.cdw11.get();
    if attrs & DSM_AD == 0 {
        // Only deallocate has an effect; integral read/write hints are advisory.
        return Some(Reply::status(Status::SUCCESS));
    }
    if !ns.desc.bdev().io_type_supported(IoType::Unmap) {
        return Some(st(GenericStatus::INVALID_OPCODE));
    }
    let need = nr * DSM_RANGE_SIZE;
    let Some(data) = req.data.as_ref() else {
        return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
    };
    if data.total_len() < need {
        return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
    }
    let mut raw = vec![0u8; need];
    data.copy_to_slice_at(0, &mut raw);
    let mut ranges = Vec::with_capacity(nr);
    for r in raw.chunks_exact(DSM_RANGE_SIZE) {
        let nlb = u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]]));
        let mut s = [0u8; 8];
        s.copy_from_slice(&r[8..16]);
        let slba = u64::from_le_bytes(s);
        if nlb == 0 {
            continue;
        }
        if let Some(e) = check_range(ns, slba, nlb) {
            return Some(e);
        }
        ranges.push((slba, nlb));
    }
    if ranges.is_empty() {
        return Some(Reply::status(Status::SUCCESS));
    }
    let left = Rc::new(Cell::new(ranges.len()));
    let worst = Rc::new(Cell::new(Status::SUCCESS));
    let done = Rc::new(Cell::new(Some(done)));
    for (slba, nlb) in ranges {
        let (left, worst, done) = (left.clone(), worst.clone(), done.clone());
        // One command, several bdev I/Os: not abortable while waiting.
        submit(
            ch.clone(),
            None,
            IoRequest::Unmap {
                offset_blocks: slba,
                num_blocks: nlb,
            },
            move |c| {
                let s = nvme_status(c.status);
                if !s.is_success() {
                    worst.set(s);
                }
                left.set(left.get() - 1);
                if left.get() == 0
                    && let Some(d) = done.take()
                {
                    d(Reply::status(worst.get()));
                }
            },
        );
    }
    None
}

fn copy(
    ns: &Arc<Namespace>,
    ch: Rc<BdevChannel>,
    req: &Request,
    ab: Option<Abortable>,
    done: impl FnOnce(Reply) + 'static,
) -> Option<Reply> {
    let sdlba = u64::from(req.sqe.cdw10.get()) | (u64::from(req.sqe.cdw11.get()) << 32);
    let cdw12 = req.sqe.cdw12.get();
    let nr = (cdw12 & 0xff) as usize;
    let format = (cdw12 >> 8) & 0xf;
    if format != 0 {
        return Some(st(GenericStatus::INVALID_FIELD));
    }
    if nr != 0 {
        // MSRC is 0: one source range only, as SPDK.
        tracing::error!(nr = nr + 1, "Copy with more than one source range");
        return Some(st(GenericStatus::INVALID_FIELD));
    }
    if !ns.desc.bdev().io_type_supported(IoType::Copy) {
        return Some(st(GenericStatus::INVALID_OPCODE));
    }
    let Some(data) = req.data.as_ref() else {
        return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
    };
    if data.total_len() < COPY_RANGE_SIZE {
        return Some(st(GenericStatus::DATA_SGL_LENGTH_INVALID));
    }
    let mut r = [0u8; COPY_RANGE_SIZE];
    data.copy_to_slice_at(0, &mut r);
    let mut s = [0u8; 8];
    s.copy_from_slice(&r[8..16]);
    let slba = u64::from_le_bytes(s);
    let nlb = u64::from(u16::from_le_bytes([r[16], r[17]])) + 1;
    if let Some(e) = check_range(ns, slba, nlb).or_else(|| check_range(ns, sdlba, nlb)) {
        return Some(e);
    }
    submit(
        ch,
        ab,
        IoRequest::Copy {
            dst_offset_blocks: sdlba,
            src_offset_blocks: slba,
            num_blocks: nlb,
        },
        move |c| done(Reply::status(nvme_status(c.status))),
    );
    None
}
