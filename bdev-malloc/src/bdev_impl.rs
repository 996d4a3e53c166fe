//! The malloc bdev: `BdevOps` over a [`Store`], and create/delete (SPDK `bdev_malloc.c`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bdev::module::{BdevOps, BdevProps};
use bdev::{Bdev, BdevError, BdevIo, IoRequest, IoStatus, IoType};
use serde_json::{Value, json};

use crate::config::{MallocOpts, NUMA_ID_ANY};
use crate::store::Store;
use crate::{MODULE_NAME, PRODUCT_NAME};

/// Metadata sizes SPDK's malloc accepts.
const MD_SIZES: [u32; 6] = [0, 8, 16, 32, 64, 128];
/// Block sizes must be multiples of this (SPDK: "must be 512 bytes aligned").
const BLOCK_ALIGN: u32 = 512;
/// Highest DIF type (SPDK `SPDK_DIF_TYPE3`).
const DIF_TYPE_MAX: i32 = 3;

static NEXT_AUTO_NAME: AtomicU32 = AtomicU32::new(0);

/// Operations of one malloc bdev.
pub struct MallocOps {
    store: Store,
    block_size: u64,
    opts: MallocOpts,
}

impl std::fmt::Debug for MallocOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MallocOps")
            .field("bytes", &self.store.len())
            .field("block_size", &self.block_size)
            .finish()
    }
}

fn invalid(msg: String) -> BdevError {
    tracing::error!("{msg}");
    BdevError::InvalidArgument(msg)
}

fn numa_node_exists(id: i32) -> bool {
    std::path::Path::new(&format!("/sys/devices/system/node/node{id}")).exists() || id == 0
}

/// Creates and registers a malloc bdev (SPDK `create_malloc_disk`), checking parameters as
/// SPDK does; every refusal is EINVAL ([`BdevError::InvalidArgument`]) except a duplicate name
/// or UUID (EEXIST) and memory exhaustion (ENOMEM).
pub fn create(opts: &MallocOpts) -> Result<Bdev, BdevError> {
    if opts.num_blocks == 0 {
        return Err(invalid("Disk num_blocks must be greater than 0".into()));
    }
    if !opts.block_size.is_multiple_of(BLOCK_ALIGN) {
        return Err(invalid("Data block size must be 512 bytes aligned".into()));
    }
    if !opts.physical_block_size.is_multiple_of(BLOCK_ALIGN) {
        return Err(invalid("Physical block must be 512 bytes aligned".into()));
    }
    if opts.numa_id != NUMA_ID_ANY && !numa_node_exists(opts.numa_id) {
        return Err(invalid(format!(
            "NUMA node ID {} not present on the system",
            opts.numa_id
        )));
    }
    if !MD_SIZES.contains(&opts.md_size) {
        return Err(invalid(format!(
            "metadata size {} is not supported",
            opts.md_size
        )));
    }
    if !(0..=DIF_TYPE_MAX).contains(&opts.dif_type) {
        return Err(invalid("DIF type is invalid".into()));
    }
    if opts.dif_type != 0 && opts.md_size == 0 {
        return Err(invalid(
            "Metadata size should not be zero if DIF is enabled".into(),
        ));
    }
    if opts.dif_type != 0 {
        // Protection information is neither generated nor checked here: refuse rather than
        // pretend.
        tracing::error!("malloc bdevs with DIF are not supported");
        return Err(BdevError::InvalidArgument(
            "DIF protection information is not supported".into(),
        ));
    }
    let block_size = if opts.md_interleave {
        opts.block_size + opts.md_size
    } else {
        opts.block_size
    };
    let store = Store::new(opts.num_blocks, block_size)?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => format!("Malloc{}", NEXT_AUTO_NAME.fetch_add(1, Ordering::Relaxed)),
    };
    let mut props = BdevProps::new(&name, block_size, opts.num_blocks);
    props.uuid = opts.uuid;
    props.product_name = PRODUCT_NAME.into();
    props.write_cache = true;
    props.physical_block_size = opts.physical_block_size;
    props.optimal_io_boundary = opts.optimal_io_boundary;
    props.md_size = opts.md_size;
    props.md_interleave = opts.md_interleave;
    props.dif_type = 0;
    props.dif_is_head_of_md = opts.dif_is_head_of_md;
    props.dif_pi_format = opts.dif_pi_format;
    let mut saved = opts.clone();
    saved.name = Some(name);
    let ops = Arc::new(MallocOps {
        store,
        block_size: u64::from(block_size),
        opts: saved,
    });
    let bdev = bdev::module::register_bdev(MODULE_NAME, props, ops)?;
    tracing::info!(bdev = %bdev.name(), num_blocks = opts.num_blocks, block_size, "malloc bdev created");
    Ok(bdev)
}

