//! Environment layer of rspdk: mirrors SPDK's `lib/env_dpdk`, `lib/thread` and parts of `lib/util`.
//!
//! Step 1 and 2 of the flow: core masks ([`cpumask`]), time ([`time`]), lightweight threads with
//! message rings, pollers, fd interrupts and per-thread I/O channels ([`thread`]), and a manual
//! multi-thread harness for tests ([`testing`]).
//!
//! Handle/poll contract: a [`Thread`] is `!Send` and polled by its owner with
//! [`Thread::poll`]; everything else reaches it by message through a [`ThreadHandle`]. State a
//! Thread owns (pollers, channels) is touched only on that Thread.
//!
//! Loom model checks of the lock-free ring:
//! `RUSTFLAGS="--cfg loom" cargo test -p rspdk-env --release --lib loom`.

pub mod cpumask;
mod error;
pub mod reactor;
pub mod ring;
mod sync;
pub mod testing;
pub mod thread;
pub mod time;
mod wake;

pub use cpumask::CpuMask;
pub use error::EnvError;
pub use reactor::{ReactorOpts, ReactorStats, Reactors, reactors};
pub use thread::{
    Interrupt, IoChannel, IoDevice, PollStatus, Poller, Thread, ThreadHandle, ThreadId,
    ThreadStats, for_each_channel, get_io_channel, interrupt_register, poller_register,
    poller_register_periodic, send_msg,
};
pub use time::{Ticks, now};
