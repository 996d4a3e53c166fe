//! Bdevs over NVMe controllers (SPDK `module/bdev/nvme`) and their RPCs
//! `bdev_nvme_attach_controller`, `bdev_nvme_detach_controller`, `bdev_nvme_get_controllers`
//! and `bdev_nvme_set_options`.
//!
//! ```text
//! attach_controller(name, trid) ── nvme::host::Controller (admin queue, polled by a periodic
//!     │                              poller on the attaching Thread: keep-alive, reset)
//!     └── one bdev "<name>n<nsid>" per active namespace (BdevOps = NvmeBdev)
//!            └── per Thread channel: one nvme::host::IoQpair + a poller reaping completions
//! ```
//!
//! Reads and writes larger than the controller's MDTS (or 65536 blocks) are split into
//! several NVMe commands and completed once all of them are. A failed I/O queue pair fails
//! its outstanding I/O with the NVMe status the driver reports; with `reconnect_delay_sec`
//! set, channels and the admin queue reconnect every that many seconds.
//!
//! `bdev_nvme_attach_controller` does not block the app Thread ([`attach_async`], SPDK's probe
//! poller): the connect, IC exchange, fabrics Connect, enable and Identify run on a separate
//! OS thread (at most [`MAX_ATTACHES_IN_PROGRESS`] at once) and the answer is sent from a 1 ms
//! poller when they finish; meanwhile a second attach or a detach of the same name is EBUSY.
//! User-given timeouts above [`MAX_TIMEOUT_US`] (10 minutes) are refused with EINVAL.
//!
//! The app registers everything with [`register`] (`bdev_nvme::register(&registry)`).
#![forbid(unsafe_code)]

mod bdev_impl;
mod ctrlr;
mod error;
pub mod rpc;

use std::sync::Arc;

pub use bdev_impl::NvmeBdev;
pub use ctrlr::{
    AttachParams, MAX_ATTACHES_IN_PROGRESS, MAX_TCP_CONNECT_TIMEOUT_MS, MAX_TIMEOUT_US, NvmeCtrlr,
    NvmeOpts, attach, attach_async, attach_with_transport, attach_with_transport_async, controller,
    controllers, detach, options, set_options,
};
pub use error::BdevNvmeError;

/// Module name (SPDK `nvme_if.name`).
pub const MODULE_NAME: &str = "nvme";

/// Product name of NVMe bdevs.
pub const PRODUCT_NAME: &str = "NVMe disk";

/// The nvme bdev module: writes `bdev_nvme_set_options` and one `bdev_nvme_attach_controller`
/// per controller into the bdev subsystem's configuration.
#[derive(Debug, Default)]
pub struct NvmeModule;

impl bdev::module::BdevModule for NvmeModule {
    fn name(&self) -> &str {
        MODULE_NAME
    }

    fn write_config_json(&self) -> Vec<serde_json::Value> {
        ctrlr::config_json()
    }

    fn fini(&self) {
        ctrlr::module_fini();
    }
}

/// Registers the nvme module with the bdev layer (once per process; later calls only add the
/// RPCs) and its RPCs on `reg`.
pub fn register(reg: &::rpc::RpcRegistry) {
    match bdev::module::module_register(Arc::new(NvmeModule)) {
        Ok(()) | Err(bdev::BdevError::Exists(_)) => {}
        Err(e) => tracing::error!(error = %e, "cannot register the nvme bdev module"),
    }
    rpc::register_rpcs(reg);
}
