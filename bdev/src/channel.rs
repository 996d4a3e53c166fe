//! Per-Thread bdev channels and the I/O path (SPDK `spdk_bdev_channel`, `bdev_io_submit`).
//!
//! A submission is validated, checked against the channel's outstanding-I/O limit, aborted if
//! a reset has frozen the channel, routed (reset to [`crate::reset`], compare and
//! compare-and-write without module support to [`crate::compare`]), held while it writes into
//! a range an emulated compare-and-write has locked, checked against the QoS bucket, then
//! handed to the module. Every completion — the module's, or the layer's own
//! refusal — is queued on the channel and delivered by the channel's poller on the same
//! Thread, never inside the submitting call. No lock is taken; the only per-I/O allocation
//! is the boxed callback.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::bdev::BdevShared;
use crate::desc::{Desc, DescShared};
use crate::io::{BdevIo, InvalidIo, IoCompletion, IoInner, IoRequest, IoStatus, IoType};
use crate::iovec::IoVecs;
use crate::module::ErasedChannel;
use crate::qos::QosBucket;
use crate::registry::lock;
use crate::reset::ActiveReset;
use crate::stats::{IoStat, ResetStatMode};
use crate::{Bdev, BdevError};

/// Shared state of one bdev's channel on one Thread (the part a `BdevIo` points back to).
pub(crate) struct ChanCore {
    bdev: Arc<BdevShared>,
    module_ch: Box<dyn ErasedChannel>,
    completions: RefCell<VecDeque<(IoInner, IoStatus)>>,
    nomem: RefCell<VecDeque<IoInner>>,
    qos_queue: RefCell<VecDeque<IoInner>>,
    io_wait: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    qos: RefCell<QosBucket>,
    stats: RefCell<IoStat>,
    outstanding: Cell<u64>,
    io_limit: u64,
    poller: RefCell<Option<env::Poller>>,
    /// A bdev reset is in progress (SPDK `BDEV_CH_RESET_IN_PROGRESS`): new I/O is aborted.
    /// Starts false even while a reset runs, as SPDK's `bdev_channel_create`.
    frozen: Cell<bool>,
    /// The reset in progress, when it was submitted on this channel.
    pub(crate) active_reset: RefCell<Option<ActiveReset>>,
    /// Writes waiting for an LBA range lock to be released (SPDK `io_locked`).
    locked: RefCell<VecDeque<(Arc<DescShared>, IoInner)>>,
    /// The lock generation `locked` was last tried at.
    locked_gen: Cell<u64>,
    /// Block ranges of the writes at the module (or in the no-memory retry queue).
    inflight_writes: RefCell<slab::Slab<(u64, u64)>>,
}

/// The env IoDevice channel of a bdev (`Err` if the module could not create its channel).
pub(crate) struct ChannelInner(Result<Rc<ChanCore>, BdevError>);

impl ChannelInner {
    /// The channel's counters, then cleared per `mode`.
    pub(crate) fn take_stats(&self, mode: ResetStatMode) -> Option<IoStat> {
        self.core().map(|c| {
            let mut st = c.stats.borrow_mut();
            let s = *st;
            st.reset(mode);
            s
        })
    }

    /// I/Os at the module on this channel (0 for a failed channel).
    pub(crate) fn outstanding(&self) -> u64 {
        self.core().map_or(0, |c| c.outstanding.get())
    }

    pub(crate) fn core(&self) -> Option<&Rc<ChanCore>> {
        self.0.as_ref().ok()
    }

    pub(crate) fn is_core(&self, core: &Rc<ChanCore>) -> bool {
        self.core().is_some_and(|c| Rc::ptr_eq(c, core))
    }
}

impl env::IoDevice for BdevShared {
    type Channel = ChannelInner;

    fn create_channel(self: &Arc<Self>) -> ChannelInner {
        ChannelInner(ChanCore::create(self))
    }
}

