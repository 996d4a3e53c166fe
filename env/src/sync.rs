//! Synchronisation primitives that switch to loom's model-checked versions under `cfg(loom)`.
//!
//! Only the lock-free ring ([`crate::ring`]) uses these; run its loom tests with
//! `RUSTFLAGS="--cfg loom" cargo test -p rspdk-env --release --lib loom`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};

/// An `UnsafeCell` with loom's closure-based access API.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// An `UnsafeCell` with loom's closure-based access API.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps a value.
    pub(crate) const fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }

    /// Gives a raw mutable pointer to the value to `f`.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Lets another thread run (loom: a scheduling point), for short spin-waits.
#[cfg(loom)]
pub(crate) fn spin_yield() {
    loom::thread::yield_now();
}

/// Lets another thread run (loom: a scheduling point), for short spin-waits.
#[cfg(not(loom))]
pub(crate) fn spin_yield() {
    std::thread::yield_now();
}
