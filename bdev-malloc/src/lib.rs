//! RAM-backed bdevs (SPDK `module/bdev/malloc`) and their RPCs.
#![forbid(unsafe_code)]