impl ChanCore {
    fn create(bdev: &Arc<BdevShared>) -> Result<Rc<ChanCore>, BdevError> {
        let module_ch = bdev.ops.create_channel().map_err(|e| BdevError::Channel {
            bdev: bdev.props.name.clone(),
            reason: e.to_string(),
        })?;
        let core = Rc::new(ChanCore {
            bdev: Arc::clone(bdev),
            module_ch,
            completions: RefCell::new(VecDeque::with_capacity(64)),
            nomem: RefCell::new(VecDeque::new()),
            qos_queue: RefCell::new(VecDeque::new()),
            io_wait: RefCell::new(VecDeque::new()),
            qos: RefCell::new(QosBucket::new()),
            stats: RefCell::new(IoStat::default()),
            outstanding: Cell::new(0),
            io_limit: u64::from(crate::registry::opts().bdev_io_pool_size),
            poller: RefCell::new(None),
            frozen: Cell::new(false),
            active_reset: RefCell::new(None),
            locked: RefCell::new(VecDeque::new()),
            locked_gen: Cell::new(0),
            inflight_writes: RefCell::new(slab::Slab::new()),
        });
        let weak: Weak<ChanCore> = Rc::downgrade(&core);
        let poller = env::poller_register(move || match weak.upgrade() {
            Some(c) => c.poll(),
            None => env::PollStatus::Idle,
        })
        .map_err(|e| BdevError::Channel {
            bdev: bdev.props.name.clone(),
            reason: e.to_string(),
        })?;
        *core.poller.borrow_mut() = Some(poller);
        bdev.qos.channel_added();
        tracing::debug!(bdev = %bdev.props.name, "bdev channel created");
        Ok(core)
    }

    pub(crate) fn bdev_name(&self) -> &str {
        &self.bdev.props.name
    }

    pub(crate) fn bdev_arc(&self) -> &Arc<BdevShared> {
        &self.bdev
    }

    pub(crate) fn outstanding_count(&self) -> u64 {
        self.outstanding.get()
    }

    /// Freezes the channel for a reset (SPDK `bdev_reset_freeze_channel`): I/O held back for
    /// no-memory retry or by QoS is aborted, new I/O will be.
    pub(crate) fn freeze(&self) {
        self.frozen.set(true);
        self.abort_queued();
    }

    /// Ends a reset's freeze (SPDK `bdev_unfreeze_channel`).
    pub(crate) fn unfreeze(&self) {
        self.frozen.set(false);
    }

    /// True while a write into `[start, end)` is at the module, waits for its no-memory
    /// retry, or is held back by QoS on this channel (what a new LBA range lock waits for,
    /// SPDK `bdev_lock_lba_range_check_io`).
    pub(crate) fn writes_overlap(&self, start: u64, end: u64) -> bool {
        let overlaps = |(s, e): (u64, u64)| s < end && start < e;
        self.inflight_writes
            .borrow()
            .iter()
            .any(|(_, r)| overlaps(*r))
            || self
                .qos_queue
                .borrow()
                .iter()
                .filter_map(|i| crate::compare::write_range(&i.request))
                .any(overlaps)
    }

    pub(crate) fn queue_io_wait(&self, f: Box<dyn FnOnce()>) {
        self.io_wait.borrow_mut().push_back(f);
    }

    /// Holds `inner` until the range locks change (see [`crate::compare`]); `generation` is
    /// the lock generation read before the overlap check.
    pub(crate) fn park_locked(&self, desc: &Arc<DescShared>, inner: IoInner, generation: u64) {
        let mut l = self.locked.borrow_mut();
        if l.is_empty() {
            self.locked_gen.set(generation);
        }
        l.push_back((Arc::clone(desc), inner));
    }

    /// Hands a reset to the module (not counted as outstanding, as SPDK).
    pub(crate) fn dispatch_reset(self: &Rc<Self>, mut inner: IoInner) {
        inner.dispatched = true;
        self.module_ch.submit(BdevIo::new(inner, Rc::clone(self)));
    }

    pub(crate) fn push_completion(&self, inner: IoInner, status: IoStatus) {
        self.completions.borrow_mut().push_back((inner, status));
    }

