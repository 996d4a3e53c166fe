//! NVMe and NVMe-oF specification types plus the NVMe host driver (SPDK `nvme_spec.h`,
//! `nvmf_spec.h`, `nvme_tcp.h`, `lib/nvme`).
//!
//! Today this crate holds [`spec`]: every wire structure the target and host exchange (SQE, CQE,
//! status codes, opcodes, SGL descriptors, fabrics Connect/Property, Identify, log pages,
//! features, discovery) and the sans-IO NVMe/TCP PDU framer ([`spec::tcp`]) shared by the
//! target transport and the host driver. Everything in `spec` is pure: no I/O, no clock, no
//! allocation beyond what a validated length allows, and no `unsafe`.
#![forbid(unsafe_code)]

mod error;
pub mod spec;

pub use error::Error;
pub mod host;
