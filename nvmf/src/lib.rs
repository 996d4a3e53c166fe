//! NVMe-oF target core (SPDK `lib/nvmf` without transports).
#![forbid(unsafe_code)]