    fn validate(&self, req: &IoRequest, writable: bool) -> Result<(), InvalidIo> {
        let t = req.io_type();
        if !self.bdev.supported[t.index()] && !self.bdev.emulated(t) {
            return Err(InvalidIo::Unsupported);
        }
        if t.is_write() && !writable {
            return Err(InvalidIo::ReadOnly);
        }
        let nblocks = self.bdev.num_blocks();
        let in_range = |off: u64, n: u64| off.checked_add(n).is_some_and(|end| end <= nblocks);
        let bs = u64::from(self.bdev.props.block_size);
        let bufs_ok = |bufs: &IoVecs, n: u64| {
            n.checked_mul(bs)
                .is_some_and(|need| (bufs.total_len() as u64) >= need)
        };
        match req {
            IoRequest::Reset => Ok(()),
            IoRequest::Flush {
                offset_blocks,
                num_blocks,
            } => {
                if in_range(*offset_blocks, *num_blocks) {
                    Ok(())
                } else {
                    Err(InvalidIo::OutOfRange)
                }
            }
            IoRequest::Unmap {
                offset_blocks,
                num_blocks,
            }
            | IoRequest::WriteZeroes {
                offset_blocks,
                num_blocks,
            } => range_check(*num_blocks, in_range(*offset_blocks, *num_blocks)),
            IoRequest::Read {
                offset_blocks,
                num_blocks,
                bufs,
            }
            | IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs,
            }
            | IoRequest::Compare {
                offset_blocks,
                num_blocks,
                bufs,
            } => {
                range_check(*num_blocks, in_range(*offset_blocks, *num_blocks))?;
                if bufs_ok(bufs, *num_blocks) {
                    Ok(())
                } else {
                    Err(InvalidIo::BufferTooShort)
                }
            }
            IoRequest::CompareAndWrite {
                offset_blocks,
                num_blocks,
                compare,
                write,
            } => {
                range_check(*num_blocks, in_range(*offset_blocks, *num_blocks))?;
                if bufs_ok(compare, *num_blocks) && bufs_ok(write, *num_blocks) {
                    Ok(())
                } else {
                    Err(InvalidIo::BufferTooShort)
                }
            }
            IoRequest::Copy {
                dst_offset_blocks,
                src_offset_blocks,
                num_blocks,
            } => range_check(
                *num_blocks,
                in_range(*dst_offset_blocks, *num_blocks)
                    && in_range(*src_offset_blocks, *num_blocks),
            ),
        }
    }

    fn io_bytes(&self, req: &IoRequest) -> u64 {
        req.num_blocks()
            .saturating_mul(u64::from(self.bdev.props.block_size))
    }

    fn submit(
        self: &Rc<Self>,
        desc: &Arc<DescShared>,
        request: IoRequest,
        cb: crate::io::IoCallback,
    ) {
        let inner = IoInner {
            request,
            cb,
            start: env::now(),
            dispatched: false,
            owner_lock: 0,
            inflight: None,
        };
        self.submit_inner(desc, inner);
    }

    /// Checks a new I/O (closed descriptor, validity, channel limit) and starts it.
    pub(crate) fn submit_inner(self: &Rc<Self>, desc: &Arc<DescShared>, inner: IoInner) {
        if desc.closed.load(Ordering::Acquire) {
            self.push_completion(inner, IoStatus::Aborted);
            return;
        }
        if let Err(reason) = self.validate(&inner.request, desc.write.load(Ordering::Acquire)) {
            tracing::debug!(bdev = %self.bdev_name(), ?reason, io_type = ?inner.request.io_type(), "bdev I/O refused");
            self.push_completion(inner, IoStatus::Invalid(reason));
            return;
        }
        if self.outstanding.get() >= self.io_limit {
            self.push_completion(inner, IoStatus::Nomem);
            return;
        }
        self.start(desc, inner);
    }

    /// Routes an accepted I/O: reset, frozen channel, emulation, range locks, QoS, module.
    fn start(self: &Rc<Self>, desc: &Arc<DescShared>, inner: IoInner) {
        let t = inner.request.io_type();
        if t == IoType::Reset {
            return crate::reset::start(self, inner);
        }
        if self.frozen.get() {
            tracing::debug!(bdev = %self.bdev_name(), io_type = ?t, "I/O aborted: reset in progress");
            return self.push_completion(inner, IoStatus::Aborted);
        }
        if !self.bdev.supported[t.index()] {
            match t {
                IoType::Compare => return crate::compare::emulate_compare(self, desc, inner),
                IoType::CompareAndWrite => {
                    return crate::compare::emulate_compare_and_write(self, desc, inner);
                }
                _ => {}
            }
        }
        let generation = self.bdev.locks.generation();
        if self.bdev.locks.blocks(&inner.request, inner.owner_lock) {
            return self.park_locked(desc, inner, generation);
        }
        {
            let mut qos = self.qos.borrow_mut();
            qos.refresh(&self.bdev.qos, inner.start.as_nanos());
            if qos.enabled() {
                let bytes = self.io_bytes(&inner.request);
                let queued = !self.qos_queue.borrow().is_empty();
                if queued || !qos.try_admit(inner.request.io_type(), bytes) {
                    drop(qos);
                    self.qos_queue.borrow_mut().push_back(inner);
                    return;
                }
            }
        }
        self.dispatch(inner);
    }

    fn dispatch(self: &Rc<Self>, mut inner: IoInner) {
        inner.dispatched = true;
        if inner.inflight.is_none()
            && let Some(range) = crate::compare::write_range(&inner.request)
        {
            inner.inflight = Some(self.inflight_writes.borrow_mut().insert(range));
        }
        self.outstanding.set(self.outstanding.get() + 1);
        self.module_ch.submit(BdevIo::new(inner, Rc::clone(self)));
    }

    fn abort_queued(&self) {
        let q: Vec<IoInner> = self.qos_queue.borrow_mut().drain(..).collect();
        let n: Vec<IoInner> = self.nomem.borrow_mut().drain(..).collect();
        for i in q.into_iter().chain(n) {
            self.push_completion(i, IoStatus::Aborted);
        }
    }

    fn poll(self: Rc<Self>) -> env::PollStatus {
        let mut busy = false;
        busy |= self.release_qos();
        let n = self.completions.borrow().len();
        let mut completed = 0;
        for _ in 0..n {
            let Some((mut inner, status)) = self.completions.borrow_mut().pop_front() else {
                break;
            };
            busy = true;
            if inner.dispatched && inner.request.io_type() == IoType::Reset {
                crate::reset::module_done(&self, inner, status);
                continue;
            }
            if inner.dispatched {
                inner.dispatched = false;
                self.outstanding
                    .set(self.outstanding.get().saturating_sub(1));
                if status == IoStatus::Nomem && !self.frozen.get() {
                    // As SPDK: a module out of resources gets the I/O again later.
                    self.nomem.borrow_mut().push_back(inner);
                    continue;
                }
                if status == IoStatus::Nomem {
                    completed += 1;
                    self.finish(inner, IoStatus::Aborted);
                    continue;
                }
            }
            completed += 1;
            self.finish(inner, status);
        }
        if !self.nomem.borrow().is_empty() && (completed > 0 || self.outstanding.get() == 0) {
            let retry: Vec<IoInner> = self.nomem.borrow_mut().drain(..).collect();
            for i in retry {
                self.dispatch(i);
            }
            busy = true;
        }
        while self.outstanding.get() < self.io_limit {
            let Some(w) = self.io_wait.borrow_mut().pop_front() else {
                break;
            };
            busy = true;
            w();
        }
        busy |= self.retry_locked();
        env::PollStatus::from_busy(busy)
    }

    /// Resubmits the writes held by range locks once the locks changed (from the unlock's
    /// message, or the poller as a fallback), in their order; one whose descriptor closed
    /// meanwhile completes `Aborted` instead of reaching the module.
    pub(crate) fn retry_locked(self: &Rc<Self>) -> bool {
        if self.locked.borrow().is_empty() {
            return false;
        }
        let g = self.bdev.locks.generation();
        if g == self.locked_gen.get() {
            return false;
        }
        self.locked_gen.set(g);
        let waiting: Vec<_> = self.locked.borrow_mut().drain(..).collect();
        self.bdev.locks.unheld(waiting.len());
        for (desc, inner) in waiting {
            if desc.closed.load(Ordering::Acquire) {
                tracing::debug!(bdev = %self.bdev_name(), io_type = ?inner.request.io_type(), "I/O held by a range lock aborted: descriptor closed");
                self.push_completion(inner, IoStatus::Aborted);
                continue;
            }
            self.start(&desc, inner);
        }
        true
    }

    fn release_qos(self: &Rc<Self>) -> bool {
        if self.qos_queue.borrow().is_empty() {
            return false;
        }
        let now = env::now().as_nanos();
        let mut released = false;
        let mut qos = self.qos.borrow_mut();
        qos.refresh(&self.bdev.qos, now);
        qos.tick(now);
        loop {
            let next = {
                let q = self.qos_queue.borrow();
                q.front()
                    .map(|i| (i.request.io_type(), self.io_bytes(&i.request)))
            };
            let Some((t, bytes)) = next else { break };
            if qos.enabled() && !qos.try_admit(t, bytes) {
                break;
            }
            let Some(i) = self.qos_queue.borrow_mut().pop_front() else {
                break;
            };
            released = true;
            self.dispatch(i);
        }
        released
    }

    /// Accounts and completes an I/O now (from a poller or message, never inside a submission).
    pub(crate) fn finish(&self, inner: IoInner, status: IoStatus) {
        if let Some(k) = inner.inflight {
            self.inflight_writes.borrow_mut().try_remove(k);
        }
        let t = inner.request.io_type();
        {
            let mut s = self.stats.borrow_mut();
            if status == IoStatus::Success {
                let ticks = env::now().as_nanos().saturating_sub(inner.start.as_nanos());
                s.record(t, self.io_bytes(&inner.request), ticks);
            } else {
                s.record_error(status);
            }
        }
        (inner.cb)(IoCompletion {
            status,
            request: inner.request,
        });
    }
}

