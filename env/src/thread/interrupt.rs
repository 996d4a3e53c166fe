//! Fd interrupts (SPDK `spdk_interrupt_register`): a handler a Thread runs when an fd becomes
//! readable. Each Thread keeps its own epoll set; it is checked (without waiting) on every poll,
//! and a reactor in interrupt mode sleeps on it.

use super::{PollStatus, Thread, ThreadInner};
use crate::EnvError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

type IntrFn = Box<dyn FnMut() -> PollStatus>;

/// Events fetched per poll at most.
const MAX_EVENTS: usize = 32;

struct IntrEntry {
    fd: RawFd,
    f: RefCell<IntrFn>,
    active: Cell<bool>,
}

pub(crate) struct InterruptSet {
    epfd: OwnedFd,
    entries: HashMap<u64, Rc<IntrEntry>>,
    next_token: u64,
}

/// A registered fd handler; unregistered (fd removed from the Thread's epoll set, not closed)
/// when dropped. `!Send`.
pub struct Interrupt {
    entry: Rc<IntrEntry>,
    token: u64,
    thread: Weak<ThreadInner>,
}

impl Interrupt {
    /// The watched fd.
    pub fn fd(&self) -> RawFd {
        self.entry.fd
    }

    /// Which readiness runs the handler: readable (`EPOLLIN`, the only one after
    /// registration) and/or writable (`EPOLLOUT`). For a socket whose peer does not take its
    /// output: wait for writability instead of spinning on a write that would block, and stop
    /// waiting for input that will not be read yet.
    pub fn set_events(&self, readable: bool, writable: bool) -> Result<(), EnvError> {
        let t = self.thread.upgrade().ok_or(EnvError::NoCurrentThread)?;
        let set = t.intr.try_borrow().map_err(|_| EnvError::NoCurrentThread)?;
        let set = set.as_ref().ok_or(EnvError::NoCurrentThread)?;
        let mut events = 0;
        if readable {
            events |= libc::EPOLLIN;
        }
        if writable {
            events |= libc::EPOLLOUT;
        }
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: self.token,
        };
        // SAFETY: EPOLL_CTL_MOD on our epoll fd of an fd registered with this token; `ev` is a
        // valid epoll_event the call only reads.
        let rc = unsafe {
            libc::epoll_ctl(
                set.epfd.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                self.entry.fd,
                &mut ev,
            )
        };
        if rc < 0 {
            return Err(EnvError::last_os("epoll_ctl(MOD)"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("fd", &self.entry.fd)
            .finish()
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.entry.active.set(false);
        let Some(t) = self.thread.upgrade() else {
            return;
        };
        let removed = {
            let Ok(mut set) = t.intr.try_borrow_mut() else {
                return;
            };
            let Some(set) = set.as_mut() else { return };
            // SAFETY: EPOLL_CTL_DEL on our epoll fd; the event pointer may be null for DEL.
            unsafe {
                libc::epoll_ctl(
                    set.epfd.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    self.entry.fd,
                    std::ptr::null_mut(),
                )
            };
            set.entries.remove(&self.token)
        };
        drop(removed);
    }
}

/// Registers `f` on the current Thread, to run when `fd` is readable (level-triggered: `f`
/// should drain the fd). The fd stays owned by the caller and must outlive the [`Interrupt`].
pub fn interrupt_register(
    fd: RawFd,
    f: impl FnMut() -> PollStatus + 'static,
) -> Result<Interrupt, EnvError> {
    let t = Thread::current().ok_or(EnvError::NoCurrentThread)?;
    if t.is_exited() {
        return Err(EnvError::ThreadExited(t.name()));
    }
    let inner = &t.inner;
    let mut slot = inner.intr.borrow_mut();
    if slot.is_none() {
        // SAFETY: epoll_create1 has no memory arguments; the result is checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(EnvError::last_os("epoll_create1"));
        }
        *slot = Some(InterruptSet {
            // SAFETY: a fresh descriptor nothing else owns.
            epfd: unsafe { OwnedFd::from_raw_fd(epfd) },
            entries: HashMap::new(),
            next_token: 0,
        });
    }
    let Some(set) = slot.as_mut() else {
        return Err(EnvError::NoCurrentThread);
    };
    let token = set.next_token;
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    let rc = unsafe { libc::epoll_ctl(set.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if rc < 0 {
        return Err(EnvError::last_os("epoll_ctl(ADD)"));
    }
    set.next_token += 1;
    let entry = Rc::new(IntrEntry {
        fd,
        f: RefCell::new(Box::new(f)),
        active: Cell::new(true),
    });
    set.entries.insert(token, entry.clone());
    Ok(Interrupt {
        entry,
        token,
        thread: Rc::downgrade(inner),
    })
}

/// The Thread's epoll fd, if any interrupt was ever registered.
pub(crate) fn set_fd(inner: &ThreadInner) -> Option<RawFd> {
    inner.intr.borrow().as_ref().map(|s| s.epfd.as_raw_fd())
}

/// Runs handlers of ready fds (non-blocking check); true if any reported `Busy`.
pub(crate) fn poll_interrupts(inner: &ThreadInner) -> bool {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let n = {
        let set = inner.intr.borrow();
        let Some(set) = set.as_ref() else {
            return false;
        };
        if set.entries.is_empty() {
            return false;
        }
        // SAFETY: `events` is a writable array of MAX_EVENTS entries; timeout 0 never blocks.
        unsafe {
            libc::epoll_wait(
                set.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                MAX_EVENTS as i32,
                0,
            )
        }
    };
    let mut busy = false;
    for ev in events.iter().take(usize::try_from(n).unwrap_or(0)) {
        let token = ev.u64;
        let entry = inner
            .intr
            .borrow()
            .as_ref()
            .and_then(|s| s.entries.get(&token).cloned());
        let Some(entry) = entry else { continue };
        if !entry.active.get() {
            continue;
        }
        if let Ok(mut f) = entry.f.try_borrow_mut() {
            busy |= f() == PollStatus::Busy;
        }
    }
    busy
}
