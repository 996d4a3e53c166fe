//! Provider API (SPDK `bdev_module.h`): what a bdev module implements and how it registers bdevs.
//!
//! ```text
//!  BdevModule (one per module: name, init/fini, config)      BdevOps (one per bdev)
//!        │ module_register()                                   │ register_bdev(props, ops)
//!        ▼                                                     ▼
//!  module list ──── subsystem_config_json() ────────────  bdev registry (names, aliases, UUIDs)
//!                                                             │ open_ext → Desc → BdevChannel
//!                                                             ▼
//!                                   BdevOps::create_channel (per Thread) / submit_request(ch, BdevIo)
//! ```

use std::sync::Arc;

use serde_json::Value;

use crate::io::{BdevIo, IoType};
use crate::{Bdev, BdevError};

/// A bdev module (SPDK `struct spdk_bdev_module`).
pub trait BdevModule: Send + Sync + 'static {
    /// Module name, e.g. `"malloc"`; claims and unregister-by-name check it.
    fn name(&self) -> &str;
    /// Called once by [`crate::init`].
    fn init(&self) -> Result<(), BdevError> {
        Ok(())
    }
    /// Called once by [`crate::fini`] after the module's bdevs are unregistered.
    fn fini(&self) {}
    /// Module-wide configuration as replayable RPC calls (`{"method": .., "params": ..}`),
    /// emitted before the per-bdev entries.
    fn write_config_json(&self) -> Vec<Value> {
        Vec::new()
    }
    /// Offered every newly registered bdev (SPDK `examine_config`); default ignores it.
    fn examine(&self, _bdev: &Bdev) {}
}

/// Operations of one bdev (SPDK `struct spdk_bdev_fn_table`).
pub trait BdevOps: Send + Sync + 'static {
    /// Per-Thread channel state (SPDK channel context).
    type Channel: 'static;

    /// Creates this Thread's channel; called on that Thread on its first `get_io_channel`.
    fn create_channel(&self) -> Result<Self::Channel, BdevError>;

    /// Starts an I/O the bdev layer has validated (type supported, range inside the bdev,
    /// buffers long enough, writable descriptor). Complete it with [`BdevIo::complete`]
    /// (now or later, on this Thread).
    fn submit_request(&self, ch: &Self::Channel, io: BdevIo);

    /// Whether the bdev executes this I/O type.
    fn io_type_supported(&self, io_type: IoType) -> bool;

    /// Module-specific info for `bdev_get_bdevs` (`driver_specific`).
    fn dump_info_json(&self) -> Value {
        Value::Object(serde_json::Map::new())
    }

    /// The RPC call that recreates this bdev (`{"method": .., "params": ..}`), if any.
    fn write_config_json(&self, _bdev: &Bdev) -> Option<Value> {
        None
    }

    /// Memory domains for `bdev_get_bdevs` (`[{"dma_device_id": .., "dma_device_type": ..}]`);
    /// `None` leaves the key out, as SPDK does for modules without `get_memory_domains`.
    fn memory_domains(&self) -> Option<Value> {
        None
    }

    /// Releases the bdev's resources; called once, after unregistration, when the last
    /// descriptor has closed.
    fn destruct(&self) {}
}

/// Static properties of a bdev being registered (SPDK `struct spdk_bdev` fields).
#[derive(Debug, Clone, PartialEq)]
pub struct BdevProps {
    /// Unique name.
    pub name: String,
    /// Extra names (the UUID is always added as an alias, as SPDK does).
    pub aliases: Vec<String>,
    /// UUID; `None` generates a random one.
    pub uuid: Option<uuid::Uuid>,
    /// Product name, e.g. `"Malloc disk"`.
    pub product_name: String,
    /// Logical block size in bytes (data plus interleaved metadata), > 0.
    pub block_size: u32,
    /// Physical block size in bytes; 0 means `block_size`.
    pub physical_block_size: u32,
    /// Number of blocks, > 0.
    pub num_blocks: u64,
    /// Volatile write cache present (flush meaningful).
    pub write_cache: bool,
    /// Optimal I/O boundary in blocks (0 = none).
    pub optimal_io_boundary: u32,
    /// Required buffer alignment in bytes (0 or a power of two).
    pub required_alignment: u32,
    /// Metadata bytes per block.
    pub md_size: u32,
    /// Metadata interleaved with data.
    pub md_interleave: bool,
    /// DIF type (0 = disabled, 1..3).
    pub dif_type: u32,
    /// DIF at the head of the metadata.
    pub dif_is_head_of_md: bool,
    /// DIF PI format (0 = 16-bit guard).
    pub dif_pi_format: u32,
    /// Seconds a bdev reset waits for outstanding I/O to drain before the module's reset is
    /// submitted (SPDK `reset_io_drain_timeout`); 0 (SPDK's default) submits the module's reset
    /// right after every channel is frozen. When the I/O drains in time the reset completes
    /// successfully without reaching the module, as SPDK does.
    pub reset_io_drain_timeout: u16,
}