impl Drop for ChanCore {
    fn drop(&mut self) {
        let pending = self.completions.get_mut().len()
            + self.nomem.get_mut().len()
            + self.qos_queue.get_mut().len()
            + self.locked.get_mut().len();
        self.bdev.locks.unheld(self.locked.get_mut().len());
        if pending > 0 {
            tracing::warn!(bdev = %self.bdev.props.name, pending, "bdev channel destroyed with queued I/O");
        }
        lock(&self.bdev.retired).add(self.stats.get_mut());
        self.bdev.qos.channel_removed();
        tracing::debug!(bdev = %self.bdev.props.name, "bdev channel destroyed");
    }
}

fn range_check(num_blocks: u64, in_range: bool) -> Result<(), InvalidIo> {
    if num_blocks == 0 {
        Err(InvalidIo::ZeroLength)
    } else if !in_range {
        Err(InvalidIo::OutOfRange)
    } else {
        Ok(())
    }
}

/// A descriptor's I/O channel on the current Thread (SPDK `spdk_io_channel` of a bdev).
/// `!Send`: use it only on the Thread that got it. Completions are delivered on that Thread by
/// the channel's poller. Keep it until every I/O submitted on it has completed.
pub struct BdevChannel {
    ch: env::IoChannel<ChannelInner>,
    core: Rc<ChanCore>,
    desc: Arc<DescShared>,
}

