//! NVMe/TCP transport for the NVMe-oF target (SPDK `lib/nvmf/tcp.c`).
//!
//! Register it with the target: `tgt.register_transport_factory("TCP", nvmf_tcp::factory())`.
#![forbid(unsafe_code)]

pub mod error;
pub mod outbound;
pub mod poll_group;
pub mod proto;
pub mod request;
pub mod transport;

pub use error::TcpError;
pub use outbound::OutQueue;
pub use poll_group::TcpPollGroup;
pub use proto::{ConnState, ProtoConfig, TcpConnection};
pub use transport::{TcpConn, TcpTransport};

/// The factory for `Target::register_transport_factory("TCP", ..)`.
pub fn factory() -> impl Fn(nvmf::TransportOpts) -> Result<TcpTransport, nvmf::NvmfError> + 'static
{
    TcpTransport::new
}
