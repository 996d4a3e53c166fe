//! The crate's error type.

use thiserror::Error;

/// Errors of the NVMe-oF target core.
///
/// Configuration errors map to SPDK's JSON-RPC answers through [`NvmfError::errno`]; command
/// errors never use this type (they become an NVMe status in the completion).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NvmfError {
    /// A parameter is out of range or malformed (SPDK `-EINVAL`).
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The object already exists (SPDK `-EEXIST`).
    #[error("already exists: {0}")]
    Exists(String),
    /// The object does not exist (SPDK `-ENODEV` / `-ENOENT`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The operation is not allowed in the object's current state (SPDK `-EBUSY`).
    #[error("busy: {0}")]
    Busy(String),
    /// A fixed limit was reached (namespaces, subsystems, controller IDs...) (SPDK `-ENOSPC`).
    #[error("no space: {0}")]
    NoSpace(String),
    /// The operation is not permitted on this object (SPDK `-EPERM`), e.g. per-host
    /// visibility of a namespace that is visible to every host.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The transport does not support the operation (SPDK `-ENOTSUP`).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An environment call (thread, message ring) failed.
    #[error("environment: {0}")]
    Env(#[from] env::EnvError),
    /// A transport reported an I/O error (socket bind, device).
    #[error("transport I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl NvmfError {
    /// The negative errno SPDK answers for this error.
    pub fn errno(&self) -> i32 {
        match self {
            NvmfError::InvalidParam(_) => -22,
            NvmfError::Exists(_) => -17,
            NvmfError::NotFound(_) => -19,
            NvmfError::Busy(_) => -16,
            NvmfError::NoSpace(_) => -28,
            NvmfError::NotPermitted(_) => -1,
            NvmfError::NotSupported(_) => -95,
            NvmfError::Env(_) => -12,
            NvmfError::Io(e) => -e.raw_os_error().unwrap_or(5),
        }
    }
}
