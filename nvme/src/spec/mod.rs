//! NVMe, NVMe-oF and NVMe/TCP wire formats (SPDK `nvme_spec.h`, `nvmf_spec.h`, `nvme_tcp.h`).
//!
//! Every structure is `#[repr(C)]` over little-endian field types with zerocopy derives, so it
//! can be viewed in place from received bytes without `unsafe`; sizes are asserted at compile
//! time and key offsets in tests. Opcodes, status codes, log page and feature identifiers are
//! newtypes with associated constants: an unknown value is just a value, never a parse failure.
//! Raw structures turn into validated domain types (`Sgl`, `Status`, NQN strings) before the
//! rest of the code trusts them.
//!
//! | module | contents | source |
//! |---|---|---|
//! | [`sqe`], [`cqe`], [`status`] | 64-byte SQE, 16-byte CQE, SCT/SC status codes | NVMe Base 2.0, 4.2, 4.6 |
//! | [`opcode`], [`sgl`] | admin/NVM/fabrics opcodes, SGL descriptors | NVMe Base 2.0 Fig. 138, 4.1.8 |
//! | [`fabrics`], [`props`], [`nqn`] | Connect, Property Get/Set, CAP/CC/CSTS/VS, NQNs | NVMe-oF 1.1, 3.3-3.5 |
//! | [`identify`], [`log`], [`features`] | Identify data, log pages, AER dw0, features | NVMe Base 2.0, 5.15-5.17 |
//! | [`discovery`] | discovery log page header and entries | NVMe-oF 1.1, 5.3 |
//! | [`io`] | Read/Write/Write Zeroes/DSM/Copy/Abort/reservation fields | NVM Command Set 1.0 |
//! | [`tcp`] | NVMe/TCP PDUs, digests, sans-IO framer | NVMe/TCP 1.0 |
#![forbid(unsafe_code)]

pub mod cqe;
pub mod discovery;
pub mod fabrics;
pub mod features;
pub mod identify;
pub mod io;
pub mod log;
pub mod nqn;
pub mod opcode;
pub mod props;
pub mod sgl;
pub mod sqe;
pub mod status;
pub mod tcp;

pub use cqe::Cqe;
pub use discovery::{DiscoveryLogEntry, DiscoveryLogHeader};
pub use fabrics::{ConnectCmd, ConnectData, PropertyGetCmd, PropertySetCmd};
pub use features::Fid;
pub use identify::{Cns, Csi, IdentifyController, IdentifyNamespace};
pub use log::Lid;
pub use nqn::validate_nqn;
pub use opcode::{AdminOpcode, DataTransfer, FabricsCommandType, NvmOpcode};
pub use sgl::{Sgl, SglDescriptor, SglSubtype, SglType};
pub use sqe::{Fuse, Psdt, Sqe};
pub use status::{CommandSpecificStatus, GenericStatus, MediaStatus, PathStatus, Sct, Status};

/// The crate error type, under the name the specification modules use.
pub use crate::Error as SpecError;
