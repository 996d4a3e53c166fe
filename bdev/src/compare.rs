//! Compare and compare-and-write for modules without them (SPDK `bdev_compare_do_read`,
//! `spdk_bdev_comparev_and_writev_blocks` with `bdev_lock_lba_range`).
//!
//! Compare: the layer reads the range into its own buffer (a normal read on the same channel,
//! counted in iostat as a read) and compares it with the caller's buffers: equal completes
//! `Success`, different `Miscompare`, a failed read `Failed`. The caller's buffers come back
//! unchanged.
//!
//! Compare-and-write: the layer locks the LBA range for the whole bdev, runs the compare
//! (native or emulated), then, if equal, the write, then unlocks. Any compare outcome but
//! success completes `Miscompare` (as SPDK); a failed write completes `Failed`.
//!
//! Lock scope (SPDK `bdev_lock_lba_range`): the lock covers the whole bdev. Once taken, writes
//! (write, unmap, write zeroes, copy destination) that overlap the range on *any* channel, and
//! other emulated compare-and-writes overlapping it, wait and are resubmitted in order when it
//! is released: the release sends every channel a message that retries what it holds (SPDK
//! `bdev_unlock_lba_range`), so a sleeping interrupt-mode reactor wakes for it, and a held
//! write whose descriptor closed meanwhile completes `Aborted`. Reads are not held (SPDK's
//! rule). A compare-and-write that cannot wait for the writes in flight (submitted off a
//! Thread) releases its lock and completes `Failed` rather than run unprotected. Before the compare starts, the lock waits
//! until no overlapping write submitted earlier is still at the module, waiting for a
//! no-memory retry or held by QoS on any channel (rechecked every [`LOCK_CHECK_PERIOD`]).
//! While any lock exists, each write takes the bdev's lock-list mutex once to check for
//! overlap; with no lock held the check is one atomic load. Writes at the module are tracked
//! per channel in a slab (one insert and one remove per write).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::channel::ChanCore;
use crate::desc::DescShared;
use crate::io::{IoCallback, IoCompletion, IoInner, IoRequest, IoStatus};
use crate::iovec::{IoVec, IoVecs};
use crate::local::LocalCallback;
use crate::registry::lock;

/// How often a new range lock rechecks for overlapping writes still in flight (SPDK polls
/// `bdev_lock_lba_range_check_io` every 100 us).
pub const LOCK_CHECK_PERIOD: Duration = Duration::from_micros(100);

static NEXT_LOCK_ID: AtomicU64 = AtomicU64::new(1);

/// The LBA ranges locked on one bdev.
#[derive(Default)]
pub(crate) struct RangeLocks {
    count: AtomicUsize,
    generation: AtomicU64,
    /// I/O held behind a lock on any channel of the bdev. Raised under `ranges` by the check
    /// that holds an I/O and read under it by [`RangeLocks::unlock`], so an unlock either sees
    /// the held I/O or happens before its check (which then does not hold it).
    held: AtomicUsize,
    /// `(lock id, first block, end block)`.
    ranges: Mutex<Vec<(u64, u64, u64)>>,
}

