//! NVMe host driver (SPDK `lib/nvme`): connect to NVMe-oF controllers, bring them up,
//! identify namespaces and run I/O on polled queue pairs.
//!
//! ```text
//! Controller::connect(trid, opts) ── admin Qpair ── dyn TransportQpair (TcpQpair<TcpStream>)
//!     └── alloc_io_qpair() -> IoQpair ── Qpair ── dyn TransportQpair
//! Transport (TcpTransport; RDMA/PCIe plug in here) opens TransportQpairs
//! ```
//!
//! Everything is polled and non-blocking on the I/O path: submit with [`IoQpair::read`] /
//! [`IoQpair::write`] / ..., then call [`IoQpair::process_completions`] from the owning
//! thread. The controller's admin queue needs [`Controller::process_admin_completions`]
//! regularly (keep-alive). Setup commands (Identify, Get Log Page, features) are synchronous.
//! A target that breaks the protocol fails the affected qpair with a [`HostError`]; nothing
//! it sends can make the driver panic.

mod ctrlr;
mod error;
pub mod qpair;
pub mod tcp;
pub mod transport;
mod trid;

#[cfg(test)]
mod tests;

pub use ctrlr::{
    Controller, ControllerOpts, DiscoveryLog, IoQpair, MAX_DISCOVERY_RECORDS, Namespace,
    transport_for, uuid_string,
};
pub use error::HostError;
pub use qpair::{Completion, Rejected};
pub use transport::{Payload, QpairParams, RawCompletion, Transport, TransportQpair};
pub use trid::{AdrFam, DEFAULT_TRSVCID, DISCOVERY_NQN, TrType, TransportId};
