//! Lightweight threads (SPDK `spdk_thread`, `lib/thread/thread.c`): message rings, pollers,
//! fd interrupts and per-thread I/O channels.
//!
//! A [`Thread`] is a `!Send` handle owned by whoever polls it (a reactor, or
//! [`crate::testing::TestThreads`]). Each [`Thread::poll`] makes it current on the OS thread,
//! runs up to [`MSG_BATCH_SIZE`] messages, its ready fd interrupts, and its due pollers, and
//! reports [`PollStatus::Busy`] if anything did work. Other OS threads reach it only through a
//! [`ThreadHandle`] (`Send + Sync`) by message.

mod interrupt;
mod io_channel;
mod poller;

pub use interrupt::{Interrupt, interrupt_register};
pub use io_channel::{IoChannel, IoDevice, for_each_channel, get_io_channel};
pub use poller::{Poller, poller_register, poller_register_periodic};

use crate::EnvError;
use crate::ring::Ring;
use crate::time::Ticks;
use crate::wake::Waker;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Messages run per [`Thread::poll`] at most (bounded so pollers are not starved).
pub const MSG_BATCH_SIZE: usize = 64;
/// Default number of slots of a Thread's message ring.
pub const DEFAULT_RING_SIZE: usize = 16 * 1024;

/// What a poller, an interrupt handler or a Thread's poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStatus {
    /// Work was done.
    Busy,
    /// Nothing to do.
    Idle,
}

impl PollStatus {
    /// `Busy` if `busy`, else `Idle`.
    pub fn from_busy(busy: bool) -> PollStatus {
        if busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }
}

/// A Thread's identifier, unique in the process, starting at 1 (as SPDK's thread ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u64);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Counters of a Thread (SPDK `thread_get_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ThreadStats {
    /// Ticks spent in polls that did work.
    #[serde(rename = "busy")]
    pub busy_ticks: u64,
    /// Ticks spent in polls that did nothing.
    #[serde(rename = "idle")]
    pub idle_ticks: u64,
    /// Registered pollers that run on every poll.
    pub active_pollers_count: u64,
    /// Registered periodic pollers.
    pub timed_pollers_count: u64,
    /// Paused pollers (always 0: pausing is not supported).
    pub paused_pollers_count: u64,
}

type Msg = Box<dyn FnOnce() + Send>;

/// The part of a Thread other OS threads may touch.
pub(crate) struct ThreadShared {
    id: ThreadId,
    name: String,
    ring: Ring<Msg>,
    exited: AtomicBool,
    waker: OnceLock<Arc<Waker>>,
    busy: AtomicU64,
    idle: AtomicU64,
    active_pollers: AtomicU64,
    timed_pollers: AtomicU64,
}

impl ThreadShared {
    pub(crate) fn new(name: &str, ring_size: usize) -> Arc<ThreadShared> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Arc::new(ThreadShared {
            id: ThreadId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            name: name.to_owned(),
            ring: Ring::new(ring_size),
            exited: AtomicBool::new(false),
            waker: OnceLock::new(),
            busy: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            active_pollers: AtomicU64::new(0),
            timed_pollers: AtomicU64::new(0),
        })
    }

    /// Attaches the reactor waker that `send_msg` signals (once; later calls are ignored).
    pub(crate) fn set_waker(&self, w: Arc<Waker>) {
        let _ = self.waker.set(w);
    }
}

impl fmt::Debug for ThreadShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadShared")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

pub(crate) struct ThreadInner {
    pub(crate) shared: Arc<ThreadShared>,
    now: Cell<Ticks>,
    last_poll: Cell<Option<(Ticks, bool)>>,
    pub(crate) pollers: RefCell<Vec<Rc<poller::PollerState>>>,
    pub(crate) pollers_dirty: Cell<bool>,
    pub(crate) channels: RefCell<HashMap<usize, Weak<dyn Any>>>,
    pub(crate) intr: RefCell<Option<interrupt::InterruptSet>>,
    pub(crate) iobuf: RefCell<Vec<Rc<crate::iobuf::ThreadCache>>>,
    exited: Cell<bool>,
}

/// A lightweight thread (SPDK `spdk_thread`): `!Send` handle, cheap to clone.
#[derive(Clone)]
pub struct Thread {
    pub(crate) inner: Rc<ThreadInner>,
}

/// A `Send + Sync` handle to a Thread, to send it messages from anywhere.
#[derive(Clone)]
pub struct ThreadHandle {
    pub(crate) shared: Arc<ThreadShared>,
}

thread_local! {
    static CURRENT: RefCell<Option<Thread>> = const { RefCell::new(None) };
}

/// The clock of the current Thread, if any.
pub(crate) fn current_now() -> Option<Ticks> {
    CURRENT.with(|c| c.borrow().as_ref().map(|t| t.inner.now.get()))
}

/// Makes `t` the current Thread of this OS thread, returning the previous one.
pub(crate) fn set_current(t: Option<Thread>) -> Option<Thread> {
    CURRENT.with(|c| c.replace(t))
}

