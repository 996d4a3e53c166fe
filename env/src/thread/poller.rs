//! Pollers (SPDK `spdk_poller_register`): closures a Thread runs on every poll or periodically.

use super::{PollStatus, Thread, ThreadInner};
use crate::EnvError;
use crate::time::{Ticks, duration_to_nanos};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::time::Duration;

type PollFn = Box<dyn FnMut() -> PollStatus>;

pub(crate) struct PollerState {
    f: RefCell<PollFn>,
    period: Option<u64>,
    next_run: Cell<Ticks>,
    pub(crate) unregistered: Cell<bool>,
}

/// A registered poller; unregistered when dropped or by [`Poller::unregister`]. `!Send`: it
/// belongs to the Thread it was registered on. The closure is released on that Thread's next
/// poll (or at its exit), never while it runs.
pub struct Poller {
    state: Rc<PollerState>,
    thread: Weak<ThreadInner>,
}

impl Poller {
    /// Unregisters the poller (same as dropping it).
    pub fn unregister(self) {}

    /// True until unregistered (or its Thread exited).
    pub fn is_registered(&self) -> bool {
        !self.state.unregistered.get()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        if self.state.unregistered.replace(true) {
            return;
        }
        if let Some(t) = self.thread.upgrade() {
            t.pollers_dirty.set(true);
            let ctr = if self.state.period.is_some() {
                &t.shared.timed_pollers
            } else {
                &t.shared.active_pollers
            };
            ctr.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("period_ns", &self.state.period)
            .field("registered", &self.is_registered())
            .finish()
    }
}

pub(crate) fn register(t: &Thread, f: PollFn, period: Option<Duration>) -> Poller {
    let inner = &t.inner;
    let period = period.map(duration_to_nanos);
    let state = Rc::new(PollerState {
        f: RefCell::new(f),
        period,
        next_run: Cell::new(Ticks(
            inner
                .now
                .get()
                .as_nanos()
                .saturating_add(period.unwrap_or(0)),
        )),
        unregistered: Cell::new(inner.exited.get()),
    });
    if !inner.exited.get() {
        inner.pollers.borrow_mut().push(state.clone());
        let ctr = if period.is_some() {
            &inner.shared.timed_pollers
        } else {
            &inner.shared.active_pollers
        };
        ctr.fetch_add(1, Ordering::Relaxed);
    }
    Poller {
        state,
        thread: Rc::downgrade(inner),
    }
}

/// Registers `f` to run on every poll of the current Thread (SPDK period 0).
/// Errors with [`EnvError::NoCurrentThread`] off a Thread.
pub fn poller_register(f: impl FnMut() -> PollStatus + 'static) -> Result<Poller, EnvError> {
    let t = Thread::current().ok_or(EnvError::NoCurrentThread)?;
    Ok(register(&t, Box::new(f), None))
}

/// Registers `f` to run on the current Thread each time `period` has elapsed: first at
/// registration time + `period`, then `period` after each run (by the Thread's clock).
/// Errors with [`EnvError::NoCurrentThread`] off a Thread.
pub fn poller_register_periodic(
    f: impl FnMut() -> PollStatus + 'static,
    period: Duration,
) -> Result<Poller, EnvError> {
    let t = Thread::current().ok_or(EnvError::NoCurrentThread)?;
    Ok(register(&t, Box::new(f), Some(period)))
}

/// Runs the due pollers of a Thread; true if any reported `Busy`.
pub(crate) fn run_pollers(inner: &ThreadInner, now: Ticks) -> bool {
    let mut busy = false;
    let mut i = 0;
    loop {
        let p = match inner.pollers.borrow().get(i) {
            Some(p) => p.clone(),
            None => break,
        };
        i += 1;
        if p.unregistered.get() {
            continue;
        }
        if let Some(period) = p.period {
            if now < p.next_run.get() {
                continue;
            }
            p.next_run.set(Ticks(now.as_nanos().saturating_add(period)));
        }
        let Ok(mut f) = p.f.try_borrow_mut() else {
            continue; // re-entrant poll from inside this poller: skip it
        };
        busy |= f() == PollStatus::Busy;
    }
    if inner.pollers_dirty.replace(false) {
        let removed: Vec<_> = match inner.pollers.try_borrow_mut() {
            Ok(mut v) => {
                let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *v)
                    .into_iter()
                    .partition(|p| p.unregistered.get());
                *v = keep;
                gone
            }
            Err(_) => {
                inner.pollers_dirty.set(true);
                Vec::new()
            }
        };
        drop(removed);
    }
    busy
}

/// The earliest `next_run` of the registered periodic pollers.
pub(crate) fn next_deadline(inner: &ThreadInner) -> Option<Ticks> {
    inner
        .pollers
        .borrow()
        .iter()
        .filter(|p| p.period.is_some() && !p.unregistered.get())
        .map(|p| p.next_run.get())
        .min()
}
