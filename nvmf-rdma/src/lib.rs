//! NVMe/RDMA transport for the NVMe-oF target (SPDK `lib/nvmf/rdma.c`).
//!
//! ```text
//!  cm        RDMA CM private data (REQUEST/ACCEPT/REJECT) and queue depth negotiation
//!  config    RDMA transport options (SPDK names and defaults) and their validation
//!  request   the request state enum (SPDK RDMA_REQUEST_STATE_*)
//!  proto     sans-IO queue pair core: capsule in -> Submit / RDMA READ / WRITE+SEND out
//!  verbs     (feature `rdma`) the only unsafe code: libibverbs + librdmacm via rdma-sys
//!  transport (feature `rdma`) Transport: CM listener per address, accept, reject
//!  poll_group(feature `rdma`) TransportPollGroup: per device a PD, CQ, SRQ and the registered
//!            buffer pool; per queue pair a QP, response buffers (and receives without SRQ)
//! ```
//!
//! The default build needs no RDMA library: only the sans-IO parts are compiled. With the
//! `rdma` feature, register the transport with the target:
//! `tgt.register_transport_factory("RDMA", nvmf_rdma::factory())`.
#![cfg_attr(not(feature = "rdma"), forbid(unsafe_code))]
#![cfg_attr(feature = "rdma", deny(unsafe_code))]

pub mod cm;
pub mod config;
pub mod error;
#[cfg(feature = "rdma")]
pub mod poll_group;
pub mod proto;
pub mod request;
#[cfg(feature = "rdma")]
pub mod transport;
#[cfg(feature = "rdma")]
pub mod verbs;

pub use cm::{CmRequest, DepthLimits, Negotiated, RejectStatus};
pub use config::RdmaOpts;
pub use error::RdmaError;
#[cfg(feature = "rdma")]
pub use poll_group::RdmaPollGroup;
pub use proto::{Action, QueueConfig, RdmaQueue, RemoteBuf, Sge, UnitPool};
pub use request::RdmaRequestState;
#[cfg(feature = "rdma")]
pub use transport::{RdmaConn, RdmaTransport};

/// The factory for `Target::register_transport_factory("RDMA", ..)`.
#[cfg(feature = "rdma")]
pub fn factory() -> impl Fn(nvmf::TransportOpts) -> Result<RdmaTransport, nvmf::NvmfError> + 'static
{
    RdmaTransport::new
}
