//! Block device layer (SPDK `lib/bdev`): the consumer API (`include/spdk/bdev.h`) and the
//! [`module`] provider API (`include/spdk/bdev_module.h`).
//!
//! Place in the flow: step 9. nvmf opens a namespace's bdev with [`open_ext`], gets a
//! [`BdevChannel`] per poll-group Thread with [`Desc::get_io_channel`], and submits reads,
//! writes and the rest on it; modules (malloc, nvme) plug in through [`module::BdevOps`].
//!
//! ```text
//!  consumer                         bdev layer                              module
//!  open_ext(name) ──▶ Desc ──get_io_channel──▶ BdevChannel (per Thread, env IoChannel)
//!  ch.read(bufs, ..., cb) ─▶ validate ▶ io limit ▶ QoS bucket ─▶ BdevOps::submit_request(ch, BdevIo)
//!  cb(IoCompletion) ◀── channel poller ◀── completion queue ◀──────── BdevIo::complete(status)
//! ```
//!
//! Handle/poll contract: [`Bdev`] and [`Desc`] are `Send + Sync`; [`BdevChannel`] and
//! [`BdevIo`] are `!Send` and belong to one env Thread. Buffers are owned ([`IoVecs`]): they
//! move into a submission and come back in the [`IoCompletion`]. Completion callbacks run from
//! the channel's poller on the submitting Thread, never inside the submitting call. Invalid
//! input (range past the end, zero length, short buffers, unsupported type, write through a
//! read-only descriptor) completes with [`IoStatus::Invalid`] and never reaches the module.
//!
//! Resets follow SPDK ([`reset`]): one per bdev at a time, every channel frozen while it runs
//! (I/O submitted meanwhile completes [`IoStatus::Aborted`]). Compare and compare-and-write
//! are emulated for modules without them ([`compare`]; [`Bdev::accepts_io_type`] tells
//! consumers what the layer takes). Statistics ([`IoStat`]) carry SPDK's per-status
//! `io_error` counts; [`Bdev::set_qd_sampling_period`] adds queue-depth sampling.
//!
//! Registration is explicit: the app calls [`module::module_register`] for each module, then
//! [`init`], and [`rpc::register_rpcs`] for the bdev RPCs; [`subsystem_config_json`] writes the
//! `bdev` subsystem's part of `save_config`.
#![forbid(unsafe_code)]

mod bdev;
mod channel;
pub mod compare;
mod desc;
mod error;
mod io;
pub mod iovec;
mod local;
pub mod module;
mod qd;
pub mod qos;
mod registry;
pub mod reset;
pub mod rpc;
mod stats;

use std::sync::Arc;

use serde_json::{Value, json};

pub use crate::bdev::Bdev;
pub use crate::channel::BdevChannel;
pub use crate::desc::{BdevEvent, ClaimType, Desc, claim_bdev, open_ext, release_bdev};
pub use crate::error::{BdevError, libc_errno, strerror};
pub use crate::io::{BdevIo, InvalidIo, IoCallback, IoCompletion, IoRequest, IoStatus, IoType};
pub use crate::iovec::{IoBufStorage, IoVec, IoVecs};
pub use crate::qos::QosLimits;
pub use crate::registry::BdevOpts;
pub use crate::stats::{IoErrorStat, IoStat, QueueDepthStat, ResetStatMode};

/// Initializes the registered modules (SPDK `spdk_bdev_initialize`); afterwards
/// [`set_options`] is refused. A module whose init fails stops initialization with its error.
pub fn init() -> Result<(), BdevError> {
    for m in registry::modules() {
        m.init()?;
    }
    registry::set_initialized(true);
    Ok(())
}

/// Unregisters every bdev (newest first) and finalizes the modules (SPDK `spdk_bdev_finish`).
/// Bdevs still open are destructed when their last descriptor closes.
pub fn fini() {
    for b in registry::all().into_iter().rev() {
        if let Err(e) = registry::unregister(&b.props.name, None, None) {
            tracing::warn!(bdev = %b.props.name, error = %e, "unregister at fini failed");
        }
    }
    for m in registry::modules().into_iter().rev() {
        m.fini();
    }
    registry::set_initialized(false);
}

/// Current bdev options.
pub fn options() -> BdevOpts {
    registry::opts()
}

/// Sets bdev options (SPDK `spdk_bdev_set_opts`); only before [`init`]
/// ([`BdevError::NotPermitted`] after), and `bdev_io_pool_size` must be at least
/// `bdev_io_cache_size` ([`BdevError::InvalidArgument`]).
pub fn set_options(o: BdevOpts) -> Result<(), BdevError> {
    registry::set_opts(o)
}

/// The bdev with this name, alias or UUID.
pub fn get_by_name(name: &str) -> Option<Bdev> {
    registry::lookup(name).map(Bdev)
}

/// All registered bdevs, in registration order.
pub fn bdevs() -> Vec<Bdev> {
    registry::all().into_iter().map(Bdev).collect()
}

/// Unregisters a bdev (SPDK `spdk_bdev_unregister_by_name`): new opens fail at once, every open
/// descriptor gets [`BdevEvent::Remove`], and when the last one closes the module's `destruct`
/// runs and `done` is called on the calling Thread (by message).
///
/// Errors at once: unknown name, or a bdev of another module when `module` is given,
/// [`BdevError::NotFound`] (ENODEV); already unregistering [`BdevError::Busy`] (EBUSY); not
/// called on an env Thread [`BdevError::NoThread`].
pub fn unregister(
    name: &str,
    module: Option<&str>,
    done: impl FnOnce(Result<(), BdevError>) + 'static,
) -> Result<(), BdevError> {
    let cb = local::LocalCallback::new(done)?;
    registry::unregister(name, module, Some(cb))
}

/// The `bdev` subsystem's configuration (what `framework_get_config bdev` returns): the
/// `bdev_set_options` call, each module's own calls, then per bdev its module's create call
/// and its QoS limits, and `bdev_wait_for_examine` last. Replaying it recreates the bdevs.
pub fn subsystem_config_json() -> Value {
    let o = options();
    let mut cfg = vec![json!({
        "method": "bdev_set_options",
        "params": {
            "bdev_io_pool_size": o.bdev_io_pool_size,
            "bdev_io_cache_size": o.bdev_io_cache_size,
            "bdev_auto_examine": o.bdev_auto_examine,
            "iobuf_small_cache_size": o.iobuf_small_cache_size,
            "iobuf_large_cache_size": o.iobuf_large_cache_size,
        }
    })];
    for m in registry::modules() {
        cfg.extend(m.write_config_json());
    }
    for b in bdevs() {
        if b.is_removing() {
            continue;
        }
        if let Some(c) = b.write_config_json() {
            cfg.push(c);
        }
        let l = b.qos_limits();
        if !l.is_unlimited() {
            cfg.push(json!({
                "method": "bdev_set_qos_limit",
                "params": {
                    "name": b.name(),
                    "rw_ios_per_sec": l.rw_ios_per_sec,
                    "rw_mbytes_per_sec": l.rw_mbytes_per_sec,
                    "r_mbytes_per_sec": l.r_mbytes_per_sec,
                    "w_mbytes_per_sec": l.w_mbytes_per_sec,
                }
            }));
        }
    }
    cfg.push(json!({ "method": "bdev_wait_for_examine" }));
    Value::Array(cfg)
}

/// Registers a module given as an `Arc` of a concrete type (convenience for
/// [`module::module_register`]).
pub fn register_module<M: module::BdevModule>(m: Arc<M>) -> Result<(), BdevError> {
    module::module_register(m)
}
