//! RAM-backed bdevs (SPDK `module/bdev/malloc`) and their RPCs `bdev_malloc_create` and
//! `bdev_malloc_delete`.
//!
//! Plugs into the bdev layer through its provider API only ([`bdev::module`]). The app calls
//! [`register`] once: it registers the `malloc` module (for `save_config`) and the two RPCs.
//! Every I/O runs synchronously in `submit_request` and completes through the bdev layer's
//! channel poller.
#![forbid(unsafe_code)]

mod bdev_impl;
mod config;
pub mod rpc;
mod store;

use std::sync::Arc;

pub use bdev_impl::{MallocOps, create, delete};
pub use config::MallocOpts;

/// Module name (SPDK `malloc_if.name`).
pub const MODULE_NAME: &str = "malloc";

/// Product name of malloc bdevs.
pub const PRODUCT_NAME: &str = "Malloc disk";

/// The malloc bdev module.
#[derive(Debug, Default)]
pub struct MallocModule;

impl bdev::module::BdevModule for MallocModule {
    fn name(&self) -> &str {
        MODULE_NAME
    }
}

/// Registers the malloc module with the bdev layer (once per process; later calls only add
/// the RPCs) and its RPCs on `reg`.
pub fn register(reg: &::rpc::RpcRegistry) {
    match bdev::module::module_register(Arc::new(MallocModule)) {
        Ok(()) | Err(bdev::BdevError::Exists(_)) => {}
        Err(e) => tracing::error!(error = %e, "cannot register the malloc module"),
    }
    rpc::register_rpcs(reg);
}
