//! Environment layer of rspdk: mirrors SPDK's `lib/env_dpdk`, `lib/thread` and parts of `lib/util`.
//!
//! Step 1 and 2 of the flow: core masks ([`cpumask`]), time ([`time`]), lightweight threads with
//! message rings, pollers, fd interrupts and per-thread I/O channels ([`thread`]), reactors that
//! poll them on pinned cores, busy or in interrupt mode ([`reactor`]), DMA-able memory
//! ([`dma`]), shared buffer pools with per-thread caches ([`iobuf`]), and a manual multi-thread
//! harness with a manual clock for tests ([`testing`]).
//!
//! ```text
//!  Reactors ── one pinned OS thread per core ──▶ Thread::poll(now) for each of its Threads
//!                                                  ├─ messages (lock-free MPSC ring, from ThreadHandle::send_msg)
//!                                                  ├─ fd interrupts (Thread's epoll set)
//!                                                  ├─ pollers (always-on / periodic)
//!                                                  └─ iobuf waiters
//!  IoDevice (Arc) ── get_io_channel on a Thread ──▶ IoChannel<D::Channel> (one per Thread, Rc)
//! ```
//!
//! Handle/poll contract: a [`Thread`] is `!Send` and polled by its owner with
//! [`Thread::poll`]; everything else reaches it by message through a [`ThreadHandle`]. State a
//! Thread owns (pollers, channels) is touched only on that Thread.
//!
//! Loom model checks of the lock-free ring:
//! `RUSTFLAGS="--cfg loom" cargo test -p rspdk-env --release --lib loom`.

pub mod cpumask;
pub mod dma;
mod error;
pub mod iobuf;
pub mod reactor;
pub mod ring;
pub mod sock;
mod sync;
pub mod testing;
pub mod thread;
pub mod time;
mod wake;

pub use cpumask::CpuMask;
pub use dma::{DmaBacking, DmaBuf, check_available, mem_available, mem_stats};
pub use error::EnvError;
pub use iobuf::{
    IoBuf, IobufChannel, IobufModuleStats, IobufOpts, IobufPool, iobuf_get, iobuf_get_options,
    iobuf_get_or_wait, iobuf_get_stats, iobuf_set_options,
};
pub use reactor::{
    ReactorOpts, ReactorStats, Reactors, ThreadStatsEntry, pin_current_thread, reactors,
};
pub use thread::{
    Interrupt, IoChannel, IoDevice, PollStatus, Poller, Thread, ThreadHandle, ThreadId,
    ThreadStats, for_each_channel, get_io_channel, interrupt_register, poller_register,
    poller_register_periodic, send_msg,
};
pub use time::{Ticks, now};