impl RangeLocks {
    /// Locks `[start, end)` unless it overlaps a held range; the new lock's id. `None` counts
    /// the caller's I/O as held: it must park it ([`ChanCore::park_locked`]).
    fn try_lock(&self, start: u64, end: u64) -> Option<u64> {
        let mut r = lock(&self.ranges);
        if r.iter().any(|&(_, s, e)| s < end && start < e) {
            self.held.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        let id = NEXT_LOCK_ID.fetch_add(1, Ordering::Relaxed);
        r.push((id, start, end));
        self.count.fetch_add(1, Ordering::AcqRel);
        Some(id)
    }

    /// Releases lock `id`; true when I/O is held on some channel (it must be told to retry).
    fn unlock(&self, id: u64) -> bool {
        let mut r = lock(&self.ranges);
        let before = r.len();
        r.retain(|&(i, _, _)| i != id);
        if r.len() != before {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.held.load(Ordering::Acquire) > 0
    }

    /// `n` held I/Os left their channel's queue (retried or dropped).
    pub(crate) fn unheld(&self, n: usize) {
        // Never below zero: a failed update is only a missed decrement, never a lost wakeup.
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
    }

    /// Bumped at every unlock; waiting I/O is retried when it changes.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// True when `req` writes into a range locked by someone other than `owner`; then it
    /// counts as held and the caller must park it ([`ChanCore::park_locked`]).
    pub(crate) fn blocks(&self, req: &IoRequest, owner: u64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Some((start, end)) = write_range(req) else {
            return false;
        };
        let r = lock(&self.ranges);
        let blocked = r
            .iter()
            .any(|&(id, s, e)| id != owner && s < end && start < e);
        if blocked {
            self.held.fetch_add(1, Ordering::AcqRel);
        }
        blocked
    }
}

/// Releases range lock `id` of `core`'s bdev (SPDK `bdev_unlock_lba_range`). When I/O is held
/// behind a lock, every channel of the bdev gets a message that retries what it holds, so a
/// channel whose reactor sleeps (interrupt mode) still resubmits it; the channel pollers'
/// generation check stays as a fallback for a Thread the message cannot reach.
pub(crate) fn release(core: &Rc<ChanCore>, id: u64) {
    let bdev = core.bdev_arc();
    if !bdev.locks.unlock(id) {
        return;
    }
    env::for_each_channel(
        bdev,
        |ch| {
            if let Some(c) = ch.core() {
                c.retry_locked();
            }
        },
        || {},
    );
}

/// The block range a request writes, for the types SPDK holds behind a range lock.
pub(crate) fn write_range(req: &IoRequest) -> Option<(u64, u64)> {
    let (off, n) = match req {
        IoRequest::Write {
            offset_blocks,
            num_blocks,
            ..
        }
        | IoRequest::Unmap {
            offset_blocks,
            num_blocks,
        }
        | IoRequest::WriteZeroes {
            offset_blocks,
            num_blocks,
        } => (*offset_blocks, *num_blocks),
        IoRequest::Copy {
            dst_offset_blocks,
            num_blocks,
            ..
        } => (*dst_offset_blocks, *num_blocks),
        _ => return None,
    };
    Some((off, off.saturating_add(n)))
}

/// Submits an I/O of the layer's own on `core`; a completion of `Nomem` (the channel's I/O
/// limit) resubmits it when the channel has room again, as SPDK's `bdev_queue_io_wait_with_cb`.
fn submit_child(
    core: &Rc<ChanCore>,
    desc: &Arc<DescShared>,
    request: IoRequest,
    owner_lock: u64,
    done: IoCallback,
) {
    let c = Rc::clone(core);
    let d = Arc::clone(desc);
    let cb = move |cpl: IoCompletion| {
        if cpl.status == IoStatus::Nomem {
            let c2 = Rc::clone(&c);
            c.queue_io_wait(Box::new(move || {
                submit_child(&c2, &d, cpl.request, owner_lock, done);
            }));
        } else {
            done(cpl);
        }
    };
    core.submit_inner(
        desc,
        IoInner {
            request,
            cb: Box::new(cb),
            start: env::now(),
            dispatched: false,
            owner_lock,
            inflight: None,
        },
    );
}

/// A buffer the module can read into: from env's iobuf pool when the app set it up (SPDK reads
/// into an iobuf too), else freshly allocated DMA-able memory, else heap memory.
fn read_buffer(len: usize, align: u32) -> IoVecs {
    if env::iobuf::iobuf_is_initialized()
        && let Some(b) = env::iobuf_get(len)
        && let Ok(v) = IoVec::new(b, 0, len)
    {
        return IoVecs::single(v);
    }
    let align = (align as usize).max(4096);
    match env::DmaBuf::alloc(len, align) {
        Ok(b) => match IoVec::new(b, 0, len) {
            Ok(v) => IoVecs::single(v),
            Err(_) => IoVecs::from_vec(vec![0; len]),
        },
        Err(e) => {
            tracing::debug!(error = %e, len, "compare emulation reads into heap memory");
            IoVecs::from_vec(vec![0; len])
        }
    }
}

fn buffers_equal(expected: &IoVecs, read: &IoVecs, len: usize) -> bool {
    let mut at = 0;
    for seg in read.segments() {
        if at >= len {
            break;
        }
        let s = seg.as_slice();
        let n = s.len().min(len - at);
        if !expected.eq_slice_at(at, &s[..n]) {
            return false;
        }
        at += n;
    }
    at == len
}

/// Emulates a validated compare on `core` (module without native compare).
pub(crate) fn emulate_compare(core: &Rc<ChanCore>, desc: &Arc<DescShared>, parent: IoInner) {
    let IoInner {
        request,
        cb,
        owner_lock,
        ..
    } = parent;
    let IoRequest::Compare {
        offset_blocks,
        num_blocks,
        bufs,
    } = request
    else {
        tracing::error!(bdev = %core.bdev_name(), "compare emulation given another request");
        return cb(IoCompletion {
            status: IoStatus::Failed,
            request,
        });
    };
    let bs = u64::from(core.bdev_arc().props.block_size);
    let len = usize::try_from(num_blocks.saturating_mul(bs)).unwrap_or(usize::MAX);
    let read = read_buffer(len, core.bdev_arc().props.required_alignment);
    let done: IoCallback = Box::new(move |cpl: IoCompletion| {
        let status = match (&cpl.status, cpl.request.bufs()) {
            (IoStatus::Success, Some(data)) if buffers_equal(&bufs, data, len) => IoStatus::Success,
            (IoStatus::Success, _) => IoStatus::Miscompare,
            (other, _) => {
                tracing::debug!(status = ?other, "compare emulation: read failed");
                IoStatus::Failed
            }
        };
        cb(IoCompletion {
            status,
            request: IoRequest::Compare {
                offset_blocks,
                num_blocks,
                bufs,
            },
        });
    });
    submit_child(
        core,
        desc,
        IoRequest::Read {
            offset_blocks,
            num_blocks,
            bufs: read,
        },
        owner_lock,
        done,
    );
}

/// Emulates a validated compare-and-write on `core`, or parks it until an overlapping lock
/// is released.
pub(crate) fn emulate_compare_and_write(
    core: &Rc<ChanCore>,
    desc: &Arc<DescShared>,
    parent: IoInner,
) {
    let (start, end) = match &parent.request {
        IoRequest::CompareAndWrite {
            offset_blocks,
            num_blocks,
            ..
        } => (*offset_blocks, offset_blocks.saturating_add(*num_blocks)),
        _ => {
            tracing::error!(bdev = %core.bdev_name(), "compare-and-write emulation given another request");
            return core.push_completion(parent, IoStatus::Failed);
        }
    };
    let generation = core.bdev_arc().locks.generation();
    match core.bdev_arc().locks.try_lock(start, end) {
        Some(id) => wait_drained(Locking {
            core: Rc::clone(core),
            desc: Arc::clone(desc),
            parent,
            id,
            start,
            end,
        }),
        None => core.park_locked(desc, parent, generation),
    }
}

/// A compare-and-write whose range lock is taken, waiting for overlapping writes that were
/// already submitted to finish.
struct Locking {
    core: Rc<ChanCore>,
    desc: Arc<DescShared>,
    parent: IoInner,
    id: u64,
    start: u64,
    end: u64,
}

/// Checks every channel for writes into the locked range submitted before the lock; runs the
/// compare-and-write once there are none, rechecking every [`LOCK_CHECK_PERIOD`].
fn wait_drained(l: Locking) {
    let busy = Arc::new(AtomicBool::new(false));
    let b2 = Arc::clone(&busy);
    let (start, end) = (l.start, l.end);
    let bdev = Arc::clone(l.core.bdev_arc());
    let slot = Rc::new(RefCell::new(Some(l)));
    let s2 = Rc::clone(&slot);
    let next = LocalCallback::new(move |()| {
        let Some(l) = s2.borrow_mut().take() else {
            return;
        };
        if !busy.load(Ordering::Acquire) {
            return run_locked(&l.core, &l.desc, l.parent, l.id);
        }
        recheck_later(l);
    });
    let next = match next {
        Ok(n) => n,
        Err(e) => {
            if let Some(l) = slot.borrow_mut().take() {
                fail_locked(l, &e.to_string());
            }
            return;
        }
    };
    env::for_each_channel(
        &bdev,
        move |ch| {
            if ch.core().is_some_and(|c| c.writes_overlap(start, end)) {
                b2.store(true, Ordering::Release);
            }
        },
        move || next.call(()),
    );
}

fn recheck_later(l: Locking) {
    type Waiting = Rc<RefCell<Option<(Locking, Option<env::Poller>)>>>;
    let waiting: Waiting = Rc::new(RefCell::new(None));
    let w2 = Rc::clone(&waiting);
    let poller = env::poller_register_periodic(
        move || {
            let taken = w2.borrow_mut().take();
            if let Some((l, poller)) = taken {
                drop(poller);
                wait_drained(l);
            }
            env::PollStatus::Busy
        },
        LOCK_CHECK_PERIOD,
    );
    match poller {
        Ok(p) => *waiting.borrow_mut() = Some((l, Some(p))),
        Err(e) => fail_locked(l, &e.to_string()),
    }
}

/// A compare-and-write whose lock cannot wait for writes in flight (no Thread to wait on):
/// rather than run unprotected it releases the lock and completes `Failed` from the
/// channel's poller (never inside the submission).
fn fail_locked(l: Locking, reason: &str) {
    tracing::error!(bdev = %l.core.bdev_name(), reason, "compare-and-write cannot wait for overlapping writes; failing it");
    release(&l.core, l.id);
    l.core.push_completion(l.parent, IoStatus::Failed);
}

fn run_locked(core: &Rc<ChanCore>, desc: &Arc<DescShared>, parent: IoInner, lock_id: u64) {
    let IoInner { request, cb, .. } = parent;
    let IoRequest::CompareAndWrite {
        offset_blocks,
        num_blocks,
        compare,
        write,
    } = request
    else {
        release(core, lock_id);
        return cb(IoCompletion {
            status: IoStatus::Failed,
            request,
        });
    };
    let c = Rc::clone(core);
    let d = Arc::clone(desc);
    let after_compare: IoCallback = Box::new(move |cpl: IoCompletion| {
        let compare_ok = cpl.is_success();
        let compare = match cpl.request.into_bufs() {
            Some((b, _)) => b,
            None => IoVecs::new(),
        };
        let unlock_and_complete = move |c: &Rc<ChanCore>, status, compare, write| {
            release(c, lock_id);
            cb(IoCompletion {
                status,
                request: IoRequest::CompareAndWrite {
                    offset_blocks,
                    num_blocks,
                    compare,
                    write,
                },
            });
        };
        if !compare_ok {
            return unlock_and_complete(&c, IoStatus::Miscompare, compare, write);
        }
        let c2 = Rc::clone(&c);
        let after_write: IoCallback = Box::new(move |w: IoCompletion| {
            let status = if w.is_success() {
                IoStatus::Success
            } else {
                tracing::error!(bdev = %c2.bdev_name(), status = ?w.status, "compare and write operation failed");
                IoStatus::Failed
            };
            let write = match w.request.into_bufs() {
                Some((b, _)) => b,
                None => IoVecs::new(),
            };
            unlock_and_complete(&c2, status, compare, write);
        });
        submit_child(
            &c,
            &d,
            IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs: write,
            },
            lock_id,
            after_write,
        );
    });
    submit_child(
        core,
        desc,
        IoRequest::Compare {
            offset_blocks,
            num_blocks,
            bufs: compare,
        },
        lock_id,
        after_compare,
    );
}
