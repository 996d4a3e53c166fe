//! `bdev_malloc_create` parameters (SPDK `struct malloc_bdev_opts`).

use serde::{Deserialize, Serialize};

/// SPDK's "any NUMA node" (`SPDK_ENV_NUMA_ID_ANY`).
pub const NUMA_ID_ANY: i32 = -1;

/// Options of a malloc bdev, with SPDK's parameter names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MallocOpts {
    /// Bdev name; `None` names it `Malloc<N>`.
    #[serde(default)]
    pub name: Option<String>,
    /// UUID; `None` generates one.
    #[serde(default)]
    pub uuid: Option<uuid::Uuid>,
    /// Number of blocks (> 0).
    pub num_blocks: u64,
    /// Data block size in bytes (multiple of 512).
    pub block_size: u32,
    /// Physical block size in bytes (multiple of 512; 0 = block size).
    #[serde(default)]
    pub physical_block_size: u32,
    /// Optimal I/O boundary in blocks (0 = none).
    #[serde(default)]
    pub optimal_io_boundary: u32,
    /// Metadata bytes per block: 0, 8, 16, 32, 64 or 128.
    #[serde(default)]
    pub md_size: u32,
    /// Metadata interleaved with the data of each block.
    #[serde(default)]
    pub md_interleave: bool,
    /// DIF type, 0 (disabled) to 3.
    #[serde(default)]
    pub dif_type: i32,
    /// DIF at the head of the metadata.
    #[serde(default)]
    pub dif_is_head_of_md: bool,
    /// DIF protection information format.
    #[serde(default)]
    pub dif_pi_format: u32,
    /// NUMA node to allocate from (-1 = any).
    #[serde(default = "numa_any")]
    pub numa_id: i32,
}

fn numa_any() -> i32 {
    NUMA_ID_ANY
}

impl MallocOpts {
    /// Options for `num_blocks` blocks of `block_size` bytes named `name`, other fields default.
    pub fn new(name: &str, num_blocks: u64, block_size: u32) -> MallocOpts {
        MallocOpts {
            name: Some(name.to_owned()),
            uuid: None,
            num_blocks,
            block_size,
            physical_block_size: 0,
            optimal_io_boundary: 0,
            md_size: 0,
            md_interleave: false,
            dif_type: 0,
            dif_is_head_of_md: false,
            dif_pi_format: 0,
            numa_id: NUMA_ID_ANY,
        }
    }
}
