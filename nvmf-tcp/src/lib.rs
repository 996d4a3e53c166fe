//! NVMe/TCP transport for the NVMe-oF target (SPDK `lib/nvmf/tcp.c`).
#![forbid(unsafe_code)]

pub mod error;
pub mod proto;
pub mod request;

pub use error::TcpError;
pub use proto::{ConnState, ProtoConfig, TcpConnection};