impl BdevProps {
    /// Properties with the given name, block size and count; everything else default.
    pub fn new(name: &str, block_size: u32, num_blocks: u64) -> BdevProps {
        BdevProps {
            name: name.to_owned(),
            aliases: Vec::new(),
            uuid: None,
            product_name: String::new(),
            block_size,
            physical_block_size: 0,
            num_blocks,
            write_cache: false,
            optimal_io_boundary: 0,
            required_alignment: 0,
            md_size: 0,
            md_interleave: false,
            dif_type: 0,
            dif_is_head_of_md: false,
            dif_pi_format: 0,
            reset_io_drain_timeout: 0,
        }
    }
}

/// Registers a module so its configuration is written by [`crate::subsystem_config_json`] and
/// it is offered new bdevs. Registering the same name twice is refused (EEXIST).
pub fn module_register(module: Arc<dyn BdevModule>) -> Result<(), BdevError> {
    crate::registry::register_module(module)
}

/// Registers a bdev of `module` (SPDK `spdk_bdev_register`). Duplicate names, aliases or UUIDs
/// are refused with [`BdevError::Exists`] (EEXIST); zero block size or count with EINVAL.
pub fn register_bdev<O: BdevOps>(
    module: &str,
    props: BdevProps,
    ops: Arc<O>,
) -> Result<Bdev, BdevError> {
    crate::registry::register_bdev(module, props, Arc::new(OpsHolder { ops }))
}

/// Changes a bdev's block count and sends [`BdevEvent::Resize`](crate::BdevEvent::Resize) to
/// every open descriptor (SPDK `spdk_bdev_notify_blockcnt_change`). Shrinking below a
/// claimed bdev's size is refused (EBUSY in SPDK, here [`BdevError::NotPermitted`]).
pub fn notify_blockcnt_change(bdev: &Bdev, num_blocks: u64) -> Result<(), BdevError> {
    crate::registry::notify_blockcnt_change(bdev, num_blocks)
}

// ---- type erasure of BdevOps (one dyn call per I/O, no Box<dyn Any>) ----

pub(crate) trait ErasedOps: Send + Sync {
    fn create_channel(&self) -> Result<Box<dyn ErasedChannel>, BdevError>;
    fn io_type_supported(&self, t: IoType) -> bool;
    fn dump_info_json(&self) -> Value;
    fn write_config_json(&self, bdev: &Bdev) -> Option<Value>;
    fn memory_domains(&self) -> Option<Value>;
    fn destruct(&self);
}

pub(crate) trait ErasedChannel {
    fn submit(&self, io: BdevIo);
}

struct OpsHolder<O: BdevOps> {
    ops: Arc<O>,
}

struct ChannelHolder<O: BdevOps> {
    ops: Arc<O>,
    ch: O::Channel,
}

impl<O: BdevOps> ErasedChannel for ChannelHolder<O> {
    fn submit(&self, io: BdevIo) {
        self.ops.submit_request(&self.ch, io);
    }
}

impl<O: BdevOps> ErasedOps for OpsHolder<O> {
    fn create_channel(&self) -> Result<Box<dyn ErasedChannel>, BdevError> {
        let ch = self.ops.create_channel()?;
        Ok(Box::new(ChannelHolder {
            ops: Arc::clone(&self.ops),
            ch,
        }))
    }
    fn io_type_supported(&self, t: IoType) -> bool {
        self.ops.io_type_supported(t)
    }
    fn dump_info_json(&self) -> Value {
        self.ops.dump_info_json()
    }
    fn write_config_json(&self, bdev: &Bdev) -> Option<Value> {
        self.ops.write_config_json(bdev)
    }
    fn memory_domains(&self) -> Option<Value> {
        self.ops.memory_domains()
    }
    fn destruct(&self) {
        self.ops.destruct();
    }
}
