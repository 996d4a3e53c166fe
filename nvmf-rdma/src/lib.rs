//! NVMe/RDMA transport for the NVMe-oF target (SPDK `lib/nvmf/rdma.c`).
#![forbid(unsafe_code)]