/// Deletes a malloc bdev (SPDK `delete_malloc_disk`): unregisters it; `done` runs on the calling
/// Thread once the last descriptor closed. Unknown names, and bdevs of other modules, fail at
/// once with [`BdevError::NotFound`] (ENODEV).
pub fn delete(
    name: &str,
    done: impl FnOnce(Result<(), BdevError>) + 'static,
) -> Result<(), BdevError> {
    bdev::unregister(name, Some(MODULE_NAME), done)
}

impl MallocOps {
    fn bytes(&self, off_blocks: u64, num_blocks: u64) -> (u64, u64) {
        (off_blocks * self.block_size, num_blocks * self.block_size)
    }

    fn execute(&self, req: &mut IoRequest) -> IoStatus {
        match req {
            IoRequest::Read {
                offset_blocks,
                num_blocks,
                bufs,
            } => {
                let (o, l) = self.bytes(*offset_blocks, *num_blocks);
                self.store.read(o, l, bufs);
                IoStatus::Success
            }
            IoRequest::Write {
                offset_blocks,
                num_blocks,
                bufs,
            } => {
                let (o, l) = self.bytes(*offset_blocks, *num_blocks);
                self.store.write(o, l, bufs);
                IoStatus::Success
            }
            IoRequest::Unmap {
                offset_blocks,
                num_blocks,
            }
            | IoRequest::WriteZeroes {
                offset_blocks,
                num_blocks,
            } => {
                let (o, l) = self.bytes(*offset_blocks, *num_blocks);
                self.store.zero(o, l);
                IoStatus::Success
            }
            IoRequest::Flush { .. } | IoRequest::Reset => IoStatus::Success,
            IoRequest::Compare {
                offset_blocks,
                num_blocks,
                bufs,
            } => {
                let (o, l) = self.bytes(*offset_blocks, *num_blocks);
                if self.store.compare(o, l, bufs) {
                    IoStatus::Success
                } else {
                    IoStatus::Miscompare
                }
            }
            IoRequest::CompareAndWrite {
                offset_blocks,
                num_blocks,
                compare,
                write,
            } => {
                let (o, l) = self.bytes(*offset_blocks, *num_blocks);
                if self.store.compare_and_write(o, l, compare, write) {
                    IoStatus::Success
                } else {
                    IoStatus::Miscompare
                }
            }
            IoRequest::Copy {
                dst_offset_blocks,
                src_offset_blocks,
                num_blocks,
            } => {
                let (d, l) = self.bytes(*dst_offset_blocks, *num_blocks);
                let (s, _) = self.bytes(*src_offset_blocks, *num_blocks);
                self.store.copy(d, s, l);
                IoStatus::Success
            }
            _ => IoStatus::Invalid(bdev::InvalidIo::Unsupported),
        }
    }
}

impl BdevOps for MallocOps {
    type Channel = ();

    fn create_channel(&self) -> Result<(), BdevError> {
        Ok(())
    }

    fn submit_request(&self, _ch: &(), mut io: BdevIo) {
        let status = self.execute(io.request_mut());
        io.complete(status);
    }

    fn io_type_supported(&self, t: IoType) -> bool {
        matches!(
            t,
            IoType::Read
                | IoType::Write
                | IoType::Unmap
                | IoType::Flush
                | IoType::Reset
                | IoType::WriteZeroes
                | IoType::Compare
                | IoType::CompareAndWrite
                | IoType::Copy
        )
    }

    fn write_config_json(&self, bdev: &Bdev) -> Option<Value> {
        let o = &self.opts;
        let mut params = json!({
            "name": bdev.name(),
            "num_blocks": bdev.num_blocks(),
            "block_size": bdev.data_block_size(),
            "physical_block_size": if o.physical_block_size == 0 {
                bdev.data_block_size()
            } else {
                o.physical_block_size
            },
            "uuid": bdev.uuid().hyphenated().to_string(),
            "optimal_io_boundary": o.optimal_io_boundary,
            "md_size": o.md_size,
            "dif_type": o.dif_type,
            "dif_is_head_of_md": o.dif_is_head_of_md,
            "dif_pi_format": o.dif_pi_format,
        });
        if o.md_interleave
            && let Some(m) = params.as_object_mut()
        {
            m.insert("md_interleave".into(), json!(true));
        }
        Some(json!({ "method": "bdev_malloc_create", "params": params }))
    }

    fn memory_domains(&self) -> Option<Value> {
        Some(json!([{ "dma_device_id": "system", "dma_device_type": 1 }]))
    }

    fn destruct(&self) {
        tracing::debug!(bytes = self.store.len(), "malloc bdev memory released");
    }
}
