//! NVMe-oF target core (SPDK `lib/nvmf` without transports).
//!
//! Step 4-10 of the flow (see ARCHITECTURE.md): the [`Target`] with its options, transports,
//! subsystems and poll groups; [`Subsystem`]s with namespaces (bdevs), hosts and listeners;
//! controllers in the dynamic model (Fabrics Connect, Property Get/Set, admin and NVM I/O
//! commands, discovery); namespace [`reservation`]s (state on the app thread, checked
//! lock-free on the I/O path, persisted through power loss in SPDK's `ptpl_file` JSON);
//! per-listener ANA states ([`AnaState`], multipath); subsystem pause that waits for the
//! I/O in flight; NVMe in-band authentication ([`auth`], DH-HMAC-CHAP with keys of the
//! process-global [`keyring`]); the [`transport`] provider API that nvmf-tcp and nvmf-rdma
//! implement; the JSON-RPC methods ([`rpc`]) and the app glue ([`NvmfSubsystem`]).
//!
//! ```text
//!  app thread: Target ──(snapshot by message)──▶ PollGroup (one per Thread)
//!                │ Transport (listen/accept)        │ TransportPollGroup (poll)
//!                ▼                                  ▼
//!           acceptor poller ──connection──▶  Qpair::handle_request ─▶ ctrlr / admin / io ─▶ bdev
//!                                            Qpair::poll_response  ◀── completion ◀────────┘
//! ```
//!
//! Handle/poll contract: the controller core is sans-IO. A transport feeds
//! [`Qpair::handle_request`] and drains [`Qpair::poll_response`]; time comes from the polled
//! Thread's clock (`env::now`), so [`testing`] drives everything with `env::testing`'s manual
//! clock. The order of calls is documented in [`transport`].
#![forbid(unsafe_code)]

mod admin;
pub mod auth;
mod ctrlr;
pub mod discovery;
mod error;
mod io;
pub mod keyring;
mod poll_group;
mod qpair;
pub mod request;
pub mod reservation;
pub mod rpc;
pub mod subsystem;
mod target;
pub mod testing;
pub mod transport;

pub use error::NvmfError;
pub use poll_group::PollGroupRef;
pub use qpair::{Qpair, QpairState};
pub use request::{DataBuf, IoVec, Request, RequestState, Response};
pub use rpc::{NvmfSubsystem, config_json, register_rpcs};
pub use subsystem::{AnaState, HostKeys, Listener, Namespace, SubType, Subsystem, SubsystemState};
pub use target::{
    AdminCmdPassthru, DRAIN_CHECK_INTERVAL, DRAIN_WARN_INTERVAL, MAX_MAX_SUBSYSTEMS, NsOpts,
    Referral, Target, TargetOpts,
};
pub use transport::{
    AdrFam, DiscoverInfo, ListenAddr, PollGroupBuilder, TrType, Transport, TransportOpts,
    TransportPollGroup,
};