/// Restores the previous current Thread when dropped (panic-safe).
struct CurrentGuard(Option<Option<Thread>>);

impl CurrentGuard {
    fn enter(t: &Thread) -> CurrentGuard {
        CurrentGuard(Some(set_current(Some(t.clone()))))
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            set_current(prev);
        }
    }
}

impl Thread {
    /// Creates a Thread not attached to any reactor; its owner calls [`Thread::poll`].
    pub fn new(name: &str) -> Thread {
        Thread::with_ring_size(name, DEFAULT_RING_SIZE)
    }

    /// As [`Thread::new`] with a message ring of at least `ring_size` slots (power of two).
    pub fn with_ring_size(name: &str, ring_size: usize) -> Thread {
        Thread::from_shared(ThreadShared::new(name, ring_size))
    }

    pub(crate) fn from_shared(shared: Arc<ThreadShared>) -> Thread {
        Thread {
            inner: Rc::new(ThreadInner {
                shared,
                now: Cell::new(crate::time::monotonic()),
                last_poll: Cell::new(None),
                pollers: RefCell::new(Vec::new()),
                pollers_dirty: Cell::new(false),
                channels: RefCell::new(HashMap::new()),
                intr: RefCell::new(None),
                iobuf: RefCell::new(Vec::new()),
                exited: Cell::new(false),
            }),
        }
    }

    /// The Thread being polled on this OS thread now (or set by
    /// [`crate::testing::TestThreads::set_current`]).
    pub fn current() -> Option<Thread> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// A `Send + Sync` handle for messages.
    pub fn handle(&self) -> ThreadHandle {
        ThreadHandle {
            shared: self.inner.shared.clone(),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> String {
        self.inner.shared.name.clone()
    }

    /// The process-unique id.
    pub fn id(&self) -> ThreadId {
        self.inner.shared.id
    }

    /// True once [`Thread::exit`] ran.
    pub fn is_exited(&self) -> bool {
        self.inner.exited.get()
    }

    /// The time of the current (or last) poll.
    pub fn now(&self) -> Ticks {
        self.inner.now.get()
    }

    /// Sets the Thread's clock without polling (used by the manual test clock).
    pub(crate) fn set_now(&self, now: Ticks) {
        self.inner.now.set(now);
    }

    /// Polls once at time `now`: makes this Thread current, runs up to [`MSG_BATCH_SIZE`]
    /// messages, the handlers of readable interrupt fds, and every poller that is due (always-on
    /// pollers each time, periodic ones when their period elapsed). Returns `Busy` if any message
    /// ran or any poller or handler reported `Busy`. An exited Thread does nothing (`Idle`).
    pub fn poll(&self, now: Ticks) -> PollStatus {
        let inner = &self.inner;
        if inner.exited.get() {
            return PollStatus::Idle;
        }
        self.account(now);
        inner.now.set(now);
        let _guard = CurrentGuard::enter(self);
        let mut busy = false;
        for _ in 0..MSG_BATCH_SIZE {
            if inner.exited.get() {
                break;
            }
            match inner.shared.ring.pop() {
                Some(m) => {
                    m();
                    busy = true;
                }
                None => break,
            }
        }
        busy |= interrupt::poll_interrupts(inner);
        busy |= poller::run_pollers(inner, now);
        busy |= crate::iobuf::serve_waiters(inner);
        inner.last_poll.set(Some((now, busy)));
        PollStatus::from_busy(busy)
    }

    /// Adds the time since the last poll to busy or idle, by what the last poll reported.
    fn account(&self, now: Ticks) {
        if let Some((last, was_busy)) = self.inner.last_poll.get() {
            let dt = now.as_nanos().saturating_sub(last.as_nanos());
            let ctr = if was_busy {
                &self.inner.shared.busy
            } else {
                &self.inner.shared.idle
            };
            ctr.fetch_add(dt, Ordering::Relaxed);
        }
    }

    /// True if messages are queued (or being queued).
    pub fn has_pending_msgs(&self) -> bool {
        !self.inner.shared.ring.is_empty()
    }

    /// True if a poll now would have something to do without waiting for time or an fd: queued
    /// messages or always-on pollers.
    pub fn has_work(&self) -> bool {
        self.has_pending_msgs() || self.inner.shared.active_pollers.load(Ordering::Relaxed) > 0
    }

    /// True if a poll may find work without any event: queued messages, or callbacks waiting
    /// for an iobuf buffer (which may come back to the global pool from another Thread).
    pub fn has_pending_work(&self) -> bool {
        self.has_pending_msgs() || crate::iobuf::has_waiters(&self.inner)
    }

    /// The earliest time a periodic poller is due, if any.
    pub fn next_timer_deadline(&self) -> Option<Ticks> {
        poller::next_deadline(&self.inner)
    }

    /// The epoll fd of this Thread's fd interrupts, if any were ever registered; a reactor in
    /// interrupt mode waits on it.
    pub(crate) fn interrupt_fd(&self) -> Option<std::os::fd::RawFd> {
        interrupt::set_fd(&self.inner)
    }

    /// Stops the Thread (SPDK `spdk_thread_exit`): runs the messages already queued, releases
    /// its pollers, interrupt handlers, channel cache and buffer caches, and refuses messages
    /// from then on. Callable from inside one of its own messages or pollers.
    pub fn exit(&self) {
        let inner = &self.inner;
        if inner.exited.replace(true) {
            return;
        }
        inner.shared.exited.store(true, Ordering::SeqCst);
        let _guard = CurrentGuard::enter(self);
        for _ in 0..inner.shared.ring.capacity() {
            match inner.shared.ring.pop() {
                Some(m) => m(),
                None => break,
            }
        }
        let pollers = std::mem::take(&mut *inner.pollers.borrow_mut());
        for p in &pollers {
            p.unregistered.set(true);
        }
        inner.shared.active_pollers.store(0, Ordering::Relaxed);
        inner.shared.timed_pollers.store(0, Ordering::Relaxed);
        drop(pollers);
        let intr = inner.intr.borrow_mut().take();
        drop(intr);
        let chans = std::mem::take(&mut *inner.channels.borrow_mut());
        drop(chans);
        crate::iobuf::release_thread_caches(inner);
        tracing::debug!(thread = %self.name(), id = %self.id(), "thread exited");
    }

    /// Busy/idle ticks and poller counts.
    pub fn stats(&self) -> ThreadStats {
        self.handle().stats()
    }

    /// Registers an always-on poller on this Thread (see [`poller_register`]).
    pub fn register_poller(&self, f: impl FnMut() -> PollStatus + 'static) -> Poller {
        poller::register(self, Box::new(f), None)
    }

    /// Registers a periodic poller on this Thread (see [`poller_register_periodic`]).
    pub fn register_periodic_poller(
        &self,
        f: impl FnMut() -> PollStatus + 'static,
        period: Duration,
    ) -> Poller {
        poller::register(self, Box::new(f), Some(period))
    }
}

impl Drop for ThreadInner {
    /// A Thread dropped without [`Thread::exit`] refuses further messages; its pollers,
    /// channels and caches are released with it.
    fn drop(&mut self) {
        self.shared.exited.store(true, Ordering::SeqCst);
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.id())
            .field("name", &self.inner.shared.name)
            .field("exited", &self.is_exited())
            .finish()
    }
}

impl ThreadHandle {
    /// Queues `f` to run on the Thread. Never blocks: a full ring gives
    /// [`EnvError::RingFull`], an exited Thread [`EnvError::ThreadExited`]. Messages from one
    /// sender run in the order sent. A message that races with [`Thread::exit`] may be dropped
    /// without running.
    pub fn send_msg(&self, f: impl FnOnce() + Send + 'static) -> Result<(), EnvError> {
        let sh = &self.shared;
        if sh.exited.load(Ordering::Acquire) {
            return Err(EnvError::ThreadExited(sh.name.clone()));
        }
        if sh.ring.push(Box::new(f)).is_err() {
            tracing::warn!(thread = %sh.name, "message ring full");
            return Err(EnvError::RingFull(sh.name.clone()));
        }
        if let Some(w) = sh.waker.get() {
            w.notify();
        }
        Ok(())
    }

