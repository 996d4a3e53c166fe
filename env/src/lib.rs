//! Environment layer of rspdk: mirrors SPDK's `lib/env_dpdk`, `lib/thread` and parts of `lib/util`.
//!
//! Step 1 and 2 of the flow: core masks, DMA-able memory, buffer pools, and the reactors that
//! poll lightweight threads (message rings, pollers, I/O channels).
