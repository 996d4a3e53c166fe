//! The eventfd a sleeping interrupt-mode reactor waits on, and the flag that tells senders
//! whether to signal it.

use crate::EnvError;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};

/// Wakes a reactor sleeping in `epoll_wait`.
///
/// Protocol (Dekker-style, both sides SeqCst): the sleeper sets `sleeping`, then re-checks its
/// rings before waiting; a sender publishes its message, then reads `sleeping` and writes the
/// eventfd if set. Either the sleeper sees the message or the sender sees the flag.
#[derive(Debug)]
pub(crate) struct Waker {
    efd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    /// Creates a non-blocking eventfd.
    pub(crate) fn new() -> Result<Waker, EnvError> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(EnvError::last_os("eventfd"));
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            efd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// The eventfd, for the reactor's epoll set.
    pub(crate) fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Called by senders after publishing work: signals the eventfd if the reactor sleeps.
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.signal();
        }
    }

    /// Signals the eventfd unconditionally.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. EAGAIN (counter
        // saturated) means a wakeup is already pending, so the result can be ignored.
        let _ = unsafe {
            libc::write(
                self.efd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Announces that the reactor is about to sleep; it must re-check for work afterwards.
    pub(crate) fn set_sleeping(&self, v: bool) {
        self.sleeping.store(v, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Clears a pending signal.
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd we own.
        let _ = unsafe {
            libc::read(
                self.efd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}