    /// The Thread's id.
    pub fn id(&self) -> ThreadId {
        self.shared.id
    }

    /// Asks the Thread to [`Thread::exit`] by message (it exits when it runs the message;
    /// on a reactor, the reactor then drops it).
    pub fn request_exit(&self) -> Result<(), EnvError> {
        self.send_msg(|| {
            if let Some(t) = Thread::current() {
                t.exit();
            }
        })
    }

    /// The Thread's name.
    pub fn name(&self) -> String {
        self.shared.name.clone()
    }

    /// True once the Thread exited.
    pub fn is_exited(&self) -> bool {
        self.shared.exited.load(Ordering::Acquire)
    }

    /// Busy/idle ticks and poller counts, readable from any OS thread.
    pub fn stats(&self) -> ThreadStats {
        let sh = &self.shared;
        ThreadStats {
            busy_ticks: sh.busy.load(Ordering::Relaxed),
            idle_ticks: sh.idle.load(Ordering::Relaxed),
            active_pollers_count: sh.active_pollers.load(Ordering::Relaxed),
            timed_pollers_count: sh.timed_pollers.load(Ordering::Relaxed),
            paused_pollers_count: 0,
        }
    }
}

impl PartialEq for ThreadHandle {
    fn eq(&self, other: &Self) -> bool {
        self.shared.id == other.shared.id
    }
}

impl Eq for ThreadHandle {}

impl fmt::Debug for ThreadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadHandle")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .finish()
    }
}

/// Sends `f` to `thread` (same as [`ThreadHandle::send_msg`]).
pub fn send_msg(thread: &ThreadHandle, f: impl FnOnce() + Send + 'static) -> Result<(), EnvError> {
    thread.send_msg(f)
}

#[cfg(test)]
mod tests;
