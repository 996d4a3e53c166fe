//! The crate's error type.

use crate::cm::RejectStatus;

/// What can go wrong in the NVMe/RDMA transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RdmaError {
    /// A transport-specific option is unknown, has the wrong type or is out of range.
    #[error("invalid RDMA transport option: {0}")]
    InvalidOption(String),
    /// A host's RDMA_CM_REQUEST private data is unacceptable; the connection is rejected with
    /// this NVMe-oF RDMA status (NVMe/RDMA binding, "RDMA_CM_REJECT").
    #[error("connection rejected (status {:#x}): {reason}", status.0)]
    Rejected {
        /// The status sent in the reject private data.
        status: RejectStatus,
        /// Human-readable cause.
        reason: String,
    },
    /// The host violated the transport protocol (for example more commands in flight than the
    /// negotiated queue depth); the queue pair is torn down.
    #[error("NVMe/RDMA protocol error: {0}")]
    Protocol(String),
    /// A verbs or RDMA CM call failed (errno and the call's name).
    #[error("{call} failed: {source}")]
    Verbs {
        /// The libibverbs / librdmacm function.
        call: &'static str,
        /// The OS error it reported.
        source: std::io::Error,
    },
    /// Buffer memory cannot be allocated: more than the system has available
    /// ([`env::dma::check_available`]) or than the allocator gives. Nothing was allocated
    /// (SPDK fails such allocations with ENOMEM).
    #[error("{what}: {source}")]
    NoMemory {
        /// What the memory was for.
        what: &'static str,
        /// Bytes asked for.
        len: u64,
        /// The refusal ([`env::EnvError::NoMemory`]).
        source: env::EnvError,
    },
    /// No RDMA device can serve the address.
    #[error("no RDMA device: {0}")]
    NoDevice(String),
}

impl From<RdmaError> for nvmf::NvmfError {
    fn from(e: RdmaError) -> Self {
        match e {
            RdmaError::InvalidOption(m) => nvmf::NvmfError::InvalidParam(m),
            RdmaError::Verbs { source, .. } => nvmf::NvmfError::Io(source),
            RdmaError::NoDevice(m) => nvmf::NvmfError::NotFound(m),
            RdmaError::NoMemory { source, .. } => nvmf::NvmfError::Env(source),
            other => nvmf::NvmfError::InvalidParam(other.to_string()),
        }
    }
}
