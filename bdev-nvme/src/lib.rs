//! Bdevs over NVMe controllers (SPDK `module/bdev/nvme`) and their RPCs.
#![forbid(unsafe_code)]
