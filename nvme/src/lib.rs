//! NVMe and NVMe-oF specification types plus the NVMe host driver (SPDK `nvme_spec.h`, `nvmf_spec.h`, `nvme_tcp.h`, `lib/nvme`).
#![forbid(unsafe_code)]