impl std::fmt::Debug for BdevChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BdevChannel")
            .field("bdev", &self.core.bdev.props.name)
            .field("outstanding", &self.core.outstanding.get())
            .finish()
    }
}

impl BdevChannel {
    pub(crate) fn get(desc: &Desc) -> Result<BdevChannel, BdevError> {
        let ch = env::get_io_channel(&desc.bdev).map_err(|e| BdevError::Channel {
            bdev: desc.bdev.props.name.clone(),
            reason: e.to_string(),
        })?;
        let core = match &ch.0 {
            Ok(c) => Rc::clone(c),
            Err(e) => return Err(e.clone()),
        };
        Ok(BdevChannel {
            ch,
            core,
            desc: Arc::clone(&desc.shared),
        })
    }

    /// The bdev.
    pub fn bdev(&self) -> Bdev {
        Bdev(Arc::clone(&self.core.bdev))
    }

    /// Submits any request; `cb` runs later on this Thread with the status and the buffers.
    pub fn submit(&self, request: IoRequest, cb: impl FnOnce(IoCompletion) + 'static) {
        self.core.submit(&self.desc, request, Box::new(cb));
    }

    /// Reads `num_blocks` at `offset_blocks` into `bufs`.
    pub fn read(
        &self,
        bufs: IoVecs,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::Read {
                offset_blocks,
                num_blocks,
                bufs,
            },
            cb,
        );
    }

    /// Writes `bufs` to `num_blocks` at `offset_blocks`.
    pub fn write(
        &self,
        bufs: IoVecs,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs,
            },
            cb,
        );
    }

    /// Flushes a block range.
    pub fn flush(
        &self,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::Flush {
                offset_blocks,
                num_blocks,
            },
            cb,
        );
    }

    /// Unmaps a block range.
    pub fn unmap(
        &self,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::Unmap {
                offset_blocks,
                num_blocks,
            },
            cb,
        );
    }

    /// Writes zeroes to a block range.
    pub fn write_zeroes(
        &self,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::WriteZeroes {
                offset_blocks,
                num_blocks,
            },
            cb,
        );
    }

    /// Resets the bdev as SPDK does (see [`crate::reset`]): one reset per bdev at a time (a
    /// second one waits and completes with the first one's status); every channel is frozen
    /// (its held-back I/O aborted, new I/O aborted until the reset completes); then the module's
    /// reset runs on this channel; then every channel is unfrozen and `cb` runs.
    pub fn reset(&self, cb: impl FnOnce(IoCompletion) + 'static) {
        self.submit(IoRequest::Reset, cb);
    }

    /// Compares a block range with `bufs` ([`IoStatus::Miscompare`] when different); emulated
    /// with a read when the module has no compare (see [`crate::compare`]).
    pub fn compare(
        &self,
        bufs: IoVecs,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::Compare {
                offset_blocks,
                num_blocks,
                bufs,
            },
            cb,
        );
    }

    /// Atomically compares a block range with `compare` and writes `write` if equal; emulated
    /// under an LBA range lock when the module has no compare-and-write (see
    /// [`crate::compare`] for the lock's scope).
    pub fn compare_and_write(
        &self,
        compare: IoVecs,
        write: IoVecs,
        offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::CompareAndWrite {
                offset_blocks,
                num_blocks,
                compare,
                write,
            },
            cb,
        );
    }

    /// Copies `num_blocks` from `src_offset_blocks` to `dst_offset_blocks`.
    pub fn copy(
        &self,
        dst_offset_blocks: u64,
        src_offset_blocks: u64,
        num_blocks: u64,
        cb: impl FnOnce(IoCompletion) + 'static,
    ) {
        self.submit(
            IoRequest::Copy {
                dst_offset_blocks,
                src_offset_blocks,
                num_blocks,
            },
            cb,
        );
    }

    /// Runs `cb` on this Thread once the channel can take I/O again (SPDK
    /// `spdk_bdev_queue_io_wait`); use after a completion with [`IoStatus::Nomem`].
    pub fn queue_io_wait(&self, cb: impl FnOnce() + 'static) {
        self.core.io_wait.borrow_mut().push_back(Box::new(cb));
    }

    /// I/Os handed to the module and not yet completed.
    pub fn outstanding(&self) -> u64 {
        self.core.outstanding.get()
    }

    /// True while a bdev reset holds this channel frozen.
    pub fn is_frozen(&self) -> bool {
        self.core.frozen.get()
    }

    /// I/Os held back by QoS on this channel.
    pub fn qos_queued(&self) -> usize {
        self.core.qos_queue.borrow().len()
    }

    /// This channel's statistics.
    pub fn stats(&self) -> IoStat {
        *self.core.stats.borrow()
    }

    /// The env channel (for code that needs its Thread).
    pub fn thread(&self) -> &env::ThreadHandle {
        self.ch.thread()
    }
}
