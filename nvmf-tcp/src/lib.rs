//! NVMe/TCP transport for the NVMe-oF target (SPDK `lib/nvmf/tcp.c`).
#![forbid(unsafe_code)]
